"""The builtin ``daemon`` plugin: adds ``phototag watch``, ``phototag status`` and ``phototag retry``."""

from __future__ import annotations

from typing import Any

from .. import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    from ..daemon.commands import retry, status, watch

    for command in (watch, status, retry):
        cli.add_command(command)
