"""The pipeline with real decoding, real SQLite and the real JSON writer, driven by small inline plugins.

The inline analyzers compute real (if simple) facts from the pixels, count their calls, and can be told to fail,
which is what these tests need: error boundaries, stat-only re-scans, cache by content, partial re-runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from phototag import Analysis, DecodedImage, Device, ModelInfo, Needs, Region, Tag, hookimpl
from phototag.errors import ModelUnavailableError
from phototag.manager import get_plugin_manager, registered
from phototag.pipeline import Pipeline
from phototag.plugins.sidecar import sidecar_path
from phototag.types import fingerprint_of


class Brightness:
    """Tags a photo Bright or Dark from its mean luminance; a box around the brightest quarter."""

    task = "classify"
    needs = Needs(devices=("cpu",))
    input_size = 64

    def __init__(self, name: str = "brightness", threshold: float = 0.5, fail: str | None = None) -> None:
        self.name = name
        self.threshold = threshold
        self.fail = fail
        self.calls: list[int] = []
        self.loads = 0

    def model_info(self) -> ModelInfo:
        return ModelInfo("test/brightness", "1")

    def fingerprint(self) -> str:
        return fingerprint_of(self.name, self.threshold)

    def load(self, device: Device) -> None:
        self.loads += 1
        if self.fail == "load":
            raise ModelUnavailableError("test/brightness is not available offline; put it in ~/models")

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        self.calls.append(len(images))
        if self.fail == "analyze":
            raise RuntimeError("model exploded")
        out = []
        for d in images:
            assert min(d.image.size) <= max(self.input_size, 64) or min(d.width, d.height) <= self.input_size
            lum = np.asarray(d.image.convert("L"), dtype=np.float32) / 255.0
            mean = float(lum.mean())
            label = "Bright" if mean >= self.threshold else "Dark"
            out.append(
                Analysis(
                    tags=(Tag(label, abs(mean - self.threshold) + 0.5, ("Light", label)),),
                    regions=(Region("bright spot", mean, 0.25, 0.25, 0.5, 0.5),),
                )
            )
        return out

    def unload(self) -> None:
        pass


class Plugin:
    def __init__(self, *analyzers: Brightness) -> None:
        self.analyzers = analyzers

    @hookimpl
    def register_analyzers(self, register, config):  # type: ignore[no-untyped-def]
        for a in self.analyzers:
            register(a)


class BrokenRegistration:
    @hookimpl
    def register_analyzers(self, register, config):  # type: ignore[no-untyped-def]
        raise RuntimeError("this plugin is broken")


@pytest.fixture
def pm():
    manager, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    return manager


def collect(config, pm, paths, **kw):  # type: ignore[no-untyped-def]
    outcomes = {}
    with Pipeline.from_config(config, pm) as pipeline:
        summary = pipeline.run(paths, on_outcome=lambda o: outcomes.__setitem__(o.path.name, o), **kw)
        pipeline.state.close()
    return summary, outcomes


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))


def test_tags_every_photo_and_writes_json(photos: Path, make_config, pm) -> None:
    b = Brightness()
    with registered(pm, Plugin(b), "inline"):
        summary, _outcomes = collect(make_config(batch_size="4"), pm, files(photos))
    assert summary.tagged == 6 and summary.failed == 0
    assert sorted(b.calls) == [2, 4]  # two batches, not six calls of one
    doc = json.loads(sidecar_path(photos / "cat.jpg").read_text())
    assert doc["schema_version"] == 1
    run_doc = doc["analyzers"]["brightness"]
    assert run_doc["model"] == {"id": "test/brightness", "revision": "1"}
    assert run_doc["tags"][0]["name"] in ("Bright", "Dark")
    assert run_doc["regions"][0]["box"] == {"x": 0.25, "y": 0.25, "w": 0.5, "h": 0.5}
    assert doc["dimensions"] == {"width": 451, "height": 300}
    assert len(doc["content_hash"]) == 32


def test_second_run_is_stat_only_and_changes_nothing(photos: Path, make_config, pm) -> None:
    b = Brightness()
    config = make_config()
    with registered(pm, Plugin(b), "inline"):
        collect(config, pm, files(photos))
        before = {p: sidecar_path(p).read_bytes() for p in files(photos)}
        calls = len(b.calls)
        summary, _ = collect(config, pm, files(photos))
    assert summary.skipped == 6 and summary.tagged == 0
    assert len(b.calls) == calls
    assert before == {p: sidecar_path(p).read_bytes() for p in files(photos)}


def test_failing_analyzer_does_not_lose_the_others(photos: Path, make_config, pm) -> None:
    good, bad = Brightness(), Brightness("exploding", fail="analyze")
    with registered(pm, Plugin(good, bad), "inline"):
        summary, outcomes = collect(make_config(), pm, files(photos))
    assert summary.failed == 6
    out = outcomes["cat.jpg"]
    assert "exploding failed: RuntimeError: model exploded" in out.message
    doc = json.loads(sidecar_path(photos / "cat.jpg").read_text())
    assert doc["analyzers"]["brightness"]["tags"]
    assert "model exploded" in doc["analyzers"]["exploding"]["error"]


def test_failed_analyzer_is_retried_alone_next_run(photos: Path, make_config, pm) -> None:
    config = make_config()
    good, bad = Brightness(), Brightness("flaky", fail="analyze")
    with registered(pm, Plugin(good, bad), "inline"):
        collect(config, pm, files(photos))
        bad.fail = None
        good_calls = len(good.calls)
        summary, _ = collect(config, pm, files(photos))
    assert summary.tagged == 6
    assert len(good.calls) == good_calls  # cached by content hash
    assert sum(bad.calls[-1:]) == 6


def test_unavailable_model_reported_once_clearly(photos: Path, make_config, pm) -> None:
    good, missing = Brightness(), Brightness("missing", fail="load")
    with registered(pm, Plugin(good, missing), "inline"):
        summary, outcomes = collect(make_config(batch_size="2"), pm, files(photos))
    assert missing.loads == 1  # not retried for every batch
    assert "not available offline" in outcomes["coffee.png"].message
    assert summary.failed == 6
    assert len(good.calls) == 3


def test_broken_plugin_registration_does_not_stop_others(photos: Path, make_config, pm) -> None:
    b = Brightness()
    with (
        registered(pm, BrokenRegistration(), "broken"),
        registered(pm, Plugin(b), "inline"),
        Pipeline.from_config(make_config(), pm) as pipeline,
    ):
        assert [a.name for a in pipeline.analyzers] == ["brightness"]
        assert any("broken" in e and "this plugin is broken" in e for e in pipeline.setup_errors)
        pipeline.state.close()


def test_changed_setting_reruns_only_that_analyzer(photos: Path, make_config, pm) -> None:
    config = make_config()
    a, b = Brightness("one"), Brightness("two")
    with registered(pm, Plugin(a, b), "inline"):
        collect(config, pm, files(photos))
    a2, b2 = Brightness("one"), Brightness("two", threshold=0.2)
    with registered(pm, Plugin(a2, b2), "inline2"):
        summary, _ = collect(config, pm, files(photos))
    assert summary.tagged == 6
    assert a2.calls == [] and sum(b2.calls) == 6


def test_rename_costs_no_model_time(photos: Path, make_config, pm) -> None:
    config = make_config()
    b = Brightness()
    with registered(pm, Plugin(b), "inline"):
        collect(config, pm, files(photos))
        calls = len(b.calls)
        (photos / "cat.jpg").rename(photos / "kitty.jpg")
        summary, outcomes = collect(config, pm, files(photos))
    assert len(b.calls) == calls
    assert outcomes["kitty.jpg"].status == "tagged" and summary.skipped == 5
    assert json.loads(sidecar_path(photos / "kitty.jpg").read_text())["dimensions"] == {
        "width": 451,
        "height": 300,
    }


def test_force_redoes_everything(photos: Path, make_config, pm) -> None:
    config = make_config()
    b = Brightness()
    with registered(pm, Plugin(b), "inline"):
        collect(config, pm, files(photos))
        summary, _ = collect(config, pm, files(photos), force=True)
    assert summary.tagged == 6 and sum(b.calls) == 12


def test_dry_run_writes_nothing(photos: Path, make_config, pm) -> None:
    config = make_config()
    with registered(pm, Plugin(Brightness()), "inline"):
        summary, outcomes = collect(config, pm, files(photos), dry_run=True)
        assert summary.dry_run == 6
        assert outcomes["cat.jpg"].result is not None
        assert not any(p.name.endswith(".json") for p in photos.iterdir())
        summary, _ = collect(config, pm, files(photos))
    assert summary.tagged == 6


def make_bad_files(folder: Path, good: Path) -> dict[str, str]:
    """Each bad file -> a phrase its error must contain."""
    data = good.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "text.jpg").write_text("this is not a photo\n")
    (folder / "empty.jpg").write_bytes(b"")
    bomb = folder / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 400 MP, a few KB on disk
    (folder / "movie.jpg").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    return {"truncated.jpg": "truncated", "text.jpg": "not", "empty.jpg": "empty", "bomb.png": "megapixel",
            "movie.jpg": "not"}  # fmt: skip


def test_bad_files_get_clear_errors_and_the_rest_is_tagged(photos: Path, make_config, pm) -> None:
    expected = make_bad_files(photos, photos / "cat.jpg")
    before = {name: (photos / name).read_bytes() for name in expected}
    with registered(pm, Plugin(Brightness()), "inline"):
        summary, outcomes = collect(make_config(), pm, files(photos))
    assert summary.tagged == 6
    assert summary.failed == len(expected)
    for name, phrase in expected.items():
        message = outcomes[name].message
        assert name in message and phrase in message.lower(), message
        assert (photos / name).read_bytes() == before[name]
        assert not sidecar_path(photos / name).exists()


def test_file_changed_during_analysis_is_not_written(photos: Path, make_config, pm) -> None:
    target = photos / "cat.jpg"

    class Toucher(Brightness):
        def analyze(self, images):  # type: ignore[no-untyped-def]
            out = super().analyze(images)
            with target.open("ab") as f:  # a slow writer appends while we analyse
                f.write(b"\0")
            return out

    with registered(pm, Plugin(Toucher()), "inline"):
        _summary, outcomes = collect(make_config(), pm, [target])
    assert outcomes["cat.jpg"].status == "failed" and outcomes["cat.jpg"].transient
    assert "changed while being analysed" in outcomes["cat.jpg"].message
    assert not sidecar_path(target).exists()


def test_unreadable_path_is_a_clear_error(photos: Path, make_config, pm) -> None:
    # root reads any file whatever its mode, so use something no one can read as a photo: a folder
    target = photos / "folder.jpg"
    target.mkdir()
    with registered(pm, Plugin(Brightness()), "inline"):
        _summary, outcomes = collect(make_config(), pm, [target, photos / "cat.jpg"])
    assert "folder.jpg" in outcomes["folder.jpg"].message
    assert "not a regular file (a folder)" in outcomes["folder.jpg"].message
    assert outcomes["cat.jpg"].status == "tagged"


def test_missing_gpu_falls_back_to_cpu_or_refuses_as_configured(photos: Path, make_config) -> None:
    from phototag.hardware import GPU, Hardware
    from phototag.state import StateDB

    small_gpu = Hardware(cpu_cores=2, ram_total_mb=8000, ram_available_mb=6000,
                         gpus=(GPU(0, "Tiny GPU", total_mb=512, free_mb=100),))  # fmt: skip

    class NeedsVram(Brightness):
        needs = Needs(min_vram_mb=2000)

    for fallback, expect in (("true", "tagged"), ("false", "failed")):
        config = make_config(device="cuda:0", device_fallback=fallback)
        analyzer = NeedsVram()
        with Pipeline(config, [analyzer], [], StateDB(config.state_db), hardware=small_gpu) as pipeline:
            [outcome] = pipeline.process([photos / "cat.jpg"], force=True)
            pipeline.state.close()
        assert outcome.status == expect, outcome.message
        if fallback == "true":
            assert pipeline.devices["brightness"].kind == "cpu"
            assert "cuda:0" in pipeline.devices["brightness"].reason
        else:
            assert "cuda:0" in outcome.message and analyzer.loads == 0
