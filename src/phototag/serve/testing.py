"""A real phototag server on a loopback port, for tests (ours and plugins').

    with running_server(config) as base_url:
        httpx.post(f"{base_url}/v1/analyze", files={"file": ...})

The server is uvicorn in a background thread, on a socket bound to 127.0.0.1 port 0 (the kernel picks a free
port), so clients talk real HTTP over TCP. :func:`serving` also hands out the engine and the app.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pluggy
import uvicorn
from fastapi import FastAPI

from ..config import Config
from .app import create_app
from .engine import Engine


@dataclass(frozen=True)
class Served:
    url: str
    """``http://127.0.0.1:PORT``"""
    engine: Engine
    app: FastAPI


@contextlib.contextmanager
def serving(
    config: Config,
    *,
    pm: pluggy.PluginManager | None = None,
    engine: Engine | None = None,
    key: str | None = None,
    timeout: float = 30.0,
) -> Iterator[Served]:
    """Start a server for ``config`` (its analyzers from ``pm``'s plugins, or the given ``engine``); the API
    key is ``key``, else ``serve.api_key`` (the environment is not read). Stops it on exit."""
    engine = engine or Engine.from_config(config, pm)
    app = create_app(engine, key=key if key is not None else config.serve.api_key)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="phototag-test-server")
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test server stopped while starting (see the log)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test server did not start within {timeout} s")
            time.sleep(0.01)
        yield Served(f"http://127.0.0.1:{port}", engine, app)
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


@contextlib.contextmanager
def running_server(
    config: Config,
    *,
    pm: pluggy.PluginManager | None = None,
    engine: Engine | None = None,
    key: str | None = None,
) -> Iterator[str]:
    """:func:`serving`, yielding only the base URL (``http://127.0.0.1:PORT``)."""
    with serving(config, pm=pm, engine=engine, key=key) as served:
        yield served.url
