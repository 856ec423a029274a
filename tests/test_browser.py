"""End to end in a real browser: `streamlit run app.py` driven by Playwright and Chromium.

A fixture starts the app on a free port (as README's first command does) and waits for its
health endpoint. The app serves the bundled default model when one is bundled
(``model_zoo/bundled/unet-isic2017``, or in ``$TILEDSEG_BUNDLED_DIR``), else a small real Keras
bundle made here.

Screenshots of every page are taken on every run and must encode under 200 KB; with
``TILEDSEG_UPDATE_SCREENSHOTS=1`` they are also written to ``docs/screenshots/`` (commit them).
In CI (``CI`` set) these tests fail, rather than skip, when Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from test_app_support import MODEL_ID, app_environment, make_bundle

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO / "docs" / "screenshots"
SCREENSHOT_WIDTH = 1100
SCREENSHOT_MAX_BYTES = 200_000
STEM = "ISIC_0015124"
WAIT_MS = 180_000  # the server's first model load and trace share a 2-core CPU with others


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (tools/test.sh installs Chromium)")
    pytest.skip(f"{reason}: install it with `apt-get install -y chromium` to run browser tests")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        _missing(f"Chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (`pip install playwright`)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def zoo_root(tmp_path_factory):
    """The bundled zoo the server uses: the checkout's (or ``$TILEDSEG_BUNDLED_DIR``) when it
    has the default model, else a small real bundle made here."""
    given = os.environ.get("TILEDSEG_BUNDLED_DIR", "").strip()
    real = Path(given) if given else REPO / "model_zoo" / "bundled"
    if (real / MODEL_ID / "config.json").is_file():
        yield None
        return
    root = tmp_path_factory.mktemp("zoo")
    make_bundle(root)
    yield root


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the app did not answer {url}/_stcore/health within {timeout} s")


@pytest.fixture(scope="module")
def app_url(zoo_root, tmp_path_factory):
    port = _free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", HF_HUB_OFFLINE="1")
    if zoo_root is not None:
        registry = zoo_root / "registry.json"
        registry.write_text('{"format_version": "1.0", "models": []}', encoding="utf-8")
        env.update(TILEDSEG_BUNDLED_DIR=str(zoo_root), TILEDSEG_REGISTRY=str(registry))
    log = (tmp_path_factory.mktemp("server") / "streamlit.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "streamlit", "run", "app.py",
            "--server.port", str(port), "--server.headless", "true",
            "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
        ],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.goto(app_url)
    yield tab
    context.close()


def _idle(page) -> None:
    """Wait until the app's script has finished running (no "Running..." indicator)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")


def _open(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title, level=1).wait_for()
    _idle(page)


def _metric(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(f"^{label}$"))
    )
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _screenshot(page, name: str) -> None:
    """A small PNG of the viewport; written to docs/screenshots when asked."""
    import cv2

    shot = cv2.imdecode(np.frombuffer(page.screenshot(), np.uint8), cv2.IMREAD_COLOR)
    height = round(shot.shape[0] * SCREENSHOT_WIDTH / shot.shape[1])
    small = cv2.resize(shot, (SCREENSHOT_WIDTH, height), interpolation=cv2.INTER_AREA)
    data = _compress_png(small)
    assert len(data) < SCREENSHOT_MAX_BYTES, f"{name}.png is {len(data):,} bytes"
    if os.environ.get("TILEDSEG_UPDATE_SCREENSHOTS") == "1":
        from tiledseg.io import atomic_write_bytes

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(SCREENSHOTS / f"{name}.png", data)


def _compress_png(bgr: np.ndarray) -> bytes:
    import io

    from PIL import Image

    rgb = Image.fromarray(bgr[..., ::-1])
    # A 256-colour palette keeps UI screenshots sharp at a fraction of the RGB size.
    palette = rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _expected(zoo_root, shared_data, stem: str = STEM) -> tuple[np.ndarray, dict]:
    """The image's mask and metrics computed with tiledseg and model_zoo, not the app."""
    import contextlib

    import model_zoo
    from tiledseg import predict_tiled
    from tiledseg.io import read_image, read_mask
    from tiledseg.metrics import segmentation_metrics
    from tiledseg.postprocess import postprocess

    folder = shared_data / "isic2017" / "valid"
    image = read_image(folder / "images" / f"{stem}.jpg")
    truth = read_mask(folder / "masks" / f"{stem}.png")
    scope = app_environment(zoo_root) if zoo_root is not None else contextlib.nullcontext()
    with scope:
        zoo = model_zoo.load(MODEL_ID)
    # The app applies every recommended setting, test-time augmentation included.
    probabilities = predict_tiled(image, zoo, tta=zoo.meta.tta)
    mask = postprocess(probabilities, threshold=zoo.meta.threshold, **zoo.meta.postprocess)
    return mask, segmentation_metrics(mask, truth)


def test_predict_upload_overlay_and_mask_download(page, shared_data, zoo_root, tmp_path):
    _idle(page)
    page.get_by_role("heading", name="tiledseg", level=1).wait_for()
    page.locator('[data-testid="stMetric"]').first.wait_for()  # the model summary loaded
    _screenshot(page, "home")

    _open(page, "Predict")
    image_path = shared_data / "isic2017" / "valid" / "images" / f"{STEM}.jpg"
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(image_path)
    page.get_by_text(f"Overlay · {STEM}.jpg").wait_for()
    _idle(page)
    _screenshot(page, "predict")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Mask PNG").click()
    download = download_info.value
    assert download.suggested_filename == f"{STEM}_mask.png"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    from tiledseg.io import read_image, read_mask

    mask = read_mask(saved)
    assert mask.shape == read_image(image_path).shape[:2]  # full size, not the preview
    expected_mask, _ = _expected(zoo_root, shared_data)
    assert np.array_equal(mask, expected_mask)


def test_evaluate_reads_the_dice_of_an_image_and_its_mask(page, shared_data, zoo_root):
    _idle(page)
    _open(page, "Evaluate")
    folder = shared_data / "isic2017" / "valid"
    uploaders = page.locator('[data-testid="stFileUploader"] input[type="file"]')
    uploaders.nth(0).set_input_files(folder / "images" / f"{STEM}.jpg")
    _idle(page)
    uploaders.nth(1).set_input_files(folder / "masks" / f"{STEM}.png")
    page.get_by_text("Errors on one image").wait_for()
    _idle(page)
    _, metrics = _expected(zoo_root, shared_data)
    assert _metric(page, "Dice") == f"{metrics['dice']:.4f}"
    assert _metric(page, "Jaccard") == f"{metrics['jaccard']:.4f}"
    _screenshot(page, "evaluate")


def test_tiling_lab_and_model_zoo_pages(page, shared_data):
    _idle(page)
    _open(page, "Tiling Lab")
    folder = shared_data / "isic2017" / "valid"
    uploaders = page.locator('[data-testid="stFileUploader"] input[type="file"]')
    uploaders.nth(0).set_input_files(folder / "images" / f"{STEM}.jpg")
    _idle(page)
    uploaders.nth(1).set_input_files(folder / "masks" / f"{STEM}.png")
    page.get_by_role("heading", name="Seam maps").wait_for()
    _idle(page)
    # Small tiles, so the image at the model's scale is cut into several: seams show up.
    tile = page.get_by_role("slider").first
    tile.focus()
    for _ in range(10):  # the Tiling Lab's tile choices
        if tile.get_attribute("aria-valuetext") == "128":
            break
        tile.press("ArrowLeft")
    page.get_by_role("button", name="Compare").click()
    page.get_by_text("tiles of 128x128 px").wait_for()
    _idle(page)
    assert _metric(page, "Blended tiling time").endswith(" s")
    assert 0.0 < float(_metric(page, "Blended tiling Dice")) <= 1.0
    comparison = page.locator('[data-testid="stImage"]').first
    comparison.evaluate("element => element.scrollIntoView({block: 'center'})")
    _screenshot(page, "tiling_lab")

    _open(page, "Model Zoo")
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    page.get_by_text("Model card").wait_for()
    _idle(page)
    assert _metric(page, "Source") == "bundled"
    _screenshot(page, "model_zoo")


def test_two_sessions_at_once_keep_their_own_results(browser, app_url, shared_data, zoo_root):
    """Two tabs upload different images at the same time; each sees its own mask."""
    stems = (STEM, "ISIC_0014937")
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in stems]
    try:
        tabs = []
        for context in contexts:
            tab = context.new_page()
            tab.set_default_timeout(WAIT_MS)
            tab.goto(f"{app_url}/predict")
            tab.get_by_role("heading", name="Predict", level=1).wait_for()
            _idle(tab)
            tabs.append(tab)
        folder = shared_data / "isic2017" / "valid" / "images"
        for tab, stem in zip(tabs, stems, strict=True):  # both start before either finishes
            tab.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
                folder / f"{stem}.jpg"
            )
        for tab, stem in zip(tabs, stems, strict=True):
            tab.get_by_text(f"Overlay · {stem}.jpg").wait_for()
            _idle(tab)
            mask, _ = _expected(zoo_root, shared_data, stem)
            assert _metric(tab, "Area") == f"{100 * mask.mean():.2f} %"
    finally:
        for context in contexts:
            context.close()
