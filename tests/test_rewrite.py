"""Metadata follows the configuration without re-running models (issue 8, item 5).

A writer setting (``metadata.min_score``, ``keyword_root``, mode) changes what is written: the next scan writes
the metadata again from the cached results, reports it as "rewritten", and runs no model. Real exiftool, real
SQLite, the real XMP and JSON writers, the pixel analyzer of test_pipeline.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from phototag.exiftool import Exiftool
from phototag.manager import get_plugin_manager, registered
from test_pipeline import Brightness, Plugin, collect


@pytest.fixture
def pm():
    manager, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar,xmp"})
    return manager


def scan(config, pm, photos: Path, analyzer: Brightness):  # type: ignore[no-untyped-def]
    paths = sorted(p for p in photos.iterdir() if p.suffix in (".jpg", ".png"))
    with registered(pm, Plugin(analyzer), "inline"):
        return collect(config, pm, paths)


def hierarchy(path: Path) -> list[str]:
    with Exiftool() as et:
        value = et.read_tags(path, "XMP-lr:HierarchicalSubject").get("XMP-lr:HierarchicalSubject", [])
    return value if isinstance(value, list) else [value]


def test_a_writer_setting_rewrites_from_cache_without_models(photos: Path, make_config, pm) -> None:
    first = Brightness()
    summary, outcomes = scan(make_config(), pm, photos, first)
    assert summary.tagged == 6 and sum(first.calls) == 6
    scores = {name: o.result.tags[0][1].score for name, o in outcomes.items() if o.result is not None}
    cut = sorted(scores.values())[2] + 1e-6  # above the three lowest scores
    assert {h.split("|")[0] for h in hierarchy(photos / "cat.jpg.xmp")} == {"AI"}

    second = Brightness()
    summary, outcomes = scan(make_config(metadata__min_score=str(cut)), pm, photos, second)
    assert (summary.rewritten, summary.tagged, second.calls) == (6, 0, [])
    assert {o.status for o in outcomes.values()} == {"rewritten"}
    for name, score in scores.items():
        written = hierarchy(photos / f"{name}.xmp")
        assert bool(written) == (score >= cut), (name, score, written)

    third = Brightness()
    summary, _ = scan(make_config(metadata__min_score=str(cut)), pm, photos, third)
    assert (summary.skipped, third.calls) == (6, [])  # nothing changed: stat only

    fourth = Brightness()
    summary, _ = scan(make_config(metadata__keyword_root="Machine"), pm, photos, fourth)
    assert (summary.rewritten, fourth.calls) == (6, [])
    assert {h.split("|")[0] for h in hierarchy(photos / "cat.jpg.xmp")} == {"Machine"}


def test_an_analyzer_setting_reruns_only_that_analyzer(photos: Path, make_config, pm) -> None:
    scan(make_config(), pm, photos, Brightness())
    changed = Brightness(threshold=0.3)  # other settings, other fingerprint
    summary, _ = scan(make_config(), pm, photos, changed)
    assert (summary.tagged, summary.rewritten, sum(changed.calls)) == (6, 0, 6)
