"""The data that flows through phototag, and the two interfaces plugins implement.

Data flows one way::

    Photo --decode--> DecodedImage --Analyzer.analyze--> Analysis --(per photo)--> PhotoResult --Writer.write-->

Every type here is plain data: no I/O, no imports of other phototag modules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:  # PIL costs ~20 ms to import: --help and status never need it
    from PIL import Image

Task = str
"""What an analyzer does. The builtin tasks are :data:`TASKS`; a plugin may add its own (``ocr``, ``faces-id``,
``places``) without changing the core: the core treats every task alike. ``embed`` marks analyzers whose
results carry an image embedding that ``phototag search``/``similar`` use."""
TASKS: tuple[Task, ...] = ("caption", "classify", "detect", "embed", "vqa")
"""The builtin tasks."""
RegionKind = Literal["face", "object"]


@dataclass(frozen=True)
class Photo:
    """A file on disk, as stat saw it when it was picked up.

    ``content_hash`` is the BLAKE2b-128 hex digest of the bytes; it keys results and embeddings so that a rename
    costs nothing.
    """

    path: Path
    size: int
    mtime_ns: int
    content_hash: str


@dataclass(frozen=True)
class DecodedImage:
    """A photo decoded for analysis: 8-bit RGB, EXIF orientation applied, downscaled (never upscaled) so that its
    shorter side is the largest ``input_size`` the enabled analyzers asked for.

    ``width``/``height`` are the full orientation-corrected dimensions of the original, which regions are
    written against (``AppliedToDimensions``); ``image`` may be smaller. Boxes are normalised, so they are the
    same in both frames.
    """

    photo: Photo
    image: Image.Image
    width: int
    height: int
    format: str


@dataclass(frozen=True)
class Tag:
    """A keyword. ``path`` is the hierarchy below the configured root, ending with ``name``.

    ``Tag("Cat", 0.91, ("Animals", "Cat"))`` is written as ``Cat`` in dc:subject and ``AI|Animals|Cat`` in
    lr:hierarchicalSubject (root ``AI``).
    """

    name: str
    score: float
    path: tuple[str, ...] = ()
    rooted: bool = True
    """False: ``path`` is the whole hierarchy, written as given, without the keyword root (a keyword learned
    from the user's own ``Family|Anna`` is written as ``Family|Anna``, not ``AI|Family|Anna``)."""

    @property
    def hierarchy(self) -> tuple[str, ...]:
        return self.path or (self.name,)


@dataclass(frozen=True)
class Region:
    """A box in the orientation-corrected frame, normalised to 0..1: ``x``, ``y`` is the top-left corner."""

    label: str
    score: float
    x: float
    y: float
    w: float
    h: float
    kind: RegionKind = "object"
    name: str | None = None
    """A face's person, when known (people recognition, :mod:`phototag.people`): written as the MWG region's
    ``Name`` and to ``XMP-iptcExt:PersonInImage``. None: an unknown face (or an object)."""


@dataclass(frozen=True)
class ModelInfo:
    """Which model produced a result: an id (hub id, folder or bundled name) and a revision (hash or version)."""

    id: str
    revision: str = ""


@dataclass(frozen=True)
class Answer:
    """One question asked about a photo, and the answer.

    ``Answer("What is on the table?", "a cat", 0.83, name="table", xmp="XMP-photoshop:Headline")`` is stored
    in the JSON sidecar's ``answers`` as ``"table": "a cat"`` and written to ``XMP-photoshop:Headline``. Every
    answer is recorded in ``XMP-phototag:Answers`` (question, answer, score, model).
    """

    question: str
    text: str
    score: float | None = None
    """The model's confidence in its answer, 0..1; None when it gives none."""
    name: str | None = None
    """The key the answer is stored under in the JSON sidecar's ``answers`` (the question's ``field:``)."""
    xmp: str | None = None
    """The XMP tag the answer is written to (``XMP-photoshop:Headline``; the question's ``xmp:``), if any."""


@dataclass(frozen=True)
class Analysis:
    """What one analyzer found in one photo. Every field is optional; an analyzer fills what its task gives.

    ``extra`` is free-form for plugins (JSON-able values); phototag's writers store it in the JSON sidecar and
    read nothing from it.
    """

    tags: tuple[Tag, ...] = ()
    regions: tuple[Region, ...] = ()
    caption: str | None = None
    answers: tuple[Answer, ...] = ()
    embedding: tuple[float, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AnalyzerRun:
    """An analyzer's outcome for one photo: its analysis, or the error that stopped it, plus provenance."""

    analyzer: str
    task: Task
    model: ModelInfo
    fingerprint: str
    analysis: Analysis | None
    error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class PhotoResult:
    """Everything known about one photo after analysis; what writers receive."""

    photo: Photo
    width: int
    height: int
    runs: tuple[AnalyzerRun, ...]

    @property
    def ok_runs(self) -> tuple[AnalyzerRun, ...]:
        return tuple(r for r in self.runs if r.analysis is not None)

    @property
    def tags(self) -> list[tuple[AnalyzerRun, Tag]]:
        return [(r, t) for r in self.ok_runs for t in r.analysis.tags]  # type: ignore[union-attr]

    @property
    def regions(self) -> list[tuple[AnalyzerRun, Region]]:
        return [(r, g) for r in self.ok_runs for g in r.analysis.regions]  # type: ignore[union-attr]

    @property
    def caption(self) -> str | None:
        for r in self.ok_runs:
            if r.analysis is not None and r.analysis.caption:
                return r.analysis.caption
        return None


@dataclass(frozen=True)
class Needs:
    """What an analyzer needs from the hardware, for the device choice."""

    min_ram_mb: int = 256
    min_vram_mb: int = 0
    devices: tuple[str, ...] = ("cuda", "mps", "cpu")
    """Preferred device kinds, best first. An analyzer that only runs on the CPU says ``("cpu",)``."""


@dataclass(frozen=True)
class Device:
    """Where and how a model runs: ``kind`` is cpu, cuda or mps; ``index`` for cuda:N; torch dtype name."""

    kind: Literal["cpu", "cuda", "mps"]
    index: int | None = None
    dtype: str = "float32"
    threads: int = 1
    reason: str = ""

    @property
    def torch_device(self) -> str:
        return f"{self.kind}:{self.index}" if self.kind == "cuda" and self.index is not None else self.kind


@runtime_checkable
class Analyzer(Protocol):
    """An analysis plugin's unit of work. The core loads it once, then calls ``analyze`` with batches.

    ``name`` is unique; it keys the config section and the state DB fingerprint. ``fingerprint()`` must change
    whenever the results would change (model id, revision, settings), so that a re-scan re-runs exactly the
    analyzers whose model or settings changed. ``input_size`` is the shorter side in pixels the model needs: the
    photo is decoded once (JPEG draft mode) so that its shorter side is the largest ``input_size`` of the enabled
    analyzers (never upscaled); each analyzer then resizes/crops to its own input.
    """

    name: str
    task: Task
    needs: Needs
    input_size: int

    def model_info(self) -> ModelInfo: ...

    def fingerprint(self) -> str: ...

    def load(self, device: Device) -> None: ...

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]: ...

    def unload(self) -> None: ...


@runtime_checkable
class Writer(Protocol):
    """An output plugin: ``write`` puts one photo's results somewhere (XMP, JSON, a database).

    It must be atomic per photo and must raise on failure; the core records the error and goes on.
    ``close`` releases resources (an exiftool process) at the end of a run.
    """

    name: str

    def write(self, result: PhotoResult) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Untaggable(Protocol):
    """A writer that can take back exactly what it wrote (``phototag untag``)."""

    def remove(self, path: Path) -> Any: ...


@runtime_checkable
class OwnsFiles(Protocol):
    """A writer that makes files beside the photo (sidecars): a deleted one is written again on the next scan."""

    def owned_files(self, photo: Path) -> list[Path]: ...


@runtime_checkable
class Fingerprinted(Protocol):
    """A writer whose output depends on settings: when its fingerprint changes, the metadata of every photo is
    written again from the cached results (no model runs)."""

    def fingerprint(self) -> str: ...


class Library(Protocol):
    """What an analysis across photos may read (the state DB, read-only)."""

    def paths_for_hash(self, content_hash: str) -> list[Path]:
        """Every recorded path whose bytes have this content hash."""

    def photos(self, under: Path | None = None) -> list[Photo]:
        """Every photo recorded as done (below ``under``)."""

    def runs(self, content_hash: str) -> list[AnalyzerRun]:
        """The cached analyzer runs of these bytes (with the current fingerprints or older ones)."""


@runtime_checkable
class LibraryAnalyzer(Protocol):
    """An analysis that spans photos: people clustering, duplicate groups, learning from the user's keywords.

    Registered with the ``register_library_analyzers`` hook. After each batch of photos is analysed and
    written, :meth:`update` looks across the library and returns the photos done *before* whose metadata must
    change (a new copy of a photo makes the old one a duplicate; a person was named): the core writes those
    again from their cached results, with no model run. :meth:`contribute` says what the analysis adds to one
    photo's metadata right now; it is called for every photo that is written. ``fingerprint()`` covers the
    analyzer's settings: when it changes, every photo's metadata is written again.
    """

    name: str

    def fingerprint(self) -> str: ...

    def contribute(self, result: PhotoResult, library: Library) -> Analysis | None: ...

    def update(self, changed: Sequence[PhotoResult], library: Library) -> Sequence[Path]: ...


@runtime_checkable
class TextEmbedder(Protocol):
    """An embed analyzer that also embeds text into the same space (CLIP, SigLIP): ``phototag search``."""

    def embed_text(self, texts: Sequence[str]) -> list[tuple[float, ...]]: ...


def fingerprint_of(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (model id, revision, settings) for ``Analyzer.fingerprint``."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()
