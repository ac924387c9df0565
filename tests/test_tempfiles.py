"""Folder locks and stale temp files: a temp file is removed only when its writer is gone.

Real processes hold real locks and real open files: a second Python process holds the folder's flock or keeps
a temp file open, and the tests check that phototag waits, refuses, or cleans up accordingly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phototag.errors import MetadataError
from phototag.exiftool import Exiftool
from phototag.folderlock import FolderBusy, folder_lock, try_folder_lock
from phototag.tempfiles import TempBusy, clean_folder, holder, is_temp_name, own_temp_name, remove_stale

HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""
HOLD_OPEN = """
import sys
f = open(sys.argv[1], "ab")
print("open", flush=True)
sys.stdin.read()
"""


def holding(script: str, path: Path) -> subprocess.Popen[str]:
    """A process that holds ``path`` (a lock or an open file) until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() in ("locked", "open")
    return proc


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)


def age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_own_temp_names_are_short_and_recognised() -> None:
    name = own_temp_name(".tmp")
    assert len(name) == len(".phototag-") + 16 + 4
    assert is_temp_name(name) and is_temp_name(own_temp_name(".xmp"))
    assert is_temp_name("photo.jpg_exiftool_tmp") and is_temp_name(".cat.jpg.1a2b.phototag-tmp")
    for photo in ("cat.jpg", ".phototag.jpg", "phototag-0123456789abcdef.tmp.jpg", "x.xmp"):
        assert not is_temp_name(photo)


def test_folder_lock_excludes_another_process_and_is_released_by_kill(tmp_path: Path) -> None:
    other = holding(HOLD_LOCK, tmp_path)
    try:
        with (
            pytest.raises(FolderBusy, match="another phototag process") as err,
            folder_lock(tmp_path, timeout=0.3),
        ):
            pass
        assert err.value.transient
        with try_folder_lock(tmp_path) as held:
            assert held is False
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait(timeout=10)
    with folder_lock(tmp_path, timeout=5), try_folder_lock(tmp_path) as again:
        assert again is False  # held by us now: a second taker (another descriptor) must wait
    assert not (tmp_path / ".phototag.lock").exists()  # local file systems lock the folder itself


def test_stale_exiftool_temp_blocks_writes_until_removed(tmp_path: Path, photos: Path) -> None:
    photo = photos / "cat.jpg"
    stale = photos / "cat.jpg_exiftool_tmp"
    stale.write_bytes(b"half a jpeg")
    with Exiftool(timeout=20) as et:
        with pytest.raises(MetadataError, match="Temporary file already exists"):
            et.write(photo, "-XMP-dc:Subject+=x")
        age(stale, 60)
        assert remove_stale(stale, photo=photo) is True
        et.write(photo, "-XMP-dc:Subject+=x")
        assert et.read_tags(photo, "XMP-dc:Subject") == {"XMP-dc:Subject": ["x"]}


def test_a_temp_file_that_a_live_process_has_open_is_never_removed(photos: Path) -> None:
    photo = photos / "cat.jpg"
    live = photos / "cat.jpg_exiftool_tmp"
    live.write_bytes(b"being written")
    age(live, 3600)  # old, but a process still has it open: its writer is not gone
    writer = holding(HOLD_OPEN, live)
    try:
        assert holder(live) == writer.pid
        with pytest.raises(TempBusy, match=rf"cat\.jpg: .*open in process {writer.pid}") as err:
            remove_stale(live, photo=photo, wait=0.3)
        assert err.value.transient and err.value.path == photo
        assert clean_folder(photos) == []
        assert live.read_bytes() == b"being written"
    finally:
        release(writer)
    assert holder(live) is None
    assert clean_folder(photos) == [live]


def test_young_temp_files_are_spared_and_a_locked_folder_is_not_cleaned(photos: Path) -> None:
    young = photos / own_temp_name(".tmp")
    young.write_bytes(b"{}")
    assert clean_folder(photos) == []  # modified just now: a writer may be between write and rename
    age(young, 60)
    other = holding(HOLD_LOCK, photos)
    try:
        assert clean_folder(photos) == []  # a phototag writer works in this folder right now
    finally:
        release(other)
    assert clean_folder(photos) == [young]
    assert sorted(p.name for p in photos.iterdir()) == sorted(
        ["astronaut.jpg", "cat.jpg", "coffee.png", "grace_hopper.jpg", "motorcycle.jpg", "rocket.jpg"]
    )


def test_only_temp_names_are_ever_removed(photos: Path) -> None:
    lookalikes = ["notes.tmp", "cat.jpg.xmp", ".hidden.jpg", "phototag-tmp.jpg", "cat.jpg_exiftool_tmp.jpg"]
    for name in lookalikes:
        (photos / name).write_bytes(b"user data")
        age(photos / name, 3600)
    assert clean_folder(photos) == []
    assert all((photos / name).read_bytes() == b"user data" for name in lookalikes)
