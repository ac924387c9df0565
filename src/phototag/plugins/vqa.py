"""The ``vqa`` plugin: configured questions asked of every photo, answers mapped to keywords or fields (off by
default).

Every ``model:`` is a Hugging Face model id or folder, run through transformers
(:class:`phototag.hf.vqa.HFVQA`): BLIP-VQA (the default, ``Salesforce/blip-vqa-base``) or a chat-style
image-text-to-text model (SmolVLM). No pip package carries VQA weights, so the plugin stays off unless
``plugins.vqa.enabled: true``; it then needs the hub, the HF cache or a local folder.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import hookimpl
from ..config import Config
from ..types import Analyzer
from ._dispatch import build_analyzer

NAME = "vqa"
DEFAULT_MODEL = "Salesforce/blip-vqa-base"
TRANSFORMERS = "phototag.hf.vqa.HFVQA"


@hookimpl
def register_analyzers(register: Callable[[Analyzer], None], config: Config) -> None:
    """Register the question answerer when ``plugins.vqa.enabled`` is true."""
    if config.plugin_enabled(NAME, default=False):
        register(build_analyzer(NAME, config, DEFAULT_MODEL, {}, TRANSFORMERS))
