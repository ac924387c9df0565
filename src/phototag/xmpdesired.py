"""What one photo's results ask its XMP metadata to say, independent of what the file holds now; pure.

:func:`desired_from` turns a :class:`~phototag.types.PhotoResult` into a :class:`Desired`: keywords at or
above ``min_score`` under the keyword root (flat keywords, hierarchy, TagsList), the first caption, answer
fields, face and object regions, known people, and the provenance records of each. :mod:`phototag.xmpplan`
compares it with the file's current metadata.

Keywords (the text rules: :func:`~phototag.xmpfields.keyword_text`). dc:subject gets each assigned keyword's
name; lr:hierarchicalSubject and TagsList get the **full path of each assigned keyword only**
(``AI|Animals|Pets|Cat``), never its ancestors as entries of their own (darktable and digiKam would attach
``AI``, ``AI|Animals`` ... to the photo as tags). ``flat_ancestors`` (``metadata.flat_ancestors``, default
off: digiKam and DxO write the leaf only, Lightroom's "include on export" adds the parents) also puts the
ancestors below the root (``Animals``, ``Pets``) into dc:subject; the root is never a flat keyword. A name or
level that is empty after cleaning is dropped (a tag left without a name or path is dropped), with a debug
line.

Faces. A face region's ``Name`` is the person: a label that says only "face" (``face``, ``Face``, empty, as
face detectors give it) is an unknown face and gets no Name (digiKam imports a region named ``Face`` as a
confirmed person called Face; an unnamed one as an unconfirmed, detected face). Any other label is a person's
name (a people feature's): kept as the Name and listed in :attr:`Desired.people`
(``XMP-iptcExt:PersonInImage``). A face region with a ``name`` (:mod:`phototag.people` contributes the
detector's box again, named) stands for the unnamed one at the same place. Each known person is also the
keyword ``People|<name>`` (TagsList ``People/<name>``; dc:subject the name), outside the keyword root.

Region identity: :func:`mwg_key`, :func:`area_key`, :func:`object_key` (what phototag records), and for faces
overlap (:func:`face_box`, :func:`iou`, :func:`same_face`): a detected face is the same face as an existing
region when their IoU is at least :data:`SAME_FACE_IOU` or the centre of either box lies inside the other;
a region is the one phototag recorded when it has the recorded name and an IoU of at least
:data:`OWN_REGION_IOU` with the recorded area (digiKam stores whole pixels, so a round trip changes the 4th
decimal: exact coordinates would not recognise it).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .types import AnalyzerRun, Answer, PhotoResult, Region, Tag
from .xmpfields import (
    OBJECT_RID,
    PEOPLE_ROOT,
    SUBJECT_AREA,
    clean_text,
    keyword_text,
    tagslist_entry,
    unique,
)

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
    people: list[str] = field(default_factory=list)
    """Known people (named faces), for ``XMP-iptcExt:PersonInImage``."""
    sync_user_hierarchy: bool = False
    """Also mirror the user's entries between lr:hierarchicalSubject and TagsList (:mod:`phototag.xmpplan`);
    :func:`desired_from` sets it from ``metadata.sync_user_hierarchy``. ``Desired()`` (untag) asks for
    nothing, so the copies phototag made go with the rest."""
    root: str = ""
    width: int = 0
    height: int = 0


def _provenance(run: AnalyzerRun, **fields: str) -> dict[str, str]:
    out = {**fields, "Analyzer": run.analyzer, "Model": run.model.id, "Revision": run.model.revision}
    return {k: clean_text(v) for k, v in out.items() if v}


def _num(value: float) -> str:
    return f"{min(max(value, 0.0), 1.0):.6f}"


UNKNOWN_FACE_LABELS = frozenset({"", "face"})
"""Region labels (case-insensitive, stripped) that say only "a face": no person's name."""


def person_name(label: str) -> str | None:
    """The person a face region's label names, or None for an unknown face (:data:`UNKNOWN_FACE_LABELS`)."""
    name = clean_text(label).strip()
    return None if name.casefold() in UNKNOWN_FACE_LABELS else name


def mwg_face(region: Region) -> dict[str, Any]:
    """A face as an MWG region: the box's centre, width and height, normalised; a Name only for a known
    person (``region.name``, else :func:`person_name` of its label)."""
    area = {
        "X": _num(region.x + region.w / 2),
        "Y": _num(region.y + region.h / 2),
        "W": _num(region.w),
        "H": _num(region.h),
        "Unit": "normalized",
    }
    name = person_name(region.name) if region.name else person_name(region.label)
    return {"Area": area, **({"Name": name} if name else {}), "Type": "Face"}


def desired_from(
    result: PhotoResult,
    root: str,
    min_score: float,
    *,
    flat_ancestors: bool = False,
    sync_user_hierarchy: bool = True,
) -> Desired:
    """What ``result`` should look like in XMP: keywords at or above ``min_score`` under ``root``.

    ``flat_ancestors``: also the ancestors below the root as flat keywords (``metadata.flat_ancestors``);
    ``sync_user_hierarchy``: see :attr:`Desired.sync_user_hierarchy`."""
    root_levels = [lv for lv in (keyword_text(p) for p in re.split(r"[|/]", root)) if lv]
    want = Desired(
        root="|".join(root_levels),
        width=result.width,
        height=result.height,
        sync_user_hierarchy=sync_user_hierarchy,
    )
    ancestors: list[str] = []
    tags: list[tuple[AnalyzerRun, Tag]] = [(r, t) for r, t in result.tags if t.score >= min_score]
    for run, tag in tags:
        name = keyword_text(tag.name)
        levels = [keyword_text(p) for p in tag.hierarchy]
        if not name or not all(levels):
            log.debug(
                "keyword %r (path %r): a label is empty after cleaning; dropped", tag.name, tag.hierarchy
            )
            levels = [lv for lv in levels if lv]
            if not name or not levels:
                continue
        want.subject.append(name)
        ancestors += levels[:-1]
        full = (root_levels if tag.rooted else []) + levels
        want.hierarchy.append("|".join(full))
        want.tagslist.append(tagslist_entry(full))
        want.tags_provenance.append(
            _provenance(run, Name=name, Path="|".join(full), Score=f"{tag.score:.4f}")
        )
    want.subject = unique(want.subject + (ancestors if flat_ancestors else []))
    want.hierarchy = unique(want.hierarchy)
    want.tagslist = unique(want.tagslist)
    for run in result.ok_runs:
        if run.analysis is not None and run.analysis.caption and clean_text(run.analysis.caption).strip():
            want.caption = clean_text(run.analysis.caption)
            want.caption_model = "@".join(p for p in (run.model.id, run.model.revision) if p)
            break
    for run in result.ok_runs:
        answers = run.analysis.answers if run.analysis is not None else ()
        for field_tag, text in _answer_fields(run, answers):
            if all(t.lower() != field_tag.lower() for t in want.fields):
                want.fields[field_tag] = text
        want.answers_provenance += _answers(run, answers)
    n_objects = 0
    named = _named_face_boxes(result)
    for run, region in result.regions:
        if region.score < min_score or region.w <= 0 or region.h <= 0:
            continue
        if region.kind == "face":
            face = mwg_face(region)
            if "Name" not in face and _has_named_twin(region, named):
                continue  # the people analyzer named this face: its named region stands for it
            want.faces.append(face)
            if "Name" in face:
                want.people.append(face["Name"])
            want.regions_provenance.append(
                _provenance(
                    run,
                    Kind="face",
                    Name=face.get("Name", ""),
                    Key=mwg_key(face),
                    Score=f"{region.score:.4f}",
                )
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
    want.people = unique(want.people)
    for person in want.people:
        _add_person_keyword(want, person, result)
    want.subject = unique(want.subject)
    want.hierarchy = unique(want.hierarchy)
    want.tagslist = unique(want.tagslist)
    return want


def _named_face_boxes(result: PhotoResult) -> list[Box]:
    """The boxes of the face regions that carry a person's name (``Region.name``)."""
    out = []
    for _, region in result.regions:
        if region.kind == "face" and region.name and person_name(region.name):
            box = _box(region.x + region.w / 2, region.y + region.h / 2, region.w, region.h)
            if box is not None:
                out.append(box)
    return out


def _has_named_twin(region: Region, named: Sequence[Box]) -> bool:
    """Whether an unnamed face is also given, at the same place, as a named one (:data:`OWN_REGION_IOU`): the
    people analyzer contributes the detector's box again with the person's name."""
    box = _box(region.x + region.w / 2, region.y + region.h / 2, region.w, region.h)
    return box is not None and any(iou(box, other) >= OWN_REGION_IOU for other in named)


def _add_person_keyword(want: Desired, person: str, result: PhotoResult) -> None:
    """A known person as the keyword ``People|<name>`` (TagsList ``People/<name>``, dc:subject the name), the
    digiKam and Lightroom habit, outside the AI keyword root; recorded like phototag's other keywords, so
    ``untag`` and a rename remove exactly it."""
    name = keyword_text(person)
    if not name:
        return
    full = [PEOPLE_ROOT, name]
    want.subject.append(name)
    want.hierarchy.append("|".join(full))
    want.tagslist.append(tagslist_entry(full))
    runs = [r for r, g in result.regions if g.kind == "face" and person_name(g.name or g.label) == person]
    record = {"Name": name, "Path": "|".join(full), "Score": "1.0000"}
    if runs:
        want.tags_provenance.append(_provenance(runs[0], **record))
    else:
        want.tags_provenance.append({k: clean_text(v) for k, v in record.items()})


def _answer_fields(run: AnalyzerRun, answers: Sequence[Answer]) -> list[tuple[str, str]]:
    """The answers of one run that name an XMP tag, as (tag, text) pairs: for a tag named twice, the last
    answer that is not empty. A plugin's answer that is not text is logged and skipped."""
    texts: dict[str, str] = {}
    for answer in answers:
        if answer.xmp is None:
            continue
        if not isinstance(answer.xmp, str) or not isinstance(answer.text, str):
            log.warning("analyzer %s: the answer for %r is not text; ignored", run.analyzer, answer.xmp)
            continue
        if answer.text:
            texts[answer.xmp] = answer.text
    out = []
    for tag, value in texts.items():
        text = clean_text(value).strip()
        if text:
            out.append((tag, text))
    return out


def _answers(run: AnalyzerRun, answers: Sequence[Answer]) -> list[dict[str, str]]:
    """Every question of one run that has one, with its answer and score, as provenance structures."""
    out = []
    for answer in answers:
        if not isinstance(answer.question, str):
            continue
        score = answer.score
        good_score = isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)
        record = _provenance(
            run,
            Question=answer.question,
            Answer=answer.text if isinstance(answer.text, str) else "",
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
    """Identity of an MWG face region: its name (empty for an unknown face) and area (6 decimals), as
    phototag records it (``XMP-phototag:Regions`` Key)."""
    return f"{region.get('Name', '')}|{area_key(region)}"


SAME_FACE_IOU = 0.5
"""A detected face whose box overlaps an existing (the user's) region at least this much (intersection over
union) is that region's face: phototag does not add it. A user's box over the same face typically scores
0.6-0.9 against a detector's; two different faces side by side score near 0."""
OWN_REGION_IOU = 0.9
"""A region with the name phototag recorded and at least this IoU with the recorded area (or every edge
within one pixel of it: a small face rounded to whole pixels can score less) is phototag's region. A digiKam
round trip to whole pixels scores above 0.97 on a face of 30 pixels."""

Box = tuple[float, float, float, float]
"""A box as left, top, right, bottom, normalised."""


def _box(x: Any, y: Any, w: Any, h: Any) -> Box | None:
    try:
        cx, cy, bw, bh = (float(v) for v in (x, y, w, h))
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (cx, cy, bw, bh)) or bw <= 0 or bh <= 0:
        return None
    return cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2


def face_box(region: Mapping[str, Any]) -> Box | None:
    """The box of an MWG region (its centre area), or None when it has no usable area."""
    area = region.get("Area")
    if not isinstance(area, Mapping):
        return None
    return _box(area.get("X"), area.get("Y"), area.get("W"), area.get("H"))


def key_face(key: str) -> tuple[str, Box | None]:
    """The name and box an :func:`mwg_key` records (the name may hold ``|``: the area is the last four)."""
    name, *coords = key.rsplit("|", 4)
    return (name, _box(*coords)) if len(coords) == 4 else (key, None)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre_in(a: Box, b: Box) -> bool:
    cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    return b[0] <= cx <= b[2] and b[1] <= cy <= b[3]


def own_region(recorded: Box, found: Box, pixels: tuple[int, int] | None = None) -> bool:
    """Whether a region at ``found`` is the one phototag recorded at ``recorded`` (the names aside): IoU at
    least :data:`OWN_REGION_IOU`, or, with the image's ``pixels`` (width, height), every edge within one
    pixel."""
    if iou(recorded, found) >= OWN_REGION_IOU:
        return True
    if pixels is None or pixels[0] <= 0 or pixels[1] <= 0:
        return False
    tolerance = (1.0 / pixels[0], 1.0 / pixels[1]) * 2
    return all(abs(r - f) <= t + 1e-9 for r, f, t in zip(recorded, found, tolerance, strict=True))


def same_face(a: Box, b: Box) -> bool:
    """Whether two face boxes are one face: IoU at least :data:`SAME_FACE_IOU`, or the centre of either box
    inside the other (a tight box and a loose one around the same face)."""
    return iou(a, b) >= SAME_FACE_IOU or _centre_in(a, b) or _centre_in(b, a)


def object_key(region: Mapping[str, Any]) -> str:
    """Identity of an IPTC image region: its RId, name and boundary (6 decimals)."""
    b = region.get("RegionBoundary") or {}
    coords = "|".join(_fmt(b.get(k)) for k in ("RbX", "RbY", "RbW", "RbH"))
    return f"{region.get('RId', '')}|{region.get('Name', '')}|{coords}"
