"""model_zoo against a real Hugging Face-compatible server (olah) through HF_ENDPOINT.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, so every
Hub call runs in a fresh Python process with the environment a user would set. The tests run
in file order: the last one stops the server and loads from the cache.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from zoo_fixtures import free_port, make_run_dir, olah_server, run_python  # noqa: F401

from model_zoo.cli import main

pytestmark = pytest.mark.hub

REPO = "org/tiny"
_CLI_BATCH = """
import contextlib, io, json, sys
from model_zoo.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
print("@@" + json.dumps(results))
"""


@pytest.fixture(scope="module")
def hub(request, tmp_path_factory):
    """Two commits of a staged tiny model in olah (thresholds 0.5 then 0.6), a cache folder."""
    server = request.getfixturevalue("olah_server")
    root = tmp_path_factory.mktemp("hub")
    staged = []
    for seed, threshold in ((0, 0.5), (1, 0.6)):
        run = make_run_dir(root / "runs", seed=seed, threshold=threshold)
        out = root / f"staged-{seed}"
        argv = ["publish", str(run), "--repo-id", REPO, "--dry-run", "--stage-dir", str(out)]
        assert main(argv) == 0
        staged.append(out)
    # A file outside the zoo layout: `pull` must not download it.
    extra = root / "extra"
    shutil.copytree(staged[0], extra)
    (extra / "checkpoints").mkdir()
    (extra / "checkpoints" / "old.bin").write_bytes(b"x" * 1000)
    first = server.commit(REPO, extra, "first")
    second = server.commit(REPO, staged[1], "second")
    future = root / "future"
    shutil.copytree(staged[1], future)
    meta = json.loads((future / "tiledseg.json").read_text())
    (future / "tiledseg.json").write_text(json.dumps({**meta, "format_version": "2.0"}))
    server.commit("org/future", future, "from the future")
    registry = root / "registry.json"
    registry.write_text(
        json.dumps(
            {"models": [{"id": "tiny-hub", "repo_id": REPO, "revision": first, "description": ""}]}
        )
    )
    return {
        "server": server,
        "first": first,
        "second": second,
        "staged": staged,
        "root": root,
        "env": {
            "HF_ENDPOINT": server.endpoint,
            "HF_HOME": str(root / "hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "TILEDSEG_REGISTRY": str(registry),
            "TILEDSEG_BUNDLED_DIR": str(root / "no-bundled"),
            "HF_HUB_OFFLINE": None,
        },
    }


def _cli_batch(argvs: list[list[str]], env: dict) -> list[dict]:
    result = run_python(["-c", _CLI_BATCH, json.dumps(argvs)], env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = [line for line in result.stdout.splitlines() if line.startswith("@@")][-1]
    return json.loads(payload[2:])


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_pull_pins_a_revision_and_downloads_only_the_layout(hub):
    result = run_python(["-m", "model_zoo", "pull", f"{REPO}@{hub['first']}"], env=hub["env"])
    assert result.returncode == 0, result.stderr[-3000:]
    pinned = Path(_last_line(result.stdout))
    assert pinned.name == hub["first"] and pinned.is_relative_to(hub["env"]["HF_HOME"])
    assert json.loads((pinned / "tiledseg.json").read_text())["threshold"] == 0.5
    assert (pinned / "golden" / "output.npy").is_file() and (pinned / "selection.json").is_file()
    assert not (pinned / "checkpoints").exists()

    latest, by_ref = _cli_batch(
        [["pull", f"hf://{REPO}"], ["pull", "tiny-hub", "--revision", hub["second"][:12]]],
        hub["env"],
    )
    assert latest["code"] == 0 and by_ref["code"] == 0
    latest_dir = Path(_last_line(latest["out"]))
    assert latest_dir.name == hub["second"]
    assert json.loads((latest_dir / "tiledseg.json").read_text())["threshold"] == 0.6
    assert Path(_last_line(by_ref["out"])).name == hub["second"]


def test_plain_keras_loads_the_hub_repo(hub):
    script = (
        "import sys, keras, numpy as np\n"
        f"model = keras.saving.load_model('hf://{REPO}')\n"
        "x = np.load(sys.argv[1]).astype('float32')\n"
        "np.save(sys.argv[2], keras.ops.convert_to_numpy(model(x)))\n"
    )
    staged = hub["staged"][1]
    out = hub["root"] / "keras-out.npy"
    env = {**hub["env"], "HF_HOME": str(hub["root"] / "hf-home-keras")}
    result = run_python(["-c", script, str(staged / "golden" / "input.npy"), str(out)], env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(np.load(out), np.load(staged / "golden" / "output.npy"), atol=1e-5)


def test_zoo_load_by_registry_id_and_list_shows_it_cached(hub):
    script = (
        "import json, model_zoo\n"
        "z = model_zoo.load('tiny-hub')\n"
        "h = model_zoo.load('hf://org/tiny')\n"
        "print('@@' + json.dumps([z.revision, z.meta.threshold, z.source, z.repo_id,\n"
        "                         h.revision, h.meta.threshold, z.card[:3]]))\n"
    )
    result = run_python(["-c", script], env=hub["env"])
    assert result.returncode == 0, result.stderr[-3000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("@@")][-1]
    revision, threshold, source, repo_id, latest, latest_threshold, card = json.loads(line[2:])
    assert (revision, threshold, source, repo_id) == (hub["first"], 0.5, "hub", REPO)
    assert (latest, latest_threshold, card) == (hub["second"], 0.6, "---")
    (listing,) = _cli_batch([["list", "--json"]], hub["env"])
    (entry,) = json.loads(listing["out"])
    assert entry["id"] == "tiny-hub" and entry["offline"] is True
    assert entry["revision"] == hub["first"] and entry["metric"].startswith("dice 0.710")


def test_tiledseg_predict_with_a_hub_model(hub, shared_data, tmp_path):
    pytest.importorskip(
        "tiledseg.cli", reason="tiledseg.cli (the lead's CLI) is not importable yet"
    )
    import cv2

    image = sorted((shared_data / "isic2017" / "valid" / "images").glob("*.jpg"))[0]
    out = tmp_path / "masks"
    result = run_python(
        ["-m", "tiledseg", "predict", "--model", f"hf://{REPO}", "--out", str(out), str(image)],
        env=hub["env"],
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    mask = cv2.imread(str(out / f"{image.stem}.png"), cv2.IMREAD_UNCHANGED)
    assert mask is not None and mask.shape[:2] == cv2.imread(str(image)).shape[:2]


def test_hub_errors_say_what_to_do(hub, tmp_path):
    endpoint = hub["server"].endpoint
    missing_rev = "0" * 40
    not_found, bad_revision, too_new, upload = _cli_batch(
        [
            ["pull", "org/missing"],
            ["pull", f"{REPO}@{missing_rev}"],
            ["export", "org/future", "--out", str(tmp_path / "serving" / "f" / "1")],
            [
                "publish",
                str(make_run_dir(tmp_path)),
                "--repo-id",
                "org/new",
                "--stage-dir",
                str(tmp_path / "stage"),
            ],
        ],
        hub["env"],
    )
    for result in (not_found, bad_revision, too_new, upload):
        # One "error:" line (after any download progress bar), never a traceback.
        assert result["code"] == 2 and re.search(r"(^|\n)error: ", result["err"]), result
        assert "Traceback" not in result["err"]
    assert f"No model repository org/missing on {endpoint}" in not_found["err"]
    assert "HF_TOKEN" in not_found["err"]
    assert f"Revision not found: {REPO}@{missing_rev}" in bad_revision["err"]
    assert "format_version 2.0, newer than this tiledseg supports (1.x)" in too_new["err"]
    # Validation passed and the staged folder stayed; the upload itself reached the server.
    assert f"Upload to org/new on {endpoint} failed" in upload["err"]
    assert (tmp_path / "stage" / "tiledseg.json").is_file()


def test_offline_or_unreachable_and_not_cached(hub, tmp_path):
    fresh = {**hub["env"], "HF_HOME": str(tmp_path / "empty-home")}
    (offline,) = _cli_batch([["pull", REPO]], {**fresh, "HF_HUB_OFFLINE": "1"})
    assert offline["code"] == 2
    assert "not in the Hugging Face cache" in offline["err"] and "HF_HUB_OFFLINE" in offline["err"]
    assert f"python -m model_zoo pull {REPO}@main" in offline["err"]

    dead = f"http://127.0.0.1:{free_port()}"
    (unreachable,) = _cli_batch([["pull", REPO]], {**fresh, "HF_ENDPOINT": dead})
    assert unreachable["code"] == 2
    assert f"Cannot reach the Hugging Face Hub at {dead}" in unreachable["err"]


def test_after_the_server_stops_models_load_from_the_cache(hub):
    # Runs last in this file: it stops the module's server. Pull first, so it also runs alone.
    cache = Path(hub["env"]["HF_HOME"]) / "hub" / f"models--{REPO.replace('/', '--')}"
    cached = all((cache / "snapshots" / hub[key]).is_dir() for key in ("first", "second"))
    if not (cached and (cache / "refs" / "main").read_text() == hub["second"]):
        pulls = _cli_batch([["pull", REPO], ["pull", f"{REPO}@{hub['first']}"]], hub["env"])
        assert [p["code"] for p in pulls] == [0, 0]
    hub["server"].stop()
    script = (
        "import json, model_zoo\n"
        "a = model_zoo.load('hf://org/tiny')\n"
        f"b = model_zoo.load('org/tiny@{hub['first']}')\n"
        "print('@@' + json.dumps([a.revision, a.meta.threshold, b.revision, b.meta.threshold]))\n"
    )
    for offline in ("1", None):  # the cache is read first, with or without HF_HUB_OFFLINE
        result = run_python(["-c", script], env={**hub["env"], "HF_HUB_OFFLINE": offline})
        assert result.returncode == 0, result.stderr[-3000:]
        line = [x for x in result.stdout.splitlines() if x.startswith("@@")][-1]
        assert json.loads(line[2:]) == [hub["second"], 0.6, hub["first"], 0.5]
