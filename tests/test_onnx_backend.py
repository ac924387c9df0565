"""The ONNX Runtime backend: export once and reuse, export again for other weights, the accuracy gate, the
backend choice and its fallback with a reason; and the bundled EfficientNet through it on real photos, against
fp32 torch. Real torch exports and real onnxruntime sessions; nothing is timed (bench/pipeline_bench.py prints
the speed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from phototag import onnxbackend
from phototag.bundled import imagenet
from phototag.bundled.efficientnet import EfficientNetClassifier, EfficientNetRuntime
from phototag.config import Config
from phototag.errors import ModelUnavailableError
from phototag.onnxbackend import (
    Gate,
    OrtNetwork,
    cached_export,
    cached_gate,
    cached_quantized,
    choose,
    compare,
)
from phototag.testing import decoded
from phototag.types import Device

CPU = Device("cpu", threads=2)


class SmallNet(torch.nn.Module):
    """A real (small) convolutional network with two outputs, like the exported EfficientNet."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return pooled, self.fc(pooled)


def build(seed: int, calls: list[int]):  # type: ignore[no-untyped-def]
    def make() -> tuple[torch.nn.Module, torch.Tensor]:
        calls.append(seed)
        return SmallNet(seed), torch.zeros(1, 3, 16, 16)

    return make


def test_export_is_made_once_and_reused(tmp_path: Path) -> None:
    calls: list[int] = []
    first = cached_export("small", "aa" * 16, build(1, calls), ("pooled", "logits"), tmp_path)
    made = first.stat().st_mtime_ns
    again = cached_export("small", "aa" * 16, build(1, calls), ("pooled", "logits"), tmp_path)
    assert again == first and calls == [1] and first.stat().st_mtime_ns == made
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temp file left behind


def test_other_weights_export_again_and_drop_the_old_export(tmp_path: Path) -> None:
    calls: list[int] = []
    old = cached_export("small", "aa" * 16, build(1, calls), ("pooled", "logits"), tmp_path)
    cached_gate(old, lambda: Gate(3, 1.0, 1.0))
    new = cached_export("small", "bb" * 16, build(2, calls), ("pooled", "logits"), tmp_path)
    assert new != old and calls == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [new.name]  # the old export and its verdict are gone
    other = cached_export("other", "aa" * 16, build(3, calls), ("pooled", "logits"), tmp_path)
    assert new.exists() and other.exists()  # another model's export is not touched


def test_exported_network_gives_torchs_outputs_for_any_batch_size(tmp_path: Path) -> None:
    path = cached_export("small", "cc" * 16, build(4, []), ("pooled", "logits"), tmp_path)
    network = OrtNetwork(path, CPU)
    reference = SmallNet(4).eval()
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n, 3, 16, 16)).astype(np.float32)
        with torch.inference_mode():
            want = [t.numpy() for t in reference(torch.from_numpy(x))]
        got = network.run(x)
        assert [g.shape for g in got] == [w.shape for w in want]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_gate_passes_close_outputs_and_fails_others() -> None:
    rng = np.random.default_rng(0)
    features, scores = rng.standard_normal((20, 16)), rng.standard_normal((20, 10))
    close = compare((features, scores), (features + 1e-4, scores + 1e-4))
    assert close.passed and close.images == 20 and close.top1_agreement == 1.0 and close.min_cosine > 0.9999
    flipped = scores.copy()
    flipped[0] = -flipped[0]  # one photo of 20 with another top-1: 95% agreement
    wrong = compare((features, scores), (features, flipped))
    assert not wrong.passed and wrong.top1_agreement == pytest.approx(0.95)
    assert "95.0%" in wrong.describe() and "needs 99%" in wrong.describe()
    bent = features.copy()
    bent[3] = rng.standard_normal(16)
    assert not compare((features, scores), (bent, scores)).passed
    assert not compare((features, scores), (features[:5], scores[:5])).passed  # shapes differ: no verdict


def test_gate_verdict_is_kept_beside_the_export(tmp_path: Path) -> None:
    export = tmp_path / "m-1.onnx"
    export.write_bytes(b"x")
    checks: list[int] = []

    def check() -> Gate:
        checks.append(1)
        return Gate(24, 1.0, 0.999)

    assert cached_gate(export, check) == Gate(24, 1.0, 0.999)
    assert cached_gate(export, check) == Gate(24, 1.0, 0.999) and len(checks) == 1
    export.with_suffix(".gate.json").write_text("{broken")
    assert cached_gate(export, check).passed and len(checks) == 2  # unreadable: checked again


def test_backend_choice_and_fallback_with_a_reason(tmp_path: Path) -> None:
    path = cached_export("small", "dd" * 16, build(5, []), ("pooled", "logits"), tmp_path)
    network = OrtNetwork(path, CPU)
    good, bad = Gate(24, 1.0, 0.9999), Gate(24, 0.9, 0.98)

    def unavailable() -> tuple[OrtNetwork, Gate]:
        raise ModelUnavailableError(
            "the package(s) onnx are not installed. Install them with: pip install onnx"
        )

    assert choose("torch", "plugins.x.backend", lambda: (network, good)) == (
        None,
        "plugins.x.backend is torch",
    )
    chosen, why = choose("auto", "plugins.x.backend", lambda: (network, good))
    assert chosen is network and why.startswith("ONNX Runtime (top-1 agreement 100.0%")
    chosen, why = choose("auto", "plugins.x.backend", lambda: (network, bad))
    assert chosen is None and "torch instead" in why and "top-1 agreement 90.0%" in why
    chosen, why = choose("auto", "plugins.x.backend", unavailable)
    assert chosen is None and "pip install onnx" in why
    with pytest.raises(ModelUnavailableError, match=r"plugins\.x\.backend: onnx cannot be used: .*set "):
        choose("onnx", "plugins.x.backend", unavailable)
    with pytest.raises(ModelUnavailableError, match="does not match fp32 torch"):
        choose("onnx", "plugins.x.backend", lambda: (network, bad))


def test_missing_packages_are_named() -> None:
    assert onnxbackend.missing_packages(("onnxruntime", "no_such_package_phototag")) == [
        "no_such_package_phototag"
    ]


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PHOTOTAG_ONNX_CACHE", str(tmp_path / "own"))
    assert onnxbackend.cache_dir() == tmp_path / "own"
    monkeypatch.delenv("PHOTOTAG_ONNX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnxbackend.cache_dir() == tmp_path / "xdg" / "phototag" / "onnx"


def test_bundled_efficientnet_on_onnx_runtime_matches_torch_on_real_photos(
    photos: Path, tmp_path: Path
) -> None:
    """The real export of the bundled network, its gate on the sample photos, and the same keywords and
    embeddings as fp32 torch for the photos of the test folder (resized both ways)."""
    cache = tmp_path / "onnx"
    onnx = EfficientNetRuntime.load(CPU, "onnx", cache)
    assert onnx.onnx is not None and onnx.backend_reason.startswith("ONNX Runtime (top-1 agreement")
    export = next(cache.glob("efficientnet-lite0-*.onnx"))
    made = export.stat().st_mtime_ns
    again = EfficientNetRuntime.load(CPU, "auto", cache)
    assert again.onnx is not None and export.stat().st_mtime_ns == made  # reused, not exported again
    torch_rt = EfficientNetRuntime.load(CPU, "torch")
    assert torch_rt.onnx is None

    images = [decoded(p) for p in sorted(photos.iterdir())]
    settings = EfficientNetClassifier.Settings()
    for resize in ("squash", "crop"):
        got, want = onnx.run(images, resize), torch_rt.run(images, resize)
        for (gf, gp), (wf, wp) in zip(got, want, strict=True):
            cosine = float(gf @ wf / (np.linalg.norm(gf) * np.linalg.norm(wf)))
            assert cosine > 0.9999
            assert int(gp.argmax()) == int(wp.argmax())
            keywords = imagenet.keywords(gp.tolist(), settings.threshold, settings.top_k, settings.generic)
            reference = imagenet.keywords(wp.tolist(), settings.threshold, settings.top_k, settings.generic)
            assert [t.name for t in keywords] == [t.name for t in reference]
    assert onnx.forward_images == 2 * len(images)


def test_onnx_backend_in_the_config_reaches_the_network() -> None:
    """``plugins.classify.backend: torch`` keeps the classifier on torch; the setting is validated."""
    classifier = EfficientNetClassifier(
        "classify", EfficientNetClassifier.Settings(backend="torch"), Config()
    )
    classifier.load(CPU)
    try:
        assert classifier.runtime.onnx is None and classifier.runtime.backend_reason.endswith("is torch")
    finally:
        classifier.unload()
    with pytest.raises(ValueError):
        EfficientNetClassifier.Settings(backend="tensorrt")  # type: ignore[arg-type]


# -- int8 -------------------------------------------------------------------------------------------------------


def test_int8_is_made_once_beside_the_export_and_goes_with_it(tmp_path: Path) -> None:
    export = cached_export("small", "aa" * 16, build(1, []), ("pooled", "logits"), tmp_path)
    int8 = cached_quantized(export)
    assert int8.name == export.name.replace(".onnx", "-int8.onnx") and int8.is_file()
    made = int8.stat().st_mtime_ns
    assert cached_quantized(export) == int8 and int8.stat().st_mtime_ns == made  # reused
    x = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    fp32, q = OrtNetwork(export, CPU).run(x), OrtNetwork(int8, CPU).run(x)
    assert [a.shape for a in q] == [a.shape for a in fp32]
    assert compare((fp32[0], fp32[1]), (q[0], q[1])).min_cosine > 0.9  # close, not equal: quantised
    cached_gate(int8, lambda: Gate(3, 1.0, 1.0))
    other = cached_export("small-x", "aa" * 16, build(2, []), ("pooled", "logits"), tmp_path)  # an id with
    new = cached_export("small", "bb" * 16, build(3, []), ("pooled", "logits"), tmp_path)  # "small" in front
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([new.name, other.name])


def test_int8_that_fails_the_gate_falls_back_to_fp32_then_torch_with_the_reasons(tmp_path: Path) -> None:
    path = cached_export("small", "ee" * 16, build(6, []), ("pooled", "logits"), tmp_path)
    fp32, int8 = OrtNetwork(path, CPU), OrtNetwork(cached_quantized(path), CPU)
    good, bad = Gate(24, 1.0, 0.9999), Gate(24, 0.9, 0.98)

    def broken() -> tuple[OrtNetwork, Gate]:
        raise ModelUnavailableError("x.onnx could not be quantised to int8 (ValueError: no)")

    chosen, why = choose("auto", "s", lambda: (fp32, good), open_int8=lambda: (int8, good))
    assert chosen is int8 and why.startswith("ONNX Runtime int8 (top-1 agreement 100.0%")
    chosen, why = choose("onnx", "s", lambda: (fp32, good), open_int8=lambda: (int8, bad))
    assert chosen is fp32
    assert why.startswith("int8 not used, it does not match fp32 torch") and "ONNX Runtime (top-1" in why
    chosen, why = choose("auto", "s", lambda: (fp32, good), open_int8=broken)
    assert chosen is fp32 and "int8 not used: x.onnx could not be quantised" in why
    chosen, why = choose("auto", "s", lambda: (fp32, bad), open_int8=lambda: (int8, bad))
    assert chosen is None and "int8 not used" in why and "torch instead" in why
    with pytest.raises(ModelUnavailableError, match=r"int8 not used.*does not match.*set s: torch"):
        choose("onnx", "s", lambda: (fp32, bad), open_int8=lambda: (int8, bad))


def test_bundled_efficientnet_int8_through_the_gate(photos: Path, tmp_path: Path) -> None:
    """Only the classifier's Gemm is quantised in this convolutional network, so it passes the gate on real
    photos: the same top-1 classes and the same (fp32) pooled features as torch."""
    cache = tmp_path / "onnx"
    int8 = EfficientNetRuntime.load(CPU, "onnx", cache, quantize="int8")
    assert int8.onnx is not None and int8.onnx.path.name.endswith("-int8.onnx")
    assert int8.backend_reason.startswith("ONNX Runtime int8 (top-1 agreement 100.0%")
    # the fp32 export is made (int8 is made from it) but not gated: int8 passed, so it is not needed
    assert len(list(cache.glob("*.onnx"))) == 2 and [p.name for p in cache.glob("*.gate.json")] == [
        int8.onnx.path.with_suffix(".gate.json").name
    ]
    torch_rt = EfficientNetRuntime.load(CPU, "torch")
    images = [decoded(p) for p in sorted(photos.iterdir())]
    for (gf, gp), (wf, wp) in zip(int8.run(images, "squash"), torch_rt.run(images, "squash"), strict=True):
        assert float(gf @ wf / (np.linalg.norm(gf) * np.linalg.norm(wf))) > 0.9999
        assert int(gp.argmax()) == int(wp.argmax()) and abs(float(gp.max() - wp.max())) < 0.02
    settings = EfficientNetClassifier.Settings(onnx_quantize="int8")
    assert settings.onnx_quantize == "int8" and EfficientNetClassifier.Settings().onnx_quantize == "none"
    with pytest.raises(ValueError):
        EfficientNetClassifier.Settings(onnx_quantize="int4")  # type: ignore[arg-type]


# -- providers ------------------------------------------------------------------------------------------------


def test_providers_follow_the_device_like_torch_devices() -> None:
    """The provider list an onnxruntime build offers is injected: no GPU here."""
    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen, why = onnxbackend.provider_choice(Device("cuda", index=1), gpu_build)
    assert chosen == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert why == "CUDA provider on GPU 1"
    chosen, why = onnxbackend.provider_choice(Device("cuda"), ["CPUExecutionProvider"])
    assert chosen == ["CPUExecutionProvider"]
    assert "the device is cuda but this onnxruntime has no CUDAExecutionProvider" in why
    assert "pip install onnxruntime-gpu" in why
    chosen, why = onnxbackend.provider_choice(
        Device("mps"), ["CoreMLExecutionProvider", "CPUExecutionProvider"]
    )
    assert (
        chosen == ["CPUExecutionProvider"]
        and "the device is mps but this onnxruntime has no provider for mps" in why
    )
    assert onnxbackend.provider_choice(CPU, gpu_build)[0] == ["CPUExecutionProvider"]


def test_auto_keeps_a_gpu_model_on_torch_when_onnxruntime_has_no_gpu_provider(tmp_path: Path) -> None:
    path = cached_export("small", "ff" * 16, build(7, []), ("pooled", "logits"), tmp_path)
    opened: list[int] = []

    def open_onnx() -> tuple[OrtNetwork, Gate]:
        opened.append(1)
        return OrtNetwork(path, CPU), Gate(24, 1.0, 1.0)

    gpu = Device("cuda", index=0, dtype="float16")
    chosen, why = choose("auto", "s", open_onnx, device=gpu, available=["CPUExecutionProvider"])
    assert chosen is None and opened == []
    assert why.startswith(
        "ONNX Runtime not used, torch instead: torch runs on cuda:0, ONNX Runtime would use"
    )
    # asked for explicitly, ONNX Runtime runs (on the CPU provider, whose reason the network keeps)
    chosen, _ = choose("onnx", "s", open_onnx, device=gpu, available=["CPUExecutionProvider"])
    assert chosen is not None and opened == [1]
    # with a CUDA build, auto goes on to export and gate (the session itself is made by open_onnx)
    chosen, _ = choose("auto", "s", open_onnx, device=gpu, available=["CUDAExecutionProvider"])
    assert chosen is not None and opened == [1, 1]
    assert OrtNetwork(path, CPU).provider_reason == "CPU provider: the device is the CPU"
