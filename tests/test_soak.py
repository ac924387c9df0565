"""Soak (RELIABILITY.md items 7 and 16 together): several `phototag scan` processes at once over a few hundred
photos that carry their user's own metadata, killed with kill -9 at random moments (the whole process group:
the scan and its exiftool child) and restarted, for a bounded number of kills; then one clean scan.

Three scan slots run all the time: two share a state DB, the third has its own. Every photo's folder is shared
by all of them (four folders of 60 photos). Whatever the kills hit, nothing of the user's may be lost, no
keyword duplicated, no sidecar left invalid; after the clean scan no temp file is left and every photo is
tagged. Seeded randomness: the seed is printed, the run is repeatable up to the machine's timing.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from concurrent_scans import (
    TRANSIENT,
    Pristine,
    Scan,
    check_exit,
    install_counting_plugin,
    make_user_photos,
    scan_command,
    scan_env,
    survey_folder,
)
from phototag.tempfiles import GRACE, is_temp_name

N_PHOTOS = 240  # 120 of them with a user sidecar
FOLDERS = 4
KILLS = 20  # kill -9s per mode
BUDGET = 70.0  # seconds of killing and restarting per mode, at most
# seconds of "model" per photo: scans tag fast enough that, without it, most kills land after the tree is done
# (then they test a stat-only re-scan, not a write)
DELAY = 0.05
# a scan next to a killed one may also meet the killed writer's temp file before it is stale (TempBusy)
ALLOWED = (*TRANSIENT, "will be tried again")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    return make_user_photos(tmp_path_factory.mktemp("soak") / "pristine", N_PHOTOS, subfolders=FOLDERS)


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return install_counting_plugin(tmp_path_factory.mktemp("dist"))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sidecar", "embed"])
def test_concurrent_scans_killed_at_random_then_one_clean_scan(
    pristine: Pristine, plugin_path: str, tmp_path: Path, mode: str
) -> None:
    seed = f"soak-{mode}"
    rng = random.Random(seed)
    folder = pristine.copy_to(tmp_path / "photos")
    env = scan_env(plugin_path)
    log = tmp_path / "analyzed.log"
    dbs = [tmp_path / "shared.db", tmp_path / "shared.db", tmp_path / "own.db"]
    # slot -> (scan, when to kill it: ("tagged", k) once it has tagged k photos, so mid-run; ("time", t) at a
    # random moment, start-up included; None: let it run to its end)
    running: dict[int, tuple[Scan, tuple[str, float] | None]] = {}
    exited: list[Scan] = []
    killed: list[tuple[Scan, int]] = []  # (scan, photos it had reported when killed)
    temps_after_kills = 0  # temp files in the tree right after a kill (the killed writer's, or a live one's)
    launched = 0
    last_kill = 0.0

    def launch(slot: int) -> None:
        nonlocal launched
        scan = Scan(
            scan_command(folder, dbs[slot], mode, log, delay=DELAY),
            env,
            tmp_path / f"scan{launched:03d}",
            dbs[slot],
        )
        launched += 1
        draw = rng.random()
        plan = (
            ("tagged", rng.randint(1, 60))
            if draw < 0.45
            else ("time", time.monotonic() + rng.uniform(1.0, 9.0))
            if draw < 0.85
            else None
        )
        running[slot] = (scan.start(), plan)

    def due(scan: Scan, plan: tuple[str, float] | None) -> bool:
        if plan is None:
            return False
        if plan[0] == "time":
            return time.monotonic() >= plan[1]
        return sum(1 for status, _ in scan.outcomes().values() if status == "tagged") >= plan[1]

    start = time.monotonic()
    for slot in range(len(dbs)):
        launch(slot)
    while len(killed) < KILLS and time.monotonic() - start < BUDGET:
        for slot, (scan, plan) in list(running.items()):
            assert scan.proc is not None
            if scan.proc.poll() is not None:
                scan.returncode = scan.proc.returncode
                exited.append(scan)
                launch(slot)
            elif due(scan, plan):
                progress = len(scan.outcomes())
                scan.kill()  # os.killpg(SIGKILL): the scan and its exiftool
                last_kill = time.monotonic()
                killed.append((scan, progress))
                temps_after_kills += sum(1 for p in folder.rglob("*") if is_temp_name(p.name))
                launch(slot)
        time.sleep(0.02)  # polling for the next exit or kill moment
    for scan, _ in running.values():  # the last ones run to their end
        scan.wait(240)
        exited.append(scan)
    loop_seconds = time.monotonic() - start

    transient = [m for scan in exited for m in check_exit(scan, ALLOWED)]
    midway = survey_folder(folder, pristine, mode, expect_tagged=False)
    midway.assert_safe(allow_leftovers=True)  # kills leave temp files; the next writer removes them

    # one clean scan, once the last killed writer's temp files count as stale
    time.sleep(max(0.0, last_kill + GRACE + 0.5 - time.monotonic()))
    clean = Scan(scan_command(folder, dbs[0], mode, log), env, tmp_path / "clean", dbs[0])
    clean.start().wait(240)
    final = survey_folder(folder, pristine, mode)

    print(f"\nsoak {mode} (seed {seed!r}): {len(killed)} kill -9s "
          f"({sum(1 for _, p in killed if p)} after the scan had reported photos), {launched} scans started, "
          f"{len(exited)} ran to their end (exits {sorted(s.returncode for s in exited)}), "
          f"{temps_after_kills} temp files seen right after the kills, {len(transient)} transient failures, "
          f"{loop_seconds:.0f} s; clean scan exit {clean.returncode}")  # fmt: skip
    kinds: dict[str, int] = {}
    for m in transient:
        kinds[m.rsplit(": ", 1)[-1]] = kinds.get(m.rsplit(": ", 1)[-1], 0) + 1
    for text, count in kinds.items():
        print(f"   {count} x transient {text!r}")
    print(f"   {'':24}{'after the kills':>16}{'after clean scan':>18}")
    for (key, before), after in zip(midway.counts().items(), final.counts().values(), strict=True):
        print(f"   {key:24}{before:>16}{after:>18}")
    for problem in final.problems[:20]:
        print("   ", problem)

    assert sum(1 for _, p in killed if p) >= 3, "too few kills landed while a scan was at work"
    assert clean.returncode == 0, clean.stdout()[-3000:] + clean.stderr()[-3000:]
    final.assert_all_good()
