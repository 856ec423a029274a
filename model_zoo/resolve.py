"""One resolver for every model reference form, pinning Hub references to a commit.

Order: an existing local path, then a bundled id, then a registry id (pinned in registry.json),
then a Hub repository (``ORG/NAME`` or ``hf://ORG/NAME``, optional ``@REVISION``) looked up in
the local Hugging Face cache first, and on the Hub only when it is not cached there and
``HF_HUB_OFFLINE`` is not set. ``pull`` always asks the Hub (to refresh a branch).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from model_zoo import hub
from model_zoo.errors import ModelLoadError, ModelNotFoundError, NotCachedError
from model_zoo.registry import (
    bundled_dir,
    bundled_ids,
    is_commit_hash,
    load_registry,
    qualify_repo_id,
)

__all__ = ["ACCEPTED_FORMS", "ResolvedRef", "known_ids", "pull", "resolve"]

ACCEPTED_FORMS = (
    "a local directory in the zoo layout (config.json + model.weights.h5 [+ tiledseg.json])",
    "a local training run directory or its model.keras file",
    "a bundled id, e.g. unet-isic2017 (see `python -m model_zoo list`)",
    "a registry id from model_zoo/registry.json",
    "a Hub repository ORG/NAME or ORG/NAME@REVISION",
    "hf://ORG/NAME or hf://ORG/NAME@REVISION",
)
_HF_SCHEME = "hf://"


@dataclass(frozen=True)
class ResolvedRef:
    """Where a model reference points, once resolved to local files.

    Attributes:
        ref: str, the reference as given.
        source: str, ``"local"``, ``"bundled"`` or ``"hub"``.
        id: str, the bundled/registry id, the repo id, or the local folder's name.
        path: Path, the local file or folder holding the model.
        repo_id: str or None, the Hub repository for Hub and registry references.
        revision: str or None, the commit hash of a Hub snapshot (always a full hash).
    """

    ref: str
    source: str
    id: str
    path: Path
    repo_id: str | None = None
    revision: str | None = None


def known_ids() -> list[str]:
    """Bundled and registry ids, sorted, without duplicates."""
    return sorted(set(bundled_ids()) | {entry.id for entry in load_registry()})


def resolve(
    ref: str | os.PathLike,
    revision: str | None = None,
    *,
    refresh: bool = False,
    max_bytes: int | None = None,
) -> ResolvedRef:
    """Resolve a model reference to local files, downloading from the Hub if needed.

    Args:
        ref: str or PathLike, one of :data:`ACCEPTED_FORMS`; a Hub form may end in
            ``@REVISION``.
        revision: str or None, a branch, tag or commit for Hub references (overrides a
            registry pin). Must agree with an ``@REVISION`` suffix if both are given.
        refresh: bool, default False. True asks the Hub even when the revision is cached
            (``pull``); offline it falls back to the cache.
        max_bytes: int or None, a limit on the bytes a Hub download may take (see
            :func:`model_zoo.hub.snapshot`); None for no limit. Cached models are not affected.

    Returns:
        ResolvedRef; for Hub references ``revision`` is the commit hash of the snapshot.

    Raises:
        ModelNotFoundError: nothing matches (the message lists the accepted forms and known ids).
        NotCachedError, HubUnreachableError, ModelTooLargeError: see
            :func:`model_zoo.hub.snapshot`.
        ModelLoadError: a revision was given for a local or bundled model.

    Example:
        >>> resolve("hf://acme/unet@v1").revision  # doctest: +SKIP
        '3f2a...'
    """
    if isinstance(ref, os.PathLike):
        ref = os.fspath(ref)
    if not isinstance(ref, str) or not ref.strip():
        raise TypeError(f"`ref` must be a non-empty string or path. Received: ref={ref!r}")
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise TypeError(f"`revision` must be a non-empty string. Received: revision={revision!r}")

    if not ref.startswith(_HF_SCHEME):
        local = Path(ref).expanduser()
        if local.exists():
            _reject_revision(revision, ref, "a local path")
            return ResolvedRef(ref, "local", _local_id(local), local.resolve())
        if _looks_like_path(ref):
            raise ModelNotFoundError(
                f"No such file or directory: {ref}. Accepted model references:\n" + _forms_text()
            )

    name, suffix_revision = _split_revision(ref)
    if suffix_revision and revision and suffix_revision != revision:
        raise ValueError(
            f"Two different revisions were given: {ref!r} and revision={revision!r}. Give one."
        )
    revision = revision or suffix_revision

    if name.startswith(_HF_SCHEME):
        repo_id = _hub_repo_id(name[len(_HF_SCHEME) :], ref)
        return _resolve_hub(ref, repo_id, repo_id, revision, refresh=refresh, max_bytes=max_bytes)

    if "/" not in name:
        if name in bundled_ids():
            _reject_revision(revision, ref, "a bundled model")
            return ResolvedRef(ref, "bundled", name, (bundled_dir() / name).resolve())
        entries = {entry.id: entry for entry in load_registry()}
        if name in entries:
            entry = entries[name]
            return _resolve_hub(
                ref,
                entry.id,
                entry.repo_id,
                revision or entry.revision,
                refresh=refresh,
                max_bytes=max_bytes,
            )
        raise ModelNotFoundError(_unknown_id_message(name))

    repo_id = _hub_repo_id(name, ref)
    return _resolve_hub(ref, repo_id, repo_id, revision, refresh=refresh, max_bytes=max_bytes)


def _resolve_hub(
    ref: str,
    model_id: str,
    repo_id: str,
    revision: str | None,
    *,
    refresh: bool,
    max_bytes: int | None = None,
) -> ResolvedRef:
    folder = None
    if not refresh or hub.is_offline():
        try:
            folder = hub.snapshot(repo_id, revision, local_files_only=True)
        except NotCachedError:
            if hub.is_offline():
                raise
    if folder is None:
        folder = hub.snapshot(repo_id, revision, max_bytes=max_bytes)
    commit = folder.name
    if not is_commit_hash(commit):  # the cache names snapshot folders by commit
        raise ModelLoadError(f"Unexpected Hub cache folder for {repo_id}: {folder}")
    return ResolvedRef(ref, "hub", model_id, folder, repo_id=repo_id, revision=commit)


def _split_revision(ref: str) -> tuple[str, str | None]:
    body = ref[len(_HF_SCHEME) :] if ref.startswith(_HF_SCHEME) else ref
    if "@" not in body:
        return ref, None
    name, _, revision = ref.rpartition("@")
    if not revision:
        raise ValueError(f"Empty revision after '@' in {ref!r}. Write ORG/NAME@REVISION.")
    return name, revision


def _hub_repo_id(name: str, ref: str) -> str:
    try:
        if "/" not in name:
            raise ValueError(f"a Hub reference needs ORG/NAME, got {name!r}")
        return qualify_repo_id(name)
    except ValueError as error:
        raise ModelNotFoundError(
            f"Not a valid model reference: {ref!r} ({error}). Accepted model references:\n"
            + _forms_text()
        ) from None


def _reject_revision(revision: str | None, ref: str, what: str) -> None:
    if revision is not None:
        raise ModelLoadError(
            f"{ref!r} is {what}, which has no revisions. Received: revision={revision!r}. "
            "Revisions apply to Hub references (ORG/NAME@REVISION)."
        )


def _looks_like_path(ref: str) -> bool:
    return (
        ref.startswith((".", "/", "~"))
        or ref.endswith((".keras", ".json", ".h5"))
        or ref.count("/") > 1
        or (os.sep != "/" and os.sep in ref)
    )


def _local_id(path: Path) -> str:
    path = path.resolve()
    return path.parent.name if path.is_file() else path.name


def _unknown_id_message(name: str) -> str:
    ids = known_ids()
    close = difflib.get_close_matches(name, ids, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(ids) if ids else "(none bundled or registered)"
    return (
        f"Unknown model id {name!r}.{hint} Known ids: {listed}. "
        "A Hub model is written ORG/NAME. Accepted model references:\n" + _forms_text()
    )


def _forms_text() -> str:
    return "\n".join(f"  - {form}" for form in ACCEPTED_FORMS)


def pull(
    ref: str | os.PathLike, revision: str | None = None, *, max_bytes: int | None = None
) -> Path:
    """Make a model available locally and return its folder; Hub models are refreshed.

    For a Hub or registry reference this downloads the zoo files of the revision through
    ``huggingface_hub.snapshot_download`` (into the standard cache; ``HF_ENDPOINT``,
    ``HF_HOME`` and tokens apply); a branch is looked up again on the Hub. Local and bundled
    models download nothing.

    Args:
        ref: str or PathLike, any form in :data:`ACCEPTED_FORMS`.
        revision: str or None, a branch, tag or commit hash.
        max_bytes: int or None, a limit on the download's bytes (:func:`model_zoo.hub.snapshot`).

    Returns:
        Path, the local folder (for a Hub model, the snapshot named by its commit hash).

    Raises:
        ModelLoadError subclasses, as :func:`resolve`.

    Example:
        >>> pull("hf://acme/unet-isic2017@main")  # doctest: +SKIP
        PosixPath('.../hub/models--acme--unet-isic2017/snapshots/3f2a...')
    """
    return resolve(ref, revision, refresh=True, max_bytes=max_bytes).path
