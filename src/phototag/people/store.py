"""The people tables in the state database: every face phototag found or was told about, and the people.

Two tables beside ``files`` and ``runs`` (their own connection, like :mod:`phototag.claims`):

* ``faces``: one row per face, keyed by the photo's content hash, the face model's fingerprint and the face's
  position in the analyzer's regions, so a rename or a copy costs nothing. The box, landmarks and quality the
  detector gave, the descriptor (float32), the person it belongs to (NULL: not assigned, an ambiguous or a
  lone face), the distance that decided it, and ``source``: ``detected``, or ``user`` when the name comes
  from a region the user drew or named in another application (then ``user_name`` holds it: ground truth,
  never changed by clustering).
* ``people``: an id, a name (NULL: an unnamed cluster) and ``forgotten`` (``phototag people forget``: the
  cluster is kept so that its look-alikes join it silently, but it is never listed or named again).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..sqlitedb import SQLiteFile

if TYPE_CHECKING:
    import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    forgotten INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS faces (
    content_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    idx INTEGER NOT NULL,
    x REAL NOT NULL,
    y REAL NOT NULL,
    w REAL NOT NULL,
    h REAL NOT NULL,
    landmarks TEXT NOT NULL DEFAULT '[]',
    quality REAL,
    descriptor BLOB,
    descriptor_model TEXT NOT NULL DEFAULT '',
    person INTEGER,
    distance REAL,
    source TEXT NOT NULL DEFAULT 'detected',
    user_name TEXT,
    PRIMARY KEY (content_hash, model, idx)
);
CREATE INDEX IF NOT EXISTS faces_person ON faces(person);
CREATE INDEX IF NOT EXISTS faces_hash ON faces(content_hash);
"""


@dataclass(frozen=True)
class Face:
    """One stored face. ``box`` is x, y, w, h normalised (top-left corner); ``descriptor`` None for a face the
    user named where phototag found none."""

    content_hash: str
    model: str
    idx: int
    box: tuple[float, float, float, float]
    landmarks: list[list[float]]
    quality: float | None
    descriptor: np.ndarray | None
    descriptor_model: str
    person: int | None
    distance: float | None
    source: str
    user_name: str | None


@dataclass(frozen=True)
class Person:
    id: int
    name: str | None
    forgotten: bool


_FACE_COLUMNS = (
    "content_hash, model, idx, x, y, w, h, landmarks, quality, descriptor, descriptor_model, person, distance, "
    "source, user_name"
)


def _face(row: Sequence[object]) -> Face:
    import numpy as np

    h, model, idx, x, y, w, hh, marks, quality, blob, dmodel, person, distance, source, user = row
    vector = np.frombuffer(blob, dtype=np.float32).copy() if isinstance(blob, bytes) else None
    return Face(
        str(h), str(model), int(idx),  # type: ignore[call-overload]
        (float(x), float(y), float(w), float(hh)),  # type: ignore[arg-type]
        json.loads(str(marks)), None if quality is None else float(quality),  # type: ignore[arg-type]
        vector, str(dmodel),
        None if person is None else int(person),  # type: ignore[call-overload]
        None if distance is None else float(distance),  # type: ignore[arg-type]
        str(source), None if user is None else str(user),
    )  # fmt: skip


class PeopleStore(SQLiteFile):
    """The ``faces`` and ``people`` tables of the state DB at ``path``. ``readonly``: see
    :class:`~phototag.sqlitedb.SQLiteFile` (dry runs read, write nothing)."""

    def __init__(self, path: Path, *, readonly: bool = False, busy_timeout: float = 30.0) -> None:
        super().__init__(path, SCHEMA, "state database", None, readonly=readonly, busy_timeout=busy_timeout)

    # -- faces ------------------------------------------------------------------------------------------------

    def faces_of(self, content_hash: str, model: str | None = None) -> list[Face]:
        """The faces stored for these bytes (with this face model's fingerprint), in region order."""
        sql = f"SELECT {_FACE_COLUMNS} FROM faces WHERE content_hash = ?"
        args: list[object] = [content_hash]
        if model is not None:
            sql += " AND model = ?"
            args.append(model)
        return [_face(r) for r in self._query(sql + " ORDER BY model, idx", args)]

    def all_faces(self, descriptor_model: str | None = None) -> list[Face]:
        """Every face (with a descriptor of ``descriptor_model``, when given)."""
        sql = f"SELECT {_FACE_COLUMNS} FROM faces"
        args: list[object] = []
        if descriptor_model is not None:
            sql += " WHERE descriptor_model = ? AND descriptor IS NOT NULL"
            args.append(descriptor_model)
        return [_face(r) for r in self._query(sql, args)]

    def faces_of_person(self, person: int) -> list[Face]:
        rows = self._query(
            f"SELECT {_FACE_COLUMNS} FROM faces WHERE person = ? ORDER BY content_hash, idx", [person]
        )
        return [_face(r) for r in rows]

    def replace_faces(self, content_hash: str, model: str, faces: Iterable[Face]) -> None:
        """Store the faces of these bytes for this face model, dropping what an older model stored for them."""
        import numpy as np

        with self._tx() as db:
            db.execute("DELETE FROM faces WHERE content_hash = ?", (content_hash,))
            for f in faces:
                db.execute(
                    f"INSERT INTO faces ({_FACE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        content_hash, model, f.idx, *f.box, json.dumps(f.landmarks), f.quality,
                        None if f.descriptor is None else np.asarray(f.descriptor, np.float32).tobytes(),
                        f.descriptor_model, f.person, f.distance, f.source, f.user_name,
                    ),
                )  # fmt: skip

    def assign(self, changes: Iterable[tuple[str, str, int, int | None, float | None]]) -> None:
        """Set (content_hash, model, idx) -> person, distance, in one transaction."""
        with self._tx() as db:
            for content_hash, model, idx, person, distance in changes:
                db.execute(
                    "UPDATE faces SET person = ?, distance = ? WHERE content_hash = ? AND model = ? AND idx = ?",
                    (person, distance, content_hash, model, idx),
                )

    # -- people -----------------------------------------------------------------------------------------------

    def people(self, *, forgotten: bool = False) -> list[Person]:
        """Every person (also the forgotten ones with ``forgotten``), by id."""
        where = "" if forgotten else " WHERE forgotten = 0"
        rows = self._query(f"SELECT id, name, forgotten FROM people{where} ORDER BY id")
        return [Person(int(i), None if n is None else str(n), bool(f)) for i, n, f in rows]

    def person(self, person_id: int) -> Person | None:
        rows = self._query("SELECT id, name, forgotten FROM people WHERE id = ?", [person_id])
        return Person(int(rows[0][0]), rows[0][1], bool(rows[0][2])) if rows else None

    def by_name(self, name: str) -> Person | None:
        """The person (not forgotten) with this name, compared without case."""
        rows = self._query(
            "SELECT id, name, forgotten FROM people WHERE forgotten = 0 AND name = ? COLLATE NOCASE "
            "ORDER BY id LIMIT 1",
            [name],
        )
        return Person(int(rows[0][0]), rows[0][1], bool(rows[0][2])) if rows else None

    def new_person(self, name: str | None = None) -> int:
        with self._tx() as db:
            cur = db.execute("INSERT INTO people (name, created) VALUES (?, ?)", (name, time.time()))
            return int(cur.lastrowid or 0)

    def set_name(self, person_id: int, name: str | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE people SET name = ? WHERE id = ?", (name, person_id))

    def set_forgotten(self, person_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE people SET forgotten = 1, name = NULL WHERE id = ?", (person_id,))

    def merge(self, into: int, others: Sequence[int]) -> None:
        """Move the faces of ``others`` to ``into`` and drop those people."""
        with self._tx() as db:
            for other in others:
                if other == into:
                    continue
                db.execute("UPDATE faces SET person = ? WHERE person = ?", (into, other))
                db.execute("DELETE FROM people WHERE id = ?", (other,))

    def drop_empty_people(self) -> None:
        """Unnamed, not forgotten people with no face left (their faces moved to someone the user named)."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM people WHERE name IS NULL AND forgotten = 0 AND id NOT IN "
                "(SELECT person FROM faces WHERE person IS NOT NULL)"
            )

    def hashes_of(self, people: Iterable[int]) -> set[str]:
        """The content hashes of the photos with a face of any of ``people``."""
        out: set[str] = set()
        for p in people:
            out |= {
                str(r[0])
                for r in self._query("SELECT DISTINCT content_hash FROM faces WHERE person = ?", [p])
            }
        return out
