"""``phototag search "a dog on a beach"`` and ``phototag similar PHOTO``: rank scanned photos by embedding.

Both read the embeddings that ``phototag scan`` stored in the state DB (keyed by content hash and the embed
analyzer's fingerprint, so renamed photos are still found) and rank them by cosine similarity:

- ``search`` embeds the query text with the embed model's text tower (CLIP-family models only);
- ``similar`` uses the photo's stored embedding, or embeds the photo now if it was never scanned.

The model runs on the CPU here: one text or one photo is quick, and a daemon may be using the GPU.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import hookimpl
from ..errors import ConfigError, PhototagError
from ..runtime import AnalyzerRuntime
from ..types import Analyzer, Device, TextEmbedder

if TYPE_CHECKING:
    import numpy as np


def rank_by_vector(
    query: np.ndarray, items: Sequence[tuple[str, np.ndarray]], limit: int
) -> list[tuple[str, float]]:
    """The ``limit`` items most similar to ``query`` (cosine similarity), best first, as ``(key, score)``.

    Vectors are normalised here, so stored vectors need not be. Items whose dimension differs from the query's
    (written by another model) are ignored.
    """
    import numpy as np

    q = np.asarray(query, dtype=np.float32).ravel()
    q_norm = float(np.linalg.norm(q))
    kept = [(key, vec) for key, vec in items if np.asarray(vec).size == q.size]
    if not kept or limit <= 0 or q_norm == 0.0:
        return []
    matrix = np.stack([np.asarray(vec, dtype=np.float32).ravel() for _, vec in kept])
    norms = np.linalg.norm(matrix, axis=1)
    norms[norms == 0] = 1.0
    scores = matrix @ (q / q_norm) / norms
    n = min(limit, len(kept))
    top = np.argpartition(-scores, n - 1)[:n] if n < len(kept) else np.arange(len(kept))
    # sort by score, then key, so equal scores come out in a stable order
    order = sorted(top.tolist(), key=lambda i: (-float(scores[i]), kept[i][0]))
    return [(kept[i][0], float(scores[i])) for i in order]


_INDEXES: dict[Path, tuple[tuple[int, ...], Any]] = {}
"""index file -> (the state it was synced to, the VectorIndex): a long-running process (the HTTP service)
keeps it in memory between queries."""


def rank_stored(
    db: Any, model: str, query: np.ndarray, limit: int, exact_below: int | None = None
) -> list[tuple[str, float]]:
    """:func:`rank_by_vector` over the vectors ``db`` (a :class:`~phototag.state.StateDB`) stores for embed
    fingerprint ``model``, through the index beside the state DB (:mod:`phototag.vectorindex`) once the
    library is large: the index is loaded, brought up to date with what changed in the state DB (photos
    recorded or forgotten since), saved, and asked. Small libraries (fewer than ``exact_below`` stored
    vectors, default :data:`~phototag.vectorindex.EXACT_BELOW`) are ranked exactly, as before."""
    import numpy as np

    from ..vectorindex import EXACT_BELOW

    if (db.row_count("embeddings") or 0) < (EXACT_BELOW if exact_below is None else exact_below):
        return rank_by_vector(query, db.embeddings(model), limit)
    index = synced_index(db, model, int(np.asarray(query).size), exact_below)
    return index.search(query, limit, lambda hashes: np.stack([db.embedding(h, model) for h in hashes]))


def _signature(db: Any) -> tuple[int, ...]:
    """Changes when a vector is stored or a photo recorded or forgotten (rowids grow; a delete lowers the
    count): cheap enough to check before every query."""
    rows = db._query(
        "SELECT (SELECT IFNULL(MAX(rowid), 0) FROM embeddings), (SELECT IFNULL(MAX(rowid), 0) FROM files),"
        " (SELECT COUNT(*) FROM files)"
    )
    return tuple(int(v) for v in rows[0])


def synced_index(db: Any, model: str, ndim: int, exact_below: int | None = None) -> Any:
    """The index of ``model``'s vectors of the photos recorded in ``db``, up to date (see :func:`rank_stored`);
    saved beside the state DB when it changed (not for a read-only database file's dry run)."""
    import numpy as np

    from ..vectorindex import VectorIndex, index_path

    path = index_path(db.path, model)
    signature = _signature(db)
    cached = _INDEXES.get(path)
    if cached is not None and cached[0] == signature and cached[1].ndim == ndim:
        return cached[1]
    index = cached[1] if cached is not None and cached[1].ndim == ndim else None
    sizes = {} if exact_below is None else {"exact_below": exact_below}
    index = index or VectorIndex.load(path, ndim, **sizes) or VectorIndex(ndim, **sizes)
    # photos recorded now, with a vector of this model; a forgotten photo's vector stays cached in the DB
    wanted = [
        h
        for (h,) in db._query(
            "SELECT DISTINCT e.content_hash FROM embeddings e JOIN files f ON f.content_hash = e.content_hash"
            " WHERE e.model = ? AND e.dims = ?",
            (model, ndim),
        )
    ]

    def vectors_of(hashes: list[str]) -> np.ndarray:
        return np.stack([db.embedding(h, model) for h in hashes])

    added, removed = index.sync(wanted, vectors_of)
    if added or removed or not path.exists():
        with contextlib.suppress(OSError):  # a read-only folder: the index is rebuilt in memory next time
            index.save(path)
    _INDEXES[path] = (signature, index)
    return index


def find_embedder(analyzers: Sequence[Analyzer], name: str | None = None) -> Analyzer:
    """The enabled embed analyzer (``name`` picks one when several are enabled)."""
    embedders = [a for a in analyzers if a.task == "embed"]
    if name is not None:
        embedders = [a for a in embedders if a.name == name]
    if not embedders:
        which = f" named {name!r}" if name else ""
        raise ConfigError(
            f"no embed analyzer{which} is enabled: enable plugins.embed (e.g. model: "
            "openai/clip-vit-base-patch32) and run `phototag scan` first"
        )
    if len(embedders) > 1:
        names = ", ".join(a.name for a in embedders)
        raise click.UsageError(f"several embed analyzers are enabled ({names}): pick one with --model NAME")
    return embedders[0]


def _context(state: Any, model: str | None) -> tuple[AnalyzerRuntime, Analyzer, Any]:
    """The runtime (holding the embed analyzer, on the CPU), the embed analyzer and the state DB a search
    runs against."""
    from ..manager import collect
    from ..state import StateDB

    config = state.config()

    def fail(plugin: str, e: Exception) -> None:
        raise e if isinstance(e, PhototagError) else PhototagError(f"plugin {plugin} failed: {e}")

    analyzers = [a for _, a in collect(state.pm, "register_analyzers", fail, config=config)]
    embedder = find_embedder(analyzers, model)
    choice = state.state_db()  # the installed service's, when the user did not choose one
    if choice.service is not None:
        click.echo(choice.line(), err=True)
    if not Path(choice.path).exists():
        raise PhototagError(f"no state database at {choice.path}: run `phototag scan` first")
    # one text or one photo is quick on the CPU, and a daemon may be using the GPU
    runtime = AnalyzerRuntime(config, [embedder], hook=_OnCpu(config))
    return runtime, embedder, StateDB(choice.path, readonly=True)


def _stored(db: Any, embedder: Analyzer) -> None:
    """Refuse a search before any photo was embedded with this model."""
    if not db._query("SELECT 1 FROM embeddings WHERE model = ? LIMIT 1", (embedder.fingerprint(),)):
        raise PhototagError(
            f"no photos embedded with {embedder.model_info().id} ({embedder.name}) yet: run `phototag scan` "
            "with that embed model enabled"
        )


class _OnCpu:
    """A ``select_device`` answer for the runtime: queries run on the CPU."""

    def __init__(self, config: Any) -> None:
        self._threads = max(1, int(getattr(config, "threads", 0) or 1))

    def select_device(self, **_: Any) -> Device:
        return Device("cpu", threads=self._threads, reason="one query on the CPU")


def _load(runtime: AnalyzerRuntime, embedder: Analyzer) -> None:
    error = runtime.load(embedder.name)
    if error is not None:
        raise PhototagError(error)


def _emit(db: Any, ranked: list[tuple[str, float]], limit: int, as_json: bool) -> int:
    """Print each ranked photo's current paths (a hash with no path left is a deleted photo: skipped)."""
    shown = 0
    for content_hash, score in ranked:
        for path in db.paths_for_hash(content_hash):
            if shown >= limit:
                return shown
            shown += 1
            if as_json:
                doc = {"path": str(path), "score": round(score, 4), "content_hash": content_hash}
                click.echo(json.dumps(doc, ensure_ascii=False))
            else:
                click.echo(f"{score:6.3f}  {path}")
    return shown


_limit = click.option(
    "-n", "--limit", default=20, show_default=True, type=click.IntRange(1), help="How many."
)
_as_json = click.option("--json", "as_json", is_flag=True, help="One JSON object per photo on stdout.")
_model = click.option(
    "--model", default=None, metavar="NAME", help="Embed analyzer to use when several are on."
)


@click.command()
@click.argument("query", required=False)
@click.option(
    "--text", "words", metavar="WORDS", help="Photos whose OCR text (plugins.text) holds all WORDS."
)
@_limit
@_as_json
@_model
@click.pass_obj
def search(
    state: Any, query: str | None, words: str | None, limit: int, as_json: bool, model: str | None
) -> None:
    """Photos that match a text QUERY, best first (needs a CLIP-family embed model); with --text WORDS,
    photos whose text (read by OCR) holds the words."""
    import numpy as np

    if words is not None:
        from .text import search_text_command

        search_text_command(state, words, limit, as_json)
        return
    if query is None:
        raise click.UsageError("give a QUERY, or --text WORDS")
    runtime, embedder, db = _context(state, model)
    try:
        _stored(db, embedder)
        if not isinstance(embedder, TextEmbedder):
            raise ConfigError(
                f"the embed model {embedder.model_info().id} cannot embed text; set plugins.embed.model to a "
                "CLIP-family model (e.g. openai/clip-vit-base-patch32) and re-scan"
            )
        with runtime.using(embedder.name):
            _load(runtime, embedder)
            query_vector = np.asarray(embedder.embed_text([query])[0], dtype=np.float32)
        ranked = rank_stored(db, embedder.fingerprint(), query_vector, limit * 4)
        shown = _emit(db, ranked, limit, as_json)
        if not shown:
            click.echo("no photos found (the embedded photos were all deleted or moved)", err=True)
    finally:
        db.close()
        runtime.close()


@click.command()
@click.argument("photo", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@_limit
@_as_json
@_model
@click.pass_obj
def similar(state: Any, photo: Path, limit: int, as_json: bool, model: str | None) -> None:
    """Photos that look like PHOTO, best first (PHOTO itself comes first)."""
    runtime, embedder, db = _context(state, model)
    try:
        _stored(db, embedder)
        vector = _photo_vector(db, embedder, photo)
        if vector is None:  # never scanned: embed it now
            vector = _embed_now(runtime, embedder, photo)
        _emit(db, rank_stored(db, embedder.fingerprint(), vector, limit * 4), limit, as_json)
    finally:
        db.close()
        runtime.close()


def _photo_vector(db: Any, embedder: Analyzer, photo: Path) -> np.ndarray | None:
    """The stored embedding of ``photo``: by its recorded hash, else by hashing it (a moved or copied
    file)."""
    from ..files import hash_file

    record = db.file_record(photo.resolve()) or db.file_record(photo)
    hashes = [record.content_hash] if record is not None and record.content_hash else []
    key = embedder.fingerprint()
    for content_hash in hashes:
        vector = db.embedding(content_hash, key)
        if vector is not None:
            return vector
    try:
        vector = db.embedding(hash_file(photo), key)
    except OSError as e:
        raise PhototagError(f"{photo}: cannot read it: {e.strerror or e}") from e
    return vector


def _embed_now(runtime: AnalyzerRuntime, embedder: Analyzer, photo: Path) -> np.ndarray:
    import numpy as np

    from ..files import make_photo
    from ..images import decode

    image = decode(make_photo(photo), embedder.input_size, runtime.config.image)
    ran = runtime.analyze(embedder.name, [image])
    if ran.analyses is None:
        raise PhototagError(f"{photo}: {ran.error}")
    [analysis] = ran.analyses
    if analysis.embedding is None:
        raise PhototagError(f"{photo}: the embed analyzer {embedder.name} returned no embedding")
    return np.asarray(analysis.embedding, dtype=np.float32)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``search`` and ``similar`` to the CLI."""
    cli.add_command(search)
    cli.add_command(similar)
