"""A CLIP-family model's image and text towers on ONNX Runtime: exported once, gated against fp32 torch.

The zero-shot ``classify`` and the ``embed`` of a dual encoder (CLIP, SigLIP) spend their time in two towers:
``get_image_features`` for every photo and ``get_text_features`` for the vocabulary and text queries. Each tower
is exported on its own with torch's exporter (:func:`phototag.onnxbackend.cached_export`) at first use, into the
same cache as the bundled models, under a name keyed by a hash of the model's ``config.json`` and weight files
and the export format; optionally quantised to int8 (:func:`phototag.onnxbackend.cached_quantized`).

Before a tower is used its outputs are compared with fp32 torch on real photos (:func:`tower_gate`): the
embedding cosine of the tower's own outputs (the sample photos for the image tower, the bundled vocabulary's
prompts for the text tower) and the zero-shot top-1 agreement of the photos against the vocabulary, with the
other tower on torch. The verdict is kept beside the export, so the gate runs once per export. A tower that
cannot be exported or fails the gate stays on torch (``backend: auto``, with the reason logged) or is an error
(``backend: onnx``). The torch model stays loaded either way: the logit scale, the config and the fallback
need it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import ModelUnavailableError
from ..onnxbackend import (
    Backend,
    Gate,
    OrtNetwork,
    Quantize,
    cached_export,
    cached_gate,
    cached_quantized,
    choose,
    compare,
    gate_photos,
)
from ..types import Device
from .loading import WEIGHT_FILES, ModelSource

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Tower = Literal["vision", "text"]
SUPPORTED = ("clip", "siglip")
"""``model_type`` prefixes whose towers are exported: CLIP and SigLIP (and their variants: clip_vision_model is
not a dual encoder and never gets here)."""


@dataclass(frozen=True)
class TowerChoice:
    """What runs one tower: an ONNX Runtime network, or None for torch, and why."""

    network: OrtNetwork | None
    reason: str


def weights_hash(folder: Path) -> str:
    """BLAKE2b-128 of the model's ``config.json`` and every weight file's bytes: another checkpoint in the same
    folder (or the same hub id at another revision) exports again."""
    h = hashlib.blake2b(digest_size=16)
    weights = sorted(
        f for f in folder.iterdir() if f.suffix in (".safetensors", ".bin") or f.name in WEIGHT_FILES
    )
    files = [folder / "config.json", *weights]
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def export_id(source: ModelSource, tower: Tower) -> str:
    """The export's model name: a hub id made file-name safe (``hf_openai_clip-vit-base-patch32.vision``), or
    a local folder's name and a hash of its path (two folders of the same name are two models), and the
    tower."""
    if source.path.name and Path(source.id).expanduser().is_dir():
        where = hashlib.blake2b(str(source.path).encode(), digest_size=3).hexdigest()
        name = f"{source.path.name}_{where}"
    else:
        name = source.id
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-")[-80:] or "model"
    return f"hf_{slug}.{tower}"


def is_siglip(config: Any) -> bool:
    return str(getattr(config, "model_type", "")).startswith("siglip")


def _features(output: Any) -> torch.Tensor:
    from .embed import pooled

    return pooled(output)


def _vision_module(model: Any) -> torch.nn.Module:
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return _features(self.model.get_image_features(pixel_values=pixel_values))

    return ImageTower().eval()


def _text_module(model: Any, siglip: bool) -> torch.nn.Module:
    import torch

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
        ) -> torch.Tensor:
            if siglip:  # attends over the padding by design (see embed.text_features)
                return _features(self.model.get_text_features(input_ids=input_ids))
            return _features(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    return TextTower().eval()


def text_inputs(config: Any) -> tuple[str, ...]:
    """What the exported text tower takes: SigLIP only the token ids, CLIP the attention mask too."""
    return ("input_ids",) if is_siglip(config) else ("input_ids", "attention_mask")


def tokenize(tokenizer: Any, config: Any, texts: Sequence[str]) -> dict[str, Any]:
    """Token tensors for the text tower, padded as :func:`phototag.hf.embed.text_features` pads them."""
    max_length = int(getattr(config.text_config, "max_position_embeddings", 64) or 64)
    padding: Any = "max_length" if is_siglip(config) else True
    enc = tokenizer(list(texts), padding=padding, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: enc[k] for k in text_inputs(config)}


def image_pixels(image_processor: Any, images: Sequence[Any]) -> np.ndarray:
    """A float32 NCHW batch as the model's image processor prepares it (PIL images in). Asked for as torch
    tensors: the fast (torchvision) processors make nothing else."""
    batch = image_processor(images=list(images), return_tensors="pt")["pixel_values"]
    return np.ascontiguousarray(batch.float().numpy())


def onnx_text_features(network: OrtNetwork, tokenizer: Any, config: Any, texts: Sequence[str]) -> np.ndarray:
    """Unnormalised text embeddings of ``texts`` from the exported text tower."""
    enc = tokenize(tokenizer, config, texts)
    return network.run_feeds({k: v.numpy().astype(np.int64) for k, v in enc.items()})[0]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class Reference:
    """fp32 torch's outputs on the gate's inputs: photo embeddings and vocabulary-prompt embeddings."""

    pixels: np.ndarray
    tokens: dict[str, np.ndarray]
    image: np.ndarray
    text: np.ndarray


def gate_texts() -> list[str]:
    """The texts the text tower is checked on: every label of the bundled vocabulary in its templates."""
    from .vocabulary import DEFAULT_TEMPLATES, load_vocabulary

    vocabulary = load_vocabulary()
    templates = vocabulary.templates or DEFAULT_TEMPLATES
    return list(dict.fromkeys(t for label in vocabulary.labels for t in label.texts(templates)))


def reference(model: Any, image_processor: Any, tokenizer: Any, config: Any) -> Reference:
    """fp32 torch (``model``: float32 on the CPU) on the gate's photos and texts."""
    import torch

    pixels = image_pixels(image_processor, gate_photos())
    enc = tokenize(tokenizer, config, gate_texts())
    with torch.inference_mode():
        image = _vision_module(model)(torch.from_numpy(pixels)).numpy()
        text = _text_module(model, is_siglip(config))(**enc).numpy()
    return Reference(pixels, {k: v.numpy().astype(np.int64) for k, v in enc.items()}, image, text)


def tower_gate(tower: Tower, network: OrtNetwork, ref: Reference) -> Gate:
    """The tower on ONNX Runtime against fp32 torch: the cosine of its own embeddings, and the top-1 label of
    each photo among the vocabulary's prompts with the other tower's torch embeddings."""
    if tower == "vision":
        got = network.run(ref.pixels)[0]
        return compare(
            (ref.image, _unit(ref.image) @ _unit(ref.text).T), (got, _unit(got) @ _unit(ref.text).T)
        )
    got = network.run_feeds(ref.tokens)[0]
    gate = compare((ref.text, _unit(ref.image) @ _unit(ref.text).T), (got, _unit(ref.image) @ _unit(got).T))
    return replace(gate, texts=len(got))


def fp32_cpu(model: Any, source: ModelSource) -> Any:
    """``model`` when it is float32 on the CPU, else a float32 CPU copy (what is exported and gated against)."""
    import torch

    if getattr(model, "dtype", None) == torch.float32 and str(getattr(model, "device", "cpu")) == "cpu":
        return model
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(source.path), dtype=torch.float32).eval()


class TowerOpener:
    """Exports (or finds) and gates the towers of one loaded model; the fp32 torch reference is computed at
    most once, and only when a gate verdict is not cached yet."""

    def __init__(
        self,
        model: Any,
        source: ModelSource,
        config: Any,
        image_processor: Any,
        tokenizer: Any,
        device: Device,
        folder: Path | None = None,
        available: Sequence[str] | None = None,
    ) -> None:
        self.model = model
        self.source = source
        self.config = config
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.device = device
        self.folder = folder
        self.available = available
        self._hash: str | None = None
        self._reference: Reference | None = None
        self._cpu_model: Any = None

    def _cpu(self) -> Any:
        if self._cpu_model is None:
            self._cpu_model = fp32_cpu(self.model, self.source)
        return self._cpu_model

    def _ref(self) -> Reference:
        if self._reference is None:
            if self.tokenizer is None:
                from transformers import AutoTokenizer

                from .loading import load_processor

                self.tokenizer = load_processor(self.source, AutoTokenizer)
            self._reference = reference(self._cpu(), self.image_processor, self.tokenizer, self.config)
        return self._reference

    def export(self, tower: Tower) -> Path:
        """The tower's fp32 export, made now if it is not cached."""
        import torch

        model_type = str(getattr(self.config, "model_type", ""))
        if not model_type.startswith(SUPPORTED):
            raise ModelUnavailableError(
                f"ONNX export is supported for CLIP and SigLIP towers, not {model_type or 'this model'}"
            )
        if self._hash is None:
            self._hash = weights_hash(self.source.path)
        name = export_id(self.source, tower)
        if tower == "vision":
            size = _image_size(self.config)

            def build_vision() -> tuple[torch.nn.Module, torch.Tensor]:
                return _vision_module(self._cpu()), torch.zeros(1, 3, size, size)

            return cached_export(name, self._hash, build_vision, ("embeds",), self.folder, ("pixel_values",))
        inputs = text_inputs(self.config)

        def build_text() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
            if self.tokenizer is None:
                self._ref()  # loads the tokenizer
            enc = tokenize(self.tokenizer, self.config, ["a photo of a cat.", "a dog"])
            return _text_module(self._cpu(), is_siglip(self.config)), tuple(enc[k] for k in inputs)

        dynamic: Mapping[str, Mapping[int, str]] = {k: {0: "batch", 1: "tokens"} for k in inputs}
        return cached_export(name, self._hash, build_text, ("embeds",), self.folder, inputs, dynamic)

    def open(self, tower: Tower, quantize: Quantize) -> tuple[OrtNetwork, Gate]:
        """The tower in an ONNX Runtime session on the device (int8 with ``quantize``), and its gate."""
        path = self.export(tower)
        if quantize == "int8":
            path = cached_quantized(path)
        network = OrtNetwork(path, self.device, self.available)
        return network, cached_gate(path, lambda: tower_gate(tower, network, self._ref()))

    def choose(self, tower: Tower, backend: Backend, quantize: Quantize, setting: str) -> TowerChoice:
        """:func:`phototag.onnxbackend.choose` for one tower; logged."""
        int8 = (lambda: self.open(tower, "int8")) if quantize == "int8" else None
        network, why = choose(
            backend,
            setting,
            lambda: self.open(tower, "none"),
            open_int8=int8,
            device=self.device,
            available=self.available,
        )
        log.info("%s %s tower on %s: %s", self.source.id, tower, self.device.torch_device, why)
        return TowerChoice(network, why)


def _image_size(config: Any) -> int:
    return int(getattr(getattr(config, "vision_config", None), "image_size", 224) or 224)


def open_towers(
    name: str,
    settings: Any,
    model: Any,
    source: ModelSource,
    image_processor: Any,
    tokenizer: Any,
    device: Device,
    towers: Sequence[Tower] = ("vision", "text"),
    available: Sequence[str] | None = None,
) -> dict[Tower, TowerChoice]:
    """What runs each of ``towers`` of the analyzer ``name`` (``plugins.<name>.backend`` and
    ``onnx_quantize`` in ``settings``): the choice per tower, exported and gated only when ONNX Runtime is
    asked for."""
    from .loading import load_config

    backend: Backend = settings.backend
    quantize: Quantize = settings.onnx_quantize
    if backend == "torch":
        return {t: TowerChoice(None, f"plugins.{name}.backend is torch") for t in towers}
    opener = TowerOpener(
        model, source, load_config(source), image_processor, tokenizer, device, available=available
    )
    return {t: opener.choose(t, backend, quantize, f"plugins.{name}.backend") for t in towers}
