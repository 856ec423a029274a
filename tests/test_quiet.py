"""TensorFlow's native start-up notices kept off the command lines' stderr, and nothing else."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2

from tiledseg.io import read_image, write_image

NOTICES = ("absl::InitializeLog", "I0000", "cuInit", "cuda drivers", "oneDNN")


def test_the_filter_drops_the_notices_and_writes_back_everything_else():
    script = textwrap.dedent(
        """
        import os, sys, warnings
        from tiledseg.quiet import native_stderr_filtered

        print("before", file=sys.stderr, flush=True)
        with native_stderr_filtered():
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called "
                        b"are written to STDERR\\n")
            os.write(2, b"I0000 00:00:1796411677.025593    9365 port.cc:153] oneDNN custom "
                        b"operations are on.\\n")
            os.write(2, b"E0000 00:00:1796411685.224532    9411 cuda_platform.cc:52] failed "
                        b"call to cuInit: INTERNAL\\n")
            os.write(2, b"E0000 00:00:1796411685.224532    9411 op_kernel.cc:1] a real error\\n")
            warnings.warn("a Python warning")
            print("from Python", file=sys.stderr)
        print("after", file=sys.stderr)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = result.stderr.splitlines()
    assert lines[0] == "before" and lines[-1] == "after"
    assert "op_kernel.cc:1] a real error" in result.stderr
    assert "UserWarning: a Python warning" in result.stderr and "from Python" in lines
    assert "absl::InitializeLog" not in result.stderr and "cuInit" not in result.stderr
    assert "oneDNN" not in result.stderr


def test_predict_prints_no_tensorflow_start_up_notices(shared_data, tmp_path):
    slide = shared_data / "bloodcell" / "valid" / "images"
    image = read_image(sorted(slide.glob("*.jpg"))[0])
    small = tmp_path / "slide.png"
    write_image(small, cv2.resize(image, (400, 300), interpolation=cv2.INTER_AREA))
    command = [sys.executable, "-m", "tiledseg", "predict", "--model", "unet-bloodcell"]
    result = subprocess.run(
        [*command, "--out", str(tmp_path / "out"), str(small)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "slide.png: 400x300 px" in result.stdout
    assert not [notice for notice in NOTICES if notice in result.stderr], result.stderr


def test_the_training_commands_start_without_the_notices():
    result = subprocess.run(
        [sys.executable, "-m", "training.train"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2
    assert "error: give a CONFIG file" in result.stderr
    assert not [notice for notice in NOTICES if notice in result.stderr], result.stderr
