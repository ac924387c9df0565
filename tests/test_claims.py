"""Claims: a photo that another live phototag process is analysing is left to it; a dead one's claims lapse.

The "other process" is a real process (``sleep``) whose pid and start time own the claim, so liveness is
checked the way it is in production (``/proc/PID/stat``).
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from phototag.claims import Claims, Owner, process_start
from phototag.manager import get_plugin_manager, registered
from test_pipeline import Brightness, Plugin, collect


def test_claims_of_a_live_process_hold_and_lapse_when_it_dies(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    other = subprocess.Popen(["sleep", "60"])
    try:
        theirs = Owner(socket.gethostname(), other.pid, process_start(other.pid))
        with Claims(db, owner=theirs) as them, Claims(db) as us:
            a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
            assert them.claim([a]) == {}
            assert us.claim([a, b]) == {a: theirs}
            assert us.claim([b]) == {}  # ours already: claiming again is fine
            other.kill()
            other.wait()
            assert us.claim([a]) == {}  # its owner is gone: taken over
            assert set(us.holders()) == {a, b}
            us.release([a])
            assert set(us.holders()) == {b}
            us.release_all()
            assert us.holders() == {}
    finally:
        other.kill()
        other.wait()


def test_a_reused_pid_does_not_keep_a_claim(tmp_path: Path) -> None:
    with (
        Claims(tmp_path / "state.db", owner=Owner(socket.gethostname(), 1, "0")) as stale,
        Claims(tmp_path / "state.db") as us,
    ):
        stale.claim([tmp_path / "x.jpg"])  # pid 1 exists, but it did not start at tick 0
        assert us.claim([tmp_path / "x.jpg"]) == {}


def test_pipeline_leaves_a_photo_to_the_process_that_claimed_it(photos: Path, make_config) -> None:
    config = make_config()
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    other = subprocess.Popen(["sleep", "60"])
    try:
        theirs = Owner(socket.gethostname(), other.pid, process_start(other.pid))
        config.state_db.parent.mkdir(parents=True, exist_ok=True)
        with Claims(config.state_db, owner=theirs) as them:
            them.claim([photos / "cat.jpg"])
        analyzer = Brightness()
        with registered(pm, Plugin(analyzer), "inline"):
            summary, outcomes = collect(config, pm, [photos / "cat.jpg", photos / "rocket.jpg"])
        assert (summary.tagged, summary.skipped, sum(analyzer.calls)) == (1, 1, 1)
        assert outcomes["cat.jpg"].message == (
            f"being analysed by another phototag process (pid {other.pid} on {socket.gethostname()})"
        )
        other.kill()
        other.wait()
        with registered(pm, Plugin(analyzer), "inline"):
            summary, _ = collect(config, pm, [photos / "cat.jpg", photos / "rocket.jpg"])
        assert (summary.tagged, summary.skipped, sum(analyzer.calls)) == (1, 1, 2)
        with Claims(config.state_db) as anyone:
            assert anyone.holders() == {}  # each run drops its claims
    finally:
        other.kill()
        other.wait()
