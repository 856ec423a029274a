"""A process-wide, size-bounded store for large arrays: decoded images and probability maps.

Why not ``st.cache_data``: it pickles every value on each hit (a 6000x4000 probability map is
96 MB, copied on every slider move), and a cached function cannot drive a progress bar created
outside it (Streamlit raises ``CacheReplayClosureError`` when it replays the cached elements).
So the pages look results up here first and run inference, with a progress bar, only on a miss.

Values are shared by every browser session: arrays are stored read-only, so one session can
never change what another sees; a page that needs to modify one makes its own copy.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import numpy as np

__all__ = ["CACHE_MB_ENV", "DEFAULT_CACHE_MB", "ResultStore"]

CACHE_MB_ENV = "TILEDSEG_APP_CACHE_MB"
DEFAULT_CACHE_MB = 1024


def _size_of(value: Any) -> int:
    """Bytes held by the arrays in ``value`` (an array, or a dict/tuple/list of them)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(_size_of(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return sum(_size_of(v) for v in value)
    return 64


def _freeze(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    elif isinstance(value, dict):
        for item in value.values():
            _freeze(item)
    elif isinstance(value, (tuple, list)):
        for item in value:
            _freeze(item)
    return value


class ResultStore:
    """A thread-safe least-recently-used mapping bounded by the bytes of the arrays it holds.

    Args:
        max_bytes: int >= 1 or None. None reads ``$TILEDSEG_APP_CACHE_MB`` (default 1024 MB).
        max_entries: int >= 1 or None (no limit on the count).

    Example:
        >>> store = ResultStore(max_bytes=1000)
        >>> store.put(("probs", "abc"), np.zeros(10, np.float32))["value"].flags.writeable
        False
        >>> store.get(("probs", "abc"))["value"].shape
        (10,)
    """

    def __init__(self, max_bytes: int | None = None, max_entries: int | None = None):
        if max_bytes is None:
            text = os.environ.get(CACHE_MB_ENV, "").strip()
            megabytes = int(text) if text.isdigit() and int(text) > 0 else DEFAULT_CACHE_MB
            max_bytes = megabytes * 1024 * 1024
        if not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"`max_bytes` must be an int >= 1. Received: max_bytes={max_bytes!r}")
        if max_entries is not None and (not isinstance(max_entries, int) or max_entries < 1):
            raise ValueError(
                f"`max_entries` must be an int >= 1 or None. Received: max_entries={max_entries!r}"
            )
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, tuple[dict[str, Any], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> dict[str, Any] | None:
        """The entry stored under ``key`` (a dict), or None; marks it recently used."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(
        self, key: Hashable, value: Any, *, nbytes: int | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Store ``value`` (made read-only) with ``extra`` fields; evict the oldest to fit.

        An entry larger than the whole budget is returned but not kept.

        Args:
            key: hashable; value: an array, or a dict/tuple/list of them, or any object.
            nbytes: int or None, the entry's size when it is not the arrays' (a model).

        Returns:
            dict with ``"value"`` and the ``extra`` fields, as :meth:`get` returns it.
        """
        entry = _freeze({"value": value, **extra})
        size = _size_of(entry) if nbytes is None else max(int(nbytes), 1)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return entry
            self._items[key] = (entry, size)
            self._bytes += size
            while self._items and (
                self._bytes > self.max_bytes
                or (self.max_entries is not None and len(self._items) > self.max_entries)
            ):
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted
        return entry

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes currently held."""
        with self._lock:
            return self._bytes
