"""Watch folders with watchdog: native inotify by default, polling per folder by config or as a fallback.

The event handler only records the event (a :class:`Change`) and returns: it runs on watchdog's dispatch
thread, under its lock. Deciding what an event means is the service's job.

Events are hints; the daemon's rescans are the truth. What goes wrong, and what this module does about it
(measured on watchdog 7.1, see RELIABILITY.md):

- **Too few inotify watches.** watchdog drops a sub-folder it cannot watch without a word, so files there are
  silently missed. Before watching a folder natively we count its sub-folders against the free watches (the
  kernel's ``max_user_watches``, or the lower ``watch.inotify_watch_limit``); afterwards we count the watches
  the kernel really accepted (``/proc/self/fdinfo``). Short either way: that folder is polled instead, with a
  warning that says how to raise the limit. :meth:`Watcher.check_watches` repeats the count at every rescan
  (new sub-folders need watches too).
- **Event queue overflow.** The kernel drops events and watchdog only logs a warning: we listen for that
  warning and report a :class:`Change` of kind ``overflow``; the service rescans.
- **Network shares.** inotify does not see other hosts' writes: ``watch.polling`` or ``watch.poll_folders``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

log = logging.getLogger(__name__)

Kind = Literal[
    "created", "modified", "closed", "moved", "deleted", "dir_created", "dir_deleted", "dir_moved", "overflow"
]
Mode = Literal["inotify", "polling"]

# Only what changes content or names: no open/access/close-without-write events, so our own reads of a
# photo (hashing, decoding) do not come back as events.
EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
_KINDS: dict[type[FileSystemEvent], Kind] = {
    FileCreatedEvent: "created",
    FileModifiedEvent: "modified",
    FileClosedEvent: "closed",
    FileMovedEvent: "moved",
    FileDeletedEvent: "deleted",
    DirCreatedEvent: "dir_created",
    DirDeletedEvent: "dir_deleted",
    DirMovedEvent: "dir_moved",
}


@dataclass(frozen=True)
class Change:
    """One file-system event, as recorded by the handler. ``dest`` is set for moves; ``polled`` when it came
    from a polling observer (its events arrive once per poll)."""

    kind: Kind
    path: Path
    dest: Path | None = None
    root: Path | None = None
    polled: bool = False


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, polled: bool, sink: Callable[[Change], None]) -> None:
        self._root = root
        self._polled = polled
        self._sink = sink

    def dispatch(self, event: FileSystemEvent) -> None:
        kind = _KINDS.get(type(event))
        if kind is None:
            return
        dest = Path(os.fsdecode(event.dest_path)) if event.dest_path else None
        self._sink(Change(kind, Path(os.fsdecode(event.src_path)), dest, self._root, self._polled))


class _OverflowListener(logging.Handler):
    """watchdog reports a kernel queue overflow only as a log warning; turn that into a Change."""

    def __init__(self, sink: Callable[[Change], None]) -> None:
        super().__init__(logging.WARNING)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._sink(Change("overflow", Path("/")))


# -- inotify accounting --------------------------------------------------------------------------------------


def kernel_watch_limit() -> int | None:
    """The inotify watch limit for this user: the lower of the global sysctl and the user namespace's."""
    limits = []
    for name in ("/proc/sys/fs/inotify/max_user_watches", "/proc/sys/user/max_inotify_watches"):
        with contextlib.suppress(OSError, ValueError):
            limits.append(int(Path(name).read_text().strip()))
    return min(limits) if limits else None


def inotify_watches_in_use() -> int:
    """Watches held by this process's inotify instances (one ``inotify wd:`` line each in fdinfo)."""
    total = 0
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as f:
                total += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            continue
    return total


def count_dirs(root: Path) -> int:
    """Folders inotify needs a watch for under ``root`` (root included; symlinks not followed, like watchdog)."""
    count = 0
    stack = [os.fspath(root)]
    while stack:
        folder = stack.pop()
        count += 1
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                    except OSError:
                        continue
        except OSError:
            continue
    return count


# -- the watcher ---------------------------------------------------------------------------------------------


class Watcher:
    """Watches ``roots`` (recursively) and hands every relevant event to ``sink`` as a :class:`Change`.

    ``polling``: poll every root; ``poll_folders``: poll these roots (and roots below them); ``watch_limit``:
    cap on the inotify watches to use (None: the kernel's limit). ``sink`` is called from watchdog's threads
    and must only record the change.
    """

    def __init__(
        self,
        roots: Sequence[Path],
        sink: Callable[[Change], None],
        *,
        polling: bool = False,
        poll_folders: Sequence[Path] = (),
        poll_interval: float = 5.0,
        watch_limit: int | None = None,
    ) -> None:
        self.roots = [Path(r) for r in roots]
        self._sink = sink
        self._polling = polling
        self._poll_folders = [Path(p) for p in poll_folders]
        self._poll_interval = poll_interval
        self._watch_limit = watch_limit
        self._lock = threading.Lock()
        self._native: BaseObserver | None = None
        self._native_watches: dict[Path, ObservedWatch] = {}
        self._pollers: dict[Path, BaseObserver] = {}
        self._overflow = _OverflowListener(sink)
        self.modes: dict[Path, Mode] = {}
        self.reasons: dict[Path, str] = {}
        """Why a root is polled (config, or the fallback's message)."""

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        wd_logger = logging.getLogger("watchdog.observers")
        wd_logger.addHandler(self._overflow)
        if wd_logger.getEffectiveLevel() > logging.WARNING:
            wd_logger.setLevel(logging.WARNING)
        for root in self.roots:
            self._start_root(root)

    def _start_root(self, root: Path) -> None:
        if self._polling:
            self._poll(root, "watch.polling is on")
        elif any(root == p or root.is_relative_to(p) for p in self._poll_folders):
            self._poll(root, "listed in watch.poll_folders")
        else:
            self._watch_native(root)

    def stop(self) -> None:
        logging.getLogger("watchdog.observers").removeHandler(self._overflow)
        with self._lock:
            observers = [o for o in (self._native, *self._pollers.values()) if o is not None]
            self._native, self._pollers = None, {}
            self._native_watches.clear()
        for observer in observers:
            observer.stop()
        for observer in observers:
            observer.join(timeout=10)

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- native with fallback -----------------------------------------------------------------------------

    def _limit(self) -> int | None:
        kernel = kernel_watch_limit()
        if self._watch_limit is None:
            return kernel
        return self._watch_limit if kernel is None else min(kernel, self._watch_limit)

    def _watch_native(self, root: Path) -> None:
        needed = count_dirs(root)
        in_use = inotify_watches_in_use()
        limit = self._limit()
        if limit is not None and in_use + needed > limit:
            self._fall_back(root, f"it has {needed} folders and only {max(limit - in_use, 0)} of {limit} "
                                  f"inotify watches are free")  # fmt: skip
            return
        try:
            observer = self._native_observer()
            watch = observer.schedule(
                _Handler(root, False, self._sink), os.fspath(root), recursive=True, event_filter=EVENT_TYPES
            )
        except OSError as e:
            why = "the inotify watch limit is reached" if e.errno == errno.ENOSPC else f"inotify failed: {e}"
            self._fall_back(root, why)
            return
        accepted = inotify_watches_in_use() - in_use
        if accepted < needed and accepted < count_dirs(root):  # recount: folders may have gone meanwhile
            observer.unschedule(watch)
            self._fall_back(root, f"the kernel accepted only {accepted} of {needed} folder watches")
            return
        with self._lock:
            self._native_watches[root] = watch
        self.modes[root] = "inotify"
        self.reasons.pop(root, None)
        log.info("watching %s with inotify (%d folders)", root, needed)

    def _native_observer(self) -> BaseObserver:
        with self._lock:
            if self._native is None:
                from watchdog.observers.inotify import InotifyObserver

                self._native = InotifyObserver()
                self._native.start()
            return self._native

    def _fall_back(self, root: Path, why: str) -> None:
        limit = kernel_watch_limit()
        log.warning(
            "cannot watch %s with inotify: %s. Polling it every %g s instead. To watch it natively, raise the "
            "limit (now %s): sysctl fs.inotify.max_user_watches=524288 (and watch.inotify_watch_limit if set)",
            root, why, self._poll_interval, limit,
        )  # fmt: skip
        self._poll(root, f"inotify fallback: {why}")

    def _poll(self, root: Path, why: str) -> None:
        observer = PollingObserver(timeout=self._poll_interval)
        observer.schedule(_Handler(root, True, self._sink), os.fspath(root), recursive=True)
        observer.start()
        with self._lock:
            self._pollers[root] = observer
        self.modes[root] = "polling"
        self.reasons[root] = why
        log.info("polling %s every %g s (%s)", root, self._poll_interval, why)

    def check_watches(self) -> list[Path]:
        """Recount folders against accepted inotify watches; roots now short of watches are switched to
        polling (returned). Call at every rescan: new sub-folders need watches, and watchdog adds them
        silently or not at all."""
        with self._lock:
            native = dict(self._native_watches)
        if not native:
            return []
        needed = {root: count_dirs(root) for root in native}
        limit = self._limit()
        in_use = inotify_watches_in_use()
        over_cap = limit is not None and sum(needed.values()) > limit
        if in_use >= sum(needed.values()) and not over_cap:
            return []
        log.warning(
            "inotify watches %d < folders %d (or over the limit %s): re-checking each watched folder",
            in_use, sum(needed.values()), limit,
        )  # fmt: skip
        observer = self._native
        with self._lock:
            self._native_watches.clear()
        if observer is not None:
            for watch in native.values():
                observer.unschedule(watch)
        switched = []
        for root in native:
            self._watch_native(root)
            if self.modes.get(root) == "polling":
                switched.append(root)
        return switched

    def dead_roots(self) -> list[Path]:
        """Roots nobody watches any more: watchdog stops watching a root that is deleted (or unmounted)."""
        with self._lock:
            items: list[tuple[Path, BaseObserver | None, ObservedWatch | None]] = [
                (r, self._native, w) for r, w in self._native_watches.items()
            ]
            items += [(r, o, None) for r, o in self._pollers.items()]
        dead = []
        for root, observer, watch in items:
            emitters = observer.emitters if observer is not None else set()
            if not any(e.is_alive() for e in emitters if watch is None or e.watch == watch):
                dead.append(root)
        return dead

    def rewatch(self, root: Path) -> None:
        """Watch ``root`` afresh (it came back after being deleted or unmounted)."""
        with self._lock:
            watch = self._native_watches.pop(root, None)
            poller = self._pollers.pop(root, None)
            native = self._native
        if watch is not None and native is not None:
            with contextlib.suppress(KeyError, OSError):
                native.unschedule(watch)
        if poller is not None:
            poller.stop()
            poller.join(timeout=10)
        self._start_root(root)

    def summary(self) -> str:
        """``2 inotify, 1 polling``"""
        counts = {mode: sum(1 for m in self.modes.values() if m == mode) for mode in ("inotify", "polling")}
        return ", ".join(f"{n} {mode}" for mode, n in counts.items() if n) or "nothing"
