"""One SQLite file in WAL mode, shared by the threads of one process: the base of the state DB and the queue.

Paths are data: a Linux file name can be any bytes, which Python hands over as ``str`` with lone surrogates
(surrogateescape) that SQLite cannot store as TEXT. :func:`db_path` stores such a path as a BLOB of its raw
bytes in the same column (SQLite columns are dynamically typed); :func:`path_from_db` reads either form back,
and :func:`under_clause` finds both under a folder.

Every SQLite error becomes a :class:`~phototag.errors.StateError` that names the file, says what happened
(damaged, locked by another process, not writable, disk full) and what to do.
"""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from .errors import StateError

# SQLite's primary result codes (an extended code keeps its primary code in the low byte)
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _AUTH, _NOTADB = (
    3, 5, 6, 8, 10, 11, 13, 14, 23, 26,
)  # fmt: skip
_CREATE = re.compile(r"^\s*CREATE\s+(?:TABLE|INDEX)\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z_]\w*$")


# -- paths as stored ----------------------------------------------------------------------------------------------


def db_path(path: Path | str) -> str | bytes:
    """How ``path`` is bound in SQL: the str when it is valid UTF-8, else its raw bytes (stored as a BLOB)."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def path_from_db(value: str | bytes) -> Path:
    """The path a ``path`` column holds, TEXT or BLOB (the inverse of :func:`db_path`)."""
    return Path(os.fsdecode(value) if isinstance(value, bytes) else value)


def db_text(text: str | None) -> str | None:
    """Free text (an error message that may quote an undecodable file name) made storable as TEXT: the bytes
    of a name that are not UTF-8 are written as ``\\xNN``, any other lone surrogate as ``\\uNNNN``."""
    if text is None:
        return None
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def under_clause(column: str, folder: Path) -> tuple[str, list[object]]:
    """A SQL condition (and its arguments) true for the paths in ``column`` at any depth below ``folder``,
    TEXT or BLOB. TEXT compares characters and BLOB bytes, so each form gets its own prefix."""
    prefix = os.fspath(folder).rstrip("/") + "/"
    raw = os.fsencode(prefix)
    sql = f"((typeof({column}) = 'blob' AND substr({column}, 1, ?) = ?)"
    args: list[object] = [len(raw), raw]
    text = db_path(prefix)
    if isinstance(text, str):  # a TEXT path is valid UTF-8, so it cannot lie below a folder that is not
        sql += f" OR (typeof({column}) = 'text' AND substr({column}, 1, ?) = ?)"
        args += [len(text), text]
    return sql + ")", args


# -- errors -------------------------------------------------------------------------------------------------------


def _code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def damaged_message(path: Path, what: str, detail: str) -> str:
    """What to say about a damaged file, and how to get going again."""
    where = shlex.quote(str(path))
    return (
        f"{path}: the {what} is damaged ({detail}). It is a cache: move it aside (mv {where} {where}.broken, "
        "and its -wal and -shm files if any) and run phototag again; it is rebuilt from the photos and their "
        "JSON sidecars without re-running models where the results are still valid. "
        "`phototag state check` verifies it."
    )


def describe_error(path: Path, what: str, error: sqlite3.Error) -> str:
    """The message for a SQLite ``error`` on the file at ``path`` (holding ``what``): what happened and what
    to do. Damage, a lock held by another process and a permission problem each get their own advice."""
    code, text = _code(error), str(error)
    lowered = text.lower()
    if code in (_CORRUPT, _NOTADB) or "malformed" in lowered or "not a database" in lowered:
        return damaged_message(path, what, text)
    if code in (_BUSY, _LOCKED) or "locked" in lowered:
        return (
            f"{path}: the {what} is locked ({text}): another process holds it, such as a running "
            "`phototag watch` or scan; wait for it to finish or stop it, then try again"
        )
    if code in (_READONLY, _PERM, _AUTH, _CANTOPEN) or "readonly" in lowered:
        return (
            f"{path}: cannot write the {what} ({text}); check that this user may write the file and its "
            "folder, or point state_db in the config at another file"
        )
    if code == _FULL:
        return f"{path}: the disk holding the {what} is full ({text}); free some space and run phototag again"
    if code == _IOERR:
        return f"{path}: the {what} could not be read or written ({text}); check the disk and try again"
    return f"{path}: the {what} failed ({text}); `phototag state check` verifies the file"


# -- the file -----------------------------------------------------------------------------------------------------


def _statements(script: str) -> list[str]:
    """The statements of a schema script (ours hold no ``;`` inside strings)."""
    return [s.strip() for s in script.split(";") if s.strip()]


class SQLiteFile:
    """A WAL connection behind a lock. ``schema`` is applied on open (``CREATE ... IF NOT EXISTS``), together
    with :meth:`_migrations`, in one transaction; with ``schema_version``, a file written by a newer phototag is
    refused instead of being misread. Nothing is written when the file is already set up, so a file this user
    may only read still opens for reading.

    ``readonly=True`` (dry runs, checks) never changes anything on disk: an existing file is opened read-only
    (a missing table reads as empty), a missing file is not created (an empty in-memory database with the
    schema stands in). Writes then go to a scratch in-memory database with the schema and are discarded: they
    succeed, so callers need no dry-run branches, and reads show the file as it is, not the dry run's writes.
    SQLite may leave empty ``-wal``/``-shm`` files beside an existing WAL database; its bytes stay as they were.
    """

    def __init__(
        self,
        path: Path,
        schema: str,
        what: str,
        schema_version: int | None = None,
        *,
        readonly: bool = False,
        busy_timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.what = what
        self.readonly = readonly
        self._schema = schema
        self._version = schema_version
        self._timeout = busy_timeout
        self._lock = threading.RLock()
        self._scratch: sqlite3.Connection | None = None
        try:
            self._db = self._connect_readonly() if readonly else self._connect()
        except BaseException as e:
            if self._scratch is not None:
                self._scratch.close()
            if isinstance(e, sqlite3.Error):
                raise self._error(e) from e
            if not isinstance(e, OSError):
                raise
            raise StateError(
                f"{self.path}: cannot open the {what} ({e}); check state_db in the config and that its folder "
                "is writable"
            ) from e

    # -- opening ----------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._open(self.path)
        try:
            # Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is locked" at
            # once, without its busy handler, while another process (a second scan starting at the same
            # moment) sets the file up: try again for as long as the busy timeout allows (_set_up rolls back).
            def set_up() -> None:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                self._set_up(db)

            self._when_free(set_up)
        except BaseException:
            db.close()
            raise
        return db

    def _connect_readonly(self) -> sqlite3.Connection:
        self._scratch = self._memory()
        if not self.path.exists():
            return self._memory()
        db = self._open(f"file:{quote(os.fsencode(self.path.absolute()))}?mode=ro", uri=True)
        try:
            self._check_version(db)
            for statement in _statements(self._schema):
                name = self._created(statement)
                is_table = statement.upper().lstrip().startswith("CREATE TABLE")
                if name is not None and is_table and not self._exists(db, name):
                    # a temp table shadows the missing one, so reads find nothing instead of failing
                    db.execute(re.sub(r"^\s*CREATE\s+TABLE", "CREATE TEMP TABLE", statement, flags=re.I))
        except BaseException:
            db.close()
            raise
        return db

    def _memory(self) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._set_up(db)
        return db

    def _open(self, target: str | Path, uri: bool = False) -> sqlite3.Connection:
        db = sqlite3.connect(
            target, check_same_thread=False, isolation_level=None, timeout=self._timeout, uri=uri
        )
        db.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        return db

    def _set_up(self, db: sqlite3.Connection) -> None:
        """Create what is missing and migrate, in one transaction; nothing at all when all is in place."""
        if self._is_set_up(db):
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            self._check_version(db)  # again: a newer phototag may have upgraded the file since we looked
            for statement in _statements(self._schema):
                db.execute(statement)
            for statement in self._migrations(db):  # looked at inside the transaction: another process may
                db.execute(statement)  # have migrated the file since we looked
            if self._version is not None:
                db.execute(f"PRAGMA user_version={int(self._version)}")
            db.execute("COMMIT")
        except BaseException:
            self._rollback(db)
            raise

    def _is_set_up(self, db: sqlite3.Connection) -> bool:
        version = self._check_version(db)
        if self._version is not None and version != self._version:
            return False
        names = [n for n in map(self._created, _statements(self._schema)) if n is not None]
        return all(self._exists(db, n) for n in names) and not self._migrations(db)

    def _check_version(self, db: sqlite3.Connection) -> int:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if self._version is not None and version > self._version:
            raise StateError(
                f"{self.path}: {self.what} schema {version} is newer than this phototag understands "
                f"({self._version}); upgrade phototag or point state_db at another file"
            )
        return version

    def _migrations(self, db: sqlite3.Connection) -> list[str]:
        """Statements that bring an older file up to ``schema`` (run after it, in the same transaction).
        Subclasses look at the file (``PRAGMA table_info``) rather than trust the version number alone."""
        return []

    @staticmethod
    def _created(statement: str) -> str | None:
        match = _CREATE.match(statement)
        return match.group(1) if match else None

    @staticmethod
    def _exists(db: sqlite3.Connection, name: str) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None

    @staticmethod
    def _columns_of(db: sqlite3.Connection, table: str) -> set[str]:
        if not _NAME.match(table):
            raise ValueError(f"not a table name: {table!r}")
        return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}

    # -- life -------------------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._scratch is not None:
                self._scratch.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checks -----------------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The file's ``user_version`` (0 for a file phototag never versioned)."""
        return int(self._query("PRAGMA user_version")[0][0])

    def integrity_problems(self) -> list[str]:
        """What ``PRAGMA integrity_check`` finds; empty when the file is sound."""
        rows = [str(r[0]) for r in self._query("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else rows

    def has_column(self, table: str, column: str) -> bool:
        with self._lock:
            try:
                return column in self._columns_of(self._db, table)
            except sqlite3.Error as e:
                raise self._error(e) from e

    def row_count(self, table: str) -> int | None:
        """Rows in ``table``; None when the file has no such table."""
        if not _NAME.match(table):
            raise ValueError(f"not a table name: {table!r}")
        if not self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)):
            return None
        return int(self._query(f"SELECT COUNT(*) FROM {table}")[0][0])

    # -- statements -------------------------------------------------------------------------------------------

    def _error(self, error: sqlite3.Error) -> StateError:
        return StateError(describe_error(self.path, self.what, error))

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        if db.in_transaction:
            with suppress(sqlite3.Error):  # a damaged file may refuse even this; the first error is the news
                db.execute("ROLLBACK")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it lands, or none of it. Read-only: it lands in the scratch."""
        with self._lock:
            db = self._scratch if self._scratch is not None else self._db
            try:
                self._when_free(lambda: db.execute("BEGIN IMMEDIATE"))
                yield db
                db.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback(db)
                raise self._error(e) from e
            except BaseException:
                self._rollback(db)
                raise

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                rows: list[Any] = self._when_free(lambda: self._db.execute(sql, tuple(args)).fetchall())
                return rows
            except sqlite3.Error as e:
                raise self._error(e) from e

    def _when_free(self, step: Callable[[], Any]) -> Any:
        """Run ``step`` (a read, or BEGIN: nothing done yet, so safe to repeat), trying again while SQLite
        says the file is busy. Its busy handler waits for most locks, but some (a WAL index being rebuilt or set
        up by another process that is starting) are answered "locked" at once; bounded by the busy timeout."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return step()
            except sqlite3.OperationalError as e:
                busy = _code(e) in (_BUSY, _LOCKED) or "locked" in str(e).lower()
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
