"""Object detection on real transformers detectors (tiny, random, built here) and real photos.

Closed-set detectors (DETR with a transformers ResNet backbone, RT-DETR, YOLOS) and open-vocabulary ones
(OWL-ViT, OWLv2) run through :class:`phototag.hf.detect.HFDetector` as the detect plugin builds it. The
boxes of random weights are meaningless, but real model output: these tests check what phototag does with
them (normalised boxes, threshold, max boxes, NMS, labels and hierarchy, queries) and the pure box helpers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hf_helpers import CPU, config_with, decoded_samples, registered_by, run, scan
from phototag.errors import ConfigError, ModelUnavailableError
from phototag.hf.detect import HFDetector, box_iou, display_name, nms, normalise_box
from phototag.hf.vocabulary import load_vocabulary
from phototag.plugins import detect as detect_plugin
from phototag.plugins.sidecar import sidecar_path
from phototag.types import Analysis, Analyzer, DecodedImage, Region
from tiny_models import DETECT_LABELS

CLOSED = ("detr", "rt_detr", "yolos")
OPEN = ("owlvit", "owlv2")
QUERIES = ["cat", "motorcycle", "coffee cup"]


@pytest.fixture(scope="module")
def images(sample_photos_master: Path) -> list[DecodedImage]:
    """The six sample photos through the real decoder, orientation applied, small (the models use 32-96 px)"""
    return decoded_samples(sample_photos_master, 64)


def detector(tmp_path: Path, model: Path | str, **settings: Any) -> HFDetector:
    """What the detect plugin registers for ``plugins.detect: {model: ..., **settings}``."""
    config = config_with(tmp_path, {"detect": {"model": str(model), **settings}})
    (analyzer,) = registered_by(detect_plugin, config)
    assert isinstance(analyzer, HFDetector) and isinstance(analyzer, Analyzer)
    return analyzer


def boxes(analysis: Analysis) -> list[float]:
    """Every region's x, y, w, h in one flat list (what pytest.approx compares)."""
    return [v for r in analysis.regions for v in (r.x, r.y, r.w, r.h)]


def expected_labels(kind: str) -> set[str]:
    raw = QUERIES if kind in OPEN else [n for n in DETECT_LABELS if n != "N/A"]
    return {display_name(n) for n in raw}


# -- model output -> regions and tags ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CLOSED + OPEN)
def test_regions_are_normalised_sorted_and_tagged(
    kind: str, tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    queries = QUERIES if kind in OPEN else []
    analyses = run(detector(tmp_path, tiny_model(kind), threshold=0.0, max_boxes=8, queries=queries), images)
    assert len(analyses) == len(images)
    assert sum(len(a.regions) for a in analyses) > 0
    for a in analyses:
        assert len(a.regions) <= 8
        scores = [r.score for r in a.regions]
        assert scores == sorted(scores, reverse=True)
        for r in a.regions:
            assert r.kind == "object" and 0.0 <= r.score <= 1.0
            assert 0.0 <= r.x <= 1.0 and 0.0 <= r.y <= 1.0 and r.w > 0.0 and r.h > 0.0
            assert r.x + r.w <= 1.0 + 1e-6 and r.y + r.h <= 1.0 + 1e-6
            assert r.label in expected_labels(kind)
        # one tag per label that kept a box, scored by its best box
        best: dict[str, float] = {}
        for r in a.regions:
            best[r.label] = max(best.get(r.label, 0.0), r.score)
        assert {t.name: t.score for t in a.tags} == best


@pytest.mark.parametrize("kind", ["rt_detr", "owlv2"])
def test_results_repeat_and_do_not_depend_on_the_batch(
    kind: str, tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    # RT-DETR and OWLv2 resize every photo to one fixed input, so a batch is not padded
    analyzer = detector(tmp_path, tiny_model(kind), threshold=0.0, queries=QUERIES if kind in OPEN else [])
    analyzer.load(CPU)
    try:
        batch = analyzer.analyze(images)
        again = analyzer.analyze(images)
        single = [analyzer.analyze([im])[0] for im in images]
    finally:
        analyzer.unload()
    assert batch == again
    for a, b in zip(batch, single, strict=True):
        assert [r.label for r in a.regions] == [r.label for r in b.regions]
        assert boxes(a) == pytest.approx(boxes(b), abs=1e-4)


def test_threshold_keeps_exactly_the_boxes_above_it(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    everything = run(
        detector(tmp_path, tiny_model("rt_detr"), threshold=0.0, nms_iou=1.0, max_boxes=1000), images
    )
    scores = sorted({r.score for a in everything for r in a.regions})
    cut = (scores[len(scores) // 2] + scores[len(scores) // 2 - 1]) / 2  # between two observed scores
    above = run(detector(tmp_path, tiny_model("rt_detr"), threshold=cut, nms_iou=1.0, max_boxes=1000), images)
    for a, full in zip(above, everything, strict=True):
        assert a.regions == tuple(r for r in full.regions if r.score > cut)
    assert 0 < sum(len(a.regions) for a in above) < sum(len(a.regions) for a in everything)


def test_max_boxes_keeps_the_best(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    everything = run(
        detector(tmp_path, tiny_model("rt_detr"), threshold=0.0, nms_iou=1.0, max_boxes=1000), images
    )
    three = run(detector(tmp_path, tiny_model("rt_detr"), threshold=0.0, nms_iou=1.0, max_boxes=3), images)
    for a, full in zip(three, everything, strict=True):
        assert len(full.regions) > 3
        assert a.regions == full.regions[:3]


@pytest.mark.parametrize(
    ("kind", "agnostic"),
    [("rt_detr", True), ("owlv2", False)],  # RT-DETR puts two labels on one box; OWLv2's boxes overlap
)
def test_nms_removes_overlapping_boxes_from_real_output(
    kind: str, agnostic: bool, tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    common: dict[str, Any] = {"threshold": 0.0, "max_boxes": 1000, "class_agnostic_nms": agnostic}
    if kind in OPEN:
        common["queries"] = QUERIES
    off = run(detector(tmp_path, tiny_model(kind), nms_iou=1.0, **common), images)
    on = run(detector(tmp_path, tiny_model(kind), nms_iou=0.3, **common), images)
    removed = 0
    for a, full in zip(on, off, strict=True):
        assert set(a.regions) <= set(full.regions)
        removed += len(full.regions) - len(a.regions)
        for i, r in enumerate(a.regions):
            for s in a.regions[i + 1 :]:
                if agnostic or r.label == s.label:
                    assert box_iou((r.x, r.y, r.w, r.h), (s.x, s.y, s.w, s.h)) <= 0.3
        # what NMS dropped overlaps a kept box (of the same label, unless agnostic) by more than 0.3
        for r in set(full.regions) - set(a.regions):
            assert any(
                (agnostic or k.label == r.label) and k.score >= r.score
                and box_iou((r.x, r.y, r.w, r.h), (k.x, k.y, k.w, k.h)) > 0.3
                for k in a.regions
            )  # fmt: skip
    assert removed > 0


def test_unused_class_ids_never_become_labels(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    # this DETR labels every query "N/A" (COCO's unused ids): nothing may come out, whatever the threshold
    analyses = run(detector(tmp_path, tiny_model("detr_na"), threshold=0.0), images)
    assert all(a.regions == () and a.tags == () for a in analyses)


def test_labels_take_the_vocabulary_hierarchy(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    vocabulary = load_vocabulary()
    known = {w.lower(): label.path for label in vocabulary.labels for w in (label.name, *label.synonyms)}
    analyses = run(detector(tmp_path, tiny_model("rt_detr"), threshold=0.0, max_boxes=50), images)
    tags = {t.name: t for a in analyses for t in a.tags}
    assert "Cat" in tags and tags["Cat"].hierarchy == known["cat"]  # COCO "cat" -> AI|Animals|Pets|Cat
    for name, tag in tags.items():
        assert tag.hierarchy == known.get(name.lower(), (name,))


def test_custom_vocabulary_file_places_labels(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    vocab = tmp_path / "mine.txt"
    vocab.write_text("Things|Rides|Motorbike = motorcycle, motorbike\nPets|Cat\n", encoding="utf-8")
    analyses = run(
        detector(tmp_path, tiny_model("rt_detr"), threshold=0.0, max_boxes=50, vocabulary=str(vocab)), images
    )
    tags = {t.name: t.hierarchy for a in analyses for t in a.tags}
    assert tags["Motorbike"] == ("Things", "Rides", "Motorbike")
    assert tags["Cat"] == ("Pets", "Cat")
    assert "Motorcycle" not in tags


# -- open vocabulary -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", OPEN)
def test_open_vocabulary_matches_the_models_own_forward_on_the_queries(
    kind: str, tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    """phototag encodes the queries once; the result must be what the model's own forward gives for them."""
    import torch
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    folder = tiny_model(kind)
    analyzer = detector(tmp_path, folder, queries=QUERIES, threshold=0.0, nms_iou=1.0, max_boxes=1000)
    analyses = run(analyzer, images)
    assert analyzer.queries == [f"a photo of a {q}" for q in QUERIES]

    processor = AutoProcessor.from_pretrained(str(folder))
    model = AutoModelForZeroShotObjectDetection.from_pretrained(str(folder)).eval()
    pils = [d.image for d in images]
    queries = [analyzer.queries] * len(pils)
    inputs = processor(text=queries, images=pils, padding="max_length", truncation=True, return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    sizes = [(im.height, im.width) for im in pils]
    reference = processor.image_processor.post_process_object_detection(
        outputs, threshold=0.0, target_sizes=sizes
    )
    for analysis, ref, (h, w) in zip(analyses, reference, sizes, strict=True):
        expected = []
        for score, label, corners in zip(ref["scores"], ref["labels"], ref["boxes"], strict=True):
            box = normalise_box(corners.tolist(), w, h)
            if box is not None:
                expected.append((display_name(QUERIES[int(label)]), float(score), box))
        expected.sort(key=lambda e: -e[1])
        assert [r.label for r in analysis.regions] == [e[0] for e in expected]
        assert [r.score for r in analysis.regions] == pytest.approx([e[1] for e in expected], abs=1e-4)
        assert boxes(analysis) == pytest.approx([v for e in expected for v in e[2]], abs=1e-5)


def test_open_vocabulary_without_queries_uses_the_vocabulary(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    vocab = tmp_path / "few.yaml"
    vocab.write_text(
        "labels:\n"
        "  Animals:\n"
        "    - Cat: {synonyms: [cat, kitten]}\n"
        "    - Dog\n"
        "  Drinks|Coffee: {prompt: 'a cup of coffee'}\n",
        encoding="utf-8",
    )
    analyzer = detector(
        tmp_path, tiny_model("owlv2"), vocabulary=str(vocab), query_template="{}", threshold=0.0
    )
    analyses = run(analyzer, images[:2])
    assert analyzer.open_vocabulary
    assert analyzer.queries == ["cat", "kitten", "dog", "a cup of coffee"]
    paths = {t.name: t.hierarchy for a in analyses for t in a.tags}
    assert paths and set(paths) <= {"Cat", "Dog", "Coffee"}
    assert all(p == {"Cat": ("Animals", "Cat"), "Dog": ("Animals", "Dog"), "Coffee": ("Drinks", "Coffee")}[n]
               for n, p in paths.items())  # fmt: skip


def test_different_queries_give_different_labels(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    a = run(detector(tmp_path, tiny_model("owlvit"), queries=["cat"], threshold=0.0), images)
    b = run(detector(tmp_path, tiny_model("owlvit"), queries=["dog", "person"], threshold=0.0), images)
    assert {r.label for x in a for r in x.regions} == {"Cat"}
    assert {r.label for x in b for r in x.regions} <= {"Dog", "Person"}


def test_default_thresholds_follow_the_kind_of_model(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    closed, open_ = (
        detector(tmp_path, tiny_model("rt_detr")),
        detector(tmp_path, tiny_model("owlv2"), queries=["cat"]),
    )
    closed.load(CPU)
    open_.load(CPU)
    try:
        assert closed.threshold() == 0.5 and not closed.open_vocabulary and closed.queries == []
        assert open_.threshold() == 0.1 and open_.open_vocabulary
    finally:
        closed.unload()
        open_.unload()
    assert detector(tmp_path, tiny_model("owlv2"), threshold=0.3).threshold() == 0.3


# -- identity, settings, errors ------------------------------------------------------------------------------


def test_identity_is_cheap_stable_and_follows_settings(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = tiny_model("rt_detr")
    analyzer = detector(tmp_path, folder)
    before = analyzer.fingerprint()
    assert analyzer.input_size == 64  # from the model's preprocessor_config.json, without loading it
    assert analyzer.model_info().revision.startswith("local-")
    analyzer.load(CPU)
    try:
        assert analyzer.fingerprint() == before
    finally:
        analyzer.unload()
    assert detector(tmp_path, folder, threshold=0.7).fingerprint() != before
    assert detector(tmp_path, folder, queries=["cat"]).fingerprint() != before
    assert detector(tmp_path, folder, nms_iou=0.9).fingerprint() != before
    assert detector(tmp_path, folder, device="cpu").fingerprint() == before
    assert detector(tmp_path, folder, input_size=320).input_size == 320


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"query_template": "a photo of a thing"}, "must contain {} exactly once"),
        ({"queries": ["cat", " "]}, "must not be empty"),
        ({"max_boxes": 0}, "max_boxes"),
        ({"nms_iou": 1.5}, "nms_iou"),
        ({"vocabulary": "/no/such/vocabulary.yaml"}, "cannot read the vocabulary file"),
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, Any], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"plugins\.detect") as err:
        detector(tmp_path, "some/detector", **settings)
    assert message in str(err.value)


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    analyzer = detector(tmp_path, tmp_path / "nowhere")
    analyzer.fingerprint()  # must not raise
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        analyzer.load(CPU)


def test_model_that_does_not_detect_is_a_clear_error(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    analyzer = detector(tmp_path, tiny_model("blip"))
    with pytest.raises(ModelUnavailableError, match="not an object-detection model"):
        analyzer.load(CPU)


# -- the pure helpers ----------------------------------------------------------------------------------------


def test_box_iou() -> None:
    assert box_iou((0, 0, 1, 1), (0, 0, 1, 1)) == 1.0
    assert box_iou((0, 0, 1, 1), (1, 0, 1, 1)) == 0.0  # touching
    assert box_iou((0, 0, 2, 1), (1, 0, 2, 1)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_nms_greedy_by_score_per_label_and_capped() -> None:
    b = [(0.0, 0.0, 0.5, 0.5), (0.02, 0.0, 0.5, 0.5), (0.6, 0.6, 0.3, 0.3), (0.01, 0.01, 0.5, 0.5)]
    scores = [0.6, 0.9, 0.5, 0.7]
    assert nms(b, scores, 0.5) == [1, 2]  # 0 and 3 overlap the better box 1
    assert nms(b, scores, 1.0) == [1, 3, 0, 2]  # off: everything, best first
    assert nms(b, scores, 0.5, labels=["a", "b", "a", "a"]) == [1, 3, 2]  # box 1 is another label
    assert nms(b, scores, 0.5, max_keep=1) == [1]
    assert nms(b, scores, 0.0) == [1, 2]  # any overlap suppresses; disjoint boxes stay
    assert nms([], [], 0.5) == []
    with pytest.raises(ValueError):
        nms(b, scores[:2], 0.5)


def test_nms_chain_is_greedy_not_transitive() -> None:
    # b overlaps a and c, a and c do not overlap: greedy keeps a (best), drops b, then keeps c
    a, b, c = (0.0, 0.0, 0.4, 1.0), (0.2, 0.0, 0.4, 1.0), (0.4, 0.0, 0.4, 1.0)
    assert nms([a, b, c], [0.9, 0.8, 0.7], 0.3) == [0, 2]


def test_normalise_box_clips_and_drops_empty_boxes() -> None:
    assert normalise_box([10, 20, 60, 70], 100, 200) == pytest.approx((0.1, 0.1, 0.5, 0.25))
    assert normalise_box([-10, -5, 50, 250], 100, 200) == pytest.approx((0.0, 0.0, 0.5, 1.0))
    assert normalise_box([60, 70, 10, 20], 100, 200) == pytest.approx((0.1, 0.1, 0.5, 0.25))  # swapped
    assert normalise_box([120, 10, 150, 20], 100, 200) is None  # wholly outside
    assert normalise_box([50, 50, 50.01, 90], 100, 200) is None  # a sliver


def test_display_name() -> None:
    assert display_name("dining table") == "Dining table"
    assert display_name("iPhone") == "iPhone"
    assert display_name(" cat ") == "Cat"


# -- the real pipeline ---------------------------------------------------------------------------------------


def test_pipeline_writes_regions_to_the_json_sidecar(
    tiny_model: Callable[[str], Path], photos: Path, tmp_path: Path
) -> None:
    plugins = {"detect": {"model": str(tiny_model("rt_detr")), "threshold": 0.0, "max_boxes": 4}}
    (summary,) = scan(tmp_path, plugins, "detect,sidecar", photos)
    assert summary.tagged == 6 and summary.failed == 0, summary.failures
    doc = json.loads(sidecar_path(photos / "motorcycle.jpg").read_text(encoding="utf-8"))
    run_doc = doc["analyzers"]["detect"]
    assert run_doc["task"] == "detect" and 1 <= len(run_doc["regions"]) <= 4
    for region in run_doc["regions"]:
        assert region["kind"] == "object"
        box = Region(region["label"], region["score"], *(region["box"][k] for k in "xywh"))
        assert 0.0 <= box.x <= 1.0 and 0.0 <= box.y <= 1.0 and box.x + box.w <= 1.0 + 1e-6
    assert {t["name"] for t in run_doc["tags"]} == {r["label"] for r in run_doc["regions"]}
