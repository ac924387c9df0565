"""Object detection on a transformers model: boxes become object regions, their labels keywords.

Two kinds of model, told apart by the model's config:

- **closed set** (``AutoModelForObjectDetection``: RT-DETR, DETR, YOLOS, ...): the model's own labels
  (``id2label``, e.g. the 80 COCO classes).
- **open vocabulary** (OWLv2 / OWL-ViT): the labels are text queries: ``queries`` when set, else every label
  of the vocabulary (``phototag.hf.vocabulary``; the bundled one by default), each synonym put in
  ``query_template``. The queries' text embeddings are computed once at load, not once per photo.

Boxes are normalised to 0..1 in the orientation-corrected frame (``x``, ``y`` top-left, ``w``, ``h``),
filtered by ``threshold``, de-duplicated with non-maximum suppression (per label unless
``class_agnostic_nms``) and capped at ``max_boxes``. Every label that keeps a box becomes a
:class:`~phototag.types.Tag` with the best box's score; a label that the vocabulary knows (by name or synonym,
any case) gets the vocabulary's hierarchy, so that detect and classify write the same ``AI|Animals|Pets|Cat``.

Why one module of ~450 lines: the closed-set (DETR family) and open-vocabulary (OWL-ViT/OWLv2) detectors share
box conversion, NMS and the vocabulary queries; each half alone would import the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from ..config import Config, PluginSettings
from ..errors import ConfigError, ModelUnavailableError, PhototagError
from ..types import Analysis, DecodedImage, Device, Region, Tag, Task
from .base import HFAnalyzer, cpu_float32, settings_fingerprint
from .generation import to_device
from .loading import ModelSource, load_config, load_model, load_processor, release_model
from .vocabulary import Label, Vocabulary, load_vocabulary

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "PekingU/rtdetr_v2_r18vd"
OPEN_VOCABULARY_TYPES = frozenset({"owlvit", "owlv2"})
# Scores of the two kinds live on different scales: OWL's sigmoid scores for a good match are often 0.2-0.4.
DEFAULT_THRESHOLD = {"closed": 0.5, "open": 0.1}


class DetectSettings(PluginSettings):
    """``plugins.detect`` with a transformers model."""

    model: str = DEFAULT_MODEL
    """Hub id or local folder: RT-DETR (``PekingU/rtdetr_v2_r18vd``), DETR, YOLOS (``hustvl/yolos-tiny``), or
    OWLv2/OWL-ViT for open-vocabulary detection (``google/owlv2-base-patch16-ensemble``)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin; None: the default branch."""
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    """Minimum box score; None: 0.5 for closed-set models, 0.1 for OWLv2/OWL-ViT (their scores run lower)."""
    max_boxes: int = Field(20, ge=1, le=1000)
    """At most this many boxes per photo (the best-scoring ones)."""
    nms_iou: float = Field(0.5, ge=0.0, le=1.0)
    """A box overlapping a better box of the same label by more than this IoU is dropped; 1.0: no NMS."""
    class_agnostic_nms: bool = False
    """Suppress overlapping boxes whatever their labels (one label per object)."""
    queries: tuple[str, ...] = ()
    """Open vocabulary only: what to look for ("red car", "dog"); empty: every label of the vocabulary."""
    vocabulary: Path | None = None
    """Vocabulary file (YAML or text, see the README); None: the bundled one. Gives open-vocabulary models
    their labels and puts any model's labels in the keyword hierarchy."""
    query_template: str = "a photo of a {}"
    """Open vocabulary only: how a label or query is put to the model; ``{}`` is replaced. "{}": verbatim."""
    input_size: int | None = Field(None, ge=16, le=4096)
    """Shorter side in pixels the photo is decoded to; None: what the model's image processor uses (640 for
    RT-DETR, 800 for DETR, 960 for OWLv2), or 640 when that cannot be read."""

    @field_validator("query_template")
    @classmethod
    def _has_slot(cls, v: str) -> str:
        if v.count("{}") != 1:
            raise ValueError("must contain {} exactly once, where the label goes (e.g. 'a photo of a {}')")
        return v

    @field_validator("queries")
    @classmethod
    def _non_empty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(q.strip() for q in v)
        if any(not q for q in cleaned):
            raise ValueError("queries must not be empty strings")
        return tuple(dict.fromkeys(cleaned))


# -- boxes ---------------------------------------------------------------------------------------------------

Box = tuple[float, float, float, float]
"""``(x, y, w, h)`` with ``x``, ``y`` the top-left corner."""


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (0 when either is empty)."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def nms(
    boxes: Sequence[Box],
    scores: Sequence[float],
    iou_threshold: float,
    labels: Sequence[str] | None = None,
    max_keep: int | None = None,
) -> list[int]:
    """Greedy non-maximum suppression: indices of the boxes to keep, best score first.

    A box is dropped when its IoU with an already kept box is above ``iou_threshold`` (and, when ``labels``
    are given, that box has the same label). ``iou_threshold >= 1`` keeps everything. Stops after
    ``max_keep`` boxes.
    """
    import numpy as np

    n = len(boxes)
    if len(scores) != n or (labels is not None and len(labels) != n):
        raise ValueError("boxes, scores and labels must have the same length")
    order = sorted(range(n), key=lambda i: -scores[i])
    limit = n if max_keep is None else max(0, max_keep)
    if iou_threshold >= 1.0 or n == 0:
        return order[:limit]
    b = np.asarray(boxes, dtype=np.float64).reshape(n, 4)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    area = b[:, 2] * b[:, 3]
    label_ids = None
    if labels is not None:
        codes = {name: k for k, name in enumerate(dict.fromkeys(labels))}
        label_ids = np.array([codes[name] for name in labels])
    alive = np.ones(n, dtype=bool)
    keep: list[int] = []
    for i in order:
        if len(keep) >= limit:
            break
        if not alive[i]:
            continue
        keep.append(i)
        iw = np.clip(np.minimum(x1, x1[i]) - np.maximum(x0, x0[i]), 0.0, None)
        ih = np.clip(np.minimum(y1, y1[i]) - np.maximum(y0, y0[i]), 0.0, None)
        inter = iw * ih
        union = area + area[i] - inter
        iou = np.divide(inter, union, out=np.zeros(n), where=union > 0)
        suppress = iou > iou_threshold
        if label_ids is not None:
            suppress &= label_ids == label_ids[i]
        alive &= ~suppress
    return keep


MIN_SIDE = 1e-3
"""Boxes narrower or lower than this fraction of the photo are noise (or wholly outside it): dropped."""


def normalise_box(corners: Sequence[float], width: int, height: int) -> Box | None:
    """Pixel ``(x0, y0, x1, y1)`` -> normalised ``(x, y, w, h)`` clipped to the image; None when (nearly)
    empty after clipping."""
    x0, y0, x1, y1 = (float(v) for v in corners)
    x0, x1 = sorted((min(max(x0 / width, 0.0), 1.0), min(max(x1 / width, 0.0), 1.0)))
    y0, y1 = sorted((min(max(y0 / height, 0.0), 1.0), min(max(y1 / height, 0.0), 1.0)))
    if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def display_name(raw: str) -> str:
    """``dining table`` -> ``Dining table`` (keywords are capitalised; ``iPhone`` stays)."""
    raw = raw.strip()
    if len(raw) > 1 and raw[1].isupper():
        return raw
    return raw[:1].upper() + raw[1:]


@dataclass(frozen=True)
class _Detection:
    label: Label
    score: float
    box: Box


class _OutputView:
    """The two fields the image processors' ``post_process_object_detection`` read."""

    def __init__(self, logits: torch.Tensor, pred_boxes: torch.Tensor) -> None:
        self.logits = logits
        self.pred_boxes = pred_boxes


# -- the analyzer --------------------------------------------------------------------------------------------


class HFDetector(HFAnalyzer[DetectSettings]):
    """``detect`` analyzer on a transformers model; see the module docstring."""

    Settings = DetectSettings
    task: Task = "detect"
    fingerprint_kind = "hf-detect"
    default_input_size = 640  # RT-DETR's

    def __init__(self, name: str, settings: DetectSettings, config: Config) -> None:
        super().__init__(name, settings, config)
        # Read now: a bad vocabulary file is a configuration error at startup, not a failure per photo.
        self.vocabulary: Vocabulary = _read_vocabulary(name, settings.vocabulary, config)
        self._index = _vocabulary_index(self.vocabulary)
        self._loaded: ModelSource | None = None
        self._device: Device | None = None
        self._auto_class: Any = None
        self._model: Any = None
        self._image_processor: Any = None
        self._open = False
        self._labels: list[Label | None] = []  # closed set: by class id (None: unused id); open: by query
        self._query_texts: list[str] = []
        self._query_embeds: torch.Tensor | None = None

    # -- identity ------------------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """Also keyed by the vocabulary's content: it names and places the labels."""
        kind = f"{self.fingerprint_kind}:{self.vocabulary.digest()}"
        return settings_fingerprint(kind, self.settings, self._source)

    @property
    def open_vocabulary(self) -> bool:
        """True once loaded with an OWLv2/OWL-ViT model."""
        return self._open

    @property
    def queries(self) -> list[str]:
        """The texts an open-vocabulary model looks for (empty for closed-set models or before load)."""
        return list(self._query_texts) if self._open else []

    def threshold(self) -> float:
        if self.settings.threshold is not None:
            return self.settings.threshold
        return DEFAULT_THRESHOLD["open" if self._open else "closed"]

    # -- lifecycle -----------------------------------------------------------------------------------------

    def load(self, device: Device) -> None:
        """Find the model (raises ModelUnavailableError naming it), load it on ``device`` (float32 on CPU)."""
        if self._model is not None:
            return
        from transformers import (
            AutoImageProcessor,
            AutoModelForObjectDetection,
            AutoModelForZeroShotObjectDetection,
        )

        source = self._source.get()
        device = cpu_float32(device)
        config = load_config(source)
        model_type = str(getattr(config, "model_type", ""))
        self._open = model_type in OPEN_VOCABULARY_TYPES
        if self._open:
            processor = load_processor(source)
            self._image_processor = processor.image_processor
            auto_class: Any = AutoModelForZeroShotObjectDetection
        else:
            archs = [str(a) for a in getattr(config, "architectures", None) or []]
            if not any(a.endswith("ForObjectDetection") for a in archs) and archs:
                raise ModelUnavailableError(
                    f"model {source.id!r} ({', '.join(archs)}) is not an object-detection model. Use "
                    "RT-DETR, DETR, YOLOS, or OWLv2/OWL-ViT for open-vocabulary detection."
                )
            self._image_processor = load_processor(source, AutoImageProcessor)
            auto_class = AutoModelForObjectDetection
        model = load_model(source, auto_class, device)
        try:
            if self._open:
                self._labels, self._query_texts = self._open_labels()
                self._query_embeds = _encode_queries(model, processor.tokenizer, self._query_texts, device)
            else:
                self._labels = self._closed_labels(model.config)
        except Exception:
            release_model(source, auto_class, device)
            raise
        self._loaded, self._device, self._auto_class, self._model = source, device, auto_class, model

    def unload(self) -> None:
        if self._model is not None and self._loaded is not None and self._device is not None:
            release_model(self._loaded, self._auto_class, self._device)
        self._model = None
        self._query_embeds = None

    # -- analysis ------------------------------------------------------------------------------------------

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        """Boxes and tags for each image; the whole batch goes through the model at once."""
        import torch

        model, device = self._require(self._model), self._require(self._device)
        if not images:
            return []
        pils = [d.image.convert("RGB") if d.image.mode != "RGB" else d.image for d in images]
        sizes = [(im.height, im.width) for im in pils]
        inputs = self._image_processor(images=pils, return_tensors="pt")
        dtype = next(model.parameters()).dtype
        inputs = to_device(inputs, device.torch_device, dtype)
        with torch.inference_mode():
            if self._open:
                logits, boxes = _open_vocabulary_forward(model, inputs["pixel_values"], self._query_embeds)
            else:
                out = model(**inputs)
                logits, boxes = out.logits, out.pred_boxes
        view = _OutputView(logits.float(), boxes.float())
        results = self._image_processor.post_process_object_detection(
            view, threshold=self.threshold(), target_sizes=sizes
        )
        return [self._analysis(r, w, h) for r, (h, w) in zip(results, sizes, strict=True)]

    def _analysis(self, result: dict[str, Any], width: int, height: int) -> Analysis:
        found: list[_Detection] = []
        for score, label_id, corners in zip(
            result["scores"].tolist(), result["labels"].tolist(), result["boxes"].tolist(), strict=True
        ):
            label = self._labels[int(label_id)] if 0 <= int(label_id) < len(self._labels) else None
            box = normalise_box(corners, width, height)
            if label is None or box is None:  # "N/A" classes, boxes entirely outside the picture
                continue
            found.append(_Detection(label, float(score), box))
        keep = nms(
            [d.box for d in found],
            [d.score for d in found],
            self.settings.nms_iou,
            labels=None if self.settings.class_agnostic_nms else ["|".join(d.label.path) for d in found],
            max_keep=self.settings.max_boxes,
        )
        kept = [found[i] for i in keep]
        regions = tuple(
            Region(d.label.name, round(d.score, 4), *_rounded(d.box), kind="object") for d in kept
        )
        best: dict[tuple[str, ...], _Detection] = {}
        for d in kept:
            if d.label.path not in best or d.score > best[d.label.path].score:
                best[d.label.path] = d
        tags = tuple(Tag(d.label.name, round(d.score, 4), d.label.path) for d in best.values())
        return Analysis(
            tags=tags, regions=regions, extra={"detector": "open-vocabulary" if self._open else "closed-set"}
        )

    # -- labels --------------------------------------------------------------------------------------------

    def _label_for(self, raw: str) -> Label:
        known = self._index.get(raw.strip().lower())
        return known if known is not None else Label((display_name(raw),), (raw.strip(),))

    def _closed_labels(self, config: Any) -> list[Label | None]:
        id2label = getattr(config, "id2label", None) or {}
        size = max((int(k) for k in id2label), default=-1) + 1
        labels: list[Label | None] = [None] * size
        for k, raw in id2label.items():
            raw = str(raw)
            if raw.strip().upper() in ("N/A", ""):
                continue  # COCO's unused class ids
            labels[int(k)] = self._label_for(raw)
        return labels

    def _open_labels(self) -> tuple[list[Label | None], list[str]]:
        """One entry per query text: the label it stands for, and the texts themselves."""
        template = (self.settings.query_template,)
        if self.settings.queries:
            wanted: list[Label | None] = [self._label_for(q) for q in self.settings.queries]
            return wanted, [template[0].format(q) for q in self.settings.queries]
        labels: list[Label | None] = []
        texts: list[str] = []
        for label in self.vocabulary.labels:
            for text in label.texts(template):
                labels.append(label)
                texts.append(text)
        return labels, texts


def _rounded(box: Box) -> Box:
    return (round(box[0], 6), round(box[1], 6), round(box[2], 6), round(box[3], 6))


def _read_vocabulary(name: str, path: Path | None, config: Config) -> Vocabulary:
    """The vocabulary; a bad file is an error of ``plugins.<name>.vocabulary`` (the reader says classify)."""
    try:
        return load_vocabulary(path)
    except ConfigError as e:
        key = f"plugins.{name}.vocabulary"
        raise ConfigError(
            str(e).replace("plugins.classify.vocabulary", key), key, config.where(key)
        ) from None


def _vocabulary_index(vocabulary: Vocabulary) -> dict[str, Label]:
    """Lower-case name and synonyms -> label (the first label that claims a word wins)."""
    index: dict[str, Label] = {}
    for label in vocabulary.labels:
        for word in (label.name, *label.synonyms):
            index.setdefault(word.strip().lower(), label)
    return index


# -- OWL-ViT / OWLv2 with cached query embeddings ------------------------------------------------------------


def _backbone(model: Any) -> Any:
    for attr in ("owlv2", "owlvit"):
        if hasattr(model, attr):
            return getattr(model, attr)
    raise PhototagError(f"{type(model).__name__} has no OWL backbone (owlv2/owlvit attribute)")


def _encode_queries(model: Any, tokenizer: Any, texts: Sequence[str], device: Device) -> torch.Tensor:
    """The text embeddings of every query, once: ``[queries, dim]``.

    OWL's forward would re-encode every query for every photo; with a vocabulary of a few hundred texts that
    costs as much as the image itself.
    """
    import torch

    if not texts:
        raise PhototagError("open-vocabulary detection needs at least one query or vocabulary label")
    max_len = int(getattr(model.config.text_config, "max_position_embeddings", 16))
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), 256):
            enc = tokenizer(
                list(texts[start : start + 256]),
                padding="max_length",
                truncation=True,
                max_length=max_len,
                return_tensors="pt",
            )
            enc = {
                k: v.to(device.torch_device) for k, v in enc.items() if k in ("input_ids", "attention_mask")
            }
            features = _backbone(model).get_text_features(**enc)
            chunks.append(features if isinstance(features, torch.Tensor) else features.pooler_output)
    return torch.cat(chunks, dim=0)


def _open_vocabulary_forward(
    model: Any, pixel_values: torch.Tensor, query_embeds: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``OwlViTForObjectDetection.forward`` computes, with the query embeddings given instead of encoded
    (same public methods, in the same order): ``(logits [B, patches, queries], boxes [B, patches, 4])``."""
    import torch

    if query_embeds is None:
        raise PhototagError("open-vocabulary detector used before its queries were encoded")
    feature_map = model.image_embedder(pixel_values=pixel_values)[0]
    batch, rows, cols, dim = feature_map.shape
    image_feats = torch.reshape(feature_map, (batch, rows * cols, dim))
    queries = query_embeds.to(image_feats.dtype).unsqueeze(0).expand(batch, -1, -1)
    mask = torch.ones(queries.shape[:2], dtype=torch.bool, device=queries.device)
    logits = model.class_predictor(image_feats, queries, mask)[0]
    boxes = model.box_predictor(image_feats, feature_map)
    return logits, boxes
