"""The main loop's way from events and walks to the queue: what is a photo, when is it complete, what is gone.

Watcher events (:class:`~.watcher.Change`) feed the stability tracker; paths it finds complete go to the queue
unless they are done already or failed unchanged; deleted and moved-away paths are forgotten (tracker, queue,
state DB). A rescan walks every root and applies :func:`.reconcile.plan`. Everything here runs on the main loop's
thread and never calls the pipeline: records are read and forgotten through :class:`~.records.Records`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..config import Config
from ..errors import display
from .queue import WorkQueue
from .reconcile import plan
from .records import Records
from .scan import entered, relevant, walk
from .stability import FileStat, StabilityTracker, Verdict
from .watcher import Change

log = logging.getLogger(__name__)

CONFIRM = 0.5  # seconds a stat must stay unchanged after the quiet period (inotify roots)


class Intake:
    """For one configuration (a reload makes a new one). ``polled(root)``: is ``root`` polled (not inotify);
    ``in_flight()``: the worker's batch in progress; ``wake_worker()``: there is work; ``request_rescan()``:
    events were lost."""

    def __init__(
        self,
        config: Config,
        roots: Sequence[Path],
        queue: WorkQueue,
        records: Records,
        *,
        polled: Callable[[Path], bool],
        in_flight: Callable[[], frozenset[Path]],
        wake_worker: Callable[[], None],
        request_rescan: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.roots = list(roots)
        self.queue = queue
        self.records = records
        self._polled = polled
        self._in_flight = in_flight
        self._wake_worker = wake_worker
        self._request_rescan = request_rescan
        self._clock = clock
        s = config.watch
        self.tracker = StabilityTracker(
            s.stability_delay, confirm=CONFIRM, open_write_timeout=s.open_write_timeout
        )

    def root_of(self, path: Path) -> Path | None:
        for root in self.roots:
            if path.is_relative_to(root):
                return root
        return None

    # -- events ---------------------------------------------------------------------------------------------

    def handle(self, change: Change) -> None:
        """Interpret one watcher event."""
        now = self._clock()
        kind = change.kind
        if kind == "overflow":
            log.warning("the inotify event queue overflowed: events were lost; rescanning")
            self._request_rescan()
            return
        if kind in ("created", "modified", "closed"):
            self._touch(change.path, now, kind, change.polled)
        elif kind == "moved":
            self.gone(change.path)
            if change.dest is not None:
                self._touch(change.dest, now, "created", change.polled)
        elif kind == "deleted":
            self.gone(change.path)
        elif kind == "dir_deleted" and change.path in self.roots:
            # deleted or unmounted: keep its records (an unmounted share would otherwise cost a full re-hash),
            # watch it again when it is back (checked at every rescan)
            log.warning(
                "watched folder %s disappeared; its photos' records are kept until it is back", change.path
            )
        elif kind == "dir_deleted":
            self._gone_folder(change.path)
        elif kind in ("dir_created", "dir_moved"):
            if kind == "dir_moved":
                self._gone_folder(change.path)
            folder = change.dest if change.dest is not None else change.path
            self._arrived_folder(folder, now, change.polled)

    def _touch(self, path: Path, now: float, kind: str, polled: bool) -> None:
        root = self.root_of(path)
        if root is None or not relevant(path, root, self.config):
            return
        # polling cannot tell an open writer from a finished one; inotify can (write vs close-after-write)
        writing = None if polled else {"modified": True, "closed": False}.get(kind)
        self.tracker.touch(path, now, writing=writing, polled=polled)

    def gone(self, path: Path) -> None:
        """``path`` was deleted or moved away."""
        root = self.root_of(path)
        if root is None or not relevant(path, root, self.config):
            return
        self.tracker.forget(path)
        self.queue.remove([path])
        self.records.forget([path])

    def _gone_folder(self, folder: Path) -> None:
        self.tracker.forget_under(folder)
        self.queue.remove_under(folder)
        if self.root_of(folder) is not None:
            self.records.forget_under(folder)

    def _arrived_folder(self, folder: Path, now: float, polled: bool) -> None:
        """A folder appeared (created, or moved in): its files may predate our watch on it."""
        root = self.root_of(folder)
        if root is None or not entered(folder, root, self.config):
            return
        for path, _ in walk(folder, self.config):
            self.tracker.touch(path, now, polled=polled)

    # -- stability -> queue ---------------------------------------------------------------------------------

    def settle(self) -> None:
        """Stat the paths whose quiet period is over; queue the stable ones that need work."""
        now = self._clock()
        due = self.tracker.due(now)
        if not due:
            return
        in_flight = self._in_flight()
        ready: list[tuple[Path, FileStat]] = []
        for path in due:
            if path in in_flight:  # our own write of it is still settling: judge it after the batch
                self.tracker.touch(path, now)
                continue
            stat = _stat(path)
            if self.tracker.check(path, stat, now) is Verdict.READY and stat is not None:
                ready.append((path, stat))
        if ready:
            self._enqueue(ready, "event")

    def _enqueue(self, items: list[tuple[Path, FileStat]], reason: str) -> int:
        failed = self.queue.failed_stats()
        todo = []
        for path, stat in items:
            if failed.get(str(path)) == (stat.size, stat.mtime_ns):
                continue  # failed before and unchanged since: `phototag retry` requeues it
            if self.records.is_current(path):
                continue  # done and unchanged: our own metadata write, a touch, a rename back
            todo.append(path)
        added = self.queue.enqueue(todo, reason)
        if todo:
            log.debug("queued %d photos (%s)", len(todo), reason)
            self._wake_worker()
        return added

    # -- rescans --------------------------------------------------------------------------------------------

    def reconcile(self, *, initial: bool, progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """Walk every root and apply :func:`.reconcile.plan`: queue photos that are new or changed, let the
        tracker judge the ones written moments ago, forget the ones that are gone. ``initial``: also remove
        stale temp files; ``progress(n)``: ``n`` files looked at so far. Returns the counts of ``files``,
        ``queued``, ``pending`` (settling) and ``forgotten``."""
        settled_age = 2 * self.config.watch.stability_delay + 1
        waiting = self.queue.waiting()
        failed = self.queue.failed_stats()
        in_flight = {str(p) for p in self._in_flight()}
        totals = {"files": 0, "queued": 0, "pending": 0, "forgotten": 0}

        def walk_error(path: Path, why: str) -> None:
            # nothing is skipped silently: `phototag status` lists it with the reason
            reported.add(str(path))
            if str(path) not in failed:
                log.warning("%s: %s", display(path), why)
            self.queue.fail(path, f"{display(path)}: {why}")

        def looked_at(n: int) -> None:
            if progress is not None:
                progress(totals["files"] + n)

        for root in self.roots:
            known = self.records.known(root)
            walked: dict[str, FileStat] = {}
            reported: set[str] = set()
            for path, stat in walk(
                root, self.config, remove_stale_tmp=initial, progress=looked_at, on_error=walk_error
            ):
                walked[str(path)] = stat
            todo = plan(
                root,
                walked,
                known,
                failed,
                waiting=waiting,
                in_flight=in_flight,
                settling={str(p) for p in self.tracker.paths()},
                reported=reported,
                now=time.time(),
                settled_age=settled_age,
            )
            totals["files"] += todo.seen
            totals["queued"] += self._enqueue(todo.queue, "scan") if todo.queue else 0
            now = self._clock()
            for path in todo.settle:  # written moments ago: it may still be growing
                self.tracker.touch(path, now, polled=self._polled(root))
            totals["pending"] += len(todo.settle)
            if todo.kept:
                log.warning("%s is empty but %d photos are recorded under it: is it unmounted? Keeping their "
                            "records until it has files again", root, todo.kept)  # fmt: skip
            if todo.forget:
                self.records.forget(todo.forget)
                for path in todo.forget:
                    self.tracker.forget(path)
                self.queue.remove(todo.forget)
                totals["forgotten"] += len(todo.forget)
        return totals


def _stat(path: Path) -> FileStat | None:
    try:
        return FileStat.of(path.stat())
    except FileNotFoundError:
        return None
    except OSError:
        # unreadable (permissions): let the pipeline report the error with the file's name
        return FileStat(-1, -1)
