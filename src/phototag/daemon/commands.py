"""``phototag watch``, ``phototag status`` and ``phototag retry`` (added by the builtin ``daemon`` plugin)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import click

from ..config import Config, load_config, parse_overrides

log = logging.getLogger("phototag")

HEARTBEAT_STALE = 30.0  # seconds: a daemon whose last heartbeat is older is reported as not responding


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, file_okay=False))
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Config file (overrides the global --config); re-read on SIGHUP.")  # fmt: skip
@click.pass_obj
def watch(state: Any, paths: tuple[Path, ...], config_path: Path | None) -> None:
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
    _log_for_journald()
    db = StateDB(config.state_db)
    service = Service(
        config, lambda cfg: PipelineProcessor(cfg, state.pm, db), roots=paths, reload_config=load
    )
    code = 1
    try:
        code = service.run()
    finally:
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
    """Show the daemon's queue: waiting, in flight, done, failed (with reasons), throughput."""
    from .queue import WorkQueue

    config = state.config()
    if not config.state_db.exists():
        click.echo(f"no state database at {config.state_db}: neither `phototag watch` nor `scan` has run yet")
        return
    from ..state import StateDB

    with WorkQueue(config.state_db) as queue, StateDB(config.state_db) as db:
        counts = queue.counts()
        failures = queue.failures()
        info = queue.daemon_info()
        files = db.counts()
    alive = _daemon_alive(info)
    if as_json:
        doc = {
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
    """Queue failed photos again (all, or those at or below PATHS), e.g. after fixing a model or permissions."""
    from .queue import WorkQueue

    config = state.config()
    with WorkQueue(config.state_db) as queue:
        chosen = queue.retry_failed([p.absolute() for p in paths] if paths else None)
        alive = _daemon_alive(queue.daemon_info())
    if not chosen:
        click.echo("nothing to retry" + (" under " + ", ".join(map(str, paths)) if paths else ""))
        return
    when = "the running daemon picks them up within seconds" if alive else "`phototag watch` processes them"
    click.echo(f"queued {len(chosen)} failed photo{'s' if len(chosen) != 1 else ''} again; {when}")


def _daemon_alive(info: dict[str, Any] | None) -> bool:
    if not info or not info.get("running"):
        return False
    try:
        os.kill(int(info["pid"]), 0)
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
