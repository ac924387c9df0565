"""The persistent work queue: real SQLite in the state DB file, leases, crash recovery, backoff, failures."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from phototag.daemon.queue import WorkQueue
from phototag.state import StateDB


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


def paths(*names: str) -> list[Path]:
    return [Path("/photos") / n for n in names]


def test_lives_in_the_state_db_next_to_the_state_tables(db_path: Path) -> None:
    with StateDB(db_path):
        pass
    with WorkQueue(db_path) as q:
        q.enqueue(paths("a.jpg"))
    tables = {
        r[0] for r in sqlite3.connect(db_path).execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert {"files", "runs", "watch_queue", "watch_failed", "watch_meta"} <= tables
    assert sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_enqueue_is_idempotent_and_claims_are_fifo(db_path: Path) -> None:
    clock = Clock()
    with WorkQueue(db_path, clock=clock) as q:
        assert q.enqueue(paths("a.jpg", "b.jpg")) == 2
        clock.now += 1
        assert q.enqueue(paths("c.jpg", "a.jpg")) == 1  # a.jpg is already waiting: not twice
        jobs = q.claim(2)
        assert [j.path.name for j in jobs] == ["a.jpg", "b.jpg"]
        assert all(j.attempts == 1 for j in jobs)
        assert [j.path.name for j in q.claim(10)] == ["c.jpg"]
        assert q.claim(10) == []  # everything is leased
        assert q.counts().in_flight == 3
        assert q.get_meta("enqueued") == "3"


def test_complete_removes_and_counts_done(db_path: Path) -> None:
    with WorkQueue(db_path) as q:
        q.enqueue(paths("a.jpg", "b.jpg"))
        jobs = q.claim(10)
        assert q.complete([j.path for j in jobs]) == []
        c = q.counts()
        assert (c.queued, c.in_flight, c.done) == (0, 0, 2)


def test_a_path_changed_while_in_flight_is_looked_at_again_not_queued_twice(db_path: Path) -> None:
    with WorkQueue(db_path) as q:
        q.enqueue(paths("a.jpg"))
        (job,) = q.claim(10)
        assert q.enqueue([job.path]) == 0  # in flight: marked, not duplicated
        assert q.complete([job.path]) == [job.path]  # comes back once
        assert [j.path for j in q.claim(10)] == [job.path]


def test_recover_puts_back_what_a_dead_daemon_held_and_isolates_it(db_path: Path) -> None:
    with WorkQueue(db_path, owner="dead") as q:
        q.enqueue(paths("a.jpg", "b.jpg", "c.jpg", "d.jpg"))
        q.claim(2)  # a and b in flight when the daemon "dies" (the connection is simply dropped)
    with WorkQueue(db_path, owner="new") as q:
        assert sorted(p.name for p in q.recover()) == ["a.jpg", "b.jpg"]
        first = q.claim(8)
        assert [(j.path.name, j.crashes) for j in first] == [("a.jpg", 1)]  # a suspect goes alone
        second = q.claim(8)
        assert [(j.path.name, j.crashes) for j in second] == [("b.jpg", 1)]
        assert [j.path.name for j in q.claim(8)] == ["c.jpg", "d.jpg"]
        assert q.recover() == []  # our own leases are not "dead"


def test_recover_after_a_real_kill_9(db_path: Path) -> None:
    """A process that claimed a batch is killed with SIGKILL: the rows are still there, leased, and come back."""
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from phototag.daemon.queue import WorkQueue
        q = WorkQueue(Path({str(db_path)!r}))
        q.enqueue([Path('/p/a.jpg'), Path('/p/b.jpg'), Path('/p/c.jpg')])
        q.claim(2)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -9
    with WorkQueue(db_path) as q:
        assert q.counts().in_flight == 2
        assert sorted(p.name for p in q.recover()) == ["a.jpg", "b.jpg"]
        assert q.counts().in_flight == 0 and q.counts().queued == 3


def test_retry_later_waits_for_the_backoff(db_path: Path) -> None:
    clock = Clock()
    with WorkQueue(db_path, clock=clock) as q:
        q.enqueue(paths("a.jpg"))
        (job,) = q.claim(1)
        q.retry_later(job.path, "file busy", 30.0)
        assert q.claim(1) == []
        c = q.counts()
        assert (c.queued, c.retrying) == (0, 1)
        assert q.next_due() == pytest.approx(clock.now + 30.0)
        clock.now += 30.0
        (again,) = q.claim(1)
        assert again.attempts == 2


def test_release_gives_back_without_counting_the_attempt(db_path: Path) -> None:
    with WorkQueue(db_path) as q:
        q.enqueue(paths("a.jpg"))
        (job,) = q.claim(1)
        q.release([job.path])
        (again,) = q.claim(1)
        assert again.attempts == 1 and again.crashes == 0


def test_failures_are_listed_skipped_and_retried(db_path: Path) -> None:
    clock = Clock()
    with WorkQueue(db_path, clock=clock) as q:
        q.enqueue(paths("bad.jpg", "sub/worse.jpg", "ok.jpg"))
        for job in q.claim(10):
            if job.path.name != "ok.jpg":
                q.fail(job.path, f"{job.path}: truncated", 10, 20)
        failures = q.failures()
        assert [(f.path.name, f.error, f.attempts) for f in failures] == [
            ("bad.jpg", "/photos/bad.jpg: truncated", 1),
            ("worse.jpg", "/photos/sub/worse.jpg: truncated", 1),
        ]
        assert q.failed_stats()["/photos/bad.jpg"] == (10, 20)
        assert q.counts().failed == 2
        assert [p.name for p in q.retry_failed([Path("/photos/sub")])] == ["worse.jpg"]
        assert q.counts().failed == 1 and q.counts().queued == 1
        assert [p.name for p in q.retry_failed()] == ["bad.jpg"]
        assert q.counts().failed == 0


def test_remove_and_remove_under_leave_in_flight_rows(db_path: Path) -> None:
    with WorkQueue(db_path) as q:
        q.enqueue(paths("a/1.jpg", "a/2.jpg", "ab/3.jpg", "b.jpg"))
        (job,) = q.claim(1)  # a/1.jpg in flight
        q.remove_under(Path("/photos/a"))
        assert sorted(q.waiting()) == ["/photos/a/1.jpg", "/photos/ab/3.jpg", "/photos/b.jpg"]
        q.remove(paths("b.jpg"))
        q.drop([job.path])
        assert sorted(q.waiting()) == ["/photos/ab/3.jpg"]


def test_heartbeat_round_trips(db_path: Path) -> None:
    with WorkQueue(db_path) as q:
        assert q.daemon_info() is None
        q.heartbeat({"pid": 1, "roots": {"/p": "inotify"}})
        assert q.daemon_info() == {"pid": 1, "roots": {"/p": "inotify"}}


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    from phototag.errors import StateError

    with pytest.raises(StateError, match="state_db"):
        WorkQueue(blocker / "state.db")


def test_names_that_are_not_utf8_go_through_the_queue(db_path: Path) -> None:
    """Linux names are bytes: ``caf\\xe9.jpg`` (Latin-1) reaches Python as a str with a lone surrogate."""
    odd = Path("/photos/sub") / os.fsdecode(b"caf\xe9.jpg")
    odd_dir = Path("/photos") / os.fsdecode(b"\xff\xfe dir")
    with WorkQueue(db_path) as q:
        assert q.enqueue([odd, odd_dir / "x.jpg", Path("/photos/sub/ok.jpg")]) == 3
        assert str(odd) in q.waiting()
        jobs = q.claim(10)
        assert {j.path for j in jobs} == {odd, odd_dir / "x.jpg", Path("/photos/sub/ok.jpg")}
        assert q.enqueue([odd]) == 0  # in flight: marked, not duplicated
        assert q.complete([odd]) == [odd]
        (again,) = q.claim(10)
        assert again.path == odd
        q.fail(odd, f"{odd}: truncated", 10, 20)  # the message quotes the name
        (failure,) = q.failures()
        assert failure.path == odd and failure.error == "/photos/sub/caf\\xe9.jpg: truncated"
        assert q.failed_stats()[str(odd)] == (10, 20)
        q.retry_later(odd_dir / "x.jpg", f"{odd_dir}: busy", 0)
        assert q.retry_failed([Path("/photos/sub")]) == [odd]
        q.release([Path("/photos/sub/ok.jpg")])
        q.remove_under(Path("/photos/sub"))  # finds the BLOB row and the TEXT row below the folder
        assert q.waiting() == {str(odd_dir / "x.jpg")}
        q.remove_under(odd_dir)  # a folder that is not UTF-8 itself
        assert q.waiting() == set()
        assert q.counts().done == 1
