"""Captions from any transformers image-to-text model: BLIP, vit-gpt2, Florence-2, SmolVLM, LLaVA, ...

The caption goes to ``Analysis.caption``: the XMP writer puts it in dc:description (keeping a caption the user
wrote unless ``metadata.caption: replace``), the JSON sidecar always has it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from ..config import Config, PluginSettings
from ..errors import PhototagError
from ..types import Analysis, DecodedImage, Task
from .generation import GenerateOptions, GeneratorAnalyzer, TextGenerator

DEFAULT_MODEL = "Salesforce/blip-image-captioning-base"
CHAT_PROMPT = "Describe this photo in one sentence."
# Florence-2 is steered by task tokens rather than instructions.
FLORENCE_PROMPT = "<CAPTION>"


class CaptionSettings(PluginSettings):
    """``plugins.caption`` with a transformers model."""

    model: str = DEFAULT_MODEL
    """Hub id or local folder: BLIP captioning, a VisionEncoderDecoder
    (``nlpconnect/vit-gpt2-image-captioning``) or an image-text-to-text model
    (``HuggingFaceTB/SmolVLM-256M-Instruct``, ``microsoft/Florence-2-base``)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin; None: the default branch."""
    prompt: str | None = None
    """Text the model starts from. None: the model's own default (none for BLIP and vit-gpt2, ``<CAPTION>``
    for Florence-2, "Describe this photo in one sentence." for chat models). BLIP continues it as a prefix
    ("a photography of"), chat models get it as the user's message, vit-gpt2 takes none."""
    max_new_tokens: int = Field(30, ge=1, le=512)
    """Longest caption, in tokens."""
    num_beams: int = Field(1, ge=1, le=16)
    """1: greedy (fastest, the CPU default); 3-5: beam search, usually better captions at a few times the
    cost."""
    repetition_penalty: float = Field(1.0, gt=0.0, le=5.0)
    """Above 1 discourages repeated words (BLIP tends to repeat itself: 1.2-1.5 helps)."""
    chat_template: bool = True
    """Wrap the prompt in the processor's chat template when it has one (chat models need it)."""
    input_size: int | None = Field(None, ge=16, le=4096)
    """Shorter side in pixels the photo is decoded to for this model; None: what its image processor uses
    (384 for BLIP), or 384 when that cannot be read."""


class HFCaptioner(GeneratorAnalyzer[CaptionSettings]):
    """``caption`` analyzer on a transformers model. Construction is cheap; :meth:`load` loads the model."""

    Settings = CaptionSettings
    task: Task = "caption"
    fingerprint_kind = "hf-caption"

    def __init__(self, name: str, settings: CaptionSettings, config: Config) -> None:
        super().__init__(name, settings, config)
        self._prompt = ""

    def _accept(self, generator: TextGenerator) -> None:
        self._prompt = self._resolve_prompt(generator)

    def _resolve_prompt(self, generator: TextGenerator) -> str:
        prompt = self.settings.prompt
        if prompt is None:
            if generator.chat:
                return CHAT_PROMPT
            if generator.model.config.model_type == "florence2":
                return FLORENCE_PROMPT
            return ""
        if prompt and not generator.takes_prompt:
            raise PhototagError(
                f"plugins.{self.name}.prompt: model {self.settings.model!r} is a vision encoder-decoder that "
                "takes no prompt; remove the prompt or choose a BLIP or chat model."
            )
        return prompt

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        """One caption per image, all images in one batched ``generate`` call."""
        generator = self._loaded_generator()
        options = GenerateOptions(
            max_new_tokens=self.settings.max_new_tokens,
            num_beams=self.settings.num_beams,
            repetition_penalty=self.settings.repetition_penalty,
        )
        texts = generator.generate([d.image for d in images], [self._prompt] * len(images), options)
        return [Analysis(caption=g.text or None) for g in texts]
