"""Frontal faces with OpenCV's Haar cascade (``haarcascade_frontalface_default.xml`` from ``cv2.data``).

A fast, dependency-free fallback, not a modern face detector: it finds upright frontal faces and misses
profiles, tilted and small faces; textured surfaces occasionally fire (a crater on scikit-image's grey moon
did). The defaults were tuned on the sample photos: ``min_neighbors`` 6 drops a second, false box on the
astronaut that 3 gave, and no face fires on the cat, coffee, motorcycle or rocket.

The cascade gives no probability. ``Region.score`` is its final-stage level weight ``w`` squashed to
``w / (1 + w)``: monotone in the cascade's confidence, not calibrated. Real faces in the samples scored
0.8-0.88; weak texture hits 0.3-0.65.

Output is face regions only (``Region(kind="face", label="Face")``), which writers put in MWG regions; a
``People|Face`` keyword is off by default (``tag: true`` adds it), since the ``detect`` plugin's ``Person``
already says who is in the photo and a "Face" keyword on most photos of people is noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from ..config import Config, PluginSettings
from ..errors import ModelUnavailableError
from ..types import Analysis, DecodedImage, Device, ModelInfo, Needs, Region, Tag, Task, fingerprint_of
from . import require_module
from .opencv import PooledOpenCVModel

# numpy and PIL are imported where faces are found: a scan that finds its work done needs neither
if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

MODEL_ID = "opencv-haar"
CASCADE = "haarcascade_frontalface_default.xml"
PIP = "'opencv-python-headless<5'"  # OpenCV 5 no longer ships the cascades


def revision() -> str:
    try:
        import cv2
    except ImportError:
        return "opencv (not installed)"
    return f"opencv=={cv2.__version__}; {CASCADE}"


def cascade_path() -> Path:
    """The cascade file OpenCV ships; :class:`ModelUnavailableError` if this OpenCV has none."""
    require_module(MODEL_ID, "cv2", PIP)
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder) / CASCADE if folder else None
    if path is None or not path.is_file():
        raise ModelUnavailableError(
            f"model {MODEL_ID!r} is not available: OpenCV {cv2.__version__} has no {CASCADE} "
            f"(looked in {folder or 'cv2.data.haarcascades, which this build lacks'}). "
            f"Install an OpenCV that ships the Haar cascades: pip install {PIP}"
        )
    return path


def load_cascade(path: Path) -> Any:
    """A ``cv2.CascadeClassifier`` from ``path``; :class:`ModelUnavailableError` if it does not load."""
    import cv2

    try:
        cascade = cv2.CascadeClassifier(str(path))
    except (cv2.error, SystemError):  # a malformed file raises; a missing one gives an empty classifier
        cascade = None
    if cascade is None or cascade.empty():
        raise ModelUnavailableError(
            f"model {MODEL_ID!r} is not available: OpenCV cannot read the cascade {path}. "
            f"Reinstall OpenCV: pip install --force-reinstall {PIP}"
        )
    return cascade


class HaarFaceDetector:
    """``faces`` with OpenCV's frontal-face Haar cascade: face regions, optionally a ``Face`` keyword."""

    task: Task = "detect"
    needs = Needs(min_ram_mb=100, devices=("cpu",))

    class Settings(PluginSettings):
        model_config = ConfigDict(use_attribute_docstrings=True)

        model: str = MODEL_ID
        """``opencv-haar``: the only face model bundled so far."""
        input_size: int = Field(640, ge=64, le=4096)
        """Shorter side in pixels the photo is scaled down to before detection. Larger finds smaller faces
        and costs time in proportion to the pixel count."""
        min_size_fraction: float = Field(0.05, gt=0.0, le=1.0)
        """Smallest face, as a fraction of the photo's shorter side (0.05: 32 px at 640)."""
        scale_factor: float = Field(1.1, gt=1.0, le=2.0)
        """Step between the detection scales: smaller finds more faces, slower."""
        min_neighbors: int = Field(6, ge=1, le=50)
        """Overlapping raw detections a face needs: higher means fewer false faces and more missed ones."""
        threshold: float = Field(0.5, ge=0.0, le=1.0)
        """Smallest region score kept: w / (1 + w) of the cascade's level weight w, not a probability."""
        equalize: bool = True
        """Equalise the grey-level histogram first (helps dark and low-contrast photos)."""
        tag: bool = False
        """Also add a ``Face`` keyword (``People|Face``) when a face is found."""

    def __init__(self, name: str, settings: Settings, config: Config) -> None:
        self.name = name
        self.settings = settings
        self.input_size = settings.input_size
        self._cascade = PooledOpenCVModel((MODEL_ID, "cpu", CASCADE), lambda: load_cascade(cascade_path()))

    def model_info(self) -> ModelInfo:
        return ModelInfo(MODEL_ID, revision())

    def fingerprint(self) -> str:
        s = self.settings
        return fingerprint_of(
            MODEL_ID, revision(), s.input_size, s.min_size_fraction, s.scale_factor, s.min_neighbors,
            s.threshold, s.equalize, s.tag,
        )  # fmt: skip

    def load(self, device: Device) -> None:
        self._cascade.acquire(device)

    def unload(self) -> None:
        self._cascade.release()

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        # The cascade has no batch API; each photo is its own pyramid anyway.
        cascade = self._cascade.get(self.name)
        return [self._one(cascade, d.image) for d in images]

    def _grey(self, image: Image.Image) -> np.ndarray:
        import cv2
        import numpy as np
        from PIL import Image

        w, h = image.size
        scale = min(1.0, self.settings.input_size / min(w, h))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = image.resize(size, Image.Resampling.BILINEAR)
        grey = np.asarray(image.convert("L"))
        return cv2.equalizeHist(grey) if self.settings.equalize else grey

    def _one(self, cascade: Any, image: Image.Image) -> Analysis:
        import numpy as np

        s = self.settings
        grey = self._grey(image)
        h, w = grey.shape
        side = max(1, int(s.min_size_fraction * min(w, h)))
        boxes, _levels, weights = cascade.detectMultiScale3(
            grey, scaleFactor=s.scale_factor, minNeighbors=s.min_neighbors, minSize=(side, side),
            outputRejectLevels=True,
        )  # fmt: skip
        regions = []
        for (x, y, bw, bh), weight in zip(np.asarray(boxes).reshape(-1, 4), np.ravel(weights), strict=True):
            score = max(0.0, float(weight)) / (1.0 + max(0.0, float(weight)))
            if score < s.threshold:
                continue
            box = (
                round(float(x) / w, 4),
                round(float(y) / h, 4),
                round(float(bw) / w, 4),
                round(float(bh) / h, 4),
            )
            regions.append(Region("Face", round(score, 4), *box, kind="face"))
        regions.sort(key=lambda r: -r.score)
        tags = (Tag("Face", max(r.score for r in regions), ("People", "Face")),) if s.tag and regions else ()
        return Analysis(tags=tags, regions=tuple(regions))
