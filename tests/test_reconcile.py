"""The rescan plan (:func:`phototag.daemon.reconcile.plan`): pure, so every rule is one row of a table."""

from __future__ import annotations

from pathlib import Path

import pytest

from phototag.daemon.reconcile import Known, Plan, plan
from phototag.daemon.stability import FileStat

ROOT = Path("/photos")
NOW = 1_000_000.0
SETTLED = 5.0
OLD = FileStat(100, int((NOW - 60) * 1e9))  # last written a minute ago
FRESH = FileStat(100, int((NOW - 1) * 1e9))  # written a second ago
A = "/photos/a.jpg"


def run(walked=None, known=None, failed=None, **sets) -> Plan:
    return plan(ROOT, walked or {}, known or {}, failed or {}, now=NOW, settled_age=SETTLED, **sets)


def verdict(result: Plan, path: str = A) -> str:
    """What the plan does with ``path``."""
    if Path(path) in [p for p, _ in result.queue]:
        return "queue"
    if Path(path) in result.settle:
        return "settle"
    if Path(path) in result.forget:
        return "forget"
    return "nothing"


done_old = Known(OLD.size, OLD.mtime_ns, done=True)

# one file, every rule: (case, walked, known, failed, sets, expected)
ROWS = [
    ("new and settled", {A: OLD}, {}, {}, {}, "queue"),
    ("new and fresh: may still grow", {A: FRESH}, {}, {}, {}, "settle"),
    ("done and unchanged", {A: OLD}, {A: done_old}, {}, {}, "nothing"),
    ("done but changed", {A: FRESH}, {A: done_old}, {}, {}, "settle"),
    ("done, same size, new mtime", {A: OLD}, {A: Known(OLD.size, OLD.mtime_ns - 1, True)}, {}, {}, "queue"),
    ("recorded with other analyzers", {A: OLD}, {A: Known(OLD.size, OLD.mtime_ns, False)}, {}, {}, "queue"),
    ("failed and unchanged", {A: OLD}, {}, {A: (OLD.size, OLD.mtime_ns)}, {}, "nothing"),
    ("failed, then changed", {A: OLD}, {}, {A: (OLD.size - 1, OLD.mtime_ns)}, {}, "queue"),
    ("failed without a stat", {A: OLD}, {}, {A: (None, None)}, {}, "queue"),
    ("already queued", {A: OLD}, {}, {}, {"waiting": {A}}, "nothing"),
    ("in the batch in progress", {A: OLD}, {}, {}, {"in_flight": {A}}, "nothing"),
    ("settling in the tracker", {A: FRESH}, {}, {}, {"settling": {A}}, "nothing"),
    ("gone: its record", {"/photos/b.jpg": OLD}, {A: done_old}, {}, {}, "forget"),
    ("gone: its failure", {"/photos/b.jpg": OLD}, {}, {A: (1, 1)}, {}, "forget"),
    ("reported by the walk (a FIFO): not gone", {}, {A: done_old}, {}, {"reported": {A}}, "nothing"),
]


@pytest.mark.parametrize(("walked", "known", "failed", "sets", "expected"), [r[1:] for r in ROWS],
                         ids=[r[0] for r in ROWS])  # fmt: skip
def test_rule(walked, known, failed, sets, expected) -> None:
    result = run(walked, known, failed, **sets)
    assert verdict(result) == expected
    if expected == "queue":
        assert result.queue == [(Path(A), walked[A])]


def test_failures_under_other_roots_are_not_forgotten() -> None:
    result = run({"/photos/b.jpg": OLD}, {}, {"/other/a.jpg": (1, 1), "/photos-2/a.jpg": (1, 1)})
    assert result.forget == [] and result.kept == 0


def test_a_root_that_looks_empty_keeps_its_records() -> None:
    """An unmounted share looks like an empty folder: nothing is forgotten, and the plan says how much was kept."""
    result = run({}, {A: done_old, "/photos/b.jpg": done_old}, {"/photos/c.jpg": (1, 1)})
    assert result.forget == [] and result.kept == 3 and result.seen == 0


def test_a_root_with_only_unreadable_files_is_not_empty() -> None:
    result = run({}, {A: done_old}, {}, reported={"/photos/pipe.jpg"})
    assert result.forget == [Path(A)] and result.seen == 1 and result.kept == 0


def test_a_mixed_tree() -> None:
    walked = {
        "/photos/keep.jpg": OLD,
        "/photos/new.jpg": OLD,
        "/photos/growing.jpg": FRESH,
        "/photos/sub/queued.jpg": OLD,
    }
    known = {
        "/photos/keep.jpg": done_old,
        "/photos/deleted.jpg": done_old,
        "/photos/sub/moved-away.jpg": done_old,
    }
    failed = {"/photos/broken-and-deleted.jpg": (1, 1), "/elsewhere/x.jpg": (1, 1)}
    result = run(walked, known, failed, waiting={"/photos/sub/queued.jpg"})
    assert result.queue == [(Path("/photos/new.jpg"), OLD)]
    assert result.settle == [Path("/photos/growing.jpg")]
    assert result.forget == [
        Path("/photos/broken-and-deleted.jpg"),
        Path("/photos/deleted.jpg"),
        Path("/photos/sub/moved-away.jpg"),
    ]
    assert result.seen == 4 and result.kept == 0


def test_the_age_threshold_is_strict() -> None:
    at = FileStat(1, int((NOW - SETTLED) * 1e9))
    assert verdict(run({A: at})) == "settle"
    just_over = FileStat(1, int((NOW - SETTLED - 0.01) * 1e9))
    assert verdict(run({A: just_over})) == "queue"
