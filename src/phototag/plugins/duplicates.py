"""The ``duplicates`` plugin: a perceptual hash per photo at scan time, ``phototag duplicates`` to list the
groups, and (``plugins.duplicates.keyword: true``) the keyword ``Duplicate`` on every copy but the best.

The analyzer (task ``phash``) is cheap (a 32x32 greyscale DCT and a Laplacian on the already decoded photo,
about a millisecond) and stores in ``Analysis.extra``: the hash, the sharpness and the original's dimensions,
so that the command reads everything from the state DB and decodes nothing. The grouping itself is
:mod:`phototag.duplicates`. Nothing is ever deleted or moved.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import hookimpl
from ..config import Config, PluginSettings
from ..duplicates import Copy, Group, Thresholds, find_groups, phash, sharpness
from ..errors import PhototagError, display
from ..types import (
    Analysis,
    Analyzer,
    DecodedImage,
    Device,
    Library,
    LibraryAnalyzer,
    ModelInfo,
    Needs,
    PhotoResult,
    Tag,
    fingerprint_of,
)

if TYPE_CHECKING:
    import numpy as np

NAME = "duplicates"
TASK = "phash"
VERSION = 1


class DuplicatesSettings(PluginSettings):
    max_distance: int = 16
    """Most perceptual-hash bits (of 64) two near duplicates may differ by when their embeddings also agree
    (a 5% crop moves about 14 bits; unrelated photos differ by about 32)."""
    max_distance_alone: int = 6
    """The same, for photos without embeddings (the hash alone must be stricter)."""
    min_similarity: float = 0.85
    """Least cosine similarity of the two photos' embeddings (embed plugin) for a near duplicate."""
    keyword: bool = False
    """Add the keyword ``Duplicate`` to every copy in a group except the best one (phototag's keyword:
    ``untag`` removes it). Nothing is ever deleted."""


class PerceptualHash:
    """Task ``phash``: the 64-bit DCT pHash, sharpness and original dimensions of each photo."""

    name = NAME
    task = TASK
    needs = Needs(min_ram_mb=16, devices=("cpu",))
    input_size = 256
    Settings = DuplicatesSettings

    def __init__(self, settings: DuplicatesSettings) -> None:
        self.settings = settings

    def model_info(self) -> ModelInfo:
        return ModelInfo("dct-phash-64", str(VERSION))

    def fingerprint(self) -> str:
        # the thresholds decide grouping, not this analysis: changing them must not re-hash every photo
        return fingerprint_of(NAME, TASK, VERSION, self.input_size)

    def load(self, device: Device) -> None:
        pass

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        return [
            Analysis(
                extra={
                    "phash": f"{phash(d.image):016x}",
                    "sharpness": round(sharpness(d.image), 3),
                    "width": d.width,
                    "height": d.height,
                }
            )
            for d in images
        ]

    def unload(self) -> None:
        pass


def thresholds(settings: DuplicatesSettings, with_embeddings: bool) -> Thresholds:
    return Thresholds(
        settings.max_distance if with_embeddings else settings.max_distance_alone, settings.min_similarity
    )


# -- reading the library ----------------------------------------------------------------------------------------


def copies_from(
    library: Library, under: Sequence[Path], fingerprint: str, embed_fingerprint: str | None
) -> list[Copy]:
    """:class:`Copy` of each photo recorded below ``under`` (all when empty), from its cached ``phash`` run
    (fingerprint ``fingerprint``) and its stored embedding (the embed run with ``embed_fingerprint``; any
    embed run when None)."""
    import numpy as np

    photos = []
    folders: list[Path | None] = list(under) or [None]
    for folder in folders:
        photos += library.photos(folder)
    out: list[Copy] = []
    seen: set[Path] = set()
    for photo in photos:
        if photo.path in seen:
            continue
        seen.add(photo.path)
        extra: dict[str, Any] = {}
        vector = None
        for run in library.runs(photo.content_hash):
            if run.analysis is None:
                continue
            if run.analyzer == NAME and run.fingerprint == fingerprint:
                extra = dict(run.analysis.extra)
            elif (
                run.task == "embed"
                and run.analysis.embedding is not None
                and vector is None
                and (embed_fingerprint is None or run.fingerprint == embed_fingerprint)
            ):
                vector = np.asarray(run.analysis.embedding, dtype=np.float32)
        out.append(
            Copy(
                photo.path,
                photo.content_hash,
                photo.size,
                int(extra.get("width", 0)),
                int(extra.get("height", 0)),
                int(extra["phash"], 16) if "phash" in extra else None,
                float(extra.get("sharpness", 0.0)),
                vector,
            )
        )
    return out


def neighbours_from_index(copies: Sequence[Copy], k: int = 16) -> Callable[[int], list[int]] | None:
    """Candidate pairs from the embedding index: the ``k`` nearest contents of each copy (None when no copy
    has an embedding)."""
    import numpy as np

    from ..vectorindex import VectorIndex

    with_vectors = [c for c in copies if c.embedding is not None]
    if not with_vectors:
        return None
    dims = {c.embedding.size for c in with_vectors if c.embedding is not None}
    ndim = max(
        dims, key=lambda d: sum(1 for c in with_vectors if c.embedding is not None and c.embedding.size == d)
    )
    unique: dict[str, np.ndarray] = {}
    for c in with_vectors:
        if c.embedding is not None and c.embedding.size == ndim:
            unique.setdefault(c.content_hash, c.embedding)
    index = VectorIndex(ndim)
    index.add(list(unique), np.stack(list(unique.values())))
    by_hash: dict[str, list[int]] = {}
    for i, c in enumerate(copies):
        by_hash.setdefault(c.content_hash, []).append(i)
    found = dict(zip(unique, index.search_many(np.stack(list(unique.values())), k), strict=True))

    def neighbours(i: int) -> list[int]:
        return [j for h in found.get(copies[i].content_hash, []) for j in by_hash.get(h, [])]

    return neighbours


class UserMetadata:
    """Whether a photo carries the user's own keywords (read with exiftool, only for photos in a group)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._et: Any = None
        self._seen: dict[Path, bool] = {}

    def __call__(self, path: Path) -> bool:
        if path not in self._seen:
            from ..learn import user_keywords

            if self._et is None:
                from ..exiftool import Exiftool

                self._et = Exiftool(self.config.exiftool.path, timeout=self.config.exiftool.timeout)
            try:
                self._seen[path] = bool(user_keywords(self._et, path))
            except PhototagError:
                self._seen[path] = False
        return self._seen[path]

    def close(self) -> None:
        if self._et is not None:
            self._et.close()


def library_groups(
    config: Config,
    library: Library,
    under: Sequence[Path],
    embed_fingerprint: str | None,
    has_user_metadata: Callable[[Path], bool] = lambda _: False,
) -> list[Group]:
    """The duplicate groups among the photos recorded below ``under`` (all when empty)."""
    settings = config.plugin_settings(NAME, DuplicatesSettings)
    copies = copies_from(library, under, PerceptualHash(settings).fingerprint(), embed_fingerprint)
    neighbours = neighbours_from_index(copies)
    return find_groups(
        copies,
        thresholds(settings, neighbours is not None),
        neighbours=neighbours,
        has_user_metadata=has_user_metadata,
    )


# -- the Duplicate keyword ------------------------------------------------------------------------------------


class DuplicateKeyword:
    """Library analyzer: ``Duplicate`` on each copy but the best. Groups are recomputed after each batch; the
    photos whose mark changed are written again (from cache, no model)."""

    name = "duplicate-keyword"  # not "duplicates": the analyzer has that name, and fingerprints are keyed by name

    def __init__(self, config: Config, settings: DuplicatesSettings) -> None:
        self.config = config
        self.settings = settings
        self._marked: set[Path] | None = None  # paths that carry (or will carry) the keyword
        self._embed: str | None = None  # the embed analyzer's fingerprint, as the photos' runs show it

    def fingerprint(self) -> str:
        s = self.settings
        return fingerprint_of(NAME, VERSION, s.max_distance, s.max_distance_alone, s.min_similarity)

    def _current(self, library: Library) -> set[Path]:
        groups = library_groups(self.config, library, [], self._embed)
        return {c.path for g in groups for c in g.others}

    def contribute(self, result: PhotoResult, library: Library) -> Analysis | None:
        if self._embed is None:
            self._embed = next((r.fingerprint for r in result.ok_runs if r.task == "embed"), None)
        if self._marked is None:
            self._marked = self._current(library)
        if result.photo.path in self._marked:
            return Analysis(tags=(Tag("Duplicate", 1.0, ("Duplicate",)),))
        return None

    def update(self, changed: Sequence[PhotoResult], library: Library) -> list[Path]:
        before = self._marked if self._marked is not None else set()
        now = self._current(library)
        self._marked = now
        return sorted(before ^ now)


def _embed_fingerprint(state: Any, config: Config) -> str | None:
    """The fingerprint of the one enabled embed analyzer (None when there is none or several)."""
    from ..manager import collect

    def fail(plugin: str, e: Exception) -> None:
        raise e if isinstance(e, PhototagError) else PhototagError(f"plugin {plugin} failed: {e}")

    analyzers = [a for _, a in collect(state.pm, "register_analyzers", fail, config=config)]
    embedders = [a for a in analyzers if a.task == "embed"]
    return embedders[0].fingerprint() if len(embedders) == 1 else None


# -- hooks ------------------------------------------------------------------------------------------------------


@hookimpl
def register_analyzers(register: Callable[[Analyzer], None], config: Config) -> None:
    """The perceptual hash, unless ``plugins.duplicates.enabled`` is false."""
    if config.plugin_enabled(NAME):
        register(PerceptualHash(config.plugin_settings(NAME, DuplicatesSettings)))


@hookimpl
def register_library_analyzers(register: Callable[[LibraryAnalyzer], None], config: Config) -> None:
    """The ``Duplicate`` keyword, when ``plugins.duplicates.keyword`` is on."""
    if config.plugin_enabled(NAME):
        settings = config.plugin_settings(NAME, DuplicatesSettings)
        if settings.keyword:
            register(DuplicateKeyword(config, settings))


def group_doc(group: Group) -> dict[str, Any]:
    """A group as ``duplicates --json`` prints it (one object per line)."""

    def member(c: Copy) -> dict[str, Any]:
        return {
            "path": display(c.path),
            "content_hash": c.content_hash,
            "size": c.size,
            "width": c.width,
            "height": c.height,
            "sharpness": c.sharpness,
            "reason": group.reasons.get(str(c.path), ""),
        }

    return {"kind": group.kind, "best": member(group.best), "others": [member(c) for c in group.others]}


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per group on stdout.")
@click.pass_obj
def duplicates(state: Any, paths: tuple[Path, ...], as_json: bool) -> None:
    """List groups of duplicate photos (exact copies and near duplicates) below PATHS, best copy first.

    Reads what `phototag scan` recorded: no photo is decoded, nothing is changed or deleted."""
    from ..library import StateLibrary
    from ..state import StateDB

    config = state.config()
    choice = state.state_db()
    if not Path(choice.path).exists():
        raise PhototagError(f"no state database at {choice.path}: run `phototag scan` first")
    if not config.plugin_enabled(NAME):
        raise PhototagError(
            "the duplicates plugin is disabled (plugins.duplicates.enabled: false): enable it and run "
            "`phototag scan` so that each photo gets a perceptual hash"
        )
    db = StateDB(choice.path, readonly=True)
    user = UserMetadata(config)
    try:
        embed = _embed_fingerprint(state, config)
        under = [p.resolve() for p in paths]
        groups = library_groups(config, StateLibrary(db), under, embed, has_user_metadata=user)
    finally:
        user.close()
        db.close()
    for group in groups:
        if as_json:
            click.echo(json.dumps(group_doc(group), ensure_ascii=False))
            continue
        click.echo(f"{group.kind} duplicates:")
        click.echo(f"  keep  {display(group.best.path)}  ({_describe(group.best)})")
        for c in group.others:
            click.echo(f"  copy  {display(c.path)}  ({_describe(c)}; {group.reasons.get(str(c.path), '')})")
    if not as_json:
        n = sum(len(g.others) for g in groups)
        click.echo(f"{len(groups)} group(s), {n} copy(ies) besides the best ones", err=True)


def _describe(c: Copy) -> str:
    return f"{c.width}x{c.height}, {c.size:,} bytes, sharpness {c.sharpness:.0f}"


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``duplicates`` to the CLI."""
    cli.add_command(duplicates)
