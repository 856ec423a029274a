"""Plan where ``tiledseg predict`` writes, before any model is loaded or any image is read.

The naming rule (also in the README, "Image input and limits"):

- An input ``<stem>.<ext>`` writes ``<stem>.png`` (mask), ``<stem>_overlay.jpg`` (with
  ``--overlay``) and ``<stem>_prob.png`` (with ``--probs``) into the output folder.
- Inputs that share a stem (``a.jpg`` beside ``a.png``) are kept apart by their extension:
  ``a_jpg.png``, ``a_png.png`` (and ``a_jpg_overlay.jpg`` ...). The other inputs keep
  ``<stem>.png``.
- The same file given twice (``a.jpg`` and the folder holding it) is processed once.
- Refused before any inference, with the names involved: two inputs that would still write the
  same file (``d1/a.jpg`` and ``d2/a.jpg``), an output that is one of the inputs (``--out`` set
  to the input folder with a PNG input), an output path that is a folder, an output folder
  that cannot be created or written, and, unless ``--overwrite`` is given, an output file that
  already exists (a folder of ground-truth masks named ``<stem>.png`` is one ``--out`` away).
"""

from __future__ import annotations

__all__ = [
    "ImageOutputs",
    "OutputPlanError",
    "check_writable_file",
    "plan_outputs",
    "prepare_folder",
]

import contextlib
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tiledseg.atomic import remove_stale_temporaries
from tiledseg.errors import TiledsegError


class OutputPlanError(TiledsegError, ValueError):
    """The outputs cannot be written as asked; the message says which paths and what to do."""


@dataclass(frozen=True)
class ImageOutputs:
    """One input image and the files written for it."""

    source: Path
    mask: Path
    overlay: Path | None = None
    probabilities: Path | None = None

    @property
    def paths(self) -> list[Path]:
        return [p for p in (self.mask, self.overlay, self.probabilities) if p is not None]


def _entry(path: Path) -> str:
    """The directory entry a path names (symlinks in the last part are not followed)."""
    return os.path.normcase(str(path.parent.resolve() / path.name))


def _unique_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    seen: set[str] = set()
    unique: list[Path] = []
    for path in map(Path, inputs):
        key = _entry(path)  # two links to one file are two inputs, named after the links
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def prepare_folder(folder: Path, flag: str) -> list[Path]:
    """Create `folder` if needed and prove it writable; return stale temporaries removed there."""
    if folder.exists() and not folder.is_dir():
        raise OutputPlanError(f"{flag} {folder} is an existing file, not a folder; give a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".tiledseg-write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OutputPlanError(
            f"{flag} {folder} cannot be created or written ({error.strerror or error}); "
            "choose a folder you can write to."
        ) from None
    return remove_stale_temporaries(folder)


def check_writable_file(path: Path, flag: str, inputs: Iterable[Path] = ()) -> list[Path]:
    """Check a report path (``--json``, ``--csv``) before any work; return stale files removed.

    Raises OutputPlanError when the folder is missing or not writable, the path is a folder, or
    the path is one of `inputs`.
    """
    if not path.parent.is_dir():
        raise OutputPlanError(
            f"{flag} {path}: folder {path.parent} does not exist; create it first or choose "
            "another path."
        )
    if path.is_dir():
        raise OutputPlanError(f"{flag} {path} is a folder; give a file path.")
    if _entry(path) in {_entry(p) for p in inputs}:
        raise OutputPlanError(f"{flag} {path} is one of the inputs; choose another path.")
    return prepare_folder(path.parent, f"{flag} folder")


def plan_outputs(
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    overlay: bool = False,
    probabilities: bool = False,
    overwrite: bool = False,
) -> list[ImageOutputs]:
    """Map every input image to its own output files (the module's rule), or refuse.

    Touches nothing on disk; :func:`prepare_folder` creates and checks the folder.

    Args:
        inputs: image paths (files, as :func:`tiledseg.io.list_images` returns them).
        out: the output folder.
        overlay: bool, also plan ``<name>_overlay.jpg``.
        probabilities: bool, also plan ``<name>_prob.png``.
        overwrite: bool, allow replacing files that already exist there (default: refuse).

    Returns:
        list of ImageOutputs, one per distinct input, in input order.

    Raises:
        OutputPlanError: two inputs would write one file, an output is an input or a folder, an
            output exists and `overwrite` is False, or `out` cannot be created or written.

    Example:
        >>> [o.mask.name for o in plan_outputs(["x/a.jpg", "x/a.png", "x/b.jpg"], "out")]
        ... # doctest: +SKIP
        ['a_jpg.png', 'a_png.png', 'b.png']
    """
    out = Path(out)
    sources = _unique_inputs(inputs)
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for source in sources:
        by_stem[os.path.normcase(source.stem)].append(source)

    def name_for(source: Path) -> str:
        group = by_stem[os.path.normcase(source.stem)]
        suffixes = {os.path.normcase(p.suffix) for p in group}
        # Only where the extension tells them apart; the same name twice is refused below.
        separable = len(group) > 1 and len(suffixes) == len(group)
        return f"{source.stem}_{source.suffix.lstrip('.')}" if separable else source.stem

    planned = []
    for source in sources:
        name = name_for(source)
        planned.append(
            ImageOutputs(
                source,
                out / f"{name}.png",
                out / f"{name}_overlay.jpg" if overlay else None,
                out / f"{name}_prob.png" if probabilities else None,
            )
        )
    _refuse_collisions(planned, out)
    if not overwrite:
        _refuse_existing(planned, out)
    return planned


def _refuse_existing(planned: list[ImageOutputs], out: Path) -> None:
    existing = [path for item in planned for path in item.paths if os.path.lexists(path)]
    if existing:
        shown = ", ".join(str(path) for path in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise OutputPlanError(
            f"--out {out} already holds {len(existing)} file(s) this run would write: "
            f"{shown}{more}. Pass --overwrite to replace them, or choose another --out."
        )


def _refuse_collisions(planned: list[ImageOutputs], out: Path) -> None:
    inputs = {_entry(item.source): item.source for item in planned}
    writers: dict[str, Path] = {}
    for item in planned:
        for path in item.paths:
            key = _entry(path)
            if key in inputs:
                raise OutputPlanError(
                    f"{path} would replace the input {inputs[key]}: --out {out} holds the "
                    "inputs. Choose another --out folder; inputs are never written over."
                )
            if key in writers and writers[key] != item.source:
                raise OutputPlanError(
                    f"{writers[key]} and {item.source} would both write {path}. Rename one of "
                    "them, or run them with separate --out folders."
                )
            writers[key] = item.source
            with contextlib.suppress(OSError):
                if path.is_dir():
                    raise OutputPlanError(
                        f"{path} is a folder, so the output for {item.source} cannot be written "
                        "there; remove or rename it, or choose another --out."
                    )
