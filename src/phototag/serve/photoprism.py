"""PhotoPrism's "vision" service API: ``POST /api/v1/vision/{labels,caption,nsfw,face}``, and the older
``/api/v1/vision/describe`` of photoprism-vision.

Request (what PhotoPrism's Go client sends, ``Engine: vision``)::

    {"id": "<uuid>", "model": "...", "version": "latest", "system": "...", "prompt": "...", "suffix": "",
     "stream": false, "images": ["data:image/jpeg;base64,..."]}

Response: ``{"id": <echo>, "code": 200, "model": {"type", "name", "version"}, "result": {...}}`` with
``result.labels`` (name, confidence, topicality, priority, categories: PhotoPrism stores them as given, so the
categories come from :mod:`phototag.serve.labelmap`), ``result.caption`` (``{"text", "source"}``; a bare
string would break PhotoPrism's Go decoding), ``result.nsfw`` or ``result.embeddings``. Labels requests carry
LLM prompts, which the classifiers ignore; up to three images (crops of one photo) give one merged list.

Errors: ``{"id", "code", "error", "result": {}}`` with the HTTP status (PhotoPrism ignores ``code`` in the
body, so the status and a JSON body both matter). ``/nsfw`` and ``/face`` answer only when a model for them is
configured; face vectors only from the model PhotoPrism asked for, never another one of the same length.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..types import DecodedImage
from .answers import MAX_LABEL_IMAGES, caption_for, labels_for, ref_bytes, require_label_analyzers
from .engine import Engine, get_engine
from .errors import BadRequest, NotAvailable, ServeError, error_body, error_headers
from .labelmap import photoprism_label

router = APIRouter()
EngineDep = Annotated[Engine, Depends(get_engine)]

FACE_MODELS: Mapping[str, int] = {"facenet": 512, "sface": 128, "arcface_r50": 512, "arcface_mbf": 512}
"""PhotoPrism's face models and their vector lengths (``PHOTOPRISM_FACE_MODEL``)."""
NSFW_KEYS = ("Drawing", "Hentai", "Neutral", "Porn", "Sexy")
_ID = re.compile(r"^[\w.:-]{0,100}$")


async def _body(request: Request) -> dict[str, Any]:
    if "multipart/" in request.headers.get("content-type", ""):
        raise BadRequest("send JSON (Content-Type: application/json), not multipart form data")
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("the body is not JSON; send the vision request format as PhotoPrism does") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _request_id(body: Mapping[str, Any]) -> str:
    value = body.get("id")
    return value if isinstance(value, str) and _ID.match(value) else ""


def _error(exc: ServeError, request_id: str) -> JSONResponse:
    body = error_body(exc, "photoprism")
    body["id"] = request_id
    return JSONResponse(body, status_code=exc.status, headers=error_headers(exc))


async def _images(
    engine: Engine, body: Mapping[str, Any], most: int, min_side: int | None
) -> list[DecodedImage]:
    refs = body.get("images")
    if refs is None and isinstance(body.get("url"), str):
        refs = [body["url"]]
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise BadRequest('images: required, a list of data URLs ("data:image/jpeg;base64,...")')
    if len(refs) > most:
        raise BadRequest(f"images: at most {most} per request here, got {len(refs)}")
    out = []
    for i, ref in enumerate(refs):
        data = await ref_bytes(engine, ref, f"images[{i}]")
        out.append(await engine.decode(data, f"images[{i}]", min_side))
    return out


def _model_name(engine: Engine, names: Sequence[str]) -> tuple[str, str]:
    infos = [engine.runtime.model_info(n) for n in names]
    return ", ".join(i.id for i in infos), ", ".join(i.revision or "latest" for i in infos)


def _ok(request_id: str, kind: str, model: tuple[str, str], result: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": request_id,
        "code": 200,
        "model": {"type": kind, "name": model[0], "version": model[1]},
        "result": result,
    }


async def _handle(
    request: Request, work: Callable[[Mapping[str, Any], str], Awaitable[dict[str, Any]]]
) -> JSONResponse:
    request_id = ""
    try:
        body = await _body(request)
        request_id = _request_id(body)
        return JSONResponse(await work(body, request_id))
    except ServeError as e:
        return _error(e, request_id)


@router.post("/api/v1/vision/labels")
async def labels(request: Request, engine: EngineDep) -> JSONResponse:
    """Labels for one photo (up to three crops of it, merged), from every classify and detect analyzer."""

    async def work(body: Mapping[str, Any], request_id: str) -> dict[str, Any]:
        names = require_label_analyzers(engine)
        images = await _images(engine, body, MAX_LABEL_IMAGES, engine.min_side(names))
        tags = await labels_for(engine, images)
        result = {"labels": [photoprism_label(t) for t in tags]}
        return _ok(request_id, "labels", _model_name(engine, names), result)

    return await _handle(request, work)


@router.post("/api/v1/vision/caption")
async def caption(request: Request, engine: EngineDep) -> JSONResponse:
    """A caption from the configured caption model: ``result.caption.text``."""

    async def work(body: Mapping[str, Any], request_id: str) -> dict[str, Any]:
        names = engine.analyzers_for("caption")
        (image,) = await _images(engine, body, 1, engine.min_side(names[:1]) if names else None)
        text, name = await caption_for(engine, image)
        result = {"caption": {"text": text, "source": "image"}}
        return _ok(request_id, "caption", _model_name(engine, [name]), result)

    return await _handle(request, work)


@router.post("/api/v1/vision/describe")
async def describe(request: Request, engine: EngineDep) -> JSONResponse:
    """photoprism-vision's 2024 route: ``{"id", "result": {"caption": "<string>"}, "model": {...}}``."""

    async def work(body: Mapping[str, Any], request_id: str) -> dict[str, Any]:
        (image,) = await _images(engine, body, 1, None)
        text, name = await caption_for(engine, image)
        model, version = _model_name(engine, [name])
        return {"id": request_id, "result": {"caption": text}, "model": {"name": model, "version": version}}

    return await _handle(request, work)


@router.post("/api/v1/vision/nsfw")
async def nsfw(request: Request, engine: EngineDep) -> JSONResponse:
    """NSFW scores, one object per image, from an analyzer of the ``nsfw`` task (phototag ships none)."""

    async def work(body: Mapping[str, Any], request_id: str) -> dict[str, Any]:
        names = engine.analyzers_for("nsfw")
        if not names:
            raise NotAvailable(
                "no NSFW classifier is configured on this phototag server (phototag ships none); remove the "
                "nsfw model from vision.yml or point it at PhotoPrism's built-in TensorFlow model"
            )
        images = await _images(engine, body, 8, engine.min_side(names[:1]))
        analyses = await engine.run(names[0], images)
        scores = []
        for analysis in analyses:
            found = {t.name.lower(): float(t.score) for t in analysis.tags}
            scores.append({key: round(found.get(key.lower(), 0.0), 4) for key in NSFW_KEYS})
        return _ok(request_id, "nsfw", _model_name(engine, names[:1]), {"nsfw": scores})

    return await _handle(request, work)


def face_model_problem(asked: str, served: Sequence[str], dims: int | None) -> str | None:
    """Why phototag's face model must not answer a request for ``asked`` vectors; None when it may.
    ``served`` are the names phototag's model goes by (analyzer, model id, descriptor model; the last one is
    shown), ``dims`` its vector length when known. PhotoPrism compares face vectors with those of its own model:
    vectors of another model, even of the same length, would match the wrong people."""
    shown = next((s for s in reversed(served) if s), "?")
    if asked in served and asked:
        known = FACE_MODELS.get(asked)
        if known is not None and dims is not None and dims != known:
            return f"{asked} vectors have {known} values, phototag's model gives {dims}"
        return None
    if asked in FACE_MODELS:
        return (
            f"PhotoPrism asked for {asked} face vectors ({FACE_MODELS[asked]} values); phototag's face model "
            f"is {shown!r} ({dims or 'other'} values), whose vectors would not match the faces PhotoPrism "
            f"already has. Keep PhotoPrism's own face model, or set the face model's Model in vision.yml to "
            f"{shown!r} and re-index faces"
        )
    return f"face model {asked!r} is not served here; phototag's face model is {shown!r}"


@router.post("/api/v1/vision/face")
async def face(request: Request, engine: EngineDep) -> JSONResponse:
    """One face vector per 160 px crop, only from the face model PhotoPrism asked for."""

    async def work(body: Mapping[str, Any], request_id: str) -> dict[str, Any]:
        names = engine.analyzers_for("face-identity")
        if not names:
            raise NotAvailable(
                "no face-embedding model is configured on this phototag server; keep PhotoPrism's built-in "
                "face model for faces (remove the face entry from vision.yml)"
            )
        name = names[0]
        asked = str(body.get("model") or "")
        served_id = engine.runtime.model_info(name).id
        problem = face_model_problem(asked, [name, served_id], None)
        if problem is not None and asked in FACE_MODELS:  # refuse before any model work
            raise NotAvailable(problem)
        images = await _images(engine, body, 64, None)
        analyses = await engine.run(name, images)
        vectors = []
        for i, analysis in enumerate(analyses):
            found = face_vector(analysis.embedding, analysis.extra)
            if found is None:
                raise BadRequest(f"images[{i}]: no face found in this crop")
            vector, descriptor = found
            problem = face_model_problem(asked, [name, served_id, descriptor], len(vector))
            if problem is not None:
                raise NotAvailable(problem)
            vectors.append([vector])
        return _ok(request_id, "face", (asked, "latest"), {"embeddings": vectors})

    return await _handle(request, work)


def face_vector(
    embedding: Sequence[float] | None, extra: Mapping[str, Any]
) -> tuple[list[float], str] | None:
    """``(vector, model)`` of a face crop: the analysis' embedding, or the first face's ``descriptor`` in
    ``extra["faces"]`` (with its ``model``, e.g. ``dlib-resnet-v1``); None when no face was found."""
    model = ""
    if embedding is None:
        faces = extra.get("faces") if isinstance(extra, Mapping) else None
        if isinstance(faces, list) and faces and isinstance(faces[0], Mapping):
            embedding = faces[0].get("descriptor") or faces[0].get("embedding")
            model = str(faces[0].get("model") or "")
    if not embedding:
        return None
    vector = [float(x) for x in embedding]
    if not all(math.isfinite(x) for x in vector):
        raise ServeError("the face model returned a vector with NaN or infinite values", code="bad_embedding")
    return vector, model
