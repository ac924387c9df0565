"""The README stays true: CI runs its test command verbatim, and its plugin example works."""

from __future__ import annotations

import re
import types
from pathlib import Path

from phototag.testing import run_plugin, sample_photos

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def quick_start_commands() -> list[str]:
    block = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_quick_start_is_two_commands_and_ci_runs_the_test_command() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert "phototag scan" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = commands[1].split(") && ", 1)[1]  # CI installs exiftool itself first
    assert test_command in ci.splitlines()


def test_plugin_example_runs_through_the_real_pipeline(tmp_path: Path) -> None:
    code = re.search(r"```python\n(# phototag_sharpness.py\n.*?)```", README, re.S)
    assert code is not None
    module = types.ModuleType("phototag_sharpness")
    exec(compile(code.group(1), "<README example>", "exec"), module.__dict__)
    photos = sample_photos(tmp_path / "photos")
    outcomes = run_plugin(module, photos, tmp_path, overrides={"plugins.sharpness.threshold": "1000000"})
    assert {o.status for o in outcomes.values()} == {"tagged"}
    assert all(any(t.name == "Blurry" for _, t in o.result.tags) for o in outcomes.values() if o.result)
    outcomes = run_plugin(module, photos, tmp_path / "again", overrides={"plugins.sharpness.threshold": "0"})
    assert not any(t for o in outcomes.values() if o.result for _, t in o.result.tags)
