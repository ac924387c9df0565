"""The watch service: events -> stability -> persistent queue -> worker, with systemd integration.

Threads: watchdog's observers (the handler only records a :class:`~.watcher.Change` and wakes the main loop),
the main loop (this module: interprets events, judges stability, enqueues, rescans, talks to systemd, handles
signals), and one :class:`~.worker.Worker` that owns the pipeline.

Start-up, in order: take the daemon lock (one daemon per state DB) -> put back what a killed daemon had in
flight -> start watching (so nothing is missed between the scan and the watch) -> walk every root: remove stale
``*_exiftool_tmp`` files, queue new and changed photos, forget deleted ones -> start the worker -> READY=1.

Events are hints, the walk is the truth: every ``watch.rescan_interval`` seconds, and right after an inotify
queue overflow, the roots are walked again (stat only; unchanged photos cost no hashing or decoding).

Signals: SIGTERM/SIGINT drain (STOPPING=1, finish the batch in progress or put it back after
``watch.drain_timeout``, close exiftool, exit 0; a second signal skips the wait); SIGHUP reloads the config.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import queue as stdqueue
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .. import __version__
from ..config import Config
from ..errors import PhototagError, StateError, display
from .queue import WorkQueue
from .scan import excluded_folder, relevant, walk
from .sdnotify import Notifier
from .stability import FileStat, StabilityTracker, Verdict
from .watcher import Change, Watcher
from .worker import OutcomeLike, Processor, Worker

log = logging.getLogger(__name__)

STATUS_EVERY = 5.0  # seconds between STATUS= updates and heartbeats for `phototag status`
CONFIRM = 0.5  # seconds a stat must stay unchanged after the quiet period (inotify roots)


class PipelineProcessor:
    """The real processor: :class:`phototag.pipeline.Pipeline` over a state DB the service owns (it outlives
    reloads, which replace the pipeline)."""

    def __init__(self, config: Config, pm: Any, state: Any) -> None:
        from ..pipeline import Pipeline

        self.state = state
        self.pipeline = Pipeline.from_config(config, pm, state=state)
        for message in self.pipeline.setup_errors:
            log.warning("%s", message)

    def process(self, paths: Sequence[Path]) -> Sequence[OutcomeLike]:
        return self.pipeline.process(paths)

    def is_current(self, path: Path) -> bool:
        return self.pipeline.is_current(path)

    def records(self, root: Path) -> dict[str, tuple[int, int, bool]]:
        fingerprints = self.pipeline.fingerprints()
        return {
            str(r.path): (r.size, r.mtime_ns, r.status == "done" and dict(r.fingerprints) == fingerprints)
            for r in self.state.records(under=root)
        }

    def forget(self, path: Path) -> None:
        self.state.forget(path)

    def unload_models(self) -> None:
        self.pipeline.unload_models()

    def close(self) -> None:
        self.pipeline.close()


class DaemonLock:
    """One daemon per state DB: an exclusive ``flock`` on ``STATE_DB.watch.lock`` (released by the kernel when
    the process dies, so a kill -9 never leaves a stale lock)."""

    def __init__(self, state_db: Path) -> None:
        self.path = state_db.with_name(state_db.name + ".watch.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateError(
                f"{self.path.with_name(self.path.name.removesuffix('.watch.lock'))}: another `phototag watch` "
                f"(pid {other}) uses this state database; stop it first, or give this one another state_db"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Service:
    """The daemon. ``make_processor(config)`` builds the processing side (again on reload);
    ``reload_config()`` re-reads the configuration on SIGHUP; ``roots`` overrides ``config.folders``.
    ``watch_limit`` overrides ``watch.inotify_watch_limit`` (tests)."""

    def __init__(
        self,
        config: Config,
        make_processor: Callable[[Config], Processor],
        *,
        roots: Sequence[Path] | None = None,
        reload_config: Callable[[], Config] | None = None,
        notifier: Notifier | None = None,
        install_signals: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._make_processor = make_processor
        self._roots_override = [Path(r).absolute() for r in roots] if roots else None
        self._reload_config = reload_config
        self.notifier = notifier or Notifier()
        self._install_signals = install_signals
        self._clock = clock
        self._inbox: stdqueue.SimpleQueue[Change] = stdqueue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._hurry = False
        self._reload = False
        self._rescan = False
        self._done_times: collections.deque[float] = collections.deque(maxlen=100_000)
        self._started = time.time()
        self._hung_since: float | None = None
        self._status_dirty = False
        self.abandoned = False
        """True when the drain timed out with the worker still in a batch (its paths were put back)."""
        self.roots: list[Path] = []
        self.tracker = self._new_tracker(config)
        self.queue: WorkQueue | None = None
        self.processor: Processor | None = None
        self.watcher: Watcher | None = None
        self.worker: Worker | None = None

    # -- control (signal handlers, other threads) ------------------------------------------------------------

    def request_stop(self) -> None:
        if self._stop.is_set():
            self._hurry = True
        self._stop.set()
        self._wake.set()

    def request_reload(self) -> None:
        self._reload = True
        self._wake.set()

    def request_rescan(self) -> None:
        self._rescan = True
        self._wake.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.request_reload()
        else:
            log.info("%s: stopping", signal.Signals(signum).name)
            self.request_stop()

    def submit(self, change: Change) -> None:
        """Record a change and return (the watcher's callback, called on watchdog's threads)."""
        self._inbox.put(change)
        self._wake.set()

    # -- the main loop --------------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; returns the exit status (0: clean stop)."""
        lock = DaemonLock(self.config.state_db)
        lock.acquire()
        try:
            return self._run()
        finally:
            lock.release()

    def _run(self) -> int:
        if self._install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, self._on_signal)
        self.queue = WorkQueue(self.config.state_db)
        recovered = self.queue.recover()
        if recovered:
            log.warning("%d photos were in flight when the last daemon stopped; redoing them one at a time",
                        len(recovered))  # fmt: skip
        self.processor = self._make_processor(self.config)
        try:
            self.roots = self._resolve_roots(self.config)
            self.notifier.status(f"starting: watching {len(self.roots)} folders")
            self._start_watcher()
            self._reconcile(initial=True)
        except BaseException:
            if self.watcher is not None:
                self.watcher.stop()
            self.processor.close()
            self.queue.close()
            raise
        self.worker = self._new_worker()
        self.worker.start()
        self.notifier.ready(self.status_line())
        log.info("phototag %s watching %s (%s)", __version__, ", ".join(map(str, self.roots)),
                 self.watcher.summary() if self.watcher else "")  # fmt: skip
        code = 0
        next_status = next_ping = self._clock()
        next_rescan = self._next_rescan()
        while not self._stop.is_set():
            now = self._clock()
            wake_at = [next_status, next_rescan]
            if self.notifier.watchdog_interval:
                wake_at.append(next_ping)
            due = self.tracker.next_due()
            if due is not None:
                wake_at.append(due)
            self._wake.wait(max(0.02, min(min(wake_at) - now, 1.0)))
            self._wake.clear()
            self._drain_inbox()
            self._settle()
            if self._reload:
                self._reload = False
                self._do_reload()
                next_rescan = self._next_rescan()
            now = self._clock()
            if self._rescan or now >= next_rescan:
                self._rescan = False
                self._check_watches()
                self._reconcile(initial=False)
                next_rescan = self._next_rescan()
            if not self.worker.is_alive():
                log.error("the worker thread died (%s); exiting so that systemd restarts the service",
                          self.worker.error)  # fmt: skip
                code = 1
                break
            now = self._clock()
            if self.notifier.watchdog_interval and now >= next_ping:
                if self._healthy(now):
                    self.notifier.watchdog()
                next_ping = now + self.notifier.watchdog_interval
            if now >= next_status or (self._status_dirty and now >= next_status - STATUS_EVERY + 1.0):
                self._status_dirty = (
                    False  # a batch finished: tell `phototag status` soon, at most once a second
                )
                self._publish_status()
                next_status = now + STATUS_EVERY
        return self._shutdown(code)

    def _next_rescan(self) -> float:
        interval = self.config.watch.rescan_interval
        return self._clock() + interval if interval > 0 else float("inf")

    def _healthy(self, now: float) -> bool:
        """Ping the systemd watchdog only while the worker makes progress: a hung model or exiftool call
        stops the pings and systemd restarts the service (the batch is then redone one photo at a time)."""
        assert self.worker is not None
        busy = self.worker.busy_since
        if busy is not None and now - busy > self.config.watch.batch_timeout:
            if self._hung_since != busy:  # say it once per hung batch
                self._hung_since = busy
                log.error("a batch has been running for %.0f s (watch.batch_timeout=%g): not pinging the systemd "
                          "watchdog any more, so that systemd restarts the service", now - busy,
                          self.config.watch.batch_timeout)  # fmt: skip
            return False
        return True

    def _shutdown(self, code: int) -> int:
        self.notifier.stopping("stopping: finishing the batch in progress")
        if self.watcher is not None:
            self.watcher.stop()
        assert self.worker is not None and self.queue is not None and self.processor is not None
        self.worker.request_stop()
        deadline = self._clock() + self.config.watch.drain_timeout
        while self.worker.is_alive() and not self._hurry and self._clock() < deadline:
            self.worker.join(0.1)  # in steps: a second SIGTERM/SIGINT (``_hurry``) ends the wait at once
        if self.worker.is_alive():
            leftover = sorted(self.worker.in_flight)
            self.queue.release(leftover)
            self.abandoned = True
            log.warning("the batch in progress did not finish within watch.drain_timeout=%gs; %d photos go back "
                        "to the queue", self.config.watch.drain_timeout, len(leftover))  # fmt: skip
        else:
            try:
                self.worker.processor.close()
            except Exception as e:
                log.warning("closing the pipeline: %s", e)
        self._publish_status(stopped=True)
        self.queue.close()
        log.info("stopped")
        return code

    # -- roots and watching ---------------------------------------------------------------------------------

    def _resolve_roots(self, config: Config) -> list[Path]:
        roots = self._roots_override or [Path(f).absolute() for f in config.folders]
        if not roots:
            raise PhototagError(
                "nothing to watch: pass folders to `phototag watch` or set folders: in the config"
            )
        for root in roots:
            if not root.is_dir():
                raise PhototagError(f"{root}: not a folder; create it or fix folders: in {config.source}")
        # a root inside another root would report every event twice
        return [r for r in roots if not any(r != o and r.is_relative_to(o) for o in roots)]

    def _start_watcher(self) -> None:
        settings = self.config.watch
        self.watcher = Watcher(
            self.roots,
            self.submit,
            polling=settings.polling,
            poll_folders=[Path(p).expanduser().absolute() for p in settings.poll_folders],
            poll_interval=settings.poll_interval,
            watch_limit=settings.inotify_watch_limit or None,
        )
        self.watcher.start()

    def _check_watches(self) -> None:
        assert self.watcher is not None
        for root in self.watcher.check_watches():
            log.warning("%s is polled from now on (not enough inotify watches)", root)
        for root in self.watcher.dead_roots():
            if root.is_dir():
                log.warning("%s is back: watching it again", root)
                self.watcher.rewatch(root)

    def _root_of(self, path: Path) -> Path | None:
        for root in self.roots:
            if path.is_relative_to(root):
                return root
        return None

    def _polled(self, root: Path | None) -> bool:
        return self.watcher is not None and root is not None and self.watcher.modes.get(root) == "polling"

    # -- events ---------------------------------------------------------------------------------------------

    def _drain_inbox(self) -> None:
        while True:
            try:
                change = self._inbox.get_nowait()
            except stdqueue.Empty:
                return
            try:
                self._handle(change)
            except PhototagError as e:
                log.error("handling %s %s: %s", change.kind, change.path, e)

    def _handle(self, change: Change) -> None:
        now = self._clock()
        kind = change.kind
        if kind == "overflow":
            log.warning("the inotify event queue overflowed: events were lost; rescanning")
            self._rescan = True
            return
        if kind in ("created", "modified", "closed"):
            self._touch(change.path, now, kind, change.polled)
        elif kind == "moved":
            self._gone(change.path)
            if change.dest is not None:
                self._touch(change.dest, now, "created", change.polled)
        elif kind == "deleted":
            self._gone(change.path)
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
        root = self._root_of(path)
        if root is None or not relevant(path, root, self.config):
            return
        # polling cannot tell an open writer from a finished one; inotify can (write vs close-after-write)
        writing = None if polled else {"modified": True, "closed": False}.get(kind)
        self.tracker.touch(path, now, writing=writing, polled=polled)

    def _gone(self, path: Path) -> None:
        root = self._root_of(path)
        if root is None or not relevant(path, root, self.config):
            return
        assert self.queue is not None and self.processor is not None
        self.tracker.forget(path)
        self.queue.remove([path])
        self.processor.forget(path)

    def _gone_folder(self, folder: Path) -> None:
        assert self.queue is not None and self.processor is not None
        self.tracker.forget_under(folder)
        self.queue.remove_under(folder)
        root = self._root_of(folder)
        if root is None:
            return
        for path in self.processor.records(folder):
            self.processor.forget(Path(path))

    def _arrived_folder(self, folder: Path, now: float, polled: bool) -> None:
        """A folder appeared (created, or moved in): its files may predate our watch on it."""
        root = self._root_of(folder)
        if root is None or excluded_folder(folder, self.config):
            return
        for path, _ in walk(folder, self.config):
            if relevant(path, root, self.config):
                self.tracker.touch(path, now, polled=polled)

    # -- stability -> queue ---------------------------------------------------------------------------------

    def _settle(self) -> None:
        """Stat the paths whose quiet period is over; queue the stable ones that need work."""
        now = self._clock()
        due = self.tracker.due(now)
        if not due:
            return
        assert self.worker is None or isinstance(self.worker, Worker)
        in_flight = self.worker.in_flight if self.worker is not None else frozenset()
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
        assert self.queue is not None and self.processor is not None
        failed = self.queue.failed_stats()
        todo = []
        for path, stat in items:
            if failed.get(str(path)) == (stat.size, stat.mtime_ns):
                continue  # failed before and unchanged since: `phototag retry` requeues it
            if self.processor.is_current(path):
                continue  # done and unchanged: our own metadata write, a touch, a rename back
            todo.append(path)
        added = self.queue.enqueue(todo, reason)
        if todo:
            log.debug("queued %d photos (%s)", len(todo), reason)
            if self.worker is not None:
                self.worker.wake()
        return added

    # -- rescans --------------------------------------------------------------------------------------------

    def _reconcile(self, *, initial: bool) -> None:
        """Walk every root: queue photos that are new or changed, forget the ones that are gone."""
        assert self.queue is not None and self.processor is not None
        start = self._clock()
        now, wall = start, time.time()
        settled_age = 2 * self.config.watch.stability_delay + 1
        waiting = self.queue.waiting()
        failed = self.queue.failed_stats()
        in_flight = self.worker.in_flight if self.worker is not None else frozenset()
        totals = {"files": 0, "queued": 0, "pending": 0, "forgotten": 0}

        def progress(n: int) -> None:  # a long walk must not look like a hang to systemd
            lines = [f"STATUS=scanning: {totals['files'] + n} files looked at"]
            if self.worker is None or self._healthy(self._clock()):
                lines.append("WATCHDOG=1")
            self.notifier.send(*lines)

        for root in self.roots:
            known = self.processor.records(root)
            seen: set[str] = set()
            settled: list[tuple[Path, FileStat]] = []

            def walk_error(path: Path, why: str, seen: set[str] = seen) -> None:
                # nothing is skipped silently: `phototag status` lists it with the reason
                seen.add(str(path))
                if str(path) not in failed:
                    log.warning("%s: %s", display(path), why)
                assert self.queue is not None
                self.queue.fail(path, f"{display(path)}: {why}")

            for path, stat in walk(
                root, self.config, remove_stale_tmp=initial, progress=progress, on_error=walk_error
            ):
                key = str(path)
                seen.add(key)
                rec = known.get(key)
                if rec is not None and rec[2] and (rec[0], rec[1]) == (stat.size, stat.mtime_ns):
                    continue
                if failed.get(key) == (stat.size, stat.mtime_ns) or key in waiting or path in in_flight:
                    continue
                if path in self.tracker:
                    continue
                if wall - stat.mtime_ns / 1e9 > settled_age:
                    settled.append((path, stat))
                else:  # written moments ago: it may still be growing
                    self.tracker.touch(path, now, polled=self._polled(root))
                    totals["pending"] += 1
            totals["files"] += len(seen)
            totals["queued"] += self._enqueue(settled, "scan") if settled else 0
            missing = [Path(p) for p in known if p not in seen]
            missing += [
                Path(p) for p in failed if p not in seen and p not in known and Path(p).is_relative_to(root)
            ]
            if missing and not seen:
                log.warning("%s is empty but %d photos are recorded under it: is it unmounted? Keeping their "
                            "records until it has files again", root, len(missing))  # fmt: skip
                continue
            for path in missing:
                self.processor.forget(path)
                self.tracker.forget(path)
            if missing:
                self.queue.remove(missing)
                totals["forgotten"] += len(missing)
        log.info("%s: %d photos, %d queued, %d settling, %d gone (%.1f s)",
                 "start-up scan" if initial else "rescan", totals["files"], totals["queued"], totals["pending"],
                 totals["forgotten"], self._clock() - start)  # fmt: skip

    # -- reload ---------------------------------------------------------------------------------------------

    def _do_reload(self) -> None:
        if self._reload_config is None:
            log.warning("SIGHUP: no config file to reload")
            return
        self.notifier.reloading()
        try:
            new = self._reload_config()
            if new.state_db != self.config.state_db:
                raise PhototagError(
                    f"state_db changed ({self.config.state_db} -> {new.state_db}); restart instead"
                )
            roots = self._resolve_roots(new)
        except PhototagError as e:
            log.error("config reload failed, keeping the running configuration: %s", e)
            self.notifier.ready(self.status_line())
            return
        log.info("reloading the configuration from %s", new.source)
        assert self.worker is not None
        done = self.worker.reload(lambda: self._make_processor(new), new.watch, new.batch_size)
        while not done.wait(0.5):  # the worker finishes its batch first; keep systemd informed meanwhile
            if self.notifier.watchdog_interval and self._healthy(self._clock()):
                self.notifier.watchdog()
            if self._stop.is_set():
                return
        self.processor = self.worker.processor
        if self.watcher is not None:
            self.watcher.stop()
        self.config, self.roots = new, roots
        self.tracker = self._new_tracker(new)
        self._start_watcher()
        self._reconcile(initial=False)
        self.notifier.ready(self.status_line())

    # -- status ---------------------------------------------------------------------------------------------

    def _new_tracker(self, config: Config) -> StabilityTracker:
        s = config.watch
        return StabilityTracker(s.stability_delay, confirm=CONFIRM, open_write_timeout=s.open_write_timeout)

    def _new_worker(self) -> Worker:
        assert self.queue is not None and self.processor is not None
        return Worker(
            self.queue,
            self.processor,
            self.config.watch,
            self.config.batch_size,
            on_outcomes=self._record_outcomes,
            clock=self._clock,
        )

    def _record_outcomes(self, outcomes: Sequence[OutcomeLike]) -> None:
        """Called by the worker after each batch."""
        now = time.time()
        self._done_times.extend(now for o in outcomes if o.status != "failed")
        self._status_dirty = True
        self._wake.set()

    def rate_per_minute(self, window: float = 60.0) -> float:
        """Photos finished in the last ``window`` seconds, per minute."""
        cutoff = time.time() - window
        return sum(1 for t in self._done_times if t >= cutoff) * 60.0 / window

    def status_line(self) -> str:
        assert self.queue is not None
        c = self.queue.counts()
        watching = self.watcher.summary() if self.watcher is not None else ""
        return (
            f"{len(self.roots)} folders ({watching}); queue {c.queued + c.retrying}, in flight {c.in_flight}, "
            f"settling {len(self.tracker)}, done {c.done}, failed {c.failed}; {self.rate_per_minute():.1f}/min"
        )

    def _publish_status(self, stopped: bool = False) -> None:
        assert self.queue is not None
        line = "stopped" if stopped else self.status_line()
        if not stopped:
            self.notifier.status(line)
        worker = self.worker
        info = {
            "pid": os.getpid(),
            "version": __version__,
            "started": self._started,
            "heartbeat": time.time(),
            "running": not stopped,
            "status": line,
            "roots": {str(r): (self.watcher.modes.get(r, "?") if self.watcher else "?") for r in self.roots},
            "polling_reasons": {
                str(r): why for r, why in (self.watcher.reasons.items() if self.watcher else ())
            },
            "settling": len(self.tracker),
            "in_flight": sorted(str(p) for p in (worker.in_flight if worker else ())),
            "busy_seconds": (self._clock() - worker.busy_since) if worker and worker.busy_since else 0.0,
            "rate_per_min": self.rate_per_minute(),
            "rate_per_min_5": self.rate_per_minute(300.0),
        }
        with contextlib.suppress(StateError, OSError, sqlite3.Error):  # a busy DB must not stop the loop
            self.queue.heartbeat(info)


def _stat(path: Path) -> FileStat | None:
    try:
        return FileStat.of(path.stat())
    except FileNotFoundError:
        return None
    except OSError:
        # unreadable (permissions): let the pipeline report the error with the file's name
        return FileStat(-1, -1)
