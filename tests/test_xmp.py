"""The XMP writer plugin: real exiftool, real photos, read back by exiftool and by exiv2 (independent)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from exiv2_reader import exiv2_read
from phototag import xmpdesired, xmpfields, xmpplan
from phototag.config import Config
from phototag.errors import ExiftoolTimeout, MetadataError
from phototag.exiftool import Exiftool
from phototag.manager import collect, get_plugin_manager
from phototag.plugins import xmp
from phototag.plugins.xmp import sidecar_path
from phototag.types import Analysis, AnalyzerRun, Answer, ModelInfo, Photo, PhotoResult, Region, Tag, Writer
from phototag.xmpdesired import Desired, desired_from
from phototag.xmpplan import Target, plan
from test_exiftool import alive
from waiting import wait_for

MODEL = ModelInfo("test/classifier", "rev-1")


# -- helpers -------------------------------------------------------------------------------------------------


def run(
    *tags: Tag, regions: tuple[Region, ...] = (), caption: str | None = None, analyzer: str = "classify"
) -> AnalyzerRun:
    analysis = Analysis(tags=tags, regions=regions, caption=caption)
    return AnalyzerRun(analyzer, "classify", MODEL, "fp", analysis)


def result(photo: Path, *runs: AnalyzerRun) -> PhotoResult:
    with Image.open(photo) as im:
        width, height = im.size
    st = photo.stat()
    return PhotoResult(Photo(photo, st.st_size, st.st_mtime_ns, "hash"), width, height, runs)


FACE = Region("face", 0.97, 0.10, 0.20, 0.30, 0.40, kind="face")
CAT_BOX = Region("cat", 0.88, 0.05, 0.10, 0.60, 0.80)


def result_a(photo: Path) -> PhotoResult:
    return result(
        photo,
        run(
            Tag("Cat", 0.91, ("Animals", "Cat")),
            Tag("Dog", 0.40, ("Animals", "Dog")),
            regions=(FACE, CAT_BOX),
        ),
        run(caption="a cat sitting on a mat", analyzer="caption"),
    )


def result_b(photo: Path) -> PhotoResult:
    return result(
        photo,
        run(Tag("Cat", 0.95, ("Animals", "Cat")), Tag("Sofa", 0.60, ("Furniture", "Sofa"))),
        run(caption="a cat on a sofa", analyzer="caption"),
    )


def pixels(path: Path) -> str:
    with Image.open(path) as im:
        im.load()
        return hashlib.sha256(f"{im.mode}{im.size}".encode() + im.tobytes()).hexdigest()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def without_runtime(data: bytes) -> bytes:
    return b"\n".join(line for line in data.split(b"\n") if b"RunTime" not in line)


def shell(*args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args], check=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` refuse new files, even for root (immutable attribute); skip where impossible."""
    as_root = os.geteuid() == 0
    if as_root:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
            pytest.skip("running as root without chattr/CAP_LINUX_IMMUTABLE: cannot make a read-only folder")
    else:
        folder.chmod(0o555)
    try:
        probe = folder / ".probe"
        try:
            probe.write_bytes(b"")
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("this file system ignores the read-only setting")
        yield
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


# -- plugin registration -------------------------------------------------------------------------------------


def test_hook_registers_the_writer_only_when_enabled(make_config: Callable[..., Config]) -> None:
    pm, _ = get_plugin_manager(environ={"PHOTOTAG_PLUGINS": "xmp"})
    errors: list[tuple[str, Exception]] = []

    def on_error(name: str, error: Exception) -> None:
        errors.append((name, error))

    got = collect(pm, "register_writers", on_error, config=make_config())
    assert [(name, type(obj).__name__, obj.name) for name, obj in got] == [("xmp", "XmpWriter", "xmp")]
    assert isinstance(got[0][1], Writer) and not errors
    assert got[0][1].exiftool.pid is None  # registering is cheap: exiftool starts on the first write
    got[0][1].close()
    assert collect(pm, "register_writers", on_error, config=make_config(metadata__xmp="false")) == []


def test_names_other_modules_import_from_the_writer_are_still_there() -> None:
    assert (xmp.Desired, xmp.desired_from, xmp.mwg_face, xmp.mwg_key) == (
        xmpdesired.Desired,
        xmpdesired.desired_from,
        xmpdesired.mwg_face,
        xmpdesired.mwg_key,
    )
    assert (xmp.Target, xmp.plan) == (xmpplan.Target, xmpplan.plan)
    assert (xmp.xmp_field_problem, xmp.is_user_caption, xmp.FieldKind) == (
        xmpfields.xmp_field_problem,
        xmpfields.is_user_caption,
        xmpfields.FieldKind,
    )
    assert all(hasattr(xmp, name) for name in xmp.__all__)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("mode", "embed"),
        ("sidecar_name", "replace"),
        ("keyword_root", "Auto"),
        ("caption", "replace"),
        ("min_score", "0.5"),
        ("write_read_only", "true"),
        ("flat_ancestors", "true"),
        ("sync_user_hierarchy", "false"),
    ],
)
def test_fingerprint_changes_with_each_setting_that_changes_what_is_written(
    make_writer, setting: str, value: str
) -> None:
    base = make_writer().fingerprint()
    assert make_writer().fingerprint() == base
    assert make_writer(**{f"metadata__{setting}": value}).fingerprint() != base


def test_fingerprint_ignores_settings_that_do_not_change_what_is_written(make_writer) -> None:
    base = make_writer().fingerprint()
    assert make_writer(metadata__json_sidecar="false", exiftool__timeout="5").fingerprint() == base


# -- sidecar mode --------------------------------------------------------------------------------------------


def test_sidecar_fields_read_back_by_exiftool_and_exiv2(make_writer, photos: Path, reader: Exiftool) -> None:
    photo = photos / "cat.jpg"
    before = digest(photo)
    writer = make_writer()
    writer.write(result_a(photo))
    side = photos / "cat.jpg.xmp"
    assert side.is_file() and digest(photo) == before  # the photo itself is untouched
    assert not list(photos.glob(".*"))  # no temp file left

    got = reader.read_tags(side)
    assert got["XMP-dc:Subject"] == ["Cat", "Dog"]
    hierarchy = ["AI|Animals|Cat", "AI|Animals|Dog"]  # the full path of each keyword only, no ancestors
    assert got["XMP-lr:HierarchicalSubject"] == hierarchy
    assert got["XMP-digiKam:TagsList"] == [h.replace("|", "/") for h in hierarchy]
    assert got["XMP-dc:Description"] == got["XMP-tiff:ImageDescription"] == "a cat sitting on a mat"
    with Image.open(photo) as im:
        width, height = im.size
    assert got["XMP-mwg-rs:RegionInfo"] == {
        "AppliedToDimensions": {"W": str(width), "H": str(height), "Unit": "pixel"},
        "RegionList": [
            {
                "Area": {
                    "X": "0.250000",
                    "Y": "0.400000",
                    "W": "0.300000",
                    "H": "0.400000",
                    "Unit": "normalized",
                },
                "Type": "Face",  # an unknown face: no Name (digiKam would make a person "face" of one)
            }
        ],
    }
    (region,) = got["XMP-iptcExt:ImageRegion"]
    assert region["Name"] == "cat" and region["RId"] == "phototag:1"
    assert region["RegionBoundary"] == {
        "RbShape": "Rectangle",
        "RbUnit": "Relative",
        "RbX": "0.050000",
        "RbY": "0.100000",
        "RbW": "0.600000",
        "RbH": "0.800000",
    }
    assert got["XMP-phototag:AddedSubject"] == ["Cat", "Dog"]
    assert got["XMP-phototag:Caption"] == "a cat sitting on a mat"
    assert got["XMP-phototag:Source"] == "cat.jpg"
    assert got["XMP-phototag:Tags"][0] == {
        "Name": "Cat",
        "Path": "AI|Animals|Cat",
        "Score": "0.9100",
        "Analyzer": "classify",
        "Model": "test/classifier",
        "Revision": "rev-1",
    }
    assert [r["Kind"] for r in got["XMP-phototag:Regions"]] == ["face", "object"]

    independent = exiv2_read(side)
    assert independent["Xmp.dc.subject"] == ["Cat", "Dog"]
    assert independent["Xmp.lr.hierarchicalSubject"] == hierarchy
    assert independent["Xmp.digiKam.TagsList"] == [h.replace("|", "/") for h in hierarchy]
    assert independent["Xmp.dc.description"] == "a cat sitting on a mat"
    assert independent["Xmp.tiff.ImageDescription"] == "a cat sitting on a mat"
    assert independent["Xmp.mwg-rs.Regions/mwg-rs:RegionList[1]/mwg-rs:Type"] == "Face"
    assert independent["Xmp.mwg-rs.Regions/mwg-rs:RegionList[1]/mwg-rs:Area/stArea:x"] == "0.250000"
    assert independent["Xmp.iptcExt.ImageRegion[1]/Iptc4xmpExt:rId"] == "phototag:1"
    assert independent["Xmp.phototag.AddedSubject"] == ["Cat", "Dog"]


def test_rerun_is_idempotent_and_replaces_exactly(make_writer, photos: Path, reader: Exiftool) -> None:
    photo = photos / "cat.jpg"
    writer = make_writer()
    side = photos / "cat.jpg.xmp"
    writer.write(result_a(photo))
    first = side.read_bytes()
    mtime = side.stat().st_mtime_ns

    writer.write(result_a(photo))  # nothing changed: nothing written
    assert side.read_bytes() == first and side.stat().st_mtime_ns == mtime

    writer.write(result_b(photo))
    got = reader.read_tags(side)
    assert got["XMP-dc:Subject"] == ["Cat", "Sofa"]
    assert got["XMP-lr:HierarchicalSubject"] == ["AI|Animals|Cat", "AI|Furniture|Sofa"]
    assert got["XMP-dc:Description"] == "a cat on a sofa"
    assert "XMP-mwg-rs:RegionInfo" not in got and "XMP-iptcExt:ImageRegion" not in got

    writer.write(result_a(photo))  # back to A: the same file as the first time, apart from the run time
    assert without_runtime(side.read_bytes()) == without_runtime(first)


def test_user_keywords_caption_and_regions_in_the_photo_survive(
    make_writer, photos: Path, reader: Exiftool
) -> None:
    photo = photos / "cat.jpg"
    shell(
        "-XMP-dc:Subject+=Cat",
        "-XMP-dc:Subject+=Holiday",
        "-XMP-lr:HierarchicalSubject+=Places|Home",
        "-XMP-dc:Description=Chelsea, my cat",
        "-XMP-mwg-rs:RegionInfo={AppliedToDimensions={W=451,H=300,Unit=pixel},"
        "RegionList=[{Area={X=0.8,Y=0.8,W=0.1,H=0.1,Unit=normalized},Name=Grandma,Type=Face}]}",
        str(photo),
    )
    writer = make_writer()
    writer.write(result_a(photo))
    side = photos / "cat.jpg.xmp"
    got = reader.read_tags(side)
    # the new sidecar starts from the photo's own XMP, so sidecar-only readers keep the user's metadata
    assert got["XMP-dc:Subject"] == ["Cat", "Holiday", "Dog"]
    assert got["XMP-phototag:AddedSubject"] == ["Dog"]  # "Cat" was the user's before phototag came
    assert got["XMP-lr:HierarchicalSubject"][0] == "Places|Home"
    # the user's hierarchy mirrored for digiKam, and the user's flat Holiday given an entry of its own
    assert got["XMP-digiKam:TagsList"][-2:] == ["Places/Home", "Holiday"]
    assert got["XMP-dc:Description"] == "Chelsea, my cat"  # caption: keep
    assert "XMP-phototag:Caption" not in got
    names = [r.get("Name") for r in got["XMP-mwg-rs:RegionInfo"]["RegionList"]]
    assert names == ["Grandma", None]

    writer.write(result_b(photo))
    writer.write(result_a(photo))
    got = reader.read_tags(side)
    assert got["XMP-dc:Subject"] == ["Cat", "Holiday", "Dog"]
    assert [r.get("Name") for r in got["XMP-mwg-rs:RegionInfo"]["RegionList"]] == ["Grandma", None]

    writer.remove(photo)
    got = reader.read_tags(side)
    assert got["XMP-dc:Subject"] == ["Cat", "Holiday"]  # the user's identical "Cat" stays
    assert got["XMP-lr:HierarchicalSubject"] == ["Places|Home"]
    assert "XMP-digiKam:TagsList" not in got
    assert got["XMP-dc:Description"] == "Chelsea, my cat"
    assert [r["Name"] for r in got["XMP-mwg-rs:RegionInfo"]["RegionList"]] == ["Grandma"]
    assert not [k for k in got if k.startswith("XMP-phototag:")]
    assert not [k for k in got if k.startswith("XMP-iptcExt:")]


def test_a_face_the_user_named_becomes_theirs(make_writer, photos: Path, reader: Exiftool) -> None:
    photo = photos / "cat.jpg"
    side = photos / "cat.jpg.xmp"
    writer = make_writer()
    writer.write(result_a(photo))
    # the user names the face phototag found, as digiKam does when a person is assigned
    area = "Area={X=0.250000,Y=0.400000,W=0.300000,H=0.400000,Unit=normalized}"
    shell(
        f"-XMP-mwg-rs:RegionList-={{{area},Type=Face}}",
        f"-XMP-mwg-rs:RegionList+={{{area},Name=Grandma,Type=Face}}",
        str(side),
    )
    writer.write(result_a(photo))
    got = reader.read_tags(side)
    assert [r["Name"] for r in got["XMP-mwg-rs:RegionInfo"]["RegionList"]] == ["Grandma"]  # no second box
    assert [r["Kind"] for r in got["XMP-phototag:Regions"]] == ["object"]
    writer.remove(photo)
    assert [r["Name"] for r in reader.read_tags(side)["XMP-mwg-rs:RegionInfo"]["RegionList"]] == ["Grandma"]


def test_plan_is_pure_and_keeps_what_the_user_had(photos: Path) -> None:
    target = Target(photos / "cat.jpg.xmp", photos / "cat.jpg", sidecar=True)
    assert plan(target, {}, Desired()) == []  # nothing to say, nothing recorded: no write at all
    want = desired_from(result(photos / "cat.jpg", run(Tag("Cat", 0.9), Tag("Dog", 0.8))), "AI", 0.0)
    current = {"XMP-dc:Subject": ["Cat", "Mine"], "XMP-phototag:AddedSubject": ["Old"]}
    fixed = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    args = plan(target, current, want, now=lambda: fixed)
    assert [a for a in args if a.startswith("-XMP-dc:Subject")] == [
        "-XMP-dc:Subject-=Old",
        "-XMP-dc:Subject-=Dog",
        "-XMP-dc:Subject+=Dog",
    ]  # the user's "Cat" is neither removed nor added again
    assert "-XMP-phototag:AddedSubject=Dog" in args
    assert "-XMP-phototag:RunTime=2024-01-02T03:04:05+00:00" in args


def test_existing_sidecar_is_merged_not_replaced(make_writer, photos: Path, reader: Exiftool) -> None:
    photo = photos / "coffee.png"
    side = photos / "coffee.png.xmp"
    shell("-XMP-dc:Subject+=Breakfast", "-XMP-xmp:Rating=4", "-XMP-digiKam:TagsList+=Food/Drinks", str(side))
    writer = make_writer()
    writer.write(result_a(photo))
    got = reader.read_tags(side, "XMP:all")
    assert got["XMP-dc:Subject"] == ["Breakfast", "Cat", "Dog"]
    assert got["XMP-xmp:Rating"] == "4"
    assert got["XMP-digiKam:TagsList"][0] == "Food/Drinks"
    assert exiv2_read(side)["Xmp.dc.subject"] == ["Breakfast", "Cat", "Dog"]

    writer.remove(photo)
    got = reader.read_tags(side, "XMP:all")
    assert got["XMP-dc:Subject"] == ["Breakfast"]
    assert got["XMP-digiKam:TagsList"] == ["Food/Drinks"]
    assert got["XMP-xmp:Rating"] == "4"


def test_untag_deletes_a_sidecar_left_empty(make_writer, photos: Path) -> None:
    photo = photos / "coffee.png"  # no XMP of its own: the sidecar holds only phototag's data
    writer = make_writer()
    writer.write(result_a(photo))
    assert (photos / "coffee.png.xmp").is_file()
    writer.remove(photo)
    assert not (photos / "coffee.png.xmp").exists()
    writer.remove(photo)  # nothing left to do: no error


def test_nothing_to_write_creates_no_sidecar(make_writer, photos: Path) -> None:
    writer = make_writer(metadata__min_score="0.99")
    writer.write(result(photos / "cat.jpg", run()))  # nothing found at all
    writer.write(result(photos / "rocket.jpg", run(Tag("Rocket", 0.5))))
    assert not list(photos.glob("*.xmp"))


def test_min_score_filters_keywords_and_regions(make_writer, photos: Path, reader: Exiftool) -> None:
    writer = make_writer(metadata__min_score="0.5")
    photo = photos / "cat.jpg"
    writer.write(result_a(photo))
    got = reader.read_tags(photos / "cat.jpg.xmp")
    assert got["XMP-dc:Subject"] == ["Cat"]
    assert "AI|Animals|Dog" not in got["XMP-lr:HierarchicalSubject"]
    assert len(got["XMP-mwg-rs:RegionInfo"]["RegionList"]) == 1


def test_keyword_root_and_awkward_names(make_writer, photos: Path, reader: Exiftool) -> None:
    writer = make_writer(metadata__keyword_root="Auto|phototag")
    photo = photos / "cat.jpg"
    names = ["AC/DC", "a|b", "-dash", "#hash", 'say "hi"', "Café 日本"]
    writer.write(result(photo, run(*(Tag(n, 0.9) for n in names))))
    got = reader.read_tags(photos / "cat.jpg.xmp")
    written = ["AC/DC", "a-b", "-dash", "#hash", 'say "hi"', "Café 日本"]  # "|" is a hierarchy separator
    assert got["XMP-dc:Subject"] == written
    assert "Auto|phototag|AC/DC" in got["XMP-lr:HierarchicalSubject"]  # "/" is no separator there
    assert "Auto/phototag/AC-DC" in got["XMP-digiKam:TagsList"]
    assert "Auto/phototag/a-b" in got["XMP-digiKam:TagsList"]
    assert "Auto|phototag|Café 日本" in got["XMP-lr:HierarchicalSubject"]
    assert exiv2_read(photos / "cat.jpg.xmp")["Xmp.dc.subject"] == written


def test_caption_injection_is_impossible(make_writer, photos: Path, reader: Exiftool) -> None:
    photo = photos / "cat.jpg"
    caption = 'a dog\n-XMP-dc:Rights=X\n#comment "quoted" $HOME @x -end'
    make_writer(metadata__mode="embed").write(result(photo, run(caption=caption)))
    got = reader.read_tags(photo, "XMP:all", "IPTC:all", "EXIF:all")
    assert "XMP-dc:Rights" not in got
    assert got["XMP-dc:Description"] == caption
    assert got["IFD0:ImageDescription"] == caption
    independent = exiv2_read(photo)
    assert independent["Xmp.dc.description"] == caption
    assert "Xmp.dc.rights" not in independent


def test_caption_keep_and_replace(make_writer, photos: Path, reader: Exiftool) -> None:
    photo = photos / "cat.jpg"
    side = photos / "cat.jpg.xmp"
    keep = make_writer()
    keep.write(result(photo, run(caption="first")))
    keep.write(result(photo, run(caption="second")))  # phototag's own caption is replaced
    assert reader.read_tags(side, "XMP-dc:Description") == {"XMP-dc:Description": "second"}
    shell("-XMP-dc:Description=written by the user", str(side))
    keep.write(result(photo, run(caption="third")))
    got = reader.read_tags(side)
    assert got["XMP-dc:Description"] == "written by the user"
    assert got["XMP-tiff:ImageDescription"] == "second"  # phototag's old copy stays recorded ...
    keep.remove(photo)
    got = reader.read_tags(side)
    assert got["XMP-dc:Description"] == "written by the user"
    assert "XMP-tiff:ImageDescription" not in got  # ... so untag still finds it

    replace = make_writer(metadata__caption="replace")
    replace.write(result(photo, run(caption="fourth")))
    assert reader.read_tags(side, "XMP-dc:Description") == {"XMP-dc:Description": "fourth"}


def test_embedded_user_caption_blocks_a_sidecar_caption_in_keep_mode(make_writer, photos: Path) -> None:
    photo = photos / "cat.jpg"
    shell("-EXIF:ImageDescription=From the camera owner", str(photo))
    make_writer().write(result(photo, run(Tag("Cat", 0.9), caption="a cat")))
    got = exiv2_read(photos / "cat.jpg.xmp")
    # the user's EXIF caption is seeded into the new sidecar (MWG rules); phototag's caption is kept out
    assert got["Xmp.dc.description"] == "From the camera owner" and "Xmp.phototag.Caption" not in got
    assert got["Xmp.dc.subject"] == ["Cat"]


def test_camera_placeholder_caption_does_not_block_a_real_one(make_writer, photos: Path) -> None:
    photo = photos / "cat.jpg"
    shell("-EXIF:ImageDescription=OLYMPUS DIGITAL CAMERA         ", str(photo))
    make_writer().write(result(photo, run(Tag("Cat", 0.9), caption="a cat on a sofa")))
    assert exiv2_read(photos / "cat.jpg.xmp")["Xmp.dc.description"] == "a cat on a sofa"


# -- replace naming and collisions ---------------------------------------------------------------------------


def test_sidecar_name_collisions(photos: Path) -> None:
    jpg = photos / "cat.jpg"
    assert sidecar_path(jpg, "append") == photos / "cat.jpg.xmp"
    assert sidecar_path(jpg, "replace") == photos / "cat.xmp"
    png = photos / "cat.png"
    shutil.copyfile(photos / "coffee.png", png)
    # JPEG + PNG of one stem: the first name owns cat.xmp, the other falls back to append naming
    assert sidecar_path(jpg, "replace") == photos / "cat.xmp"
    assert sidecar_path(png, "replace") == photos / "cat.png.xmp"
    (photos / "cat.CR2").write_bytes(b"raw")  # a RAW of the same stem owns it
    assert sidecar_path(photos / "cat.CR2", "replace") == photos / "cat.xmp"
    assert sidecar_path(jpg, "replace") == photos / "cat.jpg.xmp"


def test_replace_naming_writes_photo_xmp_and_untag_respects_the_owner(
    make_writer, photos: Path, reader: Exiftool
) -> None:
    writer = make_writer(metadata__sidecar_name="replace")
    jpg, png = photos / "cat.jpg", photos / "cat.png"
    shutil.copyfile(photos / "coffee.png", png)
    writer.write(result_a(jpg))
    writer.write(result_b(png))
    assert reader.read_tags(photos / "cat.xmp", "XMP-phototag:Source") == {"XMP-phototag:Source": "cat.jpg"}
    assert reader.read_tags(photos / "cat.png.xmp", "XMP-dc:Subject") == {"XMP-dc:Subject": ["Cat", "Sofa"]}
    writer.remove(png)
    assert reader.read_tags(photos / "cat.xmp", "XMP-dc:Subject") == {"XMP-dc:Subject": ["Cat", "Dog"]}
    assert not (photos / "cat.png.xmp").exists()


# -- embed mode ----------------------------------------------------------------------------------------------


def test_embed_jpeg_writes_xmp_iptc_exif(make_writer, photos: Path, reader: Exiftool) -> None:
    photo = photos / "cat.jpg"
    make_writer(metadata__mode="embed").write(result_a(photo))
    assert not (photos / "cat.jpg.xmp").exists() and not list(photos.glob("*_original"))
    independent = exiv2_read(photo)
    assert independent["Xmp.dc.subject"] == ["Cat", "Dog"]
    assert independent["Iptc.Application2.Keywords"] == ["Cat", "Dog"]
    assert independent["Iptc.Application2.Caption"] == ["a cat sitting on a mat"]
    assert independent["Exif.Image.ImageDescription"] == "a cat sitting on a mat"
    assert reader.read_tags(photo, "IPTC:CodedCharacterSet") == {"IPTC:CodedCharacterSet": "UTF8"}


def test_embed_keeps_users_iptc_and_converts_its_charset(make_writer, photos: Path, reader: Exiftool) -> None:
    photo = photos / "cat.jpg"
    # a Latin-1 IPTC record without CodedCharacterSet, as older software writes it
    subprocess.run(
        [
            "exiftool",
            "-q",
            "-overwrite_original",
            "-charset",
            "iptc=Latin",
            "-IPTC:Keywords=Café",
            str(photo),
        ],
        check=True,
    )
    shell("-XMP-dc:Subject+=Cat", "-XMP-dc:Subject+=Holiday", str(photo))  # and the user's own XMP keywords
    writer = make_writer(metadata__mode="embed")
    writer.write(result(photo, run(Tag("Cat", 0.9), Tag("Sofa", 0.8))))
    independent = exiv2_read(photo)
    assert independent["Iptc.Application2.Keywords"] == ["Café", "Cat", "Sofa"]
    assert independent["Xmp.dc.subject"] == ["Cat", "Holiday", "Sofa"]
    assert independent["Xmp.phototag.AddedSubject"] == ["Sofa"]
    assert independent["Xmp.phototag.AddedKeywords"] == ["Cat", "Sofa"]
    writer.write(result(photo, run(Tag("Cat", 0.9), Tag("Sofa", 0.8))))
    writer.remove(photo)
    assert reader.read_tags(photo, "IPTC:Keywords", "XMP-dc:Subject") == {
        "IPTC:Keywords": "Café",
        "XMP-dc:Subject": ["Cat", "Holiday"],
    }


@pytest.mark.parametrize("name", ["cat.jpg", "coffee.png", "cat.tif"])
def test_embed_never_changes_pixels(make_writer, photos: Path, reader: Exiftool, name: str) -> None:
    photo = photos / name
    if name == "cat.tif":
        with Image.open(photos / "cat.jpg") as im:
            im.save(photo, compression="tiff_lzw")
    before = pixels(photo)
    writer = make_writer(metadata__mode="embed")
    writer.write(result_a(photo))
    assert reader.read_tags(photo, "XMP-dc:Subject") == {"XMP-dc:Subject": ["Cat", "Dog"]}
    assert pixels(photo) == before
    writer.write(result_b(photo))
    writer.remove(photo)
    assert pixels(photo) == before
    assert not [k for k in reader.read_tags(photo, "XMP:all") if k.startswith("XMP-phototag:")]
    assert not [p for p in photos.iterdir() if p.name.endswith(("_original", "_exiftool_tmp"))]


def test_embed_untag_restores_a_photo_without_metadata(make_writer, photos: Path, reader: Exiftool) -> None:
    photo = photos / "rocket.jpg"
    before = reader.read_tags(photo, "XMP:all", "IPTC:all", "IFD0:ImageDescription")
    writer = make_writer(metadata__mode="embed")
    writer.write(result_a(photo))
    writer.remove(photo)
    assert reader.read_tags(photo, "XMP:all", "IPTC:all", "IFD0:ImageDescription") == before


# -- faults --------------------------------------------------------------------------------------------------


def test_killed_exiftool_child_next_write_works(make_writer, photos: Path, reader: Exiftool) -> None:
    writer = make_writer(metadata__mode="embed")
    writer.write(result_a(photos / "cat.jpg"))
    pid = writer.exiftool.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not alive(pid), 10)
    writer.write(result_b(photos / "cat.jpg"))
    writer.write(result_a(photos / "rocket.jpg"))
    assert reader.read_tags(photos / "cat.jpg", "XMP-dc:Subject") == {"XMP-dc:Subject": ["Cat", "Sofa"]}
    assert writer.exiftool.pid not in (None, pid)


def test_hung_exiftool_times_out_and_the_writer_recovers(
    make_writer, photos: Path, tmp_path: Path, reader: Exiftool
) -> None:
    # a real exiftool behind a wrapper, injected through the exiftool.path setting; it hangs while HANG exists
    hang = tmp_path / "HANG"
    wrapper = tmp_path / "exiftool-wrapper"
    wrapper.write_text(f'#!/bin/sh\nif [ -e "{hang}" ]; then exec sleep 300; fi\nexec exiftool "$@"\n')
    wrapper.chmod(0o755)
    writer = make_writer(metadata__mode="embed", exiftool__path=str(wrapper), exiftool__timeout="1")
    photo = photos / "cat.jpg"
    before = digest(photo)
    hang.write_text("")
    started = time.monotonic()
    with pytest.raises(ExiftoolTimeout, match=r"cat\.jpg"):
        writer.write(result_a(photo))
    assert time.monotonic() - started < 10
    assert digest(photo) == before
    hang.unlink()
    writer.write(result_a(photo))
    assert reader.read_tags(photo, "XMP-dc:Subject") == {"XMP-dc:Subject": ["Cat", "Dog"]}


@pytest.mark.parametrize("mode", ["embed", "sidecar"])
def test_read_only_folder_names_the_file_and_keeps_the_original(make_writer, photos: Path, mode: str) -> None:
    photo = photos / "cat.jpg"
    before = digest(photo)
    writer = make_writer(metadata__mode=mode)
    with read_only(photos), pytest.raises(MetadataError) as err:
        writer.write(result_a(photo))
    message = str(err.value)
    assert "cat.jpg" in message and "writable" in message
    assert digest(photo) == before
    assert sorted(p.name for p in photos.iterdir() if p.name.startswith("cat")) == ["cat.jpg"]
    writer.write(result_a(photo))  # once the folder is writable again, the retry works


@pytest.mark.parametrize("mode", ["embed", "sidecar"])
def test_stale_exiftool_tmp_is_cleaned_before_writing(make_writer, photos: Path, mode: str) -> None:
    photo = photos / "cat.jpg"
    writer = make_writer(metadata__mode=mode)
    writer.write(result_b(photo))
    target = photo if mode == "embed" else photos / "cat.jpg.xmp"
    stale = target.with_name(target.name + "_exiftool_tmp")
    stale.write_bytes(b"left by a killed exiftool")
    writer.write(result_a(photo))
    assert not stale.exists()
    assert exiv2_read(target)["Xmp.dc.subject"] == ["Cat", "Dog"]


def test_text_named_jpg_is_refused_with_a_clear_error(make_writer, photos: Path) -> None:
    fake = photos / "notes.jpg"
    fake.write_text("not a photo\n")
    writer = make_writer(metadata__mode="embed")
    photo = Photo(fake, fake.stat().st_size, 0, "h")
    with pytest.raises(MetadataError, match=r"notes\.jpg"):
        writer.write(PhotoResult(photo, 10, 10, (run(Tag("Cat", 0.9)),)))
    assert fake.read_text() == "not a photo\n"


def test_missing_photo_is_a_metadata_error(make_writer, photos: Path) -> None:
    res = result_a(photos / "cat.jpg")
    (photos / "cat.jpg").unlink()
    with pytest.raises(MetadataError, match=r"cat\.jpg.*moved or deleted"):
        make_writer().write(res)


# -- answers written to XMP fields (VQA ``xmp:``) ------------------------------------------------------------

VQA_MODEL = ModelInfo("test/vqa", "rev-2")
HEADLINE = "XMP-photoshop:Headline"
TITLE = "XMP-dc:Title"
PERSON = "XMP-iptcExt:PersonInImage"


def vqa(fields: dict[str, str] | None = None, qa: list[dict[str, Any]] | None = None) -> AnalyzerRun:
    """A VQA analyzer's run: an Answer per question in ``qa`` (default: one per field); each XMP tag in
    ``fields`` goes on the next question answered with its text, or on an answer of its own (no question)."""
    fields = fields or {}
    if qa is None:
        qa = [{"question": f"about {tag}?", "answer": text, "score": 0.5} for tag, text in fields.items()]
    answers = [Answer(q["question"], q["answer"], q["score"]) for q in qa]
    for tag, text in fields.items():
        at = next((i for i, a in enumerate(answers) if a.text == text and a.xmp is None), None)
        if at is None:
            answers.append(Answer("", text, xmp=tag))
        else:
            answers[at] = Answer(answers[at].question, text, answers[at].score, xmp=tag)
    return AnalyzerRun("vqa", "vqa", VQA_MODEL, "fp-vqa", Analysis(answers=tuple(answers)))


def fields_of(got: dict[str, Any]) -> dict[str, list[str]]:
    """XMP-phototag:Fields as tag -> recorded values."""
    out: dict[str, list[str]] = {}
    for record in got.get("XMP-phototag:Fields", []):
        out.setdefault(record["Tag"], []).append(record["Value"])
    return out


def test_answers_go_to_empty_fields_and_are_recorded(make_writer, photos: Path, reader: Exiftool) -> None:
    photo = photos / "cat.jpg"
    side = photos / "cat.jpg.xmp"
    qa = [
        {"question": "What is the headline?", "answer": "a cat on a mat", "score": 0.8123456},
        {"question": "Who is this?", "answer": "Chelsea", "score": None},
        {"question": "Who is in it?", "answer": "nobody", "score": 0.25},
        {"question": "Is it night?", "answer": "no", "score": 0.9},  # asked, but no field: still recorded
    ]
    fields = {HEADLINE: "a cat on a mat", TITLE: "Chelsea", PERSON: "nobody"}
    writer = make_writer()
    res = result(photo, run(Tag("Cat", 0.9)), vqa(fields, qa))
    writer.write(res)
    got = reader.read_tags(side)
    assert got[HEADLINE] == "a cat on a mat"
    assert got[TITLE] == "Chelsea"
    assert got[PERSON] == ["nobody"]  # a Bag
    assert fields_of(got) == {HEADLINE: ["a cat on a mat"], TITLE: ["Chelsea"], PERSON: ["nobody"]}
    assert got["XMP-phototag:Answers"] == [
        {
            "Question": "What is the headline?",
            "Answer": "a cat on a mat",
            "Score": "0.8123",
            "Analyzer": "vqa",
            "Model": "test/vqa",
            "Revision": "rev-2",
        },
        {
            "Question": "Who is this?",
            "Answer": "Chelsea",
            "Analyzer": "vqa",
            "Model": "test/vqa",
            "Revision": "rev-2",
        },
        {
            "Question": "Who is in it?",
            "Answer": "nobody",
            "Score": "0.2500",
            "Analyzer": "vqa",
            "Model": "test/vqa",
            "Revision": "rev-2",
        },
        {
            "Question": "Is it night?",
            "Answer": "no",
            "Score": "0.9000",
            "Analyzer": "vqa",
            "Model": "test/vqa",
            "Revision": "rev-2",
        },
    ]
    assert got["XMP-dc:Subject"] == ["Cat"]  # the keywords are unaffected

    independent = exiv2_read(side)
    assert independent["Xmp.photoshop.Headline"] == "a cat on a mat"
    assert independent["Xmp.dc.title"] == "Chelsea"
    assert independent["Xmp.iptcExt.PersonInImage"] == ["nobody"]
    recorded = {k: v for k, v in independent.items() if k.startswith("Xmp.phototag.Fields[") and "/" in k}
    assert sorted(recorded.values()) == sorted([*fields, *fields.values()])
    assert independent["Xmp.phototag.Answers[4]/phototag:Question"] == "Is it night?"

    first, mtime = side.read_bytes(), side.stat().st_mtime_ns
    writer.write(res)  # the same result again: nothing changes, nothing is written
    assert side.read_bytes() == first and side.stat().st_mtime_ns == mtime

    writer.remove(photo)  # the sidecar held only phototag's data
    assert not side.exists()


def test_a_value_the_user_wrote_is_kept_unless_caption_replace(
    make_writer, photos: Path, reader: Exiftool
) -> None:
    photo = photos / "cat.jpg"
    side = photos / "cat.jpg.xmp"
    shell(f"-{HEADLINE}=My own headline", str(photo))  # in the photo: a new sidecar starts from its XMP
    keep = make_writer()
    keep.write(result(photo, vqa({HEADLINE: "a cat", TITLE: "Chelsea"})))
    got = reader.read_tags(side)
    assert got[HEADLINE] == "My own headline"
    assert fields_of(got) == {TITLE: ["Chelsea"]}  # the user's headline is not recorded as phototag's

    # the user overwrites phototag's title: from then on it is theirs
    shell(f"-{TITLE}=Our cat", str(side))
    keep.write(result(photo, vqa({HEADLINE: "a dog", TITLE: "Felix"})))
    got = reader.read_tags(side)
    assert (got[HEADLINE], got[TITLE]) == ("My own headline", "Our cat")
    assert "XMP-phototag:Fields" not in got
    keep.remove(photo)
    got = reader.read_tags(side)
    assert (got[HEADLINE], got[TITLE]) == ("My own headline", "Our cat")

    replace = make_writer(metadata__caption="replace")
    replace.write(result(photo, vqa({HEADLINE: "a dog"})))
    got = reader.read_tags(side)
    assert got[HEADLINE] == "a dog" and fields_of(got) == {HEADLINE: ["a dog"]}
    replace.remove(photo)  # untag takes back what phototag wrote (the overwritten value is gone)
    assert HEADLINE not in reader.read_tags(side)
    assert reader.read_tags(photo, HEADLINE) == {HEADLINE: "My own headline"}  # the photo was never touched


def test_user_value_in_the_photo_keeps_an_existing_sidecars_field(
    make_writer, photos: Path, reader: Exiftool
) -> None:
    photo = photos / "cat.jpg"
    writer = make_writer()
    writer.write(result(photo, run(Tag("Cat", 0.9))))  # the sidecar exists before the user's headline
    shell(f"-{HEADLINE}=From the photographer", str(photo))
    writer.write(result(photo, run(Tag("Cat", 0.9)), vqa({HEADLINE: "a cat"})))
    assert HEADLINE not in reader.read_tags(photos / "cat.jpg.xmp")


def test_rerun_replaces_only_phototags_values(make_writer, photos: Path, reader: Exiftool) -> None:
    photo = photos / "coffee.png"
    side = photos / "coffee.png.xmp"
    shell(f"-{PERSON}+=Alice", f"-{PERSON}+=Bob", f"-{TITLE}-fr=Petit déjeuner", str(side))
    writer = make_writer()
    writer.write(result(photo, vqa({HEADLINE: "a cup", PERSON: "a barista", TITLE: "Coffee"})))
    got = reader.read_tags(side, "XMP:all")
    assert got[PERSON] == ["Alice", "Bob", "a barista"]
    assert (got[HEADLINE], got[TITLE], got["XMP-dc:Title-fr"]) == ("a cup", "Coffee", "Petit déjeuner")

    writer.write(result(photo, vqa({HEADLINE: "a bowl", PERSON: "a waiter", TITLE: "Breakfast"})))
    writer.write(result(photo, vqa({HEADLINE: "a bowl", PERSON: "a waiter", TITLE: "Breakfast"})))
    got = reader.read_tags(side, "XMP:all")
    assert got[PERSON] == ["Alice", "Bob", "a waiter"]  # replaced, never duplicated
    assert (got[HEADLINE], got[TITLE], got["XMP-dc:Title-fr"]) == ("a bowl", "Breakfast", "Petit déjeuner")
    assert fields_of(got) == {HEADLINE: ["a bowl"], PERSON: ["a waiter"], TITLE: ["Breakfast"]}
    assert exiv2_read(side)["Xmp.iptcExt.PersonInImage"] == ["Alice", "Bob", "a waiter"]

    # an answer equal to a user's entry: that entry was there first, so it stays the user's
    writer.write(result(photo, vqa({PERSON: "Bob"})))
    got = reader.read_tags(side, "XMP:all")
    assert got[PERSON] == ["Alice", "Bob"]
    assert HEADLINE not in got and TITLE not in got  # no answer for them now: phototag's are taken back
    assert "XMP-phototag:Fields" not in got
    assert got["XMP-dc:Title-fr"] == "Petit déjeuner"

    writer.write(result(photo, vqa({PERSON: "a waiter", TITLE: "Breakfast"})))
    writer.remove(photo)
    got = reader.read_tags(side, "XMP:all")
    assert got[PERSON] == ["Alice", "Bob"]
    assert TITLE not in got and got["XMP-dc:Title-fr"] == "Petit déjeuner"  # other languages stay
    assert not [k for k in got if k.startswith("XMP-phototag:")]


def test_embed_mode_answers(make_writer, photos: Path, reader: Exiftool) -> None:
    photo = photos / "rocket.jpg"
    shell(f"-{PERSON}=Mission control", str(photo))
    before = reader.read_tags(photo, "XMP:all", "IPTC:all", "IFD0:ImageDescription")
    before_pixels = pixels(photo)
    writer = make_writer(metadata__mode="embed")
    writer.write(result(photo, vqa({HEADLINE: "a launch", PERSON: "an astronaut"})))
    assert not (photos / "rocket.jpg.xmp").exists()
    independent = exiv2_read(photo)
    assert independent["Xmp.photoshop.Headline"] == "a launch"
    assert independent["Xmp.iptcExt.PersonInImage"] == ["Mission control", "an astronaut"]
    assert "Iptc.Application2.Headline" not in independent  # XMP only

    writer.write(result(photo, vqa({HEADLINE: "a rocket", PERSON: "a pilot"})))
    got = reader.read_tags(photo, HEADLINE, PERSON)
    assert got == {HEADLINE: "a rocket", PERSON: ["Mission control", "a pilot"]}
    writer.remove(photo)
    assert reader.read_tags(photo, "XMP:all", "IPTC:all", "IFD0:ImageDescription") == before
    assert pixels(photo) == before_pixels


def test_answer_injection_is_impossible(make_writer, photos: Path, reader: Exiftool) -> None:
    photo = photos / "cat.jpg"
    answer = 'a dog\n-XMP-dc:Rights=X\n#comment "quoted" $HOME @x -end'
    qa = [{"question": "What?\n-XMP-dc:Rights=Q", "answer": answer, "score": 0.5}]
    writer = make_writer(metadata__mode="embed")
    fields = {HEADLINE: answer, PERSON: answer, "XMP-photoshop:Credit=X\n-XMP-dc:Rights": "Y"}
    writer.write(result(photo, vqa(fields, qa)))
    got = reader.read_tags(photo, "XMP:all")
    assert "XMP-dc:Rights" not in got and "XMP-photoshop:Credit" not in got
    assert got[HEADLINE] == answer and got[PERSON] == [answer]
    assert got["XMP-phototag:Answers"][0]["Question"] == "What?\n-XMP-dc:Rights=Q"
    assert got["XMP-phototag:Answers"][0]["Answer"] == answer
    assert fields_of(got) == {HEADLINE: [answer], PERSON: [answer]}
    independent = exiv2_read(photo)
    assert independent["Xmp.photoshop.Headline"] == answer
    assert "Xmp.dc.rights" not in independent
    writer.write(result(photo, vqa(fields, qa)))  # the -= / += of a multi-line value round-trips too
    assert reader.read_tags(photo, PERSON) == {PERSON: [answer]}
    writer.remove(photo)
    assert not [k for k in reader.read_tags(photo, "XMP:all") if k != "XMP-x:XMPToolkit"]


def test_refused_fields_are_skipped_and_logged_not_fatal(
    make_writer, photos: Path, reader: Exiftool, caplog: pytest.LogCaptureFixture
) -> None:
    photo = photos / "cat.jpg"
    refused = {
        "EXIF:Artist": "a photographer",  # not XMP
        "XMP-dc:Subject": "Sneaky",  # a field phototag manages
        "XMP-phototag:Caption": "forged",
        "XMP-xmp:Rating": "five",  # not text
        "XMP-iptcExt:LocationCreatedCity": "Paris",  # a structure's field
        "XMP-photoshop:NoSuchTag": "x",  # unknown to exiftool
    }
    fields = {**refused, "XMP-photoshop:headline": "a cat"}  # exiftool's spelling is Headline
    writer = make_writer(metadata__mode="embed")
    with caplog.at_level("WARNING", logger="phototag"):  # the writer's and xmpdesired's warnings
        writer.write(result(photo, run(Tag("Cat", 0.9)), vqa(fields)))
        not_text: Any = ["not text"]  # a plugin that ignores the types
        bad = AnalyzerRun("odd", "vqa", VQA_MODEL, "fp", Analysis(answers=(Answer("", not_text, xmp=TITLE),)))
        writer.write(result(photo, run(Tag("Cat", 0.9)), vqa(fields), bad))
    got = reader.read_tags(photo, "XMP:all", "EXIF:all")
    assert got[HEADLINE] == "a cat" and fields_of(got) == {HEADLINE: ["a cat"]}
    assert got["XMP-dc:Subject"] == ["Cat"]
    assert "XMP-phototag:Caption" not in got
    assert not {"IFD0:Artist", "XMP-xmp:Rating", "XMP-iptcExt:LocationCreated"} & set(got)
    warned = caplog.text
    for tag in refused:
        assert warned.count(f"not writing answers to {tag}:") == 1, tag  # once per writer, not per photo
    assert "odd" in warned and "is not text" in warned


def test_a_forged_field_record_cannot_make_untag_remove_user_data(
    make_writer, photos: Path, reader: Exiftool
) -> None:
    photo = photos / "coffee.png"
    side = photos / "coffee.png.xmp"
    shell("-XMP-dc:Subject+=Holiday", f"-{HEADLINE}=Mine", str(side))
    writer = make_writer()
    writer.write(result(photo, vqa({PERSON: "a barista"})))
    forged = ["{Tag=XMP-dc:Subject,Value=Holiday}", f"{{Tag={HEADLINE},Value=Other}}"]
    with Exiftool() as et:  # phototag's namespace needs its exiftool config
        et.write(side, *(f"-XMP-phototag:Fields+={f}" for f in forged))
    assert fields_of(reader.read_tags(side)) == {
        PERSON: ["a barista"],
        "XMP-dc:Subject": ["Holiday"],
        HEADLINE: ["Other"],
    }
    writer.remove(photo)
    got = reader.read_tags(side, "XMP:all")
    assert got["XMP-dc:Subject"] == ["Holiday"] and got[HEADLINE] == "Mine"
    assert PERSON not in got


def test_plan_writes_fields_without_exiftool_probe(photos: Path) -> None:
    target = Target(photos / "cat.jpg.xmp", photos / "cat.jpg", sidecar=True)
    want = desired_from(
        result(photos / "cat.jpg", vqa({HEADLINE: " a cat\r\n", "EXIF:Artist": "x"})), "AI", 0.0
    )
    fixed = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    args = plan(target, {}, want, now=lambda: fixed)
    assert f"-{HEADLINE}=a cat" in args  # cleaned: CR LF -> LF, stripped
    assert not [a for a in args if a.startswith("-EXIF") or "Value=x" in a]
    assert "-XMP-phototag:Fields=[{Tag=XMP-photoshop:Headline,Value=a cat}]" in args
    # lang-alt: only x-default is written; a list takes -= / +=
    assert plan(target, {}, want, field_kinds={HEADLINE: "lang-alt"}, now=lambda: fixed)[0] == (
        f"-{HEADLINE}-x-default=a cat"
    )
    listed = plan(target, {HEADLINE: ["Mine"]}, want, field_kinds={HEADLINE: "list"}, now=lambda: fixed)
    assert listed[:2] == [f"-{HEADLINE}-=a cat", f"-{HEADLINE}+=a cat"]
