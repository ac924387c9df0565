"""The Review page's actions: accept or reject phototag's keywords, per photo or for many photos at once.

* **Reject**: the verdict goes into the state DB (:mod:`phototag.keywordreview`) and the photos are written
  again from cache; the XMP writer leaves rejected keywords out of what it wants, so the keyword is removed
  now (it was phototag's) and a re-run or rewrite does not add it back.
* **Accept**: the keyword becomes the user's own. Its entries leave phototag's ``XMP-phototag:Added*``
  records (the ones ``untag`` and a re-run remove), so the XMP planner sees a keyword the user already has
  and neither removes it nor records it again (:mod:`phototag.xmpplan`'s ownership rule). The photos are
  then written again from cache, which records their state as a scan would.

Blocking (SQLite, exiftool): the routes run these in a worker thread, one at a time (the people lock).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Config
from ..exiftool import as_list
from ..folderlock import folder_lock
from ..keywordreview import ReviewStore
from ..state import StateDB
from .library import PhotoRef
from .people_actions import LOCK, Done

ADDED_TAGS = (
    "XMP-phototag:AddedSubject",
    "XMP-phototag:AddedHierarchy",
    "XMP-phototag:AddedTagsList",
    "XMP-phototag:AddedKeywords",
)


def leaf(entry: str) -> str:
    """The keyword an Added entry stands for: the last level of a hierarchy or TagsList path."""
    return re.split(r"[|/]", entry)[-1]


def _entries_for(cur: dict[str, Any], keyword: str) -> list[str]:
    """exiftool arguments that take ``keyword``'s entries out of phototag's Added records."""
    args = []
    for tag in ADDED_TAGS:
        for value in as_list(cur.get(tag)):
            if leaf(str(value)).casefold() == keyword.casefold():
                args.append(f"-{tag}-={value}")
    return args


class ReviewActions:
    """Accept and reject against one state DB, with the config and plugins the server runs with."""

    def __init__(self, config: Config, pm: Any, state_db: Path) -> None:
        self.config = config
        self.pm = pm
        self.state_db = Path(state_db)

    def reject(self, refs: Sequence[PhotoRef], keyword: str) -> Done:
        with LOCK:
            with ReviewStore(self.state_db) as store:
                store.decide([(r.content_hash, keyword) for r in refs], "rejected")
            done = self._rewrite([r.path for r in refs])
        return Done(
            f"rejected {keyword!r} on {len(refs)} photo(s); {done.message}", done.written, done.failed
        )

    def accept(self, refs: Sequence[PhotoRef], keyword: str) -> Done:
        from ..plugins.xmp import XmpWriter

        failed: list[str] = []
        with LOCK:
            with ReviewStore(self.state_db) as store:
                store.decide([(r.content_hash, keyword) for r in refs], "accepted")
            writer = XmpWriter(self.config)
            try:
                for ref in refs:
                    target = writer.target_for(ref.path)
                    if not target.path.is_file():
                        continue
                    try:
                        with folder_lock(ref.path.parent):
                            cur = writer.exiftool.read_tags(target.path, *ADDED_TAGS)
                            args = _entries_for(cur, keyword)
                            if args:
                                writer.exiftool.write(target.path, *args)
                    except Exception as e:  # one photo's trouble does not stop the others
                        failed.append(f"{ref.path}: {e}")
            finally:
                writer.close()
            done = self._rewrite([r.path for r in refs])
        return Done(
            f"accepted {keyword!r} on {len(refs)} photo(s): it is yours now; {done.message}",
            done.written,
            failed + done.failed,
        )

    def _rewrite(self, paths: Sequence[Path]) -> Done:
        from ..pipeline import Pipeline

        existing = [p for p in dict.fromkeys(paths) if p.exists()]
        if not existing:
            return Done("no photo to write")
        with StateDB(self.state_db) as state, Pipeline.from_config(self.config, self.pm, state=state) as pipe:
            outcomes = pipe.rewrite(existing)
        failed = [o.message for o in outcomes if o.status == "failed"]
        written = len(outcomes) - len(failed)
        return Done(f"metadata written again for {written} photo(s)", written, failed)
