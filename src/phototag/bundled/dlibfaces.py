"""Faces with dlib: detection (HOG or MMOD CNN), 5-point landmarks, and 128-d identity descriptors.

The ``faces`` plugin's default (``model: dlib-hog``), chosen by ``bench/faces_bench.py`` on hand-checked photos
with faces and without (see its docstring and the README's table): dlib's HOG frontal detector found every
frontal test face with no false face (the Haar cascade: 4), in a twelfth to a fifth of the cascade's time; the MMOD
CNN (``model: dlib-mmod``) also finds three-quarter profiles but costs 70-85 times more per photo on a CPU.
The weights are files of the ``face-recognition-models`` package (found by path: importing the package needs
``pkg_resources``); dlib itself comes from the ``dlib-bin`` wheel. Licences: dlib is Boost; the 5-point
predictor, the MMOD detector and the ResNet descriptor were released by dlib's author as CC0/public domain. The
68-point predictor in the same package (iBUG 300-W, non-commercial) is never loaded.

Per face, after detection on the photo scaled to ``input_size``:

1. the 5-point shape predictor places the eye corners and the nose base on the decoded photo (which may be
   larger than the detection frame);
2. ``dlib.get_face_chip`` cuts a 150x150 crop aligned on those points (padding 0.25, what the ResNet expects);
3. dlib's ResNet (``dlib_face_recognition_resnet_model_v1.dat``) turns the crop into a 128-d descriptor. Two
   faces of one person are usually within Euclidean distance 0.6 (dlib's threshold); the benchmark prints the
   distances measured here;
4. ``quality`` (0..1) says how far the descriptor can be trusted: ``size * sharpness`` where ``size`` is
   ``min(1, face width in decoded pixels / 80)`` (the ResNet sees a 150 px crop; a face under ~40 px is upscaled
   mush) and ``sharpness`` is ``min(1, var(Laplacian of the grey chip) / 100)`` (the test faces measured 77-1900
   sharp, the astronaut's smooth face ~190; the same photos blurred by a 3 px Gaussian 4-32). It does not include
   the detector score, which is ``score``.

THE INTERFACE that people recognition (``plugins/people.py``) relies on. The analyzer's task is
``"face-identity"`` and its :class:`~phototag.types.Analysis` has:

- ``regions``: one ``Region(kind="face", label="Face")`` per face, normalised ``x, y, w, h`` (top-left corner)
  in the orientation-corrected frame, best score first;
- ``extra["faces"]``: a list in the same order as ``regions``, each
  ``{"box": [x, y, w, h]`` (normalised, equal to the region), ``"score": float`` (the region's score),
  ``"landmarks": [[x, y], ...]`` (5 points, normalised, dlib's order: right eye outer and inner corner, left eye
  outer and inner corner, nose base, as seen in the photo), ``"quality": float`` (0..1, above),
  ``"descriptor": [128 floats]``, ``"model": "dlib-resnet-v1"}``.

``score`` is ``1 / (1 + exp(-m))`` of the detector's margin ``m`` (HOG: the SVM margin; MMOD: its confidence),
so 0.5 is dlib's own default cut-off (``m = 0``); monotone, not a calibrated probability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field

from ..config import Config, PluginSettings
from ..models import shared_pool
from ..types import Analysis, DecodedImage, Device, ModelInfo, Needs, Region, Tag, Task, fingerprint_of
from . import package_file, package_version, require_module

# numpy and PIL are imported where faces are found: a scan that finds its work done needs neither
if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

HOG = "dlib-hog"
MMOD = "dlib-mmod"
DESCRIPTOR_MODEL = "dlib-resnet-v1"
WEIGHTS_PIP = "face-recognition-models"
DLIB_PIP = "dlib-bin"
FILES = {
    MMOD: "models/mmod_human_face_detector.dat",
    "landmarks": "models/shape_predictor_5_face_landmarks.dat",
    DESCRIPTOR_MODEL: "models/dlib_face_recognition_resnet_model_v1.dat",
}
CHIP_SIZE = 150
CHIP_PADDING = 0.25
FULL_SIZE_PX = 80.0  # a face this wide (decoded pixels) or wider has size quality 1
SHARP_VARIANCE = 100.0  # Laplacian variance of the grey chip at which sharpness quality reaches 1


def revision() -> str:
    return f"{package_version(DLIB_PIP)}; {package_version(WEIGHTS_PIP)}"


def weights(model: str, key: str) -> Path:
    """A weight file of ``face-recognition-models`` (a clear error naming the package when it is missing)."""
    return package_file(model, "face_recognition_models", FILES[key], WEIGHTS_PIP)


class DlibModels:
    """The loaded detector, landmark predictor and descriptor network (one set per detector kind and process)."""

    def __init__(self, detector: str) -> None:
        require_module(detector, "dlib", DLIB_PIP)
        import dlib

        self.kind = detector
        self.detector: Any = (
            dlib.cnn_face_detection_model_v1(str(weights(detector, MMOD)))
            if detector == MMOD
            else dlib.get_frontal_face_detector()
        )
        self.landmarks: Any = dlib.shape_predictor(str(weights(detector, "landmarks")))
        self.descriptor: Any = dlib.face_recognition_model_v1(str(weights(detector, DESCRIPTOR_MODEL)))

    def detect(self, frame: np.ndarray, upsample: int) -> list[tuple[tuple[int, int, int, int], float]]:
        """``((left, top, right, bottom), margin)`` per face found in ``frame`` (RGB, or grey for HOG; any
        margin, unfiltered)."""
        if self.kind == MMOD:
            found = self.detector(frame, upsample)
            return [
                ((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence) for d in found
            ]
        # a low adjust_threshold returns the weak candidates too; the caller applies the setting
        rects, margins, _ = self.detector.run(frame, upsample, -1.0)
        return [((r.left(), r.top(), r.right(), r.bottom()), m) for r, m in zip(rects, margins, strict=True)]


def squash(margin: float) -> float:
    """The region score of a detector margin: logistic, 0.5 at dlib's default cut-off."""
    return 1.0 / (1.0 + math.exp(-margin))


def sharpness(chip: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey chip: low when the face is blurred or upscaled."""
    import numpy as np

    grey = chip.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    lap = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4.0 * grey[1:-1, 1:-1]
    return float(lap.var())


def quality(face_width_px: float, chip: np.ndarray) -> float:
    """0..1: ``min(1, width / 80) * min(1, sharpness / 100)`` (module docstring)."""
    size = min(1.0, face_width_px / FULL_SIZE_PX)
    sharp = min(1.0, sharpness(chip) / SHARP_VARIANCE)
    return round(size * sharp, 4)


class DlibFaceAnalyzer:
    """``faces`` with dlib: face regions plus, per face, landmarks, a quality and a 128-d descriptor."""

    task: Task = "face-identity"
    needs = Needs(min_ram_mb=300, devices=("cpu",))

    class Settings(PluginSettings):
        model_config = ConfigDict(use_attribute_docstrings=True)

        model: Literal["dlib-hog", "dlib-mmod"] = "dlib-hog"
        """``dlib-hog`` (default: frontal faces, fast), ``dlib-mmod`` (dlib's CNN: also three-quarter profiles,
        70-85x slower on a CPU) or ``opencv-haar`` (the old Haar cascade: boxes only, no descriptors; its own
        settings)."""
        input_size: int = Field(640, ge=64, le=4096)
        """Shorter side in pixels the photo is scaled to (down, or up for a smaller photo) before detection. The
        detectors see faces from 80 px wide (40 px with ``upsample: 1``), so 640 finds faces from 1/8 of the
        shorter side (1/16 with ``upsample: 1``); time grows with the pixel count."""
        upsample: int = Field(0, ge=0, le=2)
        """Times the detection frame is doubled before detecting (each finds faces half as small, ~4x time)."""
        threshold: float = Field(0.6, ge=0.0, le=1.0)
        """Smallest region score kept: 1 / (1 + exp(-margin)) of the detector's margin, so 0.5 is dlib's own
        cut-off. 0.6 (margin 0.4) found every frontal face of ``bench/faces_bench.py`` and no false one; 0.5 once
        let boxes on a spacesuit through."""
        max_faces: int = Field(32, ge=1, le=1000)
        """At most this many faces per photo (the best-scoring ones); each costs ~0.1 s for its descriptor."""
        tag: bool = False
        """Also add a ``Face`` keyword (``People|Face``) when a face is found."""

    def __init__(self, name: str, settings: Settings, config: Config) -> None:
        self.name = name
        self.settings = settings
        self.input_size = settings.input_size
        self._key = ("dlib-faces", settings.model)
        self._models: DlibModels | None = None

    def model_info(self) -> ModelInfo:
        return ModelInfo(self.settings.model, revision())

    def fingerprint(self) -> str:
        s = self.settings
        return fingerprint_of(
            s.model, revision(), DESCRIPTOR_MODEL, CHIP_SIZE, CHIP_PADDING, FULL_SIZE_PX, SHARP_VARIANCE, "scaled",
            "grey-hog", s.input_size, s.upsample, s.threshold, s.max_faces, s.tag,
        )  # fmt: skip

    def load(self, device: Device) -> None:
        if self._models is None:
            model = self.settings.model
            self._models = shared_pool().acquire(self._key, lambda: DlibModels(model))

    def unload(self) -> None:
        if self._models is not None:
            shared_pool().release(self._key)
        self._models = None

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        if self._models is None:
            raise RuntimeError(f"analyzer {self.name!r}: call load() before analyze()")
        models = self._models
        return [self._one(models, d.image) for d in images]

    def detect(self, image: Image.Image) -> list[tuple[tuple[float, float, float, float], float]]:
        """Normalised ``(x, y, w, h)`` boxes and region scores of the faces in ``image``, best first, after the
        threshold and ``max_faces`` (detection only: for the benchmark and the landmarks step)."""
        import numpy as np
        from PIL import Image

        if self._models is None:
            raise RuntimeError(f"analyzer {self.name!r}: call load() before analyze()")
        s = self.settings
        frame = self.detection_frame(image)
        w, h = frame.size
        # scaled to input_size both ways: a face is found from the same fraction of the photo (1/8 of the
        # shorter side at upsample 0) whatever the photo's resolution; a small photo costs what a large one does
        scale = s.input_size / min(w, h)
        if scale != 1.0:
            frame = frame.resize(
                (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
            )
        fw, fh = frame.size
        found = []
        for (left, top, right, bottom), margin in self._models.detect(np.asarray(frame), s.upsample):
            score = squash(margin)
            # dlib's rectangles may reach past the frame: clip to the photo
            x0, y0 = max(0, left), max(0, top)
            x1, y1 = min(fw, right + 1), min(fh, bottom + 1)
            if score < s.threshold or x1 <= x0 or y1 <= y0:
                continue
            found.append(((x0 / fw, y0 / fh, (x1 - x0) / fw, (y1 - y0) / fh), score))
        found.sort(key=lambda f: -f[1])
        return found[: s.max_faces]

    def detection_frame(self, image: Image.Image) -> Image.Image:
        """What the detector looks at, before scaling: grey for HOG (dlib computes its HOG features on each
        colour channel of an RGB frame and keeps the strongest, so grey costs a third of the gradients: 0.73x
        the time; ``bench/faces_bench.py`` found the same faces), RGB for the MMOD CNN."""
        return image.convert("RGB" if self.settings.model == MMOD else "L")

    def _one(self, models: DlibModels, image: Image.Image) -> Analysis:
        import dlib
        import numpy as np

        boxes = self.detect(image)
        if not boxes:
            return Analysis()
        rgb = np.asarray(image.convert("RGB"))
        ih, iw = rgb.shape[:2]
        regions, faces = [], []
        for (x, y, w, h), score in boxes:
            rect = dlib.rectangle(
                round(x * iw), round(y * ih), round((x + w) * iw) - 1, round((y + h) * ih) - 1
            )
            shape = models.landmarks(rgb, rect)
            chip = np.asarray(dlib.get_face_chip(rgb, shape, CHIP_SIZE, CHIP_PADDING))
            descriptor = models.descriptor.compute_face_descriptor(chip)
            box = [round(x, 4), round(y, 4), round(w, 4), round(h, 4)]
            regions.append(Region("Face", round(score, 4), box[0], box[1], box[2], box[3], kind="face"))
            faces.append(
                {
                    "box": box,
                    "score": round(score, 4),
                    "landmarks": [[round(p.x / iw, 4), round(p.y / ih, 4)] for p in shape.parts()],
                    "quality": quality(w * iw, chip),
                    "descriptor": [round(float(v), 6) for v in descriptor],
                    "model": DESCRIPTOR_MODEL,
                }
            )
        tags = (Tag("Face", regions[0].score, ("People", "Face")),) if self.settings.tag else ()
        return Analysis(tags=tags, regions=tuple(regions), extra={"faces": faces})
