"""``phototag state ...``: look after the state database (``config.state_db``).

``phototag state check [--json]`` opens the file read-only, runs SQLite's integrity check and counts what it
holds: files by status, cached analyzer runs, embeddings, the daemon's queue. Exit 0 when the file is sound
(or does not exist yet), 1 when it is damaged or unreadable; the message says how to recover.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import StateError
from .sqlitedb import damaged_message

if TYPE_CHECKING:
    from .state import StateDB


@dataclass
class StateReport:
    """What ``state check`` found. ``problems`` is empty when the file is sound."""

    path: str
    exists: bool
    schema_version: int | None = None
    files: dict[str, int] | None = None  # by status; None: could not be counted
    runs: int | None = None
    embeddings: int | None = None
    queue: dict[str, int | None] = field(default_factory=dict)  # None: no daemon has made its tables
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def check_state_db(path: Path) -> StateReport:
    """Look at the state DB at ``path`` without changing it. Never raises for a bad file: it is a problem."""
    from .state import StateDB  # numpy: only when the command runs, not for every `phototag` start

    report = StateReport(str(path), path.exists())
    if not report.exists:
        return report
    try:
        db = StateDB(path, readonly=True)
    except StateError as e:
        report.problems.append(str(e))
        return report
    with db:
        _step(report, lambda: _integrity(report, db, path))
        _step(report, lambda: setattr(report, "schema_version", db.schema_version()))
        _step(report, lambda: setattr(report, "files", db.counts()))
        _step(report, lambda: setattr(report, "runs", db.row_count("runs")))
        _step(report, lambda: setattr(report, "embeddings", db.row_count("embeddings")))
        _step(report, lambda: report.queue.update(waiting=db.row_count("watch_queue")))
        _step(report, lambda: report.queue.update(failed=db.row_count("watch_failed")))
    return report


def _step(report: StateReport, action: Any) -> None:
    """Run one look; a failure is recorded once (a damaged file tends to fail every query the same way)."""
    try:
        action()
    except StateError as e:
        if str(e) not in report.problems:
            report.problems.append(str(e))


def _integrity(report: StateReport, db: StateDB, path: Path) -> None:
    found = db.integrity_problems()
    if found:
        report.problems.append(damaged_message(path, "state database", f"integrity check: {found[0]}"))
        report.problems.extend(found[1:])


def _text(report: StateReport) -> list[str]:
    from .state import SCHEMA_VERSION

    if not report.exists:
        return [f"no state database at {report.path} yet (nothing has been scanned): ok"]
    lines = [f"state database {report.path}"]
    if report.schema_version is not None:
        note = ""
        if report.schema_version < SCHEMA_VERSION:
            note = f" (this phototag upgrades it to {SCHEMA_VERSION} on the next scan or watch)"
        lines.append(f"  schema version: {report.schema_version}{note}")
    if report.files is not None:
        by_status = ", ".join(f"{status} {n}" for status, n in sorted(report.files.items()))
        lines.append(f"  files: {sum(report.files.values())}" + (f" ({by_status})" if by_status else ""))
    for label, value in (("cached runs", report.runs), ("embeddings", report.embeddings)):
        if value is not None:
            lines.append(f"  {label}: {value}")
    waiting, failed = report.queue.get("waiting"), report.queue.get("failed")
    if waiting is not None or failed is not None:
        lines.append(f"  queue: {waiting or 0} waiting or in flight, {failed or 0} failed")
    elif report.queue:
        lines.append("  queue: none (no `phototag watch` has used this file)")
    lines += [f"problem: {p}" for p in report.problems] or ["ok"]
    return lines


@click.group("state")
def state_group() -> None:
    """Look after the state database (a cache of what was done; rebuilt when lost)."""


@state_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def check(state: Any, as_json: bool) -> None:
    """Verify the state database (read-only): integrity, schema version, what it holds. Exit 1 when damaged."""
    choice = state.state_db()
    if not as_json:
        click.echo(choice.line())
    report = check_state_db(choice.path)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo("\n".join(_text(report)))
    if not report.ok:
        sys.exit(1)
