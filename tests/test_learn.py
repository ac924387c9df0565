"""``phototag learn``: the user tagged some photos (real photos and real variants of them: crops, flips,
exposure and colour changes, small rotations) in their metadata; the real pipeline embedded them with the
bundled model; ``learn`` trains on the user's keywords only (phototag's are recognised by its provenance);
the next scan writes the learned keywords on the held-out photos, as phototag's (``untag`` removes exactly
those). Keywords with too few photos are refused with a message."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image, ImageEnhance, ImageOps

from phototag.cli import CliState, cli
from phototag.exiftool import Exiftool, as_list
from phototag.learn import Model, choose_threshold, model_path, train, user_keywords_of
from phototag.manager import get_plugin_manager
from phototag.samples import _skimage_dir

PLUGINS = "embed,sidecar,xmp,learned"
SOURCES = {"cat": "chelsea.png", "coffee": "coffee.png", "motorcycle": "motorcycle_left.png",
           "camera": "camera.png", "rocket": "rocket.jpg"}  # fmt: skip
PER_SOURCE = 11
TAGGED = {  # keyword the user wrote -> (source, how many of its variants they tagged)
    ("Pets", "Anna"): ("cat", 8),
    ("Espresso",): ("coffee", 8),
    ("Things",): ("motorcycle", 8),
    ("Launch",): ("rocket", 3),  # too few
}


def variant(image: Image.Image, r: random.Random) -> Image.Image:
    w, h = image.size
    f = r.uniform(0.6, 0.9)
    cw, ch = int(w * f), int(h * f)
    x, y = r.randint(0, w - cw), r.randint(0, h - ch)
    v = image.crop((x, y, x + cw, y + ch))
    if r.random() < 0.5:
        v = ImageOps.mirror(v)
    v = ImageEnhance.Brightness(v).enhance(r.uniform(0.7, 1.3))
    v = ImageEnhance.Color(v).enhance(r.uniform(0.6, 1.4))
    return v.rotate(r.uniform(-10, 10), resample=Image.Resampling.BICUBIC)


def run(tmp: Path, *args: str) -> Result:
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": PLUGINS})
    pm.hook.register_commands(cli=cli)
    sets = ["--set", f"state_db={tmp / 'state.db'}", "--set", "plugins.learned.min_positives=8"]
    result = CliRunner().invoke(cli, [*sets, *args], obj=CliState(None, (), pm, []))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, exiftool_path: str) -> Path:
    """Variants of five photos; the user's keywords written into the first variants of four of them, as a
    photo app would (dc:subject, and lr:hierarchicalSubject for the hierarchical one); scanned once."""
    tmp = tmp_path_factory.mktemp("learn")
    photos = tmp / "photos"
    photos.mkdir()
    r = random.Random(0)
    for name, source in SOURCES.items():
        image = Image.open(_skimage_dir() / source).convert("RGB")
        for i in range(PER_SOURCE):
            variant(image, r).save(photos / f"{name}-{i:02d}.jpg", quality=90)
    with Exiftool(exiftool_path) as et:
        for path, (source, n) in TAGGED.items():
            for i in range(n):
                args = [f"-XMP-dc:Subject+={path[-1]}"]
                if len(path) > 1:
                    args.append(f"-XMP-lr:HierarchicalSubject+={'|'.join(path)}")
                et.write(photos / f"{source}-{i:02d}.jpg", *args, "-overwrite_original")
    run(tmp, "scan", str(photos))
    return tmp


# -- pure ---------------------------------------------------------------------------------------------------


def test_user_keywords_leave_out_phototags_own() -> None:
    tags = {
        "XMP-dc:Subject": ["Anna", "Cat", "Holiday"],
        "XMP-lr:HierarchicalSubject": ["Pets|Anna", "AI|Animals|Cat"],
        "XMP-phototag:AddedSubject": ["Cat"],
        "XMP-phototag:AddedHierarchy": ["AI|Animals|Cat"],
        "IPTC:Keywords": "Holiday",
    }
    assert user_keywords_of(tags) == {("Pets", "Anna"), ("Holiday",)}
    assert user_keywords_of({}) == set()


def test_threshold_is_the_lowest_that_reaches_the_precision() -> None:
    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([1, 1, 0, 1, 1, 0])
    threshold, precision, recall = choose_threshold(scores, labels, 0.8)  # type: ignore[misc]
    assert (threshold, precision, recall) == (0.6, 0.8, 1.0)
    assert choose_threshold(scores, labels, 1.0) == (0.9, 1.0, 0.5)
    assert choose_threshold(np.array([0.9, 0.8]), np.array([0, 1]), 0.9) is None


def test_too_few_examples_are_refused_and_the_model_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(1, 0.3, (20, 6)), rng.normal(-1, 0.3, (20, 6))])
    labels = {("A",): np.arange(40) < 20, ("B",): np.arange(40) < 3}
    hashes = [f"{i:032x}" for i in range(40)]
    model, reports = train(x, labels, "fp", hashes=hashes, min_positives=8)
    by_path = {r.path: r for r in reports}
    assert by_path[("B",)].refused == "3 photo(s), needs at least 8"
    assert by_path[("A",)].precision >= 0.9 and by_path[("A",)].recall > 0.5 and not by_path[("A",)].refused
    assert model.paths == (("A",),)
    model.save(tmp_path / "m.npz")
    again = Model.load(tmp_path / "m.npz")
    assert again.digest == model.digest and again.known == model.known
    assert again.predict(np.full(6, 1.0)) == model.predict(np.full(6, 1.0)) != []
    assert again.predict(np.full(6, 1.0), hashes[0]) == []  # the user tagged it: left to them
    assert again.predict(np.full(6, -1.0)) == []


# -- through the pipeline and the CLI -----------------------------------------------------------------------


def keywords(reader: Exiftool, photo: Path) -> tuple[set[str], set[str]]:
    """(dc:subject, phototag's AddedSubject) of a photo and its XMP sidecar together."""
    subject: set[str] = set()
    added: set[str] = set()
    for path in (photo, photo.with_name(photo.name + ".xmp")):
        if path.exists():
            tags = reader.read_tags(path, "XMP-dc:Subject", "XMP-phototag:AddedSubject")
            subject |= {str(v) for v in as_list(tags.get("XMP-dc:Subject"))}
            added |= {str(v) for v in as_list(tags.get("XMP-phototag:AddedSubject"))}
    return subject, added


def test_learn_then_scan_tags_held_out_photos(library: Path, reader: Exiftool) -> None:
    out = run(library, "learn").output
    assert "Launch" in out and "not learned: 3 photo(s), needs at least 8" in out
    for name in ("Pets|Anna", "Espresso", "Things"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        precision, recall = (float(v) for v in line.split()[2:4])
        assert precision >= 0.9 and recall > 0, line
    assert model_path(library / "state.db").is_file()
    assert "model unchanged" in run(library, "learn").output  # nothing changed: nothing rewritten

    photos = library / "photos"
    run(library, "scan", str(photos))
    expected = {"cat": "Anna", "coffee": "Espresso", "motorcycle": "Things"}
    learned = {"Anna", "Espresso", "Things", "Launch"}
    got = {
        f"{source}-{i:02d}": keywords(reader, photos / f"{source}-{i:02d}.jpg")[1] & learned
        for source in SOURCES
        for i in range(8, PER_SOURCE)  # held out: the user tagged none of these
    }
    wrong = {name: k for name, k in got.items() if k - {expected.get(name.split("-")[0], "")}}
    assert not wrong, got  # no photo gets another source's keyword (camera and rocket get none)
    for source, keyword in expected.items():
        hits = sum(keyword in k for name, k in got.items() if name.startswith(source))
        assert hits >= 2, (source, got)  # at least 2 of the 3 held-out variants
    # a learned keyword is written at the user's own path, not below the keyword root
    anna = next(name for name, k in got.items() if "Anna" in k)
    tags = reader.read_tags(photos / f"{anna}.jpg.xmp", "XMP-lr:HierarchicalSubject")
    hierarchy = [str(v) for v in as_list(tags.get("XMP-lr:HierarchicalSubject"))]
    assert "Pets|Anna" in hierarchy and "AI|Pets|Anna" not in hierarchy, hierarchy
    # a photo the user tagged keeps their keyword, and phototag adds nothing of its own for it
    subject, added = keywords(reader, photos / "cat-00.jpg")
    assert "Anna" in subject and "Anna" not in added
    run(library, "untag", str(photos))
    subject, added = keywords(reader, photos / "cat-00.jpg")
    assert "Anna" in subject  # the user's stays
    held_out = photos / "cat-09.jpg.xmp"
    assert not held_out.exists() or "Anna" not in keywords(reader, photos / "cat-09.jpg")[0]


def test_a_rejected_keyword_is_a_negative_example() -> None:
    """A photo on which you rejected a keyword (the web page's Review) teaches the model that it is not one:
    it counts as a negative, even where the keyword's positives came from similar photos."""
    r = np.random.default_rng(0)
    a = r.normal(1.0, 0.3, (12, 6))
    b = r.normal(-1.0, 0.3, (12, 6))
    x = np.vstack([a, b])
    y = np.array([True] * 12 + [False] * 12)
    other = ~y
    refused = np.zeros(24, dtype=bool)
    refused[:3] = True  # three of the A-looking photos: "not A", says the user
    _, plain = train(x, {("A",): y, ("B",): other}, "m", min_positives=4)
    _, taught = train(x, {("A",): y, ("B",): other}, "m", min_positives=4, rejected={("A",): refused})
    by = {rep.path: rep for rep in plain}
    taught_by = {rep.path: rep for rep in taught}
    assert by[("A",)].positives == 12 and taught_by[("A",)].positives == 9
