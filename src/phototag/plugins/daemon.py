"""The builtin ``daemon`` plugin: adds ``phototag watch``, ``status``, ``retry`` and ``service``."""

from __future__ import annotations

from typing import Any

from .. import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    from ..daemon.commands import retry, service, status, watch

    for command in (watch, status, retry, service):
        cli.add_command(command)
