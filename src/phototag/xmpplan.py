"""Planning: what a file's XMP holds now + what phototag wants there -> exiftool arguments; pure.

:func:`plan` takes the target's current metadata (a dict as read with ``exiftool -G1 -struct``) and a
:class:`~phototag.xmpdesired.Desired`, and returns the arguments that add, replace and remove what phototag
owns, keeping everything else. No I/O: no exiftool process, no file system (a :class:`Target` holds paths as
data only); the writer (:mod:`phototag.plugins.xmp`) reads, asks exiftool what kind each answer field is,
and runs the arguments.

Ownership. phototag records in its namespace exactly what it ADDED: the flat keywords / hierarchy entries that
were not there before (``AddedSubject`` ...), the caption it wrote, the keys of its face regions; its object
regions carry ``RId phototag:N``. A re-run removes exactly those (``-TAG-=v`` then ``-TAG+=v``) and adds the
new ones, so nothing is duplicated and the user's own keywords, hierarchy, caption and regions survive,
including a user keyword identical to one phototag would add (it was there first, so it is not recorded).
Limitation: a keyword the user adds *after* phototag added the identical one is indistinguishable from
phototag's and goes away with ``untag``. ``write`` makes the metadata reflect the given result: the core passes
the complete result for a photo (all analyzers), and whatever phototag wrote before that is not in it is
removed. When nothing would change, nothing is written (the file keeps its bytes and mtime).

Hierarchy (lr:hierarchicalSubject and TagsList). phototag writes the full path of each keyword it assigns,
in both lists. With :attr:`~phototag.xmpdesired.Desired.sync_user_hierarchy` (``metadata.sync_user_hierarchy``,
default on) it also mirrors the user's entries: a user entry (one not recorded as phototag's) whose
counterpart is not among the user's entries of the other list is added there, converted (``|`` <-> ``/``; a
``/`` inside a level becomes ``-`` in TagsList, a ``|`` inside a level ``-`` in lr:hierarchicalSubject); and a
user's flat keyword (dc:subject) that is the leaf of no hierarchy entry gets a top-level entry in both lists:
darktable ignores dc:subject once lr:hierarchicalSubject exists, and digiKam reads TagsList first, so without
it the user's plain keywords would vanish from both apps as soon as phototag adds a hierarchy.
Why on by default: Lightroom and darktable write lr:hierarchicalSubject only, while digiKam and Immich read
TagsList first and ignore lr:hierarchicalSubject when TagsList exists; a sidecar whose TagsList holds only
phototag's entries hides the user's whole hierarchy from them (and an Immich/digiKam TagsList-only hierarchy
from darktable). The copies are *derived* data and recorded as phototag's (``AddedHierarchy`` /
``AddedTagsList``): the user's own entries are never changed or removed, a copy whose source the user
deleted goes at the next write (an unrecorded copy would resurrect every tag the user deletes in an app that
writes one list only), and ``untag`` leaves both lists exactly as the user had them. Off: the user's entries
are left as they are, and copies made earlier are removed. The copies are made only while phototag writes
something of its own into the file. Entries of old versions (every ancestor as an entry of its own) are in
the Added records, so the next write removes them.

Faces (thresholds and matching: :mod:`phototag.xmpdesired`). A region is phototag's when it matches a face
phototag recorded (same name, :func:`~phototag.xmpdesired.own_region`: IoU >=
:data:`~phototag.xmpdesired.OWN_REGION_IOU` or every edge within a pixel; one region per record):
a rounded round trip (digiKam stores whole pixels) is still recognised, so a re-run leaves it as it is and
``untag`` removes it. Every other region is the user's and is never moved, renamed or removed; a detected
face that is the same face as a user's face region (:func:`~phototag.xmpdesired.same_face`: IoU >=
:data:`~phototag.xmpdesired.SAME_FACE_IOU` or one centre inside the other box) is not added, so a face the
user named (or an unnamed box another program drew) is not boxed twice. A face phototag wrote that the user
renamed becomes the user's. phototag's old regions named ``Face``/``face`` (versions before 2) do not match
today's unnamed faces: they are replaced. Known people go to ``XMP-iptcExt:PersonInImage`` (a Bag), recorded
in ``XMP-phototag:Fields`` like a list answer: an entry the user had first stays the user's; a VQA answer
for that tag equal to a person's name is not written twice.

Captions. ``caption: keep`` never overwrites a caption phototag did not write: if any caption field (in
sidecar mode also the photo's embedded ones) holds a non-blank text other than phototag's last caption, no
caption is written; a camera's placeholder (``OLYMPUS DIGITAL CAMERA``,
:func:`~phototag.xmpfields.is_user_caption`) is nobody's caption. ``replace`` overwrites. Control characters
other than tab/newline (invalid in XML) become spaces; CR LF and CR become LF (XML readers normalise them
anyway).

Fields (answers written to XMP tags; which tags may take one: :func:`~phototag.xmpfields.xmp_field_problem`).
phototag records each value it wrote in ``XMP-phototag:Fields`` (Tag, Value). Ownership follows
``metadata.caption``: with ``keep`` a field is written only when it is empty (in sidecar mode also in the
photo's own XMP) or still holds the value phototag recorded; a value the user wrote stays. ``replace``
overwrites it. A language alternative (``dc:title``) is written to its ``x-default`` entry; the other
languages stay. A list tag (Bag/Seq) works like the keywords whatever ``metadata.caption`` says: phototag's
entry is added next to the user's (``-=`` then ``+=``, no duplicates) and an entry the user had first is not
recorded. A re-run replaces phototag's value; when an analyzer has no answer any more, the value is removed
where it is unchanged; ``untag`` removes exactly the values recorded in Fields.

Untag is ``plan`` with an empty ``Desired()``: it removes exactly what the namespace records.

Why one module of ~500 lines: the planner is one pure function over one record of provenance; its rules
(lists, captions, faces, objects, fields, hierarchy sync) read and write the same provenance and are tested
together by table (tests/test_xmp_plan.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__
from .errors import display
from .exiftool import as_list, serialize_struct
from .xmpdesired import Box, Desired, face_box, iou, key_face, mwg_key, object_key, own_region, same_face
from .xmpfields import (
    ADDED,
    CAPTION_EXIF,
    CAPTION_IPTC,
    CAPTION_XMP,
    EXIF_EXTS,
    HIERARCHY,
    IMAGE_REGION,
    IPTC_CAPTION_MAX,
    IPTC_EXTS,
    IPTC_KEYWORD_MAX,
    IPTC_KEYWORDS,
    OBJECT_RID,
    PERSON_IN_IMAGE,
    PROVENANCE,
    REGION_INFO,
    STRUCT_LISTS,
    SUBJECT,
    TAGSLIST,
    FieldKind,
    hierarchy_to_tagslist,
    is_user_caption,
    tagslist_to_hierarchy,
    unique,
    xmp_field_problem,
)

log = logging.getLogger(__name__)

ADDED_NAME = {tag: name[len(PROVENANCE) :] for tag, name in ADDED.items()}
"""List tag -> the field of phototag's namespace that records what it added there (``AddedSubject`` ...)."""


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
    remove = unique(prev + added)
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


def _claim(
    boxes: Sequence[tuple[str, Box | None]],
    name: str,
    box: Box,
    taken: set[int],
    pixels: tuple[int, int] | None,
) -> int | None:
    """Index of the best match (highest IoU) for (name, box) among ``boxes`` not yet ``taken``: the same name
    and :func:`~phototag.xmpdesired.own_region`; None when there is none."""
    best, best_iou = None, -1.0
    for i, (other_name, other) in enumerate(boxes):
        if i in taken or other is None or other_name != name or not own_region(box, other, pixels):
            continue
        score = iou(box, other)
        if score > best_iou:
            best, best_iou = i, score
    return best


def _pixels(info: Mapping[str, Any], want: Desired) -> tuple[int, int] | None:
    """The image's size the regions apply to: the file's AppliedToDimensions, else the result's."""
    dims = info.get("AppliedToDimensions")
    if isinstance(dims, Mapping):
        try:
            return int(float(dims["W"])), int(float(dims["H"]))
        except (KeyError, TypeError, ValueError):
            pass
    return (want.width, want.height) if want.width > 0 and want.height > 0 else None


def _mwg_regions(
    cur: Mapping[str, Any], records: Sequence[Mapping[str, Any]], want: Desired
) -> tuple[Mapping[str, Any], list[Mapping[str, Any]], list[tuple[str, Box | None]], Any, dict[int, str]]:
    """The file's RegionInfo, its regions, each one's (Name, box), the pixel size they apply to, and which
    regions are phototag's: each recorded face claims the best matching region (region index -> its key)."""
    info = cur.get(REGION_INFO)
    info = info if isinstance(info, Mapping) else {}
    regions = [r for r in as_list(info.get("RegionList")) if isinstance(r, Mapping)]
    found = [(str(r.get("Name", "")), face_box(r)) for r in regions]
    pixels = _pixels(info, want)
    ours: dict[int, str] = {}
    for record in records:
        key = str(record.get("Key", ""))
        name, box = key_face(key)
        if box is not None:
            hit = _claim(found, name, box, set(ours), pixels)
            if hit is not None:
                ours[hit] = key
    return info, regions, found, pixels, ours


def user_faces(cur: Mapping[str, Any]) -> list[tuple[str, Box]]:
    """The face regions in ``cur`` (a file as read with ``-G1 -struct``) that are not phototag's: the user's
    or another program's (digiKam, Lightroom, Picasa, Immich), as (Name, box); Name "" for an unnamed one.
    The same rule as the writer's, so what people recognition learns from is exactly what the writer
    leaves alone."""
    records = [r for r in _current_provenance(cur).get("Regions", []) if isinstance(r, dict)]
    faces = [r for r in records if r.get("Kind") == "face"]
    _, regions, found, _, ours = _mwg_regions(cur, faces, Desired())
    return [
        (name.strip(), box)
        for i, (r, (name, box)) in enumerate(zip(regions, found, strict=True))
        if i not in ours and box is not None and str(r.get("Type", "Face")).lower() == "face"
    ]


def _plan_faces(
    cur: Mapping[str, Any], records: Sequence[Mapping[str, Any]], want: Desired
) -> tuple[list[str], list[str | None]]:
    """Arguments for the MWG face regions, and per wanted face the key phototag records for it (None: not
    written, the user's region has that face)."""
    info, regions, found, pixels, ours = _mwg_regions(cur, records, want)
    user_faces = [
        box
        for i, (r, (_, box)) in enumerate(zip(regions, found, strict=True))
        if i not in ours and box is not None and str(r.get("Type", "Face")).lower() == "face"
    ]
    mine = [found[i] if i in ours else ("", None) for i in range(len(regions))]
    keys: list[str | None] = []
    kept: set[int] = set()
    add: list[dict[str, Any]] = []
    for face in want.faces:
        box = face_box(face)
        if box is None or any(same_face(box, u) for u in user_faces):
            keys.append(None)  # the user's region has this face
            continue
        # phototag's own region for this face, maybe rounded by another program: left as it is, and
        # recorded as before (the record still finds it)
        hit = _claim(mine, str(face.get("Name", "")), box, kept, pixels)
        if hit is not None:
            kept.add(hit)
            keys.append(ours[hit])
        else:
            add.append(face)
            keys.append(mwg_key(face))
    drop = [regions[i] for i in sorted(set(ours) - kept)]
    if not drop and not add:
        return [], keys
    if len(ours) == len(regions):  # nothing of the user's: the whole RegionInfo is phototag's
        final = [regions[i] for i in sorted(kept)] + add
        if not final:
            return [f"-{REGION_INFO}="], keys
        dims = {"W": str(want.width), "H": str(want.height), "Unit": "pixel"}
        info_struct = {"AppliedToDimensions": dims, "RegionList": final}
        return [f"-{REGION_INFO}=" + serialize_struct(info_struct)], keys
    args = [f"-XMP-mwg-rs:RegionList-={serialize_struct(r)}" for r in drop]
    args += [f"-XMP-mwg-rs:RegionList+={serialize_struct(f)}" for f in add]
    if not info.get("AppliedToDimensions") and add:
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
    if [object_key(r) for r in ours] == [object_key(o) for o in want.objects]:
        return []
    if not user:
        return [f"-{IMAGE_REGION}=" + (serialize_struct(want.objects) if want.objects else "")]
    return [f"-{IMAGE_REGION}-={serialize_struct(r)}" for r in ours] + [
        f"-{IMAGE_REGION}+={serialize_struct(o)}" for o in want.objects
    ]


def recorded_fields(cur: Mapping[str, Any]) -> list[tuple[str, str]]:
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
    for tag, recorded in recorded_fields(cur):
        prev.setdefault(tag, []).append(recorded)
    args: list[str] = []
    records: list[dict[str, str]] = []
    people = [PERSON_IN_IMAGE] if want.people else []
    for tag in unique([*want.fields, *people, *prev]):
        problem = xmp_field_problem(tag)
        if problem is not None:
            log.warning("not writing %s: %s", tag, problem)
            continue
        value = want.fields.get(tag)
        current = cur.get(tag)
        known = (kinds or {}).get(tag)
        # without exiftool's word (pure use, or a tag it no longer accepts) the value read says list or not
        kind = known or ("list" if isinstance(current, list) or tag == PERSON_IN_IMAGE else "text")
        if kind == "list":
            listed = [*(want.people if tag == PERSON_IN_IMAGE else []), *([value] if value else [])]
            tag_args, added = _plan_list(tag, current, prev.get(tag, []), unique(listed))
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


def _says_anything(want: Desired) -> bool:
    """Whether ``want`` asks for anything of phototag's own (not ``Desired()``, as untag passes it)."""
    return bool(
        want.subject or want.hierarchy or want.caption is not None or want.faces or want.objects
        or want.fields or want.people or want.answers_provenance
    )  # fmt: skip


def _synced(cur: Mapping[str, Any], old: Mapping[str, Any], want: Desired) -> tuple[list[str], list[str]]:
    """phototag's hierarchy and TagsList entries plus the copies that mirror the user's entries of each list
    into the other (see the module docstring)."""
    user_h = [str(v) for v in as_list(cur.get(HIERARCHY)) if str(v) not in old.get(ADDED_NAME[HIERARCHY], [])]
    user_t = [str(v) for v in as_list(cur.get(TAGSLIST)) if str(v) not in old.get(ADDED_NAME[TAGSLIST], [])]
    h_as_t = {hierarchy_to_tagslist(h) for h in user_h}
    t_as_h = {tagslist_to_hierarchy(t) for t in user_t}
    to_t = [
        hierarchy_to_tagslist(h) for h in user_h if h not in t_as_h and hierarchy_to_tagslist(h) not in user_t
    ]
    to_h = [
        tagslist_to_hierarchy(t) for t in user_t if t not in h_as_t and tagslist_to_hierarchy(t) not in user_h
    ]
    # a user's flat keyword that is the leaf of no hierarchy entry: darktable (and digiKam) show only the
    # hierarchy once the file has one, so the keyword gets a top-level entry of its own in both lists
    hierarchy = [*user_h, *to_h, *want.hierarchy]
    leaves = {h.rsplit("|", 1)[-1] for h in hierarchy}
    added_subject = old.get(ADDED_NAME[SUBJECT], [])
    for keyword in (str(v) for v in as_list(cur.get(SUBJECT)) if str(v) not in added_subject):
        entry = keyword.replace("|", "-").strip()
        if entry and entry not in leaves:
            leaves.add(entry)
            to_h.append(entry)
            to_t.append(hierarchy_to_tagslist(entry))
    return unique([*want.hierarchy, *to_h]), unique([*want.tagslist, *to_t])


def _regions_provenance(want: Desired, face_keys: Sequence[str | None]) -> list[dict[str, str]]:
    """The region records: each object's, and each face's that was written or kept (``face_keys``, in the
    order of ``want.faces``), under the key of the region the file holds."""
    out = []
    faces = iter(face_keys)
    for record in want.regions_provenance:
        if record.get("Kind") == "face":
            key = next(faces, None)
            if key is None:
                continue
            record = {**record, "Key": key}
        out.append(record)
    return out


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
    hierarchy, tagslist = want.hierarchy, want.tagslist
    if want.sync_user_hierarchy and _says_anything(want):
        hierarchy, tagslist = _synced(cur, old, want)
    lists = [(SUBJECT, want.subject), (HIERARCHY, hierarchy), (TAGSLIST, tagslist)]
    if target.iptc:
        fits = [k for k in want.subject if len(k.encode()) <= IPTC_KEYWORD_MAX]
        lists.append((IPTC_KEYWORDS, fits))
    for tag, values in lists:
        tag_args, added[tag] = _plan_list(tag, cur.get(tag), old.get(ADDED[tag][len(PROVENANCE) :]), values)
        args += tag_args
    caption_args, caption = _plan_caption(target, cur, want, caption_mode, elsewhere_captions)
    args += caption_args
    prev_faces = [r for r in old.get("Regions", []) if isinstance(r, dict) and r.get("Kind") == "face"]
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
        "Regions": _regions_provenance(want, face_keys),
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
