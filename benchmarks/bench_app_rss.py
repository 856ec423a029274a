"""Resident memory of the app's server over one scripted browser session of many images.

Usage:
    python benchmarks/bench_app_rss.py --images 50 --json benchmarks/results/app_rss.json

Starts ``streamlit run app.py`` (the bundled default model, offline) and drives its Predict page
in Chromium (``/usr/bin/chromium``) through Playwright, as a visitor would: for each image, upload
it (removing the previous one first), wait for the overlay, then move the threshold slider (a new
mask from the cached probabilities). The images are real: every ``isic2017/fullres`` photo
(1024x768 up to 4288x2848) and then ``isic2017/valid`` images (short side 256 px) from
``../shared/data``, up to ``--images``. The server's resident set size (RSS) is sampled every
0.2 s; the numbers printed are its RSS once the page is ready, after each image, and the peak.
Caches are bounded by size (``TILEDSEG_APP_CACHE_MB``, ``TILEDSEG_APP_MODEL_CACHE_MB``), so the
peak should stay flat once they are full; the target is under 3 GB (issue 14).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CHROMIUM = "/usr/bin/chromium"
LIMIT_MB = 3072
WAIT_MS = 300_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _images(count: int) -> list[Path]:
    fullres = sorted((DATA / "isic2017" / "fullres" / "images").glob("*.jpg"))
    small = sorted((DATA / "isic2017" / "valid" / "images").glob("*.jpg"))
    chosen = (fullres + small)[:count]
    if len(chosen) < count:
        raise SystemExit(f"only {len(chosen)} images under {DATA}/isic2017; asked for {count}")
    return chosen


class RssSampler:
    """The peak RSS of a process (and its children), sampled in a thread."""

    def __init__(self, pid: int, every_s: float = 0.2):
        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        total = self.process.memory_info().rss
        for child in self.process.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += child.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.rss())
            except psutil.NoSuchProcess:
                return
            time.sleep(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def _start_server(port: int, log: Path, extra_env: dict[str, str]) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", HF_HUB_OFFLINE="1", **extra_env)
    env["PYTHONPATH"] = str(REPO)
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
        "--server.headless", "true", "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    server = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"streamlit exited with code {server.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the app did not answer its health check within 180 s")


def _idle(page) -> None:
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")


def _remove_uploads(page) -> None:
    """Remove the uploaded files (the uploader takes several; a visitor clears the last one)."""
    delete = page.locator('[data-testid="stFileChipDeleteBtn"] button')
    while delete.count():
        delete.first.click()
        page.wait_for_timeout(200)
    page.get_by_text("Upload an image, or choose").wait_for()  # the page ran without it
    _idle(page)


def _show_problem(page, image: Path) -> None:
    texts = page.locator('[data-testid="stAlert"], [data-testid="stException"]').all_inner_texts()
    page.screenshot(path="/tmp/bench_app_rss_failure.png")
    print(f"no overlay for {image.name}; the page shows: {texts}", flush=True)


def _threshold_slider(page):
    slider = page.locator('[data-testid="stSlider"]').filter(
        has=page.get_by_text(re.compile(r"^Threshold$"))
    )
    return slider.get_by_role("slider")


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    images = _images(args.images)
    port = _free_port()
    log = Path(args.log)
    extra = {}
    if args.cache_mb:
        extra["TILEDSEG_APP_CACHE_MB"] = str(args.cache_mb)
    server = _start_server(port, log, extra)
    rows = []
    try:
        with RssSampler(server.pid) as sampler, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            page.goto(f"http://127.0.0.1:{port}/predict")
            page.get_by_role("heading", name="Predict", level=1).wait_for()
            _idle(page)
            ready = sampler.rss()
            print(f"server ready on the Predict page: RSS {ready / 2**20:.0f} MB", flush=True)
            uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
            started = time.perf_counter()
            for number, image in enumerate(images, 1):
                begin = time.perf_counter()
                _remove_uploads(page)
                uploader.set_input_files(image)
                try:
                    page.get_by_text(f"Overlay · {image.name}").wait_for()
                except Exception:
                    _show_problem(page, image)
                    raise
                _idle(page)
                slider = _threshold_slider(page)
                slider.focus()
                for _ in range(args.slider_steps):
                    page.keyboard.press("ArrowRight")
                _idle(page)
                rss = sampler.rss()
                rows.append(
                    {
                        "image": image.name,
                        "folder": image.parent.parent.name,
                        "seconds": round(time.perf_counter() - begin, 2),
                        "rss_mb": round(rss / 2**20, 1),
                        "peak_mb": round(sampler.peak / 2**20, 1),
                    }
                )
                print(
                    f"{number:3d} {image.parent.parent.name:8s} {image.name:20s} "
                    f"{rows[-1]['seconds']:6.1f} s  RSS {rows[-1]['rss_mb']:7.0f} MB  "
                    f"peak {rows[-1]['peak_mb']:7.0f} MB",
                    flush=True,
                )
            total = time.perf_counter() - started
            browser.close()
        peak = sampler.peak
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    summary = {
        "images": len(rows),
        "ready_mb": round(ready / 2**20, 1),
        "final_mb": rows[-1]["rss_mb"] if rows else None,
        "peak_mb": round(peak / 2**20, 1),
        "limit_mb": LIMIT_MB,
        "under_limit": peak / 2**20 < LIMIT_MB,
        "session_seconds": round(total, 1),
        "cache_mb": args.cache_mb or "default",
        "cpu": f"{psutil.cpu_count()} logical CPUs",
    }
    print(json.dumps(summary, indent=2))
    return {"summary": summary, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50, help="images in the session (50)")
    parser.add_argument("--slider-steps", type=int, default=5, help="threshold steps per image")
    parser.add_argument("--cache-mb", type=int, help="TILEDSEG_APP_CACHE_MB for the server")
    parser.add_argument("--json", type=Path, help="write the rows and the summary here")
    parser.add_argument("--log", default="/tmp/bench_app_rss_streamlit.log", help="server log")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
