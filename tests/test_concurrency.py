"""Concurrent writers (RELIABILITY.md item 16): two or four `phototag scan` processes at once on the same
photos, with one shared state DB or one each, in sidecar and in embed mode, and a scan beside `phototag watch`.

The photos carry their user's own metadata (embedded keywords and caption, half of them a user-written XMP
sidecar too). After every round: no photo lost or changed in its pixels, every user keyword and caption where
the user put it, no keyword twice, every sidecar valid, no temp file left behind; a scan that lost a race
says so with a transient message, and one clean scan afterwards finishes the job with exit 0.

Real processes (``python -m phototag``), real exiftool, real SQLite; the analyzer is the fast counting plugin
(``tests/daemon_plugin.py``) so no model loads.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from concurrent_scans import (
    Pristine,
    Scan,
    analyzed,
    check_exit,
    install_counting_plugin,
    make_user_photos,
    run_scans,
    scan_command,
    scan_env,
    survey_folder,
)
from test_daemon import Daemon

N_PHOTOS = 24  # half with a user sidecar
ROUNDS = 2  # the default suite stays under ~2.5 min on 2 cores


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    return make_user_photos(tmp_path_factory.mktemp("concurrency") / "pristine", N_PHOTOS)


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return install_counting_plugin(tmp_path_factory.mktemp("dist"))


@pytest.mark.parametrize("mode", ["sidecar", "embed"])
@pytest.mark.parametrize("db", ["same-db", "separate-dbs"])
@pytest.mark.parametrize("n", [2, 4])
def test_concurrent_scans_lose_nothing(
    pristine: Pristine, plugin_path: str, tmp_path: Path, mode: str, db: str, n: int
) -> None:
    """N scans started at once on one folder, ROUNDS times from the pristine copy. Each round: nothing of the
    user's lost, no duplicates, valid sidecars, no temp files; a photo a scan reported tagged is tagged; exit 1
    only for transient failures; each scan analyses a photo at most once (two scans may both analyse a photo
    neither had finished), every photo is analysed by some scan. Then one clean scan on the first scan's state
    DB: exit 0, every photo tagged, and no photo analysed again that a scan on that DB had tagged."""
    env = scan_env(plugin_path)
    folder = tmp_path / "photos"
    for rnd in range(ROUNDS):
        start = time.monotonic()
        pristine.copy_to(folder)
        work = tmp_path / f"round{rnd}"
        log = work / "analyzed.log"
        dbs = [work / ("state.db" if db == "same-db" else f"state{i}.db") for i in range(n)]
        scans = run_scans(
            Scan(scan_command(folder, dbs[i], mode, log), env, work / f"scan{i}", dbs[i]) for i in range(n)
        )
        transient = [m for s in scans for m in check_exit(s)]
        after = survey_folder(folder, pristine, mode)
        after.assert_safe()
        reported = {name for s in scans for name, (st, _) in s.outcomes().items() if st == "tagged"}
        assert not reported & set(after.untagged), "a scan said tagged, the photo is not"
        # each scan process looks at each photo at most once; every photo was analysed by someone
        per_scan = {s.pid: Counter(name for name, pid in analyzed(log) if pid == s.pid) for s in scans}
        assert all(max(c.values(), default=1) == 1 for c in per_scan.values()), per_scan
        round_counts = Counter(name for name, _ in analyzed(log))
        assert set(round_counts) == set(pristine.names)

        # one clean scan on the first scan's state DB finishes whatever a lost race left
        clean = Scan(scan_command(folder, dbs[0], mode, log), env, work / "clean", dbs[0])
        run_scans([clean])
        assert clean.returncode == 0, clean.stdout()[-3000:] + clean.stderr()[-3000:]
        final = survey_folder(folder, pristine, mode)
        final.assert_all_good()
        # a photo a scan on that DB tagged is recorded there and unchanged since: not analysed again
        tagged_on_db0 = {
            name
            for s in scans
            if s.state_db == dbs[0]
            for name, (status, _) in s.outcomes().items()
            if status == "tagged"
        }
        again = {name for name, pid in analyzed(log) if pid == clean.pid}
        assert not again & tagged_on_db0, "the re-scan analysed a photo finished on its state DB"
        print(
            f"{mode} {db} x{n} round {rnd}: exits {[s.returncode for s in scans]}, "
            f"analyses {sum(round_counts.values())} for {len(pristine.names)} photos "
            f"(max {max(round_counts.values())} per photo), {len(transient)} transient failures, "
            f"re-scan analysed {len(again)}; after the round: {after.line()}; "
            f"after the clean scan: tagged {final.tagged}; {time.monotonic() - start:.1f} s"
        )
        print_transient(transient)


@pytest.mark.parametrize("mode", ["sidecar", "embed"])
def test_scan_beside_the_daemon_on_the_same_tree(
    pristine: Pristine, plugin_path: str, tmp_path: Path, mode: str
) -> None:
    """`phototag watch` (its start-up scan) and `phototag scan` on the same folder and state DB at once: the
    same invariants; the daemon ends with nothing failed and stops cleanly; a clean scan exits 0."""
    folder = pristine.copy_to(tmp_path / "photos")
    base = tmp_path / "daemon"
    base.mkdir()
    d = Daemon(base, [folder], plugin_path, plugins="daemon,xmp,sidecar,counting",
               settings={"metadata.mode": mode, "batch_size": 4},
               watch={"retry_delay": 0.2})  # fmt: skip
    cmd = [sys.executable, "-m", "phototag", "-c", str(d.config_path), "scan", "--json", str(folder)]
    try:
        d.start(wait_ready=False)
        scan = Scan(cmd, d.env, tmp_path / "scan", d.state_db).start()
        d.wait_message("READY=1", 60)
        scan.wait(120)
        transient = check_exit(scan)
        d.wait_done([folder / name for name in pristine.names], timeout=120)
        assert d.failed() == {}
        assert d.stop() == 0, d.text()[-3000:]
    finally:
        d.cleanup()
    survey = survey_folder(folder, pristine, mode)
    survey.assert_all_good()
    counts = Counter(name for name, _ in analyzed(d.log))
    by_daemon = sum(1 for _, pid in analyzed(d.log) if pid != scan.pid)
    clean = subprocess.run(cmd, env=d.env, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]
    assert Counter(name for name, _ in analyzed(d.log)) == counts, "the clean scan analysed a finished photo"
    survey_folder(folder, pristine, mode).assert_all_good()
    print(
        f"{mode}: scan exit {scan.returncode}, analyses {sum(counts.values())} for {len(pristine.names)} photos "
        f"({by_daemon} by the daemon, max {max(counts.values())} per photo), "
        f"{len(transient)} transient failures; {survey.line()}"
    )
    print_transient(transient)


def print_transient(messages: list[str]) -> None:
    """How many of each transient failure (the path taken out), with one full example each."""
    kinds: dict[str, list[str]] = {}
    for m in messages:
        kinds.setdefault(m.rsplit(": ", 1)[-1], []).append(m)
    for text, examples in kinds.items():
        print(f"   {len(examples)} x transient {text!r}, e.g. {examples[0]}")
