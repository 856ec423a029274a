"""Stage (and upload) a Hugging Face Space that runs this project's Streamlit app.

The Space folder holds a README with the Spaces front matter (``sdk: streamlit``,
``app_file: app.py``, ``python_version``), the app (``app.py``, ``app_pages/``, ``.streamlit/``,
``app_support/``), the packages it imports (``tiledseg/``, ``model_zoo/`` with the bundled
models, and ``training/``, whose ``training.models`` registers any custom layers), and a
``requirements.txt`` for the Space builder.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from model_zoo.errors import StagingError
from model_zoo.hub import upload_folder
from model_zoo.layout import PACKAGE_DIR
from model_zoo.registry import load_registry, qualify_repo_id

__all__ = ["SPACE_ITEMS", "SpaceResult", "check_space", "publish_space", "stage_space"]

APP_FILE = "app.py"
# The Python the pinned requirements were resolved for (requirements.txt).
SPACE_PYTHON_VERSION = "3.11"
# What the app needs at run time, relative to the project root (absent items are skipped).
SPACE_ITEMS = (
    APP_FILE,
    "app_pages",
    ".streamlit",
    "app_support",
    "tiledseg",
    "model_zoo",
    "training",  # whole package: `import training.models` runs training/__init__.py
)
_OPTIONAL_ITEMS = ("training",)
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*.staging-*", ".*.old-*", "*.egg-info")
_SKIP_REQUIREMENT = re.compile(r"^\s*(-e\s|--editable|#|$)")


@dataclass(frozen=True)
class SpaceResult:
    """What :func:`publish_space` did: the staged folder, missing items, and the commit."""

    staged: Path
    repo_id: str
    missing: tuple[str, ...] = ()
    commit: str | None = None
    commit_url: str | None = None


def stage_space(
    repo_id: str,
    out_dir: str | Path | None = None,
    *,
    project_root: str | Path | None = None,
    title: str = "tiledseg",
    license: str = "apache-2.0",
) -> tuple[Path, tuple[str, ...]]:
    """Copy the app and its packages into a Space folder and write its README and requirements.

    Args:
        repo_id: str, the Space ``ORG/NAME``.
        out_dir: str, Path or None: an absent or empty folder; None makes a temporary one.
        project_root: str, Path or None, the checkout holding app.py; default this one.
        title: str, the Space's title.
        license: str, Hub licence id.

    Returns:
        ``(folder, missing)``: the staged folder and the items of :data:`SPACE_ITEMS` (and
        ``requirements.txt``) that the project does not have (yet).

    Raises:
        StagingError: ``out_dir`` is not empty.
    """
    repo_id = qualify_repo_id(repo_id)
    root = Path(project_root) if project_root is not None else PACKAGE_DIR.parent
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="tiledseg-space-"))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StagingError(f"The stage folder {out} must be absent or empty.")
    out.mkdir(parents=True, exist_ok=True)
    missing = []
    for item in SPACE_ITEMS:
        source = root / item
        if source.is_dir():
            shutil.copytree(source, out / item, ignore=_IGNORE)
        elif source.is_file():
            (out / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, out / item)
        elif item not in _OPTIONAL_ITEMS:
            missing.append(item)
    requirements = root / "requirements.txt"
    if requirements.is_file():
        (out / "requirements.txt").write_text(_space_requirements(requirements), encoding="utf-8")
    else:
        missing.append("requirements.txt")
    (out / "README.md").write_text(
        _space_card(repo_id, title=title, license=license, requirements=requirements),
        encoding="utf-8",
    )
    return out, tuple(missing)


def check_space(folder: str | Path, *, require_app: bool = True) -> None:
    """Check a staged Space: the front matter parses and names the Streamlit app, which exists.

    Raises:
        StagingError: the README does not parse, is not a Streamlit Space, or files are missing.
    """
    from huggingface_hub import SpaceCard

    folder = Path(folder)
    try:
        data = SpaceCard.load(folder / "README.md").data
    except Exception as error:  # SpaceCard raises ValueError/YAMLError/OSError variously
        raise StagingError(f"The Space README in {folder} does not parse: {error}") from None
    problems = []
    if data.sdk != "streamlit":
        problems.append(f"sdk must be 'streamlit' (got {data.sdk!r})")
    if not data.python_version:
        problems.append("python_version is missing")
    if require_app and not (folder / (data.app_file or APP_FILE)).is_file():
        problems.append(f"app_file {data.app_file!r} is not in the folder")
    for package in ("tiledseg", "model_zoo"):
        if not (folder / package / "__init__.py").is_file():
            problems.append(f"the {package} package is missing")
    if problems:
        raise StagingError(f"The staged Space {folder} is incomplete: " + "; ".join(problems))


def publish_space(
    repo_id: str,
    *,
    private: bool = False,
    dry_run: bool = False,
    stage_dir: str | Path | None = None,
    project_root: str | Path | None = None,
) -> SpaceResult:
    """Stage the Space, check it, and unless ``dry_run`` upload it in one commit.

    Args:
        repo_id: str, the Space ``ORG/NAME``.
        private: bool, default False.
        dry_run: bool, default False: stop after staging (missing app files are allowed).
        stage_dir: str, Path or None, see :func:`stage_space`.
        project_root: str, Path or None, see :func:`stage_space`.

    Returns:
        SpaceResult.

    Raises:
        StagingError: the staged Space is incomplete (for an upload, app.py must exist).
        HubUnreachableError: the upload failed.
    """
    folder, missing = stage_space(repo_id, stage_dir, project_root=project_root)
    check_space(folder, require_app=not dry_run)
    repo_id = qualify_repo_id(repo_id)
    if dry_run:
        return SpaceResult(staged=folder, repo_id=repo_id, missing=missing)
    commit = upload_folder(
        folder,
        repo_id,
        private=private,
        repo_type="space",
        space_sdk="streamlit",
        commit_message="Deploy the tiledseg demo",
    )
    return SpaceResult(folder, repo_id, missing, commit.oid, commit.commit_url)


def _space_requirements(requirements: Path) -> str:
    # The packages are copied into the Space, so the editable install of the project is dropped.
    lines = [
        line.strip()
        for line in requirements.read_text(encoding="utf-8").splitlines()
        if not _SKIP_REQUIREMENT.match(line)
    ]
    return "\n".join(lines) + "\n"


def _streamlit_version(requirements: Path) -> str | None:
    if requirements.is_file():
        match = re.search(r"^streamlit==([\w.]+)", requirements.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    return None


def _space_card(repo_id: str, *, title: str, license: str, requirements: Path) -> str:
    from huggingface_hub import SpaceCard, SpaceCardData

    models = sorted({entry.repo_id for entry in load_registry()}) or None
    data = SpaceCardData(
        title=title,
        sdk="streamlit",
        sdk_version=_streamlit_version(requirements),
        python_version=SPACE_PYTHON_VERSION,
        app_file=APP_FILE,
        license=license,
        models=models,
        tags=["tiledseg", "image-segmentation", "medical-imaging"],
        emoji="🔬",
        colorFrom="blue",
        colorTo="red",
        pinned=False,
        short_description="Tiled UNet segmentation of very large medical images",
    )
    body = (
        f"# {title}\n\n"
        "Segment very large dermoscopy and microscopy images with overlapped tiled UNet "
        "inference. The models ship with the Space (`model_zoo/bundled/`), so it runs offline.\n\n"
        "**Not a medical device.** For research and demonstration only.\n\n"
        f"Deployed with `python -m model_zoo space --repo-id {repo_id}`."
    )
    return str(SpaceCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n"))
