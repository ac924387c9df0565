"""The ASGI application: routes, the guard around every request, and the error handlers.

:func:`create_app` builds a FastAPI app around an :class:`~phototag.serve.engine.Engine` and includes the route
families in this order: own_api, adhoc_api, remote_api, photoprism, immich, openai_api, ollama_api (a module
that is not installed is skipped). Every HTTP request passes :class:`Guard` first:

1. **auth**: with an API key configured, a request without ``Authorization: Bearer KEY`` gets 401 before its
   body is read (``/healthz`` and ``/ping`` are open);
2. **size**: a ``Content-Length`` over ``serve.max_body_mb`` gets 413 at once; a streamed body is counted as it
   arrives and gets 413 when it passes the limit (the rest is read and dropped, so the client reads the
   answer), never held in memory;
3. **disconnect**: once the body is read, a client that hangs up cancels its request's task, which drops its
   work if it has not started (:mod:`phototag.serve.batching`);
4. **metrics**: every answer is counted by route template, method and status, and timed.

Errors become each route family's error shape (:func:`phototag.serve.errors.shape_for_path`); no stack trace
reaches a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from .engine import Engine
from .errors import (
    BadRequest,
    ServeError,
    TooLarge,
    Unauthorized,
    UnknownModel,
    error_body,
    error_headers,
    error_response,
    shape_for_path,
)
from .security import OPEN_PATHS, api_key, bearer_ok

log = logging.getLogger(__name__)

ROUTERS = (
    "own_api",
    "adhoc_api",
    "remote_api",
    "photoprism",
    "immich",
    "openai_api",
    "ollama_api",
    "phototag.web.routes",
)
"""The route families, in the order they are included (modules of :mod:`phototag.serve`, or dotted names)."""

DRAIN_FACTOR = 4
"""A streamed body over the limit is read on (and dropped) up to this many times the limit, so the client
gets its 413; beyond that the connection is closed."""


class Health(BaseModel):
    status: str
    version: str


class Readiness(BaseModel):
    status: str
    analyzers: dict[str, str | None]
    """Analyzer -> why it cannot run, or null when it loaded."""


def create_app(engine: Engine, *, key: str | None = None, owns_engine: bool = True) -> FastAPI:
    """The service around ``engine``. ``key`` is the API key (None: no authentication). With
    ``owns_engine`` the engine is closed when the app shuts down."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owns_engine:
                await engine.aclose()

    app = FastAPI(
        title="phototag",
        version=__version__,
        description=(
            "Photo analysis (keywords, objects, captions, embeddings) over HTTP. phototag's own API is under "
            "/v1; PhotoPrism, Immich, OpenAI and Ollama clients use their own routes. Send "
            "`Authorization: Bearer KEY` when the server has an API key."
        ),
        lifespan=lifespan,
    )
    app.state.engine = engine
    key = key or None  # an empty key is no key, never one that an empty token matches
    app.state.api_key = key
    _install_handlers(app)
    _add_probe_routes(app)
    for name in ROUTERS:
        module_name = name if "." in name else f"{__package__}.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        app.include_router(module.router)
    app.add_middleware(
        Guard,
        key=key,
        max_body=int(engine.settings.max_body_mb * 1024 * 1024),
        metrics=engine.metrics,
    )
    importlib.import_module("phototag.web").install(app)  # the web page's static files and login sessions
    return app


def app_from_config(engine: Engine) -> FastAPI:
    """:func:`create_app` with the API key from the engine's config or the environment."""
    return create_app(engine, key=api_key(engine.settings))


# -- probes -------------------------------------------------------------------------------------------------


def _add_probe_routes(app: FastAPI) -> None:
    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> Health:
        """Alive: answers as soon as the server listens (loads no model)."""
        return Health(status="ok", version=__version__)

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["service"],
        responses={503: {"model": Readiness, "description": "a model cannot load"}},
    )
    async def readyz(request: Request) -> Any:
        """Ready: every configured model loads (the first call loads them). 503 names the ones that cannot."""
        engine: Engine = request.app.state.engine
        analyzers = await engine.ready()
        ok = all(v is None for v in analyzers.values())
        body = Readiness(status="ok" if ok else "unavailable", analyzers=analyzers)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["service"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: requests, latency, batch sizes, queue depth, model load times."""
        engine: Engine = request.app.state.engine
        return Response(engine.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


# -- errors -------------------------------------------------------------------------------------------------


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError) -> Response:
        return error_response(exc, shape_for_path(request.url.path))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(BadRequest(validation_message(exc.errors())), shape_for_path(request.url.path))

    @app.exception_handler(ValidationError)
    async def invalid_body(request: Request, exc: ValidationError) -> Response:
        """A route's own ``Model.model_validate`` of a body it read itself."""
        return error_response(BadRequest(validation_message(exc.errors())), shape_for_path(request.url.path))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            error: ServeError = UnknownModel(f"no route {request.url.path}", code="not_found")
        else:
            error = ServeError(str(exc.detail), status=exc.status_code, code="http_error")
        return error_response(error, shape_for_path(request.url.path))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        error = ServeError(f"internal error ({type(exc).__name__}); see the server's log")
        return error_response(error, shape_for_path(request.url.path))


def validation_message(errors: Sequence[Any]) -> str:
    """pydantic's errors as one line: ``invalid request: image: Field required; ...``."""
    parts = []
    for err in list(errors)[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


# -- the guard ----------------------------------------------------------------------------------------------


class Guard:
    """ASGI middleware around every HTTP request: auth, body size, disconnect, metrics (module docstring)."""

    def __init__(self, app: ASGIApp, *, key: str | None, max_body: int, metrics: Any) -> None:
        self.app = app
        self.key = key
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await _send_error(refusal, scope, counted_send)
                return
            await _Exchange(self.app, scope, receive, counted_send, self.max_body).run()
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)

    def _refusal(self, scope: Scope) -> ServeError | None:
        """Why the request is refused before its body is read, or None."""
        headers = _headers(scope)
        needs_key = self.key is not None and scope["path"] not in OPEN_PATHS
        if needs_key and not bearer_ok(headers.get("authorization"), self.key or ""):
            said = "a wrong" if headers.get("authorization") else "no"
            return Unauthorized(
                f"the request carries {said} API key: send 'Authorization: Bearer <serve.api_key>'"
            )
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return BadRequest("invalid Content-Length header")
            if int(length) > self.max_body:
                return _too_large(self.max_body)
        return None


def _too_large(limit: int) -> TooLarge:
    return TooLarge(
        f"the request body is larger than serve.max_body_mb ({limit / 1024 / 1024:g} MB): send a smaller "
        "image (phototag only needs a few hundred pixels a side) or raise the limit"
    )


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


async def _send_error(error: ServeError, scope: Scope, send: Send) -> None:
    body = json.dumps(error_body(error, shape_for_path(scope["path"]))).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error_headers(error).items()]
    if error.status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class _Exchange:
    """One request through the app: counts the body, watches for a disconnect, cancels the app on one."""

    def __init__(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, max_body: int) -> None:
        self.app = app
        self.scope = scope
        self._receive = receive
        self._send = send
        self.max_body = max_body
        self.received = 0
        self.too_large = False
        self.started = False
        self.complete = False
        self.body_done = asyncio.Event()
        self.disconnected = asyncio.Event()

    async def run(self) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(self.app(self.scope, self.receive, self.send))
        watcher = asyncio.create_task(self._watch(task))
        try:
            await task
        except asyncio.CancelledError:
            if not self.disconnected.is_set():
                raise  # the server is stopping, not the client
        except _BodyTooLarge:
            pass
        except Exception:
            if not self.too_large:
                raise
        finally:
            watcher.cancel()
            if not task.done():
                task.cancel()
        if self.too_large and not self.started:
            await _send_error(_too_large(self.max_body), self.scope, self._send)

    async def receive(self) -> Message:
        if self.body_done.is_set():  # the watcher reads the client's messages from here on
            await self.disconnected.wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_body:
                self.too_large = True
                await self._drain(message)
                raise _BodyTooLarge()
            if not message.get("more_body", False):
                self.body_done.set()
        elif message["type"] == "http.disconnect":
            self.disconnected.set()
        return message

    async def _drain(self, message: Message) -> None:
        """Read and drop the rest of a body that is over the limit (up to DRAIN_FACTOR times the limit)."""
        total = self.received
        while message.get("more_body", False) and total <= self.max_body * DRAIN_FACTOR:
            message = await self._receive()
            if message["type"] != "http.request":
                return
            total += len(message.get("body", b""))

    async def send(self, message: Message) -> None:
        if self.too_large:
            return  # the app's answer to a cut-off body is replaced by the 413
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        await self._send(message)

    async def _watch(self, task: asyncio.Task[None]) -> None:
        await self.body_done.wait()
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.disconnected.set()
            if not self.complete:
                task.cancel()
