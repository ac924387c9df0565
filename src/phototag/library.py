"""The library as analyses across photos see it: a read-only view of the state DB (:class:`~phototag.types.Library`)."""

from __future__ import annotations

from pathlib import Path

from .state import StateDB
from .types import AnalyzerRun, Photo


class StateLibrary:
    """:class:`~phototag.types.Library` over a :class:`StateDB`. Reads only."""

    def __init__(self, state: StateDB) -> None:
        self._state = state

    def paths_for_hash(self, content_hash: str) -> list[Path]:
        return self._state.paths_for_hash(content_hash)

    def photos(self, under: Path | None = None) -> list[Photo]:
        return [
            Photo(r.path, r.size, r.mtime_ns, r.content_hash)
            for r in self._state.records(under, status="done")
            if r.content_hash
        ]

    def runs(self, content_hash: str) -> list[AnalyzerRun]:
        return self._state.runs_for_hash(content_hash)
