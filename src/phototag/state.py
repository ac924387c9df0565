"""The state database (SQLite, WAL): what was done to which file, with which models.

Tables:

- ``files``: one row per path: size, mtime_ns (as recorded *after* our own write), content hash, status
  (``done`` | ``failed``), last error, the fingerprint of every analyzer that ran, and the names of the files
  the writers produced beside the photo (``outputs``). A re-scan compares size + mtime + fingerprints only
  (stat, no hashing): :meth:`StateDB.is_current`; :meth:`StateDB.current_record` also gives the outputs, so
  that a sidecar the user deleted is written again. A path that is not valid UTF-8 is stored as a BLOB of its
  bytes (:func:`~phototag.sqlitedb.db_path`).
- ``runs``: each analyzer's result per content hash and fingerprint. A rename, a re-run after adding one
  analyzer, or a second copy of the same photo costs no model time.
- ``embeddings``: one float32 vector per content hash and embedding model.

Every write is one transaction, so a crash leaves the previous state or the new one.

Schema versions: 1 (first release); 2 adds ``files.outputs`` (a version-1 file is migrated in place on open).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .serialize import run_from_dict, run_to_dict
from .sqlitedb import SQLiteFile, db_path, db_text, path_from_db, under_clause
from .types import AnalyzerRun, Photo

if TYPE_CHECKING:
    import numpy as np

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT,
    status TEXT NOT NULL,
    error TEXT,
    fingerprints TEXT NOT NULL DEFAULT '{}',
    updated REAL NOT NULL,
    outputs TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS files_hash ON files(content_hash);
CREATE INDEX IF NOT EXISTS files_status ON files(status);
CREATE TABLE IF NOT EXISTS runs (
    content_hash TEXT NOT NULL,
    analyzer TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    run TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (content_hash, analyzer, fingerprint)
);
CREATE TABLE IF NOT EXISTS embeddings (
    content_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    dims INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (content_hash, model)
);
"""


@dataclass(frozen=True)
class FileRecord:
    """A ``files`` row. ``outputs`` are the names (not paths) of the files the writers produced beside the photo,
    e.g. ``("cat.jpg.xmp", "cat.jpg.phototag.json")``."""

    path: Path
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str
    error: str | None
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    updated: float = 0.0
    outputs: tuple[str, ...] = ()


def _output_names(outputs: Iterable[str]) -> list[str]:
    names = [str(name) for name in outputs]
    for name in names:
        if not name or name in (".", "..") or os.sep in name:
            raise ValueError(f"outputs are file names beside the photo, not paths: {name!r}")
    return names


class StateDB(SQLiteFile):
    """The state database; safe to share between the threads of one process.

    ``readonly=True`` is for dry runs: the file is only read and never created (see :class:`SQLiteFile`).
    Writes are accepted and land in an in-memory scratch that is thrown away, rather than being refused or
    turned into no-op methods one by one: the pipeline needs no dry-run branches and cannot touch the file by
    forgetting one.
    """

    def __init__(self, path: Path, *, readonly: bool = False, busy_timeout: float = 30.0) -> None:
        super().__init__(
            path, SCHEMA, "state database", SCHEMA_VERSION, readonly=readonly, busy_timeout=busy_timeout
        )
        # a read-only version-1 file cannot be migrated: it reads as if no outputs had been recorded
        try:
            outputs = "outputs" if self.has_column("files", "outputs") else "'[]'"
        except BaseException:
            self.close()
            raise
        self._columns = f"path, size, mtime_ns, content_hash, status, error, fingerprints, updated, {outputs}"

    def _migrations(self, db: sqlite3.Connection) -> list[str]:
        if "outputs" in self._columns_of(db, "files"):
            return []
        return ["ALTER TABLE files ADD COLUMN outputs TEXT NOT NULL DEFAULT '[]'"]  # version 1 -> 2

    # -- files ------------------------------------------------------------------------------------------------

    @staticmethod
    def _record(row: tuple) -> FileRecord:
        path, size, mtime_ns, content_hash, status, error, fps, updated, outputs = row
        return FileRecord(
            path_from_db(path),
            size,
            mtime_ns,
            content_hash,
            status,
            error,
            json.loads(fps),
            updated,
            tuple(json.loads(outputs)),
        )

    def file_record(self, path: Path) -> FileRecord | None:
        rows = self._query(f"SELECT {self._columns} FROM files WHERE path = ?", (db_path(path),))
        return self._record(rows[0]) if rows else None

    def current_record(
        self, path: Path, size: int, mtime_ns: int, fingerprints: Mapping[str, str]
    ) -> FileRecord | None:
        """The record of ``path`` when it was done with exactly these analyzer fingerprints and has not changed
        since (see :meth:`is_current`); else None. The caller can stat ``outputs`` to find deleted sidecars."""
        rec = self.file_record(path)
        if (
            rec is not None
            and rec.status == "done"
            and rec.size == size
            and rec.mtime_ns == mtime_ns
            and dict(rec.fingerprints) == dict(fingerprints)
        ):
            return rec
        return None

    def is_done(self, path: Path, size: int, mtime_ns: int, fingerprints: Mapping[str, str]) -> bool:
        """:meth:`current_record` exists *and* the files the writers made beside the photo are all still there
        (a sidecar the user deleted is made again, from the cached results). The one "done" test of the
        pipeline and of the daemon's main thread."""
        rec = self.current_record(path, size, mtime_ns, fingerprints)
        return rec is not None and all(os.path.lexists(path.parent / name) for name in rec.outputs)

    def is_current(self, path: Path, size: int, mtime_ns: int, fingerprints: Mapping[str, str]) -> bool:
        """True when ``path`` was done with exactly these analyzer fingerprints and has not changed since."""
        return self.current_record(path, size, mtime_ns, fingerprints) is not None

    def record_done(
        self,
        photo: Photo,
        fingerprints: Mapping[str, str],
        error: str | None = None,
        status: str = "done",
        outputs: Iterable[str] = (),
    ) -> None:
        """Record ``photo`` (stat as it is *after* our writes) as processed with these analyzer fingerprints;
        ``outputs`` are the names of the files the writers produced beside it (ValueError for a path)."""
        names = _output_names(outputs)
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO files"
                " (path, size, mtime_ns, content_hash, status, error, fingerprints, updated, outputs)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    db_path(photo.path),
                    photo.size,
                    photo.mtime_ns,
                    photo.content_hash,
                    status,
                    db_text(error),
                    json.dumps(dict(fingerprints), sort_keys=True),
                    time.time(),
                    json.dumps(names),
                ),
            )

    def record_failed(
        self, path: Path, size: int, mtime_ns: int, error: str, content_hash: str | None = None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO files (path, size, mtime_ns, content_hash, status, error, fingerprints, updated)"
                " VALUES (?, ?, ?, ?, 'failed', ?, '{}', ?)"
                " ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,"
                " content_hash=COALESCE(excluded.content_hash, files.content_hash), status='failed',"
                " error=excluded.error, updated=excluded.updated",
                (db_path(path), size, mtime_ns, content_hash, db_text(error), time.time()),
            )

    def forget(self, path: Path) -> None:
        """The file is gone: drop its row (cached results stay, keyed by content)."""
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE path = ?", (db_path(path),))

    def rename(self, old: Path, new: Path) -> None:
        """Follow a move: the record keeps its hash and fingerprints under the new path."""
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE path = ?", (db_path(new),))
            db.execute("UPDATE files SET path = ? WHERE path = ?", (db_path(new), db_path(old)))

    def records(self, under: Path | None = None, status: str | None = None) -> list[FileRecord]:
        """Records at any depth below ``under`` (all when None), optionally only those with ``status``."""
        sql = f"SELECT {self._columns} FROM files WHERE 1=1"
        args: list[object] = []
        if under is not None:
            clause, clause_args = under_clause("path", under)
            sql += f" AND {clause}"
            args += clause_args
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        return [self._record(r) for r in self._query(sql + " ORDER BY path", tuple(args))]

    def counts(self) -> dict[str, int]:
        return {status: n for status, n in self._query("SELECT status, COUNT(*) FROM files GROUP BY status")}

    def paths_for_hash(self, content_hash: str) -> list[Path]:
        rows = self._query("SELECT path FROM files WHERE content_hash = ? ORDER BY path", (content_hash,))
        return [path_from_db(r[0]) for r in rows]

    def done_in(self, folder: Path, fingerprints: Mapping[str, str]) -> dict[str, tuple[int, int, str]]:
        """The files directly in ``folder`` (absolute) recorded as done with exactly ``fingerprints``: name ->
        (size, mtime_ns, the ``outputs`` column as stored, JSON). The bulk form of :meth:`current_record` for
        a re-scan: one indexed range read per folder instead of a query per file, and the fingerprints
        compared as the text :meth:`record_done` stores (a row whose text differs is just left out, and the
        caller asks :meth:`is_done` about it)."""
        prefix = os.fspath(folder).rstrip("/") + "/"
        raw = os.fsencode(prefix)
        # '0' follows '/': [prefix, prefix[:-1] + '0') is everything below the folder, an index range each for
        # the BLOB paths (not UTF-8) and the TEXT ones; substr counts bytes in a BLOB, characters in TEXT
        ranges = ["(path >= ? AND path < ?)"]
        args: list[object] = [raw, raw[:-1] + b"0"]
        text = db_path(prefix)
        if isinstance(text, str):
            ranges.append("(path >= ? AND path < ?)")
            args += [text, text[:-1] + "0"]
        name = "(CASE typeof(path) WHEN 'blob' THEN substr(path, ?) ELSE substr(path, ?) END)"
        outputs = self._columns.rsplit(", ", 1)[-1]  # the column, or '[]' in a read-only version-1 file
        sql = (
            f"SELECT {name}, size, mtime_ns, {outputs} FROM files WHERE ({' OR '.join(ranges)})"
            " AND +status = 'done' AND +fingerprints = ?"  # '+': search the path index, not the status one
        )
        want = json.dumps(dict(fingerprints), sort_keys=True)  # exactly as record_done writes it
        rows = self._query(sql, (len(raw) + 1, len(prefix) + 1, *args, want))
        # deeper rows are their own folders' business
        return {
            os.fsdecode(n) if isinstance(n, bytes) else n: (size, mtime_ns, names)
            for n, size, mtime_ns, names in rows
            if (b"/" if isinstance(n, bytes) else "/") not in n
        }

    # -- analyzer results -------------------------------------------------------------------------------------

    def cached_run(self, content_hash: str, analyzer: str, fingerprint: str) -> AnalyzerRun | None:
        rows = self._query(
            "SELECT run FROM runs WHERE content_hash = ? AND analyzer = ? AND fingerprint = ?",
            (content_hash, analyzer, fingerprint),
        )
        if not rows:
            return None
        return self._with_vector(content_hash, json.loads(rows[0][0]))

    def runs_for_hash(self, content_hash: str) -> list[AnalyzerRun]:
        """Every cached run of these bytes, whatever its fingerprint (for analyses across photos)."""
        rows = self._query("SELECT run FROM runs WHERE content_hash = ? ORDER BY analyzer", (content_hash,))
        runs = [self._with_vector(content_hash, json.loads(r[0])) for r in rows]
        return [r for r in runs if r is not None]

    def _with_vector(self, content_hash: str, doc: dict[str, object]) -> AnalyzerRun | None:
        """A stored run, with its embedding put back from the embeddings table (None when it went missing)."""
        run = run_from_dict(doc)
        # runs of any task may carry a vector (``embedded``); older caches mark them by the embed task only
        if run.analysis is not None and (doc.get("embedded") or run.task == "embed"):
            vector = self.embedding(content_hash, run.fingerprint)
            if vector is None:  # the vector went missing: treat as not cached
                return None
            run = replace(run, analysis=replace(run.analysis, embedding=tuple(float(x) for x in vector)))
        return run

    def store_runs(self, content_hash: str, runs: list[AnalyzerRun]) -> None:
        """Cache successful runs (errors are not cached: they are retried)."""
        import numpy as np

        now = time.time()
        with self._tx() as db:
            for run in runs:
                if run.analysis is None:
                    continue
                doc = run_to_dict(run, False)
                if run.analysis.embedding is not None:
                    doc["embedded"] = True  # the vector is in the embeddings table
                db.execute(
                    "INSERT OR REPLACE INTO runs (content_hash, analyzer, fingerprint, run, created)"
                    " VALUES (?,?,?,?,?)",
                    (content_hash, run.analyzer, run.fingerprint, json.dumps(doc), now),
                )
                if run.analysis.embedding is not None:
                    vector = np.asarray(run.analysis.embedding, dtype=np.float32)
                    db.execute(
                        "INSERT OR REPLACE INTO embeddings (content_hash, model, dims, vector) VALUES (?,?,?,?)",
                        (content_hash, run.fingerprint, int(vector.size), vector.tobytes()),
                    )

    def embedding(self, content_hash: str, model: str) -> np.ndarray | None:
        import numpy as np

        rows = self._query(
            "SELECT vector FROM embeddings WHERE content_hash = ? AND model = ?", (content_hash, model)
        )
        return np.frombuffer(rows[0][0], dtype=np.float32) if rows else None

    def embeddings(self, model: str) -> list[tuple[str, np.ndarray]]:
        """``(content_hash, vector)`` for every photo embedded with ``model`` (an embed analyzer fingerprint)."""
        import numpy as np

        rows = self._query("SELECT content_hash, vector FROM embeddings WHERE model = ?", (model,))
        return [(h, np.frombuffer(v, dtype=np.float32)) for h, v in rows]
