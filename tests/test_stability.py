"""The stability tracker: pure decisions from injected times and stats (no sleeping, no files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from phototag.daemon.stability import FileStat, StabilityTracker, Verdict

P = Path("/photos/a.jpg")
Q = Path("/photos/sub/b.jpg")


def settle(tracker: StabilityTracker, path: Path, stat: FileStat | None, start: float, step: float = 0.1,
           until: float = 1000.0) -> tuple[Verdict, float]:  # fmt: skip
    """Check whenever the tracker says the path is due, with an unchanging ``stat``; return verdict and time."""
    now = start
    while now <= until:
        if path in tracker.due(now):
            verdict = tracker.check(path, stat, now)
            if verdict is not Verdict.WAIT:
                return verdict, now
        now = round(now + step, 6)
    return Verdict.WAIT, now


def test_quiet_period_then_confirmed_stat_makes_a_file_ready() -> None:
    t = StabilityTracker(2.0, confirm=0.5)
    t.touch(P, 0.0)
    assert t.due(1.9) == []  # still inside the quiet period
    assert t.due(2.0) == [P]
    assert t.check(P, FileStat(100, 1), 2.0) is Verdict.WAIT  # first stat: needs confirming
    assert t.due(2.4) == [] and t.due(2.5) == [P]
    assert t.check(P, FileStat(100, 1), 2.5) is Verdict.READY
    assert P not in t and len(t) == 0


def test_every_event_restarts_the_quiet_period() -> None:
    """A slow writer: an event every second, for ten seconds; nothing is ready before it stops."""
    t = StabilityTracker(2.0, confirm=0.5)
    for second in range(11):
        t.touch(P, float(second), writing=True)
        t.touch(P, float(second) + 0.01, writing=False)  # writes and closes each time (like `cat >> file`)
        assert t.due(float(second) + 0.5) == []
    verdict, when = settle(t, P, FileStat(1000, 5), 10.0)
    assert verdict is Verdict.READY and when >= 12.5


def test_a_stat_change_without_events_restarts_confirmation() -> None:
    """Writes that send no events (mmap, another host on NFS) are caught by comparing stats."""
    t = StabilityTracker(1.0, confirm=0.5)
    t.touch(P, 0.0)
    assert t.check(P, FileStat(10, 1), 1.0) is Verdict.WAIT
    assert t.check(P, FileStat(20, 2), 1.5) is Verdict.WAIT  # grew: start confirming again
    assert t.check(P, FileStat(20, 2), 1.9) is Verdict.WAIT  # not yet 0.5 s
    assert t.check(P, FileStat(20, 2), 2.0) is Verdict.READY


def test_open_writer_that_stalls_is_held_until_it_closes() -> None:
    """A writer that stops half-way and keeps the file open: not ready after the quiet period."""
    t = StabilityTracker(1.0, confirm=0.5, open_write_timeout=60.0)
    t.touch(P, 0.0)  # created
    t.touch(P, 0.1, writing=True)  # first half written, then nothing
    verdict, _ = settle(t, P, FileStat(500, 1), 0.2, until=59.0)
    assert verdict is Verdict.WAIT
    t.touch(P, 59.5, writing=True)  # the rest arrives
    t.touch(P, 59.6, writing=False)  # and the writer closes
    verdict, when = settle(t, P, FileStat(1000, 2), 59.6)
    assert verdict is Verdict.READY and 61.0 <= when <= 61.3


def test_open_writer_that_never_closes_is_released_after_the_timeout() -> None:
    t = StabilityTracker(1.0, confirm=0.5, open_write_timeout=30.0)
    t.touch(P, 0.0, writing=True)
    verdict, when = settle(t, P, FileStat(500, 1), 0.0)
    assert verdict is Verdict.READY and 30.0 <= when <= 30.6


def test_polled_paths_need_the_stat_unchanged_for_the_whole_delay() -> None:
    """Polling reports changes once per poll: the tracker's own stats decide, over a full delay."""
    t = StabilityTracker(2.0, confirm=0.5)
    t.touch(P, 0.0, polled=True)
    assert t.due(0.0) == [P]  # stat at once: the quiet period means nothing between polls
    assert t.check(P, FileStat(10, 1), 0.0) is Verdict.WAIT
    assert t.check(P, FileStat(20, 2), 1.5) is Verdict.WAIT  # still growing: confirm again from here
    verdict, when = settle(t, P, FileStat(20, 2), 1.5)
    assert verdict is Verdict.READY and when == pytest.approx(3.5)
    t.touch(Q, 0.0)  # an inotify path only confirms for 0.5 s
    verdict, when = settle(t, Q, FileStat(10, 1), 0.0)
    assert verdict is Verdict.READY and when == pytest.approx(2.5)


def test_polled_writes_do_not_mark_the_file_open() -> None:
    t = StabilityTracker(1.0, confirm=0.5, open_write_timeout=300.0)
    t.touch(P, 0.0, polled=True)  # the service passes writing=None for polled events
    verdict, when = settle(t, P, FileStat(1, 1), 0.0)
    assert verdict is Verdict.READY and when < 3.0


def test_vanished_file_is_gone_and_forgotten() -> None:
    t = StabilityTracker(1.0)
    t.touch(P, 0.0)
    assert t.check(P, None, 1.0) is Verdict.GONE
    assert P not in t
    assert t.check(P, FileStat(1, 1), 2.0) is Verdict.GONE  # unknown path


def test_zero_delay_is_ready_at_the_first_check() -> None:
    t = StabilityTracker(0.0)
    t.touch(P, 5.0)
    assert t.due(5.0) == [P]
    assert t.check(P, FileStat(1, 1), 5.0) is Verdict.READY


def test_forget_under_and_next_due() -> None:
    t = StabilityTracker(2.0)
    assert t.next_due() is None
    t.touch(P, 0.0)
    t.touch(Q, 1.0)
    t.touch(Path("/photos/subway.jpg"), 3.0)
    assert t.next_due() == 2.0
    assert t.forget_under(Path("/photos/sub")) == [Q]  # not /photos/subway.jpg
    assert sorted(t.paths()) == [P, Path("/photos/subway.jpg")]
    t.forget(P)
    assert t.next_due() == 5.0


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        StabilityTracker(-1.0)
