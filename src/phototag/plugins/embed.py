"""The ``embed`` plugin: one vector per photo, for similarity search.

``model: efficientnet-lite0`` (the default) returns the bundled network's 1280-d features offline, sharing
the loaded network with ``classify`` (:class:`phototag.bundled.efficientnet.EfficientNetEmbedder`); any other
value is a Hugging Face model id or folder, run through transformers (:class:`phototag.hf.embed.HFEmbedder`).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import hookimpl
from ..config import Config
from ..types import Analyzer
from ._dispatch import build_analyzer

NAME = "embed"
DEFAULT_MODEL = "efficientnet-lite0"
BUNDLED = {"efficientnet-lite0": "phototag.bundled.efficientnet.EfficientNetEmbedder"}
TRANSFORMERS = "phototag.hf.embed.HFEmbedder"


@hookimpl
def register_analyzers(register: Callable[[Analyzer], None], config: Config) -> None:
    """Register the embedder unless ``plugins.embed.enabled`` is false."""
    if config.plugin_enabled(NAME):
        register(build_analyzer(NAME, config, DEFAULT_MODEL, BUNDLED, TRANSFORMERS))
