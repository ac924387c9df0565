"""The ``phototag`` command line. Typed errors become exit codes here and nowhere else.

Exit codes: 0 all good, 1 some files failed, 2 usage or configuration error.
Plugins add commands through the ``register_commands`` hook (``watch``, ``status``, ``search``, ...).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pluggy

from . import __version__
from .config import Config, load_config, parse_overrides
from .errors import ConfigError, PhototagError, PluginError, display
from .manager import PluginStatus, collect, get_plugin_manager
from .report import describe_outcome
from .state_commands import state_group

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("phototag")


class CliState:
    """What every command shares: the config (loaded lazily, once) and the plugin manager."""

    def __init__(self, config_path: Path | None, overrides: tuple[str, ...], pm: pluggy.PluginManager,
                 statuses: list[PluginStatus]) -> None:  # fmt: skip
        self.config_path = config_path
        self.overrides = overrides
        self.pm = pm
        self.statuses = statuses
        self._config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path, parse_overrides(self.overrides))
        return self._config


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbose < 2:  # third-party chatter only at -vv
        for noisy in ("transformers", "urllib3", "huggingface_hub", "PIL", "watchdog", "filelock", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="phototag")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), envvar="PHOTOTAG_CONFIG",
              help="Config file (default: $PHOTOTAG_CONFIG or ~/.config/phototag/config.yaml).")  # fmt: skip
@click.option("-s", "--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set metadata.mode=embed (repeatable).")  # fmt: skip
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.pass_context
def cli(
    ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...], verbose: int, quiet: bool
) -> None:
    """Look at photos and write what is in them into their metadata."""
    _setup_logging(verbose, quiet)
    if ctx.obj is None:
        pm, statuses = get_plugin_manager()
        ctx.obj = CliState(config_path, overrides, pm, statuses)
    else:  # main() built the plugin manager to add plugin commands before parsing
        ctx.obj.config_path, ctx.obj.overrides = config_path, overrides


# -- scan ---------------------------------------------------------------------------------------------------------


def _outcome_json(outcome: Any) -> dict[str, Any]:
    from .serialize import result_to_dict

    doc: dict[str, Any] = {"path": display(outcome.path), "status": outcome.status}
    if outcome.message:
        doc["message"] = outcome.message
    if outcome.result is not None:
        doc["result"] = result_to_dict(outcome.result)
    return doc


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Redo every file, even when it was done with the same models.")
@click.option("--dry-run", is_flag=True, help="Analyse and print, but write nothing (no metadata, no state).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout.")
@click.pass_obj
def scan(state: CliState, paths: tuple[Path, ...], force: bool, dry_run: bool, as_json: bool) -> None:
    """Tag the photos in PATHS (files or folders, recursive; default: the configured folders), then exit."""
    from .files import iter_photos
    from .pipeline import Outcome, Pipeline
    from .state import StateDB

    config = state.config()
    roots = list(paths) or list(config.folders)
    if not roots:
        raise click.UsageError("no PATH given and no folders configured (set folders: in the config)")
    unreadable: list[Outcome] = []

    def walk_error(path: Path, why: str) -> None:
        unreadable.append(Outcome(path, "failed", f"{display(path)}: {why}"))

    try:
        files = list(iter_photos(roots, config, on_error=walk_error))
    except FileNotFoundError as e:
        raise click.UsageError(str(e)) from None
    log.info("%d files to look at under %s", len(files), ", ".join(map(str, roots)))
    show_bar = sys.stderr.isatty() and not as_json
    bar = None
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="file", dynamic_ncols=True, file=sys.stderr)

    def report(outcome: Any) -> None:
        if as_json:
            click.echo(json.dumps(_outcome_json(outcome), ensure_ascii=False))
        elif outcome.status == "skipped":
            log.debug("%s", describe_outcome(outcome))
        else:
            text = describe_outcome(outcome)
            if bar is not None:
                bar.write(text)
            else:
                click.echo(text)
        if bar is not None:
            bar.update(1)

    # a dry run writes nothing, the state DB included (read-only, or in memory when there is none yet)
    db = StateDB(config.state_db, readonly=dry_run)
    with Pipeline.from_config(config, state.pm, state=db) as pipeline:
        for message in pipeline.setup_errors:
            click.echo(f"warning: {message}", err=True)
        for outcome in unreadable:
            report(outcome)
        summary = pipeline.run(files, force=force, dry_run=dry_run, on_outcome=report)
        for outcome in unreadable:
            summary.add(outcome)
        pipeline.state.close()
    if bar is not None:
        bar.close()
    rate = summary.total / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"{'dry run: ' if dry_run else ''}{summary.tagged} tagged, {summary.skipped} skipped (already done), "
        f"{summary.failed} failed, in {summary.seconds:.1f} s ({rate:.1f} files/s)",
        err=as_json,
    )
    for failure in summary.failures:
        click.echo(f"  failed: {display(failure.message)}", err=True)
    if summary.failed:
        sys.exit(EXIT_FAILURES)


# -- untag --------------------------------------------------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.pass_obj
def untag(state: CliState, paths: tuple[Path, ...]) -> None:
    """Remove exactly what phototag wrote to PATHS (keywords, caption, regions, sidecars); keep the user's own."""
    from .files import iter_photos
    from .folderlock import folder_lock
    from .state import StateDB

    config = state.config()
    writers = [w for _, w in collect(state.pm, "register_writers", _raise, config=config)]
    failed = 0
    db = StateDB(config.state_db)

    def walk_error(path: Path, why: str) -> None:
        nonlocal failed
        failed += 1
        click.echo(f"{display(path)}: {why}", err=True)

    try:
        for path in iter_photos(paths, config, on_error=walk_error):
            problems = []
            with folder_lock(path.parent):
                for writer in writers:
                    remove = getattr(writer, "remove", None)
                    if remove is None:
                        continue
                    try:
                        remove(path)
                    except (PhototagError, OSError) as e:
                        problems.append(str(e))
            if problems:
                failed += 1
                click.echo(f"{display(path)}: NOT untagged: {'; '.join(problems)}", err=True)
                continue
            db.forget(path)
            click.echo(f"{display(path)}: untagged")
    finally:
        for writer in writers:
            writer.close()
        db.close()
    if failed:
        sys.exit(EXIT_FAILURES)


def _raise(plugin: str, e: Exception) -> None:
    raise PluginError(f"plugin {plugin} failed: {e}") from e


# -- doctor -------------------------------------------------------------------------------------------------------


@cli.command()
@click.option("--no-load", is_flag=True, help="Do not load models to check that they are available.")
@click.pass_obj
def doctor(state: CliState, no_load: bool) -> None:
    """Report hardware, the device chosen for each model, exiftool, model availability, writable paths."""
    from .hardware import apply_threads, describe, probe
    from .pipeline import pick_device

    config = state.config()
    problems = 0
    click.echo(f"phototag {__version__}, Python {sys.version.split()[0]}, config: {config.source}")
    hardware = probe()
    click.echo("\nHardware:")
    for line in describe(hardware):
        click.echo(f"  {line}")

    click.echo("\nexiftool:")
    exiftool = shutil.which(config.exiftool.path)
    if exiftool is None:
        problems += 1
        click.echo(
            f"  NOT FOUND ({config.exiftool.path}): apt-get install libimage-exiftool-perl, or set exiftool.path"
        )
    else:
        version = subprocess.run(
            [exiftool, "-ver"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        click.echo(f"  {exiftool} version {version}")

    click.echo("\nModels:")
    analyzers = [a for _, a in collect(state.pm, "register_analyzers", _raise, config=config)]
    if not analyzers:
        click.echo("  no analyzers enabled")
    for analyzer in analyzers:
        info = analyzer.model_info()
        head = f"  {analyzer.name} ({analyzer.task}): {info.id}"
        try:
            device = pick_device(analyzer, config, hardware, state.pm.hook)
        except ConfigError as e:
            problems += 1
            click.echo(f"{head}: NO USABLE DEVICE: {e}")
            continue
        where = f"{device.torch_device} {device.dtype}, {device.threads} threads ({device.reason})"
        if no_load:
            click.echo(f"{head} -> {where}")
            continue
        start = time.perf_counter()
        try:
            apply_threads(device)
            analyzer.load(device)
            analyzer.unload()
            click.echo(f"{head} -> {where}: available (loaded in {time.perf_counter() - start:.1f} s)")
        except Exception as e:
            problems += 1
            click.echo(f"{head} -> {where}: NOT AVAILABLE: {e}")

    click.echo("\nPaths:")
    problems += _check_state_db(config.state_db)
    for folder in config.folders:
        ok = folder.is_dir() and os.access(folder, os.W_OK)
        problems += not ok
        click.echo(f"  folder {folder}: {'writable' if ok else 'MISSING or NOT WRITABLE'}")
    click.echo(f"\n{problems} problem(s) found" if problems else "\nall good")
    if problems:
        sys.exit(EXIT_FAILURES)


def _check_state_db(path: Path) -> int:
    from .state import StateDB

    try:
        db = StateDB(path)
        counts = db.counts()
        db.close()
        click.echo(f"  state db {path}: writable, {sum(counts.values())} files recorded")
        return 0
    except PhototagError as e:
        click.echo(f"  state db {path}: NOT USABLE: {e}")
        return 1


# -- plugins ------------------------------------------------------------------------------------------------------


@cli.command()
@click.pass_obj
def plugins(state: CliState) -> None:
    """List loaded plugins (builtin and external) with their tasks and status."""
    config = state.config()
    provides: dict[str, list[str]] = {}

    def note(plugin: str, e: Exception) -> None:
        provides.setdefault(plugin, []).append(f"error: {e}")

    for hook in ("register_analyzers", "register_writers"):
        for plugin, obj in collect(state.pm, hook, note, config=config):
            kind = getattr(obj, "task", "writer")
            provides.setdefault(plugin, []).append(f"{kind}:{obj.name}")
    width = max((len(s.name) for s in state.statuses), default=10)
    for status in state.statuses:
        what = ", ".join(provides.get(status.name, []))
        if not what and status.status == "loaded":
            what = "commands" if "register_commands" in status.hooks else "disabled"
        click.echo(f"{status.name:<{width}}  {status.origin:<10}  {status.status:<8}  {what}")


# -- config -------------------------------------------------------------------------------------------------------


@cli.command("config")
@click.option("--defaults", is_flag=True, help="Print the documented default configuration (config.yaml).")
@click.pass_obj
def config_command(state: CliState, defaults: bool) -> None:
    """Print the effective configuration (after --config, environment and --set), or the documented defaults."""
    import yaml

    from .configdoc import render_default_config

    if defaults:
        click.echo(render_default_config(), nl=False)
        return
    config = state.config()
    doc = config.model_dump(mode="json", exclude={"lines", "source"})
    click.echo(f"# effective configuration from {config.source}")
    click.echo(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), nl=False)


cli.add_command(state_group)


# -- entry point --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: load plugins (so they can add commands), run, map errors to exit codes."""
    try:
        pm, statuses = get_plugin_manager()
    except PluginError as e:
        click.echo(f"error: {e}", err=True)
        return EXIT_USAGE
    pm.hook.register_commands(cli=cli)
    obj = CliState(None, (), pm, statuses)
    try:
        cli.main(args=argv, prog_name="phototag", obj=obj, standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code or 0)
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return EXIT_USAGE
    except ConfigError as e:
        click.echo(f"configuration error: {e}", err=True)
        return EXIT_USAGE
    except PhototagError as e:
        click.echo(f"error: {e}", err=True)
        return EXIT_FAILURES
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_FAILURES
    return EXIT_OK
