"""The ``caption`` plugin: a sentence describing the photo (off by default).

Every ``model:`` is a Hugging Face model id or folder, run through transformers
(:class:`phototag.hf.caption.HFCaptioner`): BLIP captioning (the default,
``Salesforce/blip-image-captioning-base``), VisionEncoderDecoder models (vit-gpt2), Kosmos-2, PaliGemma and
Florence-2 (each prompted with its own task prefix, chosen from its config; Kosmos-2's grounded phrases become
object regions), or chat models (SmolVLM) with a prompt. Only architectures transformers implements natively
load: phototag never trusts a model repository's own code (``trust_remote_code``). No pip package carries
captioning weights, so the plugin stays off unless ``plugins.caption.enabled: true``; it then needs the hub, the
HF cache or a local folder.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import hookimpl
from ..config import Config
from ..types import Analyzer
from ._dispatch import build_analyzer

NAME = "caption"
DEFAULT_MODEL = "Salesforce/blip-image-captioning-base"
TRANSFORMERS = "phototag.hf.caption.HFCaptioner"


@hookimpl
def register_analyzers(register: Callable[[Analyzer], None], config: Config) -> None:
    """Register the captioner when ``plugins.caption.enabled`` is true."""
    if config.plugin_enabled(NAME, default=False):
        register(build_analyzer(NAME, config, DEFAULT_MODEL, {}, TRANSFORMERS))
