"""The builtin ``serve`` plugin: adds ``phototag serve`` (the HTTP service; needs the ``serve`` extra)."""

from __future__ import annotations

from typing import Any

from .. import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    from ..serve.commands import serve

    cli.add_command(serve)
