"""Errors of the HTTP service, and the one place that turns them into each client's error shape.

    ServeError              status, code (a machine word), message, retry_after
    ├── BadRequest          400 bad_request: the request is malformed (wrong field, wrong content type)
    │   └── BadImage        400 image_not_decodable: the upload is not an image phototag decodes
    ├── Unauthorized        401 unauthorized: no or a wrong API key
    ├── UnknownModel        404 model_not_found (400 where a route's clients expect it)
    ├── TooLarge            413 too_large: the body is over serve.max_body_mb
    ├── NotAvailable        422 model_not_available: no analyzer does what was asked; names what to configure
    ├── Busy                503 busy: the analyzer's queue is full; retry_after seconds
    └── Deadline            504 deadline: the request ran past serve.deadline_s

Route families answer in their clients' shapes (:func:`error_body`): OpenAI ``{"error": {message, type,
param, code}}``, Ollama ``{"error": "..."}``, Immich ``{"detail": "..."}``, PhotoPrism ``{"id", "code",
"error", "result": {}}`` and phototag's own ``{"error": {"code", "message"}}``. Messages say what failed and
what to do; a stack trace never reaches a client.
"""

from __future__ import annotations

from typing import Any, Literal

Shape = Literal["own", "openai", "ollama", "immich", "photoprism"]


class ServeError(Exception):
    """Base of the errors a route answers with. ``status`` is the HTTP status, ``code`` a stable machine word,
    ``retry_after`` (seconds) is sent as ``Retry-After`` when set."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.retry_after = retry_after


class BadRequest(ServeError):
    status = 400
    code = "bad_request"


class BadImage(BadRequest):
    code = "image_not_decodable"


class Unauthorized(ServeError):
    status = 401
    code = "unauthorized"


class UnknownModel(ServeError):
    status = 404
    code = "model_not_found"


class TooLarge(ServeError):
    status = 413
    code = "too_large"


class NotAvailable(ServeError):
    status = 422
    code = "model_not_available"


class Busy(ServeError):
    status = 503
    code = "busy"

    def __init__(self, message: str, *, retry_after: float = 1.0, status: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after, status=status)


class Deadline(ServeError):
    status = 504
    code = "deadline"


_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
                 413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
                 503: "server_error", 504: "server_error"}  # fmt: skip


def error_body(exc: ServeError, shape: Shape = "own") -> dict[str, Any]:
    """The JSON body of ``exc`` in the error shape of the route family ``shape``."""
    if shape == "openai":
        kind = _OPENAI_TYPES.get(exc.status, "server_error")
        return {"error": {"message": exc.message, "type": kind, "param": None, "code": exc.code}}
    if shape == "ollama":
        return {"error": exc.message}
    if shape == "immich":
        return {"detail": exc.message}
    if shape == "photoprism":
        return {"id": "", "code": exc.status, "error": exc.message, "result": {}}
    return {"error": {"code": exc.code, "message": exc.message}}


def error_headers(exc: ServeError) -> dict[str, str]:
    """``Retry-After`` (whole seconds, at least 1) for errors that carry one; ``WWW-Authenticate`` for 401."""
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="phototag"'
    return headers


def error_response(exc: ServeError, shape: Shape = "own") -> Any:
    """A ``JSONResponse`` for ``exc`` in ``shape`` (imported lazily: fastapi is an optional extra)."""
    from fastapi.responses import JSONResponse

    return JSONResponse(error_body(exc, shape), status_code=exc.status, headers=error_headers(exc))


_PREFIXES: tuple[tuple[str, Shape], ...] = (
    ("/api/v1/vision/", "photoprism"),
    ("/v1/chat/", "openai"),
    ("/v1/responses", "openai"),
    ("/v1/models", "openai"),
    ("/api/", "ollama"),
    ("/predict", "immich"),
    ("/ping", "immich"),
)


def shape_for_path(path: str) -> Shape:
    """The error shape of the route family that ``path`` belongs to (for errors raised before routing: auth,
    body size)."""
    for prefix, shape in _PREFIXES:
        if path.startswith(prefix):
            return shape
    return "own"
