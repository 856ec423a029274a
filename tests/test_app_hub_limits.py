"""Hub downloads the app may start, against a real Hugging Face-compatible server (olah).

A visitor's ``ORG/NAME`` must not make the server download an unbounded repository: the sizes
the Hub declares are checked before anything is downloaded, the bytes received are counted
while downloading (and the download cut off past the limit), and an allow-list can restrict the
repositories at all. huggingface_hub reads ``HF_ENDPOINT`` at import, so each case runs in a
fresh Python process, as in tests/test_zoo_hub.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_app_support import make_bundle
from zoo_fixtures import make_run_dir, olah_server, run_python  # noqa: F401

from model_zoo.cli import main

pytestmark = pytest.mark.hub

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SMALL, LARGE = "org/small", "org/large"
EXTRA_BYTES = 3 * 1024 * 1024  # an examples/ image that makes org/large about 3 MB

_SNAPSHOT = """
import json, sys
from model_zoo import hub
from model_zoo.errors import ModelTooLargeError
repo, limit, trust = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "skip-declared"
if trust:  # as if the server declared smaller sizes than it then sends
    hub._check_declared_size = lambda *args, **kwargs: None
try:
    print("@@" + json.dumps({"folder": str(hub.snapshot(repo, max_bytes=limit))}))
except ModelTooLargeError as error:
    print("@@" + json.dumps({"error": str(error)}))
"""

_APP_CASES = """
import json, os, sys
from streamlit.testing.v1 import AppTest
results = []
for case in json.loads(sys.argv[2]):
    os.environ.update(case["env"])
    at = AppTest.from_file(sys.argv[1], default_timeout=240).run()
    at.selectbox(key="model_choice").set_value("Another Hub model…").run()
    at.text_input(key="model_custom_ref").set_value(case["ref"]).run()
    results.append({
        "errors": [e.value for e in at.error],
        "exceptions": [str(e.value) for e in at.exception],
        "subheaders": [s.value for s in at.subheader],
        "cache": sorted(os.listdir(cache)) if os.path.isdir(cache := sys.argv[3]) else [],
    })
print("@@" + json.dumps(results))
"""


def _payload(result) -> object:
    assert result.returncode == 0, result.stderr[-3000:]
    line = [line for line in result.stdout.splitlines() if line.startswith("@@")][-1]
    return json.loads(line[2:])


@pytest.fixture(scope="module")
def hub(request, tmp_path_factory):
    server = request.getfixturevalue("olah_server")
    root = tmp_path_factory.mktemp("limits")
    run = make_run_dir(root / "runs")
    staged = root / "staged"
    argv = ["publish", str(run), "--repo-id", SMALL, "--dry-run", "--stage-dir", str(staged)]
    assert main(argv) == 0
    server.commit(SMALL, staged, "small")
    large = root / "large"
    shutil.copytree(staged, large)
    (large / "examples").mkdir(exist_ok=True)
    (large / "examples" / "big.png").write_bytes(os.urandom(EXTRA_BYTES))
    server.commit(LARGE, large, "large")
    zoo = root / "zoo"
    make_bundle(zoo)
    registry = root / "registry.json"
    registry.write_text('{"format_version": "1.0", "models": []}', encoding="utf-8")
    small_bytes = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
    return {
        "root": root,
        "small_bytes": small_bytes,
        "env": {
            "HF_ENDPOINT": server.endpoint,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": None,
            "TILEDSEG_BUNDLED_DIR": str(zoo),
            "TILEDSEG_REGISTRY": str(registry),
        },
    }


def _snapshot(hub, home: str, repo: str, limit: int, trust: bool = False) -> tuple[dict, Path]:
    env = {**hub["env"], "HF_HOME": str(hub["root"] / home)}
    args = ["-c", _SNAPSHOT, repo, str(limit), "skip-declared" if trust else "check"]
    cache = hub["root"] / home / "hub" / f"models--{repo.replace('/', '--')}"
    return _payload(run_python(args, env=env)), cache


def test_declared_sizes_above_the_limit_download_nothing(hub):
    result, cache = _snapshot(hub, "home-declared", LARGE, 1024 * 1024)
    assert "above the limit of 1.0 MB; nothing was downloaded" in result["error"]
    assert "examples/big.png at 3.0 MB" in result["error"]
    blobs = list((cache / "blobs").glob("*")) if (cache / "blobs").exists() else []
    assert blobs == []


def test_bytes_beyond_the_limit_are_cut_off_while_downloading(hub):
    # The declared-size check is skipped here, as if the server had under-declared: the
    # download itself must stop once the limit is passed, and leave no partial files.
    result, cache = _snapshot(hub, "home-stream", LARGE, 1024 * 1024, trust=True)
    assert "sent more than the limit of 1.0 MB" in result["error"]
    blobs = list((cache / "blobs").glob("*"))
    assert not [b for b in blobs if b.name.endswith(".incomplete")]
    assert sum(b.stat().st_size for b in blobs) < EXTRA_BYTES  # the large file never landed


def test_a_repository_within_the_limit_downloads(hub):
    result, _ = _snapshot(hub, "home-small", SMALL, hub["small_bytes"] + 1024)
    folder = Path(result["folder"])
    assert (folder / "tiledseg.json").is_file() and (folder / "model.weights.h5").is_file()


def test_the_app_bounds_and_allow_lists_typed_hub_repositories(hub):
    cases = [
        {"ref": LARGE, "env": {"TILEDSEG_APP_MAX_MODEL_MB": "1"}},
        {"ref": SMALL, "env": {"TILEDSEG_APP_ALLOWED_MODELS": "tiledseg/*"}},
        {"ref": SMALL, "env": {"TILEDSEG_APP_ALLOWED_MODELS": "org/small"}},
    ]
    env = {**hub["env"], "HF_HOME": str(hub["root"] / "home-app"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    cache = str(hub["root"] / "home-app" / "hub")
    large, refused, allowed = _payload(
        run_python(["-c", _APP_CASES, APP, json.dumps(cases), cache], env=env)
    )
    assert not large["exceptions"] and len(large["errors"]) == 1
    message = large["errors"][0]
    assert f"{LARGE}@main is 3.1 MB to download" in message
    assert "above the limit of 1.0 MB" in message
    assert "TILEDSEG_APP_MAX_MODEL_MB" not in message  # a web user cannot set the server's env
    assert str(hub["root"]) not in message
    assert not (hub["root"] / "home-app" / "hub" / "models--org--large" / "snapshots").exists()
    assert "org/small is not one of them" in refused["errors"][0]
    assert "models--org--small" not in refused["cache"]  # the Hub was not asked
    assert not allowed["errors"] and not allowed["exceptions"]
    assert allowed["subheaders"][0] == f"Model: {SMALL}"
