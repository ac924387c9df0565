"""The plugin manager: builtins are registered exactly like entry-point plugins.

``PHOTOTAG_PLUGINS=a,b`` loads only the named plugins (builtin or external; empty string: none);
``PHOTOTAG_BLOCK=a,b`` blocks the named ones. ``check_pending()`` makes a misspelt hook fail loudly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError

log = logging.getLogger(__name__)

BUILTIN_PLUGINS: tuple[str, ...] = (
    "phototag.plugins.classify",
    "phototag.plugins.detect",
    "phototag.plugins.faces",
    "phototag.plugins.embed",
    "phototag.plugins.caption",
    "phototag.plugins.vqa",
    "phototag.plugins.places",
    "phototag.plugins.text",
    "phototag.plugins.search",
    "phototag.plugins.duplicates",
    "phototag.plugins.learned",
    "phototag.plugins.adhoc",
    "phototag.plugins.xmp",
    "phototag.plugins.sidecar",
    "phototag.plugins.people",
    "phototag.plugins.daemon",
    "phototag.plugins.serve",
)
ENTRY_POINT_GROUP = "phototag"


@dataclass
class PluginStatus:
    """One plugin as ``phototag plugins`` shows it."""

    name: str
    origin: str  # "builtin" or the distribution that ships it
    status: str  # "loaded", "blocked", "failed: ..."
    hooks: list[str] = field(default_factory=list)


def _names(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {n.strip() for n in value.split(",") if n.strip()}


def short_name(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def get_plugin_manager(
    environ: Mapping[str, str] | None = None,
) -> tuple[pluggy.PluginManager, list[PluginStatus]]:
    """A plugin manager with builtins and installed ``phototag`` entry points, filtered by the env switches."""
    environ = os.environ if environ is None else environ
    allow = _names(environ.get("PHOTOTAG_PLUGINS"))
    block = _names(environ.get("PHOTOTAG_BLOCK")) or set()
    pm = pluggy.PluginManager("phototag")
    pm.add_hookspecs(hookspecs)
    statuses: list[PluginStatus] = []

    def wanted(name: str) -> bool:
        return name not in block and (allow is None or name in allow)

    for module_name in BUILTIN_PLUGINS:
        name = short_name(module_name)
        if not wanted(name):
            pm.set_blocked(name)
            statuses.append(PluginStatus(name, "builtin", "blocked"))
            continue
        try:
            pm.register(import_module(module_name), name=name)
            statuses.append(PluginStatus(name, "builtin", "loaded"))
        except Exception as e:  # a broken builtin must not take the CLI down
            log.error("builtin plugin %s failed to load: %s", name, e)
            statuses.append(PluginStatus(name, "builtin", f"failed: {e}"))

    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        origin = ep.dist.name if ep.dist is not None else "?"
        if not wanted(ep.name):
            pm.set_blocked(ep.name)
            statuses.append(PluginStatus(ep.name, origin, "blocked"))
            continue
        if pm.has_plugin(ep.name):
            statuses.append(PluginStatus(ep.name, origin, "failed: a plugin of that name is already loaded"))
            continue
        try:
            pm.register(ep.load(), name=ep.name)
            statuses.append(PluginStatus(ep.name, origin, "loaded"))
        except Exception as e:
            log.error("plugin %s (from %s) failed to load: %s", ep.name, origin, e)
            statuses.append(PluginStatus(ep.name, origin, f"failed: {e}"))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        raise PluginError(f"{e}. A plugin implements a hook that does not exist: check its spelling.") from e
    for status in statuses:
        plugin = pm.get_plugin(status.name)
        if plugin is not None:
            status.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    return pm, statuses


def collect(
    pm: pluggy.PluginManager, hook_name: str, on_error: Callable[[str, Exception], None], **kwargs: Any
) -> list[tuple[str, Any]]:
    """Call ``register_*`` hook implementations one by one, each in its own error boundary.

    Returns ``(plugin name, registered object)`` pairs. A plugin whose hook raises is reported through
    ``on_error`` and contributes nothing; the others still run.
    """
    out: list[tuple[str, Any]] = []
    caller = getattr(pm.hook, hook_name)
    expected = REGISTERS.get(hook_name)
    for impl in caller.get_hookimpls():  # registration order (pluggy calls hooks in reverse)
        name = impl.plugin_name
        got: list[Any] = []

        def register(obj: Any, got: list[Any] = got, plugin: str = name) -> None:
            if expected is not None:
                check_registered(obj, expected, plugin)
            got.append(obj)

        offered = {"register": register, **kwargs}
        try:
            impl.function(**{k: v for k, v in offered.items() if k in impl.argnames})
        except Exception as e:
            on_error(name, e)
            continue
        out.extend((name, obj) for obj in got)
    return out


def _registers() -> dict[str, type]:
    from .types import Analyzer, LibraryAnalyzer, Writer

    return {
        "register_analyzers": Analyzer,
        "register_writers": Writer,
        "register_library_analyzers": LibraryAnalyzer,
    }


REGISTERS = _registers()
"""What each ``register_*`` hook's ``register`` callback accepts."""


def check_registered(obj: Any, protocol: type, plugin: str) -> None:
    """Raise TypeError naming the plugin and the missing members when ``obj`` is not a ``protocol``."""
    members = [*getattr(protocol, "__annotations__", {})]
    members += [k for k, v in vars(protocol).items() if callable(v) and not k.startswith("_")]
    missing = sorted({m for m in members if not hasattr(obj, m)})
    if missing or not isinstance(obj, protocol):
        raise TypeError(
            f"plugin {plugin} registered {type(obj).__name__}, which is not a {protocol.__name__}: it lacks "
            f"{', '.join(missing) or 'the right members'}"
        )


def notify(hook: Any, hook_name: str, **kwargs: Any) -> None:
    """Call every implementation of a notification hook (``photo_processed``), each in its own error
    boundary: one plugin that raises is logged and the others are still told. ``hook`` is ``pm.hook``."""
    for impl in getattr(hook, hook_name).get_hookimpls():
        try:
            impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
        except Exception as e:
            log.warning("plugin %s: %s failed: %s: %s", impl.plugin_name, hook_name, type(e).__name__, e)


@contextmanager
def registered(pm: pluggy.PluginManager, plugin: object, name: str) -> Iterator[None]:
    """Register ``plugin`` for the duration of a block (tests, inline plugins) and always unregister it."""
    pm.register(plugin, name=name)
    try:
        yield
    finally:
        pm.unregister(name=name)
