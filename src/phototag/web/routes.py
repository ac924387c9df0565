"""The web pages of ``phototag serve``, under ``/ui`` (``/`` leads there): People, Search, Review, Status.

Server-rendered HTML (Jinja2 templates in ``templates/``), one small stylesheet and one small script in
``static/`` (served by the app, no CDN, no build step). Reads go to the state DB the server searches
(:attr:`phototag.serve.engine.Engine.state_db`) in worker threads; every change is a ``POST`` form with a CSRF
token (:mod:`phototag.web.session`) and answers with a redirect to the page it came from and a line that says
what was done (``303``, post/redirect/get). The actions are the CLI's: :mod:`phototag.web.people_actions`,
:mod:`phototag.web.review`, :meth:`phototag.daemon.queue.WorkQueue.retry_failed`.

Photos are addressed by their content hash in the state DB (a row id changes when a scan rewrites the row),
faces by their id there (``faces.rowid``): no path ever comes from a client.

Why one module of ~730 lines: the routes of the four pages share the request plumbing (the engine, the state
DB, the CSRF-checked form, the error page, post/redirect/get); what each page does lives in its own module
(:mod:`~phototag.web.library`, :mod:`~phototag.web.people_actions`, :mod:`~phototag.web.review`,
:mod:`~phototag.web.thumbs`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..errors import PhototagError
from ..people.store import PeopleStore
from ..state import StateDB
from . import library
from .people_actions import ActionError, Done, PeopleActions
from .review import ReviewActions
from .session import COOKIE, PREFIX, SESSION_SECONDS, Sessions, cookie_of, safe_next
from .thumbs import SIZES, ThumbnailCache

log = logging.getLogger(__name__)
T = TypeVar("T")

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

PAGE = 60
"""Photos per page of search results and review."""
CLUSTER_FACES = 8
"""Faces shown per cluster on the People page."""
CLUSTERS = 24
"""Unnamed clusters per People page."""


# -- shared ---------------------------------------------------------------------------------------------------


def sessions_of(request: Request) -> Sessions:
    found = getattr(request.app.state, "web_sessions", None)
    if found is None:  # an app made without phototag.web.install (no key: CSRF still applies)
        found = Sessions(getattr(request.app.state, "api_key", None))
        request.app.state.web_sessions = found
    return found


def _engine(request: Request) -> Any:
    return request.app.state.engine


def _pm(request: Request) -> Any:
    """The plugin manager the server was started with (``app.state.pm``), else the default one."""
    pm = getattr(request.app.state, "pm", None)
    if pm is None:
        from ..manager import get_plugin_manager

        pm, _ = get_plugin_manager()
        request.app.state.pm = pm
    return pm


def _state_db(request: Request) -> Path | None:
    path = _engine(request).state_db
    return Path(path) if path is not None else None


def _thumbs(request: Request, state_db: Path) -> ThumbnailCache:
    cache = getattr(request.app.state, "web_thumbs", None)
    if cache is None or cache.folder != ThumbnailCache.beside(state_db, _engine(request).config.image).folder:
        cache = ThumbnailCache.beside(state_db, _engine(request).config.image)
        request.app.state.web_thumbs = cache
    return cache


def _min_score(request: Request) -> float:
    return float(_engine(request).config.metadata.min_score)


async def _read(state_db: Path, read: Callable[[StateDB, PeopleStore], T]) -> T:
    """``read(state, people)`` on the state DB, read-only, in a worker thread."""

    def work() -> T:
        with StateDB(state_db, readonly=True) as db, PeopleStore(state_db, readonly=True) as people:
            return read(db, people)

    return await run_in_threadpool(work)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    sessions = sessions_of(request)
    session = cookie_of({"cookie": request.headers.get("cookie", "")})
    context.update(
        request=request,
        csrf=sessions.csrf(session if sessions.valid(session) else None),
        logged_in=sessions.key is not None and sessions.valid(session),
        msg=request.query_params.get("msg", ""),
        error=context.get("error") or request.query_params.get("error", ""),
        version=__version__,
        prefix=PREFIX,
    )
    return templates.TemplateResponse(request, template, context, status_code=status)


def shows_errors(route: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """A page whose state DB, photo or exiftool fails shows phototag's message (it names the file and the fix)
    as a page, instead of the API's generic 500."""

    @functools.wraps(route)
    async def page(*args: Any, **kwargs: Any) -> Response:
        try:
            return await route(*args, **kwargs)
        except PhototagError as e:
            request = kwargs.get("request") or next(a for a in args if isinstance(a, Request))
            log.error("%s %s: %s", request.method, request.url.path, e)
            return render(request, "empty.html", 500, title="Something failed", error=str(e))

    return page


def _no_db(request: Request) -> HTMLResponse:
    return render(request, "empty.html", status=200, title="Nothing scanned yet")


async def _posted(request: Request) -> tuple[dict[str, Any], Path] | Response:
    """The posted form (CSRF-checked) and the state DB it acts on; else the page to answer with."""
    form = await _form(request)
    if isinstance(form, Response):
        return form
    state_db = _state_db(request)
    if state_db is None:
        return _no_db(request)
    return form, state_db


def _not_found(request: Request, what: str) -> HTMLResponse:
    return render(request, "empty.html", status=404, title="Not found", error=what)


def _back(path: str, done: Done | None = None, error: str | None = None) -> RedirectResponse:
    if error:
        return RedirectResponse(f"{path}?error={quote(error)}", status_code=303)
    text = done.message if done else ""
    if done and done.failed:
        text += f"; {len(done.failed)} failed: " + "; ".join(done.failed[:3])
    return RedirectResponse(f"{path}?msg={quote(text)}", status_code=303)


async def _form(request: Request) -> dict[str, Any] | Response:
    """The posted form, after the CSRF check (a 403 page when it fails)."""
    form = await request.form()
    sessions = sessions_of(request)
    session = cookie_of({"cookie": request.headers.get("cookie", "")})
    origin = request.headers.get("origin")
    if (
        origin
        and origin not in ("null",)
        and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}"
    ):
        return render(
            request, "empty.html", 403, title="Refused", error=f"a form from another site ({origin})"
        )
    if not sessions.csrf_ok(session if sessions.valid(session) else None, str(form.get("csrf") or "")):
        return render(
            request, "empty.html", 403, title="Refused", error="the form's security token is missing or old: "
            "reload the page and try again"
        )  # fmt: skip
    out: dict[str, Any] = {}
    for key in form:
        values = form.getlist(key)
        out[key] = values if len(values) > 1 else values[0]
    return out


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _strs(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value] if value is not None else [])]


def _ints(value: Any) -> list[int]:
    values = value if isinstance(value, list) else [value] if value is not None else []
    return [n for n in (_int(v) for v in values) if n is not None]


# -- home, login ------------------------------------------------------------------------------------------------


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


@router.get(PREFIX)
@router.get(PREFIX + "/")
async def home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/people", status_code=307)


@router.get(PREFIX + "/login")
async def login_page(request: Request) -> HTMLResponse:
    return render(request, "login.html", title="Log in", next=safe_next(request.query_params.get("next")))


@router.post(PREFIX + "/login")
@shows_errors
async def login(request: Request) -> Response:
    form = await _form(request)
    if isinstance(form, Response):
        return form
    sessions = sessions_of(request)
    target = safe_next(str(form.get("next") or ""))
    if sessions.key is None:
        return RedirectResponse(target, status_code=303)
    if not sessions.key_ok(str(form.get("key") or "")):
        await asyncio.sleep(0.5)  # slow down guessing
        return render(
            request, "login.html", 401, title="Log in", next=target, error="that is not the API key"
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        sessions.open(),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post(PREFIX + "/logout")
@shows_errors
async def logout(request: Request) -> Response:
    form = await _form(request)
    if isinstance(form, Response):
        return form
    sessions_of(request).close(cookie_of({"cookie": request.headers.get("cookie", "")}))
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- images ---------------------------------------------------------------------------------------------------


@router.get(PREFIX + "/thumb/{photo_id}")
async def thumb(request: Request, photo_id: str, size: int = SIZES[0]) -> Response:
    state_db = _state_db(request)
    if state_db is None or size not in SIZES:
        return Response(status_code=404)
    ref = await _read(state_db, lambda db, _: library.photo(db, photo_id))
    if ref is None:
        return Response(status_code=404)
    cache = _thumbs(request, state_db)
    try:
        data = await run_in_threadpool(cache.thumbnail, ref.path, ref.content_hash, size)
    except PhototagError as e:
        log.info("thumbnail of photo %s: %s", photo_id, e)
        return Response(status_code=404)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


@router.get(PREFIX + "/face/{face_id}")
async def face(request: Request, face_id: int) -> Response:
    state_db = _state_db(request)
    if state_db is None:
        return Response(status_code=404)

    def read(db: StateDB, people: PeopleStore) -> tuple[Path, str, tuple[float, float, float, float]] | None:
        rows = people._query("SELECT content_hash, x, y, w, h FROM faces WHERE rowid = ?", [int(face_id)])
        if not rows:
            return None
        refs = library.refs_for_hashes(db, [str(rows[0][0])])
        ref = refs.get(str(rows[0][0]))
        if ref is None:
            return None
        return (
            ref.path,
            ref.content_hash,
            (float(rows[0][1]), float(rows[0][2]), float(rows[0][3]), float(rows[0][4])),
        )

    found = await _read(state_db, read)
    if found is None:
        return Response(status_code=404)
    path, content_hash, box = found
    key = "-".join(f"{v:.4f}" for v in box).replace(".", "")
    try:
        data = await run_in_threadpool(_thumbs(request, state_db).face, path, content_hash, box, key)
    except PhototagError:
        return Response(status_code=404)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


# -- people ---------------------------------------------------------------------------------------------------


def _clusters(db: StateDB, people: PeopleStore, page: int) -> dict[str, Any]:
    """The unnamed clusters of one page (largest first, :data:`CLUSTERS` a page) and every named person."""
    rows = people._query(
        "SELECT p.id, p.name, COUNT(f.rowid), COUNT(DISTINCT f.content_hash) FROM people p "
        "JOIN faces f ON f.person = p.id WHERE p.forgotten = 0 GROUP BY p.id "
        "ORDER BY COUNT(f.rowid) DESC, p.id"
    )
    unnamed = [r for r in rows if not r[1]]
    named = sorted((r for r in rows if r[1]), key=lambda r: str(r[1]).casefold())
    shown = unnamed[(page - 1) * CLUSTERS : page * CLUSTERS]

    def entry(row: Any, faces: int) -> dict[str, Any]:
        pid, name, n_faces, photos = row
        face_ids = [
            int(r[0])
            for r in people._query(
                "SELECT rowid FROM faces WHERE person = ? ORDER BY quality DESC, rowid LIMIT ?", [pid, faces]
            )
        ]
        return {
            "id": int(pid),
            "name": name,
            "faces": int(n_faces),
            "photos": int(photos),
            "face_ids": face_ids,
        }

    return {
        "unnamed": [entry(r, CLUSTER_FACES) for r in shown],
        "named": [entry(r, 1) for r in named],
        "page": page,
        "pages": max(1, math.ceil(len(unnamed) / CLUSTERS)),
        "total_unnamed": len(unnamed),
    }


@router.get(PREFIX + "/people")
@shows_errors
async def people_page(request: Request, page: int = 1) -> HTMLResponse:
    state_db = _state_db(request)
    if state_db is None:
        return _no_db(request)
    page = max(1, page)
    found = await _read(state_db, lambda db, people: _clusters(db, people, page))
    return render(request, "people.html", title="People", **found)


@router.get(PREFIX + "/people/{person_id}")
@shows_errors
async def person_page(request: Request, person_id: int) -> HTMLResponse:
    state_db = _state_db(request)
    if state_db is None:
        return _no_db(request)

    def read(db: StateDB, people: PeopleStore) -> dict[str, Any] | None:
        person = people.person(person_id)
        if person is None or person.forgotten:
            return None
        faces = people._query(
            "SELECT rowid, content_hash, source FROM faces WHERE person = ? ORDER BY content_hash, idx",
            [person_id],
        )
        refs = library.refs_for_hashes(db, [str(r[1]) for r in faces])
        others = [p for p in people.people() if p.id != person_id]
        return {
            "person": person,
            "faces": [
                {"id": int(fid), "photo": refs.get(str(h)), "user": src == "user"} for fid, h, src in faces
            ],
            "photos": list({r.id: r for r in refs.values()}.values()),
            "others": others,
        }

    found = await _read(state_db, read)
    if found is None:
        return _not_found(request, f"no person {person_id} (merged or forgotten?)")
    title = found["person"].name or f"Unnamed cluster {person_id}"
    return render(request, "person.html", title=title, **found)


@router.post(PREFIX + "/people/{person_id}/{action}")
@shows_errors
async def person_action(request: Request, person_id: int, action: str) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    form, state_db = posted
    actions = PeopleActions(_engine(request).config, _pm(request), state_db)
    back = str(form.get("back") or "")
    page = back if back in ("people",) else f"people/{person_id}"
    calls: dict[str, Callable[[], Done]] = {
        "name": lambda: actions.name(person_id, str(form.get("name") or "")),
        "merge": lambda: actions.merge(person_id, _ints(form.get("others"))),
        "unname": lambda: actions.unname(person_id),
        "forget": lambda: actions.forget(person_id),
        "split": lambda: actions.split(person_id, _int(form.get("face")) or -1),
    }
    call = calls.get(action)
    if call is None:
        return _not_found(request, f"no people action {action!r}")
    try:
        done = await run_in_threadpool(call)
    except (ActionError, PhototagError) as e:
        return _back(f"{PREFIX}/{page}", error=str(e))
    if action == "forget":
        page = "people"
    return _back(f"{PREFIX}/{page}", done)


# -- search and photos ------------------------------------------------------------------------------------------


async def _text_search(request: Request, state_db: Path, query: str, limit: int) -> tuple[list[Any], str]:
    """CLIP text search through the server's embed analyzer: (hits, '') or ([], why not)."""
    from ..plugins.search import rank_stored
    from ..types import TextEmbedder

    engine = _engine(request)
    names = engine.analyzers_for("embed")
    if len(names) != 1:
        return [], "text search needs exactly one embed analyzer (plugins.embed)"
    embedder = engine.runtime.get(names[0])
    if not isinstance(embedder, TextEmbedder):
        return [], "the embed model cannot embed text: set plugins.embed.model to a CLIP-family model"
    key = engine.fingerprints().get(names[0])
    if key is None:
        return [], engine.runtime.error(names[0]) or "the embed analyzer is broken"

    def work() -> list[Any]:
        import numpy as np

        error = engine.runtime.load(names[0])
        if error is not None:
            raise PhototagError(error)
        with engine.runtime.using(names[0]):
            vector = np.asarray(embedder.embed_text([query])[0], dtype=np.float32)
        with StateDB(state_db, readonly=True) as db:
            ranked = rank_stored(db, key, vector, limit)
            refs = library.refs_for_hashes(db, [h for h, _ in ranked])
        return [(refs[h], f"{s:.3f}") for h, s in ranked if h in refs]

    try:
        return await run_in_threadpool(work), ""
    except PhototagError as e:
        return [], str(e)


def _similar(request: Request, state_db: Path, ref: library.PhotoRef, limit: int) -> tuple[list[Any], str]:
    from ..plugins.search import rank_stored

    engine = _engine(request)
    names = engine.analyzers_for("embed")
    if not names:
        return [], "similar photos need an embed analyzer (plugins.embed)"
    key = engine.fingerprints().get(names[0])
    if key is None:
        return [], engine.runtime.error(names[0]) or "the embed analyzer is broken"
    with StateDB(state_db, readonly=True) as db:
        vector = db.embedding(ref.content_hash, key)
        if vector is None:
            return [], "this photo has no stored embedding (scan it with plugins.embed on)"
        ranked = rank_stored(db, key, vector, limit)
        refs = library.refs_for_hashes(db, [h for h, _ in ranked])
    return [(refs[h], f"{s:.3f}") for h, s in ranked if h in refs], ""


@router.get(PREFIX + "/search")
@shows_errors
async def search_page(
    request: Request, q: str = "", mode: str = "keyword", similar: str | None = None
) -> HTMLResponse:
    state_db = _state_db(request)
    if state_db is None:
        return _no_db(request)
    engine = _engine(request)
    modes = {"keyword": "Keywords", "text": "Text (CLIP)", "ocr": "Text in photos (OCR)"}
    hits: list[Any] = []
    note = ""
    query = " ".join(q.split())[:200]
    started = time.perf_counter()
    if similar is not None:
        ref = await _read(state_db, lambda db, _: library.photo(db, similar))
        if ref is None:
            return _not_found(request, f"no photo {similar}")
        hits, note = await run_in_threadpool(_similar, request, state_db, ref, PAGE)
        query, mode = "", "similar"
    elif query and mode == "text":
        hits, note = await _text_search(request, state_db, query, PAGE)
    elif query and mode == "ocr":
        from ..plugins.text import find_text

        def ocr(db: StateDB, _: PeopleStore) -> list[Any]:
            found = find_text(db, query, PAGE)
            refs = library.refs_for_hashes(db, [h for h, _, _ in found])
            return [(refs[h], line) for h, _, line in found if h in refs]

        hits = await _read(state_db, ocr)
    elif query:
        min_score = _min_score(request)
        hits = await _read(state_db, lambda db, _: library.search_keywords(db, query, min_score, PAGE))
    if query and not hits and not note:
        note = "nothing found"
    return render(
        request,
        "search.html",
        title="Search",
        q=query,
        mode=mode,
        modes=modes,
        hits=hits,
        note=note,
        similar=similar,
        has_text=any(getattr(a, "embed_text", None) for a in engine.runtime.analyzers),
        seconds=f"{time.perf_counter() - started:.3f}",
    )


@router.get(PREFIX + "/photo/{photo_id}")
@shows_errors
async def photo_page(request: Request, photo_id: str) -> HTMLResponse:
    state_db = _state_db(request)
    if state_db is None:
        return _no_db(request)
    min_score = _min_score(request)

    def read(db: StateDB, people: PeopleStore) -> Any:
        ref = library.photo(db, photo_id)
        if ref is None:
            return None
        found = library.info(db, people, ref, min_score)
        if found is None:
            return None
        from ..keywordreview import ReviewStore

        with ReviewStore(state_db, readonly=True) as store:
            verdicts = store.verdicts(ref.content_hash)
        return found, verdicts

    found = await _read(state_db, read)
    if found is None:
        return _not_found(request, f"no photo {photo_id}")
    photo, verdicts = found
    return render(request, "photo.html", title=photo.ref.name, photo=photo, verdicts=verdicts)


# -- review ---------------------------------------------------------------------------------------------------


@router.get(PREFIX + "/review")
@shows_errors
async def review_page(request: Request, page: int = 1) -> HTMLResponse:
    state_db = _state_db(request)
    if state_db is None:
        return _no_db(request)
    min_score = _min_score(request)
    page = max(1, page)

    def read(db: StateDB, _: PeopleStore) -> dict[str, Any]:
        from ..keywordreview import ReviewStore

        refs = library.recent(db, PAGE, (page - 1) * PAGE)
        with ReviewStore(state_db, readonly=True) as store:
            decided = store.decided(r.content_hash for r in refs)
        rows = []
        counts: dict[str, int] = {}
        for ref in refs:
            record = library.record_of(db, ref)
            if record is None:
                continue
            verdicts = decided.get(ref.content_hash, {})
            keywords = [
                k
                for k in library.keywords_of(library.current_runs(db, record), min_score)
                if k.name.casefold() not in verdicts and k.path[:1] != ("Places",)
            ]
            for k in keywords:
                counts[k.name] = counts.get(k.name, 0) + 1
            rows.append({"ref": ref, "keywords": keywords})
        total = int(db._query("SELECT COUNT(*) FROM files WHERE status = 'done'")[0][0])
        bulk = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].casefold()))
        return {"rows": rows, "bulk": bulk, "pages": max(1, math.ceil(total / PAGE))}

    found = await _read(state_db, read)
    return render(request, "review.html", title="Review", page=page, **found)


@router.post(PREFIX + "/review")
@shows_errors
async def review_action(request: Request) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    form, state_db = posted
    # one form per photo: the pressed button says both ("reject|Espresso"); bulk forms send them apart
    verdict, _, named = str(form.get("verdict") or "").partition("|")
    keyword = " ".join((named or str(form.get("keyword") or "")).split())
    page = _int(form.get("page")) or 1
    from_photo = str(form.get("photo_page") or "")
    back = f"{PREFIX}/photo/{from_photo}" if library.is_key(from_photo) else f"{PREFIX}/review"
    if verdict not in ("accept", "reject") or not keyword:
        return _back(back, error="choose accept or reject, and a keyword")
    ids = _strs(form.get("photo"))
    min_score = _min_score(request)

    def targets(db: StateDB, _: PeopleStore) -> list[library.PhotoRef]:
        if ids:  # one photo (or the ones ticked)
            refs = [r for r in (library.photo(db, i) for i in ids) if r is not None]
        else:  # bulk: every photo on this review page that has the keyword
            refs = library.recent(db, PAGE, (page - 1) * PAGE)
        return library.photos_with_keyword(db, keyword, min_score, refs)

    refs = await _read(state_db, targets)
    if not refs:
        return _back(back, error=f"no photo here has the keyword {keyword!r}")
    actions = ReviewActions(_engine(request).config, _pm(request), state_db)
    call = actions.accept if verdict == "accept" else actions.reject
    try:
        done = await run_in_threadpool(call, refs, keyword)
    except PhototagError as e:
        return _back(back, error=str(e))
    return _back(back, done)


# -- status ---------------------------------------------------------------------------------------------------


def _status(engine: Any, state_db: Path | None) -> dict[str, Any]:
    models = []
    devices = engine.runtime.devices()
    for name in engine.analyzer_names():
        device = devices.get(name)
        models.append(
            {
                "name": name,
                "task": engine.runtime.get(name).task,
                "model": engine.runtime.model_info(name).id,
                "device": device.torch_device if device is not None else "",
                "why": device.reason if device is not None else "",
                "error": engine.runtime.error(name),
            }
        )
    out: dict[str, Any] = {
        "models": models,
        "failures": [],
        "scan_failures": [],
        "counts": None,
        "daemon": None,
    }
    if state_db is None:
        return out
    from ..daemon.queue import WorkQueue

    with WorkQueue(state_db, readonly=True) as queue, StateDB(state_db, readonly=True) as db:
        out["counts"] = queue.counts()
        out["daemon"] = queue.daemon_info()
        out["failures"] = [
            {"id": int(r[0]), "path": str(r[1]), "error": r[2], "attempts": r[3], "when": _when(r[4])}
            for r in queue._query(
                "SELECT rowid, path, error, attempts, failed_at FROM watch_failed ORDER BY failed_at DESC LIMIT 200"
            )
        ]
        out["scan_failures"] = [
            {"path": str(r.path), "error": r.error, "when": _when(r.updated)}
            for r in db.records(status="failed")[:200]
        ]
        out["files"] = db.counts()
    info = out["daemon"] or {}
    out["alive"] = bool(info.get("running")) and time.time() - float(info.get("heartbeat", 0)) < 60
    return out


def _when(t: Any) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(t)))
    except (TypeError, ValueError):
        return ""


@router.get(PREFIX + "/status")
@shows_errors
async def status_page(request: Request) -> HTMLResponse:
    engine = _engine(request)
    found = await run_in_threadpool(_status, engine, _state_db(request))
    return render(request, "status.html", title="Status", uptime=int(time.time() - engine.started), **found)


@router.post(PREFIX + "/status/retry")
@shows_errors
async def retry(request: Request) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    form, state_db = posted
    ids = _ints(form.get("failure"))

    def work() -> int:
        from ..daemon.queue import WorkQueue
        from ..sqlitedb import path_from_db

        with WorkQueue(state_db) as queue:
            paths = None
            if ids:
                marks = ",".join("?" * len(ids))
                rows = queue._query(f"SELECT path FROM watch_failed WHERE rowid IN ({marks})", ids)
                paths = [path_from_db(r[0]) for r in rows]
                if not paths:
                    return 0
            return len(queue.retry_failed(paths))

    n = await run_in_threadpool(work)
    done = Done(
        f"queued {n} failed photo(s) again; the daemon picks them up within seconds"
        if n
        else "nothing to retry"
    )
    return _back(f"{PREFIX}/status", done)
