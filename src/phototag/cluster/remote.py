"""What runs on the Ray workers: read and decode tasks, the model actor, the writer actor and the storage check.

Plain functions and plain classes, made remote by :mod:`.runner` when it connects (so that importing this
module never imports Ray). Everything here returns per-photo errors as values: a photo that cannot be read or
decoded, a batch an analyzer fails on, or a writer that fails comes back as a message naming the file or
analyzer, exactly as the local pipeline reports it; only a dying process fails a task, and Ray retries that.
Reading, decoding and writing use the local pipeline's own functions (:func:`phototag.pipeline.read_photo`,
:func:`phototag.images.decode`, :func:`phototag.pipeline.write_photo`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, ImageSettings
from ..errors import FileError
from ..images import decode
from ..manager import get_plugin_manager
from ..outcomes import Outcome
from ..pipeline import Written, failed_io, read_photo, write_photo, writer_fingerprints
from ..registration import close_writers, register_plugins
from ..runtime import AnalyzerRuntime
from ..types import Analysis, DecodedImage, Photo, PhotoResult


@dataclass(frozen=True)
class Job:
    """One photo to analyse: the photo as the driver read it (its content hash), the analyzers still to run
    on it, and the size to decode it to (the largest ``input_size`` among them)."""

    photo: Photo
    analyzers: tuple[str, ...]
    min_side: int


@dataclass(frozen=True)
class Analysed:
    """A job's result: the original's size and, per analyzer, ``(analysis, error, seconds_each)``; or
    ``error`` when the photo could not be decoded."""

    width: int = 0
    height: int = 0
    runs: dict[str, tuple[Analysis | None, str | None, float]] | None = None
    error: str | None = None


def hash_batch(paths: list[str]) -> list[Photo | Outcome]:
    """Stat and hash each photo (the local scan's :func:`~phototag.pipeline.read_photo`), where the bytes are
    read anyway; one that cannot be read is its failed outcome, naming it."""
    return [read_photo(Path(text)) for text in paths]


def decode_batch(jobs: list[Job], settings: ImageSettings) -> list[DecodedImage | str]:
    """Decode each job's photo (the pipeline's safe decode); one that cannot be is its error message."""
    out: list[DecodedImage | str] = []
    for job in jobs:
        try:
            out.append(decode(job.photo, job.min_side, settings))
        except FileError as e:
            out.append(str(e))
        except OSError as e:
            out.append(failed_io(job.photo.path, e, "decoding").message)
    return out


def check_paths(paths: list[str]) -> tuple[str, list[str]]:
    """On one node: which of ``paths`` it cannot open for reading (the photos must be on shared storage, at the
    same path on every node). Returns the node's host name and those paths, each with the reason."""
    missing = []
    for text in paths:
        try:
            with open(text, "rb") as f:
                f.read(1)
        except OSError as e:
            missing.append(f"{text} ({e.strerror or e})")
    return socket.gethostname(), missing


class ModelWorker:
    """A model actor: the analyzers the plugins register on this node, run through the same
    :class:`~phototag.runtime.AnalyzerRuntime` as a local scan, with ``threads`` torch threads (the CPUs Ray
    gave it) unless the config sets them."""

    def __init__(self, config: Config, threads: int) -> None:
        if config.threads == 0:
            config = config.model_copy(update={"threads": threads})
        pm, _ = get_plugin_manager()
        found = register_plugins(config, pm)
        close_writers(found.writers)  # the driver writes; the workers only analyse
        self.runtime = AnalyzerRuntime(config, found.analyzers, hook=pm.hook)

    def describe(self) -> dict[str, object]:
        """Where this actor runs and the fingerprints of its analyzers (the driver checks they match its own)."""
        return {"pid": os.getpid(), "host": socket.gethostname(), "fingerprints": self.runtime.fingerprints()}

    def analyze(self, jobs: list[Job], decoded: list[DecodedImage | str]) -> list[Analysed]:
        """Run every job's analyzers, each on all the batch's photos that need it at once (as the pipeline
        does); a photo that could not be decoded keeps its error."""
        runs: list[dict[str, tuple[Analysis | None, str | None, float]]] = [{} for _ in jobs]
        names = dict.fromkeys(name for job in jobs for name in job.analyzers)
        for name in names:
            index = [
                i for i, job in enumerate(jobs) if name in job.analyzers and not isinstance(decoded[i], str)
            ]
            if not index:
                continue
            images = [decoded[i] for i in index]
            ran = self.runtime.analyze(name, images)  # type: ignore[arg-type]  # strings were filtered out
            for k, i in enumerate(index):
                analysis = ran.analyses[k] if ran.analyses is not None else None
                runs[i][name] = (analysis, ran.error, ran.seconds_each)
        out = []
        for image, found in zip(decoded, runs, strict=True):
            if isinstance(image, str):
                out.append(Analysed(error=image))
            else:
                out.append(Analysed(image.width, image.height, found))
        return out

    def close(self) -> None:
        self.runtime.close()


class WriterWorker:
    """A writer actor, one per node that analyses: the writers the plugins register on this node (exiftool kept
    running between batches), writing where the photos are, so that the driver only records. Each photo is
    written by :func:`~phototag.pipeline.write_photo` (folder lock, "changed since planned" check, every writer
    in its own error boundary) and comes back as a small :class:`~phototag.pipeline.Written`."""

    def __init__(self, config: Config) -> None:
        pm, _ = get_plugin_manager()
        found = register_plugins(config, pm)
        self.writers = found.writers

    def describe(self) -> dict[str, object]:
        """Where this actor runs and its writers' fingerprints (the driver checks they match its own)."""
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "fingerprints": writer_fingerprints(self.writers),
        }

    def write(self, results: list[PhotoResult]) -> list[Written]:
        """Write each photo's metadata; idempotent, so a batch retried after this actor died is harmless."""
        return [write_photo(self.writers, result) for result in results]

    def close(self) -> None:
        close_writers(self.writers)
