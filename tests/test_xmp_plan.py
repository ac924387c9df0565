"""The XMP planner's ownership rules, table-driven: (what the file holds, what phototag wants, options) ->
exiftool arguments. Pure: no exiftool, no files (the paths in a Target are only data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from phototag.types import Analysis, AnalyzerRun, ModelInfo, Photo, PhotoResult, Region, Tag
from phototag.xmpdesired import (
    OWN_REGION_IOU,
    SAME_FACE_IOU,
    Desired,
    desired_from,
    face_box,
    iou,
    mwg_key,
    own_region,
    same_face,
)
from phototag.xmpfields import PROVENANCE, SUBJECT_AREA
from phototag.xmpplan import Target, plan

S, H, T = "XMP-dc:Subject", "XMP-lr:HierarchicalSubject", "XMP-digiKam:TagsList"
DESC, TIFF = "XMP-dc:Description", "XMP-tiff:ImageDescription"
HEADLINE, TITLE, PERSON = "XMP-photoshop:Headline", "XMP-dc:Title", "XMP-iptcExt:PersonInImage"
REGIONS, IMAGE_REGION = "XMP-mwg-rs:RegionInfo", "XMP-iptcExt:ImageRegion"

PHOTO = Path("/photos/cat.jpg")
SIDECAR = Target(Path("/photos/cat.jpg.xmp"), PHOTO, sidecar=True)
EMBED = Target(PHOTO, PHOTO, sidecar=False)  # a JPEG: IPTC and EXIF too
NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)

UNTOUCHED = "untouched"
"""``recorded``: the plan has no argument for phototag's namespace."""
CLEARED = "cleared"
"""``recorded``: the plan deletes phototag's namespace and records nothing."""


def lists(*ops: str) -> list[str]:
    """The same operations on dc:subject, lr:hierarchicalSubject and digiKam:TagsList, in that order (flat
    keywords with no root: the three lists hold the same entries)."""
    return [f"-{tag}{op}" for tag in (S, H, T) for op in ops]


def keywords(*names: str) -> Desired:
    """What a result with these flat keywords asks for, with no keyword root."""
    return Desired(subject=list(names), hierarchy=list(names), tagslist=list(names))


def holding(user: list[str], ours: list[str]) -> dict[str, Any]:
    """A file whose three keyword lists hold ``user`` then ``ours``, with ``ours`` recorded as phototag's."""
    cur: dict[str, Any] = {tag: [*user, *ours] for tag in (S, H, T)}
    if ours:
        cur |= {f"{PROVENANCE}Added{n}": list(ours) for n in ("Subject", "Hierarchy", "TagsList")}
    return cur


MODEL = ModelInfo("test/detector", "rev-1")
# a face detector's unknown face, off the pixel grid of 640 x 480 (so a whole-pixel round trip moves it)
FACE = Region("Face", 0.97, 0.1003, 0.2011, 0.2995, 0.4012, kind="face")
OTHER_FACE = Region("face", 0.90, 0.50, 0.50, 0.20, 0.20, kind="face")
GRACE = Region("Grace Hopper", 0.95, 0.50, 0.50, 0.20, 0.20, kind="face")  # a known person (people feature)
CAT_BOX = Region("cat", 0.88, 0.05, 0.10, 0.60, 0.80)


def regions(*found: Region, tags: tuple[Tag, ...] = (), sync: bool = False) -> Desired:
    """What a result with these regions (and tags) asks for: desired_from, as the writer calls it."""
    run = AnalyzerRun("detect", "detect", MODEL, "fp", Analysis(tags=tags, regions=found))
    result = PhotoResult(Photo(PHOTO, 1, 1, "hash"), 640, 480, (run,))
    return desired_from(result, "", 0.0, sync_user_hierarchy=sync)


def synced(*names: str) -> Desired:
    """Flat keywords (no root) with the user's hierarchy entries mirrored between the lists."""
    return Desired(subject=list(names), hierarchy=list(names), tagslist=list(names), sync_user_hierarchy=True)


def area(x: float, y: float, w: float, h: float) -> dict[str, str]:
    """An MWG area (centre, size) as exiftool reads it back: 6 decimals."""
    return {"X": f"{x:.6f}", "Y": f"{y:.6f}", "W": f"{w:.6f}", "H": f"{h:.6f}", "Unit": "normalized"}


def rounded(box: dict[str, str], width: int = 640, height: int = 480) -> dict[str, str]:
    """``box`` after a digiKam round trip: whole pixels (left, top, width, height), normalised again."""
    x, y, w, h = (float(box[k]) for k in ("X", "Y", "W", "H"))
    left, top = round((x - w / 2) * width), round((y - h / 2) * height)
    pw, ph = round(w * width), round(h * height)
    return area((left + pw / 2) / width, (top + ph / 2) / height, pw / width, ph / height)


FACE_AREA = area(FACE.x + FACE.w / 2, FACE.y + FACE.h / 2, FACE.w, FACE.h)  # FACE as an MWG area
FACE_KEY = mwg_key({"Area": FACE_AREA})  # an unknown face: no name
FACE_RECORD = {"Kind": "face", "Key": FACE_KEY, "Analyzer": "detect", "Model": MODEL.id}
OLD_FACE_KEY = mwg_key({"Name": "Face", "Area": FACE_AREA})  # versions before 2 named every face "Face"
OLD_FACE_RECORD = {"Kind": "face", "Name": "Face", "Key": OLD_FACE_KEY, "Analyzer": "detect"}
DIMENSIONS = {"W": "640", "H": "480", "Unit": "pixel"}
UNNAMED_FACE = "Area={" + ",".join(f"{k}={v}" for k, v in FACE_AREA.items()) + "},Type=Face"
OTHER_AREA = "Area={X=0.600000,Y=0.600000,W=0.200000,H=0.200000,Unit=normalized}"
USER_OBJECT = {
    "RId": "mine",
    "Name": "Mona Lisa",
    "RegionBoundary": {"RbShape": "rectangle", "RbUnit": "relative", "RbX": "0.1", "RbY": "0.1"},
}
OUR_OBJECT = {
    "RId": "phototag:1",
    "Name": "dog",
    "RegionBoundary": {"RbShape": "rectangle", "RbUnit": "relative", "RbX": "0.5", "RbY": "0.5"},
}
CAT_OBJECT = (
    "{RegionBoundary={RbShape=rectangle,RbUnit=relative,RbX=0.050000,RbY=0.100000,RbW=0.600000,RbH=0.800000},"
    f"RId=phototag:1,Name=cat,RRole=[{{Identifier=[{SUBJECT_AREA}],Name=subject area}}]}}"
)
LONG = "é" * 33  # 33 characters, 66 bytes: over IPTC's 64


@dataclass(frozen=True)
class Row:
    id: str
    cur: Mapping[str, Any]
    """What the target holds now, as exiftool -G1 -struct reads it."""
    want: Desired
    data: list[str]
    """The expected arguments outside phototag's namespace, in order."""
    recorded: Mapping[str, list[str] | None] | str = UNTOUCHED
    """UNTOUCHED, CLEARED, or what the namespace holds afterwards: field -> values (one per argument; None:
    not written). Fields not named are not checked; Version and RunTime are always set."""
    target: Target = SIDECAR
    opts: Mapping[str, Any] = field(default_factory=dict)
    """plan()'s keyword options: caption_mode, elsewhere_captions, field_kinds, elsewhere_fields."""


ROWS = [
    # -- keywords ------------------------------------------------------------------------------------------
    Row(
        "keywords: the user's keyword is kept, phototag's added next to it",
        holding(["Holiday"], []),
        keywords("Cat"),
        lists("-=Cat", "+=Cat"),
        {"AddedSubject": ["Cat"], "AddedHierarchy": ["Cat"], "AddedTagsList": ["Cat"]},
    ),
    Row(
        "keywords: phototag's previous keywords are replaced, not duplicated",
        holding(["Holiday"], ["Cat", "Dog"]),
        keywords("Cat", "Sofa"),
        lists("-=Cat", "-=Dog", "-=Sofa", "+=Cat", "+=Sofa"),
        {"AddedSubject": ["Cat", "Sofa"], "AddedHierarchy": ["Cat", "Sofa"]},
    ),
    Row(
        "keywords: a user keyword identical to phototag's is not recorded as added",
        holding(["Cat"], []),
        keywords("Cat"),
        [],
    ),
    Row(
        "keywords: the user's identical keyword survives a re-run; only phototag's other one goes",
        holding(["Cat"], ["Dog"]),
        keywords("Cat"),
        lists("-=Dog"),
        CLEARED,
    ),
    Row(
        "keywords: over 64 bytes stay XMP-only (IPTC keywords, embedded)",
        {},
        Desired(subject=["Cat", LONG]),
        [
            f"-{S}-=Cat",
            f"-{S}-={LONG}",
            f"-{S}+=Cat",
            f"-{S}+={LONG}",
            "-IPTC:Keywords-=Cat",
            "-IPTC:Keywords+=Cat",
            "-IPTC:CodedCharacterSet=UTF8",
        ],
        {"AddedSubject": ["Cat", LONG], "AddedKeywords": ["Cat"]},
        target=EMBED,
    ),
    Row(
        "keywords: a sidecar gets no IPTC, only XMP",
        {},
        Desired(subject=["Cat"]),
        [f"-{S}-=Cat", f"-{S}+=Cat"],
        {"AddedSubject": ["Cat"], "AddedKeywords": None, "Source": ["cat.jpg"]},
    ),
    # -- hierarchy: full paths, the user's entries in sync (metadata.sync_user_hierarchy) --------------------
    Row(
        "hierarchy: the full path of each keyword only, in both lists (no ancestor entries)",
        {},
        regions(tags=(Tag("Cat", 0.9, ("Animals", "Pets", "Cat")),)),
        [
            f"-{S}-=Cat",
            f"-{S}+=Cat",
            f"-{H}-=Animals|Pets|Cat",
            f"-{H}+=Animals|Pets|Cat",
            f"-{T}-=Animals/Pets/Cat",
            f"-{T}+=Animals/Pets/Cat",
        ],
        {"AddedHierarchy": ["Animals|Pets|Cat"], "AddedTagsList": ["Animals/Pets/Cat"]},
    ),
    Row(
        "migration: the ancestor entries an old version added (recorded) are removed",
        holding([], ["AI", "AI|Animals", "AI|Animals|Cat"])
        | {S: ["Cat"], f"{PROVENANCE}AddedSubject": ["Cat"]},
        Desired(subject=["Cat"], hierarchy=["AI|Animals|Cat"], tagslist=["AI/Animals/Cat"]),
        [
            f"-{H}-=AI",
            f"-{H}-=AI|Animals",
            f"-{H}-=AI|Animals|Cat",
            f"-{H}+=AI|Animals|Cat",
            f"-{T}-=AI",
            f"-{T}-=AI|Animals",
            f"-{T}-=AI|Animals|Cat",
            f"-{T}-=AI/Animals/Cat",
            f"-{T}+=AI/Animals/Cat",
        ],
        {"AddedHierarchy": ["AI|Animals|Cat"], "AddedTagsList": ["AI/Animals/Cat"]},
    ),
    Row(
        "sync: the user's lr:hierarchicalSubject entries are mirrored to TagsList ('/' in a level -> '-')",
        {H: ["People|Family|Mittens", "Music|AC/DC"]},
        synced("Cat"),
        [
            f"-{S}-=Cat",
            f"-{S}+=Cat",
            f"-{H}-=Cat",
            f"-{H}+=Cat",
            f"-{T}-=Cat",
            f"-{T}-=People/Family/Mittens",
            f"-{T}-=Music/AC-DC",
            f"-{T}+=Cat",
            f"-{T}+=People/Family/Mittens",
            f"-{T}+=Music/AC-DC",
        ],
        {"AddedHierarchy": ["Cat"], "AddedTagsList": ["Cat", "People/Family/Mittens", "Music/AC-DC"]},
    ),
    Row(
        "sync: the user's TagsList entries are mirrored to lr:hierarchicalSubject ('|' in a level -> '-')",
        {T: ["Places/Home", "Odd/a|b"]},
        synced("Cat"),
        [
            f"-{S}-=Cat",
            f"-{S}+=Cat",
            f"-{H}-=Cat",
            f"-{H}-=Places|Home",
            f"-{H}-=Odd|a-b",
            f"-{H}+=Cat",
            f"-{H}+=Places|Home",
            f"-{H}+=Odd|a-b",
            f"-{T}-=Cat",
            f"-{T}+=Cat",
        ],
        {"AddedHierarchy": ["Cat", "Places|Home", "Odd|a-b"], "AddedTagsList": ["Cat"]},
    ),
    Row(
        "sync: entries the user has in both lists (AC/DC as AC-DC in TagsList) are not copied",
        holding([], ["Cat"])
        | {H: ["Music|AC/DC", "Cat"], T: ["Music/AC-DC", "Cat"], f"{PROVENANCE}Source": "cat.jpg"},
        synced("Cat"),
        [],
    ),
    Row(
        "sync: a re-run keeps the copies; nothing is written",
        holding([], ["Cat"])
        | {H: ["People|Mittens", "Cat"], T: ["Cat", "People/Mittens"]}
        | {f"{PROVENANCE}AddedTagsList": ["Cat", "People/Mittens"], f"{PROVENANCE}Source": "cat.jpg"},
        synced("Cat"),
        [],
    ),
    Row(
        "sync: a copy whose source the user deleted goes (no resurrection)",
        holding([], ["Cat"])
        | {T: ["Cat", "People/Mittens"], f"{PROVENANCE}AddedTagsList": ["Cat", "People/Mittens"]},
        synced("Cat"),
        [f"-{T}-=Cat", f"-{T}-=People/Mittens", f"-{T}+=Cat"],
        {"AddedTagsList": ["Cat"]},
    ),
    Row(
        "sync off: the user's entries are left as they are, earlier copies removed",
        holding([], ["Cat"])
        | {
            H: ["People|Mittens", "Cat"],
            T: ["Cat", "People/Mittens"],
            f"{PROVENANCE}AddedTagsList": ["Cat", "People/Mittens"],
        },
        keywords("Cat"),
        [f"-{T}-=Cat", f"-{T}-=People/Mittens", f"-{T}+=Cat"],
        {"AddedTagsList": ["Cat"]},
    ),
    Row(
        "sync: with nothing of phototag's to write, no copies (no sidecar just for them)",
        {H: ["People|Mittens"]},
        Desired(sync_user_hierarchy=True),
        [],
    ),
    Row(
        "sync untag: the copies go, the user's entries stay",
        holding([], ["Cat"])
        | {
            H: ["People|Mittens", "Cat"],
            T: ["Cat", "People/Mittens"],
            f"{PROVENANCE}AddedTagsList": ["Cat", "People/Mittens"],
        },
        Desired(),
        [f"-{S}-=Cat", f"-{H}-=Cat", f"-{T}-=Cat", f"-{T}-=People/Mittens"],
        CLEARED,
    ),
    # -- nothing to change ---------------------------------------------------------------------------------
    Row("nothing: an empty file and nothing wanted", {}, Desired(), []),
    Row(
        "nothing: the file already says what phototag wants (RunTime, Version aside)",
        holding(["Holiday"], ["Cat"])
        | {f"{PROVENANCE}Source": "cat.jpg", f"{PROVENANCE}RunTime": "2020-01-01"},
        keywords("Cat"),
        [],
    ),
    # -- captions ------------------------------------------------------------------------------------------
    Row(
        "caption keep: the user's caption stays and nothing is written",
        {DESC: "Our trip to Rome"},
        Desired(caption="a cat"),
        [],
    ),
    Row(
        "caption replace: the user's caption is overwritten",
        {DESC: "Our trip to Rome"},
        Desired(caption="a cat", caption_model="m@r"),
        [f"-{DESC}=a cat", f"-{TIFF}=a cat"],
        {"Caption": ["a cat"], "CaptionModel": ["m@r"]},
        opts={"caption_mode": "replace"},
    ),
    Row(
        "caption keep: phototag's own previous caption is replaced",
        {DESC: "a dog", TIFF: "a dog", f"{PROVENANCE}Caption": "a dog"},
        Desired(caption="a cat"),
        [f"-{DESC}=a cat", f"-{TIFF}=a cat"],
        {"Caption": ["a cat"]},
    ),
    Row(
        "caption keep: a camera placeholder is nobody's caption (embedded: IPTC and EXIF too)",
        {"IFD0:ImageDescription": "OLYMPUS DIGITAL CAMERA    "},
        Desired(caption="a cat"),
        [
            f"-{DESC}=a cat",
            f"-{TIFF}=a cat",
            "-IPTC:Caption-Abstract=a cat",
            "-EXIF:ImageDescription=a cat",
            "-IPTC:CodedCharacterSet=UTF8",
        ],
        {"Caption": ["a cat"]},
        target=EMBED,
    ),
    Row(
        "caption keep: the photo's own caption blocks phototag's in its sidecar",
        {},
        Desired(caption="a cat"),
        [],
        opts={"elsewhere_captions": ["Our trip to Rome"]},
    ),
    Row(
        "caption keep: a placeholder in the photo does not block the sidecar's caption",
        {},
        Desired(caption="a cat"),
        [f"-{DESC}=a cat", f"-{TIFF}=a cat"],
        {"Caption": ["a cat"]},
        opts={"elsewhere_captions": ["SONY DSC"]},
    ),
    Row(
        "caption keep: a user edit after phototag's caption stays; the unchanged copy stays recorded",
        {
            DESC: "Rome, by me",
            TIFF: "a dog",
            f"{PROVENANCE}Caption": "a dog",
            f"{PROVENANCE}Source": "cat.jpg",
        },
        Desired(caption="a cat"),
        [],
    ),
    Row(
        "caption: no caption any more takes back phototag's unchanged copies only",
        {DESC: "Rome, by me", TIFF: "a dog", f"{PROVENANCE}Caption": "a dog"},
        Desired(),
        [f"-{TIFF}="],
        CLEARED,
    ),
    # -- face regions (MWG) --------------------------------------------------------------------------------
    Row(
        "faces: an unknown face gets no Name (digiKam would make a person 'Face' of it), with dimensions",
        {},
        regions(FACE),
        [f"-{REGIONS}={{AppliedToDimensions={{W=640,H=480,Unit=pixel}},RegionList=[{{{UNNAMED_FACE}}}]}}"],
        {
            "Regions": [
                f"[{{Kind=face,Key={FACE_KEY.replace('|', '||')},Score=0.9700,Analyzer=detect,"
                f"Model={MODEL.id},Revision=rev-1}}]"
            ],
            "Fields": None,  # no PersonInImage
        },
    ),
    Row(
        "faces: a known person is the region's Name, goes to PersonInImage and People|<name>, recorded like keywords",
        {PERSON: ["Alan Turing"]},
        regions(GRACE),
        [
            "-XMP-dc:Subject-=Grace Hopper",
            "-XMP-dc:Subject+=Grace Hopper",
            "-XMP-lr:HierarchicalSubject-=People|Grace Hopper",
            "-XMP-lr:HierarchicalSubject+=People|Grace Hopper",
            "-XMP-digiKam:TagsList-=People/Grace Hopper",
            "-XMP-digiKam:TagsList+=People/Grace Hopper",
            f"-{REGIONS}={{AppliedToDimensions={{W=640,H=480,Unit=pixel}},RegionList=[{{{OTHER_AREA},"
            "Name=Grace Hopper,Type=Face}]}",
            f"-{PERSON}-=Grace Hopper",
            f"-{PERSON}+=Grace Hopper",
        ],
        {"Fields": [f"[{{Tag={PERSON},Value=Grace Hopper}}]"]},
    ),
    Row(
        "faces: a person the user listed first is not recorded; a VQA answer naming them is not added twice",
        {PERSON: ["Grace Hopper"]},
        replace(regions(GRACE), fields={PERSON: "Grace Hopper"}),
        [
            "-XMP-dc:Subject-=Grace Hopper",
            "-XMP-dc:Subject+=Grace Hopper",
            "-XMP-lr:HierarchicalSubject-=People|Grace Hopper",
            "-XMP-lr:HierarchicalSubject+=People|Grace Hopper",
            "-XMP-digiKam:TagsList-=People/Grace Hopper",
            "-XMP-digiKam:TagsList+=People/Grace Hopper",
            f"-{REGIONS}={{AppliedToDimensions={{W=640,H=480,Unit=pixel}},RegionList=[{{{OTHER_AREA},"
            "Name=Grace Hopper,Type=Face}]}",
        ],
        {"Fields": None},
    ),
    Row(
        "faces: a user's named region over the same face (IoU 0.9) gets no second box; nothing written",
        {
            REGIONS: {
                "AppliedToDimensions": DIMENSIONS,
                "RegionList": [
                    {"Area": area(0.26, 0.41, 0.29, 0.38), "Name": "Grace Hopper", "Type": "Face"}
                ],
            }
        },
        regions(FACE),
        [],
    ),
    Row(
        "faces: a loose user box around the face (IoU under 0.5, the centre inside) gets no second box",
        {
            REGIONS: {
                "RegionList": [{"Area": area(0.25, 0.42, 0.5, 0.6), "Name": "Grace Hopper", "Type": "Face"}]
            }
        },
        regions(FACE),
        [],
    ),
    Row(
        "faces: an unnamed region another program drew is the user's: not boxed twice, not removed",
        {REGIONS: {"RegionList": [{"Area": area(0.255, 0.4, 0.3, 0.41), "Type": "Face"}]}},
        regions(FACE),
        [],
    ),
    Row(
        "faces: a user's region of another type (Focus) does not hide a face",
        {REGIONS: {"RegionList": [{"Area": FACE_AREA, "Type": "Focus"}]}},
        regions(FACE),
        [
            f"-XMP-mwg-rs:RegionList+={{{UNNAMED_FACE}}}",
            "-XMP-mwg-rs:RegionAppliedToDimensionsW=640",
            "-XMP-mwg-rs:RegionAppliedToDimensionsH=480",
            "-XMP-mwg-rs:RegionAppliedToDimensionsUnit=pixel",
        ],
        {},
    ),
    Row(
        "faces: phototag's face after a digiKam round trip (whole pixels) is still its own: nothing written",
        {
            REGIONS: {
                "AppliedToDimensions": DIMENSIONS,
                "RegionList": [{"Area": rounded(FACE_AREA), "Type": "Face"}],
            },
            f"{PROVENANCE}Regions": [FACE_RECORD | {"Score": "0.9700", "Revision": "rev-1"}],
            f"{PROVENANCE}Source": "cat.jpg",
        },
        regions(FACE),
        [],
    ),
    Row(
        "faces: a face the user named (renamed from phototag's) stays theirs, is not boxed twice",
        {
            REGIONS: {
                "AppliedToDimensions": DIMENSIONS,
                "RegionList": [{"Area": rounded(FACE_AREA), "Name": "Grandma", "Type": "Face"}],
            },
            f"{PROVENANCE}Regions": [FACE_RECORD],
        },
        regions(FACE),
        [],
        CLEARED,
    ),
    Row(
        "faces: phototag's own face is replaced with the new one",
        {
            REGIONS: {"AppliedToDimensions": DIMENSIONS, "RegionList": [{"Area": FACE_AREA, "Type": "Face"}]},
            f"{PROVENANCE}Regions": [FACE_RECORD],
        },
        regions(OTHER_FACE),
        [
            f"-{REGIONS}={{AppliedToDimensions={{W=640,H=480,Unit=pixel}},RegionList=[{{{OTHER_AREA},"
            "Type=Face}]}"
        ],
        {},
    ),
    Row(
        "faces: next to a user's face, only phototag's is removed (not the whole RegionInfo)",
        {
            REGIONS: {
                "AppliedToDimensions": DIMENSIONS,
                "RegionList": [
                    {"Area": FACE_AREA | {"X": "0.9"}, "Name": "Grace Hopper", "Type": "Face"},
                    {"Area": FACE_AREA, "Type": "Face"},
                ],
            },
            f"{PROVENANCE}Regions": [FACE_RECORD],
        },
        Desired(),
        [f"-XMP-mwg-rs:RegionList-={{{UNNAMED_FACE}}}"],
        CLEARED,
    ),
    Row(
        "faces: next to a user's face, phototag's is added to the list, with dimensions where none were",
        {REGIONS: {"RegionList": [{"Area": FACE_AREA, "Name": "Grace Hopper", "Type": "Face"}]}},
        regions(FACE, OTHER_FACE),
        [
            f"-XMP-mwg-rs:RegionList+={{{OTHER_AREA},Type=Face}}",
            "-XMP-mwg-rs:RegionAppliedToDimensionsW=640",
            "-XMP-mwg-rs:RegionAppliedToDimensionsH=480",
            "-XMP-mwg-rs:RegionAppliedToDimensionsUnit=pixel",
        ],
        {},
    ),
    Row(
        "faces untag: phototag's rounded face goes; an unnamed box on top of it (not recorded) stays",
        {
            REGIONS: {
                "AppliedToDimensions": DIMENSIONS,
                "RegionList": [
                    {"Area": area(0.26, 0.4, 0.3, 0.4), "Type": "Face"},
                    {"Area": rounded(FACE_AREA), "Type": "Face"},
                ],
            },
            f"{PROVENANCE}Regions": [FACE_RECORD],
        },
        Desired(),
        [
            f"-XMP-mwg-rs:RegionList-={{Area={{{','.join(f'{k}={v}' for k, v in rounded(FACE_AREA).items())}}},"
            "Type=Face}"
        ],
        CLEARED,
    ),
    Row(
        "migration: phototag's old region named Face is replaced by an unnamed one",
        {
            REGIONS: {
                "AppliedToDimensions": DIMENSIONS,
                "RegionList": [{"Area": FACE_AREA, "Name": "Face", "Type": "Face"}],
            },
            f"{PROVENANCE}Regions": [OLD_FACE_RECORD],
        },
        regions(FACE),
        [f"-{REGIONS}={{AppliedToDimensions={{W=640,H=480,Unit=pixel}},RegionList=[{{{UNNAMED_FACE}}}]}}"],
        {
            "Regions": [
                f"[{{Kind=face,Key={FACE_KEY.replace('|', '||')},Score=0.9700,Analyzer=detect,"
                f"Model={MODEL.id},Revision=rev-1}}]"
            ]
        },
    ),
    Row(
        "migration: next to the user's named face, the old Face region goes and no box is added on theirs",
        {
            REGIONS: {
                "AppliedToDimensions": DIMENSIONS,
                "RegionList": [
                    {"Area": rounded(FACE_AREA), "Name": "Grace Hopper", "Type": "Face"},
                    {"Area": FACE_AREA, "Name": "Face", "Type": "Face"},
                ],
            },
            f"{PROVENANCE}Regions": [OLD_FACE_RECORD],
        },
        regions(FACE),
        [f"-XMP-mwg-rs:RegionList-={{{UNNAMED_FACE.replace('},Type', '},Name=Face,Type')}}}"],
        CLEARED,
    ),
    # -- object regions (IPTC) -----------------------------------------------------------------------------
    Row(
        "objects: phototag's phototag:N regions are replaced, the user's kept",
        {IMAGE_REGION: [USER_OBJECT, OUR_OBJECT]},
        regions(CAT_BOX),
        [
            f"-{IMAGE_REGION}-={{RId=phototag:1,Name=dog,RegionBoundary={{RbShape=rectangle,RbUnit=relative,"
            "RbX=0.5,RbY=0.5}}",
            f"-{IMAGE_REGION}+={CAT_OBJECT}",
        ],
        {
            "Regions": [
                "[{Kind=object,Name=cat,Key=phototag:1,Score=0.8800,Analyzer=detect,Model=test/detector,"
                "Revision=rev-1}]"
            ]
        },
    ),
    Row(
        "objects: with no user region the list is written whole",
        {IMAGE_REGION: OUR_OBJECT},  # exiftool reads a one-item list as the item
        regions(CAT_BOX),
        [f"-{IMAGE_REGION}=[{CAT_OBJECT}]"],
        {},
    ),
    Row(
        "objects: unchanged regions are not rewritten",
        {IMAGE_REGION: [USER_OBJECT, OUR_OBJECT]},
        Desired(objects=[OUR_OBJECT]),
        [],
    ),
    # -- answer fields -------------------------------------------------------------------------------------
    Row(
        "fields text: an empty field takes the answer, recorded in Fields",
        {},
        Desired(fields={HEADLINE: "a cat"}),
        [f"-{HEADLINE}=a cat"],
        {"Fields": [f"[{{Tag={HEADLINE},Value=a cat}}]"]},
        opts={"field_kinds": {HEADLINE: "text"}},
    ),
    Row(
        "fields text keep: the user's value stays",
        {HEADLINE: "Mine"},
        Desired(fields={HEADLINE: "a cat"}),
        [],
        opts={"field_kinds": {HEADLINE: "text"}},
    ),
    Row(
        "fields text replace: the user's value is overwritten",
        {HEADLINE: "Mine"},
        Desired(fields={HEADLINE: "a cat"}),
        [f"-{HEADLINE}=a cat"],
        {"Fields": [f"[{{Tag={HEADLINE},Value=a cat}}]"]},
        opts={"field_kinds": {HEADLINE: "text"}, "caption_mode": "replace"},
    ),
    Row(
        "fields text keep: a value in the photo's own XMP keeps its sidecar's field empty",
        {},
        Desired(fields={HEADLINE: "a cat"}),
        [],
        opts={"field_kinds": {HEADLINE: "text"}, "elsewhere_fields": {HEADLINE: "Mine"}},
    ),
    Row(
        "fields text: phototag's own earlier value is replaced",
        {HEADLINE: "a dog", f"{PROVENANCE}Fields": [{"Tag": HEADLINE, "Value": "a dog"}]},
        Desired(fields={HEADLINE: "a cat"}),
        [f"-{HEADLINE}=a cat"],
        {"Fields": [f"[{{Tag={HEADLINE},Value=a cat}}]"]},
    ),
    Row(
        "fields text: no answer any more removes phototag's unchanged value",
        {HEADLINE: "a dog", f"{PROVENANCE}Fields": [{"Tag": HEADLINE, "Value": "a dog"}]},
        Desired(),
        [f"-{HEADLINE}="],
        CLEARED,
    ),
    Row(
        "fields text: no answer any more leaves a value the user changed",
        {HEADLINE: "Mine now", f"{PROVENANCE}Fields": [{"Tag": HEADLINE, "Value": "a dog"}]},
        Desired(),
        [],
        CLEARED,
    ),
    Row(
        "fields lang-alt: only x-default is written, the other languages stay",
        {},
        Desired(fields={TITLE: "a cat"}),
        [f"-{TITLE}-x-default=a cat"],
        {"Fields": [f"[{{Tag={TITLE},Value=a cat}}]"]},
        opts={"field_kinds": {TITLE: "lang-alt"}},
    ),
    Row(
        "fields list: phototag's entry is added next to the user's, whatever caption_mode says",
        {PERSON: ["Alice"]},
        Desired(fields={PERSON: "a barista"}),
        [f"-{PERSON}-=a barista", f"-{PERSON}+=a barista"],
        {"Fields": [f"[{{Tag={PERSON},Value=a barista}}]"]},
        opts={"field_kinds": {PERSON: "list"}},
    ),
    Row(
        "fields list: an entry the user had first is not recorded",
        {PERSON: ["a barista"]},
        Desired(fields={PERSON: "a barista"}),
        [],
        opts={"field_kinds": {PERSON: "list"}},
    ),
    Row(
        "fields list: a re-run replaces phototag's entry",
        {PERSON: ["Alice", "a dog"], f"{PROVENANCE}Fields": [{"Tag": PERSON, "Value": "a dog"}]},
        Desired(fields={PERSON: "a cat"}),
        [f"-{PERSON}-=a dog", f"-{PERSON}-=a cat", f"-{PERSON}+=a cat"],
        {"Fields": [f"[{{Tag={PERSON},Value=a cat}}]"]},
        opts={"field_kinds": {PERSON: "list"}},
    ),
    Row(
        "fields list: without exiftool's word, a list read back is written as a list",
        {PERSON: ["Alice"]},
        Desired(fields={PERSON: "a cat"}),
        [f"-{PERSON}-=a cat", f"-{PERSON}+=a cat"],
        {"Fields": [f"[{{Tag={PERSON},Value=a cat}}]"]},
    ),
    Row(
        "fields: a tag phototag may not write is skipped",
        {},
        Desired(fields={"EXIF:Artist": "x", S: "Sneaky", f"{PROVENANCE}Caption": "forged"}),
        [],
    ),
    # -- untag (an empty Desired) --------------------------------------------------------------------------
    Row(
        "untag: removes exactly what was recorded",
        {
            **holding(["Holiday"], ["Cat"]),
            DESC: "a cat",
            TIFF: "a cat",
            HEADLINE: "a cat",
            IMAGE_REGION: [USER_OBJECT, OUR_OBJECT],
            f"{PROVENANCE}Caption": "a cat",
            f"{PROVENANCE}Fields": [{"Tag": HEADLINE, "Value": "a cat"}],
        },
        Desired(),
        [
            *lists("-=Cat"),
            f"-{DESC}=",
            f"-{TIFF}=",
            f"-{IMAGE_REGION}-={{RId=phototag:1,Name=dog,RegionBoundary={{RbShape=rectangle,RbUnit=relative,"
            "RbX=0.5,RbY=0.5}}",
            f"-{HEADLINE}=",
        ],
        CLEARED,
    ),
    Row(
        "untag: embedded, phototag's IPTC keywords go too",
        {
            S: ["Cat"],
            "IPTC:Keywords": ["Mine", "Cat"],
            f"{PROVENANCE}AddedSubject": "Cat",
            f"{PROVENANCE}AddedKeywords": "Cat",
        },
        Desired(),
        [f"-{S}-=Cat", "-IPTC:Keywords-=Cat", "-IPTC:CodedCharacterSet=UTF8"],
        CLEARED,
        target=EMBED,
    ),
    Row(
        "untag: a forged Fields record cannot point phototag at the user's keywords",
        {S: ["Holiday"], f"{PROVENANCE}Fields": [{"Tag": S, "Value": "Holiday"}]},
        Desired(),
        [],
        CLEARED,
    ),
    Row(
        "untag: a file phototag never wrote is left alone",
        holding(["Holiday"], []) | {DESC: "x"},
        Desired(),
        [],
    ),
]


def recorded_in(args: list[str]) -> dict[str, list[str]]:
    """phototag's namespace as the plan sets it: field -> values, one per argument (``all`` for the delete)."""
    out: dict[str, list[str]] = {}
    for arg in args:
        if arg.startswith(f"-{PROVENANCE}"):
            name, _, value = arg[len(PROVENANCE) + 1 :].partition("=")
            out.setdefault(name, []).append(value)
    return out


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_plan(row: Row) -> None:
    args = plan(row.target, row.cur, row.want, now=lambda: NOW, **row.opts)
    data = [a for a in args if not a.startswith(f"-{PROVENANCE}")]
    assert data == row.data
    assert args[: len(data)] == data  # the namespace's arguments come last
    recorded = recorded_in(args)
    if row.recorded == UNTOUCHED:
        assert recorded == {}
    elif row.recorded == CLEARED:
        assert recorded == {"all": [""]}
    else:
        assert isinstance(row.recorded, Mapping)
        assert recorded["all"] == [""]  # deleted, then every field set afresh
        assert recorded["RunTime"] == [NOW.isoformat(timespec="seconds")] and recorded["Version"]
        for name, values in row.recorded.items():
            assert recorded.get(name) == values, name


def test_rows_have_unique_ids() -> None:
    assert len({r.id for r in ROWS}) == len(ROWS)


# -- what a result asks for: keyword text, paths, flat ancestors, faces (desired_from) -------------------------


@dataclass(frozen=True)
class Wanted:
    id: str
    tags: tuple[Tag, ...]
    subject: list[str]
    hierarchy: list[str]
    tagslist: list[str]
    root: str = "AI"
    flat_ancestors: bool = False


WANTED = [
    Wanted(
        "the full path of each keyword only; the leaf alone in dc:subject",
        (Tag("Cat", 0.9, ("Animals", "Pets", "Cat")), Tag("Dog", 0.8, ("Animals", "Pets", "Dog"))),
        ["Cat", "Dog"],
        ["AI|Animals|Pets|Cat", "AI|Animals|Pets|Dog"],
        ["AI/Animals/Pets/Cat", "AI/Animals/Pets/Dog"],
    ),
    Wanted(
        "flat_ancestors: the ancestors below the root are flat keywords too, the root never",
        (Tag("Cat", 0.9, ("Animals", "Pets", "Cat")), Tag("Sofa", 0.8, ("Furniture", "Sofa"))),
        ["Cat", "Sofa", "Animals", "Pets", "Furniture"],
        ["AI|Animals|Pets|Cat", "AI|Furniture|Sofa"],
        ["AI/Animals/Pets/Cat", "AI/Furniture/Sofa"],
        flat_ancestors=True,
    ),
    Wanted(
        "flat_ancestors with a two-level root: no root level is a flat keyword",
        (Tag("Cat", 0.9, ("Animals", "Cat")),),
        ["Cat", "Animals"],
        ["Auto|phototag|Animals|Cat"],
        ["Auto/phototag/Animals/Cat"],
        root="Auto/phototag",
        flat_ancestors=True,
    ),
    Wanted(
        "no root: the path is the hierarchy",
        (Tag("Cat", 0.9, ("Animals", "Cat")), Tag("Dog", 0.9)),
        ["Cat", "Dog"],
        ["Animals|Cat", "Dog"],
        ["Animals/Cat", "Dog"],
        root="",
    ),
    Wanted(
        "commas never reach a keyword (darktable splits there): ', ' becomes ' - '",
        (Tag("Café, Paris", 0.9, ("Places", "Café, Paris")), Tag("castle, palace", 0.9), Tag("Cat,", 0.9)),
        ["Café - Paris", "castle - palace", "Cat"],
        ["AI|Places|Café - Paris", "AI|castle - palace", "AI|Cat"],
        ["AI/Places/Café - Paris", "AI/castle - palace", "AI/Cat"],
    ),
    Wanted(
        "'/' stays in dc:subject and lr:hierarchicalSubject (the leaf matches), becomes '-' in TagsList only",
        (Tag("AC/DC", 0.9, ("Music", "AC/DC")),),
        ["AC/DC"],
        ["AI|Music|AC/DC"],
        ["AI/Music/AC-DC"],
    ),
    Wanted(
        "'|' becomes '-' everywhere, dc:subject included (darktable reads '|' as a level)",
        (Tag("a|b", 0.9, ("x|y", "a|b")),),
        ["a-b"],
        ["AI|x-y|a-b"],
        ["AI/x-y/a-b"],
    ),
    Wanted(
        "non-ASCII and emoji pass unchanged; a keyword is one line",
        (
            Tag("Café 日本", 0.9),
            Tag("🐱 cat", 0.9),
            Tag("\U0001f469\u200d\U0001f467", 0.9),
            Tag("two\nlines", 0.9),
        ),
        ["Café 日本", "🐱 cat", "\U0001f469\u200d\U0001f467", "two lines"],
        ["AI|Café 日本", "AI|🐱 cat", "AI|\U0001f469\u200d\U0001f467", "AI|two lines"],
        ["AI/Café 日本", "AI/🐱 cat", "AI/\U0001f469\u200d\U0001f467", "AI/two lines"],
    ),
    Wanted(
        "a label empty after cleaning is dropped: an empty level goes, a keyword without a name goes",
        (Tag("Cat", 0.9, ("Animals", " , ", "Cat")), Tag(",,", 0.9), Tag("\x01", 0.9, ("Odd", "\x01"))),
        ["Cat"],
        ["AI|Animals|Cat"],
        ["AI/Animals/Cat"],
    ),
]


@pytest.mark.parametrize("row", WANTED, ids=[w.id for w in WANTED])
def test_desired_keywords(row: Wanted) -> None:
    run = AnalyzerRun("classify", "classify", MODEL, "fp", Analysis(tags=row.tags))
    result = PhotoResult(Photo(PHOTO, 1, 1, "hash"), 640, 480, (run,))
    want = desired_from(result, row.root, 0.0, flat_ancestors=row.flat_ancestors)
    assert (want.subject, want.hierarchy, want.tagslist) == (row.subject, row.hierarchy, row.tagslist)
    assert all("," not in k for k in [*want.subject, *want.hierarchy, *want.tagslist])
    assert [p["Path"] for p in want.tags_provenance] == row.hierarchy


@pytest.mark.parametrize(
    ("label", "name"),
    [("face", None), ("Face", None), (" FACE ", None), ("", None), ("Grace Hopper", "Grace Hopper")],
)
def test_only_a_person_names_a_face(label: str, name: str | None) -> None:
    want = regions(Region(label, 0.9, 0.1, 0.2, 0.3, 0.4, kind="face"))
    assert want.faces[0].get("Name") == name and want.faces[0]["Type"] == "Face"
    assert want.people == ([name] if name else [])
    assert want.regions_provenance[0].get("Name") == name


@pytest.mark.parametrize(
    ("other", "same"),
    [
        (FACE_AREA, True),
        (rounded(FACE_AREA), True),  # a digiKam round trip
        (area(0.26, 0.41, 0.29, 0.38), True),  # a user's box on the same face, IoU about 0.85
        (area(0.25, 0.42, 0.5, 0.6), True),  # a loose box: IoU 0.4, the detected face's centre inside it
        (area(0.25, 0.4, 0.08, 0.1), True),  # a tight box inside the detected one
        (area(0.6, 0.6, 0.2, 0.2), False),  # another face beside it
        (area(0.45, 0.4, 0.2, 0.3), False),  # touching, centres outside each other
    ],
)
def test_same_face_by_overlap(other: dict[str, str], same: bool) -> None:
    mine, theirs = face_box({"Area": FACE_AREA}), face_box({"Area": other})
    assert mine is not None and theirs is not None
    assert same_face(mine, theirs) == same


def test_phototags_own_region_is_recognised_after_rounding_to_whole_pixels() -> None:
    assert rounded(FACE_AREA) != FACE_AREA
    small = area(0.123457, 0.654321, 0.01234, 0.02345)  # 8 x 11 pixels: rounding costs more than 10% IoU
    for box in (FACE_AREA, area(0.6, 0.6, 0.2, 0.2), small):
        a, b = face_box({"Area": box}), face_box({"Area": rounded(box)})
        assert a is not None and b is not None and own_region(a, b, (640, 480))
        assert own_region(a, b) == (box is not small)  # without the image size: IoU alone
    a, b = face_box({"Area": FACE_AREA}), face_box({"Area": FACE_AREA | {"X": "0.29"}})  # 25 pixels off
    assert a is not None and b is not None and not own_region(a, b, (640, 480)) and iou(a, b) >= SAME_FACE_IOU
    assert OWN_REGION_IOU > SAME_FACE_IOU
