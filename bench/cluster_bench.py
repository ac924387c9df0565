"""The cluster runner against the local runner: photos/s, fixed cost, crossover, and a paper estimate for 10M.

    python bench/cluster_bench.py [--sizes 200,2000] [--large] [--side 128] [--out bench/out/cluster.json]

Every figure is a real ``phototag scan`` subprocess (the CLI a user runs: start-up, model load, walk, analysis,
JSON sidecars, state DB) on a fresh copy of small real photos (``tests/cluster_photos.py``), with the default
offline classify model and the sidecar writer. Runners:

* ``local``: ``phototag scan`` (the baseline, measured in the same run);
* ``ray-1``: ``--ray ADDRESS --ray-always`` on a real cluster of a head (no CPUs: it only coordinates) and one
  worker node with this machine's CPUs;
* ``ray-2``: the same CPUs split over two worker nodes (on one machine this measures what distribution costs,
  not what a second machine adds).

For each runner a line ``wall = fixed + n * per_photo`` is fitted over the sizes (plus a scan of 8 photos): the
fixed cost (process start, ``ray.init``, actors, model load) and the steady per-photo cost. The crossover is
where the lines meet. The driver's own CPU per photo (rusage of the driver process) is the ceiling a single
driver puts on any cluster; the 10M estimate combines it with the measured decode and model costs.
``--large`` adds 10,000 photos. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from cluster_photos import make_variants  # noqa: E402
from ray_cluster import VENV_BIN, ray_cluster  # noqa: E402

ENV = {**os.environ, "PHOTOTAG_PLUGINS": "classify,sidecar", "RAY_USAGE_STATS_ENABLED": "0"}
GPU_ANCHOR = 1500.0
"""Images/s of CLIP B/32 on an RTX 3080 at batch 256 (PERFORMANCE.md): the GPU model rate in the estimate."""
DECODE_12MP = 0.030
"""Seconds to draft-decode a 12 MP JPEG to 224 px on one core (PERFORMANCE.md)."""


def scan(photos: Path, workdir: Path, extra: list[str]) -> dict[str, float]:
    """One ``phototag scan`` subprocess: wall seconds, driver CPU seconds, photos tagged."""
    config = workdir / "config.yaml"
    config.write_text(f"state_db: {workdir / 'state.db'}\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [str(VENV_BIN / "phototag"), "scan", str(photos), "--json", "-q", "-c", str(config), *extra],
        env=ENV, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tagged = sum('"status": "tagged"' in line for line in done.stdout.splitlines())
    if done.returncode != 0:
        raise SystemExit(f"scan failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "driver_cpu": cpu, "tagged": tagged}


def fresh(master: Path, dest: Path, count: int) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    for path in sorted(master.rglob("*.jpg"))[:count]:
        out = dest / path.relative_to(master)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out)
    return dest


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares ``y = a + b n``: (a, b)."""
    ns = [n for n, _ in points]
    ys = [y for _, y in points]
    mn, my = statistics.fmean(ns), statistics.fmean(ys)
    b = sum((n - mn) * (y - my) for n, y in points) / sum((n - mn) ** 2 for n in ns)
    return my - b * mn, b


def measure(name: str, master: Path, work: Path, sizes: list[int], extra: list[str]) -> dict[str, Any]:
    rows = []
    for n in [8, *sizes]:
        photos = fresh(master, work / "photos", n)
        got = scan(photos, work, extra)
        (work / "state.db").unlink()
        if got["tagged"] != n:
            raise SystemExit(f"{name}: {got['tagged']} of {n} photos tagged")
        rows.append({"photos": n, **got, "photos_per_s": n / got["wall"]})
        print(f"  {name:6} {n:6d} photos: {got['wall']:7.1f} s  {n / got['wall']:6.1f} photos/s  "
              f"driver CPU {got['driver_cpu']:.1f} s", flush=True)  # fmt: skip
    fixed, per = fit([(r["photos"], r["wall"]) for r in rows])
    _, driver_per = fit([(r["photos"], r["driver_cpu"]) for r in rows])
    return {"rows": rows, "fixed_s": fixed, "per_photo_s": per, "driver_cpu_per_photo_s": driver_per}


def decode_cost(master: Path, count: int = 200) -> float:
    """Seconds per photo to decode the bench photos to 224 px (the pipeline's decode), in this process."""
    from phototag.config import ImageSettings
    from phototag.files import make_photo
    from phototag.images import decode

    photos = [make_photo(p) for p in sorted(master.rglob("*.jpg"))[:count]]
    start = time.perf_counter()
    for photo in photos:
        decode(photo, 224, ImageSettings())
    return (time.perf_counter() - start) / len(photos)


def hash_cost(folder: Path, size: int = 4 << 20) -> float:
    """Seconds the driver spends hashing one 12 MP JPEG (~4 MiB; :func:`phototag.files.make_photo`), best of 5."""
    from phototag.files import make_photo

    path = folder / "twelve-megapixel.bin"
    path.write_bytes(os.urandom(size))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        make_photo(path)
        best = min(best, time.perf_counter() - start)
    path.unlink()
    return best


def write_cost(master: Path, work: Path, count: int = 100) -> float:
    """Seconds per photo the writer actors spend (:func:`phototag.pipeline.write_photo` with the JSON sidecar
    and the XMP sidecar through exiftool, folder lock included), in this process, on copies of the photos."""
    from phototag.cluster.remote import WriterWorker
    from phototag.config import load_config
    from phototag.files import make_photo
    from phototag.types import Analysis, AnalyzerRun, ModelInfo, PhotoResult, Tag

    photos = fresh(master, work / "write", count)
    tags = tuple(Tag(f"tag{k}", 0.9, ("Things", f"tag{k}")) for k in range(5))
    run = AnalyzerRun("classify", "classify", ModelInfo("bench"), "f", Analysis(tags))
    results = [PhotoResult(make_photo(p), 128, 96, (run,)) for p in sorted(photos.rglob("*.jpg"))]
    before = os.environ.get("PHOTOTAG_PLUGINS")
    os.environ["PHOTOTAG_PLUGINS"] = "sidecar,xmp"
    try:
        worker = WriterWorker(load_config(None, overrides={"state_db": str(work / "w.db")}, environ={}))
        worker.write(results[:2])  # exiftool started
        start = time.perf_counter()
        written = worker.write(results)
        seconds = (time.perf_counter() - start) / len(results)
        worker.close()
    finally:
        if before is None:
            del os.environ["PHOTOTAG_PLUGINS"]
        else:
            os.environ["PHOTOTAG_PLUGINS"] = before
    if {w.status for w in written} != {"written"}:
        raise SystemExit(f"write_cost: not every photo was written: {[w.message for w in written]}")
    return seconds


def estimate(driver_per: float, hashing: float, writing: float, fixed: float) -> list[dict[str, Any]]:
    """10M photos of 12 MP on N GPU nodes (16 cores, 1 GPU each): per node the slower of the GPU (GPU_ANCHOR)
    and the read and write work (hash + draft decode + metadata write, DECODE_12MP + ``hashing`` +
    ``writing``) on the 15 cores the model actor leaves them (:mod:`phototag.cluster.sizing`); the cluster
    capped by its one driver (``driver_per``: the driver's CPU seconds per photo, measured: plan, claim,
    record)."""
    total = 10_000_000
    node_read = 15 / (DECODE_12MP + hashing + writing)
    node_rate = min(node_read, GPU_ANCHOR)
    driver_rate = 1 / driver_per if driver_per > 0 else float("inf")
    out = []
    for nodes in (1, 2, 4, 8, 16, 32):
        rate = min(nodes * node_rate, driver_rate)
        hours = (fixed + total / rate) / 3600
        limit = "driver" if rate == driver_rate else "read+write" if node_read < GPU_ANCHOR else "GPU"
        out.append(
            {
                "nodes": nodes,
                "photos_per_s": rate,
                "hours": hours,
                "node_hours": hours * nodes,
                "limit": limit,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200,2000", help="photo counts (comma-separated)")
    parser.add_argument("--large", action="store_true", help="add 10,000 photos")
    parser.add_argument("--side", type=int, default=128, help="bench photos' longer side, px")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "cluster.json")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] + ([10_000] if args.large else [])
    cpus = os.cpu_count() or 2
    tmp = Path(tempfile.mkdtemp(prefix="clbench"))
    started = time.perf_counter()
    try:
        master = tmp / "master"
        make_variants(master, max(sizes), side=args.side, per_folder=100)
        print(f"{max(sizes)} photos of {args.side} px; {cpus} CPUs; ray via {VENV_BIN / 'ray'}", flush=True)
        results: dict[str, Any] = {"local": measure("local", master, tmp / "local", sizes, [])}
        for workers in (1, 2):
            nodes = [{"CPU": 0.0}] + [
                {"CPU": float(cpus // workers), f"worker{k}": 1.0} for k in range(workers)
            ]
            start = time.perf_counter()
            with ray_cluster(*nodes, env=ENV) as cluster:
                up = time.perf_counter() - start
                print(f"  ray-{workers}: cluster of {len(nodes)} node processes up in {up:.1f} s", flush=True)
                extra = ["--ray", cluster.address, "--ray-always"]
                results[f"ray-{workers}"] = measure(
                    f"ray-{workers}", master, tmp / f"ray{workers}", sizes, extra
                )
        local = results["local"]
        decode_small = decode_cost(master)
        summary: dict[str, Any] = {"decode_small_s": decode_small}
        print("\nrunner   fixed s  per photo ms  steady photos/s  driver CPU ms/photo  " +
              "  ".join(f"{n} photos/s" for n in sizes))  # fmt: skip
        for name, r in results.items():
            by_size = {row["photos"]: row["photos_per_s"] for row in r["rows"]}
            steady = 1 / r["per_photo_s"] if r["per_photo_s"] > 0 else float("inf")
            print(f"{name:7} {r['fixed_s']:7.1f}  {r['per_photo_s'] * 1000:12.1f}  {steady:15.1f}  "
                  f"{r['driver_cpu_per_photo_s'] * 1000:19.2f}  " +
                  "  ".join(f"{by_size[n]:10.1f}" for n in sizes))  # fmt: skip
        for name in ("ray-1", "ray-2"):
            r = results[name]
            gain = local["per_photo_s"] - r["per_photo_s"]
            cross = (r["fixed_s"] - local["fixed_s"]) / gain if gain > 0 else None
            summary[f"crossover_{name}"] = cross
            ratio = {n: next(x["photos_per_s"] for x in r["rows"] if x["photos"] == n) /
                     next(x["photos_per_s"] for x in local["rows"] if x["photos"] == n) for n in sizes}  # fmt: skip
            summary[f"ratio_{name}"] = ratio
            if cross is None:
                said = "never on this machine (no per-photo gain)"
            elif cross <= 0:
                said = "none: Ray was as fast or faster at every size"
            else:
                said = f"{cross:.0f} photos"
            print(
                f"{name} vs local: "
                + ", ".join(f"{ratio[n]:.2f}x at {n}" for n in sizes)
                + f"; crossover {said}"
            )
        ray1 = results["ray-1"]
        hashing = hash_cost(tmp)
        writing = write_cost(master, tmp)
        driver = ray1["driver_cpu_per_photo_s"]
        rows = estimate(driver, hashing, writing, ray1["fixed_s"])
        summary["hash_12mp_s"] = hashing
        summary["write_s"] = writing
        summary["estimate_10M"] = rows
        print(
            "\n10M photos of 12 MP on N GPU nodes of 16 cores (paper estimate): rate = min(N * min(15 cores / "
            f"({DECODE_12MP * 1000:.0f} ms draft decode + {hashing * 1000:.1f} ms hash + {writing * 1000:.1f} ms "
            f"write JSON+XMP), {GPU_ANCHOR:.0f} img/s GPU), 1 / driver CPU per photo ({driver * 1000:.2f} ms "
            f"measured = {1 / driver:.0f} photos/s))"
        )
        print("nodes  photos/s   hours  node-hours  limit")
        for row in rows:
            print(f"{row['nodes']:5d}  {row['photos_per_s']:8.0f}  {row['hours']:6.1f}  {row['node_hours']:10.1f}  "
                  f"{row['limit']}")  # fmt: skip
        doc = {"machine": {"cpus": cpus, "python": platform.python_version(), "platform": platform.platform()},
               "photos_side": args.side, "sizes": sizes, "results": results, "summary": summary,
               "seconds": time.perf_counter() - started}  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2))
        print(f"\nwrote {args.out} ({time.perf_counter() - started:.0f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
