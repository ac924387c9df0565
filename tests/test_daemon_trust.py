"""The daemon against hostile names, special files and a full disk (issue 7): it keeps running, reports each
problem with the photo's name, and retries what is transient until it works.

Runs the real ``phototag watch`` with the fast counting analyzer (see test_daemon.py's harness).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_daemon import as_str, daemons, make_jpegs, plugin_path  # noqa: F401  (fixtures)
from waiting import wait_for


def test_names_that_are_not_utf8_and_special_files_do_not_stop_the_daemon(tmp_path: Path, daemons) -> None:  # noqa: F811
    root = tmp_path / "photos"
    good = make_jpegs(root, 2)
    odd_at_start = root / os.fsdecode(b"d\xe9j\xe0-vu.jpg")
    shutil.copy(good[0], odd_at_start)
    os.mkfifo(root / "pipe.jpg")
    d = daemons([root], plugins="daemon,sidecar,xmp,counting")
    d.start()
    d.wait_done([*good, odd_at_start])
    arriving = root / os.fsdecode(b"\xff\xfe-new.jpg")
    make_jpegs(tmp_path / "src", 1, start=7)[0].rename(arriving)
    d.wait_done([*good, odd_at_start, arriving])
    assert (root / (os.fsdecode(b"\xff\xfe-new.jpg") + ".xmp")).is_file()
    assert wait_for(lambda: str(root / "pipe.jpg") in d.failed(), 20), d.failed()
    assert "not a regular file (a FIFO" in d.failed()[str(root / "pipe.jpg")]
    status = d.status_json()
    assert status["daemon"]["alive"]
    assert d.proc is not None and d.proc.poll() is None
    assert d.stop() == 0


@contextlib.contextmanager
def small_disk(folder: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` mounted at ``folder`` (needs root; the test is skipped where mounting fails)."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` up to the last byte; returns the filler file."""
    filler = disk / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0")
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("mode", ["sidecar", "embed"])
def test_disk_full_is_retried_until_space_returns(tmp_path: Path, daemons, mode: str) -> None:  # noqa: F811
    with small_disk(tmp_path / "disk", 600) as disk:
        root = disk / "photos"
        photos = make_jpegs(root, 3, size=96)
        pristine = {p: p.read_bytes() for p in photos}
        filler = fill(disk)
        d = daemons([root], plugins="daemon,sidecar,xmp,counting",
                    settings={"metadata.mode": mode, "watch.retry_delay": 0.3, "watch.max_attempts": 50})  # fmt: skip

        def retrying() -> dict[str, str]:
            rows = d.sql("SELECT path, last_error FROM watch_queue WHERE last_error IS NOT NULL")
            return {as_str(path): error for path, error in rows}

        d.start()
        assert wait_for(lambda: len(retrying()) == 3, 60), (retrying(), d.failed(), d.text()[-2000:])
        for photo in photos:
            message = retrying()[str(photo)]
            assert message.startswith(f"{photo}: ") and "disk is full" in message, message
        assert d.failed() == {}  # passing trouble: not on the failed list
        assert {p: p.read_bytes() for p in photos} == pristine  # nothing half-written
        assert [p.name for p in root.iterdir() if p.name.startswith(".") or "_exiftool_tmp" in p.name] == []
        filler.unlink()
        d.wait_done(photos)
        assert d.failed() == {}
        for photo in photos:
            assert Path(f"{photo}.phototag.json").is_file()
            assert mode == "embed" or Path(f"{photo}.xmp").is_file()
        assert d.stop() == 0


@pytest.mark.parametrize("mode", ["sidecar", "embed"])
def test_scan_on_a_full_disk_says_so_and_the_next_scan_finishes(tmp_path: Path, mode: str) -> None:
    import sys

    with small_disk(tmp_path / "disk", 600) as disk:
        root = disk / "photos"
        photos = make_jpegs(root, 3, size=96)
        pristine = {p: p.read_bytes() for p in photos}
        filler = fill(disk)
        cmd = [sys.executable, "-m", "phototag", "--set", f"state_db={tmp_path / 'state.db'}",
               "--set", f"metadata.mode={mode}", "scan", str(root)]  # fmt: skip
        full = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        assert full.returncode == 1, full.stdout + full.stderr
        for photo in photos:
            assert f"{photo}: " in full.stderr and "disk is full" in full.stderr, full.stderr
        assert {p: p.read_bytes() for p in photos} == pristine  # nothing half-written
        assert [p.name for p in root.iterdir() if p.name.startswith(".") or "_exiftool_tmp" in p.name] == []
        filler.unlink()
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "3 tagged" in again.stdout
        assert all(Path(f"{p}.phototag.json").is_file() for p in photos)
