"""Analyses across photos (the ``register_library_analyzers`` hook): a copy arriving later marks the earlier
photo as well, which is written again from its cached results without a model run.

The library analyzer here is real and small: photos whose bytes are identical (same content hash, read from the
state DB through the :class:`~phototag.types.Library` view) get the keyword ``Copy``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from phototag import Analysis, Tag, hookimpl
from phototag.manager import get_plugin_manager, registered
from phototag.types import Library, LibraryAnalyzer, PhotoResult
from test_pipeline import Brightness, Plugin, collect


class Copies:
    """Tags photos that have an identical copy elsewhere in the library."""

    name = "copies"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.updates: list[list[str]] = []

    def fingerprint(self) -> str:
        return "copies-1"

    def contribute(self, result: PhotoResult, library: Library) -> Analysis | None:
        if self.fail:
            raise RuntimeError("index is corrupt")
        others = [p for p in library.paths_for_hash(result.photo.content_hash) if p != result.photo.path]
        return Analysis(tags=(Tag("Copy", 1.0, ("Library", "Copy")),)) if others else None

    def update(self, changed: Sequence[PhotoResult], library: Library) -> list[Path]:
        self.updates.append(sorted(r.photo.path.name for r in changed))
        wanted = []
        for result in changed:
            wanted += [p for p in library.paths_for_hash(result.photo.content_hash) if p != result.photo.path]
        return wanted


class LibraryPlugin:
    def __init__(self, analyzer: Copies) -> None:
        self.analyzer = analyzer

    @hookimpl
    def register_library_analyzers(self, register, config):  # type: ignore[no-untyped-def]
        register(self.analyzer)


def keywords(outcome) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(t.name for _, t in outcome.result.tags)


def test_a_later_copy_rewrites_the_earlier_photo_without_models(photos: Path, make_config) -> None:
    assert isinstance(Copies(), LibraryAnalyzer)
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    config = make_config()
    copies = Copies()
    first = Brightness()
    with registered(pm, Plugin(first), "inline"), registered(pm, LibraryPlugin(copies), "library"):
        summary, outcomes = collect(config, pm, [photos / "cat.jpg"])
    assert summary.tagged == 1 and "Copy" not in keywords(outcomes["cat.jpg"])

    (photos / "later").mkdir()
    shutil.copy(photos / "cat.jpg", photos / "later" / "cat-copy.jpg")
    second = Brightness()
    with registered(pm, Plugin(second), "inline"), registered(pm, LibraryPlugin(copies), "library"):
        summary, outcomes = collect(config, pm, [photos / "later" / "cat-copy.jpg"])
    assert (summary.tagged, summary.rewritten, second.calls) == (1, 1, [])  # the copy: cached by content
    assert "Copy" in keywords(outcomes["cat-copy.jpg"]) and "Copy" in keywords(outcomes["cat.jpg"])
    assert outcomes["cat.jpg"].status == "rewritten"
    assert copies.updates[-1] == ["cat-copy.jpg"]  # rewrites do not ask again


def test_a_failing_library_analyzer_fails_alone(photos: Path, make_config) -> None:
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    with (
        registered(pm, Plugin(Brightness()), "inline"),
        registered(pm, LibraryPlugin(Copies(fail=True)), "lib"),
    ):
        summary, outcomes = collect(make_config(), pm, [photos / "cat.jpg"])
    outcome = outcomes["cat.jpg"]
    assert (
        summary.failed == 1
        and "library analyzer copies failed: RuntimeError: index is corrupt" in outcome.message
    )
    assert keywords(outcome) in (["Bright"], ["Dark"])  # the analyzers' results are written all the same
