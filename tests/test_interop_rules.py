"""What digiKam, darktable, Lightroom and Immich showed (issue 9), as real exiftool round trips through the real
XmpWriter, in sidecar and embed mode: unknown faces carry no Name, a face the user named is never boxed twice
(also after a digiKam round trip to whole pixels), the hierarchy lists hold full paths only and stay in sync
with the user's entries, generated keywords hold no comma, and sidecars of version 1 are corrected by a normal
write. The pure rules behind these are table-tested in test_xmp_plan.py."""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from exiv2_reader import exiv2_read
from phototag.config import Config
from phototag.exiftool import Exiftool, as_list
from phototag.plugins import xmp
from phototag.plugins.xmp import XmpWriter
from phototag.types import Analysis, AnalyzerRun, ModelInfo, Photo, PhotoResult, Region, Tag
from phototag.xmpdesired import Desired, desired_from, mwg_key
from phototag.xmpfields import clean_text

MODES = ["sidecar", "embed"]
MODEL = ModelInfo("test/interop", "rev-1")
S, H, T = "XMP-dc:Subject", "XMP-lr:HierarchicalSubject", "XMP-digiKam:TagsList"
REGIONS, PERSON = "XMP-mwg-rs:RegionInfo", "XMP-iptcExt:PersonInImage"


# -- helpers -------------------------------------------------------------------------------------------------


def analysed(photo: Path, *tags: Tag, regions: tuple[Region, ...] = ()) -> PhotoResult:
    with Image.open(photo) as im:
        width, height = im.size
    st = photo.stat()
    run = AnalyzerRun("detect", "detect", MODEL, "fp", Analysis(tags=tags, regions=regions))
    return PhotoResult(Photo(photo, st.st_size, st.st_mtime_ns, "hash"), width, height, (run,))


def shell(*args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args], check=True)


def target_of(photo: Path, mode: str) -> Path:
    """The file phototag writes for ``photo``: its sidecar, or the photo itself."""
    return photo.with_name(photo.name + ".xmp") if mode == "sidecar" else photo


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def faces(got: dict[str, Any]) -> list[dict[str, Any]]:
    return as_list((got.get(REGIONS) or {}).get("RegionList"))


def user_view(got: dict[str, Any]) -> dict[str, Any]:
    """Everything but phototag's namespace and exiftool's own bookkeeping."""
    return {k: v for k, v in got.items() if not k.startswith("XMP-phototag:") and k != "XMP-x:XMPToolkit"}


def mwg_area(left: int, top: int, width: int, height: int, size: tuple[int, int]) -> dict[str, str]:
    """A box in whole pixels as an MWG area, the way digiKam stores one (6 decimals, centre and size)."""
    w, h = size
    return {
        "X": f"{(left + width / 2) / w:.6f}",
        "Y": f"{(top + height / 2) / h:.6f}",
        "W": f"{width / w:.6f}",
        "H": f"{height / h:.6f}",
        "Unit": "normalized",
    }


def to_whole_pixels(region: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """``region`` after a digiKam round trip: its box in whole pixels, normalised again."""
    a = region["Area"]
    w, h = size
    x, y, bw, bh = (float(a[k]) for k in ("X", "Y", "W", "H"))
    pw, ph = round(bw * w), round(bh * h)
    left, top = round((x - bw / 2) * w), round((y - bh / 2) * h)
    return {**region, "Area": mwg_area(left, top, pw, ph, size)}


def struct(value: Any) -> str:
    """exiftool's serialized structure syntax (as the planner writes it)."""
    from phototag.exiftool import serialize_struct

    return serialize_struct(value)


@pytest.fixture
def make_writer(make_config: Callable[..., Config]) -> Iterator[Callable[..., XmpWriter]]:
    made: list[XmpWriter] = []

    def make(mode: str, **overrides: str) -> XmpWriter:
        writer = XmpWriter(make_config(metadata__mode=mode, **overrides))
        made.append(writer)
        return writer

    yield make
    for writer in made:
        writer.close()


# -- 1. faces: unknown faces have no name; known people are named ------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_unknown_faces_are_unnamed_and_no_person_face_appears(
    make_writer, photos: Path, reader: Exiftool, mode: str
) -> None:
    photo = photos / "astronaut.jpg"
    target = target_of(photo, mode)
    writer = make_writer(mode)
    found = (
        Region("Face", 0.93, 0.3012, 0.1507, 0.2503, 0.3011, kind="face"),  # the Haar detector's label
        Region("face", 0.81, 0.6003, 0.6001, 0.1002, 0.1004, kind="face"),
        Region("", 0.77, 0.0501, 0.0502, 0.1003, 0.1001, kind="face"),
    )
    writer.write(analysed(photo, Tag("Astronaut", 0.9, ("People", "Astronaut")), regions=found))
    got = reader.read_tags(target, "XMP:all", "IPTC:all")
    regions = faces(got)
    assert len(regions) == 3 and all("Name" not in r and r["Type"] == "Face" for r in regions)
    keywords = [*as_list(got.get(S)), *as_list(got.get(H)), *as_list(got.get(T))]
    keywords += as_list(got.get("IPTC:Keywords"))
    assert not [k for k in keywords if re.search(r"(^|[|/])face$", str(k), re.I)]
    assert PERSON not in got
    assert not [k for k in exiv2_read(target) if k.endswith("mwg-rs:Name")]  # the independent reader agrees

    writer.write(analysed(photo, Tag("Astronaut", 0.9, ("People", "Astronaut")), regions=found))
    writer.remove(photo)
    assert REGIONS not in reader.read_tags(target, "XMP:all") if target.exists() else True


@pytest.mark.parametrize("mode", MODES)
def test_a_known_person_is_named_and_listed_in_person_in_image(
    make_writer, photos: Path, reader: Exiftool, mode: str
) -> None:
    photo = photos / "grace_hopper.jpg"
    target = target_of(photo, mode)
    if mode == "sidecar":
        shell(f"-{PERSON}+=Alan Turing", str(target))
    else:
        shell(f"-{PERSON}+=Alan Turing", str(photo))
    before = user_view(reader.read_tags(target, "XMP:all"))
    writer = make_writer(mode)
    person = Region("Grace Hopper", 0.9, 0.3, 0.2, 0.4, 0.4, kind="face")  # from a people feature
    writer.write(analysed(photo, regions=(person,)))
    got = reader.read_tags(target, "XMP:all")
    assert [r.get("Name") for r in faces(got)] == ["Grace Hopper"]
    assert got[PERSON] == ["Alan Turing", "Grace Hopper"]
    assert exiv2_read(target)["Xmp.iptcExt.PersonInImage"] == ["Alan Turing", "Grace Hopper"]
    writer.remove(photo)
    assert user_view(reader.read_tags(target, "XMP:all")) == before


# -- 2. a face the user named (digiKam) is never boxed twice, before or after a round trip --------------------


@pytest.mark.parametrize("mode", MODES)
def test_digikam_named_face_gets_no_second_box_even_after_a_whole_pixel_round_trip(
    make_writer, photos: Path, reader: Exiftool, mode: str
) -> None:
    photo = photos / "grace_hopper.jpg"
    size = (512, 600)
    target = target_of(photo, mode)
    grace = {"Area": mwg_area(150, 100, 220, 260, size), "Name": "Grace Hopper", "Type": "Face"}
    dims = {"W": "512", "H": "600", "Unit": "pixel"}
    # what digiKam writes for a person the user confirmed: the region, the person tag in both hierarchy lists,
    # the leaf as a flat keyword, and Microsoft's region list
    shell(
        f"-{REGIONS}={struct({'AppliedToDimensions': dims, 'RegionList': [grace]})}",
        "-XMP-MP:RegionInfoMP={Regions=[{PersonDisplayName=Grace Hopper,Rectangle=0.292969|, 0.166667|, "
        "0.429688|, 0.433333}]}",
        f"-{T}+=People/Grace Hopper",
        f"-{H}+=People|Grace Hopper",
        f"-{S}+=Grace Hopper",
        str(target),
    )
    before = user_view(reader.read_tags(target, "XMP:all"))
    writer = make_writer(mode)
    detected = (
        # the detector's box on Grace's face: IoU with hers about 0.9, not the same numbers
        Region("Face", 0.95, 0.3021, 0.1807, 0.4093, 0.4118, kind="face"),
        Region("Face", 0.71, 0.0503, 0.7011, 0.1497, 0.1502, kind="face"),  # a face the user has not named
    )
    result = analysed(photo, Tag("Uniform", 0.8, ("Clothing", "Uniform")), regions=detected)
    writer.write(result)
    got = reader.read_tags(target, "XMP:all")
    regions = faces(got)
    assert [r.get("Name") for r in regions] == ["Grace Hopper", None]  # no second box on her face
    assert regions[0] == grace  # untouched
    assert [r["Kind"] for r in got["XMP-phototag:Regions"]] == ["face"]  # only the new one is phototag's
    assert got["XMP-MP:RegionInfoMP"] == before["XMP-MP:RegionInfoMP"]

    # digiKam saves the photo: every region in whole pixels (the 4th decimal of phototag's box changes)
    ours = to_whole_pixels(regions[1], size)
    assert ours["Area"] != regions[1]["Area"]
    shell(f"-{REGIONS}={struct({'AppliedToDimensions': dims, 'RegionList': [grace, ours]})}", str(target))
    saved = digest(target)
    writer.write(result)  # the same result again: phototag recognises its own face, nothing is written
    assert digest(target) == saved
    assert faces(reader.read_tags(target, "XMP:all")) == [grace, ours]

    writer.remove(photo)  # untag takes back exactly phototag's (rounded) region
    after = user_view(reader.read_tags(target, "XMP:all"))
    assert after == before


# -- 3. hierarchy lists: full paths, in sync with the user's (Lightroom, darktable, Immich) ------------------


@pytest.mark.parametrize("mode", MODES)
def test_lightroom_hierarchy_is_mirrored_to_tagslist_and_nothing_of_the_users_is_lost(
    make_writer, photos: Path, reader: Exiftool, mode: str
) -> None:
    photo = photos / "cat.jpg"
    target = target_of(photo, mode)
    # Lightroom / darktable: dc:subject and lr:hierarchicalSubject, no TagsList
    shell(
        f"-{S}+=Mittens", f"-{S}+=Home", f"-{S}+=AC/DC",
        f"-{H}+=People|Family|Mittens", f"-{H}+=Places|Home", f"-{H}+=Music|AC/DC",
        str(target),
    )  # fmt: skip
    before = user_view(reader.read_tags(target, "XMP:all"))
    writer = make_writer(mode)
    result = analysed(photo, Tag("Cat", 0.9, ("Animals", "Pets", "Cat")))
    writer.write(result)
    got = reader.read_tags(target, "XMP:all")
    assert got[S] == ["Mittens", "Home", "AC/DC", "Cat"]
    assert got[H] == ["People|Family|Mittens", "Places|Home", "Music|AC/DC", "AI|Animals|Pets|Cat"]
    assert got[T] == ["AI/Animals/Pets/Cat", "People/Family/Mittens", "Places/Home", "Music/AC-DC"]
    assert exiv2_read(target)["Xmp.digiKam.TagsList"] == got[T]
    saved = digest(target)
    writer.write(result)  # in sync: nothing to write
    assert digest(target) == saved

    # the user removes "Places|Home" in darktable (it writes lr:hierarchicalSubject and dc:subject only)
    shell(f"-{H}-=Places|Home", f"-{S}-=Home", str(target))
    writer.write(result)
    got = reader.read_tags(target, "XMP:all")
    assert "Places|Home" not in got[H]  # not brought back from TagsList
    assert got[T] == ["AI/Animals/Pets/Cat", "People/Family/Mittens", "Music/AC-DC"]

    writer.remove(photo)  # untag: the lists are exactly the user's again
    after = user_view(reader.read_tags(target, "XMP:all"))
    before[H].remove("Places|Home")
    before[S].remove("Home")
    assert after == before and T not in after


@pytest.mark.parametrize("mode", MODES)
def test_immich_tagslist_is_mirrored_to_the_hierarchy_and_sync_can_be_turned_off(
    make_writer, photos: Path, reader: Exiftool, mode: str
) -> None:
    photo = photos / "coffee.png"
    target = target_of(photo, mode)
    shell(f"-{T}+=Food/Drinks", f"-{T}+=Trips/2024", str(target))  # a TagsList-only hierarchy
    before = user_view(reader.read_tags(target, "XMP:all"))
    writer = make_writer(mode)
    result = analysed(photo, Tag("Espresso", 0.9, ("Food", "Espresso")))
    writer.write(result)
    got = reader.read_tags(target, "XMP:all")
    assert got[T] == ["Food/Drinks", "Trips/2024", "AI/Food/Espresso"]
    assert got[H] == ["AI|Food|Espresso", "Food|Drinks", "Trips|2024"]  # darktable sees the user's tags too

    make_writer(mode, metadata__sync_user_hierarchy="false").write(result)
    got = reader.read_tags(target, "XMP:all")
    assert got[H] == ["AI|Food|Espresso"] and got[T] == ["Food/Drinks", "Trips/2024", "AI/Food/Espresso"]
    writer.remove(photo)
    assert user_view(reader.read_tags(target, "XMP:all")) == before


# -- 4. keyword text: commas, separators, non-ASCII, emoji ----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_awkward_labels_are_written_without_commas_and_with_matching_leaves(
    make_writer, photos: Path, reader: Exiftool, mode: str
) -> None:
    photo = photos / "rocket.jpg"
    target = target_of(photo, mode)
    tags = (
        Tag("Café, Paris", 0.9, ("Places", "Café, Paris")),
        Tag("castle, palace", 0.9, ("Buildings", "castle, palace")),  # an ImageNet-style synonym list
        Tag("AC/DC", 0.9, ("Music", "AC/DC")),
        Tag("a|b", 0.9, ("Odd", "a|b")),
        Tag("日本", 0.9, ("Places", "日本")),
        Tag("🐱 cat", 0.9, ("Animals", "🐱 cat")),
        Tag("\U0001f469\u200d\U0001f467", 0.9, ("People", "\U0001f469\u200d\U0001f467")),
        Tag(" , ", 0.9),  # nothing left after cleaning: dropped
    )
    writer = make_writer(mode)
    writer.write(analysed(photo, *tags))
    got = reader.read_tags(target, "XMP:all", "IPTC:all")
    leaves = [
        "Café - Paris",
        "castle - palace",
        "AC/DC",
        "a-b",
        "日本",
        "🐱 cat",
        "\U0001f469\u200d\U0001f467",
    ]
    paths = ["Places", "Buildings", "Music", "Odd", "Places", "Animals", "People"]
    assert got[S] == leaves
    assert got[H] == [f"AI|{p}|{leaf}" for p, leaf in zip(paths, leaves, strict=True)]
    assert got[T] == [f"AI/{p}/{leaf.replace('/', '-')}" for p, leaf in zip(paths, leaves, strict=True)]
    assert [h.rsplit("|", 1)[1] for h in got[H]] == got[S]  # each leaf is its flat keyword
    lists = [*got[S], *got[H], *got[T], *as_list(got.get("IPTC:Keywords"))]
    assert not [k for k in lists if "," in str(k)]
    if mode == "embed":
        assert got["IPTC:Keywords"] == leaves
    independent = exiv2_read(target)
    assert (independent["Xmp.dc.subject"], independent["Xmp.lr.hierarchicalSubject"]) == (got[S], got[H])
    assert independent["Xmp.digiKam.TagsList"] == got[T]


@pytest.mark.parametrize("mode", MODES)
def test_flat_ancestors_setting(make_writer, photos: Path, reader: Exiftool, mode: str) -> None:
    photo = photos / "cat.jpg"
    make_writer(mode, metadata__flat_ancestors="true").write(
        analysed(photo, Tag("Cat", 0.9, ("Animals", "Pets", "Cat")))
    )
    got = reader.read_tags(target_of(photo, mode), "XMP:all")
    assert got[S] == ["Cat", "Animals", "Pets"]  # never the root "AI"
    assert got[H] == ["AI|Animals|Pets|Cat"]


# -- 5. migration: what version 1 wrote is corrected by a normal write ----------------------------------------


def desired_v1(result: PhotoResult, root: str, min_score: float, **_: Any) -> Desired:
    """What WRITER_VERSION 1 asked for: every ancestor as a hierarchy entry of its own (in both lists), and every
    face named by its label ("Face"), recorded under that name; no sync, no PersonInImage."""
    want = desired_from(result, root, min_score, sync_user_hierarchy=False)
    paths = [p["Path"].split("|") for p in want.tags_provenance]
    want.hierarchy = list(dict.fromkeys("|".join(p[: i + 1]) for p in paths for i in range(len(p))))
    want.tagslist = [h.replace("|", "/") for h in want.hierarchy]
    labels = [clean_text(r.label) for _, r in result.regions if r.kind == "face"]
    want.faces = [
        {"Area": f["Area"], "Name": n, "Type": "Face"} for f, n in zip(want.faces, labels, strict=True)
    ]
    records = iter(want.faces)
    for record in want.regions_provenance:
        if record["Kind"] == "face":
            face = next(records)
            record.update(Name=face["Name"], Key=mwg_key(face))
    want.people = []
    return want


@pytest.mark.parametrize("mode", MODES)
def test_a_version_1_file_is_migrated_by_a_normal_write_and_untag_stays_exact(
    make_writer, photos: Path, reader: Exiftool, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = photos / "grace_hopper.jpg"
    target = target_of(photo, mode)
    grandma = {"Area": mwg_area(10, 20, 60, 80, (512, 600)), "Name": "Grandma", "Type": "Face"}
    shell(
        f"-{S}+=Holiday",
        f"-{H}+=Places|Home",
        f"-{REGIONS}={struct({'AppliedToDimensions': {'W': 512, 'H': 600, 'Unit': 'pixel'}, 'RegionList': [grandma]})}",
        str(target),
    )
    before = user_view(reader.read_tags(target, "XMP:all"))
    result = analysed(
        photo,
        Tag("Uniform", 0.9, ("Clothing", "Uniform")),
        Tag("Medal", 0.8, ("Clothing", "Medal")),
        regions=(Region("Face", 0.95, 0.3021, 0.1807, 0.4093, 0.4118, kind="face"),),
    )
    monkeypatch.setattr(xmp, "desired_from", desired_v1)
    make_writer(mode).write(result)
    monkeypatch.undo()
    old = reader.read_tags(target, "XMP:all")
    assert old[H] == ["Places|Home", "AI", "AI|Clothing", "AI|Clothing|Uniform", "AI|Clothing|Medal"]
    assert [r.get("Name") for r in faces(old)] == ["Grandma", "Face"]

    writer = make_writer(mode)
    writer.write(result)  # the pipeline does this once, when the writer's fingerprint changed
    got = reader.read_tags(target, "XMP:all")
    assert got[S] == ["Holiday", "Uniform", "Medal"]
    # the user's flat "Holiday" is the leaf of no hierarchy entry: mirrored into both lists (darktable, digiKam)
    assert got[H] == ["Places|Home", "AI|Clothing|Uniform", "AI|Clothing|Medal", "Holiday"]
    assert got[T] == ["AI/Clothing/Uniform", "AI/Clothing/Medal", "Places/Home", "Holiday"]
    assert faces(got)[0] == grandma and [r.get("Name") for r in faces(got)] == ["Grandma", None]
    assert not [k for k in [*got[S], *got[H], *got[T]] if k in ("AI", "Face") or k.endswith("Face")]
    saved = digest(target)
    writer.write(result)
    assert digest(target) == saved  # migrated once; then stable

    writer.remove(photo)
    assert user_view(reader.read_tags(target, "XMP:all")) == before
