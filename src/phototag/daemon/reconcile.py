"""What a rescan of one root does: a pure plan from what the walk found and what the daemon knows.

No I/O here: :meth:`phototag.daemon.service.Service._reconcile` walks the root, reads the state DB and the queue,
calls :func:`plan`, and applies the :class:`Plan`. For each file the walk found, the first rule that holds wins:

1. recorded as done with the current analyzers, and size and mtime unchanged: nothing to do;
2. failed before and unchanged since: nothing (``phototag retry``, or a change, queues it again);
3. already in the queue, in the batch in progress, or settling in the stability tracker: nothing;
4. last modified more than ``settled_age`` seconds ago: queue it now;
5. else (written moments ago, it may still be growing): let the stability tracker judge it.

Recorded photos and failures below the root that the walk did not find are forgotten, unless the walk found
nothing at all there: a root that is suddenly empty is more likely an unmounted share than a deleted library, so
its records are kept until it has files again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .stability import FileStat


@dataclass(frozen=True)
class Known:
    """What the state DB says about a photo."""

    size: int
    mtime_ns: int
    done: bool
    """Done with the analyzers the worker runs now (status ``done``, same fingerprints)."""


@dataclass
class Plan:
    """What to do after walking one root."""

    queue: list[tuple[Path, FileStat]] = field(default_factory=list)
    """Settled files to queue now (the service still skips those that turn out current)."""
    settle: list[Path] = field(default_factory=list)
    """Files written moments ago: for the stability tracker."""
    forget: list[Path] = field(default_factory=list)
    """Gone: forget their records, failures and queue rows."""
    seen: int = 0
    """Files the walk found, the ones it reported as unreadable included."""
    kept: int = 0
    """Records kept although their files were not found (the root looked empty: unmounted?)."""


def plan(
    root: Path,
    walked: Mapping[str, FileStat],
    known: Mapping[str, Known],
    failed: Mapping[str, tuple[int | None, int | None]],
    *,
    waiting: Collection[str] = (),
    in_flight: Collection[str] = (),
    settling: Collection[str] = (),
    reported: Collection[str] = (),
    now: float,
    settled_age: float,
) -> Plan:
    """The plan for ``root`` (absolute). Paths are ``str(path)`` everywhere:

    - ``walked``: what the walk found below ``root``, with its stat;
    - ``known``: the state DB's records below ``root``;
    - ``failed``: the daemon's failed list (any root), with the size and mtime each failure was recorded at;
    - ``waiting``: the queue (waiting or in flight); ``in_flight``: the worker's batch in progress;
      ``settling``: the paths the stability tracker holds;
    - ``reported``: what the walk found but reported as unreadable (a FIFO, a folder it cannot list): not gone;
    - ``now``: wall-clock seconds (compared with mtimes); ``settled_age``: seconds after its last change from
      which a file counts as complete.
    """
    result = Plan(seen=len(walked) + sum(1 for p in reported if p not in walked))
    for key, stat in walked.items():
        rec = known.get(key)
        if rec is not None and rec.done and (rec.size, rec.mtime_ns) == (stat.size, stat.mtime_ns):
            continue
        if failed.get(key) == (stat.size, stat.mtime_ns):
            continue
        if key in waiting or key in in_flight or key in settling:
            continue
        if now - stat.mtime_ns / 1e9 > settled_age:
            result.queue.append((Path(key), stat))
        else:
            result.settle.append(Path(key))
    missing = [p for p in known if p not in walked and p not in reported]
    missing += [
        p
        for p in failed
        if p not in walked and p not in reported and p not in known and Path(p).is_relative_to(root)
    ]
    if missing and not result.seen:
        result.kept = len(missing)
    else:
        result.forget = [Path(p) for p in sorted(missing)]
    return result
