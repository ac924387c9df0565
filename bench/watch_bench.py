"""Benchmark the watch daemon: new-file-to-tags latency, and the watcher's idle CPU on a large tree.

    python bench/watch_bench.py                       # cheap: 5,000-file tree, 10 s idle windows
    python bench/watch_bench.py --files 50000 --idle 60 --samples 10

For each mode (native inotify, polling) it starts a real ``phototag watch`` on a temp tree of ``--files``
photo-named files in ``--files/100`` folders, then

- **idle CPU**: the daemon's user+system CPU time over ``--idle`` seconds with nothing happening, as a share of
  one core (the tree's files sit in an excluded folder, so the daemon has nothing to tag but watchdog still
  watches or polls every file and folder);
- **latency**: a real photo is saved into the tree (temp file + rename, so the write is instant) ``--samples``
  times; latency is the time from the rename to its JSON sidecar appearing. ``--analyzers default`` runs the
  shipped offline models (classify, detect, faces, embed) and exiftool; ``fast`` runs the test suite's trivial
  analyzer to show the daemon's own overhead. The first sample includes loading the models and is reported
  apart;
- **rescan**: the stat-only walk a rescan makes over the whole tree.

Prints a table and writes ``bench/out/watch_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


def make_tree(root: Path, files: int) -> None:
    """``files`` tiny files named like photos, 100 per folder, two levels deep; excluded from tagging."""
    bulk = root / "bulk"
    per = 100
    for i in range(files):
        folder = bulk / f"{i // (per * 50):03d}" / f"{(i // per) % 50:02d}"
        if i % per == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"IMG_{i:06d}.jpg").write_bytes(b"\xff\xd8\xff")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    def __init__(self, base: Path, root: Path, mode: str, analyzers: str, poll_interval: float) -> None:
        self.base = base
        self.root = root
        self.config = base / "config.yaml"
        doc: dict[str, Any] = {
            "state_db": str(base / "state.db"),
            "exclude": ["*/bulk/*"],
            "watch": {"polling": mode == "polling", "poll_interval": poll_interval, "rescan_interval": 3600},
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTOTAG_", "NOTIFY_"))}
        if analyzers == "fast":
            dist = base / "dist" / "phototag_bench-0.dist-info"
            dist.mkdir(parents=True)
            (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: phototag-bench\nVersion: 0\n")
            (dist / "entry_points.txt").write_text("[phototag]\ncounting = daemon_plugin\n")
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(base / "dist")])
            env["PHOTOTAG_PLUGINS"] = "daemon,sidecar,counting"
            doc["metadata"] = {"xmp": False}
        self.config.write_text(yaml.safe_dump(doc))
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.messages: list[str] = []

    def start(self) -> float:
        sock_path = str(self.base / "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(0.2)

        def read() -> None:
            while True:
                try:
                    self.messages.extend(sock.recv(65536).decode().split("\n"))
                except TimeoutError:
                    continue
                except OSError:
                    return

        threading.Thread(target=read, daemon=True).start()
        self._sock = sock
        start = time.monotonic()
        log = (self.base / "daemon.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "phototag", "watch", "-c", str(self.config), str(self.root)],
            env={**self.env, "NOTIFY_SOCKET": sock_path},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        while "READY=1" not in self.messages:
            if self.proc.poll() is not None:
                raise RuntimeError((self.base / "daemon.log").read_text())
            time.sleep(0.01)
        return time.monotonic() - start

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        self._sock.close()


def latency(daemon: Daemon, root: Path, samples: int, sources: list[Path]) -> list[float]:
    drop = root / "incoming"
    drop.mkdir(exist_ok=True)
    out = []
    for i in range(samples):
        src = sources[i % len(sources)]
        # a distinct photo each time (new bytes after the JPEG end), so cached results cannot help
        data = src.read_bytes() + f"bench-{time.time_ns()}".encode()
        final = drop / f"shot{i:03d}{src.suffix}"
        tmp = drop / f".{final.name}.part"
        tmp.write_bytes(data)
        sidecar = Path(f"{final}.phototag.json")
        t0 = time.monotonic()
        os.rename(tmp, final)
        while not sidecar.exists():
            if time.monotonic() - t0 > 300:
                raise RuntimeError(f"{final} was not tagged within 300 s")
            time.sleep(0.005)
        out.append(time.monotonic() - t0)
        time.sleep(0.2)
    return out


def rescan_seconds(root: Path) -> float:
    from phototag.config import load_config
    from phototag.daemon.scan import walk

    config = load_config(None, environ={})
    start = time.monotonic()
    n = sum(1 for _ in walk(root, config))
    elapsed = time.monotonic() - start
    assert n > 0
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=5000, help="files in the watched tree (default 5000)")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement per mode")
    ap.add_argument(
        "--samples", type=int, default=5, help="latency samples per mode (first includes model load)"
    )
    ap.add_argument("--analyzers", choices=("default", "fast"), default="default")
    ap.add_argument("--poll-interval", type=float, default=5.0, help="watch.poll_interval (default 5 s)")
    ap.add_argument("--modes", default="inotify,polling")
    args = ap.parse_args(argv)

    from phototag.samples import write_samples

    results: dict[str, Any] = {
        "files": args.files,
        "folders": args.files // 100,
        "analyzers": args.analyzers,
        "poll_interval": args.poll_interval,
        "stability_delay": 2.0,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "modes": {},
    }
    with tempfile.TemporaryDirectory(prefix="phototag-bench-") as tmp:
        base = Path(tmp)
        samples_dir = base / "samples"
        sources = sorted(p for p in write_samples(samples_dir) if p.suffix == ".jpg")
        root = base / "tree"
        t = time.monotonic()
        make_tree(root, args.files)
        print(
            f"tree: {args.files} files in {args.files // 100} folders, made in {time.monotonic() - t:.1f} s"
        )
        results["rescan_walk_s"] = rescan_seconds(root / "bulk")
        for mode in args.modes.split(","):
            work = base / mode
            work.mkdir()
            daemon = Daemon(work, root, mode, args.analyzers, args.poll_interval)
            ready = daemon.start()
            time.sleep(1.0)  # let the start-up settle
            assert daemon.proc is not None
            c0, t0 = cpu_seconds(daemon.proc.pid), time.monotonic()
            time.sleep(args.idle)
            idle = (cpu_seconds(daemon.proc.pid) - c0) / (time.monotonic() - t0)
            lat = latency(daemon, root, args.samples, sources)
            daemon.stop()
            shutil.rmtree(root / "incoming", ignore_errors=True)
            warm = lat[1:] or lat
            results["modes"][mode] = {
                "ready_s": ready,
                "idle_cpu_core_share": idle,
                "latency_first_s": lat[0],
                "latency_median_s": statistics.median(warm),
                "latency_max_s": max(warm),
                "latency_all_s": lat,
            }
            print(f"{mode}: ready in {ready:.1f} s, idle CPU {idle * 100:.2f}% of a core, latency {lat}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "watch_bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(f"watch benchmark: {args.files} files / {args.files // 100} folders, analyzers={args.analyzers}, "
          f"stability_delay=2.0 s, poll_interval={args.poll_interval:g} s")  # fmt: skip
    print(f"{'mode':<9} {'ready':>7} {'idle CPU':>10} {'first':>8} {'median':>8} {'max':>8}")
    for mode, r in results["modes"].items():
        print(f"{mode:<9} {r['ready_s']:>6.1f}s {r['idle_cpu_core_share'] * 100:>9.2f}% {r['latency_first_s']:>7.2f}s "
              f"{r['latency_median_s']:>7.2f}s {r['latency_max_s']:>7.2f}s")  # fmt: skip
    print(f"rescan walk (stat only) of the whole tree: {results['rescan_walk_s']:.2f} s")
    print(f"written: {OUT / 'watch_bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
