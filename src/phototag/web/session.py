"""The web pages' security: login sessions when the server has an API key, and CSRF tokens on every form.

The API's rules hold for the pages too (:mod:`phototag.serve.security`): loopback by default, and with an API
key every request is authenticated. A browser cannot send ``Authorization: Bearer``, so the pages add a login
form that takes the key and sets a session cookie (random, ``HttpOnly``, ``SameSite=Strict``, kept only in
this process's memory: a restart logs everyone out). :class:`SessionGate`, an ASGI middleware around the
service's guard, turns a valid session cookie into the bearer header the guard checks, and only for the pages'
own paths (``/`` and ``/ui/...``): the API routes never accept the cookie, so a cookie cannot be used across
sites against them. A page request without a key or session is sent to the login form (a ``POST`` gets 401).
The login form and the static files (CSS, JS: public anyway) are reachable without a session.

CSRF: every state-changing form carries a token, an HMAC of the session (or ``local`` without a key) under a
secret made at start; a ``POST`` without the right token, or whose ``Origin`` is another site, is refused
with 403 before anything changes. ``SameSite=Strict`` is a second line.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "phototag_session"
SESSION_SECONDS = 7 * 24 * 3600
PREFIX = "/ui"
LOGIN = f"{PREFIX}/login"
STATIC = f"{PREFIX}/static/"


def is_page(path: str) -> bool:
    """Is ``path`` one of the web pages' (``/`` or under ``/ui``)?"""
    return path == "/" or path == PREFIX or path.startswith(PREFIX + "/")


class Sessions:
    """Login sessions (random tokens -> expiry) and the CSRF secret, in memory; thread-safe."""

    def __init__(self, key: str | None, clock: object = time.time) -> None:
        self.key = key
        self.secret = secrets.token_bytes(32)
        self._clock = clock
        self._sessions: dict[str, float] = {}
        self._lock = threading.Lock()

    def now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def key_ok(self, given: str) -> bool:
        """Is ``given`` the API key (constant time)?"""
        if self.key is None:
            return False
        return hmac.compare_digest(given.strip().encode(), self.key.encode())

    def open(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[token] = self.now() + SESSION_SECONDS
        return token

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expiry = self._sessions.get(token)
            if expiry is None:
                return False
            if expiry < self.now():
                del self._sessions[token]
                return False
            return True

    def close(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)

    def csrf(self, session: str | None) -> str:
        """The CSRF token of forms shown to ``session`` (None: no login, on a server without a key)."""
        subject = f"session:{session}" if session else "local"
        return hmac.new(self.secret, subject.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: str | None, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf(session), str(token))


def cookie_of(headers: dict[str, str]) -> str | None:
    """The session cookie's value in a ``Cookie`` header, or None."""
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value or None
    return None


class SessionGate:
    """ASGI middleware outside the service's guard (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = self.sessions.key
        if scope["type"] != "http" or key is None or not is_page(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        if "authorization" in headers:  # a script with the key: the guard judges it
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        public = path == LOGIN or path.startswith(STATIC)
        if public or self.sessions.valid(cookie_of(headers)):
            bearer = (b"authorization", f"Bearer {key}".encode("latin-1"))
            scope = {**scope, "headers": [*scope.get("headers", ()), bearer]}
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD"):
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            await _send(send, 303, b"", [(b"location", f"{LOGIN}?next={quote(target, safe='')}".encode())])
            return
        body = b"<!doctype html><title>401</title><p>Log in first: <a href='/ui/login'>/ui/login</a>"
        await _send(send, 401, body, [(b"content-type", b"text/html; charset=utf-8")])


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})


def safe_next(target: str | None) -> str:
    """Where to go after login: a page path of ours, never another site (``//evil``, ``https://...``)."""
    if not target or not target.startswith(PREFIX + "/") or target.startswith("//") or "\\" in target:
        return f"{PREFIX}/"
    return target
