"""``phototag serve``: the HTTP service in the foreground (added by the builtin ``serve`` plugin).

Importing this module costs nothing beyond click: FastAPI, uvicorn and the rest of the ``serve`` extra are
imported when the command runs, and a missing extra is one line naming the pip command.
"""

from __future__ import annotations

import logging
from typing import Any

import click

from ..config import Config
from ..extras import require

log = logging.getLogger("phototag")

SERVE_MODULES = ("fastapi", "uvicorn", "python_multipart", "prometheus_client", "httpx")
"""What the ``serve`` extra brings."""


def require_serve() -> None:
    """Raise :class:`~phototag.extras.MissingExtra` when a module of the ``serve`` extra is missing."""
    for module in SERVE_MODULES:
        require(module, "serve", "phototag serve and watch --serve")


def parse_address(address: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``:PORT`` or ``[V6]:PORT`` -> ``(host, port)``."""
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    host = host or "127.0.0.1"
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise click.BadParameter(f"{address!r}: the port must be a number 0-65535 (HOST:PORT)")
    return host, int(port_text)


def build_server(config: Config, pm: Any, host: str, port: int, engine: Any = None) -> Any:
    """A ``uvicorn.Server`` for ``config`` on ``host:port``, checked against the binding rules (a
    non-loopback address needs an API key). ``engine``: an existing one (``watch --serve`` passes the one
    that shares the daemon's runtime)."""
    require_serve()
    import uvicorn

    from .app import create_app
    from .engine import Engine
    from .security import api_key, check_bind

    key = api_key(config.serve)
    check_bind(host, key, config.serve.allow_unauthenticated)
    if key is None and not config.serve.allow_unauthenticated:
        log.info("no API key set (serve.api_key / PHOTOTAG_API_KEY): only this machine can reach the server")
    engine = engine or Engine.from_config(config, pm)
    app = create_app(engine, key=key)
    uvicorn_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # phototag's logging (set up by the CLI) stays in charge
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        proxy_headers=False,
    )
    return uvicorn.Server(uvicorn_config)


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: serve.host, 127.0.0.1).")
@click.option("--port", default=None, type=click.IntRange(0, 65535), help="Port (default: serve.port, 8000).")
@click.pass_obj
def serve(state: Any, host: str | None, port: int | None) -> None:
    """Serve the configured analyzers over HTTP: phototag's API, PhotoPrism, Immich, OpenAI and Ollama routes.

    Binds 127.0.0.1 unless told otherwise; any other address needs an API key (serve.api_key or
    PHOTOTAG_API_KEY). Models load on first use; /readyz loads them all. Stops on SIGTERM/SIGINT.
    """
    config = state.config()
    host = host or config.serve.host
    port = config.serve.port if port is None else port
    server = build_server(config, state.pm, host, port)
    log.info("phototag serve on http://%s:%d (docs at /docs)", host if ":" not in host else f"[{host}]", port)
    server.run()
