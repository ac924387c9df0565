"""The daemon's worker: claims batches from the queue, hands them to the processor, records each outcome.

One worker thread owns the processor (the pipeline is not thread-safe, and it owns the models and the exiftool
process). What happens to an outcome:

- tagged / skipped: done (off the queue);
- failed and transient (file busy, disk full, exiftool timed out or died): retried with exponential backoff,
  ``watch.retry_delay`` doubling, up to ``watch.max_attempts`` claims; then it joins the failed list;
- failed and permanent (corrupt image, model unavailable): the failed list, with the reason;
- the file is gone: dropped (and forgotten in the state DB).

A path that was in flight when a daemon died comes back with ``crashes`` > 0 and is processed alone; after
``MAX_CRASHES`` it is failed without being opened again (it is probably what kills the daemon).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from ..config import WatchSettings
from ..report import describe_outcome
from .queue import Job, WorkQueue

log = logging.getLogger(__name__)

MAX_CRASHES = 3
MAX_BACKOFF = 3600.0


class OutcomeLike(Protocol):
    @property
    def path(self) -> Path: ...
    @property
    def status(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def transient(self) -> bool: ...


class Processor(Protocol):
    """What the daemon needs from the processing side (:class:`phototag.daemon.service.PipelineProcessor`
    wraps the pipeline; tests inject their own)."""

    def process(self, paths: Sequence[Path]) -> Sequence[OutcomeLike]:
        """Process one batch to the end; one outcome per path."""

    def is_current(self, path: Path) -> bool:
        """Stat-only: was ``path`` done with the current analyzers, and is it unchanged since?"""

    def records(self, root: Path) -> dict[str, tuple[int, int, bool]]:
        """Every recorded file below ``root``: path -> (size, mtime_ns, done with the current analyzers)."""

    def forget(self, path: Path) -> None:
        """``path`` is gone (deleted, moved away)."""

    def unload_models(self) -> None:
        """Free the models (they load again on next use)."""

    def close(self) -> None:
        """Release everything (exiftool, models)."""


def backoff(attempts: int, first: float) -> float:
    """Seconds before retry number ``attempts`` (1-based): first, 2x, 4x, ... capped at an hour."""
    return float(min(first * 2 ** max(attempts - 1, 0), MAX_BACKOFF))


def is_transient(outcome: OutcomeLike) -> bool:
    return bool(outcome.transient)


class Worker(threading.Thread):
    """Processes the queue until :meth:`request_stop`. ``on_outcomes`` is told about every finished batch."""

    def __init__(
        self,
        queue: WorkQueue,
        processor: Processor,
        settings: WatchSettings,
        batch_size: int,
        *,
        on_outcomes: Callable[[Sequence[OutcomeLike]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="phototag-worker", daemon=True)
        self.queue = queue
        self.processor = processor
        self.settings = settings
        self.batch_size = batch_size
        self._on_outcomes = on_outcomes
        self._clock = clock
        self._wake = threading.Event()
        self._stop_requested = threading.Event()
        self._swap: tuple[Callable[[], Processor], WatchSettings, int] | None = None
        self._swapped = threading.Event()
        self._models_loaded = False
        self._last_work = clock()
        self.in_flight: frozenset[Path] = frozenset()
        self.busy_since: float | None = None
        self.error: BaseException | None = None

    # -- control (any thread) -------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        self._stop_requested.set()
        self._wake.set()

    def reload(
        self, make: Callable[[], Processor], settings: WatchSettings, batch_size: int
    ) -> threading.Event:
        """Swap in a processor built by ``make()`` between batches; the returned event is set when done."""
        self._swapped.clear()
        self._swap = (make, settings, batch_size)
        self._wake.set()
        return self._swapped

    # -- the loop (the worker thread) -----------------------------------------------------------------------

    def run(self) -> None:
        try:
            while not self._stop_requested.is_set():
                if self._swap is not None:
                    self._do_swap()
                jobs = self.queue.claim(self.batch_size)
                if not jobs:
                    self._idle()
                    continue
                self._process(jobs)
        except BaseException as e:  # the service notices a dead worker and exits non-zero
            self.error = e
            log.exception("the worker stopped: %s", e)
            raise

    def _idle(self) -> None:
        now = self._clock()
        unload = self.settings.idle_unload
        if self._models_loaded and unload > 0 and now - self._last_work >= unload:
            log.info("no work for %.0f s: unloading models", now - self._last_work)
            self.processor.unload_models()
            self._models_loaded = False
        timeout = 2.0  # also picks up rows other processes queue (``phototag retry``) and backoffs coming due
        due = self.queue.next_due()
        if due is not None:
            timeout = max(0.05, min(timeout, due - time.time()))
        if self._models_loaded and unload > 0:
            timeout = max(0.05, min(timeout, self._last_work + unload - now))
        self._wake.wait(timeout)
        self._wake.clear()

    def _do_swap(self) -> None:
        assert self._swap is not None
        make, settings, batch_size = self._swap
        self._swap = None
        try:
            new = make()
        except Exception as e:
            log.error("reload failed, keeping the running configuration: %s", e)
        else:
            old, self.processor = self.processor, new
            self.settings, self.batch_size = settings, batch_size
            self._models_loaded = False
            try:
                old.close()
            except Exception as e:
                log.warning("closing the old pipeline after a reload: %s", e)
        self._swapped.set()

    def _process(self, jobs: list[Job]) -> None:
        doomed = [j for j in jobs if j.crashes >= MAX_CRASHES]
        for job in doomed:
            self.queue.fail(
                job.path,
                f"{job.path}: the daemon stopped {job.crashes} times while processing this photo (killed, "
                "crashed, or restarted by the systemd watchdog when it hung); it is not opened again. "
                "Check it, then `phototag retry` it.",
                *_stat(job.path),
            )
        jobs = [j for j in jobs if j.crashes < MAX_CRASHES]
        if not jobs:
            return
        paths = [j.path for j in jobs]
        self.in_flight = frozenset(paths)
        self.busy_since = self._clock()
        try:
            outcomes = list(self.processor.process(paths))
            self._models_loaded = True
        except Exception as e:  # the pipeline itself failed (state DB, a bug): every path is retried
            log.exception("processing a batch of %d failed: %s", len(paths), e)
            outcomes = [_Failed(p, f"{p}: the batch failed: {type(e).__name__}: {e}", True) for p in paths]
        finally:
            self._last_work = self._clock()
        by_path = {o.path: o for o in outcomes}
        attempts = {j.path: j.attempts for j in jobs}
        done = []
        for path in paths:
            outcome = by_path.get(path) or _Failed(path, f"{path}: the pipeline returned no outcome", True)
            if outcome.status != "failed":
                done.append(path)
                if outcome.status == "tagged":
                    log.info("%s", describe_outcome(outcome, full_path=True))
            else:
                self._failed(outcome, attempts[path])
        if done:
            self.queue.complete(done)
        self.in_flight = frozenset()
        self.busy_since = None
        if self._on_outcomes is not None:
            self._on_outcomes([by_path[p] for p in paths if p in by_path])

    def _failed(self, outcome: OutcomeLike, attempts: int) -> None:
        path = outcome.path
        if not path.exists():
            log.info("%s is gone; dropping it", path)
            self.queue.drop([path])
            self.processor.forget(path)
            return
        if is_transient(outcome) and attempts < self.settings.max_attempts:
            delay = backoff(attempts, self.settings.retry_delay)
            log.warning("%s (attempt %d of %d; retrying in %.1f s)", outcome.message, attempts,
                        self.settings.max_attempts, delay)  # fmt: skip
            self.queue.retry_later(path, outcome.message, delay)
            return
        log.error("failed: %s", outcome.message)
        self.queue.fail(path, outcome.message, *_stat(path))


class _Failed:
    """An outcome the worker makes up when the pipeline gave none."""

    status = "failed"

    def __init__(self, path: Path, message: str, transient: bool) -> None:
        self.path, self.message, self.transient = path, message, transient


def _stat(path: Path) -> tuple[int | None, int | None]:
    try:
        st = path.stat()
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns
