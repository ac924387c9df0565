"""The ``learned`` plugin: ``phototag learn`` trains a classifier per keyword you wrote (:mod:`phototag.learn`),
and a library analyzer writes those keywords on the photos the classifiers recognise, new and old.

The library analyzer's fingerprint is the trained model's hash: after ``learn``, the next ``scan`` writes every
photo's metadata again from the cached results (no model runs), and the XMP plan changes only the keywords
that changed. The learned keywords are recorded as phototag's, so ``untag`` removes exactly those and a later
``learn`` never mistakes them for yours. A photo that already carries the keyword keeps yours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from .. import hookimpl
from ..config import Config, PluginSettings
from ..errors import PhototagError, display
from ..keywordreview import all_rejected
from ..learn import Model, label_matrix, model_path, train, user_keywords
from ..types import Analysis, Library, LibraryAnalyzer, PhotoResult, Tag

NAME = "learned"


class Settings(PluginSettings):
    min_positives: int = 8
    """Fewest photos carrying a keyword for ``phototag learn`` to learn it."""
    target_precision: float = 0.9
    """Precision the chosen threshold must reach in cross-validation; a keyword that cannot is not learned."""
    folds: int = 5
    """Cross-validation folds (fewer when a keyword has fewer photos)."""


class LearnedKeywords:
    """Library analyzer: the learned keywords of each photo, from its stored embedding."""

    name = NAME
    Settings = Settings

    def __init__(self, model: Model) -> None:
        self.model = model

    def fingerprint(self) -> str:
        return self.model.digest

    def contribute(self, result: PhotoResult, library: Library) -> Analysis | None:
        import numpy as np

        for run in result.ok_runs:
            if run.fingerprint == self.model.embed and run.analysis is not None and run.analysis.embedding:
                vector = np.asarray(run.analysis.embedding, dtype=np.float32)
                found = self.model.predict(vector, result.photo.content_hash)
                tags = tuple(Tag(path[-1], score, path, rooted=False) for path, score in found)
                return Analysis(tags=tags) if tags else None
        return None

    def update(self, changed: Sequence[PhotoResult], library: Library) -> list[Path]:
        return []  # a photo's learned keywords depend on that photo only


@hookimpl
def register_library_analyzers(register: Callable[[LibraryAnalyzer], None], config: Config) -> None:
    """The learned keywords, once ``phototag learn`` saved a model beside the state DB."""
    if not config.plugin_enabled(NAME):
        return
    config.plugin_settings(NAME, Settings)  # validate the section
    path = model_path(config.state_db)
    if path.is_file():
        try:
            model = Model.load(path)
        except (OSError, ValueError, KeyError) as e:
            raise PhototagError(
                f"{path}: the learned model cannot be read ({e}): run `phototag learn` again or delete it"
            ) from e
        register(LearnedKeywords(model))


def _embedder(state: Any, config: Config) -> Any:
    from ..manager import collect
    from .search import find_embedder

    def fail(plugin: str, e: Exception) -> None:
        raise e if isinstance(e, PhototagError) else PhototagError(f"plugin {plugin} failed: {e}")

    return find_embedder([a for _, a in collect(state.pm, "register_analyzers", fail, config=config)])


@click.command()
@click.pass_obj
def learn(state: Any) -> None:
    """Learn your own keywords from the photos you tagged, and tag the others at the next scan.

    Trains one classifier per keyword you wrote (not phototag's) on the stored image embeddings, prints each
    keyword's cross-validated precision and recall, and saves the model beside the state DB."""
    import numpy as np

    from ..exiftool import Exiftool
    from ..state import StateDB

    config = state.config()
    settings = config.plugin_settings(NAME, Settings)
    db_path = Path(config.state_db)
    if not db_path.exists():
        raise PhototagError(f"no state database at {db_path}: run `phototag scan` first")
    embedder = _embedder(state, config)
    fingerprint = embedder.fingerprint()
    db = StateDB(db_path, readonly=True)
    et = Exiftool(config.exiftool.path, timeout=config.exiftool.timeout)
    try:
        vectors = dict(db.embeddings(fingerprint))
        keywords: dict[str, set[tuple[str, ...]]] = {}
        for rec in db.records(status="done"):
            if rec.content_hash in vectors and rec.path.exists():
                found = keywords.setdefault(rec.content_hash, set())
                found |= user_keywords(et, rec.path)
    finally:
        et.close()
        db.close()
    if not keywords:
        raise PhototagError(
            f"no photos embedded with {embedder.model_info().id} ({embedder.name}) yet: run `phototag scan` "
            "with the embed plugin enabled"
        )
    hashes = sorted(keywords)
    labels = label_matrix(hashes, keywords)
    # keywords you rejected on the web page's Review are negative examples of them (accepted ones are yours
    # already: they left phototag's records, so user_keywords reads them)
    refused = all_rejected(db_path)
    rejected = {
        path: np.array([path[-1].casefold() in refused.get(h, ()) for h in hashes], dtype=bool)
        for path in labels
    }
    model, reports = train(
        np.stack([vectors[h] for h in hashes]),
        labels,
        fingerprint,
        hashes=hashes,
        rejected=rejected,
        min_positives=settings.min_positives,
        target_precision=settings.target_precision,
        folds=settings.folds,
    )
    click.echo(f"{len(hashes)} photos, {sum(1 for k in keywords.values() if k)} with your keywords")
    click.echo(f"{'keyword':<32} {'photos':>6} {'precision':>9} {'recall':>6} {'threshold':>9}")
    for r in reports:
        name = "|".join(r.path)
        if r.refused:
            click.echo(f"{name:<32} {r.positives:>6}  not learned: {r.refused}")
        else:
            click.echo(
                f"{name:<32} {r.positives:>6} {r.precision:>9.2f} {r.recall:>6.2f} {r.threshold:>9.3f}"
            )
    path = model_path(db_path)
    old = Model.load(path).digest if path.is_file() else None
    if not model.paths:
        if path.is_file():
            path.unlink()
            click.echo(f"no keyword learned; removed the old model {display(path)}", err=True)
        else:
            click.echo("no keyword learned", err=True)
        return
    if old == model.digest:
        click.echo(f"model unchanged: {display(path)}")
        return
    model.save(path)
    click.echo(f"saved {len(model.paths)} keyword(s) to {display(path)}; `phototag scan` writes them")


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``learn`` to the CLI."""
    cli.add_command(learn)
