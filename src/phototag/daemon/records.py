"""The main thread's view of the state DB: which photos are done, and forgetting the ones that are gone.

The worker thread owns the pipeline, which is not thread-safe; the main loop never calls into it. It reads the
``files`` table through a :class:`~phototag.state.StateDB` connection of its own and compares the records with
the analyzer fingerprints the worker publishes each time it builds a processor (start, reload): a photo is done
when its record says ``done`` with exactly those fingerprints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..state import StateDB
from .reconcile import Known


class Records:
    """``state``: a connection the caller opened for this (and closes); ``fingerprints()``: the current
    analyzers' fingerprints, as the worker published them."""

    def __init__(self, state: StateDB, fingerprints: Callable[[], Mapping[str, str]]) -> None:
        self.state = state
        self._fingerprints = fingerprints

    def known(self, root: Path) -> dict[str, Known]:
        """Every record below ``root``: ``str(path)`` -> size, mtime and whether it is done."""
        current = dict(self._fingerprints())
        return {
            str(r.path): Known(r.size, r.mtime_ns, r.status == "done" and dict(r.fingerprints) == current)
            for r in self.state.records(under=root)
        }

    def is_current(self, path: Path) -> bool:
        """Stat-only: was ``path`` done with the current analyzers, is it unchanged since, and are the files the
        writers made beside it still there? (The pipeline's own test: a deleted sidecar is made again.)"""
        try:
            st = path.stat()
        except OSError:
            return False
        return self.state.is_done(path, st.st_size, st.st_mtime_ns, self._fingerprints())

    def forget(self, paths: Iterable[Path]) -> None:
        """The files are gone (deleted, moved away): drop their records (cached results stay)."""
        for path in paths:
            self.state.forget(path)

    def forget_under(self, folder: Path) -> list[Path]:
        """A folder is gone: drop every record below it; returns their paths."""
        gone = [r.path for r in self.state.records(under=folder)]
        self.forget(gone)
        return gone
