"""Collect what the plugins provide for one configuration: analyzers, writers and library analyzers.

Every ``register_*`` hook implementation runs in its own error boundary (:func:`phototag.manager.collect`): a
plugin that fails for its own reasons is a warning and contributes nothing; a configuration error (a plugin
validating its ``plugins.<name>`` section) is the user's to fix. A ``plugins.<name>`` section that no plugin
reads is a configuration error too (most likely a typo). ``scan``/``watch`` (:meth:`Pipeline.from_config`) and
``phototag config`` (which lists every error instead of stopping at the first) share this code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pluggy

from .config import Config
from .errors import ConfigError, PhototagError
from .manager import BUILTIN_PLUGINS, collect, short_name
from .types import Analyzer, LibraryAnalyzer, Writer

log = logging.getLogger(__name__)


@dataclass
class Plugins:
    """What the plugins registered; ``warnings``: plugins that failed for their own reasons (named)."""

    analyzers: list[Analyzer] = field(default_factory=list)
    writers: list[Writer] = field(default_factory=list)
    library: list[LibraryAnalyzer] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def register_plugins(
    config: Config, pm: pluggy.PluginManager, config_errors: list[str] | None = None
) -> Plugins:
    """Run every registration hook for ``config``. Configuration errors are raised (the first one) or, when
    ``config_errors`` is a list, appended to it so that all of them can be shown."""
    found = Plugins()

    def on_error(plugin: str, e: Exception) -> None:
        if isinstance(e, PhototagError):  # config errors are the user's to fix
            if config_errors is None:
                raise e
            config_errors.append(str(e))
            return
        found.warnings.append(f"plugin {plugin}: {type(e).__name__}: {e}")
        log.error("plugin %s failed to register: %s", plugin, e)

    found.analyzers = [obj for _, obj in collect(pm, "register_analyzers", on_error, config=config)]
    found.writers = [obj for _, obj in collect(pm, "register_writers", on_error, config=config)]
    found.library = [obj for _, obj in collect(pm, "register_library_analyzers", on_error, config=config)]
    names = {name for name, _ in pm.list_name_plugin() if name} | {a.name for a in found.analyzers}
    try:
        check_plugin_sections(config, names)
    except ConfigError as e:
        if config_errors is None:
            raise
        config_errors.append(str(e))
    return found


def check_plugin_sections(config: Config, plugin_names: set[str]) -> None:
    """A ``plugins.<name>`` section that no plugin reads is most likely a typo: say so."""
    known = plugin_names | {short_name(m) for m in BUILTIN_PLUGINS}
    for name in config.plugins:
        if name not in known:
            raise ConfigError(
                f"no plugin named {name!r} is installed (known: {', '.join(sorted(known))})",
                f"plugins.{name}",
                config.where(f"plugins.{name}"),
            )


def close_writers(writers: list[Any]) -> None:
    """Close writers that were registered only to validate their settings."""
    for writer in writers:
        try:
            writer.close()
        except Exception as e:
            log.warning("writer %s did not close cleanly: %s", getattr(writer, "name", writer), e)
