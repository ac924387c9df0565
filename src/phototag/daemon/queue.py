"""The daemon's persistent work queue: tables in the state database (``config.state_db``), its own connection.

Tables (all prefixed ``watch_``, next to the state DB's own ``files``/``runs``):

- ``watch_queue``: one row per path waiting or in flight. ``lease`` names the daemon that claimed it (NULL:
  waiting); ``not_before`` delays a retry (backoff); ``attempts`` counts claims; ``crashes`` counts daemons
  that died holding the row (kill -9, a watchdog restart on a hang); ``again`` marks a path that changed while
  in flight, so it is looked at once more after the batch instead of being queued twice.
- ``watch_failed``: permanent failures with their reason and the file's size/mtime at the time, so that a
  rescan does not retry an unchanged broken file (a changed one, or ``phototag retry``, queues it again).
- ``watch_meta``: counters (``done``) and the running daemon's heartbeat (JSON) for ``phototag status``.

Paths that are not valid UTF-8 are stored as BLOBs of their bytes (:func:`~phototag.sqlitedb.db_path`).

Every change is one transaction (WAL), so a crash leaves the queue as it was before or after the change. A
claimed row stays in the table until its outcome is recorded: a daemon killed mid-batch finds the rows leased
at its next start (:meth:`WorkQueue.recover`) and redoes them, one at a time, so that a photo that crashes the
daemon cannot take a whole batch down with it again.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sqlitedb import SQLiteFile, db_path, db_text, path_from_db, under_clause

SCHEMA = """
CREATE TABLE IF NOT EXISTS watch_queue (
    path TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    enqueued REAL NOT NULL,
    not_before REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    lease TEXT,
    leased_at REAL,
    again INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS watch_queue_due ON watch_queue(lease, not_before, enqueued);
CREATE TABLE IF NOT EXISTS watch_failed (
    path TEXT PRIMARY KEY,
    size INTEGER,
    mtime_ns INTEGER,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS watch_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Job:
    """A claimed path. ``attempts`` includes this claim; ``crashes`` counts daemons that died holding it."""

    path: Path
    attempts: int
    crashes: int
    reason: str


@dataclass(frozen=True)
class Failure:
    path: Path
    error: str
    attempts: int
    failed_at: float
    size: int | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class QueueCounts:
    queued: int  # waiting and due now
    retrying: int  # waiting for a backoff to pass
    in_flight: int
    failed: int
    done: int  # photos finished by daemons (every outcome but a permanent failure), ever


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{time.time():.0f}"


class WorkQueue(SQLiteFile):
    """The queue. Safe to share between the threads of one process (a lock serialises the connection)."""

    def __init__(
        self,
        db_path: Path,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        readonly: bool = False,
        busy_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            db_path,
            SCHEMA,
            "daemon's queue in the state database",
            readonly=readonly,
            busy_timeout=busy_timeout,
        )
        self.owner = owner or default_owner()
        self._clock = clock

    # -- adding and claiming --------------------------------------------------------------------------------

    def enqueue(self, paths: Iterable[Path], reason: str = "event") -> int:
        """Queue ``paths``; returns how many were new. A path already waiting stays once; a path in flight is
        marked to be looked at again after its batch (it changed while being processed)."""
        now = self._clock()
        rows = [(db_path(p), db_text(reason), now) for p in paths]
        if not rows:
            return 0
        with self._tx() as db:
            before = db.total_changes
            db.executemany(
                "INSERT INTO watch_queue (path, reason, enqueued) VALUES (?, ?, ?) ON CONFLICT(path) DO NOTHING",
                rows,
            )
            added = db.total_changes - before
            db.executemany(
                "UPDATE watch_queue SET again = 1 WHERE path = ? AND lease IS NOT NULL",
                [(r[0],) for r in rows],
            )
            self._bump(db, "enqueued", added)
        return added

    def claim(self, limit: int) -> list[Job]:
        """Lease up to ``limit`` due paths, oldest first. A path that was in flight when a daemon died is
        claimed alone, so that if it crashes the daemon again it takes nothing else with it."""
        now = self._clock()
        with self._tx() as db:
            rows = db.execute(
                "SELECT path, attempts, crashes, reason FROM watch_queue"
                " WHERE lease IS NULL AND not_before <= ? AND crashes > 0 ORDER BY enqueued LIMIT 1",
                (now,),
            ).fetchall()
            if not rows:
                rows = db.execute(
                    "SELECT path, attempts, crashes, reason FROM watch_queue"
                    " WHERE lease IS NULL AND not_before <= ? ORDER BY not_before, enqueued LIMIT ?",
                    (now, max(1, limit)),
                ).fetchall()
            db.executemany(
                "UPDATE watch_queue SET lease = ?, leased_at = ?, attempts = attempts + 1, again = 0"
                " WHERE path = ?",
                [(self.owner, now, r[0]) for r in rows],
            )
        return [Job(path_from_db(p), attempts + 1, crashes, reason) for p, attempts, crashes, reason in rows]

    # -- outcomes ---------------------------------------------------------------------------------------------

    def complete(self, paths: Iterable[Path]) -> list[Path]:
        """The paths are done. Rows marked ``again`` go back to waiting (returned) instead of away."""
        done = list(paths)
        again: list[Path] = []
        with self._tx() as db:
            for path in done:
                key = db_path(path)
                row = db.execute(
                    "SELECT again FROM watch_queue WHERE path = ? AND lease = ?", (key, self.owner)
                )
                found = row.fetchone()
                if found is not None and found[0]:
                    db.execute(
                        "UPDATE watch_queue SET lease = NULL, leased_at = NULL, again = 0, attempts = 0,"
                        " crashes = 0, last_error = NULL WHERE path = ?",
                        (key,),
                    )
                    again.append(path)
                else:
                    db.execute("DELETE FROM watch_queue WHERE path = ?", (key,))
                db.execute("DELETE FROM watch_failed WHERE path = ?", (key,))
            self._bump(db, "done", len(done))
        return again

    def retry_later(self, path: Path, error: str, delay: float) -> None:
        """A transient failure: back to waiting, not before ``delay`` seconds from now."""
        with self._tx() as db:
            db.execute(
                "UPDATE watch_queue SET lease = NULL, leased_at = NULL, not_before = ?, last_error = ?"
                " WHERE path = ?",
                (self._clock() + delay, db_text(error), db_path(path)),
            )

    def fail(self, path: Path, error: str, size: int | None = None, mtime_ns: int | None = None) -> None:
        """A permanent failure: off the queue, onto the failed list (with the stat it failed at)."""
        key = db_path(path)
        with self._tx() as db:
            row = db.execute("SELECT attempts FROM watch_queue WHERE path = ?", (key,)).fetchone()
            attempts = row[0] if row else 1
            db.execute("DELETE FROM watch_queue WHERE path = ?", (key,))
            db.execute(
                "INSERT OR REPLACE INTO watch_failed (path, size, mtime_ns, error, attempts, failed_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, size, mtime_ns, db_text(error), attempts, self._clock()),
            )

    def release(self, paths: Iterable[Path]) -> None:
        """Give claimed paths back untouched (a drain ran out of time): the claim does not count."""
        with self._tx() as db:
            db.executemany(
                "UPDATE watch_queue SET lease = NULL, leased_at = NULL, attempts = MAX(attempts - 1, 0)"
                " WHERE path = ? AND lease = ?",
                [(db_path(p), self.owner) for p in paths],
            )

    def recover(self) -> list[Path]:
        """At start, with the daemon lock held: rows leased by a daemon that is gone go back to waiting,
        each with one more crash on its record. Returns them."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT path FROM watch_queue WHERE lease IS NOT NULL AND lease != ?", (self.owner,)
            ).fetchall()
            db.execute(
                "UPDATE watch_queue SET lease = NULL, leased_at = NULL, crashes = crashes + 1, not_before = 0"
                " WHERE lease IS NOT NULL AND lease != ?",
                (self.owner,),
            )
        return [path_from_db(r[0]) for r in rows]

    # -- removal ----------------------------------------------------------------------------------------------

    def remove(self, paths: Iterable[Path]) -> None:
        """Forget paths entirely (deleted or moved away): waiting rows and failures. In-flight rows stay
        (their batch reports them)."""
        keys = [(db_path(p),) for p in paths]
        with self._tx() as db:
            db.executemany("DELETE FROM watch_queue WHERE path = ? AND lease IS NULL", keys)
            db.executemany("DELETE FROM watch_failed WHERE path = ?", keys)

    def drop(self, paths: Iterable[Path]) -> None:
        """Remove paths whatever their state (a claimed file turned out to be gone)."""
        keys = [(db_path(p),) for p in paths]
        with self._tx() as db:
            db.executemany("DELETE FROM watch_queue WHERE path = ?", keys)
            db.executemany("DELETE FROM watch_failed WHERE path = ?", keys)

    def remove_under(self, folder: Path) -> None:
        """Forget every waiting row and failure at any depth below ``folder`` (it was deleted or moved away)."""
        clause, args = under_clause("path", folder)
        with self._tx() as db:
            db.execute(f"DELETE FROM watch_queue WHERE lease IS NULL AND {clause}", args)
            db.execute(f"DELETE FROM watch_failed WHERE {clause}", args)

    # -- failures ---------------------------------------------------------------------------------------------

    def failures(self) -> list[Failure]:
        rows = self._query(
            "SELECT path, error, attempts, failed_at, size, mtime_ns FROM watch_failed ORDER BY failed_at, path"
        )
        return [Failure(path_from_db(p), e, a, t, s, m) for p, e, a, t, s, m in rows]

    def failed_stats(self) -> dict[str, tuple[int | None, int | None]]:
        """``str(path)`` -> (size, mtime_ns) each failure was recorded at (a rescan skips unchanged failures)."""
        rows = self._query("SELECT path, size, mtime_ns FROM watch_failed")
        return {str(path_from_db(p)): (s, m) for p, s, m in rows}

    def retry_failed(self, paths: Iterable[Path] | None = None) -> list[Path]:
        """Move failures (all, or those at or below ``paths``) back to the queue; returns them."""
        chosen = [f.path for f in self.failures()]
        if paths is not None:
            wanted = [Path(p) for p in paths]
            chosen = [p for p in chosen if any(p == w or p.is_relative_to(w) for w in wanted)]
        now = self._clock()
        with self._tx() as db:
            for p in chosen:
                db.execute("DELETE FROM watch_failed WHERE path = ?", (db_path(p),))
                db.execute(
                    "INSERT INTO watch_queue (path, reason, enqueued) VALUES (?, 'retry', ?)"
                    " ON CONFLICT(path) DO NOTHING",
                    (db_path(p), now),
                )
        return chosen

    # -- status -----------------------------------------------------------------------------------------------

    def counts(self) -> QueueCounts:
        now = self._clock()
        queued, retrying, in_flight = self._query(
            "SELECT COALESCE(SUM(lease IS NULL AND not_before <= ?), 0),"
            " COALESCE(SUM(lease IS NULL AND not_before > ?), 0), COALESCE(SUM(lease IS NOT NULL), 0)"
            " FROM watch_queue",
            (now, now),
        )[0]
        failed = self._query("SELECT COUNT(*) FROM watch_failed")[0][0]
        return QueueCounts(queued, retrying, in_flight, failed, int(self.get_meta("done") or 0))

    def waiting(self) -> set[str]:
        """Every path in the queue (waiting or in flight), as ``str(path)``."""
        return {str(path_from_db(r[0])) for r in self._query("SELECT path FROM watch_queue")}

    def next_due(self) -> float | None:
        """When the earliest waiting row becomes due (None: nothing waits)."""
        row = self._query("SELECT MIN(not_before) FROM watch_queue WHERE lease IS NULL")
        return row[0][0] if row and row[0][0] is not None else None

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM watch_meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO watch_meta (key, value) VALUES (?, ?)", (key, db_text(value)))

    def heartbeat(self, info: dict[str, Any]) -> None:
        """Publish the running daemon's state for ``phototag status``."""
        self.set_meta("daemon", json.dumps(info, sort_keys=True))

    def daemon_info(self) -> dict[str, Any] | None:
        raw = self.get_meta("daemon")
        return json.loads(raw) if raw else None

    @staticmethod
    def _bump(db: sqlite3.Connection, key: str, n: int) -> int:
        row = db.execute("SELECT value FROM watch_meta WHERE key = ?", (key,)).fetchone()
        value = int(row[0]) + n if row else n
        if n:
            db.execute("INSERT OR REPLACE INTO watch_meta (key, value) VALUES (?, ?)", (key, str(value)))
        return value
