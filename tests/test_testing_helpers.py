"""phototag.testing works for a plugin author: an inline third-party analyzer through the real pipeline."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from phototag import Analysis, DecodedImage, Device, ModelInfo, Needs, Tag, fingerprint_of, hookimpl
from phototag.testing import decoded, run_plugin, sample_photos


class Orientation:
    """Tags Landscape or Portrait from the decoded frame."""

    name = "orientation"
    task = "classify"
    needs = Needs(devices=("cpu",))
    input_size = 32

    def model_info(self) -> ModelInfo:
        return ModelInfo("example/orientation", "1")

    def fingerprint(self) -> str:
        return fingerprint_of("orientation", 1)

    def load(self, device: Device) -> None:
        pass

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        return [
            Analysis(tags=(Tag("Landscape" if d.width >= d.height else "Portrait", 1.0),)) for d in images
        ]

    def unload(self) -> None:
        pass


class Plugin:
    @hookimpl
    def register_analyzers(self, register, config):  # type: ignore[no-untyped-def]
        register(Orientation())


def test_run_plugin_through_the_real_pipeline(tmp_path: Path) -> None:
    photos = sample_photos(tmp_path / "photos")
    outcomes = run_plugin(Plugin(), photos, tmp_path)
    assert {o.status for o in outcomes.values()} == {"tagged"}
    assert len(outcomes) == 6
    doc = json.loads((photos / "cat.jpg.phototag.json").read_text())
    assert doc["keywords"] == ["Landscape"]


def test_decoded_matches_pipeline_decoding(tmp_path: Path) -> None:
    photos = sample_photos(tmp_path / "photos")
    d = decoded(photos / "cat.jpg", 100)
    assert (d.width, d.height) == (451, 300)
    assert min(d.image.size) == 100
    assert Orientation().analyze([d])[0].tags[0].name == "Landscape"


def test_run_plugin_takes_an_analyzer_object_too(tmp_path: Path) -> None:
    photos = sample_photos(tmp_path / "photos")
    outcomes = run_plugin(Orientation(), photos, tmp_path)
    assert outcomes["cat.jpg"].status == "tagged"
    assert [t.name for _, t in outcomes["cat.jpg"].result.tags] == ["Landscape"]


def test_run_plugin_refuses_what_is_neither_plugin_nor_analyzer(tmp_path: Path) -> None:
    import pytest

    class Almost:  # an analyzer without analyze()
        name, task, input_size = "almost", "classify", 32

    with pytest.raises(TypeError, match="is neither"):
        run_plugin(Almost(), tmp_path, tmp_path)
