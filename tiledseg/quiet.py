"""Keras and its backend started without TensorFlow's native start-up lines on stderr.

TensorFlow 2.21 logs through absl before absl's logging is initialised, and such lines ignore
``TF_CPP_MIN_LOG_LEVEL`` (tensorflow/tensorflow#100442): every command would start with
``oneDNN custom operations are on``, ``Could not find cuda drivers`` and, on a machine without
a GPU, an ``E0000 ... failed call to cuInit`` that reads like a failure. The command lines import
the backend here, with the process's stderr (file descriptor 2, where native code writes)
captured, and write back every captured line that is not one of those known notices, so a real
error or a Python warning raised meanwhile still reaches the user.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

__all__ = ["STARTUP_NOISE", "import_keras_quietly", "native_stderr_filtered"]

# The notices a CPU-only TensorFlow prints on every start; anything else is written back.
STARTUP_NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
    rb"|E\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] (failed call to cuInit"
    rb"|Unable to register cu\w+ factory)"
    rb"|To enable the following instructions: "
)


@contextmanager
def native_stderr_filtered(noise: re.Pattern[bytes] = STARTUP_NOISE) -> Iterator[None]:
    """Capture file descriptor 2 in the block; then write back the lines ``noise`` does not match.

    Where stderr has no file descriptor (some embedders), the block runs unfiltered.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().splitlines(keepends=True)
            kept = b"".join(line for line in lines if not noise.match(line))
            if kept:
                os.write(2, kept)


def import_keras_quietly() -> ModuleType:
    """Import Keras and start its backend's device, dropping TensorFlow's start-up notices.

    Safe to call more than once.

    Returns:
        The ``keras`` module.
    """
    with native_stderr_filtered():
        import keras

        # The first tensor starts the backend's devices (TensorFlow: cuInit), which logs too.
        keras.ops.convert_to_tensor(0)
    return keras
