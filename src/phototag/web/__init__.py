"""The web page of ``phototag serve`` (``/``, pages under ``/ui``): name people, search, review tags, watch the
queue. Server-rendered (Jinja2), a little plain JavaScript, everything served locally.

:func:`install` adds what the pages need around the service's app: the static files and the login-session gate
(:mod:`phototag.web.session`); the routes are :data:`phototag.web.routes.router`, included with the other route
families by :func:`phototag.serve.app.create_app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

STATIC = Path(__file__).parent / "static"


def install(app: Any) -> None:
    """Mount ``/ui/static`` and put the session gate outside the service's guard (call after the guard was
    added: the middleware added last runs first)."""
    from fastapi.staticfiles import StaticFiles

    from .session import SessionGate, Sessions

    sessions = Sessions(getattr(app.state, "api_key", None))
    app.state.web_sessions = sessions
    app.mount("/ui/static", StaticFiles(directory=str(STATIC)), name="web-static")
    app.add_middleware(SessionGate, sessions=sessions)
