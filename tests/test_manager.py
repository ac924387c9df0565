"""Plugin manager: builtins like external plugins, entry points, allow/block switches, misspelt hooks fail."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from phototag import hookimpl
from phototag.errors import PluginError
from phototag.manager import BUILTIN_PLUGINS, collect, get_plugin_manager, registered, short_name


def install_plugin(folder: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> None:
    """Install a third-party plugin the way pip leaves one: module ``phototag_<name>`` plus a dist-info with a
    ``phototag`` entry point, both on sys.path."""
    (folder / f"phototag_{name}.py").write_text(source)
    dist = folder / f"phototag_{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: phototag-{name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[phototag]\n{name} = phototag_{name}\n")
    monkeypatch.syspath_prepend(str(folder))


@pytest.fixture
def external_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed third-party plugin that registers a writer."""
    install_plugin(
        tmp_path,
        monkeypatch,
        "hello",
        "from phototag import hookimpl\n"
        "class HelloWriter:\n"
        "    name = 'hello'\n"
        "    def write(self, result): pass\n"
        "    def close(self): pass\n"
        "@hookimpl\n"
        "def register_writers(register, config):\n"
        "    register(HelloWriter())\n",
    )
    yield "hello"
    sys.modules.pop("phototag_hello", None)


def test_builtins_load_like_plugins() -> None:
    _pm, statuses = get_plugin_manager({})
    by_name = {s.name: s for s in statuses}
    for module in BUILTIN_PLUGINS:
        assert by_name[short_name(module)].origin == "builtin"
    assert by_name["sidecar"].status == "loaded"
    assert "register_writers" in by_name["sidecar"].hooks


def test_external_entry_point_plugin_is_loaded(external_plugin: str, make_config) -> None:
    pm, statuses = get_plugin_manager({"PHOTOTAG_PLUGINS": "hello,sidecar"})
    status = {s.name: s for s in statuses}[external_plugin]
    assert (status.origin, status.status) == ("phototag-hello", "loaded")
    writers = collect(pm, "register_writers", lambda n, e: None, config=make_config())
    assert [(p, w.name) for p, w in writers] == [("sidecar", "sidecar"), ("hello", "hello")]


def test_allow_and_block_lists(external_plugin: str) -> None:
    _, statuses = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    loaded = {s.name for s in statuses if s.status == "loaded"}
    assert loaded == {"sidecar"}
    _, statuses = get_plugin_manager({"PHOTOTAG_BLOCK": "hello,sidecar"})
    blocked = {s.name for s in statuses if s.status == "blocked"}
    assert {"hello", "sidecar"} <= blocked


def test_misspelt_hook_fails_loudly() -> None:
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": ""})

    class Typo:
        @hookimpl
        def register_analyser(self, register, config):  # type: ignore[no-untyped-def]
            pass

    pm.register(Typo(), name="typo")
    import pluggy

    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


def test_misspelt_hook_in_an_installed_plugin_is_a_plugin_error(tmp_path: Path, monkeypatch) -> None:
    source = "from phototag import hookimpl\n@hookimpl\ndef register_analyser(register, config):\n    pass\n"
    install_plugin(tmp_path, monkeypatch, "typo", source)
    with pytest.raises(PluginError, match="register_analyser"):
        get_plugin_manager({"PHOTOTAG_PLUGINS": "typo"})
    sys.modules.pop("phototag_typo", None)


def test_collect_isolates_errors_and_registered_unregisters(make_config) -> None:
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    errors: list[str] = []

    class Broken:
        @hookimpl
        def register_writers(self, register, config):  # type: ignore[no-untyped-def]
            raise ValueError("nope")

    with registered(pm, Broken(), "broken"):
        writers = collect(
            pm, "register_writers", lambda n, e: errors.append(f"{n}: {e}"), config=make_config()
        )
        assert [w.name for _, w in writers] == ["sidecar"]
    assert errors == ["broken: nope"]
    assert pm.get_plugin("broken") is None
