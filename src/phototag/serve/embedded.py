"""``phototag watch --serve ADDR``: the HTTP service inside the daemon, sharing the daemon's runtime.

The daemon's worker thread builds its processor (a :class:`~phototag.pipeline.Pipeline` with its
:class:`~phototag.runtime.AnalyzerRuntime`) and builds it again on SIGHUP. :meth:`EmbeddedServer.attach` is
called with each new runtime: the first call starts uvicorn in a thread of the daemon process, later ones hand
the engine the new runtime. Models are therefore loaded once for both; the runtime's per-analyzer lock makes
the daemon's batches and the server's batches take turns per model.

The server thread installs no signal handlers: the daemon owns SIGTERM/SIGHUP and calls :meth:`stop`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..config import Config
from ..errors import PhototagError
from ..runtime import AnalyzerRuntime
from .commands import build_server, parse_address, require_serve

log = logging.getLogger(__name__)


class EmbeddedServer:
    """The server of ``watch --serve``. Construction checks the address and the binding rules (before the
    daemon starts), so a refusal is a configuration error at start, not a log line later."""

    def __init__(self, config: Config, pm: Any, address: str) -> None:
        from .security import api_key, check_bind

        require_serve()
        self.host, self.port = parse_address(address, config.serve.port)
        check_bind(self.host, api_key(config.serve), config.serve.allow_unauthenticated)
        self._pm = pm
        self._engine: Any = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def engine(self) -> Any:
        return self._engine

    def attach(self, config: Config, runtime: AnalyzerRuntime, timeout: float = 30.0) -> None:
        """Serve ``runtime`` (the daemon's): start the server on the first call, switch to it on later ones."""
        from .engine import Engine

        if self._engine is not None:
            self._engine.use_runtime(runtime, config)
            log.info("the HTTP service uses the reloaded configuration's models")
            return
        self._engine = Engine(config, runtime, owns_runtime=False)
        self._server = build_server(config, self._pm, self.host, self.port, engine=self._engine)
        self._thread = threading.Thread(target=self._server.run, name="phototag-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise PhototagError(
                    f"the HTTP service could not listen on {self.host}:{self.port} (in use? see the log above)"
                )
            time.sleep(0.02)
        log.info("HTTP service on http://%s:%d, sharing the daemon's models", self.host, self.port)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving (requests in progress get ``timeout_graceful_shutdown`` to finish)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
