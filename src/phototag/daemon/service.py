"""The watch service: events -> stability -> persistent queue -> worker, with systemd integration.

Threads: watchdog's observers (the handler only records a :class:`~.watcher.Change` and wakes the main loop),
the main loop (this module: lifecycle, rescans, systemd, signals; :mod:`.intake`: events -> stability -> queue),
and one :class:`~.worker.Worker` that builds, calls and closes the pipeline. The main loop never calls
the pipeline: it reads and forgets records through its own state DB connection (:class:`~.records.Records`),
with the analyzer fingerprints the worker publishes.

Start-up, in order: take the daemon lock (:mod:`.lock`: one daemon per state DB) -> put back what a killed
daemon had in flight -> start the worker (it builds the pipeline, publishes the fingerprints, and works through
the queue from then on) -> start watching (so nothing is missed between the scan and the watch) -> walk every
root (:mod:`.reconcile`): remove stale ``*_exiftool_tmp`` files, queue new and changed photos, forget deleted
ones -> READY=1. Status lines and the heartbeat for ``phototag status``: :mod:`.status`.

Events are hints, the walk is the truth: every ``watch.rescan_interval`` seconds, and right after an inotify
queue overflow, the roots are walked again (stat only; unchanged photos cost no hashing or decoding).

Signals: SIGTERM/SIGINT drain (STOPPING=1, finish the batch in progress or put it back after
``watch.drain_timeout``, close exiftool, exit 0; a second signal skips the wait); SIGHUP reloads the config.

Why ~400 lines: the main loop, start-up, reload and shutdown share the service's state (watcher, worker,
queue, intake); the parts that need no shared state already live in intake, reconcile, records, status and
lock.
"""

from __future__ import annotations

import logging
import queue as stdqueue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from .. import __version__
from ..config import Config
from ..errors import PhototagError
from ..state import StateDB
from .intake import Intake
from .lock import DaemonLock
from .queue import WorkQueue
from .records import Records
from .scan import absolute, resolve_roots
from .sdnotify import Notifier
from .status import Snapshot, StatusBoard
from .watcher import Change, Watcher
from .worker import OutcomeLike, Processor, Worker

log = logging.getLogger(__name__)

DRAIN_MAX = 1000
"""File events taken from the inbox per pass of the main loop: a burst arriving faster than intake handles it
must not hold off settling, the status line and systemd's watchdog ping (a 100,000-photo burst held them off
for 9 s when each pass drained the inbox empty: bench/watch_bench.py --burst)."""


class Service:
    """The daemon. ``make_processor(config)`` builds the processing side (on the worker thread, again on
    reload); ``reload_config()`` re-reads the configuration on SIGHUP; ``roots`` overrides ``config.folders``."""

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
        self._roots_override = list(roots) if roots else None
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
        self._hung_since: float | None = None
        self.board = StatusBoard(clock=clock)
        self.abandoned = False
        """True when the drain timed out with the worker still busy (its batch was put back)."""
        self.roots: list[Path] = []
        self.queue: WorkQueue | None = None
        self.records: Records | None = None
        self._intake: Intake | None = None
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
        with self.queue, StateDB(self.config.state_db) as state:
            recovered = self.queue.recover()
            if recovered:
                log.warning("%d photos were in flight when the last daemon stopped; redoing them one at a time",
                            len(recovered))  # fmt: skip
            self.records = Records(state, self._fingerprints)
            try:
                self.roots = self._resolve_roots(self.config)
                self._intake = self._new_intake(self.config, self.roots)
                self.notifier.status(f"starting: watching {len(self.roots)} folders")
                self._start_worker()
                self._start_watcher()
                self._reconcile(initial=True)
            except BaseException:
                if self.watcher is not None:
                    self.watcher.stop()
                if self.worker is not None:
                    self._stop_worker()
                raise
            return self._shutdown(self._loop())

    def _loop(self) -> int:
        """Until a stop is requested (0) or the worker dies (1)."""
        assert self.worker is not None
        self.notifier.ready(self.status_line())
        log.info("phototag %s watching %s (%s)", __version__, ", ".join(map(str, self.roots)),
                 self.watcher.summary() if self.watcher else "")  # fmt: skip
        next_ping = self._clock()
        next_rescan = self._next_rescan()
        while not self._stop.is_set():
            now = self._clock()
            wake_at = [self.board.next_due(), next_rescan]
            if self.notifier.watchdog_interval:
                wake_at.append(next_ping)
            due = self.intake.tracker.next_due()
            if due is not None:
                wake_at.append(due)
            self._wake.wait(max(0.02, min(min(wake_at) - now, 1.0)))
            self._wake.clear()
            self._drain_inbox()
            self.intake.settle()
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
                return 1
            now = self._clock()
            if self.notifier.watchdog_interval and now >= next_ping:
                if self._healthy(now):
                    self.notifier.watchdog()
                next_ping = now + self.notifier.watchdog_interval
            if self.board.due(now):
                self._publish_status()
        return 0

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
        assert self.queue is not None
        self._stop_worker()
        self._publish_status(stopped=True)
        log.info("stopped")
        return code

    # -- the worker -----------------------------------------------------------------------------------------

    def _start_worker(self) -> None:
        """Start the worker and wait until it has built the processor; raise what stopped it from doing so."""
        assert self.queue is not None
        config = self.config
        self.worker = Worker(
            self.queue,
            lambda: self._make_processor(config),
            config.watch,
            config.batch_size,
            on_outcomes=self._record_outcomes,
            on_gone=lambda path: self.submit(Change("deleted", path)),
            clock=self._clock,
        )
        self.worker.start()
        self.worker.wait_ready()
        if self.worker.error is not None:
            self.worker.join()
            raise self.worker.error

    def _stop_worker(self) -> None:
        """Let the worker finish its batch and close the pipeline; after ``watch.drain_timeout`` (or a second
        signal) its batch goes back to the queue and it is left behind (:attr:`abandoned`)."""
        assert self.worker is not None and self.queue is not None
        worker = self.worker
        worker.request_stop()
        deadline = self._clock() + self.config.watch.drain_timeout
        while worker.is_alive() and not self._hurry and self._clock() < deadline:
            worker.join(0.1)  # in steps: a second SIGTERM/SIGINT (``_hurry``) ends the wait at once
        while worker.is_alive() and not self._hurry and worker.busy_since is None:
            worker.join(0.1)  # its batch is over: it is closing the pipeline (exiftool has its own deadline)
        if worker.is_alive():
            leftover = sorted(worker.in_flight)
            self.queue.release(leftover)
            self.abandoned = True
            log.warning("the batch in progress did not finish within watch.drain_timeout=%gs; %d photos go back "
                        "to the queue", self.config.watch.drain_timeout, len(leftover))  # fmt: skip

    def _fingerprints(self) -> dict[str, str]:
        assert self.worker is not None and self.worker.fingerprints is not None
        return dict(self.worker.fingerprints)

    # -- roots and watching ---------------------------------------------------------------------------------

    def _resolve_roots(self, config: Config) -> list[Path]:
        return resolve_roots(self._roots_override or config.folders, config)

    def _start_watcher(self) -> None:
        settings = self.config.watch
        self.watcher = Watcher(
            self.roots,
            self.submit,
            polling=settings.polling,
            poll_folders=[absolute(Path(p).expanduser()) for p in settings.poll_folders],
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

    # -- events and rescans ---------------------------------------------------------------------------------

    @property
    def intake(self) -> Intake:
        """Events and walks -> the queue (replaced on reload)."""
        assert self._intake is not None, "the service is not running"
        return self._intake

    def _new_intake(self, config: Config, roots: Sequence[Path]) -> Intake:
        assert self.queue is not None and self.records is not None
        return Intake(
            config,
            roots,
            self.queue,
            self.records,
            polled=lambda root: self.watcher is not None and self.watcher.modes.get(root) == "polling",
            in_flight=lambda: self.worker.in_flight if self.worker is not None else frozenset(),
            wake_worker=lambda: self.worker.wake() if self.worker is not None else None,
            request_rescan=self.request_rescan,
            clock=self._clock,
        )

    def _drain_inbox(self) -> None:
        """Hand up to :data:`DRAIN_MAX` waiting file events to intake; with more waiting, the next pass of the
        main loop comes at once."""
        for _ in range(DRAIN_MAX):
            try:
                change = self._inbox.get_nowait()
            except stdqueue.Empty:
                return
            try:
                self.intake.handle(change)
            except PhototagError as e:
                log.error("handling %s %s: %s", change.kind, change.path, e)
        self._wake.set()

    def _reconcile(self, *, initial: bool) -> None:
        """Walk every root: queue photos that are new or changed, forget the ones that are gone."""
        start = self._clock()

        def progress(n: int) -> None:  # a long walk must not look like a hang to systemd
            lines = [f"STATUS=scanning: {n} files looked at"]
            if self.worker is None or self._healthy(self._clock()):
                lines.append("WATCHDOG=1")
            self.notifier.send(*lines)

        totals = self.intake.reconcile(initial=initial, progress=progress)
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
        if self.watcher is not None:
            self.watcher.stop()
        self.config, self.roots = new, roots
        self._intake = self._new_intake(new, roots)
        self._start_watcher()
        self._reconcile(initial=False)
        self.notifier.ready(self.status_line())

    # -- status ---------------------------------------------------------------------------------------------

    def _record_outcomes(self, outcomes: Sequence[OutcomeLike]) -> None:
        """Called by the worker after each batch."""
        self.board.finished([o.status for o in outcomes])
        self._wake.set()

    def _snapshot(self) -> Snapshot:
        watcher, worker = self.watcher, self.worker
        busy = worker.busy_since if worker is not None else None
        return Snapshot(
            roots=list(self.roots),
            modes=dict(watcher.modes) if watcher is not None else {},
            reasons=dict(watcher.reasons) if watcher is not None else {},
            watching=watcher.summary() if watcher is not None else "",
            settling=len(self._intake.tracker) if self._intake is not None else 0,
            in_flight=worker.in_flight if worker is not None else frozenset(),
            busy_seconds=(self._clock() - busy) if busy else 0.0,
        )

    def status_line(self) -> str:
        assert self.queue is not None
        return self.board.line(self.queue.counts(), self._snapshot())

    def _publish_status(self, stopped: bool = False) -> None:
        assert self.queue is not None
        self.board.publish(self.queue, self._snapshot(), self.notifier.status, stopped=stopped)
