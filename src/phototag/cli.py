"""The ``phototag`` command line. Typed errors become exit codes here and nowhere else.

Exit codes: 0 all good, 1 some files failed, 2 usage or configuration error.
Plugins add commands through the ``register_commands`` hook (``watch``, ``status``, ``search``, ...). Every
command, a plugin's included, takes the global options (``--config``, ``--set``, ``-v``, ``-q``) after its name
too: :class:`PhototagGroup` adds them to each command it is given.

Why one module of ~570 lines: the core commands (scan, untag, doctor, plugins, config) and the group that
gives every command its global options; plugins add their commands from their own modules (search, daemon,
state).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import click
import pluggy

from . import __version__
from .config import Config, load_config, parse_overrides
from .errors import ConfigError, PhototagError, PluginError, display
from .manager import PluginStatus, collect, get_plugin_manager
from .report import RunReport, describe_outcome, is_failure
from .state_commands import state_group

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("phototag")


class CliState:
    """What every command shares: the global options, the config (loaded lazily, once), the plugin manager."""

    def __init__(self, config_path: Path | None, overrides: tuple[str, ...], pm: pluggy.PluginManager,
                 statuses: list[PluginStatus]) -> None:  # fmt: skip
        self.config_path = config_path
        self.overrides = overrides
        self.verbosity = 0  # -1: -q, 1: -v, 2: -vv
        self.pm = pm
        self.statuses = statuses
        self.said: Callable[[str], bool] = lambda _: False  # was this error already logged on stderr?
        self._config: Config | None = None

    def take(self, config_path: Path | None, overrides: tuple[str, ...], verbose: int, quiet: bool) -> None:
        """Global options from one place (before the command, then after it): the later wins; ``--set``s add
        up (the later for the same key)."""
        if config_path is not None:
            self.config_path = config_path
        self.overrides = (*self.overrides, *overrides)
        if quiet:
            self.verbosity = -1
        elif verbose:
            self.verbosity = verbose
        self._config = None

    def start_logging(self) -> None:
        self.said = _setup_logging(self.verbosity)

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path, parse_overrides(self.overrides))
        return self._config

    def state_db(self) -> Any:
        """The state DB a command that reads one should use (:class:`phototag.service.locate.StateChoice`):
        the installed service's when the user did not choose one, else the config's; ``.line()`` says which."""
        from .service.locate import choose_state_db

        return choose_state_db(self.config(), self.config_path, self.overrides)


class _ErrorsShown(logging.Filter):
    """Remembers the errors the log printed on stderr, so that ``scan`` does not print them a second time."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            self.messages.add(record.getMessage())
        return True

    def shown(self, message: str) -> bool:
        return message in self.messages


def _setup_logging(verbosity: int) -> Callable[[str], bool]:
    """Log to stderr at the level ``verbosity`` asks for. Returns a check: was this error already logged there?"""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 1 else logging.INFO
    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbosity < 2:  # third-party chatter only at -vv
        for noisy in ("transformers", "urllib3", "huggingface_hub", "PIL", "watchdog", "filelock", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    for handler in root.handlers:
        shown = next((f for f in handler.filters if isinstance(f, _ErrorsShown)), None)
        if shown is None and handler not in before:  # ours (not a test harness's): it writes to stderr
            shown = _ErrorsShown()
            handler.addFilter(shown)
        if shown is not None:
            shown.messages.clear()
            return shown.shown
    return lambda _: False


# -- global options, before or after the command -------------------------------------------------------------------

LATER_WINS = "Before or after the command; given in both places, the later wins."


def _global_options(
    taken: Collection[str] = (), dest: str = "", envvar: str | None = None
) -> list[click.Option]:
    """``--config``, ``--set``, ``-v``, ``-q`` as click options named ``dest + name``, without the option
    strings in ``taken`` (a command's own ``--config`` stays its own)."""
    specs: list[tuple[list[str], dict[str, Any]]] = [
        (["-c", "--config"], {"type": click.Path(path_type=Path), "envvar": envvar, "metavar": "FILE",
          "help": "Config file (default: $PHOTOTAG_CONFIG or ~/.config/phototag/config.yaml). " + LATER_WINS}),
        (["-s", "--set"], {"multiple": True, "metavar": "KEY=VALUE",
          "help": "Override a config key, e.g. --set metadata.mode=embed (repeatable; for the same key the "
                  "later wins)."}),
        (["-v", "--verbose"], {"count": True, "help": "More log output (-vv for debug). " + LATER_WINS}),
        (["-q", "--quiet"], {"is_flag": True, "help": "Only warnings and errors on stderr. " + LATER_WINS}),
    ]  # fmt: skip
    names = ("config_path", "overrides", "verbose", "quiet")
    options = []
    for (decls, attrs), name in zip(specs, names, strict=True):
        free = [d for d in decls if d not in taken]
        if free:
            options.append(click.Option([*free, dest + name], **attrs))
    return options


GLOBAL_DEST = "global_"
_HAS_GLOBALS = "_phototag_global_options"


def accept_global_options(command: click.Command) -> click.Command:
    """Let ``command`` (and a group's subcommands) take the global options after its name too:
    ``phototag scan -q --config x.yaml DIR``. They apply after those before the name (the later wins)."""
    if getattr(command, _HAS_GLOBALS, False):
        return command
    setattr(command, _HAS_GLOBALS, True)
    taken = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    added = _global_options(taken, dest=GLOBAL_DEST)
    command.params.extend(added)
    names = [str(o.name) for o in added]
    callback = command.callback
    is_group = isinstance(command, click.Group)

    def with_global_options(*args: Any, **kwargs: Any) -> Any:
        given = {n.removeprefix(GLOBAL_DEST): kwargs.pop(n) for n in names}
        state = click.get_current_context().find_object(CliState)
        if state is not None:
            state.take(given.get("config_path"), given.get("overrides", ()), given.get("verbose", 0),
                       given.get("quiet", False))  # fmt: skip
            if not is_group:  # the last word on -v/-q is in: start logging
                state.start_logging()
        return callback(*args, **kwargs) if callback is not None else None

    if callback is not None:
        functools.update_wrapper(with_global_options, callback)
    command.callback = with_global_options
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_global_options(sub)
    return command


class PhototagGroup(click.Group):
    """The ``phototag`` group: every command added to it (builtin or a plugin's) takes the global options."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(accept_global_options(cmd), name)


def _print_versions(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from .versions import version_report

    click.echo(version_report())
    ctx.exit()


@click.group(
    cls=PhototagGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    params=_global_options(envvar="PHOTOTAG_CONFIG"),
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_versions,
    help="Show the versions of phototag, exiftool, torch, transformers, Pillow and the models, and exit.",
)
@click.pass_context
def cli(
    ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...], verbose: int, quiet: bool
) -> None:
    """Look at photos and write what is in them into their metadata.

    The global options (--config, --set, -v, -q) go before or after the command: `phototag scan -q DIR` is
    `phototag -q scan DIR`. Given in both places, the later wins.
    """
    if ctx.obj is None:
        pm, statuses = get_plugin_manager()
        ctx.obj = CliState(None, (), pm, statuses)
    # main() built the plugin manager (to add plugin commands) before parsing
    ctx.obj.take(config_path, overrides, verbose, quiet)


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
@click.option("--ray", "ray_address", metavar="ADDRESS", help="Run on a Ray cluster: auto (the one `ray start` "
              "made here) or ray://HOST:10001 (needs the ray extra; small scans stay local).")  # fmt: skip
@click.option("--ray-always", is_flag=True, help="With --ray: use Ray even below the size where it pays off.")
@click.pass_obj
def scan(state: CliState, paths: tuple[Path, ...], force: bool, dry_run: bool, as_json: bool,
         ray_address: str | None = None, ray_always: bool = False) -> None:  # fmt: skip
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

    lines = RunReport(said=state.said)
    failures: list[Outcome] = []  # a dry run's too: the ones a real run would fail

    def echo(text: str, err: bool = False) -> None:
        if bar is not None:
            bar.write(text, file=sys.stderr if err else sys.stdout)
        else:
            click.echo(text, err=err)

    def report(outcome: Any) -> None:
        if is_failure(outcome):
            failures.append(outcome)
        if outcome.status == "skipped":
            if not as_json and log.isEnabledFor(logging.DEBUG):  # a re-scan skips thousands a second
                log.debug("%s", describe_outcome(outcome))
        else:
            notices, text = lines.line(outcome)
            for notice in notices:  # an analyzer's error, once per run, not once per photo
                echo(f"error: {notice}", err=True)
            if not as_json:
                echo(text)
        if as_json:
            click.echo(json.dumps(_outcome_json(outcome), ensure_ascii=False))
        if bar is not None:
            bar.update(1)

    # a dry run writes nothing, the state DB included (read-only, or in memory when there is none yet)
    db = StateDB(config.state_db, readonly=dry_run)
    with Pipeline.from_config(config, state.pm, state=db) as pipeline:
        for message in pipeline.setup_errors:
            click.echo(f"warning: {message}", err=True)
        for outcome in unreadable:
            report(outcome)
        run = pipeline.run
        if ray_address is not None:
            from .cluster import choose_runner

            say = functools.partial(click.echo, err=True)
            run = choose_runner(pipeline, ray_address, files, force=force, always=ray_always, say=say)
        summary = run(files, force=force, dry_run=dry_run, on_outcome=report)
        for outcome in unreadable:
            summary.add(outcome)
        pipeline.state.close()
    if bar is not None:
        bar.close()
    rate = summary.total / summary.seconds if summary.seconds else 0.0
    fine = summary.dry_run - sum(f.status == "dry-run" for f in failures)
    analysed = f", {fine} would be tagged" if dry_run else ""
    rewritten = f"{summary.rewritten} rewritten (metadata only), " if summary.rewritten else ""
    click.echo(
        f"{'dry run: ' if dry_run else ''}{summary.tagged} tagged, {rewritten}{summary.skipped} skipped "
        f"(already done), {len(failures)} failed{analysed}, in {summary.seconds:.1f} s ({rate:.1f} files/s)",
        err=as_json,
    )
    for failure in failures:
        click.echo(f"  failed: {lines.failure(failure)}", err=True)
    if failures:
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
    from .hardware import describe, probe
    from .runtime import AnalyzerRuntime

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
    runtime = AnalyzerRuntime(config, analyzers, hardware=hardware, hook=state.pm.hook)
    for analyzer in runtime.analyzers:
        name = analyzer.name
        head = f"  {name} ({analyzer.task}): {runtime.model_info(name).id}"
        broken = runtime.fingerprints().get(name) is None and runtime.error(name)
        if broken:
            problems += 1
            click.echo(f"{head}: BROKEN: {broken}")
            continue
        try:
            device = runtime.place(name)
        except ConfigError as e:
            problems += 1
            click.echo(f"{head}: NO USABLE DEVICE: {e}")
            continue
        where = f"{device.torch_device} {device.dtype}, {device.threads} threads ({device.reason})"
        if no_load:
            click.echo(f"{head} -> {where}")
            continue
        start = time.perf_counter()
        error = runtime.load(name)
        runtime.unload_idle()
        if error is None:
            click.echo(f"{head} -> {where}: available (loaded in {time.perf_counter() - start:.1f} s)")
        else:
            problems += 1
            click.echo(f"{head} -> {where}: NOT AVAILABLE: {error}")

    click.echo("\nPaths:")
    problems += _check_state_db(config.state_db)
    for folder in config.folders:
        ok = folder.is_dir() and os.access(folder, os.W_OK)
        problems += not ok
        click.echo(f"  folder {folder}: {'writable' if ok else 'MISSING or NOT WRITABLE'}")
    from .service.doctor import service_folder_lines  # the system service's user, in its own group

    for ok, line in service_folder_lines():
        problems += not ok
        click.echo(f"  {line}")
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
    """Check and print the effective configuration (after --config, environment and --set), plugin sections
    included; exit 2 on errors. Or print the documented defaults."""
    import yaml

    from .configdoc import render_default_config

    if defaults:
        click.echo(render_default_config(), nl=False)
        return
    config = state.config()
    errors = plugin_config_errors(config, state.pm)
    for error in errors:
        click.echo(f"configuration error: {error}", err=True)
    if errors:
        sys.exit(EXIT_USAGE)
    doc = config.model_dump(mode="json", exclude={"lines", "source"})
    click.echo(f"# effective configuration from {config.source}")
    click.echo(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), nl=False)


def plugin_config_errors(config: Config, pm: pluggy.PluginManager) -> list[str]:
    """Every plugin section checked the way a scan checks it: each enabled plugin registers (and so validates
    ``plugins.<name>`` against its settings model), then a section no plugin reads is named. Returns all the
    errors, not only the first; a plugin that fails for another reason is a warning, as in a scan."""
    from .registration import close_writers, register_plugins

    errors: list[str] = []
    found = register_plugins(config, pm, config_errors=errors)
    for warning in found.warnings:
        click.echo(f"warning: {warning}", err=True)
    close_writers(found.writers)
    return errors


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
