"""``phototag classify``, ``phototag score`` and ``phototag ask``: your own words about photos, without a server.

- ``classify PHOTO... --labels cat,dog,beach [--template "a photo of {}."]``: each photo's labels with scores,
  best first (a CLIP/SigLIP-family classify model: ``plugins.classify.model``);
- ``score --query "a red car" PHOTO...``: the cosine similarity of every (query, photo) pair (a CLIP-family
  embed or classify model);
- ``ask PHOTO "question"``: the VQA model's answer (``plugins.vqa``).

``--json`` prints one JSON object per line. Photos are decoded with the project's safe decoder; a photo that
cannot be read is reported on stderr with its name, the others are still answered, and the exit code is 1.
A configuration that cannot answer (a fixed-label classifier for labels, no VQA model) exits with 2 and names
what to configure. The work itself is :mod:`phototag.adhoc`, which the HTTP service shares.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import hookimpl
from ..errors import ImageError, PhototagError, display
from ..types import Analyzer, DecodedImage

if (
    TYPE_CHECKING
):  # imported when a command runs: every other command starts without the transformers backends
    from ..adhoc import Activation
    from ..runtime import AnalyzerRuntime

EXIT_FAILURES = 1  # as phototag.cli: some files failed (cli imports plugins' modules, not the reverse)


def build_runtime(state: Any, task: str) -> AnalyzerRuntime:
    """A runtime holding the enabled analyzers that may do ``task`` (``classify``, ``embed``, ``vqa``), placed
    as ``scan`` places them."""
    from ..manager import collect
    from ..runtime import AnalyzerRuntime

    config = state.config()

    def fail(plugin: str, e: Exception) -> None:
        raise e if isinstance(e, PhototagError) else PhototagError(f"plugin {plugin} failed: {e}")

    tasks = {"classify": ("classify",), "similarity": ("embed", "classify"), "ask": ("vqa",)}[task]
    analyzers: list[Analyzer] = [
        a for _, a in collect(state.pm, "register_analyzers", fail, config=config) if a.task in tasks
    ]
    return AnalyzerRuntime(config, analyzers, hook=state.pm.hook)


def decode_photos(
    runtime: AnalyzerRuntime, photos: Sequence[Path], size: int
) -> tuple[list[Path], list[DecodedImage]]:
    """The photos that decode (with their paths); each that does not is reported on stderr, naming it."""
    from ..files import make_photo
    from ..images import decode

    kept: list[Path] = []
    images: list[DecodedImage] = []
    for path in photos:
        try:
            images.append(decode(make_photo(path), size, runtime.config.image))
            kept.append(path)
        except ImageError as e:
            click.echo(f"error: {e}", err=True)
        except OSError as e:
            click.echo(f"error: {display(path)}: cannot read it: {e.strerror or e}", err=True)
    return kept, images


def _run(state: Any, task: str, work: Callable[[AnalyzerRuntime], bool]) -> None:
    """Build the runtime, run ``work``, close; usage errors become click's (exit 2), a failed photo exit 1."""
    from ..adhoc import BadInput

    runtime = build_runtime(state, task)
    try:
        ok = work(runtime)
    except BadInput as e:
        raise click.UsageError(str(e)) from None
    finally:
        runtime.close()
    if not ok:
        sys.exit(EXIT_FAILURES)


def _labels(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


_as_json = click.option("--json", "as_json", is_flag=True, help="One JSON object per line on stdout.")
_model = click.option("--model", default=None, metavar="NAME", help="The analyzer to use when several could.")
_photos = click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))


@click.command("classify")
@_photos
@click.option(
    "-l",
    "--labels",
    multiple=True,
    required=True,
    metavar="A,B,...",
    help="Candidate labels, comma-separated (repeatable).",
)
@click.option(
    "-t",
    "--template",
    "templates",
    multiple=True,
    metavar="TEXT",
    help='Prompt template with {} for the label (repeatable), e.g. "a photo of {}."; default: the classifier\'s.',
)
@click.option(
    "--activation",
    type=click.Choice(["auto", "softmax", "sigmoid"]),
    default="auto",
    show_default=True,
    help="auto: softmax for CLIP, sigmoid for SigLIP.",
)
@_as_json
@_model
@click.pass_obj
def classify_command(
    state: Any,
    photos: tuple[Path, ...],
    labels: tuple[str, ...],
    templates: tuple[str, ...],
    activation: Activation,
    as_json: bool,
    model: str | None,
) -> None:
    """Score PHOTOS against your own --labels, best first (needs a CLIP/SigLIP classify model)."""
    names = _labels(labels)

    def work(runtime: AnalyzerRuntime) -> bool:
        from .. import adhoc

        size = adhoc.input_size(runtime, "classify", model)
        kept, images = decode_photos(runtime, photos, size)
        results = adhoc.classify(runtime, images, names, templates or None, activation, analyzer=model)
        for path, result in zip(kept, results, strict=True):
            if as_json:
                doc = {
                    "path": display(path),
                    "labels": [{"label": s.label, "score": round(s.score, 4)} for s in result.labels],
                    "activation": result.activation,
                    "model": result.model,
                }
                click.echo(json.dumps(doc, ensure_ascii=False))
            else:
                click.echo(display(path))
                for s in result.labels:
                    click.echo(f"  {s.score:7.4f}  {s.label}")
        return len(kept) == len(photos)

    _run(state, "classify", work)


@click.command("score")
@_photos
@click.option("--query", "queries", multiple=True, required=True, metavar="TEXT", help="A text (repeatable).")
@_as_json
@_model
@click.pass_obj
def score_command(
    state: Any, photos: tuple[Path, ...], queries: tuple[str, ...], as_json: bool, model: str | None
) -> None:
    """The cosine similarity of each --query with each of PHOTOS (needs a CLIP-family model)."""

    def work(runtime: AnalyzerRuntime) -> bool:
        from .. import adhoc

        size = adhoc.input_size(runtime, "similarity", model)
        kept, images = decode_photos(runtime, photos, size)
        pairs = [(q, image) for image in images for q in queries]
        if pairs:
            scored = adhoc.pair_similarity(runtime, pairs, analyzer=model)
            paths = [path for path in kept for _ in queries]
            for path, (query, _), score in zip(paths, pairs, scored.scores, strict=True):
                if as_json:
                    doc = {
                        "path": display(path),
                        "query": query,
                        "score": round(score, 4),
                        "model": scored.model,
                    }
                    click.echo(json.dumps(doc, ensure_ascii=False))
                else:
                    shown = f"  {query}" if len(queries) > 1 else ""
                    click.echo(f"{score:7.4f}  {display(path)}{shown}")
        return len(kept) == len(photos)

    _run(state, "similarity", work)


@click.command("ask")
@click.argument("photo", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("question")
@_as_json
@_model
@click.pass_obj
def ask_command(state: Any, photo: Path, question: str, as_json: bool, model: str | None) -> None:
    """Answer QUESTION about PHOTO (needs a VQA model: plugins.vqa.enabled: true)."""

    def work(runtime: AnalyzerRuntime) -> bool:
        from .. import adhoc

        size = adhoc.input_size(runtime, "ask", model)
        _, images = decode_photos(runtime, [photo], size)
        if not images:
            return False
        answered = adhoc.ask(runtime, images[0], question, analyzer=model)
        if as_json:
            doc = {
                "path": display(photo),
                "question": answered.question,
                "answer": answered.answer,
                "score": answered.score,
                "model": answered.model,
            }
            click.echo(json.dumps(doc, ensure_ascii=False))
        else:
            click.echo(answered.answer)
        return True

    _run(state, "ask", work)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``classify``, ``score`` and ``ask`` to the CLI."""
    cli.add_command(classify_command)
    cli.add_command(score_command)
    cli.add_command(ask_command)
