"""What the web pages read from the state database: photos by id, their keywords, caption, people and place,
keyword search, the recently tagged photos. Plain functions over a :class:`~phototag.state.StateDB` (and a
:class:`~phototag.people.store.PeopleStore`); no HTTP here.

A photo is addressed by its content hash (the state DB's key for its results; stable across renames and
rewrites, unlike a row id): a client never sends a path, and an id that is not on record, or is not a hex
digest at all, is simply not found. Copies of the same bytes show as the first of their paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..people.store import PeopleStore
from ..sqlitedb import path_from_db
from ..state import FileRecord, StateDB
from ..types import AnalyzerRun
from ..xmpfields import keyword_text

_KEY = re.compile(r"[0-9a-f]{16,128}")


@dataclass(frozen=True)
class PhotoRef:
    """A photo on record: its path and content hash (``id``, the key pages use)."""

    path: Path
    content_hash: str

    @property
    def id(self) -> str:
        return self.content_hash

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Keyword:
    """One of phototag's keywords for a photo: the flat keyword, its path below the root, score, analyzer."""

    name: str
    path: tuple[str, ...]
    score: float
    analyzer: str


@dataclass
class PhotoInfo:
    """What the photo page shows."""

    ref: PhotoRef
    record: FileRecord
    keywords: list[Keyword] = field(default_factory=list)
    caption: str | None = None
    people: list[tuple[int | None, str]] = field(default_factory=list)
    """(person id, name) of the named people in the photo."""
    place: str | None = None
    faces: int = 0


def is_key(text: str) -> bool:
    """Could ``text`` be a content hash (lower-case hex)? Anything else is refused before any lookup."""
    return bool(_KEY.fullmatch(text))


def photo(db: StateDB, key: str) -> PhotoRef | None:
    """The photo with this content hash (its first path on record), or None."""
    if not is_key(key):
        return None
    rows = db._query(
        "SELECT path FROM files WHERE content_hash = ? AND status = 'done' ORDER BY path LIMIT 1", (key,)
    )
    return PhotoRef(path_from_db(rows[0][0]), key) if rows else None


def refs_for_hashes(db: StateDB, hashes: Iterable[str]) -> dict[str, PhotoRef]:
    """content hash -> its first photo on record (by path); hashes with no photo left are missing."""
    out: dict[str, PhotoRef] = {}
    wanted = list(dict.fromkeys(hashes))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = db._query(
            f"SELECT path, content_hash FROM files WHERE content_hash IN ({marks}) ORDER BY path",
            chunk,
        )
        for path, content_hash in rows:
            out.setdefault(str(content_hash), PhotoRef(path_from_db(path), str(content_hash)))
    return out


def record_of(db: StateDB, ref: PhotoRef) -> FileRecord | None:
    return db.file_record(ref.path)


def current_runs(db: StateDB, record: FileRecord) -> list[AnalyzerRun]:
    """The cached results of the analyzers that ran on the photo last (its recorded fingerprints)."""
    if record.content_hash is None:
        return []
    runs = []
    for analyzer, fingerprint in sorted(record.fingerprints.items()):
        run = db.cached_run(record.content_hash, analyzer, fingerprint)
        if run is not None and run.analysis is not None:
            runs.append(run)
    return runs


def keywords_of(runs: Sequence[AnalyzerRun], min_score: float) -> list[Keyword]:
    """phototag's keywords in these results, as the XMP writer chooses them (score at least ``min_score``;
    the flat keyword cleaned as it is written); places are keywords too."""
    out: list[Keyword] = []
    seen: set[str] = set()
    for run in runs:
        for tag in run.analysis.tags if run.analysis is not None else ():
            name = keyword_text(tag.name)
            if tag.score < min_score or not name or name.casefold() in seen:
                continue
            seen.add(name.casefold())
            out.append(Keyword(name, tuple(tag.hierarchy), float(tag.score), run.analyzer))
    return out


def info(db: StateDB, people: PeopleStore | None, ref: PhotoRef, min_score: float) -> PhotoInfo | None:
    """Keywords, caption, people and place of one photo, from the cached results and the people tables."""
    record = record_of(db, ref)
    if record is None:
        return None
    runs = current_runs(db, record)
    out = PhotoInfo(ref, record, keywords=keywords_of(runs, min_score))
    for run in runs:
        analysis = run.analysis
        if analysis is None:
            continue
        if out.caption is None and analysis.caption:
            out.caption = analysis.caption
        for tag in analysis.tags:
            if tag.hierarchy and tag.hierarchy[0] == "Places" and out.place is None:
                out.place = ", ".join(reversed(tag.hierarchy[1:]))
    if people is not None:
        faces = people.faces_of(ref.content_hash)
        out.faces = len(faces)
        for face in faces:
            name = face.user_name
            person = people.person(face.person) if face.person is not None else None
            if person is not None and not person.forgotten and person.name:
                name = person.name
            if name and all(n != name for _, n in out.people):
                out.people.append((face.person, name))
    return out


def search_keywords(db: StateDB, words: str, min_score: float, limit: int) -> list[tuple[PhotoRef, str]]:
    """Photos with a keyword (of their current results) that contains ``words`` (case ignored), as
    (photo, the matching keyword), photos whose keyword equals the words first."""
    text = " ".join(words.split())
    if not text:
        return []
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = db._query(
        "SELECT f.path, f.content_hash, json_extract(t.value, '$.name') FROM files f "
        "JOIN runs r ON r.content_hash = f.content_hash "
        "AND json_extract(f.fingerprints, '$.\"' || r.analyzer || '\"') = r.fingerprint, "
        "json_each(r.run, '$.tags') t "
        "WHERE f.status = 'done' AND json_extract(t.value, '$.name') LIKE ? ESCAPE '\\' "
        "AND json_extract(t.value, '$.score') >= ? ORDER BY f.updated DESC, f.path",
        (pattern, min_score),
    )
    exact: list[tuple[PhotoRef, str]] = []
    partial: list[tuple[PhotoRef, str]] = []
    seen: set[str] = set()
    for path, content_hash, name in rows:
        if content_hash in seen:
            continue
        seen.add(str(content_hash))
        ref = PhotoRef(path_from_db(path), str(content_hash))
        (exact if str(name).casefold() == text.casefold() else partial).append((ref, str(name)))
    return (exact + partial)[:limit]


def recent(db: StateDB, limit: int, offset: int = 0) -> list[PhotoRef]:
    """The photos recorded most recently (tagged or written again), newest first."""
    rows = db._query(
        "SELECT path, content_hash FROM files WHERE status = 'done' AND content_hash IS NOT NULL "
        "ORDER BY updated DESC, path LIMIT ? OFFSET ?",
        (int(limit), int(offset)),
    )
    return [PhotoRef(path_from_db(p), str(h)) for p, h in rows]


def photos_with_keyword(
    db: StateDB, keyword: str, min_score: float, refs: Sequence[PhotoRef]
) -> list[PhotoRef]:
    """Those of ``refs`` whose current keywords include ``keyword`` (case ignored)."""
    out = []
    for ref in refs:
        record = record_of(db, ref)
        if record is None:
            continue
        names = {k.name.casefold() for k in keywords_of(current_runs(db, record), min_score)}
        if keyword.casefold() in names:
            out.append(ref)
    return out
