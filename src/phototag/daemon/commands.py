"""``phototag watch``, ``status``, ``retry`` and ``service`` (added by the builtin ``daemon`` plugin).

Why one module of ~490 lines: it is the daemon plugin's command line (watch, status, retry, service ...), a
thin layer over the daemon and service modules; one module per plugin keeps the plugin's CLI in one place.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import click

from ..config import Config, load_config, parse_overrides
from ..errors import StateError
from ..service.install import PROTECT_HOME_CHOICES

if TYPE_CHECKING:
    from ..service.locate import StateChoice
    from ..service.units import Scope

log = logging.getLogger("phototag")

HEARTBEAT_STALE = 30.0  # seconds: a daemon whose last heartbeat is older is reported as not responding


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, file_okay=False))
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Config file (overrides the global --config); re-read on SIGHUP.")  # fmt: skip
@click.option("--serve", "serve_address", metavar="ADDR", default=None,
              help="Also serve the HTTP API on ADDR (HOST:PORT, :PORT), sharing the loaded models.")  # fmt: skip
@click.pass_obj
def watch(state: Any, paths: tuple[Path, ...], config_path: Path | None, serve_address: str | None) -> None:
    """Watch PATHS (default: the configured folders) and tag new and changed photos once they are complete.

    Runs until SIGTERM/SIGINT (finishes the batch in progress first); SIGHUP reloads the config. Under systemd
    it reports READY/STATUS/WATCHDOG over $NOTIFY_SOCKET (see systemd/phototag.service).
    """
    from ..state import StateDB
    from .service import Service
    from .worker import PipelineProcessor

    path = config_path or state.config_path

    def load() -> Config:
        return load_config(path, parse_overrides(state.overrides))

    config = load()
    for root in paths:
        if not root.is_dir():
            raise click.UsageError(f"{root}: no such folder")
    if not paths and not config.folders:
        raise click.UsageError("no PATH given and no folders configured (set folders: in the config)")
    served = None
    if serve_address is not None:  # checked before anything starts: a refused address is a config error
        from ..serve.embedded import EmbeddedServer

        served = EmbeddedServer(config, state.pm, serve_address)
    _log_for_journald()
    db = StateDB(config.state_db)

    def make_processor(cfg: Config) -> PipelineProcessor:
        processor = PipelineProcessor(cfg, state.pm, db)
        if served is not None:  # the HTTP service uses this processor's runtime: one set of models
            served.attach(cfg, processor.pipeline.runtime)
        return processor

    service = Service(config, make_processor, roots=paths, reload_config=load)
    code = 1
    try:
        code = service.run()
    finally:
        if served is not None:
            served.stop()
        if service.abandoned:
            # the worker thread is still inside a batch we gave back: do not wait for it or tear the pipeline
            # down under it; exiftool exits by itself when we are gone (PHOTOTAG_PARENT_PID)
            logging.shutdown()
            os._exit(code)
        db.close()
    if code:
        sys.exit(code)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-n", "--failures", "limit", default=20, show_default=True, help="Failures to list (0: all).")
@click.pass_obj
def status(state: Any, as_json: bool, limit: int) -> None:
    """Show the daemon's queue: waiting, in flight, done, failed (with reasons), throughput.

    Reads the installed service's state DB (`phototag service install`) unless --config, $PHOTOTAG_CONFIG,
    $PHOTOTAG_STATE_DB or --set state_db=... says otherwise; the first line says which one.
    """
    _show_status(_state_choice(state), as_json, limit)


def _state_choice(state: Any) -> StateChoice:
    choice: StateChoice = state.state_db()
    return choice


def _check_readable(choice: StateChoice, command: str) -> bool:
    """False when there is no database yet; raises StateError when this user may not read it."""
    try:
        choice.path.stat()
    except FileNotFoundError:
        return False
    except PermissionError:
        hint = (f"run `sudo phototag {command}` (or --config/--set state_db=... for another database)"
                if choice.service else "check state_db in the config")  # fmt: skip
        raise StateError(f"{choice.path}: permission denied ({choice.why} state DB): {hint}") from None
    return True


def _show_status(choice: StateChoice, as_json: bool, limit: int, command: str = "status") -> None:
    from ..state import StateDB
    from .queue import WorkQueue

    if not as_json:
        click.echo(choice.line())
    if not _check_readable(choice, command):
        never = (
            "the service has not run yet"
            if choice.service
            else "neither `phototag watch` nor `scan` has run yet"
        )
        click.echo(f"no state database at {choice.path}: {never}")
        return
    readonly = choice.service is not None  # another user's file: look, do not touch
    try:
        with (
            WorkQueue(choice.path, readonly=readonly) as queue,
            StateDB(choice.path, readonly=readonly) as db,
        ):
            counts = queue.counts()
            failures = queue.failures()
            info = queue.daemon_info()
            files = db.counts()
    finally:
        _hand_back(choice.path)
    alive = _daemon_alive(info)
    if as_json:
        doc = {
            "database": {"path": str(choice.path), "chosen": choice.why},
            "daemon": {**(info or {}), "alive": alive},
            "queue": {"waiting": counts.queued, "retrying": counts.retrying, "in_flight": counts.in_flight},
            "done": counts.done,
            "state_db": files,
            "failed": [
                {"path": str(f.path), "error": f.error, "attempts": f.attempts, "failed_at": f.failed_at}
                for f in failures
            ],
        }
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(_daemon_line(info, alive))
    if info and alive:
        reasons = info.get("polling_reasons", {})
        for root, mode in sorted(info.get("roots", {}).items()):
            click.echo(f"  {root}: {mode}" + (f" ({reasons[root]})" if root in reasons else ""))
    settling = f", {info.get('settling', 0)} settling" if info and alive else ""
    retrying = f" ({counts.retrying} waiting to retry)" if counts.retrying else ""
    click.echo(
        f"queue: {counts.queued + counts.retrying} waiting{retrying}, {counts.in_flight} in flight{settling}"
    )
    recorded = ", ".join(f"{n} {s}" for s, n in sorted(files.items())) or "nothing yet"
    click.echo(f"done: {counts.done} by the daemon; state DB: {recorded}")
    if info and alive:
        click.echo(f"throughput: {info.get('rate_per_min', 0):.1f} photos/min (last minute), "
                   f"{info.get('rate_per_min_5', 0):.1f} (last 5 minutes)")  # fmt: skip
    click.echo(f"failed: {len(failures)}" + (" (`phototag retry` queues them again)" if failures else ""))
    shown = failures if limit <= 0 else failures[-limit:]
    for f in shown:
        when = datetime.datetime.fromtimestamp(f.failed_at).strftime("%Y-%m-%d %H:%M")
        tries = f"{f.attempts} attempt{'s' if f.attempts != 1 else ''}"
        what = f.error if f.error.startswith(str(f.path)) else f"{f.path}: {f.error}"
        click.echo(f"  {what} [{tries}, {when}]")
    if len(shown) < len(failures):
        click.echo(f"  ... and {len(failures) - len(shown)} more (-n 0 lists all)")


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.pass_obj
def retry(state: Any, paths: tuple[Path, ...]) -> None:
    """Queue failed photos again (all, or those at or below PATHS), e.g. after fixing a model or permissions.

    Uses the installed service's state DB unless told otherwise, as `status` does."""
    from .queue import WorkQueue

    choice = _state_choice(state)
    click.echo(choice.line())
    if not _check_readable(choice, "retry"):
        click.echo(f"nothing to retry: no state database at {choice.path}")
        return
    try:
        with WorkQueue(choice.path) as queue:
            chosen = queue.retry_failed([p.absolute() for p in paths] if paths else None)
            alive = _daemon_alive(queue.daemon_info())
    finally:
        _hand_back(choice.path)
    if not chosen:
        click.echo("nothing to retry" + (" under " + ", ".join(map(str, paths)) if paths else ""))
        return
    when = "the running daemon picks them up within seconds" if alive else "`phototag watch` processes them"
    click.echo(f"queued {len(chosen)} failed photo{'s' if len(chosen) != 1 else ''} again; {when}")


def _hand_back(db_path: Path) -> None:
    """Root opening another user's database (the service's) may have created ``-wal``/``-shm`` files owned by
    root, which the service could then not write: give them to the database's owner."""
    if os.geteuid() != 0:
        return
    try:
        owner = db_path.stat()
    except OSError:
        return
    for suffix in ("-wal", "-shm", "-journal"):
        side = db_path.with_name(db_path.name + suffix)
        try:
            st = side.lstat()
            if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
                os.chown(side, owner.st_uid, owner.st_gid, follow_symlinks=False)
        except OSError:
            continue


def _daemon_alive(info: dict[str, Any] | None) -> bool:
    if not info or not info.get("running"):
        return False
    try:
        os.kill(int(info["pid"]), 0)
    except PermissionError:  # it exists, as another user (the service's)
        return True
    except (OSError, ValueError, KeyError):
        return False
    return True


def _daemon_line(info: dict[str, Any] | None, alive: bool) -> str:
    if not info:
        return "daemon: has never run with this state database"
    if not alive:
        last = datetime.datetime.fromtimestamp(info.get("heartbeat", 0)).strftime("%Y-%m-%d %H:%M:%S")
        return f"daemon: not running (last seen {last})"
    up = datetime.timedelta(seconds=int(time.time() - info.get("started", time.time())))
    age = time.time() - info.get("heartbeat", 0)
    stale = "  NOT RESPONDING" if age > HEARTBEAT_STALE else ""
    return f"daemon: running, pid {info['pid']}, up {up}, last heartbeat {age:.0f} s ago{stale}"


class _JournalFormatter(logging.Formatter):
    """``<N>logger: message``: journald reads the ``<N>`` syslog priority and adds its own timestamp."""

    PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", "\n    ")
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{record.name}: {text}"


def _log_for_journald() -> None:
    """Under systemd (stderr is the journal stream), log with priorities and without timestamps."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return
    if stream != f"{st.st_dev}:{st.st_ino}":
        return
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_JournalFormatter("%(message)s"))


# -- phototag service ---------------------------------------------------------------------------------------------


@click.group("service")
def service() -> None:
    """Run phototag as a systemd service: `install` writes the unit and the config, `status` shows how it is
    doing, `uninstall` removes what install wrote."""


@service.command("install")
@click.option(
    "--user",
    "user_service",
    is_flag=True,
    help="A user service: runs as you (`loginctl enable-linger` keeps it running when you log out).",
)
@click.option(
    "--folders",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Photo folder to watch (repeatable); default: folders: in the config.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the unit, and what would be written, instead of writing."
)
@click.option(
    "--unit-dir",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Write the unit here instead of /etc/systemd/system (~/.config/systemd/user with --user).",
)
@click.option(
    "--config-dir",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Put config.yaml here instead of /etc/phototag (~/.config/phototag with --user).",
)
@click.option(
    "--group",
    default="photos",
    show_default=True,
    help="System service: the group that may write the photo folders.",
)
@click.option(
    "--executable",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="PATH",
    help="The phototag to run (default: this one, with its own interpreter and venv).",
)
@click.option(
    "--arg",
    "extra_args",
    multiple=True,
    metavar="ARG",
    help="Add ARG to the service's `phototag watch` command line (repeatable).",
)
@click.option(
    "--protect-home",
    type=click.Choice(PROTECT_HOME_CHOICES),
    default="auto",
    show_default=True,
    help="System service, folders under /home: read-only + ReadWritePaths=, or tmpfs + BindPaths= "
    "(auto: tmpfs only when a home folder above them is closed to the service).",
)
@click.option(
    "--replace-config", is_flag=True, help="Replace an existing config file (kept as config.yaml.bak)."
)
@click.pass_obj
def service_install(state: Any, user_service: bool, folders: tuple[Path, ...], dry_run: bool,
                    unit_dir: Path | None, config_dir: Path | None, group: str, executable: Path | None,
                    extra_args: tuple[str, ...], protect_home: str, replace_config: bool) -> None:  # fmt: skip
    """Install phototag as a systemd service (a system one; --user: your own), running this phototag.

    Writes the unit with this phototag's interpreter in ExecStart=, the photo folders in ReadWritePaths= and
    ProtectHome= set for folders under /home; puts the config in place (an existing one is kept); checks that
    the service can reach phototag and write the folders (and the folders created in them later); then prints
    the systemctl commands to run. Runs nothing itself.
    """
    from ..config import default_config_path
    from ..service.install import Request, apply_install, plan_install
    from ..service.program import InstallRefused, program_at, this_program

    config = state.config()
    try:
        request = Request(
            scope="user" if user_service else "system",
            program=program_at(executable) if executable else this_program(),
            folders=folders,
            config_folders=config.folders,
            source_config=state.config_path or default_config_path(),
            unit_dir=unit_dir,
            config_dir=config_dir,
            group=group,
            extra_args=extra_args,
            protect_home=protect_home,
            replace_config=replace_config,
        )
        plan = plan_install(request)
        if dry_run:
            click.echo(plan.unit_text, nl=False)
            _echo_plan(plan, err=True)
            return
        done = apply_install(plan)
    except InstallRefused as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename}: {e.strerror} (nothing more was written)") from None
    for line in done:
        click.echo(line)
    _echo_plan(plan)


def _echo_plan(plan: Any, err: bool = False) -> None:
    """Notes, folder checks and next steps (``err``: on stderr, for --dry-run, whose stdout is the unit)."""
    prefix = "# " if err else ""
    if err:
        click.echo(f"# would write {plan.unit_path}", err=True)
        what = "would write" if plan.config_text is not None else "would keep"
        click.echo(f"# {what} {plan.config_path}", err=True)
    for note in plan.notes:
        click.echo(f"{prefix}{note}", err=err)
    for report in plan.reports:
        state = "OK" if report.ok and not report.warnings else "PROBLEM" if not report.ok else "warning"
        click.echo(f"{prefix}folder {report.folder}: {state}", err=err)
        for line in (*report.problems, *report.warnings):
            click.echo(f"{prefix}  {line}", err=err)
    click.echo(f"{prefix}next:", err=err)
    for step in plan.next_steps:
        click.echo(f"{prefix}  {step}", err=err)


@service.command("uninstall")
@click.option("--user", "user_service", is_flag=True, help="The user service.")
@click.option("--unit-dir", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Where install wrote the unit (its --unit-dir).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Say what would be removed.")
@click.pass_obj
def service_uninstall(state: Any, user_service: bool, unit_dir: Path | None, dry_run: bool) -> None:
    """Remove what `service install` wrote: the unit, the config if unchanged since, the folders it created if
    empty. Refuses while the service is enabled or running."""
    from ..service.install import apply_uninstall, plan_uninstall
    from ..service.program import InstallRefused

    try:
        plan = plan_uninstall("user" if user_service else "system", unit_dir)
    except InstallRefused as e:
        raise click.ClickException(str(e)) from None
    if dry_run:
        for path in plan.remove:
            click.echo(f"would remove {path}")
    else:
        try:
            lines = apply_uninstall(plan)
        except OSError as e:
            raise click.ClickException(f"{e.filename}: {e.strerror}") from None
        for line in lines:
            click.echo(line)
    for note in plan.notes:
        click.echo(note)
    if plan.next_steps:
        click.echo("next:")
        for step in plan.next_steps:
            click.echo(f"  {step}")


@service.command("status")
@click.option("--user", "user_service", is_flag=True, help="The user service (default: it, if installed).")
@click.option("--system", "system_service", is_flag=True, help="The system service.")
@click.option(
    "--unit-dir",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Where install wrote the unit (its --unit-dir).",
)
@click.option("-n", "--failures", "limit", default=20, show_default=True, help="Failures to list (0: all).")
@click.pass_obj
def service_status(state: Any, user_service: bool, system_service: bool, unit_dir: Path | None,
                   limit: int) -> None:  # fmt: skip
    """The installed service: its unit, what systemd and the journal say, and its queue (from its own state
    DB, as `phototag status` shows it)."""
    from ..service.locate import StateChoice, find_installed

    scope: Scope | None = "user" if user_service else "system" if system_service else None
    found = find_installed(scope, unit_dir=unit_dir)
    if found is None:
        click.echo("no phototag service is installed (`phototag service install`)")
        sys.exit(1)
    click.echo(f"unit: {found.describe}")
    click.echo(f"runs: {shlex.join(found.argv)}")
    click.echo(f"config: {found.config or 'the default'}")
    if _systemd_running():
        _run_and_echo([*found.systemctl(), "status", "--no-pager", "--lines=0", "phototag.service"])
        _run_and_echo([*found.journalctl(), "-u", "phototag.service", "-n", "15", "--no-pager"])
    else:
        click.echo("systemd is not running here (no /run/systemd/system): no unit state or journal to show")
    if found.state_db is None:
        click.echo("the unit sets no PHOTOTAG_STATE_DB: `phototag status` with its config shows its queue")
        return
    click.echo("")
    _show_status(StateChoice(found.state_db, f"the installed {found.scope} service's", found), False, limit,
                 "service status")  # fmt: skip


def _systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def _run_and_echo(argv: list[str]) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        click.echo(f"{shlex.join(argv)}: {e}")
        return
    click.echo(f"$ {shlex.join(argv)}")
    for line in (result.stdout + result.stderr).rstrip().splitlines():
        click.echo(f"  {line}")
