"""Text generation from images, shared by the caption and VQA backends.

One :class:`TextGenerator` wraps a loaded image-to-text model and its processor, and turns (image, prompt)
pairs into text with real batched ``model.generate`` calls (transformers 5 has no VQA pipeline, and its
image-to-text pipeline wants a text input). Three families, told apart by the model's config:

- ``blip_vqa``: BLIP question answering (``BlipForQuestionAnswering``): the question is encoded with the
  image, the answer decoded from scratch.
- ``vision_encoder_decoder``: an image encoder plus a text decoder (ViT + GPT-2 "vit-gpt2"): no prompt.
- ``image_text_to_text``: everything else that ``AutoModelForImageTextToText`` loads: BLIP captioning (the
  prompt is a prefix the caption continues), Florence-2 (the prompt is a task token), and chat models such as
  SmolVLM/Idefics3 or LLaVA (the prompt is wrapped in the processor's chat template).

:class:`GeneratorAnalyzer` is what the caption and VQA analyzers share: loading, checking and releasing their
generator. :func:`to_device` (also used by detect) moves a processor's output to the model's device and dtype.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from ..config import Config
from ..errors import ModelUnavailableError, PhototagError
from ..types import Device, Needs
from .base import HFAnalyzer, ModelSettings, cpu_float32
from .loading import ModelSource, load_config, load_model, load_processor, release_model

if TYPE_CHECKING:
    import torch
    from PIL import Image

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


@dataclass(frozen=True)
class Generated:
    """One generated text; ``score`` (when asked for) is the geometric mean of its tokens' probabilities."""

    text: str
    score: float | None = None


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
        self.chat = bool(
            use_chat_template and processor is not None and getattr(processor, "chat_template", None)
        )

    @classmethod
    def load(cls, source: ModelSource, device: Device, *, use_chat_template: bool = True) -> TextGenerator:
        """Load ``source`` (pooled: caption and VQA on one chat model share it) and its processor."""
        from transformers import (
            AutoImageProcessor,
            AutoModelForImageTextToText,
            AutoModelForVisualQuestionAnswering,
            AutoTokenizer,
        )

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
        with torch.inference_mode():
            out = model.generate(**inputs, **kwargs)
        sequences = out.sequences if with_scores else out
        new = self._strip_prompt(sequences, inputs.get("input_ids")) if self.echoes_prompt else sequences
        texts = [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        if not with_scores:
            return [Generated(t) for t in texts]
        scores = self._sequence_scores(out, sequences, options.num_beams)
        return [Generated(t, s) for t, s in zip(texts, scores, strict=True)]

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
        if not any(prompts):
            return self.processor(images=images, return_tensors="pt")
        return self.processor(
            images=images,
            text=list(prompts),
            padding=True,
            padding_side=self.padding_side,
            return_tensors="pt",
        )

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
