"""``python -m model_zoo``: list, pull, publish, bundle, export and deploy zoo models.

Errors a user can act on print ``error: ...`` and exit with status 2, without a traceback
(set ``TILEDSEG_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from tiledseg.errors import TiledsegError

__all__ = ["main"]

_EXIT_USAGE = 2
# The commands that load or save a checkpoint, so import Keras and its backend.
_KERAS_COMMANDS = ("publish", "bundle", "export")
_EPILOG = """\
Model references (REF): a local zoo folder, a training run folder or its model.keras, a
bundled id, a registry id, ORG/NAME or hf://ORG/NAME, optionally followed by @REVISION.
Hub access follows huggingface_hub: HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE=1, HF_TOKEN.
The default organisation for a bare NAME is $TILEDSEG_HF_ORG (else "tiledseg").
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the zoo command line; returns the exit status.

    Example:
        >>> main(["list"])  # doctest: +SKIP
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command in _KERAS_COMMANDS:
        from tiledseg.quiet import import_keras_quietly

        import_keras_quietly()  # without TensorFlow's start-up notices on stderr
    try:
        return args.handler(args)
    except (TiledsegError, ValueError, TypeError, ImportError) as error:
        if os.environ.get("TILEDSEG_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return _EXIT_USAGE


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model_zoo",
        description="The tiledseg model zoo: Hugging Face Hub repositories and bundled models.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="bundled and registry models")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_cmd_list)

    pull = commands.add_parser("pull", help="download a model; prints its local folder last")
    pull.add_argument("ref", metavar="REF[@REVISION]")
    pull.add_argument("--revision", help="branch, tag or commit (or write REF@REVISION)")
    pull.set_defaults(handler=_cmd_pull)

    publish = commands.add_parser("publish", help="stage, validate and upload a training run")
    publish.add_argument("run_dir", metavar="RUN_DIR")
    publish.add_argument("--repo-id", required=True, metavar="ORG/NAME")
    publish.add_argument("--private", action="store_true", help="create a private repository")
    publish.add_argument("--dry-run", action="store_true", help="stage and validate only")
    publish.add_argument("--stage-dir", metavar="DIR", help="absent or empty folder to stage in")
    _add_card_options(publish)
    publish.add_argument("--id", dest="model_id", help="zoo id (default: the repository name)")
    publish.add_argument(
        "--register", action="store_true", help="record the new commit in registry.json"
    )
    publish.set_defaults(handler=_cmd_publish)

    bundle = commands.add_parser("bundle", help="stage a training run into model_zoo/bundled/ID")
    bundle.add_argument("run_dir", metavar="RUN_DIR")
    bundle.add_argument("--id", dest="model_id", required=True, metavar="ID")
    bundle.add_argument("--repo-id", metavar="ORG/NAME", help="Hub repository named in the card")
    _add_card_options(bundle)
    bundle.set_defaults(handler=_cmd_bundle)

    export = commands.add_parser(
        "export", help="export for TF Serving (SavedModel), OpenVINO or ONNX Runtime"
    )
    export.add_argument("ref", metavar="REF[@REVISION]")
    export.add_argument(
        "--format",
        default="savedmodel",
        choices=("savedmodel", "onnx", "openvino"),
        help="savedmodel (TF Serving, --out DIR/NAME/VERSION), openvino or onnx (--out DIR)",
    )
    export.add_argument("--out", required=True, metavar="DIR/NAME/VERSION or DIR")
    export.add_argument("--revision", help="branch, tag or commit for Hub references")
    export.set_defaults(handler=_cmd_export)

    space = commands.add_parser("space", help="stage (and upload) a Docker Space of the app")
    space.add_argument("--repo-id", required=True, metavar="ORG/NAME")
    space.add_argument("--private", action="store_true")
    space.add_argument("--dry-run", action="store_true", help="stage and check only")
    space.add_argument("--stage-dir", metavar="DIR", help="absent or empty folder to stage in")
    space.set_defaults(handler=_cmd_space)
    return parser


def _add_card_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--description", default="", help="one sentence for listings and card")
    parser.add_argument("--license", default="apache-2.0", help="Hub licence id of the weights")


def _cmd_list(args: argparse.Namespace) -> int:
    from model_zoo.catalog import list_models

    entries = list_models()
    if args.json:
        print(json.dumps([entry.to_dict() for entry in entries], indent=2))
        return 0
    if not entries:
        print("No models: bundle one with `python -m model_zoo bundle RUN_DIR --id ID`.")
        return 0
    header = ("id", "task", "dataset", "metric", "size", "source", "offline")
    rows = [
        (
            e.id,
            e.task or "?",
            e.dataset or "?",
            e.metric or (f"({e.problem})" if e.problem else "?"),
            _human_size(e.size_bytes),
            e.source if not e.repo_id else f"{e.source}:{e.repo_id}",
            "yes" if e.offline else "no",
        )
        for e in entries
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    from model_zoo.resolve import resolve

    resolved = resolve(args.ref, args.revision, refresh=True)
    if resolved.source == "hub":
        print(f"{resolved.repo_id} at commit {resolved.revision}")
    else:
        print(f"{resolved.id} is {resolved.source}; nothing to download")
    print(resolved.path)
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from model_zoo.publishing import publish

    result = publish(
        args.run_dir,
        args.repo_id,
        private=args.private,
        dry_run=args.dry_run,
        stage_dir=args.stage_dir,
        model_id=args.model_id,
        description=args.description,
        license=args.license,
        register=args.register,
    )
    if args.dry_run:
        print(f"Staged and validated {result.repo_id} (dry run, nothing uploaded):")
        print(result.staged)
        return 0
    print(f"Published {result.repo_id}: {result.commit_url}")
    print(f"commit {result.commit}")
    return 0


def _cmd_bundle(args: argparse.Namespace) -> int:
    from model_zoo.publishing import bundle

    target = bundle(
        args.run_dir,
        args.model_id,
        description=args.description,
        license=args.license,
        repo_id=args.repo_id,
    )
    print(f"Bundled {args.model_id}:")
    print(target)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from model_zoo.export import export_savedmodel

    if args.format in ("onnx", "openvino"):
        from model_zoo.export_runtime import export_for_runtime

        out = export_for_runtime(args.ref, args.out, format=args.format, revision=args.revision)
        print(f"{args.format} export (network + tiledseg.json), checked against Keras:")
        print(out)
        return 0
    out = export_savedmodel(args.ref, args.out, revision=args.revision, format=args.format)
    print("SavedModel for TF Serving (signature serving_default):")
    print(out)
    return 0


def _cmd_space(args: argparse.Namespace) -> int:
    from model_zoo.space import publish_space

    result = publish_space(
        args.repo_id, private=args.private, dry_run=args.dry_run, stage_dir=args.stage_dir
    )
    if result.missing:
        print(f"Not in the project yet (not staged): {', '.join(result.missing)}", file=sys.stderr)
    if args.dry_run:
        print(f"Staged Space {result.repo_id} (dry run, nothing uploaded):")
        print(result.staged)
        return 0
    print(f"Deployed Space {result.repo_id}: {result.commit_url}")
    print(f"commit {result.commit}")
    return 0


def _human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
