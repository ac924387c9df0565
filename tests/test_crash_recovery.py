"""kill -9 of `phototag scan` mid-run, then a second scan: originals intact, every photo finished once,
no duplicated keywords, every sidecar valid, no temp files left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phototag.images import pixel_hash


def exif_subjects(path: Path) -> list[str]:
    out = subprocess.run(["exiftool", "-j", "-XMP-dc:Subject", str(path)], capture_output=True, check=True)
    value = json.loads(out.stdout)[0].get("Subject", [])
    return value if isinstance(value, list) else [value]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sidecar", "embed"])
def test_kill_9_mid_scan_then_rescan_finishes_the_job(photos: Path, tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    sources = sorted(photos.iterdir())
    for i in range(5):
        for src in sources:
            shutil.copy(src, folder / f"{i}-{src.name}")
    pixels = {p.name: pixel_hash(p) for p in folder.iterdir()}
    state = tmp_path / "state.db"
    cmd = [sys.executable, "-m", "phototag", "--set", f"state_db={state}", "--set", f"metadata.mode={mode}",
           "--set", "batch_size=2", "scan", str(folder)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(folder.glob("*.phototag.json"))) < 4:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the daemon and its exiftool child
    proc.wait()
    done_before = len(list(folder.glob("*.phototag.json")))
    assert 0 < done_before < 30, "the kill must land mid-run"

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout
    photos_after = sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))
    assert len(photos_after) == 30
    for photo in photos_after:
        assert pixel_hash(photo) == pixels[photo.name]
        doc = json.loads(Path(f"{photo}.phototag.json").read_text())
        assert doc["schema_version"] == 1
        target = photo if mode == "embed" else Path(f"{photo}.xmp")
        subjects = exif_subjects(target)
        assert len(subjects) == len(set(subjects)), subjects
        assert doc["keywords"] and set(doc["keywords"]) <= set(subjects)
    leftovers = [
        p.name for p in folder.iterdir() if "_exiftool_tmp" in p.name or p.name.endswith("phototag-tmp")
    ]
    assert leftovers == []
    # a third run has nothing left to do
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "0 tagged, 30 skipped" in again.stdout
