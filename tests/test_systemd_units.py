"""The shipped systemd units: valid for systemd itself, and saying what RELIABILITY.md needs them to say."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from phototag.config import WatchSettings, load_config

UNITS = Path(__file__).parent.parent / "systemd"


def directives(unit: Path) -> dict[str, list[str]]:
    """``Key`` -> every value it is given (comments and blank lines ignored)."""
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def seconds(value: str) -> float:
    return float(value.removesuffix("s").removesuffix("min")) * (60 if value.endswith("min") else 1)


@pytest.mark.parametrize("name", ["phototag.service", "phototag-user.service"])
def test_unit_parses_and_has_the_lifecycle_settings(name: str) -> None:
    unit = UNITS / name
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit)
    assert set(parser.sections()) == {"Unit", "Service", "Install"}
    d = directives(unit)
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert d["KillMode"] == ["mixed"]  # SIGTERM to phototag only: exiftool lives until the drain is done
    assert d["Restart"] == ["on-failure"]  # includes watchdog timeouts
    assert seconds(d["WatchdogSec"][0]) >= 30
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert " watch" in d["ExecStart"][0]
    # the stop timeout leaves room for the default drain
    assert seconds(d["TimeoutStopSec"][0]) > WatchSettings().drain_timeout + 5
    assert "NoNewPrivileges" in d
    assert "MemoryDenyWriteExecute" not in d, "breaks PyTorch's oneDNN"
    assert any(v.startswith("PHOTOTAG_STATE_DB=%S/phototag/") for v in d["Environment"])
    assert d["StateDirectory"] == ["phototag"]


def test_system_unit_is_hardened_and_keeps_models_in_the_cache_directory() -> None:
    d = directives(UNITS / "phototag.service")
    assert d["ProtectSystem"] == ["strict"] and d["PrivateTmp"] == ["yes"]
    assert d["ReadWritePaths"]  # the photo folders
    assert d["CacheDirectory"] == ["phototag"]
    env = dict(v.split("=", 1) for v in d["Environment"])
    assert env["HF_HOME"].startswith("%C/phototag")
    assert d["DynamicUser"] == ["yes"]


def test_the_units_state_db_variable_reaches_the_config(tmp_path: Path) -> None:
    """PHOTOTAG_STATE_DB (what the units set) is a real config override, not a name nobody reads."""
    config = load_config(None, environ={"PHOTOTAG_STATE_DB": str(tmp_path / "s.db")})
    assert config.state_db == tmp_path / "s.db"


def _verify(unit: Path, tmp_path: Path, user: bool) -> str:
    # verify needs ExecStart's binary to exist: point it at `true`
    text = unit.read_text().replace("/opt/phototag/.venv/bin/phototag", shutil.which("true") or "/bin/true")
    text = text.replace("%h/.local/bin/phototag", shutil.which("true") or "/bin/true")
    copy = tmp_path / unit.name
    copy.write_text(text)
    env = {**os.environ}
    cmd = ["systemd-analyze"]
    if user:
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        cmd.append("--user")
    result = subprocess.run([*cmd, "verify", str(copy)], capture_output=True, text=True, env=env, timeout=60)
    return result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize(("name", "user"), [("phototag.service", False), ("phototag-user.service", True)])
def test_systemd_analyze_verify_is_clean(name: str, user: bool, tmp_path: Path) -> None:
    output = _verify(UNITS / name, tmp_path, user)
    if "Failed to initialize manager" in output or "Failed to lookup" in output:
        pytest.skip(f"systemd-analyze cannot run here: {output.strip()}")
    assert output.strip() == "", output


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_verify_would_catch_a_typo(tmp_path: Path) -> None:
    """The check above can fail: systemd-analyze reports a misspelt setting."""
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nType=notify\nExecStart=/bin/true\nKillMode=mixd\n")
    output = _verify(bad, tmp_path, False)
    assert "mixd" in output
