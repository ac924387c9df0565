"""Start-up: the commands that need no model import none of the heavy libraries, and the commands that compute
nothing do not import numpy either (0.1-0.2 s of a start-up that should stay under half a second). Checked in
fresh processes by looking at ``sys.modules`` after the command ran (not timed: bench/pipeline_bench.py
--sections startup prints the times against ``python -c pass``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from phototag.config import load_config
from phototag.files import iter_photos
from phototag.manager import get_plugin_manager
from phototag.pipeline import Pipeline

HEAVY = ("torch", "transformers", "cv2", "dlib", "onnxruntime")

PROBE = f"""
import json, sys


class FirstNumpy:
    '''Notes the phototag module that asks for numpy first (the innermost phototag frame then), so that a
    failure names the module whose top-level import to move into its functions.'''

    by = None

    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and FirstNumpy.by is None:
            frame = sys._getframe(1)
            while frame is not None and not frame.f_globals.get("__name__", "").startswith("phototag"):
                frame = frame.f_back
            FirstNumpy.by = "?" if frame is None else frame.f_globals["__name__"]
        return None


sys.meta_path.insert(0, FirstNumpy())
from phototag.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
numpy_by = FirstNumpy.by if "numpy" in sys.modules else None
print(json.dumps({{"code": code, "heavy": heavy, "numpy_by": numpy_by}}))
"""

NO_MODEL_PLUGINS = "places,duplicates,learned,people,search,xmp,sidecar"
"""The builtin plugins that load no model: their analyzers and library analyzers import numpy when they
compute, never when a scan only finds their work done."""


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str], str | None, str]:
    """``phototag ARGS`` in a fresh interpreter; returns its exit code, the heavy modules it imported, the
    phototag module that imported numpy (None: nothing did), and its output."""
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
    return report["code"], report["heavy"], report["numpy_by"], done.stdout + done.stderr


def tag_once(photo: Path, state: Path, env: dict[str, str]) -> None:
    """Tag ``photo`` with the plugins ``env`` selects (in this process), so that a later scan finds it done."""
    config = load_config(None, overrides={"state_db": str(state)}, environ={})
    pm, _ = get_plugin_manager(env)
    with Pipeline.from_config(config, pm) as pipeline:
        assert pipeline.run(iter_photos([photo], config)).tagged == 1
        pipeline.state.close()


def test_help_imports_no_model_library() -> None:
    code, heavy, numpy_by, out = run_cli("--help")
    assert code == 0 and "scan" in out
    assert heavy == [], f"phototag --help imported {heavy}"
    assert numpy_by is None, f"phototag --help imported numpy (first: {numpy_by})"


def test_status_imports_no_model_library(tmp_path: Path) -> None:
    _, heavy, numpy_by, out = run_cli("status", f"--set=state_db={tmp_path / 'state.db'}")
    assert heavy == [], f"phototag status imported {heavy} ({out})"
    assert numpy_by is None, f"phototag status imported numpy (first: {numpy_by})"


def test_scan_of_a_done_photo_imports_no_model_library(photos: Path, tmp_path: Path) -> None:
    """The photo is tagged here first with the bundled classifier (torch); a second ``scan`` in a fresh
    process finds it done and must neither probe the hardware nor load the model (both import torch).

    numpy neither: the scan builds the classify analyzer to read its fingerprint, which imports its module
    (phototag.bundled.efficientnet, and through it imagenet and onnxbackend); they import numpy and PIL where
    the network runs. Any module on the way (the CLI, the pipeline, the state DB, image decoding) is caught
    too: it would be the first importer."""
    state = tmp_path / "state.db"
    env = {"PHOTOTAG_PLUGINS": "classify,sidecar"}
    photo = photos / "cat.jpg"
    tag_once(photo, state, env)
    code, heavy, numpy_by, out = run_cli("scan", f"--set=state_db={state}", str(photo), env=env)
    assert code == 0 and "1 skipped" in out, out
    assert heavy == [], f"a scan with nothing to do imported {heavy}"
    assert numpy_by is None, f"a scan with nothing to do imported numpy (first: {numpy_by}; {out})"


def test_scan_of_a_done_photo_with_the_default_plugins_imports_no_numpy(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a user runs: every default plugin (classify, detect, faces, embed, places, duplicates, people,
    ...), nothing restricted. The photo is tagged with all of them here first; a second ``scan`` in a fresh
    process finds it done and reads every analyzer's fingerprint (the bundled model modules are imported for
    that) without importing numpy or any model library."""
    for switch in ("PHOTOTAG_PLUGINS", "PHOTOTAG_BLOCK"):
        monkeypatch.delenv(switch, raising=False)
    state = tmp_path / "state.db"
    photo = photos / "cat.jpg"
    tag_once(photo, state, {})
    code, heavy, numpy_by, out = run_cli("scan", f"--set=state_db={state}", str(photo))
    assert code == 0 and "1 skipped" in out, out
    assert heavy == [], f"a scan with nothing to do imported {heavy}"
    assert numpy_by is None, f"a scan with nothing to do imported numpy (first: {numpy_by}; {out})"


def test_scan_of_a_done_photo_without_models_imports_no_numpy(photos: Path, tmp_path: Path) -> None:
    """With the plugins that load no model (places, duplicates, people, ...), a scan that finds the photo
    done imports no numpy at all: the pipeline, the state DB, the decoder and those plugins import it only
    where they compute."""
    state = tmp_path / "state.db"
    env = {"PHOTOTAG_PLUGINS": NO_MODEL_PLUGINS}
    photo = photos / "cat.jpg"
    tag_once(photo, state, env)
    code, heavy, numpy_by, out = run_cli("scan", f"--set=state_db={state}", str(photo), env=env)
    assert code == 0 and "1 skipped" in out, out
    assert heavy == [], f"a scan with nothing to do imported {heavy}"
    assert numpy_by is None, f"a scan with nothing to do imported numpy (first: {numpy_by}; {out})"
