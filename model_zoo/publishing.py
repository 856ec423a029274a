"""Publish a training run to the Hub, or bundle it into the offline zoo, after validating it.

Both stage the same repository folder from the run directory (which is never modified) and
validate it (safe_mode load, metadata schema, card front matter, metrics, golden output)
before any network call or any change to the bundled zoo.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from model_zoo.errors import StagingError
from model_zoo.hub import upload_folder
from model_zoo.registry import (
    RegistryEntry,
    add_registry_entry,
    bundled_dir,
    qualify_repo_id,
    validate_model_id,
)
from model_zoo.staging import stage_run, validate_staged

__all__ = ["PublishResult", "bundle", "publish"]


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish` did.

    Attributes:
        staged: Path, the validated staged folder (kept).
        repo_id: str, ``ORG/NAME``.
        commit: str or None, the Hub commit hash (None for a dry run).
        commit_url: str or None, the commit's URL (None for a dry run).
    """

    staged: Path
    repo_id: str
    commit: str | None = None
    commit_url: str | None = None


def publish(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    dry_run: bool = False,
    stage_dir: str | Path | None = None,
    model_id: str | None = None,
    description: str = "",
    license: str = "apache-2.0",
    register: bool = False,
) -> PublishResult:
    """Stage, validate, then upload a training run to the Hub in one commit.

    Args:
        run_dir: str or Path, the training run directory (read only).
        repo_id: str, ``ORG/NAME``; a bare ``NAME`` takes ``$TILEDSEG_HF_ORG``.
        private: bool, default False, create the repository as private.
        dry_run: bool, default False: stop after staging and validation.
        stage_dir: str, Path or None: an absent or empty folder to stage into; None makes a
            temporary one.
        model_id: str or None, the zoo id; default the repository's name.
        description: str, one sentence for listings and the card.
        license: str, Hub licence id of the weights, default ``"apache-2.0"``.
        register: bool, default False: add the new commit to ``registry.json`` under
            ``model_id``.

    Returns:
        PublishResult.

    Raises:
        StagingError: the run or the staged folder is invalid (nothing was uploaded).
        HubUnreachableError: the upload failed (the staged folder is kept).

    Example:
        >>> publish("runs/unet-isic2017-20250101", "acme/unet-isic2017",
        ...         dry_run=True).staged  # doctest: +SKIP
    """
    repo_id = qualify_repo_id(repo_id)
    model_id = validate_model_id(model_id or repo_id.split("/")[1].lower())
    staged = stage_run(
        run_dir,
        stage_dir,
        model_id=model_id,
        repo_id=repo_id,
        description=description,
        license=license,
    )
    zoo_model = validate_staged(staged)
    if dry_run:
        return PublishResult(staged=staged, repo_id=repo_id)
    commit = upload_folder(
        staged,
        repo_id,
        private=private,
        commit_message=f"Publish {model_id} with tiledseg model_zoo",
    )
    if register:
        add_registry_entry(
            RegistryEntry(
                id=model_id,
                repo_id=repo_id,
                revision=commit.oid,
                description=zoo_model.meta.description,
                task=zoo_model.meta.task,
                dataset=str(zoo_model.meta.dataset.get("id", "")),
            )
        )
    return PublishResult(
        staged=staged, repo_id=repo_id, commit=commit.oid, commit_url=commit.commit_url
    )


def bundle(
    run_dir: str | Path,
    model_id: str,
    *,
    description: str = "",
    license: str = "apache-2.0",
    repo_id: str | None = None,
    root: str | Path | None = None,
) -> Path:
    """Stage a training run into the bundled zoo as ``ROOT/ID``, replacing it atomically.

    The new folder is staged beside the target and validated; only then is an existing
    bundle swapped out. On any failure the existing bundle is left as it was.

    Args:
        run_dir: str or Path, the training run directory (read only).
        model_id: str, the bundled id (lowercase letters, digits, ``.-_``).
        description: str, one sentence for listings and the card.
        license: str, Hub licence id of the weights.
        repo_id: str or None, the Hub repository named in the card; default
            ``$TILEDSEG_HF_ORG/ID``.
        root: str, Path or None, the bundled zoo folder; default :func:`bundled_dir`.

    Returns:
        Path of the bundled model folder.

    Raises:
        StagingError: the run or the staged folder is invalid.
    """
    validate_model_id(model_id)
    root = Path(root) if root is not None else bundled_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / model_id
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{model_id}.staging-"))
    try:
        stage_run(
            run_dir,
            staging,
            model_id=model_id,
            repo_id=qualify_repo_id(repo_id or model_id),
            description=description,
            license=license,
        )
        validate_staged(staging)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a bundle is shared
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _swap_into_place(new: Path, target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise StagingError(f"{target} exists and is not a folder; remove it first.")
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old)
