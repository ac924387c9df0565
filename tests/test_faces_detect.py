"""The default face analyzer (dlib HOG + 5-point landmarks + ResNet descriptors) on real photos: the faces it
must find (boxes checked by eye, ``face_photos.py``), the photos where it must find none, descriptors that tell
the same person from another, and the ``extra["faces"]`` records people recognition reads. The choice of
detector and threshold is measured by ``bench/faces_bench.py``; nothing here is timed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from face_photos import PEOPLE, _Made, face_photos, iou, no_face_photos
from phototag.bundled.dlibfaces import DESCRIPTOR_MODEL, DlibFaceAnalyzer, sharpness
from phototag.bundled.haar import HaarFaceDetector
from phototag.config import Config, ImageSettings
from phototag.files import make_photo
from phototag.images import decode
from phototag.manager import collect, get_plugin_manager
from phototag.types import Analysis, DecodedImage, Device, Photo

CPU = Device("cpu", threads=2)
DLIB_SAME_PERSON = 0.6  # dlib's documented threshold for its ResNet descriptors


@pytest.fixture(scope="module")
def faces() -> Iterator[DlibFaceAnalyzer]:
    a = DlibFaceAnalyzer("faces", DlibFaceAnalyzer.Settings(), Config())
    a.load(CPU)
    yield a
    a.unload()


@pytest.fixture(scope="module")
def made() -> dict[str, _Made]:
    return {**face_photos(), **no_face_photos()}


def as_decoded(name: str, image: Image.Image) -> DecodedImage:
    """An in-memory photo as the pipeline hands it over (all these are at most 640 px on the shorter side,
    except the group photo, scaled here the way the decoder would)."""
    w, h = image.size
    if min(w, h) > 640:
        s = 640 / min(w, h)
        image = image.resize((round(w * s), round(h * s)), Image.Resampling.BICUBIC)
    return DecodedImage(Photo(Path(f"{name}.jpg"), 0, 0, name), image, w, h, "JPEG")


def only_face(analysis: Analysis) -> dict:
    assert len(analysis.regions) == 1, analysis.regions
    (face,) = analysis.extra["faces"]
    return face


def distance(a: dict, b: dict) -> float:
    return float(np.linalg.norm(np.array(a["descriptor"]) - np.array(b["descriptor"])))


# -- detection -----------------------------------------------------------------------------------------------


def test_the_sample_photos_faces_are_found_where_they_are(
    faces: DlibFaceAnalyzer, sample_photos_master: Path
) -> None:
    for file, person in (("astronaut.jpg", "astronaut"), ("grace_hopper.jpg", "grace_hopper")):
        decoded = decode(make_photo(sample_photos_master / file), 640, ImageSettings())
        (analysis,) = faces.analyze([decoded])
        (region,) = analysis.regions
        ((_, (x, y, w, h)),) = PEOPLE[person][1]
        truth = (x / decoded.width, y / decoded.height, w / decoded.width, h / decoded.height)
        assert iou((region.x, region.y, region.w, region.h), truth) >= 0.5, (file, region, truth)
        assert region.kind == "face" and region.label == "Face" and region.score >= 0.6
        assert analysis.tags == ()  # no keyword unless asked for


def test_variants_and_small_faces_are_found(faces: DlibFaceAnalyzer, made: dict[str, _Made]) -> None:
    names = [
        "astronaut-mirror",
        "grace_hopper-x0.6",
        "astronaut-jpeg25",
        "grace_hopper-crop",
        "collage",
        "group",
    ]
    got = faces.analyze([as_decoded(n, made[n].image) for n in names])
    for name, analysis in zip(names, got, strict=True):
        m = made[name]
        W, H = m.image.size
        truths = [(x / W, y / H, w / W, h / H) for _, (x, y, w, h) in m.faces]
        found = [(r.x, r.y, r.w, r.h) for r in analysis.regions]
        assert len(found) == len(truths), (name, found)
        for t in truths:
            assert max(iou(f, t) for f in found) >= 0.4, (name, t, found)


def test_no_face_where_there_is_none(faces: DlibFaceAnalyzer, made: dict[str, _Made]) -> None:
    names = ["chelsea", "coffee", "rocket", "page", "text", "motorcycle_left", "coins", "china-facade-x3",
             "brick-x2", "coffee-x2.5", "moon"]  # fmt: skip
    got = faces.analyze([as_decoded(n, made[n].image) for n in names])
    assert {n: a.regions for n, a in zip(names, got, strict=True) if a.regions} == {}
    assert all(a == Analysis() for a in got)


def test_a_blank_photo_has_no_faces(faces: DlibFaceAnalyzer) -> None:
    assert faces.analyze([as_decoded("blank", Image.new("RGB", (320, 240), "white"))]) == [Analysis()]


def test_analyze_before_load_is_a_clear_error() -> None:
    a = DlibFaceAnalyzer("faces", DlibFaceAnalyzer.Settings(), Config())
    with pytest.raises(RuntimeError, match="call load"):
        a.analyze([as_decoded("blank", Image.new("RGB", (64, 64)))])


# -- descriptors: the same person near, another far ----------------------------------------------------------


def test_the_same_person_is_near_and_another_far(faces: DlibFaceAnalyzer, made: dict[str, _Made]) -> None:
    people = {
        "collins": ["astronaut", "astronaut-mirror", "astronaut-x0.6", "astronaut-x2.5", "astronaut-jpeg25"],
        "hopper": ["grace_hopper", "grace_hopper-mirror", "grace_hopper-x0.6", "grace_hopper-jpeg25"],
    }
    names = [n for ns in people.values() for n in ns]
    got = dict(zip(names, faces.analyze([as_decoded(n, made[n].image) for n in names]), strict=True))
    of = {p: [only_face(got[n]) for n in ns] for p, ns in people.items()}
    for person, found in of.items():
        for a in found[1:]:
            assert distance(found[0], a) < DLIB_SAME_PERSON / 2, person  # measured 0.09-0.24
    for a in of["collins"]:
        for b in of["hopper"]:
            assert distance(a, b) > DLIB_SAME_PERSON, "two people within dlib's threshold"


# -- the record people recognition reads ---------------------------------------------------------------------


def test_extra_faces_records_match_the_regions(faces: DlibFaceAnalyzer, made: dict[str, _Made]) -> None:
    (analysis,) = faces.analyze([as_decoded("collage", made["collage"].image)])
    records = analysis.extra["faces"]
    assert len(records) == len(analysis.regions) == 2
    json.dumps(records)  # JSON-able as the sidecar stores it
    for region, rec in zip(analysis.regions, records, strict=True):
        assert set(rec) == {"box", "score", "landmarks", "quality", "descriptor", "model"}
        assert rec["box"] == [region.x, region.y, region.w, region.h] and rec["score"] == region.score
        assert rec["model"] == DESCRIPTOR_MODEL
        assert len(rec["descriptor"]) == 128 and all(isinstance(v, float) for v in rec["descriptor"])
        assert 0.9 < float(np.linalg.norm(rec["descriptor"])) < 1.1 * 1.5  # dlib's vectors have norm ~1.4-1.5
        assert 0.0 <= rec["quality"] <= 1.0
        x, y, w, h = rec["box"]
        (rx, ry), (ix, iy), (lx, ly), (jx, jy), (_, ny) = rec["landmarks"]
        for px, py in rec["landmarks"]:  # on the face, give or take the box's looseness
            assert x - 0.1 * w <= px <= x + 1.1 * w and y - 0.1 * h <= py <= y + 1.1 * h
        assert ny > max(ry, iy, ly, jy)  # the nose below the eyes
        assert min(rx, ix) > max(lx, jx) or max(rx, ix) < min(lx, jx)  # one eye each side


def test_landmarks_follow_a_mirror(faces: DlibFaceAnalyzer, made: dict[str, _Made]) -> None:
    a, m = faces.analyze([as_decoded(n, made[n].image) for n in ("astronaut", "astronaut-mirror")])
    nose, mirrored_nose = only_face(a)["landmarks"][4], only_face(m)["landmarks"][4]
    assert abs(nose[0] - (1 - mirrored_nose[0])) < 0.02 and abs(nose[1] - mirrored_nose[1]) < 0.02


def test_quality_is_lower_for_a_blurred_face(faces: DlibFaceAnalyzer, made: dict[str, _Made]) -> None:
    sharp = made["grace_hopper"].image
    blurred = sharp.filter(ImageFilter.GaussianBlur(3))
    a, b = faces.analyze([as_decoded("sharp", sharp), as_decoded("blurred", blurred)])
    assert only_face(a)["quality"] > 0.9 > 0.5 > only_face(b)["quality"]
    chip = np.asarray(sharp.crop((174, 142, 366, 330)).resize((150, 150)))
    assert sharpness(chip) > 5 * sharpness(
        np.asarray(Image.fromarray(chip).filter(ImageFilter.GaussianBlur(3)))
    )


# -- the plugin: dlib by default, Haar on request -------------------------------------------------------------


def registered(make_config: Callable[..., Config], **overrides: str) -> object:
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "faces"})
    errors: dict[str, Exception] = {}
    got = dict(collect(pm, "register_analyzers", errors.__setitem__, config=make_config(**overrides)))
    assert errors == {}
    return got["faces"]


def test_the_default_is_dlib_and_haar_stays_selectable(make_config: Callable[..., Config]) -> None:
    default = registered(make_config)
    assert isinstance(default, DlibFaceAnalyzer) and default.task == "face-identity"
    assert default.model_info().id == "dlib-hog"
    haar = registered(make_config, **{"plugins.faces.model": "opencv-haar"})
    assert isinstance(haar, HaarFaceDetector)
    mmod = registered(make_config, **{"plugins.faces.model": "dlib-mmod", "plugins.faces.upsample": "1"})
    assert isinstance(mmod, DlibFaceAnalyzer) and mmod.settings.upsample == 1
    assert mmod.fingerprint() != default.fingerprint()


@pytest.mark.slow
def test_mmod_also_finds_the_cameramans_profile(made: dict[str, _Made]) -> None:
    a = DlibFaceAnalyzer("faces", DlibFaceAnalyzer.Settings(model="dlib-mmod"), Config())
    a.load(CPU)
    try:
        cam, mirrored = a.analyze([as_decoded(n, made[n].image) for n in ("camera", "camera-mirror")])
    finally:
        a.unload()
    ((_, (x, y, w, h)),) = PEOPLE["camera"][1]
    (region,) = cam.regions
    assert iou((region.x, region.y, region.w, region.h), (x / 512, y / 512, w / 512, h / 512)) >= 0.4
    assert len(mirrored.regions) == 1 and distance(only_face(cam), only_face(mirrored)) < DLIB_SAME_PERSON
