"""Keywords from a transformers model: zero-shot against a vocabulary (CLIP, SigLIP) or a fixed-label image
classifier (``AutoModelForImageClassification``: ViT, ConvNeXt, ...; its ``id2label`` names the tags).

The mode follows the model's config: a text and a vision tower means zero-shot, an
``...ForImageClassification`` architecture means fixed labels (``mode`` overrides). Zero-shot scores are a
softmax over the vocabulary for CLIP (its training objective) and an independent sigmoid per label for
SigLIP (``scoring`` overrides).

Settings (``plugins.classify``)::

    model: openai/clip-vit-base-patch32   # hub id or local folder
    revision: null                        # hub branch, tag or commit
    mode: auto                            # auto | zero-shot | fixed
    vocabulary: null                      # YAML or text file of labels (null: the bundled vocabulary)
    templates: null                       # e.g. ["a photo of {}."]; null: the vocabulary's, or the default
    top_k: 5                              # at most this many tags per photo
    threshold: null                       # minimum score; null: 0.1 for softmax, 0.05 for sigmoid
    scoring: auto                         # auto | softmax | sigmoid

A label's own ``threshold`` in the vocabulary wins over ``threshold`` here, which wins over the vocabulary
file's default. Text embeddings of the vocabulary are computed once per model and vocabulary, kept in memory
and saved next to the state DB (``<state_db folder>/cache/``), so a restart does not re-encode them.

Why one module of ~450 lines: the two modes share the settings, the loading and the tower routing (torch or
ONNX Runtime, :mod:`phototag.hf.onnxtowers`); the text-embedding cache is part of the zero-shot mode.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..config import Config
from ..errors import ConfigError, ModelUnavailableError
from ..onnxbackend import OrtNetwork
from ..types import Analysis, DecodedImage, Device, Tag, Task, fingerprint_of
from .base import HFAnalyzer
from .embed import (
    TowerBackendSettings,
    image_features,
    is_dual_encoder,
    normalise,
    pixel_values,
    text_features,
)
from .loading import ModelSource, load_config, load_model, load_processor, release_model, torch_dtype
from .vocabulary import DEFAULT_TEMPLATES, Label, Vocabulary, load_vocabulary

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .onnxtowers import Tower, TowerChoice

log = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
DEFAULT_THRESHOLD = {"softmax": 0.1, "sigmoid": 0.05}
Mode = Literal["zero-shot", "fixed"]
Scoring = Literal["softmax", "sigmoid"]


class HFClassifierSettings(TowerBackendSettings):
    model: str = DEFAULT_MODEL
    """A hub id or a local folder: CLIP/SigLIP (zero-shot) or an image-classification model (fixed labels)."""
    revision: str | None = None
    mode: Literal["auto", "zero-shot", "fixed"] = "auto"
    vocabulary: Path | None = None
    """YAML or text file of labels (``Animals|Pets|Cat``); None: the bundled vocabulary."""
    templates: tuple[str, ...] | None = None
    """Prompt templates with ``{}`` for the label; None: the vocabulary file's, else ``a photo of {}.``."""
    top_k: int = Field(5, ge=1, le=1000)
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    scoring: Literal["auto", "softmax", "sigmoid"] = "auto"


# In-memory text-embedding cache: (model id, revision, dtype, vocabulary digest, templates) -> [labels, dim].
_text_cache: dict[tuple[str, ...], np.ndarray] = {}
_text_lock = threading.Lock()


def clear_text_cache() -> None:
    """Forget the in-memory vocabulary embeddings (the on-disk copies stay)."""
    with _text_lock:
        _text_cache.clear()


class HFClassifier(HFAnalyzer[HFClassifierSettings]):
    """``task: classify`` on a transformers model; see the module docstring for modes and settings."""

    Settings = HFClassifierSettings
    task: Task = "classify"
    fingerprint_kind = "hf-classify"
    info_names_revision = False

    def __init__(self, name: str, settings: HFClassifierSettings, config: Config) -> None:
        super().__init__(name, settings, config)
        # Read now: a bad vocabulary file is a configuration error at startup, not a failure per photo.
        self.vocabulary: Vocabulary = load_vocabulary(settings.vocabulary)
        self.texts_encoded = 0
        """How many texts this instance ran through the text tower (0 when the cache served them)."""
        self._lock = threading.Lock()
        self._model: Any = None
        self._auto_class: Any = None
        self._device: Device | None = None
        self._loaded_from: ModelSource | None = None
        self._image_processor: Any = None
        self._tokenizer: Any = None
        self._label_vectors: torch.Tensor | None = None
        self._mode: Mode | None = None
        self._fingerprint: str | None = None
        self.towers: dict[Tower, TowerChoice] = {}
        """Zero-shot: what runs each tower (ONNX Runtime or torch) and why; set by :meth:`load`."""

    # -- identity ------------------------------------------------------------------------------------------

    @property
    def templates(self) -> tuple[str, ...]:
        return self.settings.templates or self.vocabulary.templates or DEFAULT_TEMPLATES

    def fingerprint(self) -> str:
        """The model, its mode, the vocabulary (zero-shot, or when it places fixed labels) and the settings that
        change tags."""
        if self._fingerprint is not None:  # asked for every file: computed once the model is resolved
            return self._fingerprint
        s = self.settings
        revision = self._source.revision_or_unresolved
        mode = self._peek_mode()
        vocab = self.vocabulary.digest() if mode != "fixed" or s.vocabulary is not None else ""
        fingerprint = fingerprint_of(
            self.fingerprint_kind,
            s.model,
            revision,
            mode,
            vocab,
            self.templates,
            s.top_k,
            s.threshold,
            s.scoring,
        )
        if revision != "unresolved":
            self._fingerprint = fingerprint
        return fingerprint

    def mode(self) -> Mode:
        """``zero-shot`` or ``fixed``, from the setting or the model's config."""
        if self._mode is None:
            self._mode = self._detect_mode(load_config(self._source.get()))
        return self._mode

    def _peek_mode(self) -> str:
        try:
            return self.mode()
        except Exception:  # unavailable model: the fingerprint must not raise (load() will say why)
            return self.settings.mode

    def _detect_mode(self, config: Any) -> Mode:
        if self.settings.mode != "auto":
            return self.settings.mode
        architectures = getattr(config, "architectures", None) or []
        if any(str(a).endswith("ForImageClassification") for a in architectures):
            return "fixed"
        if is_dual_encoder(config):
            return "zero-shot"
        labels = getattr(config, "id2label", None) or {}
        if labels and not all(str(v).startswith("LABEL_") for v in labels.values()):
            return "fixed"
        raise ConfigError(
            f"model {self.settings.model!r} ({getattr(config, 'model_type', '?')}) is neither a "
            "CLIP/SigLIP-style model (text and vision towers, for a vocabulary) nor an image classifier "
            "(id2label). Use e.g. openai/clip-vit-base-patch32 or google/vit-base-patch16-224.",
            f"plugins.{self.name}.model",
        )

    def scoring(self) -> Scoring:
        """softmax (CLIP, fixed single-label classifiers) or sigmoid (SigLIP, multi-label classifiers)."""
        if self.settings.scoring != "auto":
            return self.settings.scoring
        config = load_config(self._source.get())
        if self.mode() == "zero-shot":
            return "sigmoid" if str(getattr(config, "model_type", "")).startswith("siglip") else "softmax"
        return (
            "sigmoid" if getattr(config, "problem_type", None) == "multi_label_classification" else "softmax"
        )

    def threshold_for(self, label: Label | None) -> float:
        if label is not None and label.threshold is not None:
            return label.threshold
        if self.settings.threshold is not None:
            return self.settings.threshold
        if self.vocabulary.threshold is not None:
            return self.vocabulary.threshold
        return DEFAULT_THRESHOLD[self.scoring()]

    # -- lifecycle -----------------------------------------------------------------------------------------

    def load(self, device: Device) -> None:
        """Load (or share) the model on ``device`` and the vocabulary's text embeddings."""
        from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, AutoTokenizer

        with self._lock:
            if self._model is not None:
                return
            source = self._source.get()
            mode = self.mode()
            self._image_processor = load_processor(source, AutoImageProcessor)
            self._auto_class = AutoModel if mode == "zero-shot" else AutoModelForImageClassification
            self._model = load_model(source, self._auto_class, device)
            self._device, self._loaded_from = device, source
            if mode == "zero-shot":
                if not hasattr(self._model, "get_text_features"):
                    self._release()
                    raise ConfigError(
                        f"model {source.id!r} has no text tower to compare a vocabulary with; set "
                        "mode: fixed for an image classifier or use a CLIP/SigLIP model",
                        f"plugins.{self.name}.model",
                    )
                self._tokenizer = load_processor(source, AutoTokenizer)
                try:
                    self._open_towers(source, device)
                    self._label_vectors = self._vocabulary_vectors(source, self._tokenizer, device)
                except Exception:
                    self._release()
                    raise
            elif self.settings.backend != "torch":
                self._fixed_on_torch(source)

    def _fixed_on_torch(self, source: ModelSource) -> None:
        """A fixed-label classifier runs on torch: ONNX Runtime is for the towers of a CLIP-family model."""
        why = f"a fixed-label classifier ({source.id}) runs on torch: ONNX Runtime is for CLIP/SigLIP towers"
        if self.settings.backend == "onnx":
            self._release()
            raise ModelUnavailableError(
                f"plugins.{self.name}.backend: onnx cannot be used: {why}; set plugins.{self.name}.backend: torch"
            )
        log.info("%s: %s", self.name, why)

    def _open_towers(self, source: ModelSource, device: Device) -> None:
        from .onnxtowers import open_towers

        self.towers = open_towers(
            self.name, self.settings, self._model, source, self._image_processor, self._tokenizer, device
        )

    def _network(self, tower: Tower) -> OrtNetwork | None:
        choice = self.towers.get(tower)
        return choice.network if choice is not None else None

    def _release(self) -> None:
        if self._model is not None and self._loaded_from is not None and self._device is not None:
            release_model(self._loaded_from, self._auto_class, self._device)
        self._model = None
        self._tokenizer = None
        self._label_vectors = None
        self.towers = {}

    def unload(self) -> None:
        with self._lock:
            self._release()

    # -- vocabulary embeddings -----------------------------------------------------------------------------

    def _vocabulary_vectors(self, source: ModelSource, tokenizer: Any, device: Device) -> torch.Tensor:
        """One normalised text embedding per label (mean over its prompts), from memory, disk or the model."""
        import numpy as np
        import torch

        dtype = str(torch_dtype(device)).removeprefix("torch.")
        key = (source.id, source.revision, dtype, self.vocabulary.digest(), *self.templates)
        with _text_lock:
            matrix = _text_cache.get(key)
        if matrix is None:
            disk = self._disk_path(key)
            matrix = _read_matrix(disk, len(self.vocabulary.labels))
            if matrix is None:
                matrix = self._encode_vocabulary(tokenizer, source)
                _write_matrix(disk, matrix)
            with _text_lock:
                _text_cache[key] = matrix
        return torch.from_numpy(np.ascontiguousarray(matrix)).to(self._model.device)

    def _encode_vocabulary(self, tokenizer: Any, source: ModelSource) -> np.ndarray:
        import torch

        labels = self.vocabulary.labels
        per_label = [label.texts(self.templates) for label in labels]
        unique = list(dict.fromkeys(t for texts in per_label for t in texts))
        index = {t: i for i, t in enumerate(unique)}
        vectors = text_features(
            self._model, tokenizer, load_config(source), unique, text_tower=self._network("text")
        )
        self.texts_encoded += len(unique)
        rows = [vectors[[index[t] for t in texts]].mean(dim=0) for texts in per_label]
        return normalise(torch.stack(rows)).cpu().numpy()

    def _disk_path(self, key: tuple[str, ...]) -> Path:
        digest = hashlib.blake2b(repr(key).encode(), digest_size=10).hexdigest()
        return Path(self.config.state_db).parent / "cache" / f"text-embeddings-{digest}.npy"

    # -- work ----------------------------------------------------------------------------------------------

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        if not images:
            return []
        if self._model is None:
            raise RuntimeError(f"analyzer {self.name}: analyze() before load()")
        scores = self.scores(images)
        if self.mode() == "zero-shot":
            return [self._zero_shot_tags(row) for row in scores]
        return [self._fixed_tags(row) for row in scores]

    def scores(self, images: Sequence[DecodedImage]) -> np.ndarray:
        """``[images, labels]`` probabilities (softmax or sigmoid) in one forward pass."""
        import torch

        model = self._model
        if self.mode() == "zero-shot":
            assert self._label_vectors is not None
            probs = zero_shot_probabilities(
                model, self.image_vectors(images), self._label_vectors, self.scoring()
            )
            return probs.cpu().numpy()
        with torch.inference_mode():
            logits = model(pixel_values=pixel_values(self._image_processor, images, model)).logits.float()
            probs = torch.sigmoid(logits) if self.scoring() == "sigmoid" else torch.softmax(logits, dim=-1)
        return probs.cpu().numpy()

    # -- zero-shot against any texts (per-request labels: phototag.adhoc) ----------------------------------

    def image_vectors(self, images: Sequence[DecodedImage]) -> torch.Tensor:
        """Normalised image embeddings (zero-shot mode), one row per image, in one forward pass."""
        model = self._require_zero_shot()
        return image_features(model, self._image_processor, images, self._network("vision"))

    def text_vectors(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings of any ``texts`` (zero-shot mode), in the image space; not cached here."""
        model = self._require_zero_shot()
        self.texts_encoded += len(texts)
        return text_features(
            model,
            self._tokenizer,
            load_config(self._source.get()),
            list(texts),
            text_tower=self._network("text"),
        )

    def zero_shot_scores(
        self, image_vectors: torch.Tensor, text_vectors: torch.Tensor, scoring: Scoring | None = None
    ) -> np.ndarray:
        """``[images, texts]`` probabilities of embeddings from :meth:`image_vectors` and :meth:`text_vectors`,
        scored as the vocabulary is (``scoring``: None for this model's own, see :meth:`scoring`)."""
        model = self._require_zero_shot()
        probs = zero_shot_probabilities(model, image_vectors, text_vectors, scoring or self.scoring())
        return probs.cpu().numpy()

    def _require_zero_shot(self) -> Any:
        if self._model is None:
            raise RuntimeError(f"analyzer {self.name}: used before load()")
        if self.mode() != "zero-shot" or self._tokenizer is None:
            raise ConfigError(
                f"model {self.settings.model!r} is a fixed-label classifier: it cannot score texts; use a "
                "CLIP/SigLIP model (e.g. openai/clip-vit-base-patch32)",
                f"plugins.{self.name}.model",
            )
        return self._model

    def _top(self, row: np.ndarray) -> list[int]:
        import numpy as np

        k = min(self.settings.top_k, row.shape[0])
        order = np.argsort(-row, kind="stable")[:k]
        return [int(i) for i in order]

    def _zero_shot_tags(self, row: np.ndarray) -> Analysis:
        labels = self.vocabulary.labels
        tags = [
            Tag(labels[i].name, round(float(row[i]), 4), labels[i].path)
            for i in self._top(row)
            if row[i] >= self.threshold_for(labels[i])
        ]
        return Analysis(tags=tuple(tags), extra={"mode": "zero-shot", "scoring": self.scoring()})

    def _fixed_tags(self, row: np.ndarray) -> Analysis:
        id2label = getattr(self._model.config, "id2label", None) or {}
        by_name = self._vocabulary_index() if self.settings.vocabulary is not None else {}
        tags = []
        for i in self._top(row):
            raw = str(id2label.get(i, f"LABEL_{i}"))
            name = raw.split(",")[0].strip() or raw  # ImageNet style "tabby, tabby cat" -> "tabby"
            label = by_name.get(name.lower())
            if row[i] < self.threshold_for(label):
                continue
            tags.append(
                Tag(label.name, round(float(row[i]), 4), label.path)
                if label
                else Tag(name, round(float(row[i]), 4))
            )
        return Analysis(tags=tuple(tags), extra={"mode": "fixed", "scoring": self.scoring()})

    def _vocabulary_index(self) -> dict[str, Label]:
        """Lower-case name and synonyms -> label: puts a fixed classifier's labels in the user's hierarchy."""
        index: dict[str, Label] = {}
        for label in self.vocabulary.labels:
            for word in (label.name, *label.synonyms):
                index.setdefault(word.lower(), label)
        return index


def zero_shot_probabilities(
    model: Any, image_vectors: torch.Tensor, text_vectors: torch.Tensor, scoring: Scoring
) -> torch.Tensor:
    """``[images, texts]`` probabilities from normalised embeddings: cosine similarities times the model's
    learnt scale (CLIP: ~100), plus its learnt bias for sigmoid scoring (SigLIP), then a softmax over the texts
    (CLIP's objective) or an independent sigmoid per text (SigLIP's)."""
    import torch

    with torch.inference_mode():
        logits = image_vectors.float() @ text_vectors.float().to(image_vectors.device).T
        scale = getattr(model, "logit_scale", None)
        logits = logits * (scale.float().exp().to(logits.device) if scale is not None else 100.0)
        bias = getattr(model, "logit_bias", None)
        if bias is not None and scoring == "sigmoid":
            logits = logits + bias.float().to(logits.device)
        return torch.sigmoid(logits) if scoring == "sigmoid" else torch.softmax(logits, dim=-1)


def _read_matrix(path: Path, rows: int) -> np.ndarray | None:
    import numpy as np

    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if matrix.ndim != 2 or matrix.shape[0] != rows or not np.isfinite(matrix).all():
        return None  # stale or damaged: recompute
    return matrix.astype(np.float32, copy=False)


def _write_matrix(path: Path, matrix: np.ndarray) -> None:
    """Atomically (temp + rename); a cache that cannot be written is only a missed speed-up."""
    import numpy as np

    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.save(f, matrix.astype(np.float32))
        os.replace(tmp, path)
    except OSError as e:
        log.warning("cannot cache vocabulary embeddings in %s: %s", path, e)
        tmp.unlink(missing_ok=True)
