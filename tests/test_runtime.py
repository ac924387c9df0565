"""The analyzer runtime: per-call threads, one lock per analyzer, unloading that honours users, and analyzers
whose identity raises failing alone.

Real torch (its process-wide thread setting is what is at stake), real threads synchronised with events (no
sleeps), and the real pipeline with the real JSON writer for the error boundaries.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from phototag import Analysis, DecodedImage, Device, ModelInfo, Needs, Tag, hookimpl
from phototag.config import load_config
from phototag.hardware import probe
from phototag.manager import get_plugin_manager, registered
from phototag.runtime import AnalyzerRuntime
from phototag.testing import decoded
from test_pipeline import Brightness, collect


class Probe:
    """Records what it sees during ``analyze``: torch's thread count, how many calls overlap."""

    task = "classify"
    needs = Needs(devices=("cpu",))
    input_size = 32

    def __init__(self, name: str, *, gate: threading.Event | None = None, broken: str = "") -> None:
        self.name = name
        self.gate = gate
        self.broken = broken
        self.threads_seen: list[int] = []
        self.inside = 0
        self.most_inside = 0
        self.entered = threading.Event()
        self.loads = self.unloads = 0
        self._count = threading.Lock()

    def model_info(self) -> ModelInfo:
        if self.broken == "model_info":
            raise RuntimeError("cannot read the model card")
        return ModelInfo(f"test/{self.name}")

    def fingerprint(self) -> str:
        if self.broken == "fingerprint":
            raise OSError("config.json vanished")
        return self.name

    def load(self, device: Device) -> None:
        self.loads += 1

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        with self._count:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        self.threads_seen.append(torch.get_num_threads())
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        with self._count:
            self.inside -= 1
        return [Analysis(tags=(Tag(self.name, 0.9),)) for _ in images]

    def unload(self) -> None:
        self.unloads += 1


class Placement:
    """A ``select_device`` plugin: each analyzer gets the thread count the test asks for."""

    def __init__(self, threads: dict[str, int]) -> None:
        self.threads = threads

    @hookimpl
    def select_device(self, analyzer, hardware, preference):  # type: ignore[no-untyped-def]
        return Device("cpu", threads=self.threads[analyzer.name], reason="test placement")


@pytest.fixture
def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_config(None, overrides={"state_db": str(tmp_path / "state.db")}, environ={})


@pytest.fixture
def image(photos: Path) -> DecodedImage:
    return decoded(photos / "cat.jpg", 32)


def test_thread_count_is_set_for_each_call(config, image: DecodedImage) -> None:  # type: ignore[no-untyped-def]
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": ""})
    wide, narrow = Probe("wide"), Probe("narrow")
    before = torch.get_num_threads()
    try:
        with registered(pm, Placement({"wide": 2, "narrow": 1}), "placement"):
            runtime = AnalyzerRuntime(config, [wide, narrow], hardware=probe(), hook=pm.hook)
            for name in ("wide", "narrow", "wide", "narrow"):
                assert runtime.analyze(name, [image]).error is None
    finally:
        torch.set_num_threads(before)
    assert wide.threads_seen == [2, 2] and narrow.threads_seen == [1, 1]
    assert runtime.devices()["wide"].threads == 2 and wide.loads == 1


def test_one_lock_per_analyzer(config, image: DecodedImage) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    slow, other = Probe("slow", gate=gate), Probe("other")
    runtime = AnalyzerRuntime(config, [slow, other], hardware=probe())
    callers = [threading.Thread(target=runtime.analyze, args=("slow", [image])) for _ in range(3)]
    for t in callers:
        t.start()
    assert slow.entered.wait(30)
    # while one call holds "slow", a different analyzer runs at once
    assert runtime.analyze("other", [image]).analyses is not None
    assert slow.inside == 1
    gate.set()
    for t in callers:
        t.join(30)
    assert slow.most_inside == 1 and len(slow.threads_seen) == 3 and slow.loads == 1


def test_unloading_skips_analyzers_in_use(config, image: DecodedImage) -> None:  # type: ignore[no-untyped-def]
    a, b = Probe("a"), Probe("b")
    now = [0.0]
    runtime = AnalyzerRuntime(config, [a, b], hardware=probe(), clock=lambda: now[0])
    runtime.analyze("a", [image])
    runtime.analyze("b", [image])
    with runtime.using("a"):
        now[0] = 100.0
        assert runtime.unload_idle(60) == ["b"]
    assert runtime.unload_idle(60) == []  # "a" was just used
    now[0] = 200.0
    assert runtime.unload_idle(60) == ["a"]
    assert (a.unloads, b.unloads) == (1, 1)
    assert runtime.analyze("a", [image]).error is None and a.loads == 2  # loads again on next use


@pytest.mark.parametrize("broken", ["fingerprint", "model_info"])
def test_an_analyzer_whose_identity_raises_fails_alone(photos: Path, make_config, broken: str) -> None:
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    good, bad = Brightness(), Probe("shaky", broken=broken)

    class Both:
        @hookimpl
        def register_analyzers(self, register, config):  # type: ignore[no-untyped-def]
            register(good)
            register(bad)

    with registered(pm, Both(), "inline"):
        summary, outcomes = collect(make_config(), pm, [photos / "cat.jpg", photos / "rocket.jpg"])
    assert summary.total == 2 and sum(good.calls) == 2
    for outcome in outcomes.values():
        assert outcome.status == "failed"
        assert f"analyzer shaky is broken: {broken}() failed" in outcome.message
        assert outcome.result is not None and [t.name for _, t in outcome.result.tags] in (
            ["Bright"],
            ["Dark"],
        )
    assert bad.loads == 0
