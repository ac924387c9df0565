"""Analyses across photos: the library as they see it (a read-only view of the state DB) and the pipeline's
library stage (fingerprints, contributions to each photo, photos to write again)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from .state import StateDB
from .types import AnalyzerRun, Library, LibraryAnalyzer, ModelInfo, Photo, PhotoResult

log = logging.getLogger(__name__)


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


class LibraryStage:
    """The pipeline's side of :class:`~phototag.types.LibraryAnalyzer`: each call in its own error boundary."""

    def __init__(self, analyzers: Sequence[LibraryAnalyzer], library: Library) -> None:
        self.analyzers = list(analyzers)
        self.library = library
        self._rewrite: dict[Path, None] = {}  # photos done earlier that an analyzer wants written again

    def fingerprints(self) -> dict[str, str]:
        """``library:NAME`` -> each library analyzer's fingerprint (a changed one rewrites every photo)."""
        out = {}
        for analyzer in self.analyzers:
            try:
                out[f"library:{analyzer.name}"] = str(analyzer.fingerprint())
            except Exception as e:
                log.error("library analyzer %s: fingerprint() failed: %s", analyzer.name, e)
        return out

    def contributions(self, result: PhotoResult, fingerprints: dict[str, str]) -> tuple[AnalyzerRun, ...]:
        """What each library analyzer adds to this photo's metadata now (task ``library``; an analyzer that
        raises gives an error run, so the photo's outcome names it and the other results are still written)."""
        runs = []
        for analyzer in self.analyzers:
            name = analyzer.name
            fingerprint = fingerprints.get(f"library:{name}", "")
            try:
                analysis = analyzer.contribute(result, self.library)
            except Exception as e:
                error = f"library analyzer {name} failed: {type(e).__name__}: {e}"
                runs.append(AnalyzerRun(name, "library", ModelInfo(name), fingerprint, None, error))
                continue
            if analysis is not None:
                runs.append(AnalyzerRun(name, "library", ModelInfo(name), fingerprint, analysis))
        return tuple(runs)

    def update(self, changed: list[PhotoResult]) -> None:
        """Tell each library analyzer what changed; remember the photos it wants written again."""
        if not changed:
            return
        for analyzer in self.analyzers:
            try:
                wanted = analyzer.update(changed, self.library)
            except Exception as e:
                log.error("library analyzer %s failed: %s: %s", analyzer.name, type(e).__name__, e)
                continue
            for path in wanted:
                self._rewrite[Path(path)] = None

    def take_rewrites(self) -> list[Path]:
        """The photos to write again (each once), forgetting them."""
        wanted, self._rewrite = list(self._rewrite), {}
        return wanted
