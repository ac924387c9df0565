"""The ``faces`` plugin: face regions (written as MWG face regions by the XMP writer).

Only bundled models: ``model: opencv-haar`` (the default), OpenCV's frontal-face Haar cascade
(:class:`phototag.bundled.haar.HaarFaceDetector`). Another ``model`` value is a configuration error that lists
the choices.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import hookimpl
from ..config import Config
from ..types import Analyzer
from ._dispatch import build_analyzer

NAME = "faces"
DEFAULT_MODEL = "opencv-haar"
BUNDLED = {"opencv-haar": "phototag.bundled.haar.HaarFaceDetector"}


@hookimpl
def register_analyzers(register: Callable[[Analyzer], None], config: Config) -> None:
    """Register the face detector unless ``plugins.faces.enabled`` is false."""
    if config.plugin_enabled(NAME):
        register(build_analyzer(NAME, config, DEFAULT_MODEL, BUNDLED, None))
