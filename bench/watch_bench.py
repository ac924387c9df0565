"""Benchmark the watch daemon: new-file-to-tags latency, and the watcher's idle CPU on a large tree.

    python bench/watch_bench.py                       # cheap: 5,000-file tree, 10 s idle windows
    python bench/watch_bench.py --files 50000 --idle 60 --samples 10
    python bench/watch_bench.py --burst 100000      # memory: the daemon's RSS over a burst of new photos

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

``--burst N`` measures memory instead (the issue's "RSS flat over a 100k-file daemon burst"): a real
``phototag watch`` (inotify, the trivial ``fast`` analyzer, so the run is bounded by the daemon's own overhead)
tags one warm-up photo, then ``N`` new small real photos (a crop of a scikit-image photo, JPEG and one in ten
PNG, with a few pixels set from the file's number so that every file has its own content) are dropped into
``N/--per-folder`` new folders as fast as this process can write them (temp file + rename). The daemon's RSS
(``VmRSS`` in ``/proc/PID/status``) is sampled every second until every photo is tagged or ``--timeout``
passes. Printed and written to ``bench/out/watch_burst.json``: RSS idle before the burst (warm-up done,
analyzer loaded), peak, at the end (idle again), peak growth, the time to tag all ``N`` and photos/s, and a
correctness check: every photo has its sidecar and was analysed exactly once (the counting analyzer's log),
and how many inotify queue overflows (each answered by a rescan) the daemon logged.
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
from collections.abc import Callable
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
    def __init__(
        self,
        base: Path,
        root: Path,
        mode: str,
        analyzers: str,
        poll_interval: float,
        extra: dict[str, Any] | None = None,
    ) -> None:
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
        doc.update(extra or {})
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

    def last_status(self) -> str:
        """The daemon's latest ``STATUS=`` line to systemd (queue, settling, done counts), or ''."""
        return next((m[7:] for m in reversed(self.messages) if m.startswith("STATUS=")), "")

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


# -- --burst: the daemon's memory over a burst of new photos --------------------------------------------------


def proc_status_kib(pid: int, *names: str) -> list[int]:
    """Fields of ``/proc/PID/status`` in KiB (``VmRSS``: the resident set now; ``VmHWM``: its peak since the
    process started; ``RssAnon``: the heap and other anonymous memory; ``RssFile``: mapped files)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return [int(fields[name].split()[0]) for name in names]


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    rss, hwm = proc_status_kib(pid, "VmRSS", "VmHWM")
    return rss, hwm


class RssSampler(threading.Thread):
    """Samples a process's RSS every ``interval`` seconds: (seconds since start, VmRSS KiB), and the
    anonymous/file split of each sample (``parts``: RssAnon, RssFile KiB)."""

    def __init__(self, pid: int, status: Callable[[], str], interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self._status = status
        self.statuses: list[tuple[float, str]] = []
        """(seconds, the daemon's STATUS= line) when it changed: its queue and settling counts."""
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.parts: list[tuple[int, int]] = []
        self._stop_event = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                rss, anon, file = proc_status_kib(self.pid, "VmRSS", "RssAnon", "RssFile")
                self.samples.append((time.monotonic() - self._t0, rss))
                self.parts.append((anon, file))
                line = self._status()
                if line and (not self.statuses or self.statuses[-1][1] != line):
                    self.statuses.append((self.samples[-1][0], line))
            except (OSError, KeyError):
                return
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def burst_photos(source: Path, n: int) -> list[tuple[str, bytes]]:
    """``n`` small real photos (suffix, bytes), each with its own content: a 96x64 crop of ``source`` with an
    8x8 block (one JPEG block) painted in a colour made from the photo's number, and that number in a JPEG
    comment (JPEG quantisation can map two close colours to the same bytes; the pipeline analyses identical
    content once, which would hide work from the count). One in ten is a PNG."""
    import hashlib
    import io

    from PIL import Image

    with Image.open(source) as im:
        base = im.convert("RGB").resize((96, 64))
    out = []
    for i in range(n):
        photo = base.copy()
        photo.paste((i & 0xFF, (i >> 8) & 0xFF, (i >> 16) & 0xFF), (0, 0, 8, 8))
        buf = io.BytesIO()
        if i % 10 == 9:
            photo.save(buf, format="PNG")
            out.append((".png", buf.getvalue()))
        else:
            photo.save(buf, format="JPEG", quality=90, comment=f"phototag burst photo {i}".encode())
            out.append((".jpg", buf.getvalue()))
    distinct = len({hashlib.blake2b(b, digest_size=16).digest() for _, b in out})
    assert distinct == n, f"only {distinct} of {n} burst photos have distinct bytes"
    return out


class AnalyzedLog:
    """Follows the counting analyzer's log (``analyzed <hash> <path> <pid>`` lines) as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._tail = b""
        self.paths: list[str] = []

    def read(self) -> int:
        """Read what was appended; returns how many photos have been analysed so far."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return 0
        self._offset += len(chunk)
        data = self._tail + chunk
        lines = data.split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            if line.startswith(b"analyzed "):
                self.paths.append(line.decode().split(" ", 2)[2].rsplit(" ", 1)[0])
        return len(self.paths)


def wait_for(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


def run_burst(n: int, per_folder: int, timeout: float, keep_logs: bool = False) -> dict[str, Any]:
    from phototag.samples import write_samples

    with tempfile.TemporaryDirectory(prefix="phototag-burst-") as tmp:
        base = Path(tmp)
        source = next(p for p in write_samples(base / "samples") if p.name == "cat.jpg")
        t = time.monotonic()
        photos = burst_photos(source, n)
        sizes = [len(b) for _, b in photos]
        print(f"burst: {n} photos made in memory in {time.monotonic() - t:.1f} s "
              f"({statistics.mean(sizes) / 1024:.1f} KiB on average)")  # fmt: skip
        root = base / "tree"
        (root / "burst").mkdir(parents=True)
        work = base / "daemon"
        work.mkdir()
        log_path = work / "counting.log"
        daemon = Daemon(work, root, "inotify", "fast", 5.0, {"plugins": {"counting": {"log": str(log_path)}}})
        ready = daemon.start()
        assert daemon.proc is not None
        pid = daemon.proc.pid
        analyzed = AnalyzedLog(log_path)
        try:
            # warm-up: one photo through the whole path, so the analyzer is loaded before the idle baseline
            warm = root / "warmup" / "warm.jpg"
            warm.parent.mkdir()
            (warm.parent / ".warm.jpg.part").write_bytes(source.read_bytes())
            os.rename(warm.parent / ".warm.jpg.part", warm)
            wait_for("the warm-up photo's sidecar", Path(f"{warm}.phototag.json").exists, 120)
            time.sleep(3.0)
            rss_start, hwm_start = rss_kib(pid)
            anon_start, file_start = proc_status_kib(pid, "RssAnon", "RssFile")
            analyzed.read()
            warm_count = len(analyzed.paths)
            sampler = RssSampler(pid, daemon.last_status)
            sampler.start()
            finals: list[Path] = []
            t0 = time.monotonic()
            for i, (suffix, data) in enumerate(photos):
                folder = root / "burst" / f"{i // per_folder:04d}"
                if i % per_folder == 0:
                    folder.mkdir()
                final = folder / f"IMG_{i:06d}{suffix}"
                part = folder / f".IMG_{i:06d}{suffix}.part"
                part.write_bytes(data)
                os.rename(part, final)
                finals.append(final)
            written_s = time.monotonic() - t0
            del photos
            print(f"burst: {n} photos written into {(n + per_folder - 1) // per_folder} folders in {written_s:.1f} s "
                  f"({n / written_s:.0f}/s); waiting for the daemon to tag them")  # fmt: skip
            next_note = time.monotonic() + 30
            timed_out = False
            while analyzed.read() - warm_count < n:
                now = time.monotonic()
                if now - t0 > timeout:
                    timed_out = True
                    break
                if now >= next_note:
                    done = len(analyzed.paths) - warm_count
                    rss = sampler.samples[-1][1] if sampler.samples else 0
                    print(f"  {now - t0:6.0f} s: {done} tagged ({done / (now - t0):.0f}/s), RSS {rss / 1024:.0f} MiB",
                          flush=True)  # fmt: skip
                    next_note = now + 30
                time.sleep(0.5)
            # the analyser logs a photo before its sidecar is written: wait for the last sidecars
            sidecars_deadline = time.monotonic() + (5 if timed_out else 60)
            missing = [p for p in finals if not Path(f"{p}.phototag.json").exists()]
            while missing and time.monotonic() < sidecars_deadline:
                time.sleep(0.2)
                missing = [p for p in missing if not Path(f"{p}.phototag.json").exists()]
            tagged_s = time.monotonic() - t0
            time.sleep(5.0)  # idle again: what the daemon keeps after the burst
            sampler.stop()
            rss_end, hwm_end = rss_kib(pid)
            anon_end, file_end = proc_status_kib(pid, "RssAnon", "RssFile")
            analyzed.read()
        finally:
            daemon.stop()
        daemon_log = (work / "daemon.log").read_text(errors="replace")
        if keep_logs:  # for a look at what happened (tens of MB for 100k photos)
            OUT.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(work / "daemon.log", OUT / "watch_burst.daemon.log")
            shutil.copyfile(log_path, OUT / "watch_burst.counting.log")
    counts: dict[str, int] = {}
    for p in analyzed.paths[warm_count:]:
        counts[p] = counts.get(p, 0) + 1
    wanted = {str(p) for p in finals}
    twice = sorted(p for p, c in counts.items() if c > 1)
    never = sorted(wanted - counts.keys())
    stray = sorted(counts.keys() - wanted)
    series = [r for _, r in sampler.samples] + [rss_end]
    peak = max(max(series), rss_start)
    parts = [*sampler.parts, (anon_end, file_end)]
    at_peak = parts[series.index(peak)] if peak in series else (anon_start, file_start)
    return {
        "files": n,
        "per_folder": per_folder,
        "folders": (n + per_folder - 1) // per_folder,
        "ready_s": ready,
        "write_s": written_s,
        "tag_all_s": tagged_s,
        "photos_per_s": (n - len(never)) / tagged_s,
        "timed_out": timed_out,
        "rss_start_mib": rss_start / 1024,
        "rss_peak_mib": peak / 1024,
        "rss_end_mib": rss_end / 1024,
        "rss_peak_growth_mib": (peak - rss_start) / 1024,
        "rss_end_growth_mib": (rss_end - rss_start) / 1024,
        "rss_anon_start_mib": anon_start / 1024,
        "rss_file_start_mib": file_start / 1024,
        "rss_anon_at_peak_mib": at_peak[0] / 1024,
        "rss_file_at_peak_mib": at_peak[1] / 1024,
        "vmhwm_start_mib": hwm_start / 1024,
        "vmhwm_end_mib": hwm_end / 1024,
        "rss_samples": [(round(t, 1), round(r / 1024, 1)) for t, r in sampler.samples],
        "status_lines": sampler.statuses,
        "analyzed_once": len(counts) - len(twice),
        "analyzed_twice_or_more": len(twice),
        "never_analyzed": len(never),
        "analyzed_not_in_burst": len(stray),
        "sidecars_missing": len(missing),
        "examples": {"twice": twice[:5], "never": never[:5], "stray": stray[:5]},
        "inotify_overflows": daemon_log.count("inotify event queue overflowed"),
        "rescans": daemon_log.count("rescan: "),
        "inotify": {
            "max_user_watches": _sysctl("max_user_watches"),
            "max_queued_events": _sysctl("max_queued_events"),
        },
    }


def _sysctl(name: str) -> int | None:
    try:
        return int(Path(f"/proc/sys/fs/inotify/{name}").read_text())
    except (OSError, ValueError):
        return None


def burst_main(n: int, per_folder: int, timeout: float, keep_logs: bool = False) -> int:
    result = run_burst(n, per_folder, timeout, keep_logs)
    result["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg": os.getloadavg(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / "watch_burst.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    r = result
    print()
    print(f"daemon burst: {n} new photos in {r['folders']} folders, inotify, analyzers=fast, "
          f"load avg {r['machine']['load_avg'][0]:.2f} on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"  written in {r['write_s']:.1f} s; all tagged in {r['tag_all_s']:.1f} s = {r['photos_per_s']:.0f} photos/s"
          + (" (TIMED OUT)" if r["timed_out"] else ""))  # fmt: skip
    print(f"  RSS: idle before {r['rss_start_mib']:.0f} MiB, peak {r['rss_peak_mib']:.0f} MiB, idle after "
          f"{r['rss_end_mib']:.0f} MiB; peak growth {r['rss_peak_growth_mib']:+.0f} MiB, "
          f"end growth {r['rss_end_growth_mib']:+.0f} MiB (target: within 100 MiB)")  # fmt: skip
    print(f"  at the peak: anonymous {r['rss_anon_at_peak_mib']:.0f} MiB (idle {r['rss_anon_start_mib']:.0f}), "
          f"mapped files {r['rss_file_at_peak_mib']:.0f} MiB (idle {r['rss_file_start_mib']:.0f})")  # fmt: skip
    print(f"  correctness: {r['analyzed_once']} analysed exactly once, {r['analyzed_twice_or_more']} more than once, "
          f"{r['never_analyzed']} never, {r['sidecars_missing']} sidecars missing")  # fmt: skip
    print(f"  inotify: {r['inotify_overflows']} queue overflows logged, {r['rescans']} rescans "
          f"(max_queued_events {r['inotify']['max_queued_events']})")  # fmt: skip
    print(f"written: {out}")
    bad = r["never_analyzed"] + r["analyzed_twice_or_more"] + r["sidecars_missing"]
    ok = not r["timed_out"] and not bad
    return 0 if ok else 1


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
    ap.add_argument(
        "--burst", type=int, metavar="N", help="measure the daemon's RSS over a burst of N new photos"
    )
    ap.add_argument(
        "--per-folder", type=int, default=1000, help="--burst: photos per new folder (default 1000)"
    )
    ap.add_argument("--timeout", type=float, default=1800.0, help="--burst: seconds to wait for the tags")
    ap.add_argument(
        "--keep-logs",
        action="store_true",
        help="--burst: copy the daemon's and the analyzer's logs to bench/out",
    )
    args = ap.parse_args(argv)
    if args.burst:
        return burst_main(args.burst, args.per_folder, args.timeout, args.keep_logs)

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
