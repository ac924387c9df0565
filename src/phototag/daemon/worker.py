"""The daemon's worker: claims batches from the queue, hands them to the processor, records each outcome.

One worker thread owns the processor (the pipeline is not thread-safe, and it owns the models and the exiftool
process): it builds it (at start and on reload), calls it, and closes it; no other thread calls it. After each
build it publishes the analyzers' fingerprints (:attr:`Worker.fingerprints`), which the main loop compares with
the state DB's records to tell done photos from new ones. What happens to an outcome:

- tagged / skipped: done (off the queue);
- failed and transient (file busy, disk full, exiftool timed out or died): retried with exponential backoff,
  ``watch.retry_delay`` doubling, up to ``watch.max_attempts`` claims; then it joins the failed list;
- failed and permanent (corrupt image, model unavailable): the failed list, with the reason;
- the file is gone: dropped (``on_gone``: the main loop forgets it in the state DB).

A path that was in flight when a daemon died comes back with ``crashes`` > 0 and is processed alone; after
``MAX_CRASHES`` it is failed without being opened again (it is probably what kills the daemon).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from ..config import Config, WatchSettings
from ..report import describe_outcome
from .queue import Job, WorkQueue

if TYPE_CHECKING:
    from ..state import StateDB

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
    """What the daemon needs from the processing side: the daemon's transport (:class:`PipelineProcessor` wraps
    the pipeline; tests inject their own). Built by the worker thread and called only there."""

    def process(self, paths: Sequence[Path]) -> Sequence[OutcomeLike]:
        """Process one batch to the end (and record it in the state DB); one outcome per path."""

    def fingerprints(self) -> Mapping[str, str]:
        """The fingerprints ``process`` records with each photo (name -> fingerprint): a recorded photo is done
        when its record holds exactly these."""

    def unload_models(self) -> None:
        """Free the models (they load again on next use)."""

    def close(self) -> None:
        """Release everything (exiftool, models)."""


class PipelineProcessor:
    """The real processor: :class:`phototag.pipeline.Pipeline` over a state DB the caller owns (it outlives
    reloads, which replace the pipeline)."""

    def __init__(self, config: Config, pm: Any, state: StateDB) -> None:
        from ..pipeline import Pipeline

        self.pipeline = Pipeline.from_config(config, pm, state=state)
        for message in self.pipeline.setup_errors:
            log.warning("%s", message)

    def process(self, paths: Sequence[Path]) -> Sequence[OutcomeLike]:
        return self.pipeline.process(paths)

    def fingerprints(self) -> Mapping[str, str]:
        return self.pipeline.fingerprints()

    def unload_models(self) -> None:
        self.pipeline.unload_models()

    def close(self) -> None:
        self.pipeline.close()


def backoff(attempts: int, first: float) -> float:
    """Seconds before retry number ``attempts`` (1-based): first, 2x, 4x, ... capped at an hour."""
    return float(min(first * 2 ** max(attempts - 1, 0), MAX_BACKOFF))


def is_transient(outcome: OutcomeLike) -> bool:
    return bool(outcome.transient)


class Worker(threading.Thread):
    """Processes the queue until :meth:`request_stop`. ``make_processor()`` builds the processor (on this thread,
    which then owns it); ``on_outcomes`` is told about every finished batch; ``on_gone`` about every claimed path
    that turned out to be gone (it is off the queue; its record is the caller's). Both are called on this
    thread."""

    def __init__(
        self,
        queue: WorkQueue,
        make_processor: Callable[[], Processor],
        settings: WatchSettings,
        batch_size: int,
        *,
        on_outcomes: Callable[[Sequence[OutcomeLike]], None] | None = None,
        on_gone: Callable[[Path], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="phototag-worker", daemon=True)
        self.queue = queue
        self.settings = settings
        self.batch_size = batch_size
        self._make = make_processor
        self._processor: Processor | None = None
        self._on_outcomes = on_outcomes
        self._on_gone = on_gone
        self._clock = clock
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._stop_requested = threading.Event()
        self._swap: tuple[Callable[[], Processor], WatchSettings, int] | None = None
        self._swapped = threading.Event()
        self._models_loaded = False
        self._last_work = clock()
        self.fingerprints: Mapping[str, str] | None = None
        """The current processor's analyzer fingerprints (None until it is built); replaced, never changed."""
        self.in_flight: frozenset[Path] = frozenset()
        self.busy_since: float | None = None
        self.error: BaseException | None = None

    # -- control (any thread) -------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        self._stop_requested.set()
        self._wake.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the processor is built, or building it failed (then :attr:`error` says why and the
        thread ends); False on timeout."""
        return self._ready.wait(timeout)

    def reload(
        self, make: Callable[[], Processor], settings: WatchSettings, batch_size: int
    ) -> threading.Event:
        """Swap in a processor built by ``make()`` between batches; the returned event is set when done."""
        self._swapped.clear()
        self._swap = (make, settings, batch_size)
        self._wake.set()
        return self._swapped

    # -- the loop (the worker thread) -----------------------------------------------------------------------

    @property
    def processor(self) -> Processor:
        assert self._processor is not None, "the worker has not built its processor yet"
        return self._processor

    def run(self) -> None:
        try:
            self._processor = self._make()
            self._publish()
        except BaseException as e:  # the service raises it (a config error, a plugin that cannot load)
            self.error = e
            if self._processor is not None:
                self._close(self._processor, "closing the pipeline")
            return
        finally:
            self._ready.set()
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
        finally:
            self._close(self.processor, "closing the pipeline")

    def _publish(self) -> None:
        self.fingerprints = _frozen(self.processor.fingerprints())

    @staticmethod
    def _close(processor: Processor, what: str) -> None:
        try:
            processor.close()
        except Exception as e:
            log.warning("%s: %s", what, e)

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
            try:
                fingerprints = _frozen(new.fingerprints())
            except BaseException:
                self._close(new, "closing the new pipeline")
                raise
        except Exception as e:
            log.error("reload failed, keeping the running configuration: %s", e)
        else:
            old, self._processor = self.processor, new
            self.fingerprints = fingerprints
            self.settings, self.batch_size = settings, batch_size
            self._models_loaded = False
            self._close(old, "closing the old pipeline after a reload")
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
        try:
            self._publish()  # a batch may resolve a model's revision, which changes its fingerprint
        except Exception as e:
            log.warning("reading the analyzers' fingerprints after a batch: %s", e)
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
            if self._on_gone is not None:
                self._on_gone(path)
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


def _frozen(fingerprints: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(fingerprints))


def _stat(path: Path) -> tuple[int | None, int | None]:
    try:
        st = path.stat()
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns
