"""Image embeddings from any transformers vision model: CLIP/SigLIP (text and image share one space, so text
search works) or an image-only encoder such as DINOv2 (image-to-image similarity).

Embeddings are L2-normalised, so a dot product is the cosine similarity. The pipeline stores them in the state
DB keyed by the photo's content hash and this analyzer's :meth:`HFEmbedder.fingerprint`, so renames and
re-runs cost nothing. On the same CLIP id, device and dtype, classify and embed share one loaded model.

Settings (``plugins.embed``)::

    model: openai/clip-vit-base-patch32   # hub id or local folder; facebook/dinov2-small for image-only
    revision: null                        # hub branch, tag or commit
    pooling: auto                         # image-only encoders: cls (pooled CLS token) or mean (patch tokens)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..config import Config, PluginSettings
from ..errors import ConfigError
from ..onnxbackend import Backend, OrtNetwork, Quantize
from ..types import Analysis, DecodedImage, Device, Task, fingerprint_of
from .base import HFAnalyzer
from .loading import ModelSource, load_config, load_model, load_processor, release_model

if TYPE_CHECKING:
    import torch

    from .onnxtowers import Tower, TowerChoice

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
EmbedKind = Literal["dual", "vision"]


class TowerBackendSettings(PluginSettings):
    """The settings of a model whose image and text towers may run on ONNX Runtime (``embed``, ``classify``)."""

    backend: Backend = "torch"
    """What runs a CLIP/SigLIP model's image and text towers: ``torch``; ``onnx`` (ONNX Runtime: each tower
    exported once from the weights into the ONNX cache; an error when it cannot be used); ``auto``: ONNX
    Runtime for each tower that exports and matches fp32 torch on real photos, else torch (the reason is
    logged). Default torch: the export costs a copy of the model on disk and its first load, for a gain measured
    only per machine (bench/pipeline_bench.py)."""
    onnx_quantize: Quantize = "none"
    """With ONNX Runtime: ``int8`` also quantises each tower (dynamic int8 matrix multiplications: about twice
    as fast as fp32 ONNX Runtime for CLIP B/32 on a CPU), used only when it too matches fp32 torch on real
    photos, else fp32 is used."""


class HFEmbedderSettings(TowerBackendSettings):
    model: str = DEFAULT_MODEL
    """A hub id or a local folder: CLIP/SigLIP for text search and similarity, DINOv2 for similarity only."""
    revision: str | None = None
    """Hub branch, tag or commit (hub ids only)."""
    pooling: Literal["auto", "cls", "mean"] = "auto"
    """Image-only encoders: ``cls`` (the pooled CLS token, the default) or ``mean`` of the patch tokens."""


# -- helpers shared with classify ---------------------------------------------------------------------------


def is_dual_encoder(config: Any) -> bool:
    """True for CLIP-family configs: a text tower and a vision tower in one model (CLIP, SigLIP, ALIGN...)."""
    return (
        getattr(config, "text_config", None) is not None
        and getattr(config, "vision_config", None) is not None
    )


def pooled(output: Any) -> torch.Tensor:
    """``get_*_features`` return a tensor in transformers 4 and a ``BaseModelOutputWithPooling`` in 5."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    value = getattr(output, "pooler_output", None)
    if value is None:
        value = output[0] if isinstance(output, tuple) else output.last_hidden_state[:, 0]
    return value


def normalise(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise rows in float32 (fp16 norms lose precision)."""
    import torch

    return torch.nn.functional.normalize(x.float(), dim=-1)


def image_features(
    model: Any, image_processor: Any, images: Sequence[DecodedImage], vision_tower: OrtNetwork | None
) -> torch.Tensor:
    """Normalised image embeddings of a dual encoder: ``vision_tower`` (the image tower on ONNX Runtime) when
    given, else the torch model."""
    import torch

    if vision_tower is not None:
        from .onnxtowers import image_pixels

        batch = image_pixels(image_processor, [d.image for d in images])
        return normalise(torch.from_numpy(vision_tower.run(batch)[0]))
    with torch.inference_mode():
        pixels = pixel_values(image_processor, images, model)
        return normalise(pooled(model.get_image_features(pixel_values=pixels)))


def pixel_values(image_processor: Any, images: Sequence[DecodedImage], model: Any) -> torch.Tensor:
    """The batch as the model's image processor prepares it, on the model's device and dtype."""
    batch = image_processor(images=[d.image for d in images], return_tensors="pt")["pixel_values"]
    return batch.to(device=model.device, dtype=model.dtype)


def text_features(
    model: Any,
    tokenizer: Any,
    config: Any,
    texts: Sequence[str],
    chunk: int = 256,
    text_tower: OrtNetwork | None = None,
) -> torch.Tensor:
    """Normalised text embeddings of a dual encoder, ``chunk`` texts at a time (through ``text_tower``, the
    text tower on ONNX Runtime, when given: :mod:`phototag.hf.onnxtowers`).

    SigLIP was trained on texts padded to a fixed length (it pools the last token), so it gets
    ``padding="max_length"``; CLIP pools the end-of-text token and gets the shortest padding.
    """
    import torch

    siglip = str(getattr(config, "model_type", "")).startswith("siglip")
    max_length = int(getattr(config.text_config, "max_position_embeddings", 64) or 64)
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), chunk):
            part = list(texts[i : i + chunk])
            if text_tower is not None:
                from .onnxtowers import onnx_text_features

                out.append(
                    normalise(torch.from_numpy(onnx_text_features(text_tower, tokenizer, config, part)))
                )
                continue
            if siglip:
                enc = tokenizer(
                    part, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
                )
            else:
                enc = tokenizer(
                    part, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
                )
            enc = {k: v.to(model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            if siglip:  # SigLIP's text tower takes no attention mask: it attends over the padding by design
                enc.pop("attention_mask", None)
            out.append(normalise(pooled(model.get_text_features(**enc))))
    return torch.cat(out) if out else torch.empty(0)


# -- the analyzer -------------------------------------------------------------------------------------------


class HFEmbedder(HFAnalyzer[HFEmbedderSettings]):
    """``task: embed`` on a transformers model: one normalised image vector per photo, truly batched."""

    Settings = HFEmbedderSettings
    task: Task = "embed"
    fingerprint_kind = "hf-embed"
    info_names_revision = False

    def __init__(self, name: str, settings: HFEmbedderSettings, config: Config) -> None:
        super().__init__(name, settings, config)
        self._lock = threading.Lock()
        self._model: Any = None
        self._device: Device | None = None
        self._loaded_from: ModelSource | None = None
        self._image_processor: Any = None
        self._tokenizer: Any = None
        self._kind: EmbedKind | None = None
        self.towers: dict[Tower, TowerChoice] = {}
        """What runs each tower (ONNX Runtime or torch) and why; set by :meth:`load`."""

    # -- identity ------------------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """Keys the stored embeddings: model id, revision and pooling; not the device or dtype, whose small
        numeric differences leave vectors comparable."""
        return fingerprint_of(
            self.fingerprint_kind, self.settings.model, self._source.revision_or_unresolved, self._pooling()
        )

    def kind(self) -> EmbedKind:
        """``dual`` (CLIP-family: text search works) or ``vision`` (image-only encoder)."""
        if self._kind is None:
            self._kind = "dual" if is_dual_encoder(load_config(self._source.get())) else "vision"
        return self._kind

    def _pooling(self) -> str:
        return "cls" if self.settings.pooling == "auto" else self.settings.pooling

    # -- lifecycle -----------------------------------------------------------------------------------------

    def load(self, device: Device) -> None:
        """Load (or share) the model on ``device``; raises ModelUnavailableError when it is not here."""
        from transformers import AutoImageProcessor, AutoModel

        with self._lock:
            if self._model is not None:
                return
            source = self._source.get()
            kind = self.kind()
            self._image_processor = load_processor(source, AutoImageProcessor)
            self._model = load_model(source, AutoModel, device)
            self._device, self._loaded_from = device, source
            if kind == "dual" and not hasattr(self._model, "get_image_features"):
                self._unload()
                raise ConfigError(
                    f"model {source.id!r} has text and vision towers but no get_image_features: it is not a "
                    "CLIP-style model. Use CLIP, SigLIP or DINOv2 for embeddings.",
                    f"plugins.{self.name}.model",
                )
            try:
                self._open_towers(source, device, ("vision", "text") if kind == "dual" else ("vision",))
            except Exception:
                self._unload()
                raise

    def _open_towers(self, source: ModelSource, device: Device, towers: Sequence[Any]) -> None:
        from .onnxtowers import open_towers

        self.towers = open_towers(
            self.name, self.settings, self._model, source, self._image_processor, None, device, towers
        )

    def _network(self, tower: Tower) -> OrtNetwork | None:
        choice = self.towers.get(tower)
        return choice.network if choice is not None else None

    def unload(self) -> None:
        with self._lock:
            self._unload()

    def _unload(self) -> None:
        from transformers import AutoModel

        if self._model is not None and self._loaded_from is not None and self._device is not None:
            release_model(self._loaded_from, AutoModel, self._device)
        self._model = None
        self._tokenizer = None
        self.towers = {}

    # -- work ----------------------------------------------------------------------------------------------

    def _require_model(self) -> Any:
        if self._model is None:
            raise RuntimeError(f"analyzer {self.name}: analyze() before load()")
        return self._model

    def image_vectors(self, images: Sequence[DecodedImage]) -> torch.Tensor:
        """Normalised float32 embeddings, one row per image, in one forward pass."""
        import torch

        model = self._require_model()
        if self.kind() == "dual":
            return image_features(model, self._image_processor, images, self._network("vision"))
        with torch.inference_mode():
            pixels = pixel_values(self._image_processor, images, model)
            out = model(pixel_values=pixels)
            if self._pooling() == "mean":
                return normalise(out.last_hidden_state[:, 1:].mean(dim=1))
            return normalise(pooled(out))

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        if not images:
            return []
        vectors = self.image_vectors(images).cpu().numpy()
        return [Analysis(embedding=tuple(float(x) for x in row)) for row in vectors]

    def embed_text(self, texts: Sequence[str]) -> list[tuple[float, ...]]:
        """Normalised text embeddings in the image space (CLIP-family only), for text search.

        Loads the model on the CPU if :meth:`load` was not called. An image-only model (DINOv2) raises a
        ConfigError that says which models can search by text.
        """
        from transformers import AutoTokenizer

        if self.kind() != "dual":
            raise ConfigError(
                f"model {self.settings.model!r} embeds images only, so it cannot search by text. Use a "
                "CLIP-family model (e.g. openai/clip-vit-base-patch32 or a SigLIP) in plugins.embed.model "
                "and re-scan; `phototag similar PHOTO` works with any embedding model.",
                f"plugins.{self.name}.model",
            )
        if self._model is None:
            self.load(Device("cpu", reason="text query"))
        model = self._require_model()
        source = self._source.get()
        if self._tokenizer is None:
            self._tokenizer = load_processor(source, AutoTokenizer)
        vectors = text_features(
            model, self._tokenizer, load_config(source), list(texts), text_tower=self._network("text")
        )
        return [tuple(float(x) for x in row) for row in vectors.cpu().numpy()]
