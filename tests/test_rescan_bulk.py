"""The bulk re-scan path: a folder's state read at once (``StateDB.done_in``), a dict lookup and a stat per photo
(``pipeline.DoneFolders``), and the walk's compiled name rules (``files._Rules``). Each must decide exactly as
the per-file path it replaces (``StateDB.is_done``, ``files.is_candidate``), and a re-scan must handle changed,
new, deleted and renamed photos among unchanged ones as before. Real photos, real SQLite, the JSON sidecar
writer; nothing here is timed (bench/pipeline_bench.py measures the speed)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from phototag import Analysis, DecodedImage, Device, ModelInfo, Needs, Tag, hookimpl
from phototag.config import Config
from phototag.files import _Rules, discover, is_candidate, iter_photos
from phototag.manager import get_plugin_manager, registered
from phototag.outcomes import Outcome
from phototag.pipeline import DoneFolders, Pipeline, _may_hold_temp_files
from phototag.plugins.sidecar import sidecar_path
from phototag.state import StateDB
from phototag.tempfiles import EXIFTOOL_SUFFIX, is_temp_name, own_temp_name
from phototag.types import fingerprint_of


class MeanColour:
    """Tags a photo with its dominant RGB channel (a real computation on the decoded pixels)."""

    task = "classify"
    needs = Needs(devices=("cpu",))
    input_size = 32

    def __init__(self, version: str = "1") -> None:
        self.name = "meancolour"
        self.version = version
        self.name_calls = 0

    def model_info(self) -> ModelInfo:
        return ModelInfo("test/meancolour", self.version)

    def fingerprint(self) -> str:
        return fingerprint_of(self.name, self.version)

    def load(self, device: Device) -> None:
        pass

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        self.name_calls += len(images)
        out = []
        for d in images:
            means = np.asarray(d.image.convert("RGB"), dtype=np.float32).mean(axis=(0, 1))
            label = ("Red", "Green", "Blue")[int(np.argmax(means))]
            out.append(Analysis(tags=(Tag(label, 0.9, ("Colour", label)),)))
        return out

    def unload(self) -> None:
        pass


class Plugin:
    def __init__(self, analyzer: MeanColour) -> None:
        self.analyzer = analyzer

    @hookimpl
    def register_analyzers(self, register, config):  # type: ignore[no-untyped-def]
        register(self.analyzer)


def scan(config: Config, roots: Sequence[Path], analyzer: MeanColour, **kw: object) -> list[Outcome]:
    """``phototag scan`` as cli.py runs it (walk listed first, then ``Pipeline.run``); outcomes in order."""
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    outcomes: list[Outcome] = []
    with registered(pm, Plugin(analyzer), "meancolour"), Pipeline.from_config(config, pm) as pipeline:
        pipeline.run(list(iter_photos(roots, config)), on_outcome=outcomes.append, **kw)  # type: ignore[arg-type]
        pipeline.state.close()
    return outcomes


@pytest.fixture
def tree(photos: Path, tmp_path: Path) -> Path:
    """Three folders of real photos, with names that sort around the range bounds of the bulk read: ``a``,
    ``a0`` (``0`` follows ``/``), ``a.b``, and a subfolder ``a/sub``."""
    root = tmp_path / "tree"
    jpgs = sorted(photos.glob("*.jpg"))
    for folder in ("a", "a0", "a.b", "a/sub"):
        (root / folder).mkdir(parents=True)
        for p in jpgs:
            shutil.copy2(p, root / folder / p.name)
    return root


def by_path(outcomes: Sequence[Outcome]) -> dict[str, str]:
    return {str(o.path): o.status for o in outcomes}


def test_unchanged_tree_is_all_skipped_and_changes_are_handled_as_before(tree: Path, make_config) -> None:
    config = make_config()
    first = scan(config, [tree], MeanColour())
    assert {o.status for o in first} == {"tagged"} and len(first) == 4 * 5

    # among unchanged photos: one changed, one new, one deleted, one renamed, one whose sidecar was deleted
    changed = tree / "a" / "cat.jpg"
    with open(changed, "ab") as f:
        f.write(b"\0" * 16)  # other bytes, size and mtime
    new = tree / "a0" / "new.jpg"
    shutil.copy2(tree / "a" / "rocket.jpg", new)
    with open(new, "ab") as f:
        f.write(b"\1" * 8)  # its own content hash
    deleted = tree / "a.b" / "rocket.jpg"
    deleted.unlink()
    sidecar_path(deleted).unlink()
    renamed_from, renamed = tree / "a" / "sub" / "astronaut.jpg", tree / "a" / "sub" / "moved.jpg"
    renamed_from.rename(renamed)
    sidecar_path(renamed_from).unlink()
    lost_sidecar = tree / "a0" / "motorcycle.jpg"
    sidecar_path(lost_sidecar).unlink()

    analyzer = MeanColour()
    second = scan(config, [tree], analyzer)
    statuses = by_path(second)
    assert statuses.pop(str(changed)) == "tagged"
    assert statuses.pop(str(new)) == "tagged"
    assert statuses.pop(str(renamed)) == "tagged"  # from the cache by content hash: no model time (below)
    assert statuses.pop(str(lost_sidecar)) == "rewritten"
    assert str(deleted) not in statuses and str(renamed_from) not in statuses
    assert set(statuses.values()) == {"skipped"} and len(statuses) == 4 * 5 - 4  # all the others
    assert analyzer.name_calls == 2  # the changed and the new photo
    assert sidecar_path(lost_sidecar).exists() and sidecar_path(renamed).exists()

    # and the third scan skips everything that exists
    third = scan(config, [tree], MeanColour())
    assert {o.status for o in third} == {"skipped"} and len(third) == 4 * 5  # one deleted, one new


def test_outcomes_keep_the_walk_order_when_skips_and_work_interleave(tree: Path, make_config) -> None:
    config = make_config(batch_size="2")
    scan(config, [tree], MeanColour())
    for name in ("cat.jpg", "rocket.jpg"):
        with open(tree / "a" / name, "ab") as f:
            f.write(b"\0")
    walk = list(iter_photos([tree], config))
    outcomes = scan(config, [tree], MeanColour())
    assert [o.path for o in outcomes] == walk
    assert [o.status for o in outcomes].count("tagged") == 2


def test_changed_settings_are_not_skipped(tree: Path, make_config) -> None:
    config = make_config()
    scan(config, [tree], MeanColour("1"))
    analyzer = MeanColour("2")
    again = scan(config, [tree], analyzer)  # another fingerprint: nothing is skipped, the model runs again
    assert {o.status for o in again} <= {"tagged", "rewritten"} and len(again) == 4 * 5
    assert analyzer.name_calls >= 5  # each distinct photo once; its copies elsewhere come from the cache


def test_force_and_dry_run_behave_as_before(tree: Path, make_config) -> None:
    config = make_config()
    scan(config, [tree], MeanColour())
    assert {o.status for o in scan(config, [tree], MeanColour(), force=True)} == {"tagged"}
    assert {o.status for o in scan(config, [tree], MeanColour(), dry_run=True)} == {"skipped"}


def test_bulk_test_agrees_with_the_per_file_test(tree: Path, make_config, tmp_path: Path) -> None:
    """For every photo in a tree with every kind of difference, the bulk test says done exactly when
    ``StateDB.is_done`` (the per-file test the pipeline used before) does."""
    config = make_config()
    odd = tree / "a" / os.fsdecode(b"caf\xe9.jpg")  # not UTF-8: stored as a BLOB
    shutil.copy2(tree / "a" / "cat.jpg", odd)
    nested = tree / os.fsdecode(b"f\xf6o")
    nested.mkdir()
    shutil.copy2(tree / "a" / "cat.jpg", nested / "cat.jpg")
    scan(config, [tree], MeanColour())
    with open(tree / "a" / "rocket.jpg", "ab") as f:
        f.write(b"\0")
    os.utime(tree / "a0" / "cat.jpg", ns=(1, 1))  # same size, other mtime
    sidecar_path(tree / "a.b" / "cat.jpg").unlink()
    shutil.copy2(tree / "a" / "cat.jpg", tree / "a" / "sub" / "unknown.jpg")

    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    with registered(pm, Plugin(MeanColour()), "meancolour"), Pipeline.from_config(config, pm) as pipeline:
        fingerprints = pipeline.fingerprints(refresh=True)
        cleaned: list[Path] = []
        bulk = DoneFolders(pipeline.state, pipeline.fingerprints, cleaned.append)
        answers = {}
        for path, st in discover(tree, config, lambda p, why: pytest.fail(f"{p}: {why}")):
            slow = pipeline.state.is_done(path, st.st_size, st.st_mtime_ns, fingerprints)
            assert bulk.is_done(path) == slow, path
            answers[path] = slow
        other = {**fingerprints, "meancolour": "another"}
        stale = DoneFolders(pipeline.state, lambda: other, cleaned.append)
        assert not any(stale.is_done(p) for p in answers)
        pipeline.state.close()
    assert answers[odd] and answers[nested / "cat.jpg"]
    assert not answers[tree / "a" / "rocket.jpg"] and not answers[tree / "a0" / "cat.jpg"]
    assert not answers[tree / "a.b" / "cat.jpg"] and not answers[tree / "a" / "sub" / "unknown.jpg"]
    assert sum(answers.values()) == len(answers) - 4
    assert not bulk.is_done(Path("a/cat.jpg"))  # relative: left to the batch stages


def test_done_in_reads_only_the_folder_itself(tmp_path: Path) -> None:
    from phototag.types import Photo

    db = StateDB(tmp_path / "state.db")
    fps = {"x": "1"}
    for p in ("/t/a/1.jpg", "/t/a/sub/2.jpg", "/t/a0/3.jpg", "/t/a.b/4.jpg", "/t/ab/5.jpg"):
        db.record_done(Photo(Path(p), 10, 20, "h"), fps, outputs=["o.xmp"])
    db.record_done(Photo(Path(os.fsdecode(b"/t/a/\xff.jpg")), 1, 2, "h"), fps)
    db.record_failed(Path("/t/a/failed.jpg"), 1, 2, "broken")
    db.record_done(Photo(Path("/t/a/old.jpg"), 1, 2, "h"), {"x": "0"})
    assert db.done_in(Path("/t/a"), fps) == {
        "1.jpg": (10, 20, '["o.xmp"]'),
        os.fsdecode(b"\xff.jpg"): (1, 2, "[]"),
    }
    assert set(db.done_in(Path("/t/a/"), fps)) == {"1.jpg", os.fsdecode(b"\xff.jpg")}
    assert db.done_in(Path("/t/a0"), fps) == {"3.jpg": (10, 20, '["o.xmp"]')}
    assert db.done_in(Path("/nowhere"), fps) == {}
    db.close()


@pytest.mark.parametrize(
    "exclude",
    [(), ("*/@eaDir/*", "*/#recycle/*", "*/.thumbnails/*"), ("*/skip/*", "*_small.jpg", "*/x[0-9]/*.png")],
)
def test_walk_rules_match_is_candidate(tmp_path: Path, make_config, exclude: tuple[str, ...]) -> None:
    config = make_config()
    config = config.model_copy(update={"exclude": exclude})
    names = [
        "a.jpg", "A.JPG", "b.Jpeg", ".hidden.jpg", "~lock.jpg", "a.jpg.xmp", "a.jpg.phototag.json",
        "x.jpg_exiftool_tmp", "a.phototag-tmp.jpg", "a.tmp", "a.jpg.part", "noext", "dot.", ".jpg",
        "a_small.jpg", "c.png", "raw.CR2", "q.txt", "İ.JPG",
    ]  # fmt: skip
    rules = _Rules(config)
    for folder in ("/p", "/p/skip/deeper", "/p/x1", "/p/@eaDir2"):
        for name in names:
            want = is_candidate(Path(folder, name), config)
            entered = not rules.excludes_all_in(Path(folder))
            assert (entered and rules.accepts(folder, name)) == want, (folder, name)


def test_walk_from_an_excluded_root_matches_is_candidate(tmp_path: Path, make_config, photos: Path) -> None:
    config = make_config()
    root = tmp_path / "@eaDir"
    shutil.copytree(photos, root)
    assert [p for p, _ in discover(root, config, lambda p, w: None)] == []
    assert not any(is_candidate(p, config) for p in root.iterdir())


def test_temp_file_prefilter_never_misses_a_temp_name() -> None:
    names = [
        own_temp_name(".tmp"),
        own_temp_name(".xmp"),
        own_temp_name(".xmp") + EXIFTOOL_SUFFIX,
        "photo.jpg" + EXIFTOOL_SUFFIX,
        ".cat.jpg.ab12.phototag-tmp",
        ".cat.jpg.xmp.phototag-0123abcd.xmp",
    ]
    for name in names:
        assert is_temp_name(name)
        assert _may_hold_temp_files(["cat.jpg", name, "cat.jpg.xmp"])
    assert not _may_hold_temp_files(["cat.jpg", "cat.jpg.xmp", "cat.jpg.phototag.json"])
    assert not _may_hold_temp_files([])
