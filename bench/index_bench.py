"""Vector search at scale: phototag's index (usearch HNSW int8 + exact re-rank of 4x candidates) against exact
numpy search, in one run.

    .venv/bin/python bench/index_bench.py            # 100k and 1M vectors, 512-d
    .venv/bin/python bench/index_bench.py --quick    # 100k only

Synthetic vectors shaped like image embeddings: a 48-d latent (2,000 Gaussian clusters) projected to ``--dims``
dimensions plus isotropic noise, so that neighbours exist as they do in real photo libraries (uniform random
high-dimensional vectors have no meaningful neighbours: every method scores badly on them, which says
nothing about photos). Queries are fresh draws from the same distribution, not indexed vectors.

Rows: build time (vectors/s), memory of the index, p50/p99 single-query latency, recall@10 against the exact
top-10 (numpy float32 matrix product), the exact search's p50/p99 in the same run as the baseline, and
incremental add/remove of 1,000 vectors. Prints a table and writes ``bench/out/index_bench.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from phototag.vectorindex import VectorIndex

OUT = Path(__file__).resolve().parent / "out"


def vectors(n: int, dims: int, seed: int, basis: np.ndarray, centers: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dims), dtype=np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        latent = centers[rng.integers(0, len(centers), m)] + 0.5 * rng.standard_normal((m, basis.shape[0]))
        block = (latent.astype(np.float32) @ basis) + 0.15 * rng.standard_normal((m, dims)).astype(np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def fake_hash(i: int) -> str:
    """A content hash as the state DB holds them (BLAKE2b-128 hex)."""
    return hashlib.blake2b(i.to_bytes(8, "little"), digest_size=16).hexdigest()


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentiles(times: list[float]) -> tuple[float, float]:
    arr = np.array(times) * 1000
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def run(n: int, dims: int, queries: int) -> dict[str, float]:
    rng = np.random.default_rng(1)
    basis = rng.standard_normal((48, dims)).astype(np.float32) / np.sqrt(48)
    centers = rng.standard_normal((2000, 48)).astype(np.float32)
    data = vectors(n, dims, 2, basis, centers)
    qs = vectors(queries, dims, 3, basis, centers)
    hashes = [fake_hash(i) for i in range(1, n + 1)]
    row = {h: i for i, h in enumerate(hashes)}

    # exact baseline: one float32 matrix product per query, as the search command did before the index
    exact_times, truth = [], []
    for q in qs:
        t = time.perf_counter()
        scores = data @ q
        top = np.argpartition(-scores, 10)[:10]
        top = top[np.argsort(-scores[top])]
        exact_times.append(time.perf_counter() - t)
        truth.append({hashes[i] for i in top})

    before = rss_mb()
    index = VectorIndex(dims, exact_below=0)
    t = time.perf_counter()
    for start in range(0, n, 100_000):
        index.add(hashes[start : start + 100_000], data[start : start + 100_000])
    build = time.perf_counter() - t
    memory = rss_mb() - before
    times, hits = [], 0
    for q, want in zip(qs, truth, strict=True):
        t = time.perf_counter()
        found = index.search(
            q, 10, lambda hs: data[[row[h] for h in hs]]
        )  # float32 rows, as the state DB gives
        times.append(time.perf_counter() - t)
        hits += len({h for h, _ in found} & want)
    p50, p99 = percentiles(times)
    e50, e99 = percentiles(exact_times)

    extra = vectors(1000, dims, 4, basis, centers)
    t = time.perf_counter()
    index.add([fake_hash(n + i + 1) for i in range(1000)], extra)
    add_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    index.remove(hashes[:1000])
    remove_ms = (time.perf_counter() - t) * 1000
    return {
        "n": n,
        "dims": dims,
        "build_s": build,
        "build_per_s": n / build,
        "index_mb": memory,
        "p50_ms": p50,
        "p99_ms": p99,
        "recall_at_10": hits / (10 * len(qs)),
        "exact_p50_ms": e50,
        "exact_p99_ms": e99,
        "speedup_p50": e50 / p50,
        "add_1000_ms": add_ms,
        "remove_1000_ms": remove_ms,
    }


def bench_duplicates(n: int, dims: int) -> dict[str, float]:
    """Duplicate search over ``n`` photos, 1% of which have a near copy (vector noise, 2 hash bits flipped):
    candidates from the index (what ``phototag duplicates`` does) against every pair of hashes compared."""
    from phototag.duplicates import Copy, Thresholds, find_groups
    from phototag.plugins.duplicates import neighbours_from_index

    rng = np.random.default_rng(5)
    basis = rng.standard_normal((48, dims)).astype(np.float32) / np.sqrt(48)
    centers = rng.standard_normal((2000, 48)).astype(np.float32)
    data = vectors(n, dims, 6, basis, centers)
    hashes = rng.integers(0, 2**63, n, dtype=np.int64).tolist()
    copies = [
        Copy(Path(f"p{i}.jpg"), fake_hash(i), 1000, 100, 100, hashes[i], 0.0, data[i]) for i in range(n)
    ]
    for k, i in enumerate(rng.choice(n, n // 100, replace=False).tolist()):
        v = data[i] + 0.01 * rng.standard_normal(dims).astype(np.float32)
        copies.append(
            Copy(Path(f"copy{k}.jpg"), fake_hash(n + k + 1), 900, 50, 50, hashes[i] ^ 0b101, 0.0, v)
        )
    t = time.perf_counter()
    found = find_groups(copies, Thresholds(16, 0.85), neighbours=neighbours_from_index(copies))
    indexed = time.perf_counter() - t
    t = time.perf_counter()
    pairs = find_groups(copies, Thresholds(6, 0.85))
    all_pairs = time.perf_counter() - t
    return {"photos": len(copies), "groups": len(found), "indexed_s": indexed, "all_pairs_groups": len(pairs),
            "all_pairs_s": all_pairs}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100k vectors only")
    parser.add_argument("--sizes", default="", help="comma-separated vector counts (overrides --quick)")
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--duplicates", type=int, default=0, metavar="N", help="also time duplicate search")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    if args.sizes:
        sizes = [int(v) for v in args.sizes.split(",")]
    rows = []
    print(
        f"cpus: {os.cpu_count()}, dims {args.dims}, {args.queries} queries, usearch HNSW i8 + re-rank vs numpy exact"
    )
    header = (
        f"{'vectors':>9} {'build s':>8} {'vec/s':>7} {'MB':>6} {'p50 ms':>7} {'p99 ms':>7} {'recall@10':>9} "
        f"{'exact p50':>9} {'exact p99':>9} {'speedup':>7} {'+1000 ms':>8} {'-1000 ms':>8}"
    )
    print(header)
    for n in sizes:
        r = run(n, args.dims, args.queries)
        rows.append(r)
        print(
            f"{n:>9,} {r['build_s']:>8.1f} {r['build_per_s']:>7.0f} {r['index_mb']:>6.0f} {r['p50_ms']:>7.2f} "
            f"{r['p99_ms']:>7.2f} {r['recall_at_10']:>9.3f} {r['exact_p50_ms']:>9.1f} {r['exact_p99_ms']:>9.1f} "
            f"{r['speedup_p50']:>6.0f}x {r['add_1000_ms']:>8.0f} {r['remove_1000_ms']:>8.1f}",
            flush=True,
        )
    if args.duplicates:
        d = bench_duplicates(args.duplicates, args.dims)
        print(
            f"duplicates, {d['photos']:,} photos: {d['groups']:.0f} groups in {d['indexed_s']:.2f} s (index "
            f"candidates); every pair of hashes: {d['all_pairs_groups']:.0f} groups in {d['all_pairs_s']:.2f} s"
        )
        rows.append(d)
    OUT.mkdir(exist_ok=True)
    (OUT / f"index_bench{'-' + args.sizes if args.sizes else ''}.json").write_text(
        json.dumps(rows, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
