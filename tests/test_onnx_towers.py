"""CLIP's image and text towers on ONNX Runtime (phototag.hf.onnxtowers), through the real classify and embed
analyzers on tiny random CLIP models built from configs: the export made once per weights and reused, exported
again for new weights, the same tags, scores and embeddings as torch on real photos, int8 through the same gate,
and every reason to stay on torch said. Real torch exports and real onnxruntime sessions; nothing is timed
(bench/pipeline_bench.py prints the speed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hf_helpers import decoded_samples
from phototag.config import Config, load_config
from phototag.errors import ModelUnavailableError
from phototag.hf.classify import HFClassifier, clear_text_cache
from phototag.hf.embed import HFEmbedder
from phototag.hf.loading import load_config as load_model_config
from phototag.hf.loading import load_processor, resolve_model
from phototag.hf.onnxtowers import TowerOpener, tower_gate, weights_hash
from phototag.onnxbackend import OrtNetwork
from phototag.types import DecodedImage, Device

CPU = Device("cpu", threads=1)
TEXTS = ["a photo of a cat.", "a red motorcycle on the street", "coffee"]


@pytest.fixture(scope="module")
def images(sample_photos_master: Path) -> list[DecodedImage]:
    return decoded_samples(sample_photos_master, 224)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The ONNX export cache of this test (``PHOTOTAG_ONNX_CACHE``, as a user would set it)."""
    folder = tmp_path / "onnx"
    monkeypatch.setenv("PHOTOTAG_ONNX_CACHE", str(folder))
    return folder


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(None, overrides={"state_db": str(tmp_path / "state" / "state.db")}, environ={})


@pytest.fixture
def clip(tiny_model, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """A copy of the tiny CLIP that this test may change."""
    return Path(shutil.copytree(tiny_model("clip"), tmp_path / "clip"))


def classifier(config: Config, model: Path, **settings: object) -> HFClassifier:
    c = HFClassifier("classify", HFClassifier.Settings(model=str(model), threshold=0.0, **settings), config)
    c.load(CPU)
    return c


def embedder(config: Config, model: Path, **settings: object) -> HFEmbedder:
    e = HFEmbedder("embed", HFEmbedder.Settings(model=str(model), **settings), config)
    e.load(CPU)
    return e


def exports(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in cache.glob("*.onnx")}


def test_clip_towers_on_onnx_runtime_give_torchs_tags_and_embeddings(
    clip: Path, cache: Path, config: Config, images: list[DecodedImage]
) -> None:
    clear_text_cache()  # the vocabulary's embeddings come from each classifier's own text tower
    onnx = classifier(config, clip, backend="onnx")
    assert set(onnx.towers) == {"vision", "text"}
    for choice in onnx.towers.values():
        assert choice.network is not None and choice.reason.startswith("ONNX Runtime (top-1 agreement 100.0%")
    clear_text_cache()
    reference = classifier(config, clip, backend="torch")
    assert all(c.network is None and c.reason.endswith("is torch") for c in reference.towers.values())
    try:
        got, want = onnx.scores(images), reference.scores(images)
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert [[t.name for t in a.tags] for a in onnx.analyze(images)] == [
            [t.name for t in a.tags] for a in reference.analyze(images)
        ]
        np.testing.assert_allclose(
            onnx.text_vectors(TEXTS).numpy(), reference.text_vectors(TEXTS).numpy(), atol=1e-5
        )
    finally:
        onnx.unload()
        reference.unload()

    e_onnx, e_torch = embedder(config, clip, backend="auto"), embedder(config, clip)
    try:
        assert e_onnx.towers["vision"].network is not None and e_torch.towers["vision"].network is None
        got_v = np.array([a.embedding for a in e_onnx.analyze(images)])
        want_v = np.array([a.embedding for a in e_torch.analyze(images)])
        assert got_v.shape == want_v.shape and np.min(np.sum(got_v * want_v, axis=1)) > 0.9999
        np.testing.assert_allclose(e_onnx.embed_text(TEXTS), e_torch.embed_text(TEXTS), atol=1e-5)
    finally:
        e_onnx.unload()
        e_torch.unload()


def test_export_is_reused_and_new_weights_export_again(clip: Path, cache: Path, config: Config) -> None:
    first = classifier(config, clip, backend="onnx")
    first.unload()
    made = exports(cache)
    assert len(made) == 2 and all(".vision-" in n or ".text-" in n for n in made)
    assert len(list(cache.glob("*.gate.json"))) == 2  # each verdict is kept beside its export

    again = embedder(config, clip, backend="onnx")  # another analyzer, same weights: the same files
    again.unload()
    assert exports(cache) == made

    # the same folder with other weights (a fine-tuned copy saved over it): exported again, old files gone
    from tiny_models import build_tiny_clip

    old_hash = weights_hash(clip)
    build_tiny_clip(clip, seed=1)
    assert weights_hash(clip) != old_hash
    clear_text_cache()
    renewed = classifier(config, clip, backend="onnx")
    renewed.unload()
    now = exports(cache)
    assert len(now) == 2 and not set(now) & set(made)
    assert all(weights_hash(clip)[:16] in n for n in now)
    assert len(list(cache.glob("*.gate.json"))) == 2


def test_gate_catches_a_tower_that_is_not_the_models(tiny_model, tmp_path: Path, cache: Path) -> None:  # type: ignore[no-untyped-def]
    """Another model's export run where this model's should be: the real gate on real photos fails it."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    from tiny_models import build_tiny_clip

    def opener(folder: Path) -> TowerOpener:
        source = resolve_model(str(folder))
        model = AutoModel.from_pretrained(str(folder)).eval()
        return TowerOpener(
            model,
            source,
            load_model_config(source),
            load_processor(source, AutoImageProcessor),
            load_processor(source, AutoTokenizer),
            CPU,
            cache,
        )

    mine = opener(tiny_model("clip"))
    other = opener(build_tiny_clip(tmp_path / "other", seed=3))
    for tower in ("vision", "text"):
        right = tower_gate(tower, OrtNetwork(mine.export(tower), CPU), mine._ref())
        wrong = tower_gate(tower, OrtNetwork(other.export(tower), CPU), mine._ref())
        assert right.passed and right.min_cosine > 0.9999
        assert not wrong.passed and wrong.min_cosine < 0.9 and wrong.images > 0


def test_reasons_to_stay_on_torch_are_said(
    tiny_model, clip: Path, tmp_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch, images
) -> None:  # type: ignore[no-untyped-def]
    # the export cannot be written (the cache path is a file): auto stays on torch and says why
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("x")
    monkeypatch.setenv("PHOTOTAG_ONNX_CACHE", str(blocked))
    c = classifier(config, clip, backend="auto")
    try:
        assert c.towers["vision"].network is None
        assert (
            "torch instead" in c.towers["vision"].reason
            and "could not be exported" in c.towers["vision"].reason
        )
        assert c.analyze([]) == []
    finally:
        c.unload()
    with pytest.raises(
        ModelUnavailableError, match=r"plugins\.classify\.backend: onnx cannot be used: .*set "
    ):
        classifier(config, clip, backend="onnx")

    # an image-only encoder has no tower to export: torch, with the reason; onnx is an error that says so
    monkeypatch.setenv("PHOTOTAG_ONNX_CACHE", str(tmp_path / "onnx"))
    dino = embedder(config, tiny_model("dinov2"), backend="auto")
    try:
        assert dino.towers["vision"].network is None
        assert "supported for CLIP and SigLIP towers, not dinov2" in dino.towers["vision"].reason
        assert len(dino.analyze(images)) == len(images)  # and still embeds, on torch
    finally:
        dino.unload()
    with pytest.raises(ModelUnavailableError, match="not dinov2"):
        embedder(config, tiny_model("dinov2"), backend="onnx")
    assert not (tmp_path / "onnx").exists()  # nothing was exported for it


def test_int8_towers_are_quantised_once_and_gated(
    clip: Path, cache: Path, config: Config, images: list[DecodedImage]
) -> None:
    clear_text_cache()
    c = classifier(config, clip, backend="onnx", onnx_quantize="int8")
    try:
        for tower in ("vision", "text"):
            choice = c.towers[tower]
            assert choice.network is not None
            int8 = next(cache.glob(f"*.{tower}-*-int8.onnx"))
            fp32 = next(p for p in cache.glob(f"*.{tower}-*.onnx") if p != int8)
            verdict = json.loads(int8.with_suffix(".gate.json").read_text())
            passed = verdict["top1_agreement"] >= 0.99 and verdict["min_cosine"] >= 0.99
            # the tower runs int8 exactly when the int8 export passed the gate, else fp32, and says which
            assert choice.network.path == (int8 if passed else fp32)
            assert choice.reason.startswith("ONNX Runtime int8 (") == passed
            assert ("int8 not used" in choice.reason) == (not passed)
        made = exports(cache)
        assert len(made) == 4
        scores = c.scores(images)
        assert scores.shape[0] == len(images) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4)
    finally:
        c.unload()
    again = classifier(config, clip, backend="onnx", onnx_quantize="int8")
    again.unload()
    assert exports(cache) == made  # quantised once, reused


def test_backend_settings_are_validated() -> None:
    assert HFClassifier.Settings().backend == "torch" and HFEmbedder.Settings().onnx_quantize == "none"
    with pytest.raises(ValueError):
        HFClassifier.Settings(backend="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        HFEmbedder.Settings(onnx_quantize="int4")  # type: ignore[arg-type]


def test_fixed_label_classifier_stays_on_torch(tiny_model, cache: Path, config: Config, images) -> None:  # type: ignore[no-untyped-def]
    """ONNX Runtime is for the towers of a CLIP-family model; a ViT image classifier says so."""
    with pytest.raises(
        ModelUnavailableError, match=r"fixed-label classifier .* set plugins\.classify\.backend: torch"
    ):
        classifier(config, tiny_model("vit"), backend="onnx")
    vit = classifier(config, tiny_model("vit"), backend="auto")
    try:
        assert vit.towers == {} and len(vit.analyze(images)) == len(images)
    finally:
        vit.unload()
    assert not cache.exists()
