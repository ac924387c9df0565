"""Ask about one photo with your own words: per-request labels, text-image scores and questions.

``scan`` tags photos with the configured vocabulary and questions; these functions let a caller bring the words
with the request, for the CLI (``phototag classify``/``score``/``ask``, :mod:`phototag.plugins.adhoc`) and the
HTTP service (``/v1/classify``, ``/v1/similarity``, ``/v1/ask``, :mod:`phototag.serve.adhoc_api`). They run on
the one :class:`~phototag.runtime.AnalyzerRuntime` (loaded models are shared with everything else) and reuse the
backends' own scoring, so a label scores here as it would in the vocabulary:

- :func:`classify`: a zero-shot classify analyzer (CLIP, SigLIP: :class:`~phototag.hf.classify.HFClassifier`);
  each label's embedding is the mean over its prompts (``templates``, default: the classifier's), scored by
  the classifier's :meth:`~phototag.hf.classify.HFClassifier.zero_shot_scores`: a softmax over the labels for
  CLIP, an independent sigmoid per label for SigLIP (``activation`` overrides).
- :func:`similarity` / :func:`pair_similarity`: the cosine similarity of text and image embeddings (-1..1),
  from the embed analyzer when it is CLIP-family (the model ``search`` uses), else the zero-shot classifier.
  A score depends only on its own pair, so batches give the scores single calls give.
- :func:`ask`: the VQA analyzer (BLIP-VQA or a chat model: :meth:`~phototag.hf.vqa.HFVQA.ask`).

Text embeddings are cached in a small LRU keyed by the model (the analyzer's fingerprint) and the text
(:class:`TextVectorCache`), so labels a client sends with every request are encoded once. When the configured
models cannot do what was asked, :class:`NotConfigured` (a ConfigError) names what to configure; bad input
(no labels, a template that does not format) is :class:`BadInput`.

Why one module of ~480 lines: the CLI and the HTTP routes must choose the same model, validate the same way and
score the same way; the three tasks share the model choice, the text cache and the validation.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import ConfigError, ModelUnavailableError, PhototagError
from .hf.classify import HFClassifier, Scoring
from .hf.embed import HFEmbedder
from .hf.vocabulary import Label
from .hf.vqa import HFVQA
from .runtime import AnalyzerRuntime
from .types import Analyzer, DecodedImage

Activation = Literal["auto", "softmax", "sigmoid"]
CLIP_HINT = (
    "plugins.classify.model: openai/clip-vit-base-patch32 (or a SigLIP, e.g. google/siglip-base-patch16-224)"
)
VQA_HINT = (
    "plugins.vqa.enabled: true (model: Salesforce/blip-vqa-base, or a chat model such as "
    "HuggingFaceTB/SmolVLM-256M-Instruct)"
)
MAX_TEXT_CHARS = 1000


class NotConfigured(ConfigError):
    """The configured models cannot do what was asked (no CLIP/SigLIP for labels, no VQA model for questions);
    the message names what to configure."""


class UnknownAnalyzer(NotConfigured):
    """The request named an analyzer that is not enabled."""


class BadInput(PhototagError):
    """The request itself is wrong (no labels, an empty question, a template that does not format)."""


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class Classified:
    """One image's labels, best first; ``activation`` is how the scores were made (softmax or sigmoid)."""

    labels: tuple[LabelScore, ...]
    activation: Scoring
    model: str
    analyzer: str


@dataclass(frozen=True)
class Scored:
    """Cosine similarities (-1..1), one per (text, image) pair in the order asked."""

    scores: tuple[float, ...]
    model: str
    analyzer: str


@dataclass(frozen=True)
class Answered:
    """The answer to one question about one image; ``score`` is the model's confidence (0..1) when it gives one."""

    question: str
    answer: str
    score: float | None
    model: str
    analyzer: str


# -- the text-embedding cache --------------------------------------------------------------------------------


class TextVectorCache:
    """An LRU of normalised text embeddings keyed by (model key, text); thread-safe. ``hits``/``misses`` count
    texts, for tests and metrics."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def vectors(
        self, model: str, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]
    ) -> np.ndarray:
        """``[texts, dim]`` embeddings: cached ones from memory, the rest from ``encode`` (called once, with the
        missing texts, each once)."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for text in texts:
                vector = self._items.get((model, text))
                if vector is not None:
                    self._items.move_to_end((model, text))
                    found[text] = vector
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            fresh = np.asarray(encode(missing), dtype=np.float32)
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    found[text] = vector
                    self._items[(model, text)] = vector
                    self._items.move_to_end((model, text))
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        with self._lock:
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        return np.stack([found[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0


TEXT_CACHE = TextVectorCache()
"""The process's cache (the CLI and the HTTP service); tests may pass their own."""
_ENCODING = threading.Lock()


# -- which analyzer does it ----------------------------------------------------------------------------------


def _mode(analyzer: HFClassifier) -> str:
    try:
        return analyzer.mode()
    except (ModelUnavailableError, ConfigError) as e:
        return f"unavailable ({e})"


def _named(runtime: AnalyzerRuntime, name: str | None) -> list[Analyzer]:
    if name is None:
        return runtime.analyzers
    try:
        return [runtime.get(name)]
    except PhototagError:
        names = ", ".join(a.name for a in runtime.analyzers) or "none"
        raise UnknownAnalyzer(f"no analyzer named {name!r} is enabled (enabled: {names})") from None


def _describe(analyzers: Sequence[Analyzer], task: str) -> str:
    """What is configured for ``task``, for error messages."""
    found = [a for a in analyzers if a.task == task]
    if not found:
        return f"no {task} analyzer is enabled"
    parts = []
    for a in found:
        kind = f"zero-shot ({a.model_info().id})" if isinstance(a, HFClassifier) else a.model_info().id
        if isinstance(a, HFClassifier) and _mode(a) != "zero-shot":
            kind = f"{a.model_info().id}: {_mode(a)}"
        parts.append(f"{a.name} = {kind}")
    return "configured: " + "; ".join(parts)


def zero_shot_classifier(runtime: AnalyzerRuntime, name: str | None = None) -> HFClassifier:
    """The zero-shot (CLIP/SigLIP) classify analyzer that scores per-request labels (``name`` picks one)."""
    candidates = _named(runtime, name)
    for analyzer in candidates:
        if isinstance(analyzer, HFClassifier) and _mode(analyzer) == "zero-shot":
            return analyzer
    fixed = [a for a in candidates if a.task == "classify"]
    why = (
        f"the classify model {fixed[0].model_info().id} is fixed-label (it knows only its own classes)"
        if fixed and not (isinstance(fixed[0], HFClassifier) and _mode(fixed[0]).startswith("unavailable"))
        else _describe(candidates, "classify")
    )
    raise NotConfigured(
        f"candidate labels need a CLIP/SigLIP-family (zero-shot) classifier, but {why}. Set {CLIP_HINT}.",
        "plugins.classify.model",
    )


def text_image_analyzer(runtime: AnalyzerRuntime, name: str | None = None) -> HFEmbedder | HFClassifier:
    """The analyzer whose text and image embeddings share one space: the embed analyzer when it is CLIP-family
    (what ``search`` uses), else the zero-shot classifier (``name`` picks one)."""
    candidates = _named(runtime, name)
    for analyzer in candidates:
        if isinstance(analyzer, HFEmbedder) and _dual(analyzer):
            return analyzer
    for analyzer in candidates:
        if isinstance(analyzer, HFClassifier) and _mode(analyzer) == "zero-shot":
            return analyzer
    raise NotConfigured(
        "text-image scores need a CLIP/SigLIP-family model (text and image towers), but "
        f"{_describe(candidates, 'embed')}, {_describe(candidates, 'classify')}. Set plugins.embed.model: "
        f"openai/clip-vit-base-patch32, or {CLIP_HINT}.",
        "plugins.embed.model",
    )


def _dual(analyzer: HFEmbedder) -> bool:
    try:
        return analyzer.kind() == "dual"
    except (ModelUnavailableError, ConfigError):
        return False


def vqa_analyzer(runtime: AnalyzerRuntime, name: str | None = None) -> HFVQA:
    """The VQA analyzer that answers questions (``name`` picks one)."""
    candidates = _named(runtime, name)
    for analyzer in candidates:
        if isinstance(analyzer, HFVQA):
            return analyzer
    raise NotConfigured(
        f"questions need a VQA model, but {_describe(candidates, 'vqa')}. Set {VQA_HINT}.", "plugins.vqa"
    )


@contextlib.contextmanager
def loaded(runtime: AnalyzerRuntime, name: str) -> Iterator[Any]:
    """The analyzer ``name`` loaded, held in use and locked (it takes turns with the runtime's batches), with
    torch's threads set for its device (:meth:`AnalyzerRuntime.held`)."""
    with runtime.held(name) as held:
        yield held


def model_key(analyzer: HFEmbedder | HFClassifier) -> str:
    """The text cache's key for a model: the backend and its fingerprint (model id, resolved revision)."""
    return f"{type(analyzer).__name__}:{analyzer.fingerprint()}"


# -- validation ----------------------------------------------------------------------------------------------


def _texts(items: Sequence[str], what: str, *, unique: bool = False) -> list[str]:
    out = [str(t).strip() for t in items]
    if not out:
        raise BadInput(f"no {what} given: give at least one")
    for text in out:
        if not text:
            raise BadInput(f"an empty {what[:-1]} was given: every {what[:-1]} needs some words")
        if len(text) > MAX_TEXT_CHARS:
            raise BadInput(f"a {what[:-1]} is longer than {MAX_TEXT_CHARS} characters: {text[:40]!r}...")
    if unique:
        seen: set[str] = set()
        for text in out:
            if text in seen:
                raise BadInput(f"the {what[:-1]} {text!r} is given twice: give each once")
            seen.add(text)
    return out


def check_question(question: str) -> str:
    """A question as asked (trimmed); refuses an empty or overlong one (:class:`BadInput`)."""
    [text] = _texts([question], "questions")
    return text


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """Prompt templates with one ``{}`` where the label goes; refuses any other braces."""
    out = []
    for template in templates:
        t = str(template).strip()
        if t.count("{}") != 1:
            raise BadInput(f"template {t!r} must contain {{}} once, where the label goes (a photo of {{}}.)")
        try:
            t.format("x")
        except (IndexError, KeyError, ValueError):
            raise BadInput(f"template {t!r} may contain only the {{}} placeholder") from None
        out.append(t)
    if not out:
        raise BadInput("templates is empty: leave it out for the classifier's own, or give at least one")
    return tuple(out)


def check_labels(labels: Sequence[str]) -> list[str]:
    """The labels, stripped; refuses none, empty ones, over-long ones and duplicates."""
    return _texts(labels, "labels", unique=True)


def check_texts(texts: Sequence[str]) -> list[str]:
    """The texts, stripped; refuses none, empty ones and over-long ones."""
    return _texts(texts, "texts")


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    size = max(size, 1)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _text_matrix(
    analyzer: HFEmbedder | HFClassifier, texts: Sequence[str], cache: TextVectorCache
) -> np.ndarray:
    def encode(missing: list[str]) -> np.ndarray:
        # one text pass at a time: a fast tokenizer called from two threads can fail ("Already borrowed")
        with _ENCODING:
            if isinstance(analyzer, HFClassifier):
                return analyzer.text_vectors(missing).float().cpu().numpy()
            return np.asarray(analyzer.embed_text(missing), dtype=np.float32)

    return cache.vectors(model_key(analyzer), texts, encode)


# -- the steps: image vectors (batchable across requests), then the words ------------------------------------


def image_vectors(
    runtime: AnalyzerRuntime, analyzer: HFEmbedder | HFClassifier, images: Sequence[DecodedImage]
) -> np.ndarray:
    """``[images, dim]`` normalised image embeddings from ``analyzer``'s image tower, ``batch_size`` images a
    forward pass. The HTTP service gathers these across concurrent requests (dynamic batching)."""
    if not images:
        return np.zeros((0, 0), np.float32)
    with loaded(runtime, analyzer.name):
        parts = [
            analyzer.image_vectors(part).float().cpu().numpy()
            for part in _chunks(images, runtime.config.batch_size)
        ]
    return np.concatenate(parts)


def label_scores(
    runtime: AnalyzerRuntime,
    classifier: HFClassifier,
    vectors: np.ndarray,
    labels: Sequence[str],
    templates: Sequence[str] | None = None,
    activation: Activation = "auto",
    *,
    cache: TextVectorCache = TEXT_CACHE,
) -> list[Classified]:
    """Each image (its ``vectors`` row from :func:`image_vectors`) scored against ``labels``, best first. A
    label's embedding is the mean over its prompts (``templates``, default: the classifier's), normalised, as
    for the vocabulary; scores are the classifier's :meth:`~phototag.hf.classify.HFClassifier.zero_shot_scores`."""
    import torch

    names = check_labels(labels)
    prompts = check_templates(templates) if templates is not None else classifier.templates
    if not len(vectors):
        return []
    with loaded(runtime, classifier.name):
        per_label = [Label((name,)).texts(prompts) for name in names]
        unique = list(dict.fromkeys(t for texts in per_label for t in texts))
        text_vectors = _text_matrix(classifier, unique, cache)
        index = {t: i for i, t in enumerate(unique)}
        rows = np.stack([text_vectors[[index[t] for t in texts]].mean(axis=0) for texts in per_label])
        label_vectors = torch.nn.functional.normalize(torch.from_numpy(rows).float(), dim=-1)
        scoring: Scoring = classifier.scoring() if activation == "auto" else activation
        probs = classifier.zero_shot_scores(
            torch.from_numpy(np.asarray(vectors, np.float32)), label_vectors, scoring
        )
    model = classifier.model_info().id
    out = []
    for row in probs:
        order = np.argsort(-np.asarray(row), kind="stable")
        ranked = tuple(LabelScore(names[i], round(float(row[i]), 6)) for i in order)
        out.append(Classified(ranked, scoring, model, classifier.name))
    return out


def pair_scores(
    runtime: AnalyzerRuntime,
    analyzer: HFEmbedder | HFClassifier,
    texts: Sequence[str],
    vectors: np.ndarray,
    *,
    cache: TextVectorCache = TEXT_CACHE,
) -> Scored:
    """The cosine similarity of ``texts[i]`` with the image whose embedding is ``vectors[i]``."""
    checked = _texts(texts, "texts")
    if len(checked) != len(vectors):
        raise BadInput(f"{len(checked)} texts for {len(vectors)} images: give one text per image")
    unique = list(dict.fromkeys(checked))
    with loaded(runtime, analyzer.name):
        text_vectors = _text_matrix(analyzer, unique, cache)
    row = {t: i for i, t in enumerate(unique)}
    scores = tuple(round(float(text_vectors[row[t]] @ v), 6) for t, v in zip(checked, vectors, strict=True))
    return Scored(scores, analyzer.model_info().id, analyzer.name)


# -- the three questions -------------------------------------------------------------------------------------


def classify(
    runtime: AnalyzerRuntime,
    images: Sequence[DecodedImage],
    labels: Sequence[str],
    templates: Sequence[str] | None = None,
    activation: Activation = "auto",
    *,
    analyzer: str | None = None,
    cache: TextVectorCache = TEXT_CACHE,
) -> list[Classified]:
    """Score each image against the candidate ``labels`` (best first). ``templates`` (``a photo of {}.``)
    default to the classifier's; ``activation`` ``auto`` is the model's own (softmax for CLIP, sigmoid for
    SigLIP)."""
    check_labels(labels)
    if templates is not None:
        check_templates(templates)
    classifier = zero_shot_classifier(runtime, analyzer)
    vectors = image_vectors(runtime, classifier, images)
    return label_scores(runtime, classifier, vectors, labels, templates, activation, cache=cache)


def pair_similarity(
    runtime: AnalyzerRuntime,
    pairs: Sequence[tuple[str, DecodedImage]],
    *,
    analyzer: str | None = None,
    cache: TextVectorCache = TEXT_CACHE,
) -> Scored:
    """The cosine similarity of each (text, image) pair, in order; texts and images are embedded in batches
    (each distinct text and each distinct image object once)."""
    if not pairs:
        raise BadInput("no (query, image) pairs given: give at least one")
    _texts([t for t, _ in pairs], "texts")
    chosen = text_image_analyzer(runtime, analyzer)
    images: list[DecodedImage] = []
    where: dict[int, int] = {}
    for _, image in pairs:
        if id(image) not in where:
            where[id(image)] = len(images)
            images.append(image)
    vectors = image_vectors(runtime, chosen, images)
    per_pair = np.stack([vectors[where[id(image)]] for _, image in pairs])
    return pair_scores(runtime, chosen, [t for t, _ in pairs], per_pair, cache=cache)


def similarity(
    runtime: AnalyzerRuntime,
    image: DecodedImage,
    texts: Sequence[str],
    *,
    analyzer: str | None = None,
    cache: TextVectorCache = TEXT_CACHE,
) -> Scored:
    """The cosine similarity of ``image`` with each of ``texts``, in order."""
    if not texts:
        raise BadInput("no texts given: give at least one")
    return pair_similarity(runtime, [(t, image) for t in texts], analyzer=analyzer, cache=cache)


def ask(
    runtime: AnalyzerRuntime,
    image: DecodedImage,
    question: str,
    *,
    analyzer: str | None = None,
) -> Answered:
    """The VQA model's answer to ``question`` about ``image``."""
    [answered] = ask_many(runtime, [(image, question)], analyzer=analyzer)
    return answered


def ask_many(
    runtime: AnalyzerRuntime,
    pairs: Sequence[tuple[DecodedImage, str]],
    *,
    analyzer: str | None = None,
) -> list[Answered]:
    """The VQA model's answers to (image, question) pairs, in order: the images that share a question are asked
    in one call (:meth:`~phototag.hf.vqa.HFVQA.ask`, which keeps an answer independent of its batch)."""
    texts = _texts([q for _, q in pairs], "questions")
    vqa = vqa_analyzer(runtime, analyzer)
    by_question: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        by_question.setdefault(text, []).append(i)
    out: list[Answered | None] = [None] * len(pairs)
    with loaded(runtime, vqa.name):
        for text, at in by_question.items():
            generated = vqa.ask([pairs[i][0] for i in at], [text])
            for i, [g] in zip(at, generated, strict=True):
                kept = None if g.score is None or not math.isfinite(g.score) else round(g.score, 4)
                out[i] = Answered(text, g.text, kept, vqa.model_info().id, vqa.name)
    return [a for a in out if a is not None]


def input_size(
    runtime: AnalyzerRuntime, task: Literal["classify", "similarity", "ask"], name: str | None = None
) -> int:
    """The shorter side, in pixels, to decode photos to for ``task`` (the chosen analyzer's input size)."""
    chooser = {"classify": zero_shot_classifier, "similarity": text_image_analyzer, "ask": vqa_analyzer}[task]
    return int(chooser(runtime, name).input_size)
