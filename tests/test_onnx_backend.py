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
from phototag.onnxbackend import Gate, OrtNetwork, cached_export, cached_gate, choose, compare
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
