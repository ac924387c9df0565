"""The ``faces`` plugin: face regions (written as MWG face regions by the XMP writer) and, with dlib, a
descriptor per face for people recognition.

Only bundled models: ``model: dlib-hog`` (the default) and ``dlib-mmod``, dlib's detectors with 5-point landmarks
and 128-d identity descriptors (:class:`phototag.bundled.dlibfaces.DlibFaceAnalyzer`, task ``face-identity``; its
docstring holds the ``extra["faces"]`` interface); ``opencv-haar``, the old Haar cascade (boxes only,
:class:`phototag.bundled.haar.HaarFaceDetector`). The default was chosen by ``bench/faces_bench.py``. Another
``model`` value is a configuration error that lists the choices.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import hookimpl
from ..config import Config
from ..types import Analyzer
from ._dispatch import build_analyzer

NAME = "faces"
DEFAULT_MODEL = "dlib-hog"
BUNDLED = {
    "dlib-hog": "phototag.bundled.dlibfaces.DlibFaceAnalyzer",
    "dlib-mmod": "phototag.bundled.dlibfaces.DlibFaceAnalyzer",
    "opencv-haar": "phototag.bundled.haar.HaarFaceDetector",
}


@hookimpl
def register_analyzers(register: Callable[[Analyzer], None], config: Config) -> None:
    """Register the face detector unless ``plugins.faces.enabled`` is false."""
    if config.plugin_enabled(NAME):
        register(build_analyzer(NAME, config, DEFAULT_MODEL, BUNDLED, None))
