"""What the running daemon tells others: ``STATUS=`` lines for systemd and a heartbeat for ``phototag status``.

The heartbeat is a JSON row in the queue's ``watch_meta`` table (:meth:`~.queue.WorkQueue.heartbeat`), written
every :data:`STATUS_EVERY` seconds, and within a second after a batch finishes; ``phototag status`` calls a
daemon whose heartbeat is old "not responding". A busy database must not stop the main loop: a heartbeat that
cannot be written is skipped.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import StateError
from .queue import QueueCounts, WorkQueue

STATUS_EVERY = 5.0  # seconds between STATUS= updates and heartbeats for `phototag status`
SOON = 1.0  # seconds: after a batch, publish no sooner than this after the last time


@dataclass(frozen=True)
class Snapshot:
    """The service's state at one moment, as the status line and the heartbeat show it."""

    roots: Sequence[Path]
    modes: Mapping[Path, str] = field(default_factory=dict)
    """Each root's watch mode (``inotify`` / ``polling``)."""
    reasons: Mapping[Path, str] = field(default_factory=dict)
    """Why a root is polled."""
    watching: str = ""
    """The watcher's one-line summary."""
    settling: int = 0
    in_flight: frozenset[Path] = frozenset()
    busy_seconds: float = 0.0


class StatusBoard:
    """Throughput figures, the status line, and when to publish. :meth:`finished` may be called from any
    thread (the worker's); the rest belongs to the main loop."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self.started = wall()
        self._finished: collections.deque[float] = collections.deque(maxlen=100_000)
        self._lock = threading.Lock()
        self._dirty = False
        self._next = clock()

    # -- any thread -------------------------------------------------------------------------------------------

    def finished(self, statuses: Sequence[str]) -> None:
        """A batch ended with these outcome statuses: count the ones that are not failures, publish soon."""
        now = self._wall()
        with self._lock:
            self._finished.extend(now for s in statuses if s != "failed")
        self._dirty = True

    def rate_per_minute(self, window: float = 60.0) -> float:
        """Photos finished in the last ``window`` seconds, per minute."""
        cutoff = self._wall() - window
        with self._lock:
            done = sum(1 for t in self._finished if t >= cutoff)
        return done * 60.0 / window

    # -- the main loop ----------------------------------------------------------------------------------------

    def next_due(self) -> float:
        """When the next regular publication is due (the main loop's clock)."""
        return self._next

    def due(self, now: float) -> bool:
        """Time to publish: the interval is over, or a batch finished and the last one is a second old."""
        return now >= self._next or (self._dirty and now >= self._next - STATUS_EVERY + SOON)

    def line(self, counts: QueueCounts, snap: Snapshot) -> str:
        return (
            f"{len(snap.roots)} folders ({snap.watching}); queue {counts.queued + counts.retrying}, "
            f"in flight {counts.in_flight}, settling {snap.settling}, done {counts.done}, failed {counts.failed}; "
            f"{self.rate_per_minute():.1f}/min"
        )

    def heartbeat(self, line: str, snap: Snapshot, *, stopped: bool = False) -> dict[str, Any]:
        """The heartbeat row ``phototag status`` reads."""
        return {
            "pid": os.getpid(),
            "version": __version__,
            "started": self.started,
            "heartbeat": self._wall(),
            "running": not stopped,
            "status": line,
            "roots": {str(r): snap.modes.get(r, "?") for r in snap.roots},
            "polling_reasons": {str(r): why for r, why in snap.reasons.items()},
            "settling": snap.settling,
            "in_flight": sorted(str(p) for p in snap.in_flight),
            "busy_seconds": snap.busy_seconds,
            "rate_per_min": self.rate_per_minute(),
            "rate_per_min_5": self.rate_per_minute(300.0),
        }

    def publish(
        self, queue: WorkQueue, snap: Snapshot, send: Callable[[str], object], *, stopped: bool = False
    ) -> None:
        """Send the status line (``send``: systemd's ``STATUS=``; not when stopped) and write the heartbeat."""
        self._dirty = False
        self._next = self._clock() + STATUS_EVERY
        line = "stopped" if stopped else self.line(queue.counts(), snap)
        if not stopped:
            send(line)
        with contextlib.suppress(StateError, OSError, sqlite3.Error):  # a busy DB must not stop the loop
            queue.heartbeat(self.heartbeat(line, snap, stopped=stopped))
