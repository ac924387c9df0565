"""Claims: which phototag process is analysing which photo right now, so that two never do the same work.

A ``claims`` table in the state database (beside ``files``; its own connection, like the daemon's queue). Before
a batch is analysed, the pipeline claims the photos that need a model in one transaction; a photo another live
process has claimed is left to that process (a scan next to a running daemon, two scans of one folder). The
claims are dropped when the batch is recorded.

A claim is live while its owner is: the same host and a running process with the same pid *and* start time
(a reused pid does not count), or, for a claim made on another host (a state DB on a share), younger than
:data:`LEASE` seconds. A killed process's claims are taken over by the next one that needs the photos.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .sqlitedb import SQLiteFile, db_path, path_from_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    path TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started TEXT NOT NULL,
    since REAL NOT NULL
);
"""
LEASE = 3600.0
"""Seconds a claim made on another host stays valid (its process cannot be looked at from here)."""


@dataclass(frozen=True)
class Owner:
    """A process: host name, pid, and its start time (``/proc/PID/stat`` field 22; "" where unknown)."""

    host: str
    pid: int
    started: str

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), process_start(os.getpid()))

    def alive(self, now: float, since: float) -> bool:
        """Is the process that made a claim at ``since`` still running?"""
        if self.host != socket.gethostname():
            return now - since < LEASE
        started = process_start(self.pid)
        return started != "" and started == self.started


def process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot), or "" when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()  # field 22 of the whole line; the first two are before ")"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return ""
        except OSError:
            pass
        return "?"  # alive, start unknown (no /proc): a reused pid cannot be told apart


class Claims(SQLiteFile):
    """The claims of one process (``owner``, default: this one) in the state database at ``path``."""

    def __init__(self, path: Path, *, owner: Owner | None = None, readonly: bool = False) -> None:
        super().__init__(path, SCHEMA, "state database", readonly=readonly)
        self.owner = owner or Owner.me()

    def claim(self, paths: Sequence[Path]) -> dict[Path, Owner]:
        """Claim ``paths`` for this process, in one transaction. Returns the paths another live process holds,
        with that process; every other path is now ours."""
        now = time.time()
        held: dict[Path, Owner] = {}
        me = self.owner
        with self._tx() as db:
            for path in paths:
                key = db_path(path)
                row = db.execute(
                    "SELECT host, pid, started, since FROM claims WHERE path = ?", (key,)
                ).fetchone()
                if row is not None:
                    other = Owner(row[0], int(row[1]), row[2])
                    if other != me and other.alive(now, float(row[3])):
                        held[path] = other
                        continue
                db.execute(
                    "INSERT OR REPLACE INTO claims (path, host, pid, started, since) VALUES (?, ?, ?, ?, ?)",
                    (key, me.host, me.pid, me.started, now),
                )
        return held

    def release(self, paths: Iterable[Path]) -> None:
        """Drop this process's claims on ``paths``."""
        me = self.owner
        with self._tx() as db:
            db.executemany(
                "DELETE FROM claims WHERE path = ? AND host = ? AND pid = ? AND started = ?",
                [(db_path(p), me.host, me.pid, me.started) for p in paths],
            )

    def release_all(self) -> None:
        """Drop every claim of this process (at the end of a run)."""
        me = self.owner
        with self._tx() as db:
            db.execute(
                "DELETE FROM claims WHERE host = ? AND pid = ? AND started = ?", (me.host, me.pid, me.started)
            )

    def holders(self) -> dict[Path, Owner]:
        """Every claim in the table (for ``phototag status`` and tests)."""
        rows = self._query("SELECT path, host, pid, started FROM claims")
        return {path_from_db(r[0]): Owner(r[1], int(r[2]), r[3]) for r in rows}
