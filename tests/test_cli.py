"""A CLI that forgives: global options after the command, errors that name their real source, `config` that
checks plugin sections, paths that tell photos apart, a missing model said once, dry runs that fail like real
runs.

Runs the real entry point in-process (``cli.main``) with capsys; one test runs it as a subprocess, where the
log really writes to stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest

from phototag.cli import CliState, cli, main
from phototag.pipeline import Outcome
from phototag.report import RunReport, describe_outcome, shown_path

MISSING_MODEL = "plugins.classify.model=/nonexistent/classifier"


@pytest.fixture
def phototag(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """``phototag(*args)`` -> (exit code, stdout, stderr), with the state DB in tmp_path and no user config."""
    state = tmp_path / "state.db"

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--set", f"state_db={state}", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHOTOTAG_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in list(os.environ):
        if name.startswith("PHOTOTAG_") and name not in ("PHOTOTAG_PLUGINS", "PHOTOTAG_BLOCK"):
            monkeypatch.delenv(name)


# -- 1. global options before or after the command ---------------------------------------------------------------


def commands(photo: Path) -> list[list[str]]:
    """Every command, builtin and plugin-added, with arguments that get it as far as reading the config."""
    return [
        ["scan", str(photo.parent)],
        ["untag", str(photo)],
        ["doctor"],
        ["plugins"],
        ["config"],
        ["watch", str(photo.parent)],
        ["status"],
        ["retry"],
        ["search", "a cat"],
        ["similar", str(photo)],
        ["state", "check"],
    ]


@pytest.mark.parametrize("index", range(11))
def test_global_options_work_after_every_command(index: int, photos: Path, tmp_path: Path, phototag) -> None:  # type: ignore[no-untyped-def]
    command = commands(photos / "cat.jpg")[index]
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: cpu\nbatch_size: lots\n")
    code, _, err = phototag(*command, "-q", "--config", str(bad))
    assert code == 2 and f"{bad}:2: batch_size" in err, err  # the file named after the command was read
    code, _, err = phototag(*command, "-v", "--set", "threads=many")
    assert code == 2 and "--set: threads" in err, err


@pytest.fixture
def probe() -> Iterator[list[CliState]]:
    """A command added the way a plugin adds one; it records the CliState it ran with."""
    seen: list[CliState] = []

    @click.command("probe-state")
    @click.option("-n", "--number", default=1)
    @click.pass_obj
    def command(state: CliState, number: int) -> None:
        seen.append(state)

    cli.add_command(command)
    try:
        yield seen
    finally:
        cli.commands.pop("probe-state")


def test_the_later_option_wins_and_sets_add_up(probe: list[CliState], tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    argv = ["-c", str(a), "-s", "batch_size=2", "-v", "probe-state", "-n", "3", "--config", str(b)]
    assert main([*argv, "-s", "batch_size=5", "-q"]) == 0
    state = probe[-1]
    assert state.config_path == b
    assert state.overrides == ("batch_size=2", "batch_size=5")
    assert state.verbosity == -1
    assert main(["-q", "probe-state", "-vv"]) == 0
    assert probe[-1].verbosity == 2
    assert main(["-q", "--config", str(a), "probe-state"]) == 0  # nothing after the command: the first stands
    assert (probe[-1].config_path, probe[-1].verbosity) == (a, -1)


def test_later_wins_in_the_effective_config(tmp_path: Path, phototag) -> None:  # type: ignore[no-untyped-def]
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("batch_size: 3\n")
    b.write_text("batch_size: 4\ndecode_workers: 3\n")
    code, out, err = phototag("--config", str(a), "config", "--config", str(b), "--set", "decode_workers=5")
    assert code == 0, err
    assert f"from {b}" in out and "batch_size: 4" in out and "decode_workers: 5" in out


def test_help_says_where_global_options_go(phototag) -> None:  # type: ignore[no-untyped-def]
    for args in (["--help"], ["scan", "--help"], ["status", "--help"], ["state", "check", "--help"]):
        code, out, _ = phototag(*args)
        assert code == 0 and "--config" in out and "the later wins" in " ".join(out.split()), args


# -- 2. errors name their real source ----------------------------------------------------------------------------


def test_errors_name_the_set_option_the_variable_or_the_file(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phototag
) -> None:  # type: ignore[no-untyped-def]
    code, _, err = phototag("--set", "plugins.classify.treshold=0.4", "scan", str(photos))
    assert code == 2 and "--set: plugins.classify.treshold: Extra inputs" in err, err
    assert "<defaults>" not in err

    monkeypatch.setenv("PHOTOTAG_PLUGINS__CLASSIFY__TRESHOLD", "0.4")
    code, _, err = phototag("scan", str(photos))
    assert code == 2 and "PHOTOTAG_PLUGINS__CLASSIFY__TRESHOLD: plugins.classify.treshold" in err, err
    monkeypatch.delenv("PHOTOTAG_PLUGINS__CLASSIFY__TRESHOLD")
    monkeypatch.setenv("PHOTOTAG_BATCH_SIZE", "lots")
    code, _, err = phototag("config")
    assert code == 2 and "PHOTOTAG_BATCH_SIZE: batch_size" in err, err
    monkeypatch.delenv("PHOTOTAG_BATCH_SIZE")

    config = tmp_path / "from-env.yaml"
    config.write_text("device: cpu\nplugins:\n  classify:\n    treshold: 0.3\n")
    monkeypatch.setenv("PHOTOTAG_CONFIG", str(config))
    code, _, err = phototag("scan", str(photos))
    assert code == 2 and f"{config}:4: plugins.classify.treshold" in err, err


@pytest.mark.parametrize(
    ("key", "yaml_text", "noun"),
    [
        ("folders", "folders: /x\n", "folders"),
        ("exclude", "exclude: '*.tmp'\n", "glob patterns"),
        ("image.extensions", "image:\n  extensions: .jpg\n", "file extensions"),
        ("watch.poll_folders", "watch:\n  poll_folders: /mnt/nas\n", "folders"),
    ],
)
def test_one_value_where_a_list_belongs(
    key: str, yaml_text: str, noun: str, tmp_path: Path, phototag
) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "config.yaml"
    config.write_text(yaml_text)
    code, _, err = phototag("--config", str(config), "config")
    line = yaml_text.count("\n")
    assert code == 2 and f"{config}:{line}: {key}: should be a list of {noun}" in err, err
    assert "valid tuple" not in err


# -- 3. `phototag config` checks everything -----------------------------------------------------------------------


def test_config_checks_plugin_sections_and_exits_2(tmp_path: Path, phototag) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "config.yaml"
    config.write_text("plugins:\n  classify:\n    treshold: 0.3\n  detect:\n    min_scor: 0.5\n")
    code, out, err = phototag("--config", str(config), "config")
    assert code == 2 and out == ""
    assert f"{config}:3: plugins.classify.treshold" in err  # every error, not only the first
    assert f"{config}:5: plugins.detect.min_scor" in err
    code, _, err = phototag("--set", "plugins.classify.treshold=0.4", "config")
    assert code == 2 and "--set: plugins.classify.treshold" in err
    code, _, err = phototag("--set", "plugins.clasify.enabled=false", "config")
    assert code == 2 and "no plugin named 'clasify'" in err
    code, out, err = phototag("--set", "plugins.classify.threshold=0.4", "config")
    assert code == 0, err
    assert "threshold: 0.4" in out


# -- 4. paths that tell photos apart -------------------------------------------------------------------------------


def test_paths_are_relative_below_the_current_folder_else_absolute(tmp_path: Path) -> None:
    here = tmp_path / "here"
    below = Outcome(here / "a" / "cat.jpg", "failed", f"{here / 'a' / 'cat.jpg'}: truncated")
    assert describe_outcome(below, cwd=here) == "a/cat.jpg: FAILED: truncated"
    elsewhere = Outcome(tmp_path / "b" / "cat.jpg", "failed", "truncated")
    assert describe_outcome(elsewhere, cwd=here) == f"{tmp_path}/b/cat.jpg: FAILED: truncated"
    # the daemon's log: always absolute
    assert describe_outcome(below, full_path=True, cwd=here).startswith(f"{here}/a/cat.jpg: ")
    odd = here / os.fsdecode(b"caf\xe9.jpg")
    assert shown_path(odd, cwd=here) == "caf\\xe9.jpg"
    assert (
        describe_outcome(Outcome(odd, "skipped", "done"), cwd=tmp_path) == "here/caf\\xe9.jpg: skipped (done)"
    )


def test_two_photos_of_one_name_are_told_apart(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phototag
) -> None:  # type: ignore[no-untyped-def]
    work = tmp_path / "work"
    for folder in ("a", "b"):
        (work / folder).mkdir(parents=True)
        shutil.copy(photos / "cat.jpg", work / folder / "cat.jpg")
    monkeypatch.chdir(work)
    code, out, err = phototag("scan", "a", str(work / "b"), str(photos / "rocket.jpg"))
    assert code == 0, err
    names = {line.split(": ")[0] for line in out.splitlines() if ".jpg: " in line}
    assert names == {"a/cat.jpg", "b/cat.jpg", str(photos / "rocket.jpg")}


# -- 5. a missing model is said once -------------------------------------------------------------------------------


def fake_outcome(path: Path, *errors: tuple[str, str]) -> Any:
    runs = [SimpleNamespace(analyzer=name, error=error) for name, error in errors]
    result = SimpleNamespace(runs=runs, tags=[], regions=[], caption=None)
    return SimpleNamespace(path=path, status="failed", message="; ".join(e for _, e in errors), result=result)


def test_an_analyzer_error_is_given_in_full_once(tmp_path: Path) -> None:
    long = "analyzer classify: model 'x': the folder x does not exist " + "(why) " * 200
    batch = "analyzer detect failed: RuntimeError: out of memory"
    report = RunReport(cwd=tmp_path)
    notices, line = report.line(fake_outcome(tmp_path / "cat.jpg", ("classify", long)))
    assert notices == [long]
    assert line == "cat.jpg: no keywords  [FAILED: analyzer classify unavailable (see above)]"
    notices, line = report.line(fake_outcome(tmp_path / "dog.jpg", ("classify", long), ("detect", batch)))
    assert notices == [batch]
    assert line.endswith(
        "[FAILED: analyzer classify unavailable (see above); analyzer detect failed (see above)]"
    )
    assert report.failure(fake_outcome(tmp_path / "cat.jpg", ("classify", long))) == (
        "cat.jpg: analyzer classify unavailable (see above)"
    )
    # an error the log already showed on stderr is not printed again
    logged = RunReport(cwd=tmp_path, said=lambda text: text == long)
    assert logged.line(fake_outcome(tmp_path / "cat.jpg", ("classify", long)))[0] == []


def test_a_missing_model_is_said_once_not_per_photo(photos: Path, phototag) -> None:  # type: ignore[no-untyped-def]
    code, out, err = phototag("--set", MISSING_MODEL, "scan", str(photos))
    assert code == 1
    assert (out + err).count("/nonexistent/classifier does not exist") == 1, err
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert len(failed) == 6
    assert all(line.endswith("[FAILED: analyzer classify unavailable (see above)]") for line in failed)
    assert f"  failed: {photos}/cat.jpg: analyzer classify unavailable (see above)" in err
    assert len(err) < 2000, err


def test_a_missing_model_is_said_once_on_a_real_terminal_too(photos: Path, tmp_path: Path) -> None:
    """As a process, where the log writes the error to stderr itself: the CLI does not repeat it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOTAG_")}
    done = subprocess.run(
        [sys.executable, "-m", "phototag", "--set", f"state_db={tmp_path / 'state.db'}",
         "--set", MISSING_MODEL, "scan", str(photos / "cat.jpg"), str(photos / "rocket.jpg")],
        capture_output=True, text=True, timeout=300, env={**env, "XDG_CONFIG_HOME": str(tmp_path)}, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert (done.stdout + done.stderr).count("/nonexistent/classifier does not exist") == 1, done.stderr
    assert done.stdout.count("analyzer classify unavailable (see above)") == 2


# -- 6. a dry run fails like a real run ---------------------------------------------------------------------------


def test_dry_run_reports_model_failures_and_exits_1(photos: Path, phototag) -> None:  # type: ignore[no-untyped-def]
    code, out, err = phototag("--set", MISSING_MODEL, "scan", "--dry-run", str(photos / "cat.jpg"))
    assert code == 1, err
    assert "dry run: 0 tagged, 0 skipped (already done), 1 failed, 0 would be tagged" in out
    assert "cat.jpg: Cat" in out and "[FAILED: analyzer classify unavailable (see above)]" in out
    assert not list(photos.glob("*.xmp"))
    code, out, _ = phototag("scan", "--dry-run", str(photos / "cat.jpg"))
    assert code == 0 and "0 failed, 1 would be tagged" in out
