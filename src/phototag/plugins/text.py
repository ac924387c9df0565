"""The ``text`` plugin: text in photos (OCR), off by default (``plugins.text.enabled: true`` turns it on).

Task ``ocr``, model PP-OCRv6 small on ONNX Runtime (:mod:`phototag.ocr`; the ``ocr`` extra: rapidocr 3.10, which
ships the model files: nothing is downloaded). About 1-2 s per photo with text on a 2-core CPU (recognition
takes most of it), which is why it is off unless asked for.

Results:

* JSON sidecar (``extra``): ``{"text": [{"text", "box": [x1, y1, ..., x4, y4] (normalised, clockwise from
  top-left), "box_score", "text_score"}]}``, the shape of Immich's ``ocr`` entries, so the HTTP service maps it
  directly;
* XMP: the recognised lines (one per line) as the answer to "Text in the photo" in phototag's namespace
  (``XMP-phototag:Answers``: Question, Answer, Score, Analyzer, Model), written and taken back (``untag``) by
  the XMP writer like every answer; the JSON sidecar's ``answers`` has it as ``text``;
* optionally (``keywords: true``) short lines as keywords ``Text|<line>`` (at most ``keyword_max_chars``
  characters, recognition score at least ``keyword_min_score``);
* ``phototag search --text "invoice"`` finds photos by their text from the state DB (:func:`find_text`).
"""

from __future__ import annotations

import json
import threading
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from .. import hookimpl
from ..config import Config, PluginSettings
from ..types import Analysis, Analyzer, Answer, DecodedImage, Device, ModelInfo, Needs, Tag, fingerprint_of

NAME = "text"
TASK = "ocr"
QUESTION = "Text in the photo"


class TextSettings(PluginSettings):
    enabled: bool = False
    """Run OCR (off by default: 1-2 s per photo with text on a CPU). Needs ``pip install 'phototag[ocr]'``."""
    min_score: float = Field(0.7, ge=0.0, le=1.0)
    """Lines recognised with a lower score are dropped (above rapidocr's own 0.5: shapes in ordinary photos read
    as stray letters score low; PP-OCRv4 read the cat photo's as "O" at 0.54)."""
    input_size: int = Field(736, ge=32)
    """Shorter side (px) photos are decoded to for OCR, and the text detector works at (smaller is faster and
    misses small print)."""
    keywords: bool = False
    """Also write short lines as keywords ``Text|<line>``."""
    keyword_max_chars: int = Field(24, ge=1)
    """Longest line written as a keyword."""
    keyword_min_score: float = Field(0.9, ge=0.0, le=1.0)
    """Lowest recognition score of a line written as a keyword."""


class TextAnalyzer:
    """``ocr`` with PP-OCRv6 small (see the module docstring)."""

    task = TASK
    needs = Needs(min_ram_mb=400, devices=("cpu",))
    Settings = TextSettings

    def __init__(self, name: str, settings: TextSettings, config: Config | None = None) -> None:
        self.name = name
        self.settings = settings
        self.input_size = settings.input_size
        self._engine: Any = None
        self._lock = threading.Lock()

    def model_info(self) -> ModelInfo:
        from ..bundled import package_version
        from ..ocr import MODEL_ID

        return ModelInfo(MODEL_ID, package_version("rapidocr"))

    def fingerprint(self) -> str:
        s = self.settings
        settings = (s.min_score, s.input_size, s.keywords, s.keyword_max_chars, s.keyword_min_score)
        return fingerprint_of(NAME, 2, self.model_info(), settings)

    def load(self, device: Device) -> None:
        from ..ocr import OcrEngine

        self._engine = OcrEngine(threads=device.threads, det_side=self.settings.input_size)

    def unload(self) -> None:
        self._engine = None

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        if self._engine is None:
            self.load(Device("cpu"))
        out = []
        for d in images:
            with self._lock:  # one read at a time per engine (rapidocr's stages: not said to be re-entrant)
                lines = self._engine.read(d.image, self.settings.min_score)
            out.append(analysis_of(lines, self.settings, self.model_info().id))
        return out


def analysis_of(lines: Sequence[Any], settings: TextSettings, model: str = "") -> Analysis:
    """The analysis for the text lines of one photo (:class:`phototag.ocr.TextLine`). Pure."""
    extra = {"text": [line.to_json() for line in lines]}
    if not lines:
        return Analysis(extra=extra)
    joined = "\n".join(line.text for line in lines)
    score = sum(line.text_score for line in lines) / len(lines)
    answers = (Answer(QUESTION, joined, score, name="text"),)
    tags: list[Tag] = []
    if settings.keywords:
        for line in lines:
            text = " ".join(line.text.split())
            if 1 < len(text) <= settings.keyword_max_chars and line.text_score >= settings.keyword_min_score:
                tags.append(Tag(text, line.text_score, ("Text", text)))
    return Analysis(tags=tuple(tags), answers=answers, extra=extra)


# -- search by text ------------------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Text as search compares it: case and accents folded (``Café`` -> ``cafe``), white space as one space."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def find_text(db: Any, words: str, limit: int = 20) -> list[tuple[str, float, str]]:
    """Photos (content hashes) whose OCR text holds every word of ``words`` (case, accents and spaces ignored:
    a word matches inside a longer run of text), best
    first, as ``(content hash, score, matching line)``: the score is the share of the photo's lines that hold
    a word, plus the mean recognition score of those lines, so a photo about the words ranks above one that
    mentions them once. ``db``: a :class:`phototag.state.StateDB`. Reads the newest cached ``ocr`` run of
    each photo still on record."""
    wanted = fold(words).split()
    # recognisers drop or add spaces between words ("INVOICENo4711"): compare without spaces
    if not wanted:
        return []
    rows = db._query(
        "SELECT r.content_hash, r.run FROM runs r WHERE json_extract(r.run, '$.task') = ? "
        "AND EXISTS (SELECT 1 FROM files f WHERE f.content_hash = r.content_hash) ORDER BY r.created",
        (TASK,),
    )
    newest: dict[str, list[dict[str, Any]]] = {}
    for content_hash, doc in rows:
        lines = (json.loads(doc).get("extra") or {}).get("text") or []
        newest[content_hash] = [x for x in lines if isinstance(x, dict) and isinstance(x.get("text"), str)]
    found = []
    for content_hash, lines in newest.items():
        texts = [fold(x["text"]).replace(" ", "") for x in lines]
        if not all(any(w in t for t in texts) for w in wanted):
            continue
        hits = [i for i, t in enumerate(texts) if any(w in t for w in wanted)]
        mean = sum(float(lines[i].get("text_score", 0)) for i in hits) / len(hits)
        score = len(hits) / len(texts) + mean
        best = max(hits, key=lambda i: sum(w in texts[i] for w in wanted))
        found.append((content_hash, score, lines[best]["text"]))
    found.sort(key=lambda f: (-f[1], f[0]))
    return found[:limit]


def search_text_command(state: Any, words: str, limit: int, as_json: bool) -> int:
    """``phototag search --text WORDS``: print the matching photos' paths (JSON lines with ``--json``);
    returns how many were shown."""
    import click

    from ..errors import PhototagError
    from ..state import StateDB

    choice = state.state_db()
    if choice.service is not None:
        click.echo(choice.line(), err=True)
    if not Path(choice.path).exists():
        raise PhototagError(f"no state database at {choice.path}: run `phototag scan` first")
    db = StateDB(choice.path, readonly=True)
    shown = 0
    try:
        for content_hash, score, line in find_text(db, words, limit * 4):
            for path in db.paths_for_hash(content_hash):
                if shown >= limit:
                    return shown
                shown += 1
                if as_json:
                    doc = {
                        "path": str(path),
                        "score": round(score, 4),
                        "content_hash": content_hash,
                        "text": line,
                    }
                    click.echo(json.dumps(doc, ensure_ascii=False))
                else:
                    click.echo(f"{score:6.3f}  {path}  {line}")
    finally:
        db.close()
    if not shown:
        click.echo(
            f"no photo's text contains {words!r} (text is read by plugins.text: enable it and scan)", err=True
        )
    return shown


@hookimpl
def register_analyzers(register: Callable[[Analyzer], None], config: Config) -> None:
    """Register the OCR analyzer when ``plugins.text.enabled`` is true (off by default)."""
    if config.plugin_enabled(NAME, default=False):
        register(TextAnalyzer(NAME, config.plugin_settings(NAME, TextSettings), config))
