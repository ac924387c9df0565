"""Visual question answering: a configured list of questions, each answer mapped to a keyword or a field.

Works with BLIP-VQA (``Salesforce/blip-vqa-base``), PaliGemma (``google/paligemma-3b-mix-224``: questions are
put as ``answer en {question}``), Kosmos-2, and with chat-style image-text-to-text models (SmolVLM, LLaVA, ...;
the question is wrapped in the processor's chat template). For each photo and question:

- ``keyword``: a :class:`~phototag.types.Tag` when the answer matches one of ``answers`` ("Is there a person
  in this photo?" answered "yes" -> ``People``). The tag's score is the model's confidence in its answer.
- ``field``: the name the answer is stored under in the JSON sidecar's ``answers`` (``Answer.name``).
- ``xmp``: an XMP tag (``XMP-photoshop:Headline``; ``Answer.xmp``) the XMP writer writes the answer to,
  under phototag's ownership rules (see :mod:`phototag.xmpplan`; which tags may take an answer:
  :func:`phototag.xmpfields.xmp_field_problem`).

Every question asked gives one :class:`~phototag.types.Answer` in ``Analysis.answers``, in the configured
order, with the model's confidence as its score (the XMP writer records them all in ``XMP-phototag:Answers``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..config import Config, PluginSettings, Section
from ..errors import PhototagError
from ..types import Analysis, Answer, DecodedImage, Tag, Task
from ..xmpfields import xmp_field_problem
from .generation import Generated, GenerateOptions, GeneratorAnalyzer, TextGenerator, architecture

DEFAULT_MODEL = "Salesforce/blip-vqa-base"
DEFAULT_PROMPT = "{question}"
_WORD = re.compile(r"[\w']+")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def answer_words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped: ``"Yes, there is."`` -> ``["yes", "there", "is"]``."""
    return _WORD.findall(text.lower())


def answer_matches(answer: str, accepted: Sequence[str]) -> bool:
    """True when ``answer`` is, or starts with the words of, one of ``accepted`` (case and punctuation aside).

    Chat models answer in sentences, so "Yes, there is a person." matches "yes"; "yesterday" does not.
    """
    words = answer_words(answer)
    for candidate in accepted:
        want = answer_words(candidate)
        if want and words[: len(want)] == want:
            return True
    return False


class Question(Section):
    """One question and what its answer becomes. At least one of ``keyword``, ``field`` or ``xmp``."""

    question: str = Field(min_length=1)
    """The question, in plain words ("Is there a person in this photo?")."""
    keyword: str | None = None
    """Keyword added when the answer matches ``answers``."""
    parents: tuple[str, ...] = ()
    """Hierarchy above the keyword (below the root): ``["Subjects"]`` writes ``AI|Subjects|People``."""
    answers: tuple[str, ...] = ("yes",)
    """Answers that add the keyword; an answer matches when it starts with one ("Yes, ..." matches yes)."""
    field: str | None = None
    """Name under which the answer text is stored in the JSON sidecar's ``answers``."""
    xmp: str | None = None
    """An XMP tag, ``XMP-<group>:<Name>`` (``XMP-photoshop:Headline``, ``XMP-dc:Title``,
    ``XMP-iptcExt:PersonInImage``), that the answer is written to. Like the caption (``metadata.caption``):
    with ``keep`` the answer goes there only when the field is empty or still holds phototag's last answer (a
    value you wrote stays); ``replace`` overwrites. A list tag (``PersonInImage``) gets the answer added next
    to your entries, like a keyword. ``untag`` removes exactly what phototag wrote. Only text fields of XMP;
    other groups (IPTC, EXIF) and the fields phototag manages (keywords, hierarchy, caption, regions,
    ``XMP-phototag``) are refused."""

    @field_validator("field")
    @classmethod
    def _field_name(cls, v: str | None) -> str | None:
        if v is not None and not _FIELD.match(v):
            raise ValueError("must be a simple name (letters, digits, _ . -), e.g. scene")
        return v

    @field_validator("xmp")
    @classmethod
    def _xmp_tag(cls, v: str | None) -> str | None:
        problem = xmp_field_problem(v) if v is not None else None
        if problem is not None:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _has_output(self) -> Question:
        if not (self.keyword or self.field or self.xmp):
            raise ValueError("a question needs a keyword (with answers), a field or an xmp tag to write to")
        if self.keyword and not any(answer_words(a) for a in self.answers):
            raise ValueError("answers must hold at least one word when a keyword is set (e.g. [yes])")
        return self


DEFAULT_QUESTIONS: tuple[Question, ...] = (
    Question(question="Is there a person in this photo?", keyword="People"),
    Question(question="Was this photo taken at night?", keyword="Night"),
)


class VQASettings(PluginSettings):
    """``plugins.vqa`` with a transformers model."""

    model: str = DEFAULT_MODEL
    """Hub id or local folder: BLIP-VQA, or a chat-style image-text-to-text model
    (``HuggingFaceTB/SmolVLM-256M-Instruct``)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin; None: the default branch."""
    questions: tuple[Question, ...] = DEFAULT_QUESTIONS
    """The questions asked of every photo; each costs one generated answer per photo."""
    prompt: str = DEFAULT_PROMPT
    """How a question is put to the model; ``{question}`` is replaced. The default, ``{question}``, is the
    question as asked, or the model's own prefix where it has one, chosen from its config: PaliGemma
    ``answer en {question}``, Kosmos-2 ``<grounding>Question: {question} Answer:``. Chat models answer more
    tersely with e.g. "{question} Answer in a few words."."""
    max_new_tokens: int = Field(10, ge=1, le=256)
    """Longest answer, in tokens."""
    num_beams: int = Field(1, ge=1, le=16)
    """1: greedy (the CPU default); more: beam search."""
    chat_template: bool = True
    """Wrap the question in the processor's chat template when it has one (chat models need it)."""
    input_size: int | None = Field(None, ge=16, le=4096)
    """Shorter side in pixels the photo is decoded to for this model; None: what its image processor uses
    (384 for BLIP-VQA), or 384 when that cannot be read."""

    @field_validator("prompt")
    @classmethod
    def _has_question(cls, v: str) -> str:
        if "{question}" not in v:
            raise ValueError("must contain {question}, where the question goes")
        try:
            v.format(question="?")
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                "may contain only the {question} placeholder (write {{ and }} for braces)"
            ) from None
        return v


class HFVQA(GeneratorAnalyzer[VQASettings]):
    """``vqa`` analyzer on a transformers model. Construction is cheap; :meth:`load` loads the model."""

    Settings = VQASettings
    task: Task = "vqa"
    fingerprint_kind = "hf-vqa"

    def __init__(self, name: str, settings: VQASettings, config: Config) -> None:
        super().__init__(name, settings, config)
        self._template = settings.prompt

    def _accept(self, generator: TextGenerator) -> None:
        problem = _cannot_answer(generator)
        if problem:
            raise PhototagError(f"plugins.{self.name}.model: {self.settings.model!r} {problem}")
        self._template = question_template(generator.model.config, self.settings.prompt)

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        """Ask every question about every image, each question in batched ``generate`` calls."""
        questions = self.settings.questions
        if not images or not questions:
            return [Analysis() for _ in images]
        answers = self.ask(images, [q.question for q in questions])
        return [self._analysis(per_image) for per_image in answers]

    def ask(self, images: Sequence[DecodedImage], questions: Sequence[str]) -> list[list[Generated]]:
        """Every question about every image (after :meth:`load`): per image, one answer per question, in order,
        with the model's confidence. Also used for questions a user asks on the spot (:mod:`phototag.adhoc`)."""
        generator = self._loaded_generator()
        options = GenerateOptions(
            max_new_tokens=self.settings.max_new_tokens, num_beams=self.settings.num_beams
        )
        # One question per generate call, over all the images: BLIP-VQA's generate ignores the question's
        # padding mask, so mixing questions of different lengths in one call would make an answer depend on
        # which other questions shared the batch. Chat models still pad (images can take different numbers of
        # tokens), on the left.
        pixels = [d.image for d in images]
        chunk = max(self.config.batch_size, 1)
        answers: list[list[Generated]] = [[] for _ in images]
        for question in questions:
            prompt = self._template.format(question=question)
            for start in range(0, len(pixels), chunk):
                part = pixels[start : start + chunk]
                generated = generator.generate(part, [prompt] * len(part), options, with_scores=True)
                for offset, g in enumerate(generated):
                    answers[start + offset].append(g)
        return answers

    def _analysis(self, answers: Sequence[Generated]) -> Analysis:
        tags: list[Tag] = []
        out: list[Answer] = []
        for question, generated in zip(self.settings.questions, answers, strict=True):
            score = (
                generated.score if generated.score is not None and math.isfinite(generated.score) else None
            )
            out.append(
                Answer(
                    question.question, generated.text, _round(score), name=question.field, xmp=question.xmp
                )
            )
            if question.keyword and answer_matches(generated.text, question.answers):
                tags.append(
                    Tag(
                        question.keyword,
                        1.0 if score is None else score,
                        (*question.parents, question.keyword),
                    )
                )
        return Analysis(tags=tuple(tags), answers=tuple(out))

    def __repr__(self) -> str:
        n = len(self.settings.questions)
        return f"HFVQA(name={self.name!r}, model={self.settings.model!r}, questions={n})"


def question_template(config: Any, prompt: str = DEFAULT_PROMPT) -> str:
    """How questions are put to a model (``{question}`` is replaced): ``prompt`` when one is configured, else
    the model's own prefix chosen from its config (:data:`~phototag.hf.generation.ARCHITECTURES`: PaliGemma
    ``answer en {question}``), else the question as asked."""
    arch = architecture(config)
    if prompt == DEFAULT_PROMPT and arch is not None:
        return arch.question
    return prompt


def _cannot_answer(generator: TextGenerator) -> str:
    """Why this model cannot answer questions, or "" when it can."""
    if not generator.takes_prompt:
        return "is a vision encoder-decoder (e.g. vit-gpt2): it captions but cannot take a question."
    archs = list(getattr(generator.model.config, "architectures", None) or [])
    if generator.is_blip and generator.kind != "blip_vqa":
        return (
            f"is a BLIP captioning model ({', '.join(archs) or 'no VQA head'}): use Salesforce/blip-vqa-base "
            "or a chat model for questions."
        )
    return ""


def _round(score: float | None) -> float | None:
    return None if score is None else round(score, 4)
