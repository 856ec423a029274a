"""Grouped atomic writes and stale temporary files (issue 14, section 6)."""

from __future__ import annotations

import os
import time

import pytest

from tiledseg.atomic import STALE_AFTER_S, atomic_write_group, remove_stale_temporaries


def test_a_group_is_written_whole(tmp_path):
    paths = atomic_write_group({tmp_path / "a.png": b"mask", tmp_path / "a_prob.png": b"probs"})
    assert [p.read_bytes() for p in paths] == [b"mask", b"probs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_prob.png"]


def test_a_failed_rename_rolls_the_group_back(tmp_path):
    (tmp_path / "a_overlay.jpg").mkdir()  # a folder where the second file should go
    with pytest.raises(OSError):
        atomic_write_group({tmp_path / "a.png": b"mask", tmp_path / "a_overlay.jpg": b"jpeg"})
    # No mask without its overlay, and no temporary file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_overlay.jpg"]


def test_a_group_with_a_missing_folder_writes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_group({tmp_path / "a.png": b"mask", tmp_path / "no" / "b.png": b"x"})
    assert list(tmp_path.iterdir()) == []


def test_only_stale_temporaries_are_removed(tmp_path):
    fresh_old_style = tmp_path / ".a.png.0123456789ab.tmp"
    fresh_old_style.write_bytes(b"")
    aged = tmp_path / ".b.png.0123456789ab.tmp"
    aged.write_bytes(b"")
    past = time.time() - STALE_AFTER_S - 10
    os.utime(aged, (past, past))
    mine = tmp_path / f".c.png.{os.getpid()}-0123456789ab.tmp"
    mine.write_bytes(b"")
    unrelated = tmp_path / "d.tmp"
    unrelated.write_bytes(b"")
    assert remove_stale_temporaries(tmp_path) == [aged]
    assert remove_stale_temporaries(tmp_path / "missing") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (fresh_old_style, mine, unrelated)
    )
