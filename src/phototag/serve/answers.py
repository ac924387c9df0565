"""The answers the client-compatible routes give, from phototag's analyzers: labels, a caption, the answer to a
question, image and text embeddings. Shared by the PhotoPrism, Immich, OpenAI and Ollama routes, so one photo
gets the same labels whichever client asks.

Everything runs through the :class:`~phototag.serve.engine.Engine` (its batcher, its runtime). Two things the
engine's ``run`` does not do are done here on the runtime directly, in a worker thread: embedding text
(``TextEmbedder.embed_text``) and asking a question the VQA plugin was not configured with (a one-question copy
of the configured VQA analyzer: same model, loaded once through the shared model pool). When nothing is
configured for a request, :class:`~phototag.serve.errors.NotAvailable` names the setting to change.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..types import DecodedImage, Tag, TextEmbedder
from .errors import BadRequest, NotAvailable, ServeError, UnknownModel
from .labelmap import llm_labels, merge_tags
from .llm_intent import LLMRequest, image_bytes, intent_of, is_url, json_answer, schema_allows_caption

if TYPE_CHECKING:
    from .engine import Engine

LABEL_TASKS = ("classify", "detect")


def label_analyzers(engine: Engine) -> list[str]:
    """The analyzers whose keywords become labels (classify, then detect)."""
    return [name for task in LABEL_TASKS for name in engine.analyzers_for(task)]


def require_label_analyzers(engine: Engine) -> list[str]:
    """:func:`label_analyzers`, or NotAvailable naming the setting when there are none."""
    names = label_analyzers(engine)
    if not names:
        raise NotAvailable(
            "no classify or detect analyzer is enabled, so phototag cannot give labels: set "
            "plugins.classify.enabled: true (the bundled offline classifier needs nothing else)"
        )
    return names


async def labels_for(engine: Engine, images: Sequence[DecodedImage]) -> list[Tag]:
    """One merged keyword list for ``images`` (crops of one photo): every classify and detect analyzer on every
    image, each keyword once with its best score, best first."""
    names = require_label_analyzers(engine)
    runs = await asyncio.gather(*(engine.run(name, images) for name in names))
    return merge_tags(a.tags for analyses in runs for a in analyses)


async def caption_for(engine: Engine, image: DecodedImage) -> tuple[str, str]:
    """``(caption, analyzer)`` from the first caption analyzer."""
    names = engine.analyzers_for("caption")
    if not names:
        raise NotAvailable(
            "no caption model is configured: set plugins.caption.enabled: true and plugins.caption.model "
            "(e.g. Salesforce/blip-image-captioning-base or a local folder)"
        )
    (analysis,) = await engine.run(names[0], [image])
    if not analysis.caption:
        raise ServeError(f"analyzer {names[0]} gave no caption for this image", code="empty_caption")
    return analysis.caption, names[0]


_ASK_LOCKS: dict[str, threading.Lock] = {}
_ASK_GUARD = threading.Lock()


async def answer_for(engine: Engine, image: DecodedImage, question: str) -> tuple[str, str]:
    """``(answer, analyzer)``: ``question`` put to the first VQA analyzer's model."""
    names = engine.analyzers_for("vqa")
    if not names:
        raise NotAvailable(
            "this prompt asks a question, and no visual question answering model is configured: set "
            "plugins.vqa.enabled: true and plugins.vqa.model (e.g. Salesforce/blip-vqa-base, or a chat model "
            "such as HuggingFaceTB/SmolVLM-256M-Instruct); for a caption, ask to describe the photo"
        )
    name = names[0]
    text = await asyncio.to_thread(_ask, engine, name, image, question)
    return text, name


def _ask(engine: Engine, name: str, image: DecodedImage, question: str) -> str:
    """:func:`phototag.adhoc.ask` on analyzer ``name``, one question at a time per analyzer (the model is
    shared with the batches of the configured questions)."""
    from .. import adhoc
    from ..errors import ConfigError, PhototagError

    with _ASK_GUARD:
        lock = _ASK_LOCKS.setdefault(name, threading.Lock())
    try:
        with lock:
            return adhoc.ask(engine.runtime, image, question, analyzer=name).answer
    except adhoc.BadInput as e:
        raise BadRequest(str(e)) from None
    except ConfigError as e:  # NotConfigured: the message names what to configure
        raise NotAvailable(str(e)) from None
    except PhototagError as e:  # ModelUnavailableError and the like
        raise NotAvailable(str(e)) from None


def normalised(vector: Sequence[float]) -> list[float]:
    """``vector`` scaled to L2 norm 1 (what Immich's own CLIP service returns)."""
    norm = math.sqrt(sum(x * x for x in vector))
    if not math.isfinite(norm) or norm == 0:
        raise ServeError("the model returned an empty or non-finite embedding", code="bad_embedding")
    return [x / norm for x in vector]


async def image_embedding(engine: Engine, name: str, image: DecodedImage) -> list[float]:
    (analysis,) = await engine.run(name, [image])
    if analysis.embedding is None:
        raise NotAvailable(f"analyzer {name} returned no embedding")
    return normalised(analysis.embedding)


async def text_embedding(engine: Engine, name: str, text: str) -> list[float]:
    """``text`` embedded by analyzer ``name`` (a CLIP-family :class:`~phototag.types.TextEmbedder`)."""
    if not text.strip():
        raise BadRequest("text: empty; send the search text")
    return await asyncio.to_thread(_embed_text, engine, name, text)


def _embed_text(engine: Engine, name: str, text: str) -> list[float]:
    runtime = engine.runtime
    if not isinstance(runtime.get(name), TextEmbedder):
        raise NotAvailable(
            f"analyzer {name} embeds images only; text search needs a CLIP-family plugins.embed.model"
        )
    try:
        with runtime.held(name) as analyzer:
            (vector,) = analyzer.embed_text([text])  # type: ignore[attr-defined]
    except ServeError:
        raise
    except Exception as e:  # cannot load, or ConfigError for an image-only model: the message says what to do
        raise NotAvailable(str(e)) from None
    return normalised(vector)


# -- language-model requests (OpenAI and Ollama routes) -----------------------------------------------------

AUTO_MODEL = "phototag"
"""The model id that routes each request by what it asks (:func:`~phototag.serve.llm_intent.intent_of`)."""


def served_models(engine: Engine) -> list[str]:
    """The ``model`` values the OpenAI and Ollama routes accept: ``phototag`` (labels from the classifiers,
    captions and answers from the configured models), then each caption and VQA analyzer by name and by its
    configured model id."""
    out = [AUTO_MODEL]
    for task in ("caption", "vqa"):
        for name in engine.analyzers_for(task):
            configured = getattr(getattr(engine.runtime.get(name), "settings", None), "model", None)
            for model in (name, configured):
                if isinstance(model, str) and model and model not in out:
                    out.append(model)
    return out


def check_model(engine: Engine, model: str) -> None:
    """Refuse a ``model`` phototag does not serve (a request for ``gpt-4o`` is not answered by another model)."""
    served = served_models(engine)
    if model not in served:
        raise UnknownModel(
            f"model {model!r} is not served here; use one of: {', '.join(served)} (GET /v1/models lists them)"
        )


async def ref_bytes(engine: Engine, ref: str, where: str) -> bytes:
    """The bytes of an image reference: inline (a data URL, raw base64) or, only when ``serve.fetch_urls``
    allows it and the host is allow-listed, an http(s) URL fetched with the SSRF checks of
    :func:`phototag.serve.security.fetch_image` (which refuses otherwise, saying so)."""
    if is_url(ref):
        from .security import fetch_image

        return await fetch_image(ref.strip(), engine.settings)
    return image_bytes(ref, where)


async def decode_refs(engine: Engine, refs: Sequence[str], where: str) -> list[DecodedImage]:
    """Decode the images of a request, in order."""
    out = []
    for i, ref in enumerate(refs):
        field = f"{where}[{i}]"
        out.append(await engine.decode(await ref_bytes(engine, ref, field), field))
    return out


async def answer_llm(engine: Engine, request: LLMRequest) -> str:
    """The text a language model would return for ``request``: JSON labels, a caption or an answer."""
    check_model(engine, request.model)
    if not request.images:
        raise BadRequest(
            "no image in the request: phototag answers about images only; add an image "
            "(OpenAI: an image_url part with a data URL; Ollama: images: [base64])"
        )
    intent = intent_of(request)
    if intent.kind == "labels":
        if len(request.images) > MAX_LABEL_IMAGES:
            raise BadRequest(f"at most {MAX_LABEL_IMAGES} images (crops of one photo) per labels request")
        images = await decode_refs(engine, request.images, "images")
        return json_answer("labels", llm_labels(await labels_for(engine, images)))
    if len(request.images) > 1:
        raise BadRequest("one image per request for a caption or a question; send the others separately")
    (image,) = await decode_refs(engine, request.images, "images")
    if intent.kind == "caption":
        text, _ = await caption_for(engine, image)
    else:
        text, _ = await answer_for(engine, image, request.prompt.strip())
    if not request.json_mode:
        return text
    if not schema_allows_caption(request.schema):
        raise BadRequest(
            "phototag answers a JSON schema with labels ({labels: [...]}) or a caption ({caption: ...}); "
            "this schema asks for something else"
        )
    return json_answer("caption", text)


MAX_LABEL_IMAGES = 3
