"""Every hook phototag calls, each with when it is called and what it returns. Nothing else lives here.

Hooks hand objects over through a ``register`` callback instead of returning them, so that the core owns
ordering and runs every analyzer and writer inside its own error boundary: pluggy stops calling hook
implementations at the first exception, phototag does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .config import Config
    from .hardware import Hardware
    from .types import Analyzer, Device, LibraryAnalyzer, PhotoResult, Writer

hookspec = pluggy.HookspecMarker("phototag")


# -- analysis and output --------------------------------------------------------------------------------------


@hookspec
def register_analyzers(register: Callable[[Analyzer], None], config: Config) -> None:
    """Called once per run, after the config is loaded. Call ``register(analyzer)`` for each analyzer this plugin
    provides and the config enables (read your settings with ``config.plugin_settings(name, Model)``).
    Constructing an analyzer must be cheap: models load later, on first use."""


@hookspec
def register_writers(register: Callable[[Writer], None], config: Config) -> None:
    """Called once per run. Call ``register(writer)`` for each output this plugin provides (XMP, JSON, ...)."""


@hookspec
def register_library_analyzers(register: Callable[[LibraryAnalyzer], None], config: Config) -> None:
    """Called once per run. Call ``register(library_analyzer)`` for each analysis across photos this plugin
    provides (clustering, duplicate groups, learning from the user's keywords; see
    :class:`phototag.types.LibraryAnalyzer`). It runs after each batch is written and may ask for photos done
    earlier to be written again."""


# -- hardware ---------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def select_device(analyzer: Analyzer, hardware: Hardware, preference: str) -> Device | None:
    """Called before an analyzer loads. Return a ``Device`` to place it yourself, or ``None`` to let the core's
    hardware probe choose. ``preference`` is the configured device (``auto``, ``cpu``, ``cuda:1``, ...)."""


# -- command line -----------------------------------------------------------------------------------------------


@hookspec
def register_commands(cli: Any) -> None:
    """Called when the CLI starts. ``cli`` is the click group: add commands with ``@cli.command()``."""


# -- notifications ----------------------------------------------------------------------------------------------


@hookspec
def photo_processed(result: PhotoResult) -> None:
    """Called after every writer ran for a photo. Exceptions are logged and ignored."""
