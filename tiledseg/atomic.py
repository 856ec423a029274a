"""Write files so that no reader, crash or Ctrl-C ever sees one half-written.

Each file goes to a hidden temporary file beside its destination (``.<name>.<pid>-<hex>.tmp``),
is fsynced, then renamed over the destination in one step. :func:`atomic_write_group` does this
for several files that belong together (one image's mask, overlay and probabilities): all are
written first, then all are renamed with Ctrl-C held back, so either every file of the group is
replaced or none is. A process killed outright (SIGKILL, power loss) can still leave temporary
files behind; :func:`remove_stale_temporaries` removes those of processes that no longer run,
and any older than an hour.
"""

from __future__ import annotations

__all__ = ["STALE_AFTER_S", "atomic_write_bytes", "atomic_write_group", "remove_stale_temporaries"]

import contextlib
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

STALE_AFTER_S = 3600
# ".<name>.<pid>-<hex>.tmp" (this version) and ".<name>.<hex>.tmp" (earlier versions).
_TEMP_PATTERN = re.compile(r"^\..+\.(?:(?P<pid>\d+)-)?[0-9a-f]{12}\.tmp$")


def _check_bytes(data: object) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"`data` must be bytes. Received: data of type {type(data).__name__}")


def _temporary_beside(path: Path) -> Path:
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot write {path}: directory {path.parent} does not exist; create it first."
        )
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp"


def _write_temporary(path: Path, data: bytes) -> Path:
    temp = _temporary_beside(path)
    # os.open with 0o666 lets the umask set the final permissions (mkstemp would give 0o600).
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise
    return temp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` all at once: never half-written, even if interrupted.

    The bytes go to a temporary file beside `path`, are fsynced, then replace `path` in one
    step. On any error the temporary file is removed and an existing `path` is untouched.
    Returns the path. Raises TypeError if `data` is not bytes, FileNotFoundError if the
    directory does not exist. Example: ``atomic_write_bytes("out/report.json", b"{}")``.
    """
    _check_bytes(data)
    return atomic_write_group({path: data})[0]


def atomic_write_group(files: Mapping[str | os.PathLike, bytes]) -> list[Path]:
    """Write several files that belong together: all of them replace their paths, or none does.

    Every file is first written to its temporary file; only when all are on disk are they
    renamed, with Ctrl-C deferred until the renames are done. If a rename fails (say, a
    directory stands where a file should go), the files of the group already moved are removed,
    so no destination is left holding this group's file beside another group's.

    Args:
        files: mapping of path -> bytes.

    Returns:
        list of Path, in the mapping's order.

    Raises:
        TypeError: a value is not bytes.
        FileNotFoundError: a destination's directory does not exist.
        OSError: a write or rename failed; no temporary file is left.

    Example:
        >>> atomic_write_group({"out/a.png": mask_png, "out/a_overlay.jpg": jpeg})  # doctest: +SKIP
    """
    items = [(Path(path), data) for path, data in files.items()]
    for _, data in items:
        _check_bytes(data)
    temps: list[Path] = []
    moved: list[Path] = []
    try:
        for path, data in items:
            temps.append(_write_temporary(path, data))
        with _sigint_deferred():
            for temp, (path, _) in zip(temps, items, strict=True):
                os.replace(temp, path)
                moved.append(path)
    except BaseException:
        for temp in temps[len(moved) :]:
            with contextlib.suppress(OSError):
                os.remove(temp)
        if len(moved) < len(items):
            for path in moved:
                with contextlib.suppress(OSError):
                    os.remove(path)
        raise
    return [path for path, _ in items]


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C for the few microseconds of the renames (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives Python's KeyboardInterrupt
        return
    received: list[tuple[int, object]] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append((number, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(*received[0])


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, still running
    return True


def remove_stale_temporaries(folder: str | os.PathLike, *, now: float | None = None) -> list[Path]:
    """Remove temporary files that killed writers left in `folder`; return what was removed.

    A temporary file (``.<name>.<pid>-<hex>.tmp``) is stale when the process that wrote it no
    longer runs, or when it is older than :data:`STALE_AFTER_S` seconds (files of earlier
    versions, ``.<name>.<hex>.tmp``, carry no process id). Other files are never touched, and a
    missing folder gives an empty list.

    Example: ``remove_stale_temporaries("out")`` -> ``[Path("out/.a.png.4242-1f2e3d4c5b6a.tmp")]``.
    """
    folder = Path(folder)
    now = time.time() if now is None else now
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        entries = list(os.scandir(folder))
        for entry in entries:
            match = _TEMP_PATTERN.match(entry.name)
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            pid = match.group("pid")
            try:
                old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
            except OSError:
                continue
            if old or (pid is not None and not _process_alive(int(pid))):
                with contextlib.suppress(OSError):
                    os.remove(entry.path)
                    removed.append(Path(entry.path))
    return removed
