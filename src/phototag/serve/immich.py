"""Immich's machine-learning API: ``GET /ping`` and ``POST /predict``.

Immich's server (``machine-learning.repository.ts``) sends multipart form data: ``entries`` (a JSON string
naming the tasks and models) and either ``image`` (the 1440 px preview JPEG) or ``text``::

    {"clip": {"visual": {"modelName": "ViT-B-32__openai"}}}
    {"clip": {"textual": {"modelName": "ViT-B-32__openai", "options": {"language": "en"}}}}
    {"facial-recognition": {"detection": {...}, "recognition": {"modelName": "buffalo_l"}}}
    {"ocr": {"detection": {"modelName": "PP-OCRv5_mobile", ...}, "recognition": {...}}}

and reads a response keyed by task (``imageHeight``/``imageWidth`` for images). CLIP vectors are sent as a
*string* holding a JSON array, L2-normalised, like Immich's own service.

**Model names are never substituted.** ``serve.immich_models`` maps an Immich name to the model of a configured
analyzer (``ViT-B-32__openai`` -> ``openai/clip-vit-base-patch32``, the same OpenAI weights). A name with no
mapping, or mapped to a model that is not the configured one, is refused: Immich stores the vectors in one
column and compares them with the ones it has, so vectors of another model would silently break search.

``facial-recognition`` and ``ocr`` answer only when an analyzer for them is configured and mapped the same way;
Immich's face column is ``vector(512)``, so face vectors of another length are refused. Errors are FastAPI's
``{"detail": ...}`` (Immich marks the URL unhealthy on any non-2xx and tries the next one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from ..types import Analysis, DecodedImage
from .answers import image_embedding, text_embedding
from .engine import Engine, get_engine
from .errors import BadRequest, NotAvailable, ServeError, UnknownModel, error_response

router = APIRouter()
EngineDep = Annotated[Engine, Depends(get_engine)]

TASKS = {"clip": "embed", "facial-recognition": "face-identity", "ocr": "ocr"}
"""Immich task -> the phototag task whose analyzer answers it."""
IMMICH_FACE_DIMS = 512
"""Immich stores face vectors in a ``vector(512)`` column."""


class BadEntries(ServeError):
    status = 422
    code = "bad_entries"


@router.get("/ping")
async def ping() -> PlainTextResponse:
    """Immich's health check (every 30 s, 2 s timeout)."""
    return PlainTextResponse("pong")


@router.post("/predict")
async def predict(request: Request, engine: EngineDep) -> JSONResponse:
    try:
        return JSONResponse(await _predict(request, engine))
    except ServeError as e:
        return error_response(e, "immich")


async def _predict(request: Request, engine: Engine) -> dict[str, Any]:
    kind = request.headers.get("content-type", "")
    if "multipart/form-data" not in kind and "application/x-www-form-urlencoded" not in kind:
        raise BadRequest("send multipart/form-data with entries and image or text, as Immich does")
    form = await request.form()
    entries = parse_entries(form.get("entries"))
    image_part = form.get("image")
    text = form.get("text")
    data: bytes | None = None
    if isinstance(image_part, str):
        raise BadRequest("image: send the image as a file part (a Blob), not as a text field")
    if image_part is not None:
        data = await image_part.read()
    if data is None and not isinstance(text, str):
        raise BadRequest("either image or text must be sent")
    if data is not None and not data:
        raise BadRequest("the image is empty (0 bytes)")
    out: dict[str, Any] = {}
    image: DecodedImage | None = None
    if data is not None:
        image = await engine.decode(data, "image")
        out["imageHeight"], out["imageWidth"] = image.height, image.width
    for task, spec in entries.items():
        if task == "clip":
            out["clip"] = await _clip(engine, spec, image, text if isinstance(text, str) else None)
        elif image is None:
            raise BadRequest(f"{task} needs an image")
        elif task == "facial-recognition":
            out[task] = await _faces(engine, spec, image)
        elif task == "ocr":
            out[task] = await _ocr(engine, spec, image)
    return out


def parse_entries(raw: Any) -> dict[str, dict[str, Any]]:
    """``entries`` as ``{task: {type: {modelName, options}}}``; BadEntries (422) when it is not that."""
    if not isinstance(raw, str):
        raise BadEntries('entries: required, a JSON string such as {"clip": {"visual": {"modelName": ...}}}')
    try:
        entries = json.loads(raw)
    except ValueError:
        raise BadEntries("entries: not valid JSON") from None
    if not isinstance(entries, dict) or not entries:
        raise BadEntries("entries: expected a JSON object keyed by task")
    for task, spec in entries.items():
        if task not in TASKS:
            raise BadEntries(f"entries: unknown task {task!r} (known: {', '.join(TASKS)})")
        if not isinstance(spec, dict) or not spec:
            raise BadEntries(f"entries.{task}: expected an object keyed by model type")
        for kind, model in spec.items():
            if not isinstance(model, dict) or not isinstance(model.get("modelName"), str):
                raise BadEntries(f'entries.{task}.{kind}: expected {{"modelName": ...}}')
    return entries


def resolve_model(engine: Engine, immich_name: str, task: str) -> str:
    """The configured analyzer (of phototag ``task``) that answers Immich model ``immich_name``; raises
    UnknownModel when ``serve.immich_models`` has no mapping for it, or maps it to a model that is not the one
    configured for the task."""
    mapping: Mapping[str, str] = getattr(engine.settings, "immich_models", {}) or {}
    bare = immich_name.rsplit("/", 1)[-1].replace(":", "_")  # Immich strips an org/ prefix, ':' -> '_'
    target = mapping.get(immich_name) or mapping.get(bare)
    names = engine.analyzers_for(task)
    configured = {n: _configured_models(engine, n) for n in names}
    if target is None:
        raise UnknownModel(
            f"Immich model {immich_name!r} has no mapping in serve.immich_models; add "
            f"{bare}: <the model of plugins.{task}> there (configured: "
            f"{', '.join(m for ms in configured.values() for m in ms) or 'none'})",
            status=422,
        )
    for name, models in configured.items():
        if target in models:
            return name
    if not names:
        raise NotAvailable(
            f"Immich asked for {immich_name!r} ({target}), and no {task} analyzer is configured: set "
            f"plugins.{task}.model: {target}",
        )
    raise UnknownModel(
        f"Immich asked for {immich_name!r}, which serve.immich_models maps to {target!r}, but plugins.{task} "
        f"runs {', '.join(m for ms in configured.values() for m in ms[:1])}; vectors of another model would "
        f"break Immich's search. Set plugins.{task}.model: {target}, or choose the matching model in Immich",
        status=422,
    )


def _configured_models(engine: Engine, name: str) -> list[str]:
    """What analyzer ``name`` runs: its configured ``model`` setting and its model id."""
    out: list[str] = []
    configured = getattr(getattr(engine.runtime.get(name), "settings", None), "model", None)
    for model in (configured, engine.runtime.model_info(name).id):
        if isinstance(model, str) and model and model not in out:
            out.append(model)
    return out


def _vector_text(vector: Sequence[float]) -> str:
    return json.dumps([float(x) for x in vector])


async def _clip(engine: Engine, spec: Mapping[str, Any], image: DecodedImage | None, text: str | None) -> str:
    if "visual" in spec:
        if image is None:
            raise BadRequest("clip.visual needs an image")
        name = resolve_model(engine, spec["visual"]["modelName"], "embed")
        return _vector_text(await image_embedding(engine, name, image))
    if "textual" in spec:
        if text is None:
            raise BadRequest("clip.textual needs text")
        name = resolve_model(engine, spec["textual"]["modelName"], "embed")
        return _vector_text(await text_embedding(engine, name, text))
    raise BadEntries("entries.clip: expected visual or textual")


def _model_of(spec: Mapping[str, Any]) -> str:
    """The model name of a two-stage entry (the recognition model's, else the first stage's)."""
    kind = "recognition" if "recognition" in spec else next(iter(spec))
    return str(spec[kind]["modelName"])


async def _faces(engine: Engine, spec: Mapping[str, Any], image: DecodedImage) -> list[dict[str, Any]]:
    """Faces in Immich's shape: pixel boxes of the sent image (whole numbers), score, 512-d embedding."""
    _need(engine, "face-identity", "facial-recognition", "plugins.faces")
    model = _model_of(spec)
    name = resolve_model(engine, model, "face-identity")
    (analysis,) = await engine.run(name, [image])
    min_score = _min_score(spec, "detection")
    faces = []
    for region, vector in _face_pairs(analysis):
        if region.score < min_score:
            continue
        if len(vector) != IMMICH_FACE_DIMS:
            raise NotAvailable(
                f"analyzer {name} gives {len(vector)}-value face vectors; Immich stores {IMMICH_FACE_DIMS}"
            )
        faces.append(
            {
                "boundingBox": {
                    "x1": round(region.x * image.width),
                    "y1": round(region.y * image.height),
                    "x2": round((region.x + region.w) * image.width),
                    "y2": round((region.y + region.h) * image.height),
                },
                "embedding": _vector_text(vector),
                "score": round(region.score, 4),
            }
        )
    return faces


def _face_pairs(analysis: Analysis) -> list[tuple[Any, list[float]]]:
    faces = analysis.extra.get("faces") if isinstance(analysis.extra, Mapping) else None
    regions = [r for r in analysis.regions if r.kind == "face"]
    if not isinstance(faces, list) or len(faces) != len(regions):
        return []
    out = []
    for region, face in zip(regions, faces, strict=True):
        vector = face.get("descriptor") or face.get("embedding") if isinstance(face, Mapping) else None
        if vector:
            out.append((region, [float(x) for x in vector]))
    return out


async def _ocr(engine: Engine, spec: Mapping[str, Any], image: DecodedImage) -> dict[str, list[Any]]:
    """Text in Immich's shape: ``text``, ``box`` (8 normalised corner values per text, clockwise from the top
    left), ``boxScore``, ``textScore``, from the ``ocr`` analyzer's ``extra["text"]`` lines (that shape, see
    :mod:`phototag.plugins.text`), filtered by Immich's ``minScore`` options."""
    _need(engine, "ocr", "ocr", "plugins.text")
    model = _model_of(spec)
    name = resolve_model(engine, model, "ocr")
    (analysis,) = await engine.run(name, [image])
    min_box = _min_score(spec, "detection")
    min_text = _min_score(spec, "recognition")
    out: dict[str, list[Any]] = {"text": [], "box": [], "boxScore": [], "textScore": []}
    lines = analysis.extra.get("text") if isinstance(analysis.extra, Mapping) else None
    for line in lines if isinstance(lines, list) else []:
        box, box_score, text_score = line.get("box"), line.get("box_score"), line.get("text_score")
        if not (isinstance(box, list) and len(box) == 8 and isinstance(line.get("text"), str)):
            continue
        if float(box_score or 0) < min_box or float(text_score or 0) < min_text:
            continue
        out["text"].append(line["text"])
        out["box"].extend(float(v) for v in box)
        out["boxScore"].append(float(box_score or 0))
        out["textScore"].append(float(text_score or 0))
    return out


def _min_score(spec: Mapping[str, Any], kind: str) -> float:
    options = spec.get(kind, {}).get("options") if isinstance(spec.get(kind), Mapping) else None
    value = options.get("minScore") if isinstance(options, Mapping) else None
    return float(value) if isinstance(value, int | float) else 0.0


def _need(engine: Engine, task: str, immich_task: str, setting: str) -> None:
    if not engine.analyzers_for(task):
        raise NotAvailable(
            f"Immich asked for {immich_task}, and no {task} analyzer is configured on this phototag server; "
            f"enable one ({setting}) or leave {immich_task} to Immich's own machine-learning service"
        )
