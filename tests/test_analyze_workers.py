"""``analyze_workers``: analyzers of one batch run at once, with the same results as one after the other.

Real photos, real SQLite and the real JSON writer; the inline analyzers compute a real fact from the pixels and
meet at a barrier, which only passes when two of them are inside ``analyze`` at the same time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from phototag import Analysis, DecodedImage, Device, ModelInfo, Needs, Tag, hookimpl
from phototag.manager import get_plugin_manager, registered
from phototag.pipeline import Pipeline, slowest_first
from phototag.plugins.sidecar import sidecar_path
from phototag.types import fingerprint_of


class Channel:
    """Tags the photo with its mean of one colour channel; optionally waits at ``barrier`` in each batch."""

    task = "classify"
    needs = Needs(devices=("cpu",))
    input_size = 64

    def __init__(self, name: str, channel: int, barrier: threading.Barrier | None = None) -> None:
        self.name = name
        self.channel = channel
        self.barrier = barrier
        self.threads: set[str] = set()

    def model_info(self) -> ModelInfo:
        return ModelInfo(f"test/{self.name}", "1")

    def fingerprint(self) -> str:
        return fingerprint_of(self.name, self.channel)

    def load(self, device: Device) -> None:
        pass

    def unload(self) -> None:
        pass

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        self.threads.add(threading.current_thread().name)
        if self.barrier is not None:
            self.barrier.wait()  # BrokenBarrierError (this analyzer fails) unless another one is here too
        out = []
        for d in images:
            mean = float(np.asarray(d.image.convert("RGB"), dtype=np.float32)[..., self.channel].mean()) / 255
            out.append(Analysis(tags=(Tag(f"{self.name}-{round(mean, 1)}", mean),)))
        return out


class Plugin:
    def __init__(self, *analyzers: Channel) -> None:
        self.analyzers = analyzers

    @hookimpl
    def register_analyzers(self, register, config):  # type: ignore[no-untyped-def]
        for a in self.analyzers:
            register(a)


def scan(config, analyzers: Sequence[Channel], photos: Path) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Scan ``photos``; each photo's JSON sidecar with the timings taken out (they differ run to run)."""
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    with registered(pm, Plugin(*analyzers), "inline"), Pipeline.from_config(config, pm) as pipeline:
        summary = pipeline.run(sorted(photos.iterdir()))
        pipeline.state.close()
    assert summary.tagged == 6 and summary.failed == 0, summary.failures
    docs = {}
    for photo in sorted(photos.iterdir()):
        if photo.suffix in (".jpg", ".png"):
            doc = json.loads(sidecar_path(photo).read_text())
            for run in doc["analyzers"].values():
                run.pop("seconds", None)
            docs[photo.name] = doc["analyzers"]
    return docs


def test_two_workers_run_analyzers_at_once_with_the_results_of_one(
    photos: Path, tmp_path: Path, make_config
) -> None:
    barrier = threading.Barrier(2, timeout=20)
    together = [Channel("red", 0, barrier), Channel("green", 1, barrier)]
    at_once = scan(make_config(batch_size="3", analyze_workers="2"), together, photos)
    assert {t.split("_")[0] for a in together for t in a.threads} == {"phototag-analyze"}

    again = tmp_path / "again"
    again.mkdir()
    for p in photos.iterdir():
        if p.suffix in (".jpg", ".png"):
            (again / p.name).write_bytes(p.read_bytes())
    alone = [Channel("red", 0), Channel("green", 1)]
    config = make_config(batch_size="3", analyze_workers="1", state_db=str(tmp_path / "s2" / "state.db"))
    one_by_one = scan(config, alone, again)
    assert {t for a in alone for t in a.threads} == {threading.current_thread().name}
    assert at_once == one_by_one
    assert {
        tag["name"].split("-")[0] for doc in at_once.values() for run in doc.values() for tag in run["tags"]
    } == {
        "red",
        "green",
    }


def test_a_failing_analyzer_alongside_another_fails_alone(photos: Path, make_config) -> None:
    """One analyzer waits at a barrier nobody else reaches: it fails (timeout), the other's results stay."""
    lonely = Channel("red", 0, threading.Barrier(3, timeout=0.5))
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    config = make_config(analyze_workers="2")
    with (
        registered(pm, Plugin(lonely, Channel("green", 1)), "inline"),
        Pipeline.from_config(config, pm) as pipeline,
    ):
        summary = pipeline.run(sorted(photos.iterdir()))
        pipeline.state.close()
    assert summary.failed == 6
    assert all("analyzer red failed: BrokenBarrierError" in f.message for f in summary.failures)
    doc = json.loads(sidecar_path(photos / "cat.jpg").read_text())
    assert doc["analyzers"]["green"]["tags"][0]["name"].startswith("green-")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        ({}, ["a", "b", "c"]),
        ({"a": 0.01, "b": 0.2, "c": 0.05}, ["b", "c", "a"]),
        ({"a": 0.01, "c": 0.05}, ["b", "c", "a"]),  # b never measured: first
    ],
)
def test_slowest_first(seconds: dict[str, float], expected: list[str]) -> None:
    assert slowest_first(["a", "b", "c"], seconds) == expected


class Gate:
    """A writer whose first write waits until the analyzer is called for the next batch: it only returns when
    ``run`` writes batch k while it analyses batch k+1. Records the order of the photos it wrote."""

    name = "gate"

    def __init__(self, next_batch: threading.Event) -> None:
        self.next_batch = next_batch
        self.written: list[str] = []

    def write(self, result) -> None:  # type: ignore[no-untyped-def]
        if not self.written and not self.next_batch.wait(timeout=20):
            raise TimeoutError("batch 2 was not analysed while batch 1 was being written")
        self.written.append(result.photo.path.name)

    def close(self) -> None:
        pass


class Counting(Channel):
    def __init__(self, next_batch: threading.Event) -> None:
        super().__init__("red", 0)
        self.next_batch = next_batch
        self.batches = 0

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        self.batches += 1
        if self.batches == 2:
            self.next_batch.set()
        return super().analyze(images)


class WriterPlugin:
    def __init__(self, analyzer: Channel, writer: Gate) -> None:
        self.analyzer, self.writer = analyzer, writer

    @hookimpl
    def register_analyzers(self, register, config):  # type: ignore[no-untyped-def]
        register(self.analyzer)

    @hookimpl
    def register_writers(self, register, config):  # type: ignore[no-untyped-def]
        register(self.writer)


def test_run_writes_one_batch_while_it_analyses_the_next_and_keeps_the_order(
    photos: Path, make_config
) -> None:
    next_batch = threading.Event()
    gate = Gate(next_batch)
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    paths = sorted(p for p in photos.iterdir() if p.suffix in (".jpg", ".png"))
    seen: list[str] = []
    config = make_config(batch_size="2")
    with (
        registered(pm, WriterPlugin(Counting(next_batch), gate), "inline"),
        Pipeline.from_config(config, pm) as p,
    ):
        summary = p.run(paths, on_outcome=lambda o: seen.append(o.path.name))
        p.state.close()
    assert summary.tagged == 6, summary.failures
    assert seen == [q.name for q in paths] == gate.written
    assert p.stage_seconds["write_wait"] > 0
