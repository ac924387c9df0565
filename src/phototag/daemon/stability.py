"""When is a new or changed file complete? A small pure tracker: the clock and the stats are passed in.

After paperless-ngx's ``FileStabilityTracker``. A path becomes *ready* when all of these hold:

1. no event arrived for it for ``delay`` seconds (a slow writer keeps producing events);
2. if a write was seen and no close after it (inotify only: the writer still holds the file open, e.g. an
   upload that stalled half-way), it waits up to ``open_write_timeout`` after the last event instead;
3. its size and mtime were the same at two stats at least ``confirm`` seconds apart (catches writes that
   send no events: mmap writes, other hosts' writes on a network share). In polling mode events arrive only
   once per poll, so rule 1 means nothing there: a polled path is stat'ed at once and must keep the same
   size and mtime for the whole ``delay`` instead;
4. it still exists (a vanished path is reported ``GONE`` and dropped).

Nothing here does I/O: the caller asks :meth:`StabilityTracker.due` which paths need a stat now, stats
them, and hands the result to :meth:`StabilityTracker.check`.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileStat:
    """The part of a stat that says whether a file changed."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_size, st.st_mtime_ns)


class Verdict(enum.Enum):
    WAIT = "wait"
    READY = "ready"
    GONE = "gone"


@dataclass
class _Pending:
    last_event: float
    polled: bool
    writing: bool = False
    stat: FileStat | None = None
    stat_since: float = 0.0
    next_check: float = 0.0


class StabilityTracker:
    """Paths waiting to become stable. Not thread-safe: one thread (the daemon's main loop) owns it."""

    def __init__(self, delay: float, *, confirm: float = 0.5, open_write_timeout: float = 300.0) -> None:
        if delay < 0 or confirm < 0 or open_write_timeout < 0:
            raise ValueError("delay, confirm and open_write_timeout must not be negative")
        self.delay = delay
        self.confirm = min(confirm, delay)
        self.open_write_timeout = max(open_write_timeout, delay)
        self._pending: dict[Path, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, path: object) -> bool:
        return path in self._pending

    def touch(self, path: Path, now: float, *, writing: bool | None = None, polled: bool = False) -> None:
        """An event for ``path`` at ``now``. ``writing``: True for a write (the file is open for writing),
        False for a close after writing, None for anything else (create, move, attribute change)."""
        entry = self._pending.get(path)
        if entry is None:
            entry = self._pending[path] = _Pending(now, polled)
        entry.last_event = now
        entry.polled = entry.polled or polled
        if writing is not None:
            entry.writing = writing
        entry.next_check = now + (self.open_write_timeout if entry.writing else self._quiet(entry))

    def forget(self, path: Path) -> None:
        self._pending.pop(path, None)

    def forget_under(self, folder: Path) -> list[Path]:
        """Drop every pending path below ``folder`` (a folder was deleted or moved away)."""
        gone = [p for p in self._pending if p.is_relative_to(folder)]
        for p in gone:
            del self._pending[p]
        return gone

    def due(self, now: float) -> list[Path]:
        """Paths that need a stat now (their quiet period is over)."""
        return [p for p, e in self._pending.items() if e.next_check <= now]

    def next_due(self) -> float | None:
        """The earliest time :meth:`due` will return something, or None when nothing is pending."""
        return min((e.next_check for e in self._pending.values()), default=None)

    def check(self, path: Path, stat: FileStat | None, now: float) -> Verdict:
        """Judge ``path`` with a fresh ``stat`` (None: it does not exist). READY and GONE drop the path."""
        entry = self._pending.get(path)
        if entry is None:
            return Verdict.GONE
        if stat is None:
            del self._pending[path]
            return Verdict.GONE
        if entry.writing and now - entry.last_event < self.open_write_timeout:
            entry.next_check = entry.last_event + self.open_write_timeout
            return Verdict.WAIT
        if now - entry.last_event < self._quiet(entry):
            entry.next_check = entry.last_event + self._quiet(entry)
            return Verdict.WAIT
        confirm = self.delay if entry.polled else self.confirm
        if entry.stat != stat:
            entry.stat, entry.stat_since = stat, now
            if confirm > 0:
                entry.next_check = now + confirm
                return Verdict.WAIT
        elif now - entry.stat_since < confirm:
            entry.next_check = entry.stat_since + confirm
            return Verdict.WAIT
        del self._pending[path]
        return Verdict.READY

    def _quiet(self, entry: _Pending) -> float:
        # a polled path's events come once per poll, so "no event for delay" says nothing there: its stat,
        # compared over the whole delay, decides alone
        return 0.0 if entry.polled else self.delay

    def paths(self) -> Iterable[Path]:
        return list(self._pending)
