"""Start-up: the commands that need no model import none of the heavy libraries. Checked in fresh processes by
looking at ``sys.modules`` after the command ran (not timed: bench/pipeline_bench.py --sections startup prints
the times against ``python -c pass``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from phototag.config import load_config
from phototag.files import iter_photos
from phototag.manager import get_plugin_manager
from phototag.pipeline import Pipeline

HEAVY = ("torch", "transformers", "cv2", "dlib", "onnxruntime")

PROBE = f"""
import json, sys
from phototag.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print(json.dumps({{"code": code, "heavy": heavy}}))
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str], str]:
    """``phototag ARGS`` in a fresh interpreter; returns its exit code, the heavy modules it imported, stdout."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    last = done.stdout.strip().splitlines()[-1]
    report = json.loads(last)
    return report["code"], report["heavy"], done.stdout + done.stderr


def test_help_imports_no_model_library() -> None:
    code, heavy, out = run_cli("--help")
    assert code == 0 and "scan" in out
    assert heavy == [], f"phototag --help imported {heavy}"


def test_status_imports_no_model_library(tmp_path: Path) -> None:
    _, heavy, out = run_cli("status", f"--set=state_db={tmp_path / 'state.db'}")
    assert heavy == [], f"phototag status imported {heavy} ({out})"


def test_scan_of_a_done_photo_imports_no_model_library(photos: Path, tmp_path: Path) -> None:
    """The photo is tagged here first with the bundled classifier (torch); a second ``scan`` in a fresh
    process finds it done and must neither probe the hardware nor load the model (both import torch)."""
    state = tmp_path / "state.db"
    env = {"PHOTOTAG_PLUGINS": "classify,sidecar"}
    config = load_config(None, overrides={"state_db": str(state)}, environ={})
    pm, _ = get_plugin_manager(env)
    photo = photos / "cat.jpg"
    with Pipeline.from_config(config, pm) as pipeline:
        assert pipeline.run(iter_photos([photo], config)).tagged == 1
        pipeline.state.close()
    code, heavy, out = run_cli("scan", f"--set=state_db={state}", str(photo), env=env)
    assert code == 0 and "1 skipped" in out, out
    assert heavy == [], f"a scan with nothing to do imported {heavy}"
