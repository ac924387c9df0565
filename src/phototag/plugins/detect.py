"""The ``detect`` plugin: object boxes and a keyword per kind of object found.

``model: ssd-mobilenet-v2-coco`` (the default) runs the bundled SSD MobileNet v2 offline through OpenCV
(:class:`phototag.bundled.ssd.SSDDetector`); any other value is a Hugging Face model id or folder, run through
transformers (:class:`phototag.hf.detect.HFDetector`).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import hookimpl
from ..config import Config
from ..types import Analyzer
from ._dispatch import build_analyzer

NAME = "detect"
DEFAULT_MODEL = "ssd-mobilenet-v2-coco"
BUNDLED = {"ssd-mobilenet-v2-coco": "phototag.bundled.ssd.SSDDetector"}
TRANSFORMERS = "phototag.hf.detect.HFDetector"


@hookimpl
def register_analyzers(register: Callable[[Analyzer], None], config: Config) -> None:
    """Register the object detector unless ``plugins.detect.enabled`` is false."""
    if config.plugin_enabled(NAME):
        register(build_analyzer(NAME, config, DEFAULT_MODEL, BUNDLED, TRANSFORMERS))
