"""The service loop in-process, with real watchdog, real SQLite queue and state DB, and an injected processor.

The processor is the one part replaced here (the subprocess tests in test_daemon.py run the real pipeline): it
scripts outcomes per path and attempt, which is what retry, backoff, crash isolation and failure policy need. Like
the pipeline, it records what it finished in the state DB, where the service's main loop reads it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from phototag.config import Config
from phototag.daemon.queue import WorkQueue
from phototag.daemon.service import Service
from phototag.daemon.watcher import Change
from phototag.state import StateDB
from phototag.types import Photo
from waiting import wait_for

FINGERPRINTS = {"fake": "fake-1"}


@dataclass(frozen=True)
class Outcome:
    path: Path
    status: str
    message: str = ""
    transient: bool = False


Script = Callable[[Path, int], Outcome | None]


class FakeProcessor:
    """Records what it is asked, and on which thread (``calls``); ``script(path, attempt)`` returns an outcome,
    or None for "tagged" (recorded as done in the state DB, like the pipeline does)."""

    def __init__(self, script: Script | None = None, calls: list[tuple[str, str]] | None = None) -> None:
        self.script = script or (lambda path, attempt: None)
        self.done: dict[str, tuple[int, int]] = {}
        self.batches: list[list[Path]] = []
        self.calls = calls if calls is not None else []
        self.unloads = 0
        self.closed = False
        self.state: StateDB | None = None
        self._lock = threading.Lock()

    def _called(self, method: str) -> None:
        with self._lock:
            self.calls.append((method, threading.current_thread().name))

    def build(self, config: Config) -> FakeProcessor:
        """The service's ``make_processor``."""
        self._called("build")
        self.state = StateDB(config.state_db)
        return self

    def attempts(self, path: Path) -> int:
        with self._lock:
            return sum(path in b for b in self.batches)

    def process(self, paths: Sequence[Path]) -> list[Outcome]:
        self._called("process")
        assert self.state is not None
        with self._lock:
            self.batches.append(list(paths))
        out = []
        for p in paths:
            outcome = self.script(p, self.attempts(p))
            if outcome is None:
                st = p.stat()
                self.state.record_done(Photo(p, st.st_size, st.st_mtime_ns, "hash"), FINGERPRINTS)
                with self._lock:
                    self.done[str(p)] = (st.st_size, st.st_mtime_ns)
                outcome = Outcome(p, "tagged")
            out.append(outcome)
        return out

    def fingerprints(self) -> dict[str, str]:
        self._called("fingerprints")
        return dict(FINGERPRINTS)

    def unload_models(self) -> None:
        self._called("unload_models")
        self.unloads += 1

    def close(self) -> None:
        self._called("close")
        self.closed = True
        if self.state is not None:
            self.state.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    return folder


@pytest.fixture
def running(make_config, root: Path) -> Iterator[Callable[..., tuple[Service, FakeProcessor]]]:
    """Start a Service in a thread: ``running(processor, **config overrides)``; stopped at the end."""
    started: list[tuple[Service, threading.Thread]] = []

    def start(processor: FakeProcessor, **overrides: str) -> tuple[Service, FakeProcessor]:
        settings = {"watch.stability_delay": "0.1", "watch.retry_delay": "0.1", **overrides}
        config = make_config(**settings)
        service = Service(config, processor.build, roots=[root], install_signals=False)
        thread = threading.Thread(target=service.run, name="service-main", daemon=True)
        thread.start()
        assert wait_for(lambda: service.worker is not None and service.worker.is_alive())
        started.append((service, thread))
        return service, processor

    yield start
    for service, thread in started:
        service.request_stop()
        thread.join(30)
        assert not thread.is_alive()


def record(config: Config, path: Path) -> object:
    with StateDB(config.state_db) as db:
        return db.file_record(path)


def photo(root: Path, name: str, data: bytes = b"\xff\xd8 jpeg bytes") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def queue_of(service: Service) -> WorkQueue:
    assert service.queue is not None
    return service.queue


def test_transient_failures_are_retried_with_backoff(running, root: Path) -> None:
    def script(path: Path, attempt: int) -> Outcome | None:
        return Outcome(path, "failed", f"{path}: disk full", True) if attempt <= 2 else None

    service, proc = running(FakeProcessor(script))
    p = photo(root, "a.jpg")
    assert wait_for(lambda: str(p) in proc.done)
    assert proc.attempts(p) == 3
    assert queue_of(service).failures() == []


def test_too_many_transient_failures_end_on_the_failed_list(running, root: Path) -> None:
    def script(path: Path, attempt: int) -> Outcome | None:
        return Outcome(path, "failed", f"{path}: file is locked", True)

    service, proc = running(FakeProcessor(script), **{"watch.max_attempts": "3"})
    p = photo(root, "locked.jpg")
    assert wait_for(lambda: len(queue_of(service).failures()) == 1)
    (failure,) = queue_of(service).failures()
    assert failure.path == p and failure.attempts == 3 and "file is locked" in failure.error
    assert proc.attempts(p) == 3


def test_permanent_failure_is_not_retried_until_the_file_changes(running, root: Path) -> None:
    def script(path: Path, attempt: int) -> Outcome | None:
        if path.read_bytes().startswith(b"bad"):
            return Outcome(path, "failed", f"{path}: not an image")
        return None

    service, proc = running(FakeProcessor(script))
    p = photo(root, "bad.jpg", b"bad bytes")
    assert wait_for(lambda: len(queue_of(service).failures()) == 1)
    service.request_rescan()
    time.sleep(0.6)
    assert proc.attempts(p) == 1  # the rescan skips an unchanged failure
    p.write_bytes(b"good bytes now")
    assert wait_for(lambda: str(p) in proc.done)
    assert queue_of(service).failures() == []


def test_a_file_that_vanished_is_dropped_and_forgotten(running, root: Path, make_config) -> None:
    def script(path: Path, attempt: int) -> Outcome | None:
        path.unlink()
        return Outcome(path, "failed", f"{path}: file vanished before it was read", True)

    p = root / "gone.jpg"
    with StateDB(make_config().state_db) as db:  # done once, before it changed
        db.record_done(Photo(p, 1, 1, "old"), FINGERPRINTS)
    service, proc = running(FakeProcessor(script))
    photo(root, "gone.jpg")
    assert wait_for(lambda: proc.attempts(p) == 1 and record(service.config, p) is None)
    time.sleep(0.3)
    assert (
        proc.attempts(p) == 1
        and queue_of(service).failures() == []
        and str(p) not in queue_of(service).waiting()
    )


def test_photos_a_dead_daemon_held_are_redone_alone_and_given_up_after_three_crashes(
    running, root: Path, make_config
) -> None:
    a, b, c = photo(root, "a.jpg"), photo(root, "b.jpg"), photo(root, "c.jpg")
    db = make_config().state_db
    with WorkQueue(db, owner="dead") as q:  # a daemon claimed all three, then died
        q.enqueue([a, b, c])
        q.claim(3)
    with sqlite3.connect(db) as conn:  # and c had already taken two daemons down before
        conn.execute("UPDATE watch_queue SET crashes = 2 WHERE path = ?", (str(c),))
    service, proc = running(FakeProcessor())
    assert wait_for(lambda: {str(a), str(b)} <= set(proc.done) and len(queue_of(service).failures()) == 1)
    assert [len(batch) for batch in proc.batches if a in batch or b in batch] == [1, 1]  # one at a time
    (failure,) = queue_of(service).failures()
    assert failure.path == c and "stopped 3 times" in failure.error and "phototag retry" in failure.error
    assert proc.attempts(c) == 0  # never opened again


def test_overflow_rescans_and_finds_what_events_missed(running, root: Path) -> None:
    service, proc = running(FakeProcessor(), **{"watch.rescan_interval": "0"})
    assert service.watcher is not None
    service.watcher.stop()  # from here on, events are "lost"
    p = photo(root, "missed/a.jpg")
    time.sleep(0.5)
    assert str(p) not in proc.done
    service.submit(Change("overflow", Path("/")))
    assert wait_for(lambda: str(p) in proc.done)


def test_periodic_rescan_finds_what_events_missed(running, root: Path) -> None:
    service, proc = running(FakeProcessor(), **{"watch.rescan_interval": "0.5"})
    assert service.watcher is not None
    service.watcher.stop()
    p = photo(root, "later/b.jpg")
    assert wait_for(lambda: str(p) in proc.done)


def test_an_empty_root_keeps_its_records(
    running, root: Path, make_config, caplog: pytest.LogCaptureFixture
) -> None:
    """A root that is suddenly empty (an unmounted share) must not make the daemon forget every photo."""
    config = make_config()
    with StateDB(config.state_db) as db:
        for name in ("x.jpg", "y.jpg"):
            db.record_done(Photo(root / name, 1, 1, name), FINGERPRINTS)
    caplog.set_level(logging.WARNING, "phototag.daemon")
    running(FakeProcessor())
    assert wait_for(lambda: "is it unmounted" in caplog.text)
    assert record(config, root / "x.jpg") is not None and record(config, root / "y.jpg") is not None


def test_a_deleted_root_is_watched_again_when_it_comes_back(running, root: Path) -> None:
    service, proc = running(FakeProcessor(), **{"watch.rescan_interval": "0.5"})
    shutil.rmtree(root)
    time.sleep(0.3)
    root.mkdir()
    assert service.watcher is not None
    assert wait_for(
        lambda: root not in service.watcher.dead_roots() and service.watcher.modes[root] == "inotify"
    )
    p = photo(root, "back.jpg")
    assert wait_for(lambda: str(p) in proc.done)


def test_models_are_unloaded_when_idle(running, root: Path) -> None:
    _, proc = running(FakeProcessor(), **{"watch.idle_unload": "0.3"})
    photo(root, "a.jpg")
    assert wait_for(lambda: proc.unloads == 1)
    time.sleep(0.5)
    assert proc.unloads == 1  # once per idle period, not again and again


def test_stop_closes_the_processor(make_config, root: Path) -> None:
    proc = FakeProcessor()
    service = Service(make_config(), proc.build, roots=[root], install_signals=False)
    thread = threading.Thread(target=service.run)
    thread.start()
    assert wait_for(lambda: service.worker is not None)
    service.request_stop()
    thread.join(30)
    assert proc.closed and not service.abandoned


def test_roots_must_be_folders(make_config, tmp_path: Path) -> None:
    from phototag.errors import PhototagError

    service = Service(make_config(), FakeProcessor().build, roots=[tmp_path / "nope"], install_signals=False)
    with pytest.raises(PhototagError, match="not a folder"):
        service.run()


def test_a_processor_that_cannot_be_built_stops_the_start(make_config, root: Path) -> None:
    from phototag.errors import PhototagError

    def broken(config: Config) -> FakeProcessor:
        raise PhototagError("plugins.nope: no plugin reads this section")

    service = Service(make_config(), broken, roots=[root], install_signals=False)
    with pytest.raises(PhototagError, match="no plugin reads"):
        service.run()
    assert service.worker is not None and not service.worker.is_alive()


def test_only_the_worker_thread_calls_the_processor(make_config, root: Path) -> None:
    """The pipeline is not thread-safe: the worker builds, calls and closes it; the main loop (events, rescans,
    forgetting deleted photos, reloads, status) uses the state DB and the fingerprints the worker published."""
    calls: list[tuple[str, str]] = []
    built: list[FakeProcessor] = []

    def make(config: Config) -> FakeProcessor:
        built.append(FakeProcessor(calls=calls).build(config))
        return built[-1]

    settings = {"watch.stability_delay": "0.1", "watch.idle_unload": "0.3", "watch.rescan_interval": "0.3"}
    config = make_config(**settings)
    service = Service(config, make, roots=[root], reload_config=lambda: config, install_signals=False)
    main = threading.Thread(target=service.run, name="service-main")
    old = photo(root, "old.jpg")
    main.start()
    assert wait_for(lambda: bool(built) and str(old) in built[0].done)  # the start-up scan
    a = photo(root, "sub/a.jpg")  # an event
    assert wait_for(lambda: str(a) in built[0].done)
    a.unlink()  # forgotten by the main loop
    assert wait_for(lambda: record(config, a) is None)
    assert wait_for(lambda: built[0].unloads >= 1)  # idle
    service.request_reload()
    assert wait_for(lambda: len(built) == 2 and built[0].closed)
    b = photo(root, "b.jpg")
    assert wait_for(lambda: str(b) in built[1].done)
    time.sleep(0.5)  # rescans see everything done: nothing processed twice
    assert sum(len(p.batches) for p in built) == 3
    service.request_stop()
    main.join(30)
    assert not main.is_alive() and built[1].closed
    assert {m for m, _ in calls} == {"build", "fingerprints", "process", "unload_models", "close"}
    assert {thread for _, thread in calls} == {"phototag-worker"}


def test_a_relative_root_gives_events_and_walks_the_same_paths(
    make_config, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``phototag watch ..``: the walk, the events and the records all name a photo by one absolute path, so a
    rescan does not take a photo an event brought in for a new one."""
    (root / "sub").mkdir()
    monkeypatch.chdir(root / "sub")
    old = photo(root, "old.jpg")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    proc = FakeProcessor()
    config = make_config(**{"watch.stability_delay": "0.1", "watch.rescan_interval": "0.3"})
    service = Service(config, proc.build, roots=[Path("..")], install_signals=False)
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        assert wait_for(lambda: str(old) in proc.done)  # the start-up walk
        new = photo(root, "new.jpg")
        assert wait_for(lambda: str(new) in proc.done)  # an event
        time.sleep(1.0)  # a few rescans
        assert sorted(proc.done) == [str(new), str(old)] and len(proc.batches) == 2
    finally:
        service.request_stop()
        thread.join(30)
