"""What one photo's results ask its XMP metadata to say, independent of what the file holds now; pure.

:func:`desired_from` turns a :class:`~phototag.types.PhotoResult` into a :class:`Desired`: keywords at or
above ``min_score`` under the keyword root (flat keywords, hierarchy, TagsList), the first caption, answer
fields, face and object regions, and the provenance records of each. :mod:`phototag.xmpplan` compares it with
the file's current metadata. Region identity (:func:`mwg_key`, :func:`area_key`, :func:`object_key`) is how
both recognise a region phototag wrote.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .types import AnalyzerRun, PhotoResult, Region, Tag
from .xmpfields import OBJECT_RID, SUBJECT_AREA, clean_text, keyword_level, unique

log = logging.getLogger(__name__)


@dataclass
class Desired:
    """The metadata one PhotoResult asks for, independent of the file's current state."""

    subject: list[str] = field(default_factory=list)
    hierarchy: list[str] = field(default_factory=list)
    tagslist: list[str] = field(default_factory=list)
    caption: str | None = None
    caption_model: str = ""
    faces: list[dict[str, Any]] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    tags_provenance: list[dict[str, str]] = field(default_factory=list)
    regions_provenance: list[dict[str, str]] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    """XMP tag -> text for it (analyzers' ``extra["xmp"]``; the first analyzer naming a tag wins)."""
    answers_provenance: list[dict[str, str]] = field(default_factory=list)
    root: str = ""
    width: int = 0
    height: int = 0


def _provenance(run: AnalyzerRun, **fields: str) -> dict[str, str]:
    out = {**fields, "Analyzer": run.analyzer, "Model": run.model.id, "Revision": run.model.revision}
    return {k: clean_text(v) for k, v in out.items() if v}


def _num(value: float) -> str:
    return f"{min(max(value, 0.0), 1.0):.6f}"


def mwg_face(region: Region) -> dict[str, Any]:
    """A face as an MWG region: the box's centre, width and height, normalised."""
    area = {
        "X": _num(region.x + region.w / 2),
        "Y": _num(region.y + region.h / 2),
        "W": _num(region.w),
        "H": _num(region.h),
        "Unit": "normalized",
    }
    return {"Area": area, "Name": clean_text(region.label), "Type": "Face"}


def desired_from(result: PhotoResult, root: str, min_score: float) -> Desired:
    """What ``result`` should look like in XMP: keywords at or above ``min_score`` under ``root``."""
    root_levels = [lv for lv in (keyword_level(p) for p in re.split(r"[|/]", root)) if lv]
    want = Desired(root="|".join(root_levels), width=result.width, height=result.height)
    hier: list[str] = []
    tags: list[tuple[AnalyzerRun, Tag]] = [(r, t) for r, t in result.tags if t.score >= min_score]
    for run, tag in tags:
        name = clean_text(tag.name).strip()
        levels = [lv for lv in (keyword_level(p) for p in tag.hierarchy) if lv]
        if not name or not levels:
            continue
        want.subject.append(name)
        full = root_levels + levels
        hier += ["|".join(full[: i + 1]) for i in range(len(full))]
        want.tags_provenance.append(
            _provenance(run, Name=name, Path="|".join(full), Score=f"{tag.score:.4f}")
        )
    want.subject = unique(want.subject)
    want.hierarchy = unique(hier)
    want.tagslist = [h.replace("|", "/") for h in want.hierarchy]
    for run in result.ok_runs:
        if run.analysis is not None and run.analysis.caption and clean_text(run.analysis.caption).strip():
            want.caption = clean_text(run.analysis.caption)
            want.caption_model = "@".join(p for p in (run.model.id, run.model.revision) if p)
            break
    for run in result.ok_runs:
        extra = run.analysis.extra if run.analysis is not None else {}
        for field_tag, text in _answer_fields(run, extra.get("xmp")):
            if all(t.lower() != field_tag.lower() for t in want.fields):
                want.fields[field_tag] = text
        want.answers_provenance += _answers(run, extra.get("qa"))
    n_objects = 0
    for run, region in result.regions:
        if region.score < min_score or region.w <= 0 or region.h <= 0:
            continue
        if region.kind == "face":
            face = mwg_face(region)
            want.faces.append(face)
            key = mwg_key(face)
            want.regions_provenance.append(
                _provenance(run, Kind="face", Name=face["Name"], Key=key, Score=f"{region.score:.4f}")
            )
        else:
            n_objects += 1
            rid = f"{OBJECT_RID}{n_objects}"
            want.objects.append(
                {
                    "RegionBoundary": {
                        "RbShape": "rectangle",
                        "RbUnit": "relative",
                        "RbX": _num(region.x),
                        "RbY": _num(region.y),
                        "RbW": _num(region.w),
                        "RbH": _num(region.h),
                    },
                    "RId": rid,
                    "Name": clean_text(region.label),
                    "RRole": [{"Identifier": [SUBJECT_AREA], "Name": "subject area"}],
                }
            )
            want.regions_provenance.append(
                _provenance(
                    run, Kind="object", Name=clean_text(region.label), Key=rid, Score=f"{region.score:.4f}"
                )
            )
    return want


def _answer_fields(run: AnalyzerRun, raw: Any) -> list[tuple[str, str]]:
    """``extra["xmp"]`` of one run as (tag, text) pairs; anything malformed is logged and skipped."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        log.warning("analyzer %s: extra['xmp'] must map XMP tags to text; ignored", run.analyzer)
        return []
    out = []
    for tag, value in raw.items():
        if not isinstance(tag, str) or not isinstance(value, str):
            log.warning("analyzer %s: extra['xmp'][%r] is not text; ignored", run.analyzer, tag)
            continue
        text = clean_text(value).strip()
        if text:
            out.append((tag, text))
    return out


def _answers(run: AnalyzerRun, qa: Any) -> list[dict[str, str]]:
    """``extra["qa"]`` of one run (``[{question, answer, score}]``) as provenance structures."""
    if not isinstance(qa, Sequence) or isinstance(qa, str):
        return []
    out = []
    for item in qa:
        if not isinstance(item, Mapping) or not isinstance(item.get("question"), str):
            continue
        answer, score = item.get("answer"), item.get("score")
        good_score = isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)
        record = _provenance(
            run,
            Question=item["question"],
            Answer=answer if isinstance(answer, str) else "",
            Score=f"{score:.4f}" if good_score else "",
        )
        if record.get("Question", "").strip():
            out.append(record)
    return out


# -- region identity -----------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    try:
        return f"{float(value):.6f}"
    except (TypeError, ValueError):
        return str(value)


def area_key(region: Mapping[str, Any]) -> str:
    """Where an MWG region is, whoever named it: its area's X, Y, W, H (6 decimals)."""
    area = region.get("Area") or {}
    return "|".join(_fmt(area.get(k)) for k in ("X", "Y", "W", "H"))


def mwg_key(region: Mapping[str, Any]) -> str:
    """Identity of an MWG face region: its name and area (6 decimals), as phototag records it."""
    return f"{region.get('Name', '')}|{area_key(region)}"


def object_key(region: Mapping[str, Any]) -> str:
    """Identity of an IPTC image region: its RId, name and boundary (6 decimals)."""
    b = region.get("RegionBoundary") or {}
    coords = "|".join(_fmt(b.get(k)) for k in ("RbX", "RbY", "RbW", "RbH"))
    return f"{region.get('RId', '')}|{region.get('Name', '')}|{coords}"
