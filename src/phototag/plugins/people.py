"""Builtin plugin ``people``: faces recognised across the library (:mod:`phototag.people`) and the
``phototag people`` commands.

``list`` / ``show`` read the state DB's people tables; ``name``, ``merge``, ``unname`` and ``forget`` change
them and then write the metadata of every photo of the people concerned again, from the cached results (no
model runs: :meth:`phototag.pipeline.Pipeline.rewrite`); ``import`` reads the names the user gave in their own
face regions (a scan does it too, for the photos it writes).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from .. import hookimpl
from ..config import Config
from ..errors import PhototagError, display
from ..people.analyzer import NAME, Learner, PeopleAnalyzer, PeopleSettings
from ..people.sheet import contact_sheet, face_crop
from ..people.store import Face, PeopleStore, Person
from ..types import LibraryAnalyzer


@hookimpl
def register_library_analyzers(register: Callable[[LibraryAnalyzer], None], config: Config) -> None:
    """Register people recognition unless ``plugins.people.enabled`` is false."""
    if config.plugin_enabled(NAME):
        register(PeopleAnalyzer(config.plugin_settings(NAME, PeopleSettings), config))


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``phototag people ...``."""
    cli.add_command(people)


# -- helpers ----------------------------------------------------------------------------------------------------


class _Context:
    """The config, the people tables and the state DB (paths by content hash) for one command."""

    def __init__(self, state: Any) -> None:
        from ..state import StateDB

        self.cli = state
        self.config: Config = state.config()
        self.settings = self.config.plugin_settings(NAME, PeopleSettings)
        self.db = PeopleStore(self.config.state_db)
        self.state = StateDB(self.config.state_db)

    def close(self) -> None:
        self.db.close()
        self.state.close()

    def person(self, person_id: int) -> Person:
        found = self.db.person(person_id)
        if found is None or found.forgotten:
            raise click.UsageError(f"no person {person_id}: `phototag people list` shows the ids")
        return found

    def paths(self, hashes: Iterable[str]) -> list[Path]:
        """The photos (absolute paths, existing) with these content hashes."""
        out: dict[Path, None] = {}
        for h in sorted(set(hashes)):
            for path in self.state.paths_for_hash(h):
                if path.exists():
                    out[path.absolute()] = None
        return sorted(out)

    def rewrite(self, hashes: Iterable[str]) -> None:
        """Write the metadata of the photos with these content hashes again (from cache) and say so."""
        from ..pipeline import Pipeline

        paths = self.paths(hashes)
        if not paths:
            return
        with Pipeline.from_config(self.config, self.cli.pm, state=self.state) as pipeline:
            outcomes = pipeline.rewrite(paths)
        failed = [o for o in outcomes if o.status == "failed"]
        click.echo(f"metadata written again for {len(outcomes) - len(failed)} photo(s)")
        for outcome in failed:
            click.echo(f"  failed: {outcome.message}", err=True)
        if failed:
            sys.exit(1)


def _run(state: Any, step: Callable[[_Context], None]) -> None:
    ctx = _Context(state)
    try:
        step(ctx)
    finally:
        ctx.close()


def _listing(ctx: _Context) -> list[dict[str, Any]]:
    out = []
    for person in ctx.db.people():
        faces = ctx.db.faces_of_person(person.id)
        if not faces:
            continue
        out.append(
            {
                "id": person.id,
                "name": person.name,
                "faces": len(faces),
                "photos": [str(p) for p in ctx.paths(f.content_hash for f in faces)],
            }
        )
    return out


# -- commands ---------------------------------------------------------------------------------------------------


@click.group()
def people() -> None:
    """People recognised in the photos: list, show, name, merge, unname, forget, import."""


@people.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per person on stdout.")
@click.pass_obj
def list_people(state: Any, as_json: bool) -> None:
    """People and unnamed clusters: id, name, number of faces, photos."""

    def step(ctx: _Context) -> None:
        for row in _listing(ctx):
            if as_json:
                click.echo(json.dumps(row, ensure_ascii=False))
            else:
                name = row["name"] or "(unnamed)"
                click.echo(f"{row['id']:>5}  {name}  {row['faces']} face(s) in {len(row['photos'])} photo(s)")

    _run(state, step)


@people.command()
@click.argument("person_id", metavar="ID", type=int)
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="PNG to write (default: person-ID.png)."
)
@click.option("--max", "limit", default=36, show_default=True, type=click.IntRange(1), help="Faces at most.")
@click.pass_obj
def show(state: Any, person_id: int, out: Path | None, limit: int) -> None:
    """A contact sheet of the faces of person ID (a PNG)."""

    def step(ctx: _Context) -> None:
        person = ctx.person(person_id)
        crops = []
        for face in ctx.db.faces_of_person(person.id)[:limit]:
            crop = _crop(ctx, face)
            if crop is not None:
                crops.append(crop)
        if not crops:
            raise PhototagError(f"person {person_id}: none of their photos can be read any more (moved?)")
        target = out or Path(f"person-{person.id}.png")
        title = f"{person.id}: {person.name or '(unnamed)'} - {len(crops)} face(s)"
        contact_sheet(crops, title).save(target, "PNG")
        click.echo(str(target))

    _run(state, step)


def _crop(ctx: _Context, face: Face) -> Any:
    for path in ctx.paths([face.content_hash]):
        try:
            return face_crop(path, face.box)
        except OSError:
            continue
    return None


@people.command()
@click.argument("person_id", metavar="ID", type=int)
@click.argument("name")
@click.pass_obj
def name(state: Any, person_id: int, name: str) -> None:
    """Name person ID (another person of that name is merged into it)."""
    text = " ".join(name.split())
    if not text or text.casefold() == "face":
        raise click.UsageError(f"{name!r} is not a name (digiKam would import it as a person called so)")

    def step(ctx: _Context) -> None:
        person = ctx.person(person_id)
        same = ctx.db.by_name(text)
        touched = {person.id}
        if same is not None and same.id != person.id:
            ctx.db.merge(person.id, [same.id])
            touched.add(same.id)
            click.echo(f"merged person {same.id} ({same.name}) into {person.id}")
        hashes = ctx.db.hashes_of(touched)
        ctx.db.set_name(person.id, text)
        click.echo(f"person {person.id} is {text}")
        ctx.rewrite(hashes)

    _run(state, step)


@people.command()
@click.argument("ids", metavar="ID ID...", nargs=-1, type=int, required=True)
@click.pass_obj
def merge(state: Any, ids: Sequence[int]) -> None:
    """Merge the people IDs into the first (which keeps its name, else takes the first name among them)."""
    if len(ids) < 2:
        raise click.UsageError("give two ids at least: phototag people merge INTO OTHER...")

    def step(ctx: _Context) -> None:
        found = [ctx.person(i) for i in ids]
        into, others = found[0], found[1:]
        names = {p.name for p in found if p.name}
        if len(names) > 1:
            click.echo(f"note: merging people named {', '.join(sorted(names))}", err=True)
        hashes = ctx.db.hashes_of(p.id for p in found)
        new_name = into.name or next((p.name for p in others if p.name), None)
        ctx.db.merge(into.id, [p.id for p in others])
        ctx.db.set_name(into.id, new_name)
        click.echo(f"merged {', '.join(str(p.id) for p in others)} into {into.id} ({new_name or 'unnamed'})")
        ctx.rewrite(hashes)

    _run(state, step)


@people.command()
@click.argument("person_id", metavar="ID", type=int)
@click.pass_obj
def unname(state: Any, person_id: int) -> None:
    """Take the name off person ID (it stays a cluster)."""

    def step(ctx: _Context) -> None:
        person = ctx.person(person_id)
        ctx.db.set_name(person.id, None)
        click.echo(f"person {person.id} has no name now")
        ctx.rewrite(ctx.db.hashes_of([person.id]))

    _run(state, step)


@people.command()
@click.argument("person_id", metavar="ID", type=int)
@click.pass_obj
def forget(state: Any, person_id: int) -> None:
    """Not a person: never list or suggest person ID again (look-alike faces join it silently)."""

    def step(ctx: _Context) -> None:
        person = ctx.person(person_id)
        ctx.db.set_forgotten(person.id)
        click.echo(f"person {person.id} forgotten")
        ctx.rewrite(ctx.db.hashes_of([person.id]))

    _run(state, step)


@people.command("import")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, exists=True))
@click.pass_obj
def import_names(state: Any, paths: Sequence[Path]) -> None:
    """Learn names from the face regions the user named (digiKam, Lightroom, Picasa, Immich...) in PATHS
    (default: every scanned photo); the photos must have been scanned."""

    def step(ctx: _Context) -> None:
        from ..files import hash_file, iter_photos

        analyzer = PeopleAnalyzer(ctx.settings, ctx.config)
        learner = Learner(ctx.db, ctx.settings)
        if paths:
            photos = list(
                iter_photos(paths, ctx.config, on_error=lambda p, why: click.echo(f"{display(p)}: {why}"))
            )
        else:
            photos = [r.path for r in ctx.state.records(status="done")]
        learned = unscanned = 0
        try:
            for photo in photos:
                record = ctx.state.file_record(photo)
                content_hash = record.content_hash if record is not None else None
                if content_hash is None:
                    try:
                        content_hash = hash_file(photo)
                    except OSError:
                        continue
                stored = ctx.db.faces_of(content_hash)
                if not stored:
                    user = analyzer.user_faces(photo)
                    if user and record is None:
                        unscanned += 1
                        click.echo(
                            f"{display(photo)}: not scanned yet; `phototag scan` it to learn its names"
                        )
                    continue
                if learner.learn(
                    [f for f in stored if f.model == stored[0].model], analyzer.user_faces(photo)
                ):
                    learned += 1
            hashes = learner.finish()
        finally:
            analyzer.close()
        click.echo(f"names learned from {learned} photo(s)")
        ctx.rewrite(hashes)
        if unscanned:
            sys.exit(1)

    _run(state, step)


__all__ = ["people", "register_commands", "register_library_analyzers"]
