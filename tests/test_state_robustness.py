"""The state DB under hostile conditions, with real SQLite files: names that are not UTF-8, damaged and foreign
files, a lock held by another process, a file this user may not write, dry runs that must not touch it,
`phototag state check`, and results recovered from JSON sidecars."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from phototag.cli import main
from phototag.config import Config
from phototag.errors import StateError
from phototag.files import make_photo
from phototag.plugins.sidecar import JsonSidecarWriter, sidecar_path
from phototag.recover import runs_from_sidecar
from phototag.sqlitedb import db_path, describe_error, path_from_db
from phototag.state import StateDB
from phototag.types import Analysis, AnalyzerRun, ModelInfo, Photo, PhotoResult, Region, Tag

ODD = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: not UTF-8, so Python holds a lone surrogate


def photo(path: Path, size: int = 10, mtime: int = 5, h: str = "h1") -> Photo:
    return Photo(path, size, mtime, h)


def filled_db(path: Path, n: int = 3000) -> None:
    """A real state DB with enough rows to span many pages; closed, so the WAL is folded into the file."""
    with StateDB(path) as db:
        for i in range(n):
            db.record_done(photo(Path(f"/photos/{i:05d}.jpg"), i, i, f"hash{i}"), {"classify": "f1"})


def corrupt_middle(path: Path) -> None:
    """Overwrite bytes in the middle half of the file (not the header page): it opens, queries fail."""
    data = bytearray(path.read_bytes())
    rng = random.Random(1)
    for offset in range(len(data) // 4, len(data) * 3 // 4, 512):
        data[offset : offset + 64] = rng.randbytes(64)
    path.write_bytes(bytes(data))


# -- names that are not UTF-8 -------------------------------------------------------------------------------------


def test_db_path_round_trips_any_name() -> None:
    odd = Path("/p") / ODD
    assert db_path(Path("/p/é.jpg")) == "/p/é.jpg"
    assert db_path(odd) == b"/p/caf\xe9.jpg"
    assert path_from_db(db_path(odd)) == odd
    assert path_from_db("/p/é.jpg") == Path("/p/é.jpg")


def test_state_db_keeps_names_that_are_not_utf8(tmp_path: Path) -> None:
    folder = Path("/photos") / ODD.replace(".jpg", "")  # a folder that is not UTF-8 either
    odd, inside, plain = Path("/photos") / ODD, folder / "x.jpg", Path("/photos/plain.jpg")
    with StateDB(tmp_path / "s.db") as db:
        db.record_done(photo(odd), {"classify": "f1"})
        db.record_done(photo(inside, h="h2"), {})
        db.record_done(photo(plain, h="h3"), {})
        db.record_failed(Path("/photos") / os.fsdecode(b"\xff.jpg"), 1, 2, f"{odd}: truncated")
        assert db.is_current(odd, 10, 5, {"classify": "f1"})
        rec = db.file_record(odd)
        assert rec is not None and rec.path == odd
        assert {r.path for r in db.records(under=Path("/photos"))} == {
            odd,
            inside,
            plain,
            Path("/photos") / os.fsdecode(b"\xff.jpg"),
        }
        assert [r.path for r in db.records(under=folder)] == [inside]
        assert db.records(under=Path("/other")) == []
        (failed,) = db.records(status="failed")
        assert failed.error == "/photos/caf\\xe9.jpg: truncated"
        assert db.paths_for_hash("h1") == [odd]

        renamed = Path("/photos/new") / os.fsdecode(b"\xe9t\xe9.jpg")
        db.rename(odd, renamed)
        assert db.file_record(odd) is None
        assert db.is_current(renamed, 10, 5, {"classify": "f1"})
        db.rename(renamed, Path("/photos/now-utf8.jpg"))  # BLOB -> TEXT
        assert db.is_current(Path("/photos/now-utf8.jpg"), 10, 5, {"classify": "f1"})
        db.forget(inside)
        assert db.records(under=folder) == []
        db.record_done(photo(odd), {}, outputs=[ODD + ".xmp"])  # the sidecar's name is not UTF-8 either
        rec = db.current_record(odd, 10, 5, {})
        assert rec is not None and rec.outputs == (ODD + ".xmp",)
    raw = (
        sqlite3.connect(tmp_path / "s.db").execute("SELECT typeof(path) FROM files ORDER BY path").fetchall()
    )
    assert ("blob",) in raw and ("text",) in raw  # both forms in the one column


# -- damaged, foreign, locked and read-only files ---------------------------------------------------------------


def test_a_file_of_random_bytes_is_a_clear_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(random.Random(2).randbytes(8192))
    with pytest.raises(StateError) as info:
        StateDB(path)
    message = str(info.value)
    assert str(path) in message and "damaged" in message and "not a database" in message
    assert f"mv {path} {path}.broken" in message and "phototag state check" in message


def test_a_damaged_page_is_a_state_error_at_the_query_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    filled_db(path)
    corrupt_middle(path)
    with StateDB(path) as db:  # the header and schema page are intact: it opens
        with pytest.raises(StateError) as info:
            db.records()
        with pytest.raises(StateError):
            for i in range(3000):  # a write that touches a damaged page fails inside its transaction
                db.record_done(photo(Path(f"/photos/{i:05d}.jpg"), 1, 1, "x"), {})
    message = str(info.value)
    assert message.startswith(f"{path}: the state database is damaged (database disk image is malformed)")
    assert "rebuilt from the photos and their JSON sidecars" in message


def test_a_lock_held_by_another_process_says_so(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    filled_db(path, 1)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with StateDB(path, busy_timeout=0.1) as db:
            assert len(db.records()) == 1  # WAL: readers are not blocked
            with pytest.raises(StateError, match=r"locked .*another process holds it"):
                db.forget(Path("/photos/00000.jpg"))
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_a_read_only_file_opens_for_reading_and_refuses_writes_clearly(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    filled_db(path, 1)
    path.chmod(0o444)
    with StateDB(path) as db:
        assert len(db.records()) == 1
        with pytest.raises(StateError, match=r"cannot write the state database .* may write the file"):
            db.forget(Path("/photos/00000.jpg"))


def test_the_message_for_a_read_only_file(tmp_path: Path) -> None:
    """The same error as above from real SQLite, as root too: a connection that may only read."""
    path = tmp_path / "state.db"
    filled_db(path, 1)
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as info:
        con.execute("DELETE FROM files")
    con.close()
    message = describe_error(path, "state database", info.value)
    assert message.startswith(
        f"{path}: cannot write the state database (attempt to write a readonly database)"
    )
    assert "state_db" in message


# -- read-only mode (dry runs) ------------------------------------------------------------------------------------


def test_readonly_creates_nothing_when_there_is_no_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    with StateDB(path, readonly=True) as db:
        assert db.records() == [] and db.cached_run("h", "classify", "f") is None
        db.record_done(photo(Path("/p/a.jpg")), {"classify": "f1"})  # accepted, thrown away
        db.store_runs("h1", [])
        assert db.records() == []
    assert not path.exists() and not path.parent.exists()


def test_readonly_leaves_an_existing_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    filled_db(path, 20)
    before = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns, path.stat().st_size)
    with StateDB(path, readonly=True) as db:
        assert len(db.records()) == 20
        assert db.is_current(Path("/photos/00003.jpg"), 3, 3, {"classify": "f1"})
        db.record_done(photo(Path("/photos/new.jpg")), {})
        db.forget(Path("/photos/00003.jpg"))
        db.rename(Path("/photos/00004.jpg"), Path("/photos/moved.jpg"))
        assert len(db.records()) == 20  # reads show the file, not the dry run's writes
    after = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns, path.stat().st_size)
    assert after == before


def test_readonly_reads_a_version_1_file_without_migrating_it(tmp_path: Path) -> None:
    from test_state import make_v1_db

    path = tmp_path / "state.db"
    make_v1_db(path)
    with StateDB(path, readonly=True) as db:
        (rec,) = db.records()
        assert rec.outputs == () and rec.content_hash == "h1"
        assert db.schema_version() == 1
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1


def test_readonly_path_with_uri_characters(tmp_path: Path) -> None:
    path = tmp_path / "a?b#c%20 d" / "state.db"
    filled_db(path, 2)
    with StateDB(path, readonly=True) as db:
        assert len(db.records()) == 2


# -- phototag state check -----------------------------------------------------------------------------------------


@pytest.fixture
def check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``check(state_db, *args)`` runs ``phototag --config <yaml setting state_db> state check *args``."""

    def run(state_db: Path, *args: str) -> tuple[int, str, str]:
        config = tmp_path / "config.yaml"
        config.write_text(f"state_db: {json.dumps(str(state_db))}\n")
        code = main(["-q", "--config", str(config), "state", "check", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_state_check_on_a_good_database(tmp_path: Path, check: Callable[..., tuple[int, str, str]]) -> None:
    from phototag.daemon.queue import WorkQueue

    path = tmp_path / "state.db"
    filled_db(path, 3)
    with StateDB(path) as db:
        db.record_failed(Path("/photos/bad.jpg"), 1, 1, "truncated")
        db.store_runs("hash0", [AnalyzerRun("classify", "classify", ModelInfo("m"), "f1", Analysis())])
    with WorkQueue(path) as queue:
        queue.enqueue([Path("/photos/q.jpg")])
    before = path.read_bytes()
    code, out, err = check(path)
    assert code == 0, err
    assert "schema version: 2" in out and "files: 4 (done 3, failed 1)" in out
    assert "cached runs: 1" in out and "embeddings: 0" in out and "queue: 1 waiting" in out
    assert out.rstrip().endswith("ok")
    code, out, _ = check(path, "--json")
    doc = json.loads(out)
    assert (
        code == 0 and doc["ok"] and doc["files"] == {"done": 3, "failed": 1} and doc["queue"]["waiting"] == 1
    )
    assert path.read_bytes() == before  # a check changes nothing


def test_state_check_on_a_damaged_database(
    tmp_path: Path, check: Callable[..., tuple[int, str, str]]
) -> None:
    path = tmp_path / "state.db"
    filled_db(path)
    corrupt_middle(path)
    code, out, err = check(path)
    assert code == 1
    assert "Traceback" not in out + err
    assert f"problem: {path}: the state database is damaged" in out and f"mv {path} {path}.broken" in out
    code, out, _ = check(path, "--json")
    doc = json.loads(out)
    assert code == 1 and not doc["ok"] and doc["problems"]


def test_state_check_on_random_bytes_and_on_no_file(
    tmp_path: Path, check: Callable[..., tuple[int, str, str]]
) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(random.Random(3).randbytes(4096))
    code, out, err = check(path)
    assert code == 1 and "not a database" in out and "Traceback" not in out + err
    code, out, _ = check(tmp_path / "none.db")
    assert code == 0 and "no state database" in out
    assert not (tmp_path / "none.db").exists()


# -- results recovered from JSON sidecars -------------------------------------------------------------------------


@pytest.fixture
def sidecar_photo(tmp_path: Path, make_config: Callable[..., Config]) -> tuple[Photo, PhotoResult]:
    """A real file with a real JSON sidecar written by the real writer: four runs, one failed, one embed."""
    path = tmp_path / "cat.jpg"
    path.write_bytes(b"not really a jpeg, but bytes with a hash")
    p = make_photo(path)
    runs = (
        AnalyzerRun(
            "classify",
            "classify",
            ModelInfo("m/classify", "r1"),
            "fp-classify",
            Analysis(tags=(Tag("Cat", 0.912345678, ("Animals", "Cat")),)),
            seconds=0.5,
        ),
        AnalyzerRun(
            "detect",
            "detect",
            ModelInfo("m/detect"),
            "fp-detect",
            Analysis(tags=(Tag("Cat", 0.8, ("Cat",)),), regions=(Region("Cat", 0.8, 0.1, 0.2, 0.3, 0.4),)),
        ),
        AnalyzerRun("caption", "caption", ModelInfo("m/caption"), "fp-caption", None, "out of memory"),
        AnalyzerRun("embed", "embed", ModelInfo("m/embed"), "fp-embed", Analysis(embedding=(0.6, 0.8))),
    )
    result = PhotoResult(p, 640, 480, runs)
    JsonSidecarWriter(make_config()).write(result)
    assert sidecar_path(path).exists()
    return p, result


FINGERPRINTS = {
    "classify": "fp-classify",
    "detect": "fp-detect",
    "caption": "fp-caption",
    "embed": "fp-embed",
}


def test_runs_come_back_from_a_real_sidecar(sidecar_photo: tuple[Photo, PhotoResult]) -> None:
    p, result = sidecar_photo
    runs = runs_from_sidecar(p.path, p.content_hash, FINGERPRINTS)
    assert sorted(runs) == ["classify", "detect"]  # never the failed run, never the embed run
    classify = runs["classify"]
    assert classify.fingerprint == "fp-classify" and classify.model == ModelInfo("m/classify", "r1")
    assert classify.analysis is not None
    # the scores as the sidecar holds them (rounded to 6 places)
    assert classify.analysis.tags == (Tag("Cat", 0.912346, ("Animals", "Cat")),)
    assert runs["detect"].analysis == result.runs[1].analysis


def test_other_bytes_or_other_models_are_not_recovered(sidecar_photo: tuple[Photo, PhotoResult]) -> None:
    p, _ = sidecar_photo
    assert runs_from_sidecar(p.path, "0" * 32, FINGERPRINTS) == {}
    changed = {**FINGERPRINTS, "classify": "fp-classify-v2"}
    assert sorted(runs_from_sidecar(p.path, p.content_hash, changed)) == ["detect"]
    assert sorted(runs_from_sidecar(p.path, p.content_hash, {"detect": "fp-detect"})) == ["detect"]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b'{"schema": "phototag/result", "schema_version": 99}',
        b'{"schema": "something else"}',
    ],
)
def test_garbage_sidecars_give_nothing(sidecar_photo: tuple[Photo, PhotoResult], content: bytes) -> None:
    p, _ = sidecar_photo
    sidecar_path(p.path).write_bytes(content)
    assert runs_from_sidecar(p.path, p.content_hash, FINGERPRINTS) == {}


def test_a_hand_edited_sidecar_with_wrong_types_gives_nothing(
    sidecar_photo: tuple[Photo, PhotoResult],
) -> None:
    p, _ = sidecar_photo
    doc = json.loads(sidecar_path(p.path).read_text())
    doc["analyzers"]["classify"]["tags"][0]["score"] = "high"
    sidecar_path(p.path).write_text(json.dumps(doc))
    assert runs_from_sidecar(p.path, p.content_hash, FINGERPRINTS) == {}
    doc["analyzers"]["classify"]["tags"][0].update(score=0.5, name=12)
    sidecar_path(p.path).write_text(json.dumps(doc))
    assert runs_from_sidecar(p.path, p.content_hash, FINGERPRINTS) == {}


def test_no_sidecar_gives_nothing(tmp_path: Path) -> None:
    assert runs_from_sidecar(tmp_path / "none.jpg", "h", FINGERPRINTS) == {}
