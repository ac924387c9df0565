"""Plain-dict forms of the result types, for the JSON sidecar and the state DB's result cache.

An analysis is an object with ``tags``, ``regions``, ``qa`` (always written, possibly empty) and, when there
are any, ``caption``, ``answers``, ``embedding`` and ``extra`` (the analyzer's free-form data). Questions
asked about the photo (:class:`~phototag.types.Answer`) are in two forms::

    "answers": {"table": "a cat"},
    "qa": [{"question": "What is on the table?", "answer": "a cat", "score": 0.83,
            "name": "table", "xmp": "XMP-photoshop:Headline"}]

``answers`` maps each named answer (the question's ``field:``) to its text, for people and scripts (for a
name given twice, the last answer); ``qa`` lists every question in order, with its score (null when the
model gives none), name and XMP tag (null when none), and is what phototag reads back.

Older phototag versions wrote no ``qa``; their question answering was ``answers`` plus ``extra.qa``
(``[{question, answer, score}]``) and ``extra.xmp`` (``{XMP tag: text}``). :func:`analysis_from_dict` still
reads those, from the state DB's cache and from JSON sidecars, so that neither a cached result nor a sidecar
runs a model again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Literal

from .errors import display
from .types import Analysis, AnalyzerRun, Answer, ModelInfo, PhotoResult, Region, Tag

SCHEMA_VERSION = 1


def analysis_to_dict(a: Analysis, with_embedding: bool = True, exact: bool = False) -> dict[str, Any]:
    """``a`` as a plain dict. ``exact`` (the remote analyzers' wire form, :mod:`phototag.remote`): no rounding
    and a tag's own ``path``, so that :func:`analysis_from_dict` gives back an equal :class:`Analysis` and a
    remote result is the local one, bit for bit."""
    rnd = _exact if exact else _round6
    out: dict[str, Any] = {
        "tags": [
            {
                "name": t.name,
                "score": rnd(t.score),
                "path": list(t.path if exact else t.hierarchy),
                **({} if t.rooted else {"rooted": False}),
            }
            for t in a.tags
        ],
        "regions": [
            {
                "label": r.label,
                "kind": r.kind,
                "score": rnd(r.score),
                "box": {"x": rnd(r.x), "y": rnd(r.y), "w": rnd(r.w), "h": rnd(r.h)},
                **({"name": r.name} if r.name is not None else {}),
            }
            for r in a.regions
        ],
    }
    if a.caption is not None:
        out["caption"] = a.caption
    named = {x.name: x.text for x in a.answers if x.name is not None}
    if named:
        out["answers"] = named
    out["qa"] = [_answer_to_dict(x, rnd) for x in a.answers]
    if a.embedding is not None and with_embedding:
        out["embedding"] = [float(x) for x in a.embedding] if exact else list(a.embedding)
    if a.extra:
        out["extra"] = dict(a.extra)
    return out


def analysis_from_dict(d: dict[str, Any]) -> Analysis:
    extra = dict(d.get("extra") or {})
    # no "qa": written by an older phototag
    answers = tuple(map(_answer_from_dict, d["qa"])) if "qa" in d else _old_answers(d.get("answers"), extra)
    return Analysis(
        tags=tuple(
            Tag(t["name"], float(t["score"]), tuple(t.get("path") or ()), bool(t.get("rooted", True)))
            for t in d.get("tags", ())
        ),
        regions=tuple(
            Region(
                label=r["label"],
                score=float(r["score"]),
                x=float(r["box"]["x"]),
                y=float(r["box"]["y"]),
                w=float(r["box"]["w"]),
                h=float(r["box"]["h"]),
                kind=r.get("kind", "object"),
                name=r.get("name"),
            )
            for r in d.get("regions", ())
        ),
        caption=d.get("caption"),
        answers=answers,
        embedding=tuple(d["embedding"]) if d.get("embedding") is not None else None,
        extra=extra,
    )


def _round6(x: float) -> float:
    return round(x, 6)


def _exact(x: float) -> float:
    return float(x)  # a numpy scalar becomes the same value as a Python float (JSON-able)


def _answer_to_dict(a: Answer, rnd: Callable[[float], float] = _round6) -> dict[str, Any]:
    return {
        "question": a.question,
        "answer": a.text,
        "score": None if a.score is None else rnd(a.score),
        "name": a.name,
        "xmp": a.xmp,
    }


def _answer_from_dict(d: dict[str, Any]) -> Answer:
    score = d.get("score")
    return Answer(
        question=d["question"],
        text=d["answer"],
        score=None if score is None else float(score),
        name=d.get("name"),
        xmp=d.get("xmp"),
    )


def _old_answers(named: Any, extra: dict[str, Any]) -> tuple[Answer, ...]:
    """The answers of an analysis written before ``qa``: ``answers`` (name -> text), ``extra["qa"]`` (every
    question, in order) and ``extra["xmp"]`` (XMP tag -> text). The two ``extra`` keys are taken out of
    ``extra``.

    Those versions wrote every question in ``extra["qa"]`` and copied the text of some to ``answers`` and
    ``extra["xmp"]``, in the questions' order; each name and tag goes back to the next question, in that
    order, with the same text. One that matches none (another analyzer wrote only ``extra["xmp"]``) becomes an
    answer without a question: written to its XMP tag or stored under its name, but not recorded as a
    question, as then. Malformed items were skipped then, and are dropped now.
    """
    answers: list[Answer] = []
    qa = extra.get("qa")
    if isinstance(qa, list):
        del extra["qa"]
        for item in qa:
            if not isinstance(item, Mapping) or not isinstance(item.get("question"), str):
                continue
            text, score = item.get("answer"), item.get("score")
            if not (isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)):
                score = None
            answers.append(Answer(item["question"], text if isinstance(text, str) else "", score))
    if isinstance(named, Mapping):
        _attach(answers, named, "name")
    xmp = extra.get("xmp")
    if isinstance(xmp, Mapping):
        del extra["xmp"]
        _attach(answers, xmp, "xmp")
    return tuple(answers)


def _attach(answers: list[Answer], texts: Mapping[Any, Any], attr: Literal["name", "xmp"]) -> None:
    """Give ``attr`` (name or xmp) to the answers that ``texts`` (key -> text) gave it, in order."""

    def given(answer: Answer, key: str) -> Answer:
        return replace(answer, name=key) if attr == "name" else replace(answer, xmp=key)

    start = 0
    for key, text in texts.items():
        if not isinstance(key, str) or not isinstance(text, str):
            continue
        free = (
            i
            for i in range(start, len(answers))
            if answers[i].text == text and getattr(answers[i], attr) is None
        )
        at = next(free, None)
        if at is None:
            answers.append(given(Answer("", text), key))
        else:
            answers[at] = given(answers[at], key)
            start = at + 1


def run_to_dict(run: AnalyzerRun, with_embedding: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "analyzer": run.analyzer,
        "task": run.task,
        "model": {"id": run.model.id, "revision": run.model.revision},
        "fingerprint": run.fingerprint,
        "seconds": round(run.seconds, 4),
    }
    if run.analysis is not None:
        out.update(analysis_to_dict(run.analysis, with_embedding))
    if run.error is not None:
        out["error"] = run.error
    return out


def run_from_dict(d: dict[str, Any]) -> AnalyzerRun:
    return AnalyzerRun(
        analyzer=d["analyzer"],
        task=d["task"],
        model=ModelInfo(d["model"]["id"], d["model"].get("revision", "")),
        fingerprint=d["fingerprint"],
        analysis=None if d.get("error") else analysis_from_dict(d),
        error=d.get("error"),
        seconds=float(d.get("seconds", 0.0)),
    )


def result_to_dict(result: PhotoResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON sidecar document. Embeddings are referenced (dimensions + store), not inlined."""
    analyzers = {}
    for run in result.runs:
        d = run_to_dict(run, with_embedding=False)
        if run.analysis is not None and run.analysis.embedding is not None:
            d["embedding"] = {
                "dims": len(run.analysis.embedding),
                "store": "state_db",
                "key": run.fingerprint,
            }
        analyzers[run.analyzer] = d
    doc: dict[str, Any] = {
        "schema": "phototag/result",
        "schema_version": SCHEMA_VERSION,
        "file": display(result.photo.path.name),
        "content_hash": result.photo.content_hash,
        "size": result.photo.size,
        "dimensions": {"width": result.width, "height": result.height},
        "keywords": sorted({t.name for _, t in result.tags}),
        "caption": result.caption,
        "analyzers": analyzers,
    }
    if extra:
        doc.update(extra)
    return doc
