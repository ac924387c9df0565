"""Captions from any transformers image-to-text model: BLIP, vit-gpt2, Kosmos-2, PaliGemma, Florence-2, SmolVLM,
LLaVA, ...

The caption goes to ``Analysis.caption``: the XMP writer puts it in dc:description (keeping a caption the user
wrote unless ``metadata.caption: replace``), the JSON sidecar always has it.

What a model is prompted with, when nothing is configured, is decided from its config by
:func:`caption_defaults` (Kosmos-2, PaliGemma and Florence-2 by the table
:data:`~phototag.hf.generation.ARCHITECTURES`; chat models get a plain instruction; BLIP and vit-gpt2 none), and
their output is read without its markup. Phrases the model locates (Kosmos-2's grounded captions, Florence-2's
region tasks) become object regions in ``Analysis.regions`` when ``regions`` is on: the XMP writer writes them as
Iptc4xmpExt:ImageRegion and the JSON sidecar keeps them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import Field

from ..config import Config, PluginSettings
from ..errors import PhototagError
from ..types import Analysis, DecodedImage, Region, Task, fingerprint_of
from .generation import Generated, GenerateOptions, GeneratorAnalyzer, TextGenerator, architecture

DEFAULT_MODEL = "Salesforce/blip-image-captioning-base"
CHAT_PROMPT = "Describe this photo in one sentence."
CHAT_DETAILED_PROMPT = "Describe this photo in detail."
GROUNDING_TASK = "<CAPTION_TO_PHRASE_GROUNDING>"
RegionTask = Literal["<CAPTION_TO_PHRASE_GROUNDING>", "<OD>", "<DENSE_REGION_CAPTION>"]
"""Florence-2's region tasks (:data:`~phototag.hf.generation.FLORENCE_REGION_TASKS`)."""
REGION_MAX_NEW_TOKENS = 256
"""Token budget of a Florence-2 region pass (four location tokens a box); it stops at its end token."""


@dataclass(frozen=True)
class CaptionDefaults:
    """How a model captions when nothing is configured (see :func:`caption_defaults`)."""

    prompt: str
    """The prompt; "" for none (BLIP and vit-gpt2 caption unconditionally)."""
    regions: bool = False
    """Whether grounded phrases become regions unless configured otherwise (Kosmos-2: its captions are
    grounded anyway)."""
    grounds: bool = False
    """Whether the model can locate phrases at all (Kosmos-2, Florence-2)."""
    region_pass: bool = False
    """Whether regions take a second pass with a region task (Florence-2) rather than coming with the caption."""
    detailed: bool = False
    """Whether ``prompt`` asks for a detailed caption (False when the model has no such prompt)."""


def caption_defaults(config: Any, *, detail: bool = False, chat: bool = False) -> CaptionDefaults:
    """The caption defaults for a model's config (``config.model_type``, never its name): Kosmos-2
    ``<grounding>An image of``, PaliGemma ``caption en``, Florence-2 ``<CAPTION>`` (with ``detail``:
    ``<grounding>Describe this image in detail:``, ``describe en``, ``<MORE_DETAILED_CAPTION>``); a chat model
    (``chat``: its chat template is used) an instruction; anything else no prompt. No pipeline or CLI state:
    anything that captions (the caption plugin, an HTTP route) gets the same defaults."""
    arch = architecture(config)
    if arch is not None:
        return CaptionDefaults(
            arch.detailed_caption if detail else arch.caption,
            regions=arch.grounded_captions,
            grounds=arch.grounds,
            region_pass=bool(arch.region_tasks),
            detailed=detail,
        )
    if chat:
        return CaptionDefaults(CHAT_DETAILED_PROMPT if detail else CHAT_PROMPT, detailed=detail)
    return CaptionDefaults("")


class CaptionSettings(PluginSettings):
    """``plugins.caption`` with a transformers model."""

    model: str = DEFAULT_MODEL
    """Hub id or local folder: BLIP captioning, a VisionEncoderDecoder
    (``nlpconnect/vit-gpt2-image-captioning``), Kosmos-2 (``microsoft/kosmos-2-patch14-224``), PaliGemma
    (``google/paligemma-3b-mix-224``), Florence-2 (``florence-community/Florence-2-base``) or a chat model
    (``HuggingFaceTB/SmolVLM-256M-Instruct``)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin; None: the default branch."""
    prompt: str | None = None
    """Text the model starts from. None: the model's own default, chosen from its config (none for BLIP and
    vit-gpt2; ``<grounding>An image of`` for Kosmos-2, ``caption en`` for PaliGemma, ``<CAPTION>`` for
    Florence-2; "Describe this photo in one sentence." for chat models). BLIP continues it as a prefix ("a
    photography of"), chat models get it as the user's message, vit-gpt2 takes none."""
    detail: bool = False
    """A longer, detailed caption with the model's own prompt for one (Kosmos-2 ``<grounding>Describe this
    image in detail:``, PaliGemma ``describe en``, Florence-2 ``<MORE_DETAILED_CAPTION>``, chat models
    "Describe this photo in detail."); give it ``max_new_tokens`` of 100 or more. Not with ``prompt``, nor
    for BLIP or vit-gpt2, which have no such prompt."""
    regions: bool | None = None
    """Phrases the model locates become object regions (Iptc4xmpExt:ImageRegion in XMP, ``regions`` in the
    JSON sidecar), named by the phrase. None: on for Kosmos-2, whose captions are grounded anyway; off for
    others. Florence-2 runs ``region_task`` as a second pass per photo. Models that cannot locate phrases
    refuse true."""
    region_task: RegionTask = "<CAPTION_TO_PHRASE_GROUNDING>"
    """Florence-2's region task when ``regions`` is on: ``<CAPTION_TO_PHRASE_GROUNDING>`` locates the
    caption's phrases, ``<OD>`` detects objects (COCO-style names), ``<DENSE_REGION_CAPTION>`` describes
    each region it finds."""
    max_new_tokens: int = Field(30, ge=1, le=512)
    """Longest caption, in tokens (Kosmos-2's grounding markup counts: about 5 tokens a located phrase)."""
    num_beams: int = Field(1, ge=1, le=16)
    """1: greedy (fastest, the CPU default); 3-5: beam search, usually better captions at a few times the
    cost."""
    repetition_penalty: float = Field(1.0, gt=0.0, le=5.0)
    """Above 1 discourages repeated words (BLIP tends to repeat itself: 1.2-1.5 helps)."""
    chat_template: bool = True
    """Wrap the prompt in the processor's chat template when it has one (chat models need it). Kosmos-2,
    PaliGemma and Florence-2 are prompted with their task prefixes whatever their processor carries."""
    input_size: int | None = Field(None, ge=16, le=4096)
    """Shorter side in pixels the photo is decoded to for this model; None: what its image processor uses
    (384 for BLIP), or 384 when that cannot be read."""


# Settings added after captions were first cached: while they keep their defaults they stay out of the
# fingerprint, so an upgrade does not caption every photo again.
_LATER_SETTINGS = {"detail": False, "regions": None, "region_task": GROUNDING_TASK}


class HFCaptioner(GeneratorAnalyzer[CaptionSettings]):
    """``caption`` analyzer on a transformers model. Construction is cheap; :meth:`load` loads the model."""

    Settings = CaptionSettings
    task: Task = "caption"
    fingerprint_kind = "hf-caption"

    def __init__(self, name: str, settings: CaptionSettings, config: Config) -> None:
        super().__init__(name, settings, config)
        self._prompt = ""
        self._regions = False
        self._region_task: str | None = None

    def fingerprint(self) -> str:
        """The resolved revision and every setting that changes captions (settings added later only once
        they are set)."""
        data = self.settings.model_dump(mode="json", exclude={"enabled", "device"})
        for key, default in _LATER_SETTINGS.items():
            if data.get(key) == default:
                del data[key]
        return fingerprint_of(self.fingerprint_kind, data, self._source.revision_or_unresolved)

    def _accept(self, generator: TextGenerator) -> None:
        s = self.settings
        defaults = caption_defaults(generator.model.config, detail=s.detail, chat=generator.chat)
        self._prompt = self._resolve_prompt(generator, defaults)
        self._regions = defaults.regions if s.regions is None else s.regions
        if self._regions and not defaults.grounds:
            raise PhototagError(
                f"plugins.{self.name}.regions: model {s.model!r} cannot locate phrases; regions need Kosmos-2 "
                "(microsoft/kosmos-2-patch14-224) or Florence-2 (florence-community/Florence-2-base). Use "
                "plugins.detect for object regions, or remove regions."
            )
        self._region_task = s.region_task if self._regions and defaults.region_pass else None

    def _resolve_prompt(self, generator: TextGenerator, defaults: CaptionDefaults) -> str:
        s = self.settings
        if s.prompt is None:
            if s.detail and not defaults.detailed:
                raise PhototagError(
                    f"plugins.{self.name}.detail: model {s.model!r} has no prompt for a detailed caption; "
                    "use Kosmos-2, PaliGemma, Florence-2 or a chat model, or write your own prompt."
                )
            return defaults.prompt
        if s.detail:
            raise PhototagError(
                f"plugins.{self.name}: detail and prompt do not go together (detail picks the model's own "
                "prompt for a detailed caption); remove one."
            )
        if s.prompt and not generator.takes_prompt:
            raise PhototagError(
                f"plugins.{self.name}.prompt: model {s.model!r} is a vision encoder-decoder that "
                "takes no prompt; remove the prompt or choose a BLIP or chat model."
            )
        return s.prompt

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        """One caption per image, all images in one batched ``generate`` call (and one more for Florence-2's
        region task when regions are on)."""
        generator = self._loaded_generator()
        options = GenerateOptions(
            max_new_tokens=self.settings.max_new_tokens,
            num_beams=self.settings.num_beams,
            repetition_penalty=self.settings.repetition_penalty,
        )
        pixels = [d.image for d in images]
        # scores only where they are needed: the score of the text a phrase was located in is the region's
        grounded = self._regions and self._region_task is None
        texts = generator.generate(pixels, [self._prompt] * len(images), options, with_scores=grounded)
        regions: list[tuple[Region, ...]] = [_regions(g) for g in texts] if grounded else []
        if self._region_task is not None:
            regions = self._region_pass(generator, pixels, texts, options)
        return [
            Analysis(caption=g.text or None, regions=regions[i] if regions else ())
            for i, g in enumerate(texts)
        ]

    def _region_pass(
        self, generator: TextGenerator, pixels: list[Any], texts: list[Generated], options: GenerateOptions
    ) -> list[tuple[Region, ...]]:
        """Florence-2's region task over the photos: phrase grounding locates each photo's caption (a photo
        without a caption has nothing to locate), the other tasks need no text."""
        task = self._region_task or GROUNDING_TASK
        prompts = [f"{task}{g.text}" if task == GROUNDING_TASK else task for g in texts]
        todo = [i for i, g in enumerate(texts) if g.text or task != GROUNDING_TASK]
        out: list[tuple[Region, ...]] = [() for _ in texts]
        if not todo:
            return out
        budget = replace(options, max_new_tokens=max(options.max_new_tokens, REGION_MAX_NEW_TOKENS))
        located = generator.generate(
            [pixels[i] for i in todo], [prompts[i] for i in todo], budget, with_scores=True
        )
        for i, g in zip(todo, located, strict=True):
            out[i] = _regions(g)
        return out


def _regions(generated: Generated) -> tuple[Region, ...]:
    """The phrases a generation located, as object regions (x, y the top-left corner, 0..1). A located
    phrase carries no confidence of its own: its score is the generation's (see :class:`Generated`)."""
    score = generated.score
    score = 1.0 if score is None or not math.isfinite(score) else min(max(score, 0.0), 1.0)
    return tuple(
        Region(
            p.text,
            round(score, 4),
            round(p.box[0], 4),
            round(p.box[1], 4),
            round(p.box[2] - p.box[0], 4),
            round(p.box[3] - p.box[1], 4),
            kind="object",
        )
        for p in generated.phrases
    )
