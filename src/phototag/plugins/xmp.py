"""Builtin plugin ``xmp``: writes keywords, hierarchy, caption, regions and provenance through exiftool.

What goes where (see METADATA.md):

* keywords: ``XMP-dc:Subject``; embedding into JPEG/TIFF also ``IPTC:Keywords`` (UTF-8,
  ``CodedCharacterSet`` set; keywords over IPTC's 64 bytes stay XMP-only);
* hierarchy: ``XMP-lr:HierarchicalSubject`` (``AI|Animals|Cat`` and every ancestor) and
  ``XMP-digiKam:TagsList`` (``AI/Animals/Cat``), in sync; ``|`` and ``/`` inside a level become ``-``;
* caption: ``XMP-dc:Description`` (x-default) + ``XMP-tiff:ImageDescription``; embedding also
  ``IPTC:Caption-Abstract`` (JPEG/TIFF, up to 2000 bytes) and ``EXIF:ImageDescription`` (JPEG/TIFF/PNG/WebP);
* faces: ``XMP-mwg-rs:RegionInfo`` (Type Face, normalised centre box, AppliedToDimensions in pixels);
* objects: ``XMP-iptcExt:ImageRegion`` (rectangle, relative units, Name = label, RId ``phototag:N``, role
  subjectArea);
* answers: an analyzer's ``Analysis.extra["xmp"]`` (``{tag: text}``; the VQA plugin's ``xmp:`` per question)
  goes to that XMP tag (see Fields below); every question and answer (``extra["qa"]``) is recorded in
  ``XMP-phototag:Answers`` (Question, Answer, Score, Analyzer, Model, Revision);
* provenance: the ``XMP-phototag`` namespace (``phototag/data/exiftool.config``).

Ownership. phototag records in its namespace exactly what it ADDED: the flat keywords / hierarchy entries that
were not there before (``AddedSubject`` ...), the caption it wrote, the keys of its face regions; its object
regions carry ``RId phototag:N``. A re-run removes exactly those (``-TAG-=v`` then ``-TAG+=v``) and adds the
new ones, so nothing is duplicated and the user's own keywords, hierarchy, caption and regions survive,
including a user keyword identical to one phototag would add (it was there first, so it is not recorded).
Limitation: a keyword the user adds *after* phototag added the identical one is indistinguishable from
phototag's and goes away with ``untag``. A face region the user renamed becomes the user's; phototag does not
add a second box on the same area. ``write`` makes the metadata reflect the given result: the core passes the
complete result for a photo (all analyzers), and whatever phototag wrote before that is not in it is removed.
When nothing would change, nothing is written (the file keeps its bytes and mtime).

Captions. ``caption: keep`` never overwrites a caption phototag did not write: if any caption field (in
sidecar mode also the photo's embedded ones) holds a non-blank text other than phototag's last caption, no
caption is written. ``replace`` overwrites. Control characters other than tab/newline (invalid in XML) become
spaces; CR LF and CR become LF (XML readers normalise them anyway).

Fields (answers written to XMP tags). Only text fields of an XMP namespace, named ``XMP-<group>:<Name>``
(``XMP-photoshop:Headline``, ``XMP-dc:Title``, ``XMP-iptcExt:PersonInImage``): never a non-XMP group (IPTC,
EXIF, File...), never a field phototag manages itself (``dc:subject``, ``lr:hierarchicalSubject``,
``digiKam:TagsList``, ``dc:description``, ``tiff:ImageDescription``, ``mwg-rs``, ``iptcExt:ImageRegion``,
``XMP-phototag``; :func:`xmp_field_problem`). The VQA settings refuse such a tag as a config error; the writer
checks again, and once per tag asks exiftool, by writing a test value into a scratch XMP file, whether it
is a plain text field, a language alternative or a text list (a number, date, structure or unknown tag is
skipped with one logged warning; the rest of the write goes on). phototag records each value it wrote in
``XMP-phototag:Fields`` (Tag, Value). Ownership follows ``metadata.caption``: with ``keep`` a field is
written only when it is empty (in sidecar mode also in the photo's own XMP) or still holds the value phototag
recorded; a value the user wrote stays. ``replace`` overwrites it. A language alternative (``dc:title``) is
written to its ``x-default`` entry; the other languages stay. A list tag (Bag/Seq) works like the keywords
whatever ``metadata.caption`` says: phototag's entry is added next to the user's (``-=`` then ``+=``, no
duplicates) and an entry the user had first is not recorded. A re-run replaces phototag's value; when an
analyzer has no answer any more, the value is removed where it is unchanged; ``untag`` removes exactly the
values recorded in Fields.

Sidecars (``metadata.mode: sidecar``, the default: the photo is never modified).

* ``sidecar_name: append`` -> ``photo.jpg.xmp`` (darktable, digiKam, Immich); ``replace`` -> ``photo.xmp``.
* Collisions with ``replace``: ``IMG_1.CR2`` and ``IMG_1.JPG`` would share ``IMG_1.xmp``. Two photos must
  never mix their results in one file, so the owner of ``IMG_1.xmp`` is the RAW file of the group (else the
  first name in sort order); the other members fall back to ``append`` naming (``IMG_1.JPG.xmp``) and a line
  is logged. The sidecar records its photo in ``XMP-phototag:Source``.
* An existing sidecar is edited in place (exiftool's own temp file + rename), never replaced wholesale.
* A new sidecar starts as a copy of the photo's own XMP (``-tagsFromFile PHOTO -xmp:all``), as digiKam does:
  tools that read only the sidecar when one exists (Immich, darktable) keep showing the user's embedded
  keywords, caption and regions. It is built under a hidden temp name and published with a no-clobber hard
  link, so a crash leaves either no sidecar or a complete one. ``untag`` deletes a sidecar that is left with
  no XMP at all; one that still holds the copied data stays (it may hold the user's later edits).

Embedding (``metadata.mode: embed``): ``-overwrite_original`` (exiftool writes ``FILE_exiftool_tmp`` and
renames it over the file: atomic, no ``_original`` litter; the inode changes, hard links are not kept;
symlinks are resolved and the target is written). Pixels are never touched. A stale ``FILE_exiftool_tmp`` left
by a killed exiftool is removed before every write. ``untag`` cleans the photo and both possible sidecar
names, whichever hold phototag's namespace.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__, hookimpl
from .. import iptc as iim
from ..config import Config
from ..errors import MetadataError, display
from ..exiftool import Exiftool, as_list, describe_failure, disk_full, private_dir, serialize_struct
from ..fileattrs import check_rewritable, new_file_mode, write_target
from ..tempfiles import EXIFTOOL_SUFFIX, own_temp_name, remove_stale
from ..types import AnalyzerRun, PhotoResult, Region, Tag, Writer

log = logging.getLogger(__name__)

SUBJECT = "XMP-dc:Subject"
HIERARCHY = "XMP-lr:HierarchicalSubject"
TAGSLIST = "XMP-digiKam:TagsList"
IPTC_KEYWORDS = "IPTC:Keywords"
ADDED = {
    SUBJECT: "XMP-phototag:AddedSubject",
    IPTC_KEYWORDS: "XMP-phototag:AddedKeywords",
    HIERARCHY: "XMP-phototag:AddedHierarchy",
    TAGSLIST: "XMP-phototag:AddedTagsList",
}
# caption fields: tag to write -> key it reads back as (exiftool -G1)
CAPTION_XMP = {
    "XMP-dc:Description": "XMP-dc:Description",
    "XMP-tiff:ImageDescription": "XMP-tiff:ImageDescription",
}
CAPTION_IPTC = {"IPTC:Caption-Abstract": "IPTC:Caption-Abstract"}
CAPTION_EXIF = {"EXIF:ImageDescription": "IFD0:ImageDescription"}
REGION_INFO = "XMP-mwg-rs:RegionInfo"
IMAGE_REGION = "XMP-iptcExt:ImageRegion"
PROVENANCE = "XMP-phototag:"
# provenance fields that hold a list of structures
STRUCT_LISTS = ("Tags", "Regions", "Fields", "Answers")
READ_TAGS = (
    SUBJECT, HIERARCHY, TAGSLIST, "XMP-dc:Description", "XMP-tiff:ImageDescription",
    REGION_INFO, IMAGE_REGION, "XMP-phototag:all", "IPTC:all", "EXIF:ImageDescription",
)  # fmt: skip

IPTC_EXTS = frozenset({".jpg", ".jpeg", ".tif", ".tiff"})
EXIF_EXTS = IPTC_EXTS | {".png", ".webp"}
RAW_EXTS = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf"})
IPTC_EMPTY = frozenset(
    {"IPTC:CodedCharacterSet", "IPTC:EnvelopeRecordVersion", "IPTC:ApplicationRecordVersion"}
)
IPTC_KEYWORD_MAX = 64
IPTC_CAPTION_MAX = 2000
OBJECT_RID = "phototag:"
SUBJECT_AREA = "http://cv.iptc.org/newscodes/imageregionrole/subjectArea"
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")

# answers go only to single, named XMP tags: GROUP and Name as exiftool spells them, nothing that could be
# read as an option, a wildcard, a language suffix or a print-conversion switch
_FIELD_TAG = re.compile(r"^XMP-[A-Za-z][A-Za-z0-9_-]*:[A-Za-z][A-Za-z0-9_]*$")
MANAGED_FIELDS = frozenset(t.lower() for t in (SUBJECT, HIERARCHY, TAGSLIST, *CAPTION_XMP, IMAGE_REGION))
MANAGED_GROUPS = frozenset({"xmp-phototag", "xmp-mwg-rs", "xmp-x"})
PROBE_TEXT = "phototag probe"
FieldKind = str
"""How a field is written: ``text`` (``-TAG=v``), ``lang-alt`` (``-TAG-x-default=v``) or ``list``
(``-TAG-=v``, ``-TAG+=v``)."""


def xmp_field_problem(tag: str) -> str | None:
    """Why phototag will not write an answer to the exiftool tag ``tag``; None when it may.

    Allowed: one XMP tag named with its group (``XMP-photoshop:Headline``). Refused: other groups (IPTC,
    EXIF, File...), wildcards, and the fields phototag manages itself (keywords, hierarchy, caption, regions,
    its own namespace).
    """
    group, sep, name = tag.partition(":")
    if not sep or not group or not name:
        return f"{tag!r} is not an exiftool tag name: write XMP-<group>:<Name>, e.g. XMP-photoshop:Headline"
    if group.lower() == "xmp":
        return (
            f"{tag!r} does not name its XMP group: write XMP-<group>:{name} (the group as exiftool -G1 shows "
            "it, e.g. XMP-photoshop:Headline)"
        )
    if not group.lower().startswith("xmp-"):
        return (
            f"{tag!r} is in the {group} group: answers can only go to XMP tags (XMP-<group>:<Name>, "
            "e.g. XMP-photoshop:Headline)"
        )
    if not _FIELD_TAG.match(tag) or name.lower() == "all":
        return (
            f"{tag!r} is not a single XMP tag: write XMP-<group>:<Name> (letters, digits and _ only, no "
            "language suffix), e.g. XMP-photoshop:Headline"
        )
    low = tag.lower()
    if (
        group.lower() in MANAGED_GROUPS
        or low in MANAGED_FIELDS
        or low.startswith(IMAGE_REGION.lower())  # its flattened fields (ImageRegionName ...) too
    ):
        return (
            f"{tag!r} holds what phototag manages itself (keywords, hierarchy, caption, regions, provenance): "
            "choose another field, e.g. XMP-photoshop:Headline"
        )
    return None


def _clean(text: str) -> str:
    # XML parsers turn CR LF and CR into LF anyway; doing it here keeps what phototag records equal to what
    # every reader sees
    return _XML_ILLEGAL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))


def _level(text: str) -> str:
    return _clean(text).replace("|", "-").replace("/", "-").strip()


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _num(value: float) -> str:
    return f"{min(max(value, 0.0), 1.0):.6f}"


# -- what phototag wants the metadata to say ----------------------------------------------------------------


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
    return {k: _clean(v) for k, v in out.items() if v}


def mwg_face(region: Region) -> dict[str, Any]:
    """A face as an MWG region: the box's centre, width and height, normalised."""
    area = {
        "X": _num(region.x + region.w / 2),
        "Y": _num(region.y + region.h / 2),
        "W": _num(region.w),
        "H": _num(region.h),
        "Unit": "normalized",
    }
    return {"Area": area, "Name": _clean(region.label), "Type": "Face"}


def desired_from(result: PhotoResult, root: str, min_score: float) -> Desired:
    """What ``result`` should look like in XMP: keywords at or above ``min_score`` under ``root``."""
    root_levels = [lv for lv in (_level(p) for p in re.split(r"[|/]", root)) if lv]
    want = Desired(root="|".join(root_levels), width=result.width, height=result.height)
    hier: list[str] = []
    tags: list[tuple[AnalyzerRun, Tag]] = [(r, t) for r, t in result.tags if t.score >= min_score]
    for run, tag in tags:
        name = _clean(tag.name).strip()
        levels = [lv for lv in (_level(p) for p in tag.hierarchy) if lv]
        if not name or not levels:
            continue
        want.subject.append(name)
        full = root_levels + levels
        hier += ["|".join(full[: i + 1]) for i in range(len(full))]
        want.tags_provenance.append(
            _provenance(run, Name=name, Path="|".join(full), Score=f"{tag.score:.4f}")
        )
    want.subject = _unique(want.subject)
    want.hierarchy = _unique(hier)
    want.tagslist = [h.replace("|", "/") for h in want.hierarchy]
    for run in result.ok_runs:
        if run.analysis is not None and run.analysis.caption and _clean(run.analysis.caption).strip():
            want.caption = _clean(run.analysis.caption)
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
                    "Name": _clean(region.label),
                    "RRole": [{"Identifier": [SUBJECT_AREA], "Name": "subject area"}],
                }
            )
            want.regions_provenance.append(
                _provenance(
                    run, Kind="object", Name=_clean(region.label), Key=rid, Score=f"{region.score:.4f}"
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
        text = _clean(value).strip()
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


def _area_key(region: Mapping[str, Any]) -> str:
    area = region.get("Area") or {}
    return "|".join(_fmt(area.get(k)) for k in ("X", "Y", "W", "H"))


def mwg_key(region: Mapping[str, Any]) -> str:
    """Identity of an MWG face region: its name and area (6 decimals), as phototag records it."""
    return f"{region.get('Name', '')}|{_area_key(region)}"


def _object_key(region: Mapping[str, Any]) -> str:
    b = region.get("RegionBoundary") or {}
    coords = "|".join(_fmt(b.get(k)) for k in ("RbX", "RbY", "RbW", "RbH"))
    return f"{region.get('RId', '')}|{region.get('Name', '')}|{coords}"


# -- planning: current state + desired -> exiftool arguments (pure) ------------------------------------------


@dataclass(frozen=True)
class Target:
    """The file exiftool edits for a photo, and which non-XMP groups it carries."""

    path: Path
    photo: Path
    sidecar: bool
    scratch: bool = False
    """A file in phototag's private temp folder (a new sidecar being built): no user protections apply."""

    @property
    def iptc(self) -> bool:
        return not self.sidecar and self.path.suffix.lower() in IPTC_EXTS

    @property
    def exif(self) -> bool:
        return not self.sidecar and self.path.suffix.lower() in EXIF_EXTS


def _plan_list(
    tag: str, current: Any, prev_added: Any, desired: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Arguments for one list field, and the new list of entries phototag added."""
    cur = [str(v) for v in as_list(current)]
    prev = [str(v) for v in as_list(prev_added)]
    user = {c for c in cur if c not in prev}
    added = [d for d in desired if d not in user]
    remove = _unique(prev + added)
    drop = set(remove)
    final = [c for c in cur if c not in drop] + added
    if final == cur:
        return [], added
    return [f"-{tag}-={v}" for v in remove] + [f"-{tag}+={v}" for v in added], added


def _caption_fields(target: Target, caption: str | None) -> dict[str, tuple[str, str | None]]:
    """write tag -> (read key, value phototag wants there; None: nothing of phototag's)."""
    fields: dict[str, tuple[str, str | None]] = {t: (k, caption) for t, k in CAPTION_XMP.items()}
    if target.iptc:
        fits = caption is not None and len(caption.encode()) <= IPTC_CAPTION_MAX
        fields.update({t: (k, caption if fits else None) for t, k in CAPTION_IPTC.items()})
    if target.exif:
        fields.update({t: (k, caption) for t, k in CAPTION_EXIF.items()})
    return fields


# Placeholders camera firmware and old software write into ImageDescription. They are nobody's caption, so
# ``caption: keep`` does not let them block phototag's (the list digiKam and others ignore, in upper case).
CAMERA_PLACEHOLDER_CAPTIONS = frozenset(
    {
        "OLYMPUS DIGITAL CAMERA",
        "SONY DSC",
        "SONY DIGITAL CAMERA",
        "MINOLTA DIGITAL CAMERA",
        "KONICA MINOLTA DIGITAL CAMERA",
        "DIGITAL CAMERA",
        "SAMSUNG DIGITAL CAMERA",
        "SAMSUNG CAMERA PICTURES",
        "KODAK DIGITAL STILL CAMERA",
        "PENTAX DIGITAL CAMERA",
        "CASIO QV DIGITAL",
        "DEFAULT",
        "LEAD TECHNOLOGIES INC. V1.01",
    }
)


def is_user_caption(text: str | None) -> bool:
    """A caption someone wrote: not blank and not a camera's placeholder."""
    return text is not None and bool(text.strip()) and text.strip().upper() not in CAMERA_PLACEHOLDER_CAPTIONS


def _plan_caption(
    target: Target, cur: Mapping[str, Any], want: Desired, mode: str, elsewhere: Sequence[str]
) -> tuple[list[str], str | None]:
    """Arguments for the caption fields, and the caption phototag's provenance records afterwards."""
    prev = cur.get("XMP-phototag:Caption")
    prev = str(prev) if prev is not None else None
    fields = _caption_fields(target, want.caption)
    values = {t: (str(cur[k]) if cur.get(k) is not None else None) for t, (k, _) in fields.items()}
    others = [*values.values(), *elsewhere]
    user_caption = any(is_user_caption(v) and v != prev for v in others)
    args: list[str] = []
    if want.caption is not None and (mode == "replace" or not user_caption):
        for t, (_, wanted) in fields.items():
            if wanted is not None and values[t] != wanted:
                args.append(f"-{t}={wanted}")
            elif wanted is None and prev is not None and values[t] == prev:
                args.append(f"-{t}=")
        return args, want.caption
    if want.caption is None:
        # phototag has no caption now: take back its old one wherever it is still unchanged
        args = [f"-{t}=" for t, v in values.items() if prev is not None and v == prev]
        return args, None
    # keep: the user's caption stays; phototag's old copies (if any) stay recorded so that untag finds them
    still_ours = prev is not None and any(v == prev for v in values.values())
    return [], prev if still_ours else None


def _plan_faces(cur: Mapping[str, Any], prev_keys: set[str], want: Desired) -> tuple[list[str], set[str]]:
    """Arguments for the MWG face regions, and the keys of the faces phototag owns afterwards."""
    info = cur.get(REGION_INFO)
    info = info if isinstance(info, Mapping) else {}
    regions = [r for r in as_list(info.get("RegionList")) if isinstance(r, Mapping)]
    ours = [r for r in regions if mwg_key(r) in prev_keys]
    user = [r for r in regions if mwg_key(r) not in prev_keys]
    user_areas = {_area_key(r) for r in user}
    # a user's region on the same area (e.g. one phototag wrote, renamed to a person) is not boxed twice
    wanted = [f for f in want.faces if _area_key(f) not in user_areas]
    keys = {mwg_key(f) for f in wanted}
    if [mwg_key(r) for r in ours] == [mwg_key(f) for f in wanted]:
        return [], keys
    if not user:
        if not wanted:
            return [f"-{REGION_INFO}="], keys
        dims = {"W": str(want.width), "H": str(want.height), "Unit": "pixel"}
        info_struct = {"AppliedToDimensions": dims, "RegionList": wanted}
        return [f"-{REGION_INFO}=" + serialize_struct(info_struct)], keys
    args = [f"-XMP-mwg-rs:RegionList-={serialize_struct(r)}" for r in ours]
    args += [f"-XMP-mwg-rs:RegionList+={serialize_struct(f)}" for f in wanted]
    if not info.get("AppliedToDimensions") and wanted:
        args += [
            f"-XMP-mwg-rs:RegionAppliedToDimensionsW={want.width}",
            f"-XMP-mwg-rs:RegionAppliedToDimensionsH={want.height}",
            "-XMP-mwg-rs:RegionAppliedToDimensionsUnit=pixel",
        ]
    return args, keys


def _plan_objects(cur: Mapping[str, Any], want: Desired) -> list[str]:
    regions = [r for r in as_list(cur.get(IMAGE_REGION)) if isinstance(r, Mapping)]
    ours = [r for r in regions if str(r.get("RId", "")).startswith(OBJECT_RID)]
    user = [r for r in regions if not str(r.get("RId", "")).startswith(OBJECT_RID)]
    if [_object_key(r) for r in ours] == [_object_key(o) for o in want.objects]:
        return []
    if not user:
        return [f"-{IMAGE_REGION}=" + (serialize_struct(want.objects) if want.objects else "")]
    return [f"-{IMAGE_REGION}-={serialize_struct(r)}" for r in ours] + [
        f"-{IMAGE_REGION}+={serialize_struct(o)}" for o in want.objects
    ]


def _recorded_fields(cur: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(tag, value) pairs phototag recorded in ``XMP-phototag:Fields``, for tags it may write at all."""
    out = []
    for record in as_list(cur.get(f"{PROVENANCE}Fields")):
        if isinstance(record, Mapping) and isinstance(record.get("Tag"), str) and "Value" in record:
            tag = record["Tag"]
            if xmp_field_problem(tag) is None:  # a hand-edited record cannot point phototag at other data
                out.append((tag, str(record["Value"])))
    return out


def _plan_fields(
    cur: Mapping[str, Any],
    want: Desired,
    kinds: Mapping[str, FieldKind] | None,
    mode: str,
    elsewhere: Mapping[str, Any],
) -> tuple[list[str], list[dict[str, str]]]:
    """Arguments for the answer fields, and the (Tag, Value) records phototag keeps afterwards."""
    prev: dict[str, list[str]] = {}
    for tag, recorded in _recorded_fields(cur):
        prev.setdefault(tag, []).append(recorded)
    args: list[str] = []
    records: list[dict[str, str]] = []
    for tag in _unique([*want.fields, *prev]):
        problem = xmp_field_problem(tag)
        if problem is not None:
            log.warning("not writing %s: %s", tag, problem)
            continue
        value = want.fields.get(tag)
        current = cur.get(tag)
        known = (kinds or {}).get(tag)
        # without exiftool's word (pure use, or a tag it no longer accepts) the value read says list or not
        kind = known or ("list" if isinstance(current, list) else "text")
        if kind == "list":
            tag_args, added = _plan_list(tag, current, prev.get(tag, []), [value] if value else [])
            args += tag_args
            records += [{"Tag": tag, "Value": v} for v in added]
            continue
        if isinstance(current, (list, Mapping)):
            log.warning("not writing %s: the file holds a list or structure there, not text", tag)
            continue
        suffix = "-x-default" if kind == "lang-alt" else ""  # keeps the other languages
        text = str(current) if current is not None else None
        old = prev[tag][-1] if tag in prev else None
        others = [text, *(str(v) for v in as_list(elsewhere.get(tag)) if not isinstance(v, (list, Mapping)))]
        user_value = any(v is not None and v.strip() and v != old for v in others)
        if value is not None and (mode == "replace" or not user_value):
            if text != value:
                args.append(f"-{tag}{suffix}={value}")
            records.append({"Tag": tag, "Value": value})
        elif value is None:
            if old is not None and text == old:
                args.append(f"-{tag}{suffix}=")  # phototag has no answer now: take back its unchanged one
        elif old is not None and text == old:
            # keep, with the user's value elsewhere: phototag's old one stays recorded so that untag finds it
            records.append({"Tag": tag, "Value": old})
    return args, records


def _norm(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _norm(v) for k, v in value.items() if v not in ("", None)}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return str(value)


def _current_provenance(cur: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cur.items():
        if key.startswith(PROVENANCE):
            name = key[len(PROVENANCE) :]
            if name in STRUCT_LISTS or name.startswith("Added"):
                value = as_list(value)
            out[name] = _norm(value)
    return out


def _caption_model(caption: str | None, want: Desired, old: Mapping[str, Any]) -> str:
    if not caption:
        return ""
    return want.caption_model if caption == want.caption else str(old.get("CaptionModel", ""))


def plan(
    target: Target,
    cur: Mapping[str, Any],
    want: Desired,
    *,
    caption_mode: str = "keep",
    elsewhere_captions: Sequence[str] = (),
    field_kinds: Mapping[str, FieldKind] | None = None,
    elsewhere_fields: Mapping[str, Any] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[str]:
    """exiftool arguments that turn ``cur`` (what the target holds now, as read with ``-G1 -struct``) into
    ``want`` while keeping everything phototag did not write. Empty: nothing would change.

    ``field_kinds``: how each answer field is written (see :data:`FieldKind`; the writer asks exiftool);
    ``elsewhere_fields``: the photo's own XMP in sidecar mode (a user's value there keeps a field too)."""
    old = _current_provenance(cur)
    args: list[str] = []
    added: dict[str, list[str]] = {}
    lists = [(SUBJECT, want.subject), (HIERARCHY, want.hierarchy), (TAGSLIST, want.tagslist)]
    if target.iptc:
        fits = [k for k in want.subject if len(k.encode()) <= IPTC_KEYWORD_MAX]
        lists.append((IPTC_KEYWORDS, fits))
    for tag, values in lists:
        tag_args, added[tag] = _plan_list(tag, cur.get(tag), old.get(ADDED[tag][len(PROVENANCE) :]), values)
        args += tag_args
    caption_args, caption = _plan_caption(target, cur, want, caption_mode, elsewhere_captions)
    args += caption_args
    prev_faces = {
        r.get("Key", "") for r in old.get("Regions", []) if isinstance(r, dict) and r.get("Kind") == "face"
    }
    face_args, face_keys = _plan_faces(cur, prev_faces, want)
    args += face_args
    args += _plan_objects(cur, want)
    field_args, field_records = _plan_fields(cur, want, field_kinds, caption_mode, elsewhere_fields or {})
    args += field_args
    if target.iptc and any(a.startswith("-IPTC:") for a in args):
        args.append("-IPTC:CodedCharacterSet=UTF8")

    new: dict[str, Any] = {
        "Root": want.root,
        "Source": display(target.photo.name) if target.sidecar else "",
        **{ADDED[t][len(PROVENANCE) :]: v for t, v in added.items()},
        "Caption": caption or "",
        "CaptionModel": _caption_model(caption, want, old),
        "Tags": want.tags_provenance,
        "Regions": [r for r in want.regions_provenance if r["Kind"] != "face" or r["Key"] in face_keys],
        "Fields": field_records,
        "Answers": want.answers_provenance,
    }
    new = {k: _norm(v) for k, v in new.items() if v not in ("", [], None)}
    meaningful = {k: v for k, v in new.items() if k not in ("Root", "Source")}
    old_cmp = {k: v for k, v in old.items() if k not in ("RunTime", "Version") and v not in ("", [])}
    if not args and (new == old_cmp or (not meaningful and not old_cmp)):
        return []
    if not meaningful:
        return [*args, f"-{PROVENANCE}all="]
    # delete the namespace, then set every field afresh (exiftool applies the deletion first)
    args.append(f"-{PROVENANCE}all=")
    args += [
        f"-{PROVENANCE}Version={__version__}",
        f"-{PROVENANCE}RunTime={now().isoformat(timespec='seconds')}",
    ]
    for name, value in new.items():
        if name in STRUCT_LISTS:
            args.append(f"-{PROVENANCE}{name}={serialize_struct(value)}")
        elif isinstance(value, list):
            args += [f"-{PROVENANCE}{name}={v}" for v in value]
        else:
            args.append(f"-{PROVENANCE}{name}={value}")
    return args


# -- the writer ----------------------------------------------------------------------------------------------


def sidecar_path(photo: Path, naming: str, extensions: Iterable[str] = ()) -> Path:
    """The XMP sidecar for ``photo``: ``photo.jpg.xmp`` (append) or ``photo.xmp`` (replace; on a collision
    with a sibling photo of the same stem, only the group's owner gets it, see the module docstring)."""
    append = photo.with_name(photo.name + ".xmp")
    if naming == "append":
        return append
    replace = photo.with_suffix(".xmp")
    exts = {e.lower() for e in extensions} | RAW_EXTS | IPTC_EXTS | EXIF_EXTS
    try:
        siblings = [
            p
            for p in photo.parent.iterdir()
            if p.stem == photo.stem and p.name != photo.name and p.suffix.lower() in exts and p.is_file()
        ]
    except OSError:
        siblings = []
    if not siblings:
        return replace
    owner = min([photo, *siblings], key=lambda p: (p.suffix.lower() not in RAW_EXTS, p.name))
    if owner.name == photo.name:
        return replace
    log.info("%s: %s belongs to %s; writing %s instead", photo, replace.name, owner.name, append.name)
    return append


class XmpWriter:
    """Writes one photo's results into XMP (sidecar or embedded) through one long-lived exiftool.

    ``exiftool``: an injected client (not closed by :meth:`close`); by default one is made from
    ``config.exiftool`` on first use.
    """

    name = "xmp"

    def __init__(self, config: Config, exiftool: Exiftool | None = None) -> None:
        self.config = config
        self.settings = config.metadata
        self._own = exiftool is None
        self.exiftool = exiftool or Exiftool(config.exiftool.path, timeout=config.exiftool.timeout)
        # answer fields exiftool was asked about: tag (lower case) -> (tag as exiftool names it, kind), or
        # None when refused (logged once)
        self._fields: dict[str, tuple[str, FieldKind] | None] = {}

    def target_for(self, photo: Path) -> Target:
        """Which file ``write`` edits for ``photo`` under the current settings."""
        if self.settings.mode == "embed":
            real = photo.resolve()
            return Target(real, real, sidecar=False)
        naming = self.settings.sidecar_name
        side = sidecar_path(photo, naming, self.config.image.extensions)
        return Target(write_target(side, photo), photo, sidecar=True)

    def owned_files(self, photo: Path) -> list[Path]:
        """The files this writer makes for ``photo``: its XMP sidecar (none in embed mode)."""
        if self.settings.mode == "embed":
            return []
        return [sidecar_path(photo, self.settings.sidecar_name, self.config.image.extensions)]

    def write(self, result: PhotoResult) -> None:
        """Make the photo's XMP reflect ``result``; raises MetadataError (naming the file and the fix). The
        caller holds the folder's lock (:mod:`phototag.folderlock`)."""
        photo = result.photo.path
        if not photo.is_file():
            raise MetadataError(
                photo, "file not found: it was moved or deleted before its metadata was written"
            )
        want = desired_from(result, self.settings.keyword_root, self.settings.min_score)
        self._resolve_fields(want)
        target = self.target_for(photo)
        if target.sidecar:
            self._write_sidecar(target, want)
        else:
            cur = self._read_photo(target.path, photo=target.path, fields=want.fields)[0]
            self._apply(target, cur, want, elsewhere=())

    def _read_photo(self, *paths: Path, photo: Path, fields: Iterable[str]) -> list[dict[str, Any]]:
        """:meth:`_read` of ``paths`` (``photo`` among them), again in the right charset when ``photo`` has
        unmarked non-ASCII IPTC: exiftool reads that as Latin, and the user's keywords and caption would not
        compare equal to phototag's (:mod:`phototag.iptc`)."""
        out = self._read(*paths, fields=fields)
        if iim.may_be_misread(out[list(paths).index(photo)]):
            charset = iim.iptc_charset(self.exiftool, photo)
            if charset is not None:
                out = self._read(*paths, fields=fields, iptc_charset=charset)
        return out

    def remove(self, path: Path) -> None:
        """``untag``: remove exactly what phototag wrote for the photo at ``path``, from the photo itself and
        from both possible sidecars, wherever phototag's namespace is found."""
        photo = Path(path)
        candidates: list[Target] = []
        if photo.is_file():
            real = photo.resolve()
            candidates.append(Target(real, real, sidecar=False))
        for naming in ("append", "replace"):
            side = photo.with_name(photo.name + ".xmp") if naming == "append" else photo.with_suffix(".xmp")
            if side.is_file() and all(c.path != side for c in candidates):
                candidates.append(Target(side, photo, sidecar=True))
        if not candidates:
            return
        states = self._read(*(c.path for c in candidates))
        for target, cur in zip(candidates, states, strict=True):
            if not any(k.startswith(PROVENANCE) for k in cur):
                continue
            source = cur.get(f"{PROVENANCE}Source")
            if target.sidecar and source and source != display(photo.name):
                continue  # photo.xmp of the sibling that owns it
            self._apply(target, cur, Desired(), elsewhere=())
            if target.sidecar:
                self._drop_if_empty(target.path)
            else:
                self._tidy_embedded(target.path)

    def close(self) -> None:
        """Stop the exiftool process (when this writer made it)."""
        if self._own:
            self.exiftool.close()

    # -- internals -----------------------------------------------------------------------------------------

    def _read(
        self, *paths: Path, fields: Iterable[str] = (), iptc_charset: str | None = None
    ) -> list[dict[str, Any]]:
        """What phototag reads of each file: its own fields, the answer ``fields`` and the answer fields it
        recorded there earlier (a second, small read when those were not asked for). ``iptc_charset``: how
        to decode IPTC without a CodedCharacterSet (``-charset iptc=``; None: exiftool's default, Latin)."""
        asked = _unique(fields)
        out = self._read_tags(paths, [*READ_TAGS, *asked], iptc_charset=iptc_charset)
        known = {t.lower() for t in asked}
        more = _unique(t for cur in out for t, _ in _recorded_fields(cur) if t.lower() not in known)
        if more:
            for cur, extra in zip(out, self._read_tags(paths, more), strict=True):
                cur.update(extra)
        return out

    def _read_tags(
        self, paths: Sequence[Path], tags: Sequence[str], *, iptc_charset: str | None = None
    ) -> list[dict[str, Any]]:
        # -charset holds for this one command only (exiftool resets options at every -execute)
        charset = ["-charset", f"iptc={iptc_charset}"] if iptc_charset else []
        items = self.exiftool.execute_json(
            *charset, *(f"-{t}" for t in tags), *map(_abspath, paths), file=paths[0]
        )
        # exiftool answers in argument order, one item per readable file; it prints a name that is not
        # UTF-8 with '?' for the odd bytes, so names are matched only when a file could not be read
        if len(items) == len(paths):
            by_file = {_abspath(p): item for p, item in zip(paths, items, strict=True)}
        else:
            by_file = {str(item.get("SourceFile")): item for item in items}
        out = []
        for p in paths:
            item = by_file.get(_abspath(p))
            if item is None:
                raise MetadataError(p, "exiftool cannot read this file: it is not a valid image of its type")
            out.append({k: v for k, v in item.items() if k != "SourceFile"})
        return out

    def _resolve_fields(self, want: Desired) -> None:
        """Keep the answer fields exiftool can write as text, under the names exiftool gives them."""
        fields: dict[str, str] = {}
        for tag, value in want.fields.items():
            found = self._field(tag)
            if found is not None and found[0] not in fields:
                fields[found[0]] = value
        want.fields = fields

    def _field(self, tag: str) -> tuple[str, FieldKind] | None:
        """(exiftool's name, kind) for an answer field, or None when phototag does not write it."""
        key = tag.lower()
        if key in self._fields:
            return self._fields[key]
        found: tuple[str, FieldKind] | None = None
        problem = xmp_field_problem(tag)
        if problem is None:
            try:
                found, problem = self._probe(tag)
            except MetadataError as e:  # exiftool trouble: not remembered, the next photo asks again
                log.warning("not writing %s this time: exiftool could not check it: %s", tag, e)
                return None
        if problem is not None:
            log.warning("not writing answers to %s: %s", tag, problem)
        self._fields[key] = found
        return found

    def _probe(self, tag: str) -> tuple[tuple[str, FieldKind] | None, str | None]:
        """Write a test value to ``tag`` in a scratch XMP file and read it back: is it a language
        alternative, plain text or a text list, and what does exiftool call it."""
        with tempfile.TemporaryDirectory(prefix="phototag-field-") as folder:
            scratch = Path(folder) / "probe.xmp"
            kind: FieldKind = "lang-alt"
            done = self.exiftool.execute(
                f"-{tag}-x-default={PROBE_TEXT}", _abspath(scratch), file=scratch, check=False
            )
            if not scratch.exists():
                kind = "text"
                done = self.exiftool.execute(
                    f"-{tag}={PROBE_TEXT}", _abspath(scratch), file=scratch, check=False
                )
            if not scratch.exists():
                return None, f"exiftool cannot write text there ({describe_failure(done)})"
            got = self.exiftool.execute_json(f"-{tag}", _abspath(scratch), file=scratch)
        values = {k: v for k, v in (got[0] if got else {}).items() if k != "SourceFile"}
        if len(values) != 1:
            return None, "it is a field inside an XMP structure; only text fields and text lists take answers"
        ((name, value),) = values.items()
        if value == [PROBE_TEXT]:
            kind = "list"
        elif value != PROBE_TEXT:
            return None, f"it is not a text field (text written there reads back as {value!r})"
        problem = xmp_field_problem(name)
        return (None, problem) if problem else ((name, kind), None)

    def _kinds(self, cur: Mapping[str, Any], want: Desired) -> dict[str, FieldKind]:
        """How to write each answer field that ``want`` or the file's record names."""
        kinds: dict[str, FieldKind] = {}
        for tag in _unique([*want.fields, *(t for t, _ in _recorded_fields(cur))]):
            found = self._field(tag)
            if found is not None:
                kinds[tag] = found[1]
        return kinds

    def _apply(
        self,
        target: Target,
        cur: Mapping[str, Any],
        want: Desired,
        elsewhere: Sequence[str],
        elsewhere_fields: Mapping[str, Any] | None = None,
    ) -> bool:
        args = plan(
            target,
            cur,
            want,
            caption_mode=self.settings.caption,
            elsewhere_captions=elsewhere,
            field_kinds=self._kinds(cur, want),
            elsewhere_fields=elsewhere_fields,
        )
        if not args:
            return False
        what = "its XMP sidecar" if target.sidecar else "the photo's own metadata"
        if not target.scratch:
            check_rewritable(
                target.path, target.photo, allow_read_only=self.settings.write_read_only, what=what
            )
            remove_stale(target.path.with_name(target.path.name + EXIFTOOL_SUFFIX), photo=target.photo)
        try:
            if target.iptc and any(a.startswith("-IPTC:") for a in args):
                self._iptc_to_utf8(target.path, cur)
            self.exiftool.write(target.path, *args)
        except MetadataError as e:
            raise _about_photo(e, target, what) from e
        return True

    def _iptc_to_utf8(self, path: Path, cur: Mapping[str, Any]) -> None:
        """Existing IPTC in another charset is rewritten as UTF-8 first (exiftool FAQ 10), else its non-ASCII
        text would be mislabelled once CodedCharacterSet says UTF8. The copy decodes the old values in the
        charset their bytes are in (:func:`phototag.iptc.iptc_charset`: unmarked UTF-8 is common), not
        exiftool's default Latin, which would turn unmarked UTF-8 into permanent mojibake."""
        iptc = [k for k in cur if k.startswith("IPTC:") and k != "IPTC:CodedCharacterSet"]
        if iptc and cur.get("IPTC:CodedCharacterSet") != "UTF8":
            charset = iim.iptc_charset(self.exiftool, path) if iim.may_be_misread(cur) else None
            option = ["-charset", f"iptc={charset}"] if charset else []
            self.exiftool.write(
                path, *option, "-tagsFromFile", "@", "-IPTC:all", "-IPTC:CodedCharacterSet=UTF8"
            )

    def _write_sidecar(self, target: Target, want: Desired) -> None:
        side, photo = target.path, target.photo
        if side.exists():
            cur, photo_cur = self._read_photo(side, photo, photo=photo, fields=want.fields)
            self._apply(target, cur, want, _captions(photo_cur), _xmp_of(photo_cur))
            return
        photo_cur = self._read_photo(photo, photo=photo, fields=want.fields)[0]
        xmp_only = _xmp_of(photo_cur)
        if not plan(
            target,
            xmp_only,
            want,
            caption_mode=self.settings.caption,
            elsewhere_captions=_captions(photo_cur),
            field_kinds=self._kinds(xmp_only, want),
            elsewhere_fields=xmp_only,
        ):
            return  # nothing to say: no empty sidecar
        scratch = private_dir("phototag-sidecar-")
        try:
            seed = scratch / "seed.xmp"
            # the photo's own XMP, copied by exiftool from the photo itself ("@"): a file name is never put
            # where exiftool reads format codes (see exiftool.py); "nothing to write" means it has none
            seeded = self.exiftool.execute(
                "-tagsFromFile", "@", "-xmp:all", "-o", str(seed), _abspath(photo), file=photo, check=False
            )
            if seed.exists():
                cur = self._read(seed)[0]
            elif "nothing to write" in seeded.stderr.lower() or "no writable tags" in seeded.stderr.lower():
                cur = {}
            else:
                raise MetadataError(photo, f"cannot read the photo's XMP to start its sidecar: "
                                    f"{describe_failure(seeded)}")  # fmt: skip
            scratch_target = Target(seed, photo, sidecar=True, scratch=True)
            if self._apply(scratch_target, cur, want, _captions(photo_cur), xmp_only):
                self._publish(seed, side, photo)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _publish(self, seed: Path, side: Path, photo: Path) -> None:
        """Make the finished ``seed`` appear as ``side`` complete or not at all, never over an existing
        sidecar: written under phototag's own temp name in the folder, then hard-linked to its name."""
        tmp = side.parent / own_temp_name(".xmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), new_file_mode())
                f.write(seed.read_bytes())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, side)
            except FileExistsError:
                raise MetadataError(
                    photo,
                    f"its sidecar {display(side.name)} appeared while phototag was creating it (another "
                    "program wrote it); run phototag again to merge into it",
                ) from None
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                    raise
                if side.exists():
                    raise MetadataError(photo, f"its sidecar {display(side.name)} appeared meanwhile; run "
                                        "again") from e  # fmt: skip
                os.replace(tmp, side)  # file systems without hard links
        except OSError as e:
            raise _about_photo(
                MetadataError(side, e.strerror or str(e), e.errno), Target(side, photo, sidecar=True),
                "its XMP sidecar"
            ) from e  # fmt: skip
        finally:
            tmp.unlink(missing_ok=True)

    def _tidy_embedded(self, path: Path) -> None:
        """After untag: drop an XMP packet / IPTC record that phototag's writes left empty."""
        left = self.exiftool.read_tags(path, "XMP:all", "IPTC:all")
        xmp = [k for k in left if k.startswith("XMP")]
        iptc = [k for k in left if k.startswith("IPTC:")]
        args = []
        if xmp and set(xmp) <= {"XMP-x:XMPToolkit"}:
            args.append("-XMP:all=")
        if iptc and set(iptc) <= IPTC_EMPTY:
            args.append("-IPTC:all=")
        if args:
            self.exiftool.write(path, *args)

    def _drop_if_empty(self, side: Path) -> None:
        left = self.exiftool.read_tags(side, "XMP:all")
        if not [k for k in left if k != "XMP-x:XMPToolkit"]:
            side.unlink(missing_ok=True)
            log.info("removed %s: nothing but phototag's metadata was in it", side)


def _about_photo(e: MetadataError, target: Target, what: str) -> MetadataError:
    """``e`` (about the file exiftool wrote) as an error about the photo: what was being written and why it
    failed, with a disk-full or busy condition said plainly and kept transient."""
    if e.path == target.photo and what in str(e):
        return e
    reason = str(e).removeprefix(f"{display(e.path)}: ")
    code = e.errno
    if code is None and not e.transient and not target.scratch and disk_full(target.path):
        code = errno.ENOSPC
    if code == errno.ENOSPC:
        reason = "the disk is full. Free some space; phototag tries again"
    elif code in (errno.EACCES, errno.EPERM):
        reason += (
            ". Make the folder and file writable by the user phototag runs as (chmod, or ReadWritePaths= "
        )
        reason += "in the systemd unit)"
    elif code == errno.ENAMETOOLONG:
        reason += ". The photo's name is too long to add a sidecar suffix: rename it, or use "
        reason += "metadata.sidecar_name: replace"
    elif code == errno.EROFS:
        reason += ". The file system is mounted read-only; phototag tries again"
    err = type(e)(target.photo, f"cannot write {what} ({display(target.path.name)}): {reason}", code)
    return err


def _captions(photo_cur: Mapping[str, Any]) -> list[str]:
    keys = [*CAPTION_XMP.values(), *CAPTION_IPTC.values(), *CAPTION_EXIF.values()]
    return [str(photo_cur[k]) for k in keys if photo_cur.get(k) is not None]


def _xmp_of(photo_cur: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in photo_cur.items() if k.startswith("XMP-")}


def _abspath(path: Path) -> str:
    return str(Path(path).absolute())


@hookimpl
def register_writers(register: Callable[[Writer], None], config: Config) -> None:
    """Register the XMP writer when ``metadata.xmp`` is on."""
    if config.metadata.xmp:
        register(XmpWriter(config))
