"""The ``classify`` plugin: keywords for what a photo shows.

``model: efficientnet-lite0`` (the default) runs the bundled EfficientNet-Lite0 offline
(:class:`phototag.bundled.efficientnet.EfficientNetClassifier`); any other value is a Hugging Face model id or
folder, run through transformers (:class:`phototag.hf.classify.HFClassifier`).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import hookimpl
from ..config import Config
from ..types import Analyzer
from ._dispatch import build_analyzer

NAME = "classify"
DEFAULT_MODEL = "efficientnet-lite0"
BUNDLED = {"efficientnet-lite0": "phototag.bundled.efficientnet.EfficientNetClassifier"}
TRANSFORMERS = "phototag.hf.classify.HFClassifier"


@hookimpl
def register_analyzers(register: Callable[[Analyzer], None], config: Config) -> None:
    """Register the classifier unless ``plugins.classify.enabled`` is false."""
    if config.plugin_enabled(NAME):
        register(build_analyzer(NAME, config, DEFAULT_MODEL, BUNDLED, TRANSFORMERS))
