"""Every hook is exercised by a test (datasette's habit), plus the hooks no other test implements:
``register_commands`` through the real CLI with an installed plugin, ``photo_processed`` with one plugin that
raises, and ``register`` refusing what is not an analyzer or writer.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from phototag import hookimpl, hookspecs
from phototag.cli import main
from phototag.manager import collect, get_plugin_manager, registered
from test_manager import install_plugin
from test_pipeline import Brightness, Plugin
from test_pipeline import collect as run_pipeline

TESTS = Path(__file__).parent


def hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "phototag_spec"))


def test_every_hookspec_has_a_test_that_implements_it() -> None:
    implemented: set[str] = set()
    for path in TESTS.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        implemented |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        # plugins written as source text for install_plugin count too
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "def " in node.value:
                implemented |= {line.split("def ", 1)[1].split("(")[0] for line in node.value.splitlines()
                                if line.lstrip().startswith("def ")}  # fmt: skip
    assert len(hook_names()) == 6  # a new hook needs a test here too
    assert [h for h in hook_names() if h not in implemented] == []


def test_register_commands_adds_a_command_to_the_real_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install_plugin(
        tmp_path,
        monkeypatch,
        "greet",
        "import click\n"
        "from phototag import hookimpl\n"
        "@click.command()\n"
        "@click.argument('who')\n"
        "def greet(who):\n"
        "    click.echo(f'hello {who}')\n"
        "@hookimpl\n"
        "def register_commands(cli):\n"
        "    cli.add_command(greet)\n",
    )
    try:
        assert main(["greet", "world"]) == 0
        assert capsys.readouterr().out == "hello world\n"
    finally:
        sys.modules.pop("phototag_greet", None)


class Listener:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[str] = []

    @hookimpl
    def photo_processed(self, result):  # type: ignore[no-untyped-def]
        self.seen.append(result.photo.path.name)
        if self.fail:
            raise RuntimeError("listener broke")


def test_photo_processed_reaches_every_listener_even_when_one_raises(photos: Path, make_config) -> None:
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    first, broken, last = Listener(), Listener(fail=True), Listener()
    with (
        registered(pm, Plugin(Brightness()), "inline"),
        registered(pm, first, "first"),
        registered(pm, broken, "broken"),
        registered(pm, last, "last"),
    ):
        summary, _ = run_pipeline(make_config(), pm, [photos / "cat.jpg", photos / "rocket.jpg"])
    assert summary.tagged == 2
    assert first.seen == broken.seen == last.seen == ["cat.jpg", "rocket.jpg"]


class Wrong:
    @hookimpl
    def register_analyzers(self, register, config):  # type: ignore[no-untyped-def]
        register(object())


def test_register_refuses_what_is_not_an_analyzer(make_config) -> None:
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": ""})
    errors: list[str] = []
    with registered(pm, Wrong(), "wrong"), registered(pm, Plugin(Brightness()), "fine"):
        got = collect(pm, "register_analyzers", lambda p, e: errors.append(f"{p}: {e}"), config=make_config())
    assert [name for name, _ in got] == ["fine"]
    assert errors == [
        "wrong: plugin wrong registered object, which is not a Analyzer: it lacks analyze, fingerprint, "
        "input_size, load, model_info, name, needs, task, unload"
    ]
