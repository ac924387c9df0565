"""Text generation from images, shared by the caption and VQA backends.

One :class:`TextGenerator` wraps a loaded image-to-text model and its processor, and turns (image, prompt)
pairs into text with real batched ``model.generate`` calls (transformers 5 has no VQA pipeline, and its
image-to-text pipeline wants a text input). Three families, told apart by the model's config:

- ``blip_vqa``: BLIP question answering (``BlipForQuestionAnswering``): the question is encoded with the
  image, the answer decoded from scratch.
- ``vision_encoder_decoder``: an image encoder plus a text decoder (ViT + GPT-2 "vit-gpt2"): no prompt.
- ``image_text_to_text``: everything else that ``AutoModelForImageTextToText`` loads: BLIP captioning (the
  prompt is a prefix the caption continues), Kosmos-2, PaliGemma and Florence-2 (prompted with task prefixes,
  see :data:`ARCHITECTURES`), and chat models such as SmolVLM/Idefics3 or LLaVA (the prompt is wrapped in the
  processor's chat template).

:data:`ARCHITECTURES` is the one table of what a model family needs out of the box, looked up by the config's
``model_type`` (:func:`architecture`): its default prompts, how its output is read (grounding markup out,
grounded phrases with boxes as :class:`Phrase`), and that its task prefixes win over a chat template.

:class:`GeneratorAnalyzer` is what the caption and VQA analyzers share: loading, checking and releasing their
generator. :func:`to_device` (also used by detect) moves a processor's output to the model's device and dtype.

Why one module of ~640 lines: the per-architecture table (Kosmos-2, PaliGemma, Florence-2, chat models) and
the generation code that applies it are one contract for captioning and VQA; the table's entries need the
code's post-processing hooks next to them.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from ..config import Config
from ..errors import ModelUnavailableError, PhototagError
from ..types import Device, Needs
from .base import HFAnalyzer, ModelSettings, cpu_float32
from .loading import ModelSource, load_config, load_model, load_processor, release_model

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

GenKind = Literal["blip_vqa", "vision_encoder_decoder", "image_text_to_text"]


# -- helpers -------------------------------------------------------------------------------------------------


def to_device(inputs: Mapping[str, Any], device: str, dtype: torch.dtype) -> dict[str, Any]:
    """Move a processor's output to ``device``; floating tensors (pixels) also to the model's ``dtype``."""
    import torch

    out: dict[str, Any] = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        out[key] = value
    return out


# -- what each model family needs ---------------------------------------------------------------------------

PostProcess = Literal["kosmos2", "florence2", "markup"]

FLORENCE_REGION_TASKS = ("<CAPTION_TO_PHRASE_GROUNDING>", "<OD>", "<DENSE_REGION_CAPTION>")
"""Florence-2 tasks whose answers are phrases with boxes. Phrase grounding takes the caption after the task."""


@dataclass(frozen=True)
class Architecture:
    """How one family of image-to-text models (one ``config.model_type``) is prompted and read out of the box.

    Decided from the model's config, never its name, so a fine-tuned or renamed copy behaves like the original.
    These models are prompted with task prefixes, so their defaults win over a chat template their processor may
    carry; a configured prompt still overrides them.
    """

    name: str
    """The family, for messages."""
    caption: str
    """Default caption prompt."""
    detailed_caption: str
    """Default caption prompt when a detailed caption is asked for."""
    question: str = "{question}"
    """How a VQA question is put to the model (``{question}`` is replaced)."""
    post_process: PostProcess = "markup"
    """How generated text is read. ``kosmos2`` and ``florence2``: the processor's ``post_process_generation``
    (markup out, grounded phrases with boxes); ``markup``: location and segmentation tokens dropped."""
    grounded_captions: bool = False
    """Its default captions carry grounded phrases (Kosmos-2's ``<grounding>``): regions cost nothing extra, so
    they are on unless turned off."""
    region_tasks: tuple[str, ...] = ()
    """Prompts that answer with phrases and boxes, run as a second pass after the caption (Florence-2)."""
    image_placeholder: bool = False
    """Prompts start with the processor's image token (PaliGemma guesses it otherwise, with a warning a call)."""
    own_generation_config: bool = False
    """``generate`` hands over to an inner text model that would ignore the folder's generation_config.json
    (Kosmos-2): pass that config explicitly."""

    @property
    def grounds(self) -> bool:
        """It can return grounded phrases (as regions)."""
        return self.grounded_captions or bool(self.region_tasks)


ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType(
    {
        "kosmos-2": Architecture(
            "Kosmos-2",
            caption="<grounding>An image of",
            detailed_caption="<grounding>Describe this image in detail:",
            question="<grounding>Question: {question} Answer:",
            post_process="kosmos2",
            grounded_captions=True,
            own_generation_config=True,
        ),
        "paligemma": Architecture(
            "PaliGemma",
            caption="caption en",
            detailed_caption="describe en",
            question="answer en {question}",
            image_placeholder=True,
        ),
        "florence2": Architecture(
            "Florence-2",
            caption="<CAPTION>",
            detailed_caption="<MORE_DETAILED_CAPTION>",
            post_process="florence2",
            region_tasks=FLORENCE_REGION_TASKS,
        ),
    }
)
"""Per-``model_type`` behaviour: Kosmos-2 (``microsoft/kosmos-2-patch14-224``), PaliGemma
(``google/paligemma-3b-mix-224``) and Florence-2 as transformers implements it natively
(``florence-community/Florence-2-base``)."""


def architecture(config: Any) -> Architecture | None:
    """The :data:`ARCHITECTURES` entry for a model's config, or None for a model without task prefixes (BLIP,
    vit-gpt2, chat models)."""
    return ARCHITECTURES.get(str(getattr(config, "model_type", "")))


@dataclass(frozen=True)
class Phrase:
    """A phrase the model located: ``box`` is (x0, y0, x1, y1), normalised to 0..1 (as read from the output:
    relative to what the model saw; :meth:`TextGenerator.generate` maps them to the whole image)."""

    text: str
    box: tuple[float, float, float, float]


# a markup token: <loc_12>, <loc0012>, <seg003>, <patch_index_0044>, </phrase>, </delimiter_of_multi_objects/>
_MARKUP = re.compile(r"</?[A-Za-z_][\w/]{0,40}>")
_SPACES = re.compile(r"\s+")
# Florence-2 boxes are quantised to 1000 bins a side; dequantised against 10000 px, a bin's centre is exact
_FLORENCE_SIZE = 10_000


def strip_markup(text: str) -> str:
    """``text`` without markup tokens (location, segmentation, grounding, special), spaces collapsed."""
    return _SPACES.sub(" ", _MARKUP.sub("", text)).strip()


def _box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float] | None:
    """A normalised box clamped to the frame, or None when nothing of it is left."""
    x0, x1 = (min(max(float(v), 0.0), 1.0) for v in (x0, x1))
    y0, y1 = (min(max(float(v), 0.0), 1.0) for v in (y0, y1))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _size_value(size: Any, key: str) -> float | None:
    value = size.get(key) if isinstance(size, Mapping) else getattr(size, key, None)
    return float(value) if isinstance(value, int | float) and value > 0 else None


def visible_window(image_processor: Any, width: int, height: int) -> tuple[float, float, float, float]:
    """The part of a ``width`` x ``height`` image the model sees, as (x, y, w, h) normalised to the image: all of
    it, unless the image processor resizes the shorter side and then crops the centre (then boxes the model
    gives relative to what it saw are mapped back through this window)."""
    if not getattr(image_processor, "do_center_crop", False) or width <= 0 or height <= 0:
        return (0.0, 0.0, 1.0, 1.0)
    size, crop = getattr(image_processor, "size", None), getattr(image_processor, "crop_size", None)
    shortest = _size_value(size, "shortest_edge")
    seen_w, seen_h = _size_value(size, "width"), _size_value(size, "height")
    if shortest is not None:
        scale = shortest / min(width, height)
        seen_w, seen_h = width * scale, height * scale
    crop_w, crop_h = _size_value(crop, "width"), _size_value(crop, "height")
    if seen_w is None or seen_h is None or crop_w is None or crop_h is None:
        return (0.0, 0.0, 1.0, 1.0)
    fw, fh = min(crop_w / seen_w, 1.0), min(crop_h / seen_h, 1.0)
    return ((1.0 - fw) / 2, (1.0 - fh) / 2, fw, fh)


def _in_window(phrase: Phrase, window: tuple[float, float, float, float]) -> Phrase:
    x, y, w, h = window
    x0, y0, x1, y1 = phrase.box
    return Phrase(phrase.text, (x + x0 * w, y + y0 * h, x + x1 * w, y + y1 * h))


def kosmos2_read(processor: Any, text: str) -> tuple[str, tuple[Phrase, ...]]:
    """Kosmos-2's output (decoded without special tokens, its grounding markup kept) -> the text without markup
    and its grounded phrases (``processor.post_process_generation``; phrases without a box are dropped)."""
    clean, entities = processor.post_process_generation(text)
    phrases: list[Phrase] = []
    for name, _span, boxes in entities:
        label = str(name).strip()
        if not label or label.startswith("<"):  # a box without a phrase: Kosmos-2 names it by its patches
            continue
        for coords in boxes:
            box = _box(*coords)
            if box is not None and Phrase(label, box) not in phrases:
                phrases.append(Phrase(label, box))
    return strip_markup(str(clean)), tuple(phrases)


def florence2_task(prompt: str, processor: Any) -> str | None:
    """The Florence-2 task token a prompt starts with (``<OD>``, ``<CAPTION_TO_PHRASE_GROUNDING>a cat``), if
    the processor knows it."""
    match = re.match(r"\s*(<[A-Z_]+>)", prompt)
    tasks = getattr(processor, "tasks_answer_post_processing_type", {})
    return match.group(1) if match and match.group(1) in tasks else None


def florence2_read(processor: Any, text: str, task: str | None) -> tuple[str, tuple[Phrase, ...]]:
    """Florence-2's output (decoded with its special tokens, padding removed) for ``task`` -> the text without
    markup and, for region tasks, the phrases with their boxes (``processor.post_process_generation``)."""
    if task is None:
        return strip_markup(text), ()
    parsed = processor.post_process_generation(
        text=text, task=task, image_size=(_FLORENCE_SIZE, _FLORENCE_SIZE)
    )[task]
    if isinstance(parsed, str):
        return strip_markup(parsed), ()
    labels = parsed.get("labels", parsed.get("bboxes_labels", []))
    phrases: list[Phrase] = []
    for label, coords in zip(labels, parsed.get("bboxes", []), strict=False):
        box = _box(*(float(v) / _FLORENCE_SIZE for v in coords))
        name = strip_markup(str(label))
        if name and box is not None and Phrase(name, box) not in phrases:
            phrases.append(Phrase(name, box))
    return "; ".join(dict.fromkeys(p.text for p in phrases)), tuple(phrases)


# -- generation ----------------------------------------------------------------------------------------------


def generation_kind(config: Any) -> GenKind:
    """Which family a model's config belongs to (see the module docstring)."""
    archs = list(getattr(config, "architectures", None) or [])
    if config.model_type == "blip" and any("QuestionAnswering" in a for a in archs):
        return "blip_vqa"
    if config.model_type == "vision-encoder-decoder":
        return "vision_encoder_decoder"
    return "image_text_to_text"


def _check_generative(source: ModelSource, config: Any) -> None:
    """A clear error for a model that cannot produce text from an image (a detector, a classifier)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
        MODEL_FOR_VISUAL_QUESTION_ANSWERING_MAPPING_NAMES,
    )

    model_type = str(getattr(config, "model_type", ""))
    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES or model_type in (
        MODEL_FOR_VISUAL_QUESTION_ANSWERING_MAPPING_NAMES
    ):
        return
    archs = ", ".join(str(a) for a in getattr(config, "architectures", None) or []) or model_type
    raise ModelUnavailableError(
        f"model {source.id!r} ({archs}) cannot be loaded as an image-to-text model "
        "(AutoModelForImageTextToText): it does not generate text from images. Use BLIP, a "
        "VisionEncoderDecoder (vit-gpt2) or an image-text-to-text model such as SmolVLM or Florence-2."
    )


NATIVE_COPIES = MappingProxyType({"florence2": "florence-community/Florence-2-base (or -large)"})
"""Natively loading copies of models whose original repositories ship custom code (``microsoft/Florence-2-*``)."""


def custom_code_hint(source: ModelSource) -> str:
    """Why a model whose config names its own code (``auto_map``) may not load, or "" for any other model:
    phototag never runs a repository's code (``trust_remote_code`` is never set), so only architectures that
    transformers implements natively load."""
    try:
        data = json.loads((source.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if not isinstance(data, dict) or not data.get("auto_map"):
        return ""
    native = NATIVE_COPIES.get(str(data.get("model_type", "")), "")
    return (
        "Its config.json names custom code (auto_map), which phototag never runs (trust_remote_code is never "
        "set): use a copy that transformers loads natively" + (f", such as {native}." if native else ".")
    )


@dataclass(frozen=True)
class Generated:
    """One generated text; ``score`` (when asked for) is the geometric mean of its tokens' probabilities;
    ``phrases`` are the phrases the model located (Kosmos-2 grounding, Florence-2 region tasks)."""

    text: str
    score: float | None = None
    phrases: tuple[Phrase, ...] = ()


@dataclass(frozen=True)
class GenerateOptions:
    """Decoding options: greedy when ``num_beams`` is 1, always deterministic (no sampling)."""

    max_new_tokens: int = 30
    num_beams: int = 1
    repetition_penalty: float = 1.0


class TextGenerator:
    """A loaded image-to-text model and its processor. Create with :meth:`load`, free with :meth:`release`."""

    def __init__(
        self,
        source: ModelSource,
        kind: GenKind,
        device: Device,
        auto_class: Any,
        model: Any,
        processor: Any,
        image_processor: Any,
        tokenizer: Any,
        use_chat_template: bool,
    ) -> None:
        self.source = source
        self.kind = kind
        self.device = device
        self.auto_class = auto_class
        self.model = model
        self.processor = processor
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        config = model.config
        self.is_blip = config.model_type == "blip"
        # Decoder-only models continue the prompt, so pad on the left; BLIP drops the prompt's last token
        # ([SEP]), so it must be padded on the right; encoders do not care.
        encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        self.padding_side = "right" if self.is_blip or encoder_decoder else "left"
        # Decoder-only models return prompt + answer; BLIP and encoder-decoders return only their own tokens.
        self.echoes_prompt = not (self.is_blip or encoder_decoder)
        self.architecture = architecture(config)
        # task prefixes win over a chat template (a PaliGemma or Florence-2 folder may ship one)
        self.chat = bool(
            use_chat_template
            and self.architecture is None
            and processor is not None
            and getattr(processor, "chat_template", None)
        )
        self._read_failed = False

    @classmethod
    def load(cls, source: ModelSource, device: Device, *, use_chat_template: bool = True) -> TextGenerator:
        """Load ``source`` (pooled: caption and VQA on one chat model share it) and its processor."""
        from transformers import (
            AutoImageProcessor,
            AutoModelForImageTextToText,
            AutoModelForVisualQuestionAnswering,
            AutoTokenizer,
        )

        try:
            config = load_config(source)
            kind = generation_kind(config)
            _check_generative(source, config)
            auto_class = (
                AutoModelForVisualQuestionAnswering if kind == "blip_vqa" else AutoModelForImageTextToText
            )
            processor: Any = None
            if kind != "vision_encoder_decoder":
                processor = load_processor(source)
            if (
                processor is not None
                and hasattr(processor, "image_processor")
                and hasattr(processor, "tokenizer")
            ):
                image_processor, tokenizer = processor.image_processor, processor.tokenizer
            else:
                # vit-gpt2 style folders have an image processor and a tokenizer but no joint processor
                processor = None
                image_processor = load_processor(source, AutoImageProcessor)
                tokenizer = load_processor(source, AutoTokenizer)
            model = load_model(source, auto_class, device)
        except ModelUnavailableError as e:
            hint = custom_code_hint(source)
            if hint:
                raise ModelUnavailableError(f"{e} {hint}") from e
            raise
        return cls(
            source, kind, device, auto_class, model, processor, image_processor, tokenizer, use_chat_template
        )

    def release(self) -> None:
        """Give the model back to the pool (it stays cached until the pool unloads idle models)."""
        release_model(self.source, self.auto_class, self.device)

    @property
    def takes_prompt(self) -> bool:
        return self.kind != "vision_encoder_decoder"

    def generate(
        self,
        images: Sequence[Image.Image],
        prompts: Sequence[str],
        options: GenerateOptions,
        *,
        with_scores: bool = False,
    ) -> list[Generated]:
        """Text for each (image, prompt) pair, in one ``generate`` call (pad the prompts to one length).

        An empty prompt means none (unconditional captioning). With ``with_scores`` each result carries the
        model's confidence in it: the geometric mean of its tokens' probabilities (the end token included),
        which is also what beam search's length-normalised score gives, so both decodings score alike.
        """
        import torch

        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if not images:
            return []
        if not self.takes_prompt and any(prompts):
            raise PhototagError(
                f"model {self.source.id!r} is a vision encoder-decoder (e.g. vit-gpt2): it takes no prompt "
                "or question. Remove the prompt, or use a BLIP or chat model."
            )
        inputs = self._inputs(images, prompts)
        model = self.model
        dtype = next(model.parameters()).dtype
        inputs = to_device(inputs, self.device.torch_device, dtype)
        kwargs: dict[str, Any] = {
            "max_new_tokens": options.max_new_tokens,
            "num_beams": options.num_beams,
            "do_sample": False,  # some generation_config.json files turn sampling on: results must repeat
            "repetition_penalty": options.repetition_penalty,
        }
        if with_scores:
            kwargs.update(return_dict_in_generate=True, output_logits=True, output_scores=True)
        if self.architecture is not None and self.architecture.own_generation_config:
            config = copy.deepcopy(model.generation_config)
            config.update(**kwargs)
            kwargs = {"generation_config": config}
        with torch.inference_mode():
            out = model.generate(**inputs, **kwargs)
        sequences = out.sequences if with_scores else out
        new = self._strip_prompt(sequences, inputs.get("input_ids")) if self.echoes_prompt else sequences
        read = [self._read(text, prompt) for text, prompt in zip(self._decode(new), prompts, strict=True)]
        if any(phrases for _, phrases in read):  # boxes in the frame of the whole image
            windows = [visible_window(self.image_processor, *im.size) for im in images]
            read = [
                (text, tuple(_in_window(p, window) for p in phrases))
                for (text, phrases), window in zip(read, windows, strict=True)
            ]
        if not with_scores:
            return [Generated(t, None, p) for t, p in read]
        scores = self._sequence_scores(out, sequences, options.num_beams)
        return [Generated(t, s, p) for (t, p), s in zip(read, scores, strict=True)]

    # -- inputs and outputs ----------------------------------------------------------------------------------

    def _inputs(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> Mapping[str, Any]:
        images = [im.convert("RGB") if im.mode != "RGB" else im for im in images]
        if self.processor is None:
            return dict(self.image_processor(images=images, return_tensors="pt"))
        if self.chat:
            texts = [self._chat_text(p) for p in prompts]
            # one image per conversation: nested lists, which every multi-image processor understands
            return self.processor(
                images=[[im] for im in images],
                text=texts,
                padding=True,
                padding_side=self.padding_side,
                return_tensors="pt",
            )
        arch = self.architecture
        if arch is None and not any(prompts):
            return self.processor(images=images, return_tensors="pt")
        # Kosmos-2, PaliGemma and Florence-2 always take text: without it no image tokens reach the model
        texts = list(prompts)
        if arch is not None and arch.image_placeholder:
            texts = [f"{self.processor.image_token}{p}" for p in texts]
        inputs = dict(
            self.processor(
                images=images,
                text=texts,
                padding=True,
                padding_side=self.padding_side,
                return_tensors="pt",
            )
        )
        inputs.pop("labels", None)  # PaliGemma's processor makes training labels; generate must not see them
        return inputs

    def _decode(self, sequences: torch.Tensor) -> list[str]:
        """The generated tokens as text. Florence-2 keeps its special tokens (its location tokens are among
        them) for :func:`florence2_read`, padding dropped; everyone else drops them (Kosmos-2's grounding tags
        and PaliGemma's location tokens are ordinary added tokens: they stay for reading)."""
        arch = self.architecture
        if arch is None or arch.post_process != "florence2":
            return [t.strip() for t in self.tokenizer.batch_decode(sequences, skip_special_tokens=True)]
        pad = self.tokenizer.pad_token
        texts = self.tokenizer.batch_decode(sequences, skip_special_tokens=False)
        return [t.replace(pad, "") if pad else t for t in texts]

    def _read(self, text: str, prompt: str) -> tuple[str, tuple[Phrase, ...]]:
        """A decoded output read the way its family writes it: the text without markup, and grounded
        phrases. A folder whose processor cannot read its own output (an old conversion) gets the text with
        the markup stripped, and one warning."""
        arch = self.architecture
        if arch is None:
            return text, ()
        try:
            if arch.post_process == "kosmos2":
                return kosmos2_read(self.processor, text)
            if arch.post_process == "florence2":
                return florence2_read(self.processor, text, florence2_task(prompt, self.processor))
        except (ValueError, KeyError, TypeError, IndexError) as e:
            if not self._read_failed:
                log.warning(
                    "model %s: its processor could not read its output (%s); using the text without markup",
                    self.source.id,
                    e,
                )
                self._read_failed = True
        return strip_markup(text), ()

    def _chat_text(self, prompt: str) -> str:
        content: list[dict[str, str]] = [{"type": "image"}]
        if prompt:
            content.append({"type": "text", "text": prompt})
        messages = [{"role": "user", "content": content}]
        return str(self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    @staticmethod
    def _strip_prompt(sequences: torch.Tensor, input_ids: torch.Tensor | None) -> torch.Tensor:
        """Drop the prompt that a decoder-only model's output starts with (checked, not assumed).

        Never called for BLIP: its captioning continues the prompt, so the caption keeps the prompt prefix
        ("a photography of a cat"), as BLIP intends.
        """
        if input_ids is None or input_ids.ndim != 2 or sequences.shape[1] < input_ids.shape[1]:
            return sequences
        n = input_ids.shape[1]
        if sequences.shape[0] == input_ids.shape[0] and bool((sequences[:, :n] == input_ids).all()):
            return sequences[:, n:]
        return sequences

    def _eos_ids(self) -> set[int]:
        if self.is_blip:  # BLIP's generate stops on [SEP], whatever generation_config says
            return {int(self.model.config.text_config.sep_token_id)}
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            return set()
        return {int(e) for e in eos} if isinstance(eos, list | tuple) else {int(eos)}

    def _sequence_scores(self, out: Any, sequences: torch.Tensor, num_beams: int) -> list[float]:
        import torch

        if num_beams > 1 and getattr(out, "sequences_scores", None) is not None:
            return [math.exp(float(s)) for s in out.sequences_scores]
        logits = getattr(out, "logits", None) or getattr(out, "scores", None)
        if not logits:
            return [math.nan] * sequences.shape[0]
        steps = len(logits)
        generated = sequences[:, -steps:]
        logprobs = torch.stack([torch.log_softmax(step.float(), dim=-1) for step in logits], dim=1)
        token_lp = logprobs.gather(2, generated.unsqueeze(-1)).squeeze(-1)
        # a step counts while no end token came before it (after the end, generate only pads)
        eos = self._eos_ids()
        ended = torch.zeros_like(generated, dtype=torch.bool)
        if eos:
            is_eos = torch.isin(generated, torch.tensor(sorted(eos), device=generated.device))
            ended[:, 1:] = torch.cumsum(is_eos.int(), dim=1)[:, :-1] > 0
        valid = (~ended).float()
        mean = (token_lp * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)
        return [math.exp(float(m)) for m in mean]


# -- the analyzers on a generator ----------------------------------------------------------------------------


class GeneratorSettings(ModelSettings, Protocol):
    """The settings :class:`GeneratorAnalyzer` reads besides the model."""

    @property
    def chat_template(self) -> bool: ...


GeneratorSettingsT = TypeVar("GeneratorSettingsT", bound=GeneratorSettings)


class GeneratorAnalyzer(HFAnalyzer[GeneratorSettingsT]):
    """An analyzer on a :class:`TextGenerator` (caption, VQA): :meth:`load` loads it (float32 on the CPU) and
    hands it to :meth:`_accept`, which raises when the model cannot do the task; :meth:`unload` releases it."""

    needs = Needs(min_ram_mb=2048, min_vram_mb=1024)
    default_input_size = 384  # BLIP's

    def __init__(self, name: str, settings: GeneratorSettingsT, config: Config) -> None:
        super().__init__(name, settings, config)
        self._generator: TextGenerator | None = None

    def load(self, device: Device) -> None:
        """Find the model (raises ModelUnavailableError naming it), load it on ``device`` (float32 on CPU)."""
        if self._generator is not None:
            return
        generator = TextGenerator.load(
            self._source.get(), cpu_float32(device), use_chat_template=self.settings.chat_template
        )
        try:
            self._accept(generator)
        except Exception:
            generator.release()
            raise
        self._generator = generator

    def _accept(self, generator: TextGenerator) -> None:
        """Check the freshly loaded ``generator`` and prepare what ``analyze`` needs; raise to refuse it."""

    def unload(self) -> None:
        if self._generator is not None:
            self._generator.release()
            self._generator = None

    def _loaded_generator(self) -> TextGenerator:
        return self._require(self._generator)
