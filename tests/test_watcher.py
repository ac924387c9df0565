"""The watcher with real watchdog observers on temp folders: event shapes, polling, inotify fallback, overflow."""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from phototag.daemon.watcher import Change, Watcher, count_dirs, inotify_watches_in_use, kernel_watch_limit
from waiting import wait_for


class Recorder:
    def __init__(self) -> None:
        self.changes: list[Change] = []
        self._lock = threading.Lock()

    def __call__(self, change: Change) -> None:
        with self._lock:
            self.changes.append(change)

    def kinds(self, path: Path) -> list[str]:
        with self._lock:
            return [c.kind for c in self.changes if c.path == path or c.dest == path]

    def seen(self, path: Path) -> bool:
        return bool(self.kinds(path))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for sub in ("2024/01", "2024/02", "2025/01"):
        (root / sub).mkdir(parents=True)
    return root


@pytest.fixture
def watcher_factory() -> Iterator[Callable[..., tuple[Watcher, Recorder]]]:
    made: list[Watcher] = []

    def make(roots: list[Path], **kw: object) -> tuple[Watcher, Recorder]:
        rec = Recorder()
        w = Watcher(roots, rec, **kw)  # type: ignore[arg-type]
        w.start()
        made.append(w)
        return w, rec

    yield make
    for w in made:
        w.stop()
    leaked = [t.name for t in threading.enumerate() if "Emitter" in type(t).__name__ and t.is_alive()]
    assert leaked == []


def test_native_event_shapes(tree: Path, tmp_path: Path, watcher_factory) -> None:
    w, rec = watcher_factory([tree])
    assert w.modes == {tree: "inotify"}
    new = tree / "2024/01/new.jpg"
    new.write_bytes(b"x" * 100)
    # temp-then-rename save: only a move reaches the final name
    tmp = tree / "2024/01/.edit.jpg.tmp"
    tmp.write_bytes(b"y" * 100)
    final = tree / "2024/01/edited.jpg"
    os.rename(tmp, final)
    # a whole folder moved in from outside the tree
    outside = tmp_path / "card/DCIM"
    outside.mkdir(parents=True)
    (outside / "IMG_1.jpg").write_bytes(b"z")
    shutil.move(str(outside), str(tree / "2025/DCIM"))
    new.unlink()
    assert wait_for(lambda: rec.seen(tree / "2025/DCIM/IMG_1.jpg") and "deleted" in rec.kinds(new))
    assert rec.kinds(new)[:3] == ["created", "modified", "closed"]
    moves = [c for c in rec.changes if c.kind == "moved" and c.dest == final]
    assert moves and moves[0].path == tmp and "created" not in rec.kinds(final)
    assert "dir_created" in rec.kinds(tree / "2025/DCIM")
    assert all(c.root == tree and not c.polled for c in rec.changes)


def test_reading_a_photo_makes_no_event(tree: Path, watcher_factory) -> None:
    """The pipeline reads (hashes, decodes) every photo: those reads must not come back as events."""
    photo = tree / "2024/02/a.jpg"
    photo.write_bytes(b"x" * 1000)
    _, rec = watcher_factory([tree])
    for _ in range(3):
        photo.read_bytes()
    marker = tree / "2024/02/marker.jpg"
    marker.write_bytes(b"m")  # events are ordered: once the marker shows, the reads would have too
    assert wait_for(lambda: rec.seen(marker))
    assert rec.kinds(photo) == []


def test_polling_folders_report_with_polled_flag(tree: Path, tmp_path: Path, watcher_factory) -> None:
    other = tmp_path / "nas"
    other.mkdir()
    w, rec = watcher_factory([tree, other], poll_folders=[other], poll_interval=0.2)
    assert w.modes == {tree: "inotify", other: "polling"}
    assert w.reasons[other] == "listed in watch.poll_folders"
    (other / "deep").mkdir()
    (other / "deep" / "a.jpg").write_bytes(b"a")
    assert wait_for(lambda: rec.seen(other / "deep" / "a.jpg"))
    assert all(c.polled for c in rec.changes if c.root == other)
    assert w.summary() == "1 inotify, 1 polling"


def test_polling_everything(tree: Path, watcher_factory) -> None:
    w, rec = watcher_factory([tree], polling=True, poll_interval=0.2)
    assert w.modes == {tree: "polling"} and w.reasons[tree] == "watch.polling is on"
    (tree / "2025/01/b.jpg").write_bytes(b"b")
    assert wait_for(lambda: "created" in rec.kinds(tree / "2025/01/b.jpg"))


def test_watch_limit_below_the_tree_falls_back_to_polling(
    tree: Path, watcher_factory, caplog: pytest.LogCaptureFixture
) -> None:
    assert count_dirs(tree) == 6  # root, 2024, 2024/01, 2024/02, 2025, 2025/01
    caplog.set_level(logging.WARNING, "phototag.daemon.watcher")
    w, rec = watcher_factory([tree], watch_limit=inotify_watches_in_use() + 3, poll_interval=0.2)
    assert w.modes == {tree: "polling"}
    assert "6 folders" in w.reasons[tree]
    assert "max_user_watches" in caplog.text  # says how to fix it
    deep = tree / "2025/01/deep.jpg"
    deep.write_bytes(b"d")
    assert wait_for(lambda: rec.seen(deep))


def test_new_folders_beyond_the_limit_switch_the_root_to_polling(tree: Path, watcher_factory) -> None:
    w, rec = watcher_factory([tree], watch_limit=inotify_watches_in_use() + 10, poll_interval=0.2)
    assert w.modes == {tree: "inotify"}
    assert w.check_watches() == []  # nothing changed
    for i in range(8):
        (tree / f"new{i}").mkdir()
    assert wait_for(lambda: rec.seen(tree / "new7"))
    assert w.check_watches() == [tree]
    assert w.modes == {tree: "polling"}
    late = tree / "new7" / "late.jpg"
    late.write_bytes(b"l")
    assert wait_for(lambda: rec.seen(late))


def test_queue_overflow_warning_becomes_an_overflow_change(tree: Path, watcher_factory) -> None:
    """watchdog tells about a kernel queue overflow only in a log warning; the watcher turns it into a Change
    (the service rescans). The warning text is checked against watchdog's own source, so an upgrade that
    rewords it fails here instead of silently losing the rescan."""
    from watchdog.observers import inotify_c

    assert "Inotify queue overflowed" in inspect.getsource(inotify_c)
    _, rec = watcher_factory([tree])
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    assert [c.kind for c in rec.changes] == ["overflow"]


def test_stopped_watcher_stops_reporting(tree: Path) -> None:
    rec = Recorder()
    w = Watcher([tree], rec)
    w.start()
    w.stop()
    (tree / "after.jpg").write_bytes(b"a")
    time.sleep(0.3)
    assert rec.changes == []
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed")
    assert rec.changes == []


def test_watch_counting_matches_the_kernel(tree: Path, watcher_factory) -> None:
    before = inotify_watches_in_use()
    watcher_factory([tree])
    assert inotify_watches_in_use() - before == count_dirs(tree)
    limit = kernel_watch_limit()
    assert limit is None or limit > 0


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-U", "-r", "sh", "-c", "echo 100 > /proc/sys/user/max_inotify_watches"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not _unshare_works(), reason="needs user namespaces (unshare -U -r) to lower the kernel limit"
)
def test_real_kernel_watch_limit_is_detected_after_the_fact(tree: Path, tmp_path: Path) -> None:
    """In a user namespace with max_inotify_watches=8, another process holds 5 watches: the watcher's own
    count says 6 folders fit, the kernel accepts only 3, watchdog says nothing. The watcher notices from
    fdinfo, polls instead, and still reports a file in the deepest folder."""
    hog_dirs = [tmp_path / f"hog{i}" for i in range(5)]
    for d in hog_dirs:
        d.mkdir()
    hog = tmp_path / "hog.py"
    hog.write_text(
        textwrap.dedent("""
        import sys, time
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers.inotify import InotifyObserver
        observer = InotifyObserver()
        for d in sys.argv[1:]:
            observer.schedule(FileSystemEventHandler(), d)
        observer.start()
        print("ready", flush=True)
        time.sleep(60)
    """)
    )
    main = tmp_path / "main.py"
    main.write_text(
        textwrap.dedent(f"""
        import json, subprocess, sys, time
        from pathlib import Path
        from phototag.daemon.watcher import Watcher
        hog = subprocess.Popen([sys.executable, {str(hog)!r}, *{[str(d) for d in hog_dirs]!r}],
                               stdout=subprocess.PIPE, text=True)
        assert hog.stdout.readline().strip() == "ready"
        root = Path({str(tree)!r})
        seen = []
        w = Watcher([root], seen.append, poll_interval=0.2)
        w.start()
        target = root / "2025/01/deep.jpg"
        target.write_bytes(b"d")
        deadline = time.time() + 10
        while time.time() < deadline and not any(c.path == target for c in seen):
            time.sleep(0.05)
        print(json.dumps({{"mode": w.modes[root], "reason": w.reasons.get(root, ""),
                          "seen": any(c.path == target for c in seen)}}))
        w.stop()
        hog.kill()
    """)
    )
    result = subprocess.run(
        ["unshare", "-U", "-r", "sh", "-c",
         f'echo 8 > /proc/sys/user/max_inotify_watches && exec "{sys.executable}" "{main}"'],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["mode"] == "polling"
    assert "accepted only" in doc["reason"]
    assert doc["seen"]
