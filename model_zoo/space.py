"""Stage (and upload) a Hugging Face Docker Space that runs this project's Streamlit app.

Hugging Face retired the built-in Streamlit SDK (Spaces changelog, 2025-04-30): a Streamlit app
is a Docker Space. The Space folder holds a README with the Spaces front matter (``sdk: docker``,
``app_port``), the ``Dockerfile`` (``deploy/Dockerfile.app``, the one image for the Space and
for docker-compose) and ``.dockerignore``, the app (``app.py``, ``app_pages/``, ``.streamlit/``,
``app_support/``), the packages it imports (``tiledseg/``, ``model_zoo/`` with the bundled
models, and ``training/``, whose ``training.models`` registers any custom layers), and the
pinned ``requirements.txt`` that the Dockerfile installs.
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

__all__ = [
    "DOCKERFILE",
    "SPACE_APP_PORT",
    "SPACE_ITEMS",
    "SpaceResult",
    "check_space",
    "publish_space",
    "stage_space",
]

APP_FILE = "app.py"
# The image: the same file builds the Space and deploy/docker-compose.yml's app service.
DOCKERFILE = "deploy/Dockerfile.app"
DOCKERIGNORE = ".dockerignore"
# The port the Dockerfile's CMD serves on (Spaces' default app_port).
SPACE_APP_PORT = 7860
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
    """Copy the app, its packages and its Dockerfile into a Space folder; write its README.

    Args:
        repo_id: str, the Space ``ORG/NAME``.
        out_dir: str, Path or None: an absent or empty folder; None makes a temporary one.
        project_root: str, Path or None, the checkout holding app.py; default this one.
        title: str, the Space's title.
        license: str, Hub licence id.

    Returns:
        ``(folder, missing)``: the staged folder and the items of :data:`SPACE_ITEMS` (and
        ``requirements.txt``, the Dockerfile) that the project does not have (yet).

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
    for source, target in ((DOCKERFILE, "Dockerfile"), (DOCKERIGNORE, DOCKERIGNORE)):
        if (root / source).is_file():
            shutil.copy2(root / source, out / target)
        else:
            missing.append(source)
    (out / "README.md").write_text(
        _space_card(repo_id, title=title, license=license), encoding="utf-8"
    )
    return out, tuple(missing)


def check_space(folder: str | Path, *, require_app: bool = True) -> None:
    """Check a staged Space: a Docker Space whose Dockerfile serves the app on ``app_port``.

    Raises:
        StagingError: the README does not parse, is not a Docker Space, the Dockerfile does not
            serve ``app.py`` on ``app_port``, or files are missing.
    """
    from huggingface_hub import SpaceCard

    folder = Path(folder)
    try:
        data = SpaceCard.load(folder / "README.md").data
    except Exception as error:  # SpaceCard raises ValueError/YAMLError/OSError variously
        raise StagingError(f"The Space README in {folder} does not parse: {error}") from None
    problems = []
    if data.sdk != "docker":
        problems.append(f"sdk must be 'docker' (got {data.sdk!r})")
    port = data.get("app_port")
    if not isinstance(port, int):
        problems.append(f"app_port must be the port the app serves on (got {port!r})")
    dockerfile = folder / "Dockerfile"
    if not dockerfile.is_file():
        problems.append("the Dockerfile is missing")
    elif isinstance(port, int):
        text = dockerfile.read_text(encoding="utf-8")
        if f"--server.port={port}" not in text or not re.search(rf"^EXPOSE {port}\b", text, re.M):
            problems.append(f"the Dockerfile does not expose and serve app_port {port}")
    if require_app and not (folder / APP_FILE).is_file():
        problems.append(f"{APP_FILE} is not in the folder")
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
        space_sdk="docker",
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


def _space_card(repo_id: str, *, title: str, license: str) -> str:
    from huggingface_hub import SpaceCard, SpaceCardData

    models = sorted({entry.repo_id for entry in load_registry()}) or None
    data = SpaceCardData(
        title=title,
        sdk="docker",
        app_port=SPACE_APP_PORT,
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
        "inference. The models ship with the Space (`model_zoo/bundled/`), so it runs offline. "
        "Hardware: CPU basic (2 vCPU, 16 GB) is enough.\n\n"
        "**Not a medical device.** For research and demonstration only.\n\n"
        f"Deployed with `python -m model_zoo space --repo-id {repo_id}`."
    )
    return str(SpaceCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n"))
