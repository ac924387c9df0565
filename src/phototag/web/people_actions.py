"""The People page's actions: name, merge, unname, forget, and "not this person" (split one face off).

Each does what the ``phototag people`` command of the same name does (:mod:`phototag.plugins.people`): the
same :class:`~phototag.people.store.PeopleStore` calls in the same order, then the metadata of every photo
concerned is written again from the cached results (:meth:`phototag.pipeline.Pipeline.rewrite`, under each
folder's lock, no model runs). "Not this person" has no command: the face moves to a new unnamed cluster of
its own (so it can be named), and its photo is written again. A face the user named in another application
is ground truth and is not moved.

Blocking (SQLite, exiftool): the routes run these in a worker thread, one at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..people.store import PeopleStore, Person
from ..state import StateDB

LOCK = threading.Lock()
"""One people action at a time in this process (each rewrites photos)."""


class ActionError(Exception):
    """The action cannot be done as asked (unknown person, not a name); the message says why."""


@dataclass
class Done:
    """What an action did: a line for the page, the photos written again and the ones that failed."""

    message: str
    written: int = 0
    failed: list[str] = field(default_factory=list)


class PeopleActions:
    """The actions against one state DB, with the config and plugins the server runs with."""

    def __init__(self, config: Config, pm: Any, state_db: Path) -> None:
        self.config = config
        self.pm = pm
        self.state_db = Path(state_db)

    # -- the actions ----------------------------------------------------------------------------------------

    def name(self, person_id: int, name: str) -> Done:
        text = " ".join(name.split())
        if not text or text.casefold() == "face":
            raise ActionError(f"{name!r} is not a name (digiKam would import it as a person called so)")
        with self._open() as (db, state):
            person = _person(db, person_id)
            same = db.by_name(text)
            touched = {person.id}
            note = ""
            if same is not None and same.id != person.id:
                db.merge(person.id, [same.id])
                touched.add(same.id)
                note = f"merged person {same.id} ({same.name}) into {person.id}; "
            hashes = db.hashes_of(touched)
            db.set_name(person.id, text)
            return self._rewrite(state, hashes, f"{note}person {person.id} is {text}")

    def merge(self, into_id: int, other_ids: Sequence[int]) -> Done:
        ids = [into_id, *[i for i in other_ids if i != into_id]]
        if len(ids) < 2:
            raise ActionError("choose at least one other person to merge into this one")
        with self._open() as (db, state):
            found = [_person(db, i) for i in ids]
            into, others = found[0], found[1:]
            hashes = db.hashes_of(p.id for p in found)
            new_name = into.name or next((p.name for p in others if p.name), None)
            db.merge(into.id, [p.id for p in others])
            db.set_name(into.id, new_name)
            merged = ", ".join(str(p.id) for p in others)
            return self._rewrite(state, hashes, f"merged {merged} into {into.id} ({new_name or 'unnamed'})")

    def unname(self, person_id: int) -> Done:
        with self._open() as (db, state):
            person = _person(db, person_id)
            db.set_name(person.id, None)
            return self._rewrite(state, db.hashes_of([person.id]), f"person {person.id} has no name now")

    def forget(self, person_id: int) -> Done:
        with self._open() as (db, state):
            person = _person(db, person_id)
            db.set_forgotten(person.id)
            return self._rewrite(state, db.hashes_of([person.id]), f"person {person.id} forgotten")

    def split(self, person_id: int, face_id: int) -> Done:
        """Move the face ``face_id`` (the ``faces`` row id) out of ``person_id`` into a new unnamed cluster."""
        with self._open() as (db, state):
            person = _person(db, person_id)
            rows = db._query(
                "SELECT content_hash, model, idx, person, source FROM faces WHERE rowid = ?", [int(face_id)]
            )
            if not rows or rows[0][3] != person.id:
                raise ActionError(f"face {face_id} is not one of person {person.id}'s faces (any more)")
            content_hash, model, idx, _, source = rows[0]
            if source == "user":
                raise ActionError(
                    "this face was named by you in another application: rename or remove the region there"
                )
            new = db.new_person(None)
            db.assign([(str(content_hash), str(model), int(idx), new, None)])
            return self._rewrite(
                state, {str(content_hash)}, f"the face moved from person {person.id} to a new cluster {new}"
            )

    # -- internals ------------------------------------------------------------------------------------------

    def _open(self) -> _Opened:
        return _Opened(self.state_db)

    def _rewrite(self, state: StateDB, hashes: Iterable[str], message: str) -> Done:
        """Write the photos with these content hashes again (from cache), as ``phototag people`` does."""
        from ..pipeline import Pipeline

        paths: dict[Path, None] = {}
        for h in sorted(set(hashes)):
            for path in state.paths_for_hash(h):
                if path.exists():
                    paths[path.absolute()] = None
        if not paths:
            return Done(f"{message}; no photo to write")
        with Pipeline.from_config(self.config, self.pm, state=state) as pipeline:
            outcomes = pipeline.rewrite(sorted(paths))
        failed = [o.message for o in outcomes if o.status == "failed"]
        written = len(outcomes) - len(failed)
        return Done(f"{message}; metadata written again for {written} photo(s)", written, failed)


class _Opened:
    """``with _Opened(path) as (people, state)``: both tables, closed after; one action at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> tuple[PeopleStore, StateDB]:
        LOCK.acquire()
        try:
            self.people = PeopleStore(self.path)
            self.state = StateDB(self.path)
        except BaseException:
            LOCK.release()
            raise
        return self.people, self.state

    def __exit__(self, *exc: object) -> None:
        try:
            self.people.close()
            self.state.close()
        finally:
            LOCK.release()


def _person(db: PeopleStore, person_id: int) -> Person:
    found = db.person(int(person_id))
    if found is None or found.forgotten:
        raise ActionError(f"no person {person_id} (merged or forgotten meanwhile?)")
    return found
