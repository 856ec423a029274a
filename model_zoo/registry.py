"""Where zoo models are listed: the bundled folder and ``registry.json`` (published models).

``registry.json`` holds data only, like KerasHub's preset files::

    {"format_version": "1.0",
     "models": [{"id": "unet-isic2017", "repo_id": "tiledseg/unet-isic2017",
                 "revision": "<40-hex commit>", "description": "...",
                 "task": "binary-segmentation", "dataset": "isic2017"}]}

A ``repo_id`` without an organisation takes the default one, ``$TILEDSEG_HF_ORG`` (else
``tiledseg``). Every revision is a full commit hash, so a registry id always means the same
weights.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from model_zoo.errors import StagingError
from model_zoo.layout import CONFIG_FILE, PACKAGE_DIR

__all__ = [
    "BUNDLED_DIR_ENV",
    "DEFAULT_ORG",
    "DEFAULT_ORG_ENV",
    "REGISTRY_ENV",
    "RegistryEntry",
    "add_registry_entry",
    "bundled_dir",
    "bundled_ids",
    "default_org",
    "is_commit_hash",
    "load_registry",
    "qualify_repo_id",
    "registry_path",
    "validate_model_id",
]

DEFAULT_ORG = "tiledseg"
DEFAULT_ORG_ENV = "TILEDSEG_HF_ORG"
# Both overrides exist so a deployment (or a test) can point the zoo at another folder/file.
REGISTRY_ENV = "TILEDSEG_REGISTRY"
BUNDLED_DIR_ENV = "TILEDSEG_BUNDLED_DIR"
_REGISTRY_FORMAT = "1.0"
_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class RegistryEntry:
    """One published model: its id, its Hub repository and the pinned commit."""

    id: str
    repo_id: str
    revision: str
    description: str = ""
    task: str = ""
    dataset: str = ""


def default_org() -> str:
    """The Hub organisation for repo ids given without one: ``$TILEDSEG_HF_ORG`` or ``tiledseg``."""
    return os.environ.get(DEFAULT_ORG_ENV, "").strip() or DEFAULT_ORG


def qualify_repo_id(repo_id: str) -> str:
    """Return ``ORG/NAME``, adding the default organisation to a bare ``NAME``.

    Raises:
        ValueError: the result is not a valid Hub model repository id.

    Example:
        >>> qualify_repo_id("acme/unet")
        'acme/unet'
    """
    if not isinstance(repo_id, str):
        raise TypeError(f"`repo_id` must be a string 'ORG/NAME'. Received: repo_id={repo_id!r}")
    qualified = repo_id if "/" in repo_id else f"{default_org()}/{repo_id}"
    if not _REPO_ID.match(qualified) or ".." in qualified:
        raise ValueError(
            "`repo_id` must look like 'ORG/NAME' (letters, digits, '-', '_', '.'). "
            f"Received: repo_id={repo_id!r}"
        )
    return qualified


def validate_model_id(model_id: str) -> str:
    """Return ``model_id`` if it is a valid zoo id (lowercase, digits, ``.-_``), else raise."""
    if not isinstance(model_id, str) or not _MODEL_ID.match(model_id):
        raise ValueError(
            "`id` must be 1-64 characters of lowercase letters, digits, '.', '-' or '_', "
            f"starting with a letter or digit. Received: id={model_id!r}"
        )
    return model_id


def is_commit_hash(revision: str | None) -> bool:
    """Whether ``revision`` is a full 40-character commit hash (a pin, not a branch or tag)."""
    return isinstance(revision, str) and bool(_COMMIT.match(revision))


def bundled_dir() -> Path:
    """The bundled zoo: ``$TILEDSEG_BUNDLED_DIR`` or ``model_zoo/bundled``."""
    override = os.environ.get(BUNDLED_DIR_ENV, "").strip()
    return Path(override).expanduser() if override else PACKAGE_DIR / "bundled"


def bundled_ids(root: str | Path | None = None) -> list[str]:
    """Ids of the bundled models (folders holding a ``config.json``), sorted."""
    root = Path(root) if root is not None else bundled_dir()
    if not root.is_dir():
        return []
    return sorted(
        child.name
        for child in root.iterdir()
        if child.is_dir() and not child.name.startswith(".") and (child / CONFIG_FILE).is_file()
    )


def registry_path() -> Path:
    """The registry file: ``$TILEDSEG_REGISTRY`` or ``model_zoo/registry.json``."""
    override = os.environ.get(REGISTRY_ENV, "").strip()
    return Path(override).expanduser() if override else PACKAGE_DIR / "registry.json"


def load_registry(path: str | Path | None = None) -> list[RegistryEntry]:
    """Read and check the registry.

    Args:
        path: str or Path, default :func:`registry_path`.

    Returns:
        list of RegistryEntry, in file order.

    Raises:
        StagingError: the file is not valid JSON or an entry is malformed.
    """
    path = Path(path) if path is not None else registry_path()
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise StagingError(f"Cannot read the model registry {path}: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise StagingError(f"{path} must hold {{'format_version': ..., 'models': [...]}}.")
    entries = []
    for raw in data["models"]:
        try:
            entry = RegistryEntry(**raw)
            validate_model_id(entry.id)
            entry = RegistryEntry(**{**asdict(entry), "repo_id": qualify_repo_id(entry.repo_id)})
        except (TypeError, ValueError) as error:
            raise StagingError(f"Invalid entry in {path}: {raw!r}: {error}") from error
        if not is_commit_hash(entry.revision):
            raise StagingError(
                f"Entry {entry.id!r} in {path} must pin `revision` to a full 40-character commit "
                f"hash. Received: revision={entry.revision!r}"
            )
        entries.append(entry)
    ids = [entry.id for entry in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise StagingError(f"Duplicate ids in {path}: {duplicates}")
    return entries


def add_registry_entry(entry: RegistryEntry, path: str | Path | None = None) -> Path:
    """Add ``entry`` to the registry, replacing one with the same id; written atomically.

    Returns:
        The registry file's path.
    """
    path = Path(path) if path is not None else registry_path()
    if not is_commit_hash(entry.revision):
        raise ValueError(
            f"`revision` must be a full 40-character commit hash. Received: {entry.revision!r}"
        )
    validate_model_id(entry.id)
    entries = [e for e in load_registry(path) if e.id != entry.id] + [entry]
    text = json.dumps(
        {"format_version": _REGISTRY_FORMAT, "models": [asdict(e) for e in entries]}, indent=2
    )
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        handle.write(text + "\n")
    os.replace(handle.name, path)
    return path
