"""Plain-dict forms of the result types, for the JSON sidecar and the state DB's result cache."""

from __future__ import annotations

from typing import Any

from .errors import display
from .types import Analysis, AnalyzerRun, ModelInfo, PhotoResult, Region, Tag

SCHEMA_VERSION = 1


def analysis_to_dict(a: Analysis, with_embedding: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tags": [{"name": t.name, "score": round(t.score, 6), "path": list(t.hierarchy)} for t in a.tags],
        "regions": [
            {
                "label": r.label,
                "kind": r.kind,
                "score": round(r.score, 6),
                "box": {"x": round(r.x, 6), "y": round(r.y, 6), "w": round(r.w, 6), "h": round(r.h, 6)},
            }
            for r in a.regions
        ],
    }
    if a.caption is not None:
        out["caption"] = a.caption
    if a.answers:
        out["answers"] = dict(a.answers)
    if a.embedding is not None and with_embedding:
        out["embedding"] = list(a.embedding)
    if a.extra:
        out["extra"] = dict(a.extra)
    return out


def analysis_from_dict(d: dict[str, Any]) -> Analysis:
    return Analysis(
        tags=tuple(Tag(t["name"], float(t["score"]), tuple(t.get("path") or ())) for t in d.get("tags", ())),
        regions=tuple(
            Region(
                label=r["label"],
                score=float(r["score"]),
                x=float(r["box"]["x"]),
                y=float(r["box"]["y"]),
                w=float(r["box"]["w"]),
                h=float(r["box"]["h"]),
                kind=r.get("kind", "object"),
            )
            for r in d.get("regions", ())
        ),
        caption=d.get("caption"),
        answers=dict(d.get("answers") or {}),
        embedding=tuple(d["embedding"]) if d.get("embedding") is not None else None,
        extra=dict(d.get("extra") or {}),
    )


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
