"""The user's verdicts on phototag's keywords, per photo: accepted or rejected (the web page's Review).

One table in the state database, ``keyword_review`` (content hash, keyword, verdict, when), keyed by the
photo's content hash so that a rename or a copy keeps the verdict. A **rejected** keyword is left out of what
the XMP writer wants for that photo (:func:`without_keywords`, called from
:meth:`phototag.plugins.xmp.XmpWriter.write`), so a re-run or a rewrite does not add it back; an **accepted**
one is the user's own from then on (its entries leave phototag's ``Added*`` records, so ``untag`` keeps it).
Both are also examples for the learned-tags feature to read.

Keywords are compared as the flat keyword (``dc:subject`` text), without case.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from .sqlitedb import SQLiteFile
from .xmpdesired import Desired
from .xmpfields import tagslist_entry

SCHEMA = """
CREATE TABLE IF NOT EXISTS keyword_review (
    content_hash TEXT NOT NULL,
    keyword TEXT NOT NULL COLLATE NOCASE,
    verdict TEXT NOT NULL CHECK (verdict IN ('accepted', 'rejected')),
    decided REAL NOT NULL,
    PRIMARY KEY (content_hash, keyword)
);
"""

VERDICTS = ("accepted", "rejected")


class ReviewStore(SQLiteFile):
    """The ``keyword_review`` table of the state DB at ``path``."""

    def __init__(self, path: Path, *, readonly: bool = False, busy_timeout: float = 30.0) -> None:
        super().__init__(path, SCHEMA, "state database", None, readonly=readonly, busy_timeout=busy_timeout)

    def decide(self, items: Iterable[tuple[str, str]], verdict: str) -> None:
        """Record ``verdict`` for each (content_hash, keyword), replacing an earlier one."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        now = time.time()
        with self._tx() as db:
            for content_hash, keyword in items:
                db.execute(
                    "INSERT INTO keyword_review (content_hash, keyword, verdict, decided) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT(content_hash, keyword) DO UPDATE SET verdict = excluded.verdict,"
                    " decided = excluded.decided",
                    (content_hash, keyword, verdict, now),
                )

    def verdicts(self, content_hash: str) -> dict[str, str]:
        """keyword (lower case) -> verdict, for one photo."""
        rows = self._query(
            "SELECT keyword, verdict FROM keyword_review WHERE content_hash = ?", (content_hash,)
        )
        return {str(k).casefold(): str(v) for k, v in rows}

    def decided(self, hashes: Iterable[str]) -> dict[str, dict[str, str]]:
        """content_hash -> (keyword lower case -> verdict), for several photos."""
        out: dict[str, dict[str, str]] = {}
        for h in set(hashes):
            found = self.verdicts(h)
            if found:
                out[h] = found
        return out


def all_rejected(state_db: Path) -> dict[str, set[str]]:
    """content_hash -> the keywords (lower case) the user rejected on those bytes, for every photo; empty when
    nothing was reviewed. For ``phototag learn``: a rejection is a negative example of that keyword."""
    path = Path(state_db).expanduser()
    if not path.is_file():
        return {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return {}
    try:
        rows = db.execute(
            "SELECT content_hash, keyword FROM keyword_review WHERE verdict = 'rejected'"
        ).fetchall()
    except sqlite3.Error:  # no such table: nothing was ever reviewed
        return {}
    finally:
        db.close()
    out: dict[str, set[str]] = {}
    for content_hash, keyword in rows:
        out.setdefault(str(content_hash), set()).add(str(keyword).casefold())
    return out


def rejected_keywords(state_db: Path, content_hash: str) -> set[str]:
    """The keywords (lower case) the user rejected for these bytes; empty when the state DB or the table does
    not exist. Opened read-only and briefly: the XMP writer asks once per photo it writes."""
    path = Path(state_db).expanduser()
    if not path.is_file():
        return set()
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return set()
    try:
        rows = db.execute(
            "SELECT keyword FROM keyword_review WHERE content_hash = ? AND verdict = 'rejected'",
            (content_hash,),
        ).fetchall()
    except sqlite3.Error:  # no such table: nothing was ever reviewed
        return set()
    finally:
        db.close()
    return {str(r[0]).casefold() for r in rows}


def without_keywords(want: Desired, rejected: set[str]) -> Desired:
    """``want`` without the keywords named in ``rejected`` (lower case): their flat keyword, hierarchy and
    TagsList entries and their provenance records. People keywords are not touched. Changes ``want``."""
    if not rejected:
        return want
    gone = [t for t in want.tags_provenance if t.get("Name", "").casefold() in rejected]
    if not gone:
        return want
    paths = {t.get("Path", "") for t in gone}
    want.tags_provenance = [t for t in want.tags_provenance if t not in gone]
    kept_names = {t.get("Name", "").casefold() for t in want.tags_provenance}
    want.subject = [s for s in want.subject if s.casefold() not in rejected or s.casefold() in kept_names]
    want.hierarchy = [h for h in want.hierarchy if h not in paths]
    slashed = {tagslist_entry(p.split("|")) for p in paths}
    want.tagslist = [t for t in want.tagslist if t not in slashed]
    return want
