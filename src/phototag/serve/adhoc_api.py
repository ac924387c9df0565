"""Your own words about a photo over HTTP: ``POST /v1/classify``, ``POST /v1/similarity``, ``POST /v1/ask``.

The JSON twins of ``phototag classify``/``score``/``ask``; the work is :mod:`phototag.adhoc` on the engine's
runtime (the models every other route uses), under the request deadline (``serve.deadline_s``). Images are
data URLs or bare base64 (http(s) URLs only where ``serve.fetch_urls`` allows), decoded in the engine's pool
to the size the chosen model needs.

Dynamic batching: the image-tower passes of concurrent ``/v1/classify`` and ``/v1/similarity`` requests are
gathered per analyzer by a :class:`~phototag.serve.batching.Batcher` (:class:`ImageTowers`: size, wait and
queue limit from the ``serve`` settings, 503 when the queue is full), like the engine's analyzer batches; the
text side is per request and cached (:class:`phototag.adhoc.TextVectorCache`). Questions run one request at a
time per model, in a worker thread.

- ``/v1/classify``: ``{"image": ..., "labels": ["cat", "dog"], "templates": ["a photo of {}."],
  "activation": "auto"}`` -> ``{"labels": [{"label", "score"}...]}`` best first; ``images`` (a list) answers
  ``results``, one per image.
- ``/v1/similarity``: ``{"image": ..., "texts": [...]}`` or ``{"pairs": [{"query", "image"}...]}`` ->
  ``{"scores": [...]}``, cosine similarities in the order asked.
- ``/v1/ask``: ``{"image": ..., "question": "..."}`` -> ``{"answer", "score"}``.

Errors are phototag's own shape (``{"error": {"code", "message"}}``): 400 for a bad request or image, 404
``model_not_found`` for a ``model`` (analyzer name) that is not enabled, 422 ``model_not_available`` when the
configured models cannot do it (naming what to configure), 503 when the batch queue is full, 504 past the
deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, model_validator

from .. import adhoc
from ..errors import ConfigError, ModelUnavailableError, PhototagError
from ..hf.classify import HFClassifier
from ..hf.embed import HFEmbedder
from ..runtime import Ran
from ..types import Analysis, Answer, DecodedImage
from .batching import Batcher
from .engine import Engine, get_engine
from .errors import BadRequest, Deadline, NotAvailable, ServeError, UnknownModel


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """Close this app's image-tower batchers on shutdown (merged into the app's lifespan by FastAPI)."""
    try:
        yield
    finally:
        towers: ImageTowers | None = getattr(app.state, "adhoc_towers", None)
        if towers is not None:
            await towers.aclose()


router = APIRouter(tags=["ad hoc"], lifespan=_lifespan)

MAX_IMAGES = 32
MAX_TEXTS = 1000
MAX_PAIRS = 256
T = TypeVar("T")
EngineDep = Annotated[Engine, Depends(get_engine)]

ImageRef = Field(
    min_length=1, description="A data URL (data:image/jpeg;base64,...) or bare base64 of the image file."
)


# -- models (the OpenAPI schema) ------------------------------------------------------------------------


class ClassifyRequest(BaseModel):
    """One image (``image``) or several (``images``), scored against the candidate ``labels``."""

    image: str | None = Field(None, description="The image: a data URL or base64. Or give `images`.")
    images: list[str] | None = Field(None, min_length=1, max_length=MAX_IMAGES, description="Several images.")
    labels: list[str] = Field(min_length=1, max_length=MAX_TEXTS, description="Candidate labels.")
    templates: list[str] | None = Field(
        None,
        min_length=1,
        max_length=32,
        description='Prompt templates with {} for the label ("a photo of {}."); default: the classifier\'s.',
    )
    activation: adhoc.Activation = Field(
        "auto", description="auto: the model's own (softmax for CLIP, sigmoid for SigLIP)."
    )
    model: str | None = Field(None, description="The analyzer to use (its name) when several could.")

    @model_validator(mode="after")
    def _one_form(self) -> ClassifyRequest:
        if (self.image is None) == (self.images is None):
            raise ValueError("give either image or images")
        return self


class LabelScoreOut(BaseModel):
    label: str
    score: float


class ClassifyResult(BaseModel):
    labels: list[LabelScoreOut]
    """Best first."""


class ClassifyResponse(BaseModel):
    model: str
    analyzer: str
    activation: Literal["softmax", "sigmoid"]
    labels: list[LabelScoreOut] | None = None
    """For ``image``: the labels, best first."""
    results: list[ClassifyResult] | None = None
    """For ``images``: one result per image, in order."""


class Pair(BaseModel):
    query: str = Field(min_length=1)
    image: str = ImageRef


class SimilarityRequest(BaseModel):
    """One image and many ``texts``, or many (query, image) ``pairs``."""

    image: str | None = Field(None, description="The image, with `texts`.")
    texts: list[str] | None = Field(None, min_length=1, max_length=MAX_TEXTS)
    pairs: list[Pair] | None = Field(None, min_length=1, max_length=MAX_PAIRS)
    model: str | None = Field(None, description="The analyzer to use (its name) when several could.")

    @model_validator(mode="after")
    def _one_form(self) -> SimilarityRequest:
        if self.pairs is not None and (self.image is not None or self.texts is not None):
            raise ValueError("give either image with texts, or pairs")
        if self.pairs is None and (self.image is None or self.texts is None):
            raise ValueError("give image with texts, or pairs")
        return self


class SimilarityResponse(BaseModel):
    model: str
    analyzer: str
    metric: Literal["cosine"] = "cosine"
    scores: list[float]
    """One per text (or pair), in the order asked: the cosine similarity of the embeddings, -1..1."""


class AskRequest(BaseModel):
    image: str = ImageRef
    question: str = Field(min_length=1, max_length=adhoc.MAX_TEXT_CHARS)
    model: str | None = Field(None, description="The analyzer to use (its name) when several could.")


class AskResponse(BaseModel):
    question: str
    answer: str
    score: float | None
    """The model's confidence in its answer (0..1), when it gives one."""
    model: str
    analyzer: str


# -- helpers ------------------------------------------------------------------------------------------------


class ImageTowers:
    """Per app: a :class:`Batcher` per analyzer gathering the image-tower forward passes of concurrent requests
    (:func:`phototag.adhoc.image_vectors`), in its own worker threads; closed when the app shuts down."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="phototag-serve-adhoc")
        self._batchers: dict[str, Batcher[Any]] = {}

    async def vectors(
        self, analyzer: HFEmbedder | HFClassifier, images: Sequence[DecodedImage], deadline: float
    ) -> np.ndarray:
        """``[images, dim]`` normalised image embeddings, batched with other requests' images."""
        analyses = await self._batcher(analyzer).submit(images, deadline)
        return np.asarray([a.embedding for a in analyses], dtype=np.float32)

    def _batcher(self, analyzer: HFEmbedder | HFClassifier) -> Batcher[DecodedImage]:
        runtime = self.engine.runtime

        def work(images: Sequence[DecodedImage]) -> Ran:
            try:
                vectors = adhoc.image_vectors(runtime, analyzer, images)
            except PhototagError as e:
                return Ran(None, str(e))
            return Ran([Analysis(embedding=tuple(float(x) for x in row)) for row in vectors])

        return self._made(f"{analyzer.name}:vectors", analyzer.name, work)

    def _made(self, label: str, name: str, work: Callable[[Sequence[T]], Ran]) -> Batcher[T]:
        """The batcher ``label`` for analyzer ``name`` (made at first use), with the serve settings and metrics."""
        batcher = self._batchers.get(label)
        if batcher is not None:
            return batcher
        engine = self.engine

        def error(message: str) -> ServeError:
            if engine.runtime.error(name) is not None:
                return NotAvailable(f"{message}; fix the server's config (plugins) and restart it")
            return ServeError(message, code="analysis_failed")

        made: Batcher[T] = engine.new_batcher(label, work, self._pool, error)
        self._batchers[label] = made
        return made

    async def answers(
        self, analyzer: str, pairs: Sequence[tuple[DecodedImage, str]], deadline: float
    ) -> list[Answer]:
        """The VQA analyzer's answers to (image, question) pairs, batched with other requests' pairs (the images
        that share a question are asked in one model call: :func:`phototag.adhoc.ask_many`)."""
        analyses = await self._asker(analyzer).submit(pairs, deadline)
        return [a.answers[0] for a in analyses]

    def _asker(self, name: str) -> Batcher[tuple[DecodedImage, str]]:
        runtime = self.engine.runtime

        def work(pairs: Sequence[tuple[DecodedImage, str]]) -> Ran:
            try:
                answered = adhoc.ask_many(runtime, pairs, analyzer=name)
            except PhototagError as e:
                return Ran(None, str(e))
            return Ran([Analysis(answers=(Answer(a.question, a.answer, a.score),)) for a in answered])

        return self._made(f"{name}:ask", name, work)

    async def aclose(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
        self._batchers.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _towers(request: Request, engine: Engine) -> ImageTowers:
    towers: ImageTowers | None = getattr(request.app.state, "adhoc_towers", None)
    if towers is None:
        towers = request.app.state.adhoc_towers = ImageTowers(engine)
    return towers


def _served(e: PhototagError) -> ServeError:
    """A phototag error as the route's answer: what to configure (422) or a bad request (400)."""
    if isinstance(e, adhoc.BadInput):
        return BadRequest(str(e))
    if isinstance(e, adhoc.UnknownAnalyzer):
        return UnknownModel(str(e))
    if isinstance(e, ConfigError | ModelUnavailableError):
        return NotAvailable(f"{e}; fix the server's config and restart it")
    return ServeError(str(e), code="analysis_failed")


def _check(fn: Callable[[], T]) -> T:
    """``fn`` (cheap: validation, choosing the analyzer) with phototag errors as ServeErrors."""
    try:
        return fn()
    except PhototagError as e:
        raise _served(e) from None


async def _images(engine: Engine, refs: Sequence[str], size: int, what: str) -> list[DecodedImage]:
    async def one(i: int, ref: str) -> DecodedImage:
        label = f"{what}[{i}]" if len(refs) > 1 else what
        return await engine.decode(await engine.image_bytes(ref), label, size)

    return list(await asyncio.gather(*(one(i, ref) for i, ref in enumerate(refs))))


async def _work(engine: Engine, fn: Callable[[], T], deadline: float) -> T:
    """``fn`` (model work) in a worker thread until ``deadline``; phototag errors become ServeErrors."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        raise Deadline(f"the request ran past serve.deadline_s ({engine.settings.deadline_s:g} s)") from None
    except PhototagError as e:
        raise _served(e) from None


def _deadline(engine: Engine) -> float:
    return time.monotonic() + engine.settings.deadline_s


# -- routes -------------------------------------------------------------------------------------------------


@router.post("/v1/classify", response_model=ClassifyResponse, response_model_exclude_none=True)
async def classify(body: ClassifyRequest, request: Request, engine: EngineDep) -> ClassifyResponse:
    """Score an image against your own candidate labels, best first (needs a CLIP/SigLIP classify model)."""
    deadline = _deadline(engine)
    runtime = engine.runtime
    _check(
        lambda: (adhoc.check_labels(body.labels), body.templates and adhoc.check_templates(body.templates))
    )
    classifier = _check(lambda: adhoc.zero_shot_classifier(runtime, body.model))
    refs = [body.image] if body.image is not None else list(body.images or [])
    images = await _images(
        engine, refs, classifier.input_size, "image" if body.image is not None else "images"
    )
    vectors = await _towers(request, engine).vectors(classifier, images, deadline)
    results = await _work(
        engine,
        lambda: adhoc.label_scores(
            runtime, classifier, vectors, body.labels, body.templates, body.activation
        ),
        deadline,
    )
    first = results[0]
    outs = [
        ClassifyResult(labels=[LabelScoreOut(label=s.label, score=s.score) for s in r.labels])
        for r in results
    ]
    response = ClassifyResponse(model=first.model, analyzer=first.analyzer, activation=first.activation)
    if body.image is not None:
        response.labels = outs[0].labels
    else:
        response.results = outs
    return response


@router.post("/v1/similarity", response_model=SimilarityResponse)
async def similarity(body: SimilarityRequest, request: Request, engine: EngineDep) -> SimilarityResponse:
    """Cosine similarity of text and image embeddings: one image with many texts, or (query, image) pairs."""
    deadline = _deadline(engine)
    runtime = engine.runtime
    chosen = _check(lambda: adhoc.text_image_analyzer(runtime, body.model))
    towers = _towers(request, engine)
    pairs = body.pairs
    if pairs is not None:
        texts = _check(lambda: adhoc.check_texts([p.query for p in pairs]))
        images = await _images(engine, [p.image for p in pairs], chosen.input_size, "pairs.image")
        vectors = await towers.vectors(chosen, images, deadline)
    else:
        assert body.image is not None and body.texts is not None
        texts = _check(lambda: adhoc.check_texts(body.texts or []))
        [image] = await _images(engine, [body.image], chosen.input_size, "image")
        vectors = np.repeat(await towers.vectors(chosen, [image], deadline), len(texts), axis=0)
    scored = await _work(engine, lambda: adhoc.pair_scores(runtime, chosen, texts, vectors), deadline)
    return SimilarityResponse(model=scored.model, analyzer=scored.analyzer, scores=list(scored.scores))


@router.post("/v1/ask", response_model=AskResponse)
async def ask(body: AskRequest, request: Request, engine: EngineDep) -> AskResponse:
    """Answer a question about an image with the VQA model (needs plugins.vqa); concurrent requests that ask
    the same question are answered in one model call."""
    deadline = _deadline(engine)
    runtime = engine.runtime
    question = _check(lambda: adhoc.check_question(body.question))
    vqa = _check(lambda: adhoc.vqa_analyzer(runtime, body.model))
    [image] = await _images(engine, [body.image], vqa.input_size, "image")
    [answer] = await _towers(request, engine).answers(vqa.name, [(image, question)], deadline)
    score = answer.score
    return AskResponse(
        question=answer.question,
        answer=answer.text,
        score=score,
        model=vqa.model_info().id,
        analyzer=vqa.name,
    )
