"""The server side of remote analyzers (:mod:`phototag.remote`): phototag's own analyzers, one by one.

``GET /v1/analyzers`` lists each configured analyzer with what a client needs to stand in for it:
``name``, ``tasks``, ``fingerprint`` (equal to the fingerprint of the same analyzer and settings run locally,
so that a client switching between local and remote re-runs nothing), ``model_info``, ``input_size`` (the
client decodes photos to it, as for a local model) and ``needs``.

``POST /v1/analyzers/{name}`` takes a batch of images as multipart ``images`` files (lossless PNG of the
client's decoded pixels, or any image phototag decodes) plus an optional ``meta`` form field, a JSON list with
one ``{"width", "height", "format"}`` per image: the original photo's size and format, which a local
analyzer would have seen in its :class:`~phototag.types.DecodedImage`. The images are taken as they are (no
resize: the client already decoded them to ``input_size``) and run through the engine's dynamic batcher; the
answer is ``{"analyzer", "fingerprint", "model_info", "results": [analysis, ...]}`` with each analysis in
:func:`phototag.serialize.analysis_to_dict`'s exact form (no rounding), in the images' order.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from ..serialize import analysis_to_dict
from ..types import TextEmbedder
from .engine import Engine, get_engine
from .errors import BadRequest, NotAvailable

router = APIRouter()
EngineDep = Annotated[Engine, Depends(get_engine)]

MAX_IMAGES = 256
"""Most images in one request: a client sends one pipeline batch (``batch_size``, 8 by default)."""


@router.get("/v1/analyzers", tags=["remote analyzers"])
def list_analyzers(engine: EngineDep) -> list[dict[str, Any]]:
    """Every configured analyzer that can be identified (an analyzer whose fingerprint fails is left out)."""
    fingerprints = engine.fingerprints()
    out = []
    for analyzer in engine.runtime.analyzers:
        if analyzer.name not in fingerprints:
            continue
        model = engine.runtime.model_info(analyzer.name)
        needs = analyzer.needs
        out.append(
            {
                "name": analyzer.name,
                "tasks": [analyzer.task],
                "fingerprint": fingerprints[analyzer.name],
                "model_info": {"id": model.id, "revision": model.revision},
                "input_size": int(getattr(analyzer, "input_size", 0) or 0),
                "embeds_text": isinstance(analyzer, TextEmbedder),
                "needs": {
                    "min_ram_mb": needs.min_ram_mb,
                    "min_vram_mb": needs.min_vram_mb,
                    "devices": list(needs.devices),
                },
            }
        )
    return out


@router.post("/v1/analyzers/{name}", tags=["remote analyzers"])
async def run_analyzer(name: str, request: Request, engine: EngineDep) -> dict[str, Any]:
    """Run analyzer ``name`` on the uploaded images (multipart ``images``, optional ``meta``)."""
    if name not in engine.analyzer_names():
        raise NotAvailable(
            f"no analyzer named {name!r} is configured on this server (configured: "
            f"{', '.join(engine.analyzer_names()) or 'none'}): enable plugins.{name} in its config"
        )
    fingerprint = engine.fingerprints().get(name)
    if fingerprint is None:
        raise NotAvailable(
            f"{engine.runtime.error(name) or f'analyzer {name} is broken'}; fix the server's config"
        )
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("send the images as multipart/form-data files named 'images'")
    form = await request.form(max_files=MAX_IMAGES, max_fields=8)
    try:
        uploads = [f for f in form.getlist("images") if not isinstance(f, str)]  # files, not plain fields
        if not uploads:
            raise BadRequest("no images: send one or more multipart files named 'images'")
        meta = _meta(form.get("meta"), len(uploads))
        data = [await f.read() for f in uploads]
        names = [f.filename or f"image {i}" for i, f in enumerate(uploads)]
    finally:
        await form.close()
    decoded = await asyncio.gather(
        *(engine.decode(d, n, min_side=0) for d, n in zip(data, names, strict=True))
    )
    images = [replace(im, **m) for im, m in zip(decoded, meta, strict=True)]
    analyses = await engine.run(name, images)
    model = engine.runtime.model_info(name)
    return {
        "analyzer": name,
        "fingerprint": fingerprint,
        "model_info": {"id": model.id, "revision": model.revision},
        "results": [analysis_to_dict(a, exact=True) for a in analyses],
    }


def _meta(raw: Any, n: int) -> list[dict[str, Any]]:
    """The ``meta`` field: one ``{width, height, format}`` per image; absent: the images' own (empty dicts)."""
    if raw is None:
        return [{} for _ in range(n)]
    if not isinstance(raw, str):
        raise BadRequest("meta must be a form field (JSON text), not a file")
    try:
        items = json.loads(raw)
    except ValueError as e:
        raise BadRequest(f"meta is not JSON ({e}): send a list of {{width, height, format}}") from None
    if not isinstance(items, list) or len(items) != n:
        raise BadRequest(
            f"meta must be a JSON list with one {{width, height, format}} per image ({n} images)"
        )
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"meta[{i}] must be an object {{width, height, format}}")
        m: dict[str, Any] = {}
        for key in ("width", "height"):
            value = item.get(key)
            if value is not None:
                if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 1_000_000:
                    raise BadRequest(f"meta[{i}].{key} must be a positive whole number of pixels")
                m[key] = value
        fmt = item.get("format")
        if fmt is not None:
            if not isinstance(fmt, str) or len(fmt) > 32:
                raise BadRequest(f"meta[{i}].format must be a short text (JPEG, PNG, ...)")
            m["format"] = fmt
        out.append(m)
    return out


@router.post("/v1/analyzers/{name}/text", tags=["remote analyzers"])
async def embed_text(name: str, request: Request, engine: EngineDep) -> dict[str, Any]:
    """Text embeddings (``{"texts": [...]}``) from analyzer ``name`` when its model embeds text (CLIP, SigLIP),
    in the space of its image embeddings: ``phototag search`` on a machine whose embed plugin is remote."""
    if name not in engine.analyzer_names():
        raise NotAvailable(f"no analyzer named {name!r} is configured on this server: enable plugins.{name}")
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest('send JSON: {"texts": ["a cat", ...]}') from None
    texts = body.get("texts") if isinstance(body, dict) else None
    if (
        not isinstance(texts, list)
        or not texts
        or not all(isinstance(t, str) for t in texts)
        or len(texts) > 256
    ):
        raise BadRequest('texts: a list of 1 to 256 strings, as in {"texts": ["a cat"]}')
    analyzer = engine.runtime.get(name)
    if not isinstance(analyzer, TextEmbedder):
        raise NotAvailable(
            f"analyzer {name} cannot embed text: give it a CLIP-family model in this server's config"
        )

    def run() -> list[list[float]]:
        error = engine.runtime.load(name)
        if error is not None:
            raise NotAvailable(f"{error}; fix the server's config")
        with engine.runtime.using(name) as loaded:
            assert isinstance(loaded, TextEmbedder)
            return [[float(x) for x in v] for v in loaded.embed_text(texts)]

    vectors = await run_in_threadpool(run)
    return {"analyzer": name, "fingerprint": engine.fingerprints().get(name, ""), "embeddings": vectors}
