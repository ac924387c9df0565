"""State DB: stat-only currency, result cache by content, embeddings, crash-safe transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from phototag.errors import StateError
from phototag.state import StateDB
from phototag.types import Analysis, AnalyzerRun, ModelInfo, Photo, Tag


def photo(path: str = "/p/a.jpg", size: int = 10, mtime: int = 5, h: str = "h1") -> Photo:
    return Photo(Path(path), size, mtime, h)


def run(name: str = "classify", fp: str = "f1", embedding: tuple[float, ...] | None = None) -> AnalyzerRun:
    task = "embed" if embedding else "classify"
    analysis = Analysis(tags=(Tag("Cat", 0.9, ("Animals", "Cat")),), embedding=embedding)
    return AnalyzerRun(name, task, ModelInfo("m", "r"), fp, analysis)  # type: ignore[arg-type]


def test_is_current_compares_stat_and_fingerprints(tmp_path: Path) -> None:
    with StateDB(tmp_path / "s.db") as db:
        p = photo()
        assert not db.is_current(p.path, 10, 5, {"classify": "f1"})
        db.record_done(p, {"classify": "f1"})
        assert db.is_current(p.path, 10, 5, {"classify": "f1"})
        assert not db.is_current(p.path, 11, 5, {"classify": "f1"})
        assert not db.is_current(p.path, 10, 6, {"classify": "f1"})
        assert not db.is_current(p.path, 10, 5, {"classify": "f2"})
        assert not db.is_current(p.path, 10, 5, {"classify": "f1", "detect": "d"})


def test_failed_is_not_current_and_keeps_error(tmp_path: Path) -> None:
    with StateDB(tmp_path / "s.db") as db:
        db.record_failed(Path("/p/bad.jpg"), 3, 4, "truncated")
        rec = db.file_record(Path("/p/bad.jpg"))
        assert rec is not None and rec.status == "failed" and rec.error == "truncated"
        assert not db.is_current(Path("/p/bad.jpg"), 3, 4, {})
        assert db.counts() == {"failed": 1}


def test_run_cache_by_content_and_embeddings(tmp_path: Path) -> None:
    with StateDB(tmp_path / "s.db") as db:
        db.store_runs("h1", [run(), run("embed", "e1", (0.6, 0.8))])
        cached = db.cached_run("h1", "classify", "f1")
        assert cached is not None and cached.analysis is not None
        assert cached.analysis.tags == (Tag("Cat", 0.9, ("Animals", "Cat")),)
        assert db.cached_run("h1", "classify", "other") is None
        emb = db.cached_run("h1", "embed", "e1")
        assert emb is not None and emb.analysis is not None
        assert emb.analysis.embedding == pytest.approx((0.6, 0.8))
        hashes = [h for h, _ in db.embeddings("e1")]
        assert hashes == ["h1"]
        np.testing.assert_allclose(db.embeddings("e1")[0][1], [0.6, 0.8], rtol=1e-6)


def test_errors_are_not_cached(tmp_path: Path) -> None:
    with StateDB(tmp_path / "s.db") as db:
        failed = AnalyzerRun("classify", "classify", ModelInfo("m"), "f1", None, "boom")
        db.store_runs("h1", [failed])
        assert db.cached_run("h1", "classify", "f1") is None


def test_rename_and_forget(tmp_path: Path) -> None:
    with StateDB(tmp_path / "s.db") as db:
        db.record_done(photo("/p/a.jpg"), {"x": "1"})
        db.rename(Path("/p/a.jpg"), Path("/p/b.jpg"))
        assert db.file_record(Path("/p/a.jpg")) is None
        rec = db.file_record(Path("/p/b.jpg"))
        assert rec is not None and rec.content_hash == "h1"
        assert db.paths_for_hash("h1") == [Path("/p/b.jpg")]
        assert [r.path for r in db.records(under=Path("/p"))] == [Path("/p/b.jpg")]
        assert db.records(under=Path("/q")) == []
        db.forget(Path("/p/b.jpg"))
        assert db.counts() == {}


def test_rolled_back_transaction_leaves_old_state(tmp_path: Path) -> None:
    with StateDB(tmp_path / "s.db") as db:
        db.record_done(photo(), {"classify": "f1"})
        bad = AnalyzerRun("classify", "classify", ModelInfo("m"), "f1", Analysis(tags=(Tag("x", 1.0),)))
        object.__setattr__(bad, "fingerprint", object())  # not serialisable: fails mid-transaction
        with pytest.raises((sqlite3.Error, TypeError)):
            db.store_runs("h2", [run(fp="ok"), bad])
        assert db.cached_run("h2", "classify", "ok") is None  # the first insert was rolled back too
        assert db.is_current(Path("/p/a.jpg"), 10, 5, {"classify": "f1"})


def test_unusable_path_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="state_db"):
        StateDB(blocker / "s.db")


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    StateDB(path).close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version=99")
    con.close()
    with pytest.raises(StateError, match="newer"):
        StateDB(path)


# -- outputs and schema version 2 ---------------------------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, content_hash TEXT,
    status TEXT NOT NULL, error TEXT, fingerprints TEXT NOT NULL DEFAULT '{}', updated REAL NOT NULL);
CREATE INDEX files_hash ON files(content_hash);
CREATE INDEX files_status ON files(status);
CREATE TABLE runs (content_hash TEXT NOT NULL, analyzer TEXT NOT NULL, fingerprint TEXT NOT NULL, run TEXT NOT NULL,
    created REAL NOT NULL, PRIMARY KEY (content_hash, analyzer, fingerprint));
CREATE TABLE embeddings (content_hash TEXT NOT NULL, model TEXT NOT NULL, dims INTEGER NOT NULL,
    vector BLOB NOT NULL, PRIMARY KEY (content_hash, model));
PRAGMA user_version=1;
"""


def make_v1_db(path: Path) -> None:
    """A state DB exactly as the first release (schema version 1) left it, with one done file."""
    con = sqlite3.connect(path)
    con.executescript(V1_SCHEMA)
    con.execute(
        "INSERT INTO files VALUES ('/p/a.jpg', 10, 5, 'h1', 'done', NULL, '{\"classify\": \"f1\"}', 1.0)"
    )
    con.commit()
    con.close()


def test_outputs_are_recorded_and_given_with_the_current_record(tmp_path: Path) -> None:
    with StateDB(tmp_path / "s.db") as db:
        db.record_done(photo(), {"classify": "f1"}, outputs=["a.jpg.xmp", "a.jpg.phototag.json"])
        rec = db.current_record(Path("/p/a.jpg"), 10, 5, {"classify": "f1"})
        assert rec is not None and rec.outputs == ("a.jpg.xmp", "a.jpg.phototag.json")
        assert db.current_record(Path("/p/a.jpg"), 10, 6, {"classify": "f1"}) is None
        assert db.current_record(Path("/p/a.jpg"), 10, 5, {"classify": "f2"}) is None
        assert db.is_current(Path("/p/a.jpg"), 10, 5, {"classify": "f1"})
        db.record_done(photo(), {"classify": "f1"})  # a later run that wrote nothing
        assert db.records()[0].outputs == ()
        with pytest.raises(ValueError, match="not paths"):
            db.record_done(photo(), {}, outputs=["/p/a.jpg.xmp"])
    with StateDB(tmp_path / "s.db") as db:  # survives reopening
        db.record_done(photo(), {}, outputs=["a.jpg.xmp"])
    with StateDB(tmp_path / "s.db") as db:
        assert db.records()[0].outputs == ("a.jpg.xmp",)


def test_a_version_1_database_is_migrated_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    make_v1_db(path)
    with StateDB(path) as db:
        rec = db.current_record(Path("/p/a.jpg"), 10, 5, {"classify": "f1"})
        assert rec is not None and rec.content_hash == "h1" and rec.outputs == ()
        db.record_done(photo("/p/b.jpg"), {}, outputs=["b.jpg.xmp"])
        assert [r.outputs for r in db.records()] == [(), ("b.jpg.xmp",)]
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    assert "outputs" in {r[1] for r in con.execute("PRAGMA table_info(files)")}
    con.close()
    with StateDB(path) as db:  # a second open finds nothing to do
        assert len(db.records()) == 2


def test_a_v1_table_without_a_version_number_is_migrated_too(tmp_path: Path) -> None:
    """A crash between creating the tables and stamping the version (the old open did not do both at once)."""
    path = tmp_path / "s.db"
    make_v1_db(path)
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version=0")
    con.close()
    with StateDB(path) as db:
        assert [r.outputs for r in db.records()] == [()]
