"""The XMP planner's ownership rules, table-driven: (what the file holds, what phototag wants, options) ->
exiftool arguments. Pure: no exiftool, no files (the paths in a Target are only data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from phototag.types import Analysis, AnalyzerRun, ModelInfo, Photo, PhotoResult, Region
from phototag.xmpdesired import Desired, desired_from, mwg_key
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
FACE = Region("face", 0.97, 0.10, 0.20, 0.30, 0.40, kind="face")
OTHER_FACE = Region("face", 0.90, 0.50, 0.50, 0.20, 0.20, kind="face")
CAT_BOX = Region("cat", 0.88, 0.05, 0.10, 0.60, 0.80)


def regions(*found: Region) -> Desired:
    """What a result with these regions (and nothing else) asks for: desired_from, as the writer calls it."""
    run = AnalyzerRun("detect", "detect", MODEL, "fp", Analysis(regions=found))
    return desired_from(PhotoResult(Photo(PHOTO, 1, 1, "hash"), 640, 480, (run,)), "", 0.0)


FACE_AREA = {"X": "0.250000", "Y": "0.400000", "W": "0.300000", "H": "0.400000", "Unit": "normalized"}
FACE_KEY = mwg_key({"Name": "face", "Area": FACE_AREA})
FACE_RECORD = {"Kind": "face", "Name": "face", "Key": FACE_KEY, "Analyzer": "detect", "Model": MODEL.id}
DIMENSIONS = {"W": "640", "H": "480", "Unit": "pixel"}
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
        "faces: a new face gets a RegionInfo with the image's dimensions",
        {},
        regions(FACE),
        [
            f"-{REGIONS}={{AppliedToDimensions={{W=640,H=480,Unit=pixel}},RegionList=[{{Area={{X=0.250000,"
            "Y=0.400000,W=0.300000,H=0.400000,Unit=normalized},Name=face,Type=Face}]}"
        ],
        {
            "Regions": [
                f"[{{Kind=face,Name=face,Key={FACE_KEY.replace('|', '||')},Score=0.9700,Analyzer=detect,"
                f"Model={MODEL.id},Revision=rev-1}}]"
            ]
        },
    ),
    Row(
        "faces: a face the user renamed stays, is not boxed twice, and phototag forgets it",
        {
            # digiKam's round trip changed the 7th decimal; the identity rounds to 6
            REGIONS: {
                "AppliedToDimensions": DIMENSIONS,
                "RegionList": [{"Area": FACE_AREA | {"X": "0.2500001"}, "Name": "Grandma", "Type": "Face"}],
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
            REGIONS: {"AppliedToDimensions": DIMENSIONS, "RegionList": [{"Area": FACE_AREA, "Name": "face"}]},
            f"{PROVENANCE}Regions": [FACE_RECORD],
        },
        regions(OTHER_FACE),
        [
            f"-{REGIONS}={{AppliedToDimensions={{W=640,H=480,Unit=pixel}},RegionList=[{{Area={{X=0.600000,"
            "Y=0.600000,W=0.200000,H=0.200000,Unit=normalized},Name=face,Type=Face}]}"
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
                    {"Area": FACE_AREA, "Name": "face", "Type": "Face"},
                ],
            },
            f"{PROVENANCE}Regions": [FACE_RECORD],
        },
        Desired(),
        [
            "-XMP-mwg-rs:RegionList-={Area={X=0.250000,Y=0.400000,W=0.300000,H=0.400000,Unit=normalized},"
            "Name=face,Type=Face}"
        ],
        CLEARED,
    ),
    Row(
        "faces: next to a user's face, phototag's is added to the list, with dimensions where none were",
        {REGIONS: {"RegionList": [{"Area": FACE_AREA, "Name": "Grace Hopper", "Type": "Face"}]}},
        regions(FACE, OTHER_FACE),
        [
            "-XMP-mwg-rs:RegionList+={Area={X=0.600000,Y=0.600000,W=0.200000,H=0.200000,Unit=normalized},"
            "Name=face,Type=Face}",
            "-XMP-mwg-rs:RegionAppliedToDimensionsW=640",
            "-XMP-mwg-rs:RegionAppliedToDimensionsH=480",
            "-XMP-mwg-rs:RegionAppliedToDimensionsUnit=pixel",
        ],
        {},
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
