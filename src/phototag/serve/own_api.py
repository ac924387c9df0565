"""phototag's own API: ``POST /v1/analyze``, ``GET /v1/search``, ``POST /v1/similar``.

``/v1/analyze`` takes one image, as a multipart upload (field ``file``) or as JSON (``{"image": "<data URL or
base64>", "tasks": ["classify"]}``), and answers with the document the JSON sidecar holds for a photo
(:func:`phototag.serialize.result_to_dict`): every analyzer's tags, regions, caption, answers, model and
fingerprint. ``/v1/search`` and ``/v1/similar`` rank the photos in the server's state DB by embedding, as
``phototag search``/``similar`` do (:func:`phototag.plugins.search.rank_by_vector`).

Why one module of ~420 lines: most of it is the OpenAPI description (request and response models, the
multipart and JSON bodies of each route), which belongs next to the routes it documents.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ..types import TextEmbedder
from .engine import Engine, EngineDep
from .errors import BadRequest, NotAvailable, ServeError

router = APIRouter(tags=["phototag"])

MAX_FORM_FIELDS = 32


# -- models (the OpenAPI schema) ------------------------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ModelRef(BaseModel):
    id: str
    revision: str = ""


class TagOut(BaseModel):
    name: str
    score: float
    path: list[str]


class Box(BaseModel):
    x: float
    y: float
    w: float
    h: float


class RegionOut(BaseModel):
    label: str
    kind: str
    score: float
    box: Box


class QA(BaseModel):
    question: str
    answer: str
    score: float | None = None
    name: str | None = None
    xmp: str | None = None


class EmbeddingRef(_Open):
    dims: int
    store: str
    key: str
    vector: list[float] | None = None
    """The vector itself, when the request asked for ``embeddings``."""


class AnalyzerOut(_Open):
    analyzer: str
    task: str
    model: ModelRef
    fingerprint: str
    seconds: float
    tags: list[TagOut] = []
    regions: list[RegionOut] = []
    caption: str | None = None
    answers: dict[str, str] | None = None
    qa: list[QA] = []
    embedding: EmbeddingRef | None = None
    extra: dict[str, Any] | None = None
    error: str | None = None
    """Why this analyzer gave no result (the others' results are still there)."""


class Dimensions(BaseModel):
    width: int
    height: int


class AnalyzeResult(_Open):
    """The JSON sidecar document (``photo.jpg.phototag.json``) for the uploaded image."""

    schema_: str = Field("phototag/result", alias="schema")
    schema_version: int
    file: str
    content_hash: str
    size: int
    dimensions: Dimensions
    keywords: list[str]
    caption: str | None
    analyzers: dict[str, AnalyzerOut]
    phototag_version: str


class AnalyzeJson(BaseModel):
    """``/v1/analyze`` as JSON."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(description="The image: a data URL (data:image/jpeg;base64,...), bare base64, or an "
                       "http(s) URL when the server allows fetching (serve.fetch_urls).")  # fmt: skip
    name: str | None = Field(None, description="A file name for the result document (a label only).")
    tasks: list[str] | None = Field(None, description="Tasks to run (classify, detect, embed, caption, vqa, ...); "
                                    "default: every configured analyzer.")  # fmt: skip
    analyzers: list[str] | None = Field(None, description="Analyzers to run, by name (instead of tasks).")
    embeddings: bool = Field(False, description="Include embedding vectors in the answer.")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class Hit(BaseModel):
    content_hash: str
    score: float
    paths: list[str]
    """Where the photo is now, as the state DB recorded it (several for copies)."""


class SearchResult(BaseModel):
    analyzer: str
    model: str
    results: list[Hit]


class SimilarJson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str | None = Field(None, description="An image (data URL or base64) to find look-alikes of.")
    content_hash: str | None = Field(None, description="A scanned photo's content hash (BLAKE2b-128 hex).")
    limit: int = Field(20, ge=1, le=1000)
    analyzer: str | None = Field(None, description="Embed analyzer, when several are configured.")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "bad request or image not decodable"),
        (401, "missing or wrong API key"),
        (413, "body larger than serve.max_body_mb"),
        (415, "unsupported content type"),
        (422, "no analyzer does what was asked"),
        (503, "busy: retry after Retry-After seconds"),
        (504, "deadline passed"),
    )
}

_ANALYZE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "tasks": {"type": "string", "description": "comma-separated tasks"},
                        "analyzers": {"type": "string", "description": "comma-separated analyzer names"},
                        "embeddings": {"type": "boolean"},
                    },
                }
            },
            "application/json": {"schema": AnalyzeJson.model_json_schema()},
        },
    }
}


# -- routes ---------------------------------------------------------------------------------------------


@router.post(
    "/v1/analyze",
    response_model=AnalyzeResult,
    response_model_exclude_unset=True,
    responses=ERRORS,
    openapi_extra=_ANALYZE_BODY,
)
async def analyze(request: Request, engine: EngineDep) -> Any:
    """Analyse one image (multipart ``file``, or JSON with ``image``): the JSON sidecar document."""
    kind = _content_type(request)
    if kind == "multipart/form-data":
        data, name, tasks, analyzers, embeddings = await _from_form(request)
    elif kind == "application/json":
        body = AnalyzeJson.model_validate(await _json(request))
        data, name = await engine.image_bytes(body.image), body.name or "upload"
        tasks, analyzers, embeddings = body.tasks, body.analyzers, body.embeddings
    else:
        raise _unsupported(kind, "multipart/form-data (field file) or application/json")
    names = engine.choose(tasks, analyzers)  # refuse a bad task before decoding
    image = await engine.decode(data, name, engine.min_side(names))
    return await engine.analyze(image, analyzers=names, include_embeddings=embeddings)


@router.get("/v1/search", response_model=SearchResult, responses=ERRORS)
async def search(
    engine: EngineDep,
    q: str = Query(..., min_length=1, max_length=1000, description="What to look for, in words."),
    limit: int = Query(20, ge=1, le=1000),
    analyzer: str | None = Query(None, description="Embed analyzer, when several are configured."),
) -> SearchResult:
    """Scanned photos that match a text query, best first (needs a CLIP-family embed model and a state DB)."""
    name = _embedder(engine, analyzer)
    embedder = engine.runtime.get(name)
    if not isinstance(embedder, TextEmbedder):
        raise NotAvailable(
            f"the embed model {engine.runtime.model_info(name).id} cannot embed text: set plugins.embed.model "
            "to a CLIP-family model (e.g. openai/clip-vit-base-patch32) on the server and re-scan"
        )

    def text_vector() -> np.ndarray:
        with engine.runtime.using(name):
            error = engine.runtime.load(name)
            if error is not None:
                raise NotAvailable(error)
            return np.asarray(embedder.embed_text([q])[0], dtype=np.float32)

    vector = await asyncio.get_running_loop().run_in_executor(None, text_vector)
    return await _ranked(engine, name, vector, limit)


@router.post(
    "/v1/similar",
    response_model=SearchResult,
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "limit": {"type": "integer"},
                        },
                    }
                },
                "application/json": {"schema": SimilarJson.model_json_schema()},
            },
        }
    },
)
async def similar(request: Request, engine: EngineDep) -> SearchResult:
    """Scanned photos that look like an image (uploaded, or a scanned photo's content hash), best first."""
    kind = _content_type(request)
    if kind == "multipart/form-data":
        data, name, _, _, _ = await _from_form(request)
        form = await request.form()
        body = SimilarJson(limit=_int(form.get("limit"), 20), analyzer=_str(form.get("analyzer")))
    elif kind == "application/json":
        body = SimilarJson.model_validate(await _json(request))
        data, name = (await engine.image_bytes(body.image), "upload") if body.image else (b"", "")
    else:
        raise _unsupported(kind, "multipart/form-data (field file) or application/json")
    analyzer = _embedder(engine, body.analyzer)
    if data:
        image = await engine.decode(data, name, engine.min_side([analyzer]))
        [analysis] = await engine.run(analyzer, [image])
        if analysis.embedding is None:
            raise ServeError(f"the embed analyzer {analyzer} returned no embedding", code="analysis_failed")
        vector = np.asarray(analysis.embedding, dtype=np.float32)
    elif body.content_hash:
        found = await _in_db(engine, lambda db: db.embedding(body.content_hash, _key(engine, analyzer)))
        if found is None:
            raise BadRequest(
                f"no photo with content hash {body.content_hash} was embedded with {analyzer}: send the image",
                code="not_found",
            )
        vector = found
    else:
        raise BadRequest("send an image (file, or image in JSON) or a content_hash")
    return await _ranked(engine, analyzer, vector, body.limit)


# -- helpers --------------------------------------------------------------------------------------------


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _unsupported(kind: str, wanted: str) -> ServeError:
    return ServeError(
        f"unsupported content type {kind or '(none)'!r}: send {wanted}",
        status=415,
        code="unsupported_media_type",
    )


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(f"the body is not valid JSON ({e})") from None


async def _from_form(request: Request) -> tuple[bytes, str, list[str] | None, list[str] | None, bool]:
    """``(bytes, name, tasks, analyzers, embeddings)`` of a multipart upload."""
    try:
        form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    except ServeError:
        raise
    except Exception as e:  # the multipart parser's errors (malformed body, too many parts)
        raise BadRequest(f"the multipart body cannot be read ({e})") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise BadRequest(
            "the multipart body has no file field named 'file': send the image as file=@photo.jpg"
        )
    data = await upload.read()
    return (
        data,
        upload.filename or "upload",
        _csv(form.getlist("tasks")),
        _csv(form.getlist("analyzers")),
        _str(form.get("embeddings")) in ("1", "true", "yes", "on"),
    )


def _csv(values: list[Any]) -> list[str] | None:
    out = [p.strip() for v in values if isinstance(v, str) for p in v.split(",") if p.strip()]
    return out or None


def _str(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def _int(value: Any, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip().isdigit():
        raise BadRequest(f"limit must be a whole number, got {value!r}")
    return max(1, min(1000, int(value)))


def _embedder(engine: Engine, name: str | None) -> str:
    """The embed analyzer to rank with; :class:`NotAvailable` when there is none or no state DB."""
    names = engine.analyzers_for("embed")
    if name is not None:
        names = [n for n in names if n == name]
    if not names:
        raise NotAvailable("no embed analyzer is configured on the server: enable plugins.embed")
    if len(names) > 1:
        raise BadRequest(
            f"several embed analyzers are configured ({', '.join(names)}): pick one with analyzer"
        )
    if engine.state_db is None:
        raise NotAvailable(
            "the server has no state database to search: run `phototag scan` on the server (state_db) first"
        )
    return names[0]


def _key(engine: Engine, analyzer: str) -> str:
    key = engine.fingerprints().get(analyzer)
    if key is None:
        raise NotAvailable(engine.runtime.error(analyzer) or f"the analyzer {analyzer} is broken")
    return key


async def _in_db(engine: Engine, read: Any) -> Any:
    """Run ``read(db)`` on the state DB (read-only) in a worker thread."""
    from ..state import StateDB

    path: Path = engine.state_db  # type: ignore[assignment]

    def work() -> Any:
        db = StateDB(path, readonly=True)
        try:
            return read(db)
        finally:
            db.close()

    return await asyncio.get_running_loop().run_in_executor(None, work)


async def _ranked(engine: Engine, analyzer: str, vector: np.ndarray, limit: int) -> SearchResult:
    from ..plugins.search import rank_stored

    key = _key(engine, analyzer)

    def read(db: Any) -> list[Hit]:
        hits = []
        # through the vector index beside the state DB once the library is large (exact below that)
        for content_hash, score in rank_stored(db, key, vector, limit):
            paths = [str(p) for p in db.paths_for_hash(content_hash)]
            if paths:
                hits.append(Hit(content_hash=content_hash, score=round(score, 6), paths=paths))
        return hits

    hits = await _in_db(engine, read)
    return SearchResult(analyzer=analyzer, model=engine.runtime.model_info(analyzer).id, results=hits)
