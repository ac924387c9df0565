"""One SQLite file in WAL mode, shared by the threads of one process: the base of the state DB and the queue."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from .errors import StateError


class SQLiteFile:
    """A WAL connection behind a lock. ``schema`` is applied on open (``CREATE ... IF NOT EXISTS``); with
    ``schema_version``, a file written by a newer phototag is refused instead of being misread."""

    def __init__(self, path: Path, schema: str, what: str, schema_version: int | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            if schema_version is not None:
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version > schema_version:
                    raise StateError(
                        f"{self.path}: {what} schema {version} is newer than this phototag understands "
                        f"({schema_version}); upgrade phototag or point state_db at another file"
                    )
            self._db.executescript(schema)
            if schema_version is not None:
                self._db.execute(f"PRAGMA user_version={schema_version}")
        except (sqlite3.Error, OSError) as e:
            raise StateError(
                f"{self.path}: cannot open the {what} ({e}); check state_db in the config and that its folder "
                "is writable"
            ) from e

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it lands, or none of it."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()
