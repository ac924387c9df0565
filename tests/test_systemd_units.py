"""The systemd units: valid for systemd itself, and saying what RELIABILITY.md needs them to say.

The shipped units in systemd/ are renderings of the template `phototag service install` fills in
(phototag.service.units.example); the units install writes for a system and a user service are verified too.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from phototag.config import WatchSettings, load_config
from phototag.service.units import UnitSpec, example, render

UNITS = Path(__file__).parent.parent / "systemd"
VERIFY_NEEDS = "systemd-analyze is not installed (apt-get install systemd)"


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
    if name == "phototag.service":
        assert any(v.startswith("PHOTOTAG_STATE_DB=%S/phototag/") for v in d["Environment"])
        assert d["StateDirectory"] == ["phototag"]
    else:  # %S is ~/.config in user units before systemd 254: the path a shell's `phototag status` reads
        assert "PHOTOTAG_STATE_DB=%h/.local/state/phototag/state.db" in d["Environment"]


@pytest.mark.parametrize(
    ("name", "scope"), [("phototag.service", "system"), ("phototag-user.service", "user")]
)
def test_shipped_units_are_the_template_install_fills_in(name: str, scope: str) -> None:
    """systemd/*.service cannot drift from what `phototag service install` writes."""
    assert (UNITS / name).read_text() == example(scope), "regenerate: phototag.service.units.example()"


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
    true = shutil.which("true") or "/bin/true"
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={true}", unit.read_text(), flags=re.M)
    copy = tmp_path / "verify" / unit.name
    copy.parent.mkdir(exist_ok=True)
    copy.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "SYSTEMD_UNIT_PATH"}  # it needs the real targets
    cmd = ["systemd-analyze"]
    if user:
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        cmd.append("--user")
    result = subprocess.run([*cmd, "verify", str(copy)], capture_output=True, text=True, env=env, timeout=60)
    return result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason=VERIFY_NEEDS)
@pytest.mark.parametrize(("name", "user"), [("phototag.service", False), ("phototag-user.service", True)])
def test_systemd_analyze_verify_is_clean(name: str, user: bool, tmp_path: Path) -> None:
    output = _verify(UNITS / name, tmp_path, user)
    if "Failed to initialize manager" in output or "Failed to lookup" in output:
        pytest.skip(f"systemd-analyze cannot run here: {output.strip()}")
    assert output.strip() == "", output


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason=VERIFY_NEEDS)
@pytest.mark.parametrize(
    "spec",
    [
        UnitSpec("system", ("/opt/p/bin/phototag", "watch", "--config", "/etc/phototag/config.yaml"),
                 "%S/phototag/state.db", read_write=(Path("/srv/my photos"), Path("/data/50%")),
                 mounts_for=(Path("/srv/my photos"),), manifest={"config": "/etc/phototag/config.yaml"}),
        UnitSpec("system", ("/opt/p/bin/phototag", "watch", "--config", "/etc/phototag/config.yaml", "--x=$HOME"),
                 "%S/phototag/state.db", group="media", protect_home="tmpfs", read_write=(Path("/srv/photos"),),
                 bind=(Path("/home/ann/Pictures"), Path("/home/ann/a:b")),
                 bind_read_only=(Path("/home/ann/.local/pipx/venvs/phototag"),)),
        UnitSpec("user", ("/home/ann/.venv/bin/python", "-m", "phototag", "watch", "--config",
                          "/home/ann/.config/phototag/config.yaml"), "/home/ann/.local/state/phototag/state.db"),
    ],
    ids=["system", "system-tmpfs-home", "user"],
)  # fmt: skip
def test_rendered_variants_verify_clean(spec: UnitSpec, tmp_path: Path) -> None:
    """Quoting (spaces, %, $, : in BindPaths=) and the ProtectHome=tmpfs variant are valid unit syntax."""
    unit = tmp_path / "phototag.service"
    unit.write_text(render(spec))
    output = _verify(unit, tmp_path, spec.scope == "user")
    if "Failed to initialize manager" in output or "Failed to lookup" in output:
        pytest.skip(f"systemd-analyze cannot run here: {output.strip()}")
    assert output.strip() == "", output


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason=VERIFY_NEEDS)
def test_verify_would_catch_a_typo(tmp_path: Path) -> None:
    """The check above can fail: systemd-analyze reports a misspelt setting."""
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nType=notify\nExecStart=/bin/true\nKillMode=mixd\n")
    output = _verify(bad, tmp_path, False)
    assert "mixd" in output


# -- the HTTP service: `phototag serve` on its own, or `watch --serve` through a drop-in -------------------------


def test_serve_unit_runs_phototag_serve_with_its_key_from_a_file() -> None:
    d = directives(UNITS / "phototag-serve.service")
    assert d["ExecStart"][0].split()[1:3] == ["serve", "--config"]
    assert d["EnvironmentFile"] == ["-/etc/phototag/serve.env"]  # PHOTOTAG_API_KEY, not in the unit itself
    assert d["Type"] == ["exec"] and "WatchdogSec" not in d  # serve sends no sd_notify pings
    assert d["DynamicUser"] == ["yes"] and d["ProtectSystem"] == ["strict"] and d["ProtectHome"] == ["yes"]
    assert "ReadWritePaths" not in d  # it writes no photo folder
    assert "MemoryDenyWriteExecute" not in d, "breaks PyTorch's oneDNN"


def test_watch_serve_dropin_replaces_exec_start_and_keeps_the_daemon_lifecycle(tmp_path: Path) -> None:
    from phototag.service.units import exec_argv, merged_settings

    folder = tmp_path / "phototag.service.d"
    folder.mkdir()
    shutil.copy(UNITS / "phototag.service", tmp_path / "phototag.service")
    shutil.copy(UNITS / "phototag-watch-serve.conf", folder / "serve.conf")
    merged = merged_settings(tmp_path / "phototag.service")
    assert len(merged["ExecStart"]) == 1  # the drop-in's `ExecStart=` cleared the unit's
    argv = exec_argv(merged["ExecStart"][0])
    assert argv[1] == "watch" and argv[argv.index("--serve") + 1] == "0.0.0.0:8000"
    assert merged["Type"] == ["notify"] and merged["WatchdogSec"]  # still the daemon's lifecycle
    assert merged["EnvironmentFile"] == ["-/etc/phototag/serve.env"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason=VERIFY_NEEDS)
@pytest.mark.parametrize("name", ["phototag-serve.service", "phototag.service+phototag-watch-serve.conf"])
def test_serve_units_verify_clean(name: str, tmp_path: Path) -> None:
    """The serve unit, and the daemon's unit with the watch --serve drop-in applied (appended: an ``ExecStart=``
    reset then a new one is valid in one file too), pass ``systemd-analyze verify``."""
    unit_name, _, dropin = name.partition("+")
    text = (UNITS / unit_name).read_text()
    if dropin:
        text += "\n" + (UNITS / dropin).read_text()
    unit = tmp_path / unit_name
    unit.write_text(text)
    output = _verify(unit, tmp_path, False)
    if "Failed to initialize manager" in output or "Failed to lookup" in output:
        pytest.skip(f"systemd-analyze cannot run here: {output.strip()}")
    assert output.strip() == "", output
