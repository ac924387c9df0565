"""Load test of ``phototag serve`` on loopback: requests/s and p50/p99 latency at several concurrencies.

    python bench/serve_bench.py [--seconds 3] [--concurrency 1,8,32] [--batch 16] [--out bench/out/serve.json]

Two routes, as their clients call them:

* **labels**: PhotoPrism's ``POST /api/v1/vision/labels`` (JSON, one 224 px JPEG as a data URL, as PhotoPrism
  sends its ``tile_224``), answered by the bundled EfficientNet-Lite0 classifier;
* **clip**: Immich's ``POST /predict`` (multipart ``entries`` + a 1440 px JPEG preview, as Immich sends it),
  answered by a tiny *randomly initialised* CLIP (``tests/tiny_models.py``; ``plugins.embed.model``): its model
  time is small, so this row shows what the service itself costs per request.

Each is measured against two ``phototag serve`` subprocesses of this run, one with dynamic batching
(``serve.batch_size`` = ``--batch``) and one with batch-1-per-request serving (``serve.batch_size`` 1, the
Flask-style design), measured alternately cell by cell so that a change in the machine's load hits both
alike. The ceiling is the same analyzer called in-process (``AnalyzerRuntime.analyze``) on already decoded
images at batch ``--batch`` and at batch 1. The load generator is this process (httpx, asyncio, one connection
per concurrent client) on the same machine, so it competes with the server for the CPU: on 2 cores that is part
of the figure. Nothing here asserts on time. Loopback only; bounded by ``--seconds`` per cell (2 routes x 2
modes x 3 concurrencies: about 2 minutes on 2 cores with the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import itertools
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from phototag.config import Config, load_config
from phototag.manager import get_plugin_manager
from phototag.registration import register_plugins
from phototag.runtime import AnalyzerRuntime
from phototag.samples import write_samples
from phototag.serve.decode import decode_bytes
from phototag.types import DecodedImage

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "serve.json"
IMMICH_MODEL = "ViT-B-32__openai"


def tiny_clip(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from transformers.utils import logging as hf_logging

    from tiny_models import build_tiny_clip

    hf_logging.disable_progress_bar()
    return Path(build_tiny_clip(folder / "tiny-clip"))


def jpegs(folder: Path, side: int) -> list[bytes]:
    """The sample photos as JPEGs whose longer side is ``side`` (quality 85)."""
    out = []
    for path in sorted(write_samples(folder)):
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((side, side), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
            out.append(buf.getvalue())
    return out


def overrides(work: Path, clip: Path, threads: int) -> dict[str, str]:
    return {
        "state_db": str(work / "state.db"),
        "threads": str(threads),
        "plugins.detect.enabled": "false",
        "plugins.faces.enabled": "false",
        "plugins.embed.model": str(clip),
        "serve.immich_models": json.dumps({IMMICH_MODEL: str(clip)}),
        "serve.queue_limit": "256",
    }


# -- the server -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``phototag serve`` in a subprocess on a loopback port, with these config overrides."""

    def __init__(self, sets: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOTAG_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "phototag", "-q", *args, "serve", "--port", str(self.port)],
            env={**env, "XDG_CONFIG_HOME": str(Path(sets["state_db"]).parent / "xdg")},
        )

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"phototag serve exited with {self.proc.returncode} while starting")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("phototag serve did not answer /healthz within 120 s")
            time.sleep(0.1)
        ready = httpx.get(f"{self.url}/readyz", timeout=120)  # loads the models
        if ready.status_code != 200:
            raise RuntimeError(f"/readyz: {ready.status_code} {ready.text[:300]}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- load -------------------------------------------------------------------------------------------------------


def labels_request(image: bytes) -> dict[str, Any]:
    data_url = "data:image/jpeg;base64," + base64.b64encode(image).decode()
    return {"json": {"id": "bench", "model": "phototag", "version": "latest", "images": [data_url]}}


def clip_request(image: bytes) -> dict[str, Any]:
    entries = json.dumps({"clip": {"visual": {"modelName": IMMICH_MODEL}}})
    return {"data": {"entries": entries}, "files": {"image": ("blob", image, "image/jpeg")}}


_serial = itertools.count()


def unique(jpeg: bytes) -> bytes:
    """The same pixels, other bytes (a number after the JPEG's end marker, which decoders ignore): every request
    has its own content hash, so that no result cache on the server answers it (the bundled EfficientNet keeps
    one, keyed by content hash)."""
    return jpeg + next(_serial).to_bytes(8, "big")


def fresh(images: Sequence[DecodedImage]) -> list[DecodedImage]:
    """The images with new content hashes: in-process, no result cache answers either."""
    return [replace(d, photo=replace(d.photo, content_hash=f"bench-{next(_serial)}")) for d in images]


ROUTES = {"labels": ("/api/v1/vision/labels", labels_request), "clip": ("/predict", clip_request)}


async def load(
    url: str, route: str, payloads: Sequence[bytes], concurrency: int, seconds: float
) -> dict[str, Any]:
    """``concurrency`` clients, each sending requests back to back for ``seconds``; warm-up not counted."""
    path, build = ROUTES[route]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(i: int, record: bool) -> None:
            start = time.perf_counter()
            r = await client.post(path, **build(unique(payloads[i % len(payloads)])))
            if r.status_code != 200:
                errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
            elif record:
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(one(i, False) for i in range(concurrency)))  # warm-up: connections, batches
        end = time.perf_counter() + seconds
        began = time.perf_counter()

        async def worker(w: int) -> None:
            i = w
            while time.perf_counter() < end:
                await one(i, True)
                i += concurrency

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "rps": len(ordered) / elapsed,
        "p50_ms": 1000 * statistics.median(ordered) if ordered else None,
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else None,
        "errors": errors,
    }


# -- ceiling ----------------------------------------------------------------------------------------------------


def ceiling(
    config: Config, images: dict[str, list[DecodedImage]], batch: int, seconds: float
) -> dict[str, Any]:
    """Images/s of each analyzer called in-process on decoded images, at batch ``batch`` and 1."""
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "classify,embed"})
    found = register_plugins(config, pm)
    runtime = AnalyzerRuntime(config, found.analyzers, hook=pm.hook)
    out: dict[str, Any] = {}
    for route, name in (("labels", "classify"), ("clip", "embed")):
        pool = images[route]
        assert runtime.load(name) is None, runtime.error(name)
        for size in (batch, 1):
            chunk = [pool[i % len(pool)] for i in range(size)]
            runtime.analyze(name, fresh(chunk))  # warm-up
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                ran = runtime.analyze(name, fresh(chunk))
                assert ran.analyses is not None, ran.error
                n += size
            out[f"{route}@{size}"] = n / (time.perf_counter() - start)
    runtime.close()
    return out


# -- main -------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell (default 3)")
    ap.add_argument("--concurrency", default="1,8,32", help="concurrent clients, comma-separated")
    ap.add_argument(
        "--batch", type=int, default=16, help="serve.batch_size of the batching server (default 16)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per model call, server and ceiling alike (default 1: on a shared machine, more "
        "threads than free cores makes torch many times slower; 0 picks from the hardware probe)",
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="phototag-serve-bench-") as tmp:
        work = Path(tmp)
        clip = tiny_clip(work / "models")
        payloads = {"labels": jpegs(work / "labels", 224), "clip": jpegs(work / "clip", 1440)}
        sets = overrides(work, clip, args.threads)
        config = load_config(None, overrides=sets, environ={})
        side = {"labels": 224, "clip": 224}
        decoded = {
            r: [decode_bytes(p, f"{r}.jpg", side[r], config.image) for p in ps] for r, ps in payloads.items()
        }
        print(f"in-process ceiling (AnalyzerRuntime.analyze on decoded images, {args.seconds:g} s each)")
        top = ceiling(config, decoded, args.batch, args.seconds)
        for key, value in top.items():
            print(f"  {key:<12} {value:8.1f} images/s")
        rows: list[dict[str, Any]] = []
        modes = (("dynamic batching", args.batch), ("batch 1 per request", 1))
        # both servers run side by side (one idles while the other is measured) and the cells alternate
        # between them, so that a change in the machine's load hits both modes alike
        with contextlib.ExitStack() as stack:
            servers = {m: stack.enter_context(Server({**sets, "serve.batch_size": str(b)})) for m, b in modes}
            for route in ROUTES:
                for c in levels:
                    for mode, batch in modes:
                        result = asyncio.run(load(servers[mode].url, route, payloads[route], c, args.seconds))
                        rows.append(
                            {
                                "route": route,
                                "mode": mode,
                                "serve_batch_size": batch,
                                "concurrency": c,
                                **result,
                            }
                        )
                        print(
                            f"{route:<7} {mode:<20} c={c:<3} {result['rps']:7.1f} req/s  p50 "
                            f"{result['p50_ms'] or 0:7.1f} ms  p99 {result['p99_ms'] or 0:7.1f} ms"
                            + (f"  errors {result['errors']}" if result["errors"] else "")
                        )
    print()
    print(
        f"{'route':<7} {'c':>3} {'batching req/s':>15} {'batch-1 req/s':>14} {'ratio':>6} {'ceiling@b':>10}"
    )
    for route in ROUTES:
        for c in levels:
            b = next(
                r for r in rows if r["route"] == route and r["concurrency"] == c and r["serve_batch_size"] > 1
            )
            one = next(
                r
                for r in rows
                if r["route"] == route and r["concurrency"] == c and r["serve_batch_size"] == 1
            )
            ratio = b["rps"] / one["rps"] if one["rps"] else float("nan")
            print(
                f"{route:<7} {c:>3} {b['rps']:>15.1f} {one['rps']:>14.1f} {ratio:>5.2f}x "
                f"{top[f'{route}@{args.batch}']:>10.1f}"
            )
    doc = {
        "benchmark": "serve",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {
            "seconds": args.seconds,
            "concurrency": levels,
            "batch": args.batch,
            "threads": args.threads,
        },
        "routes": {
            "labels": "PhotoPrism POST /api/v1/vision/labels, one 224 px JPEG data URL; bundled EfficientNet-Lite0",
            "clip": "Immich POST /predict clip visual, one 1440 px JPEG; tiny RANDOM CLIP (plugins.embed.model)",
        },
        "ceiling_images_per_s": top,
        "rows": rows,
        "seconds_total": time.perf_counter() - started,
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(
        f"\nload average (1 min) {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after, on "
        f"{os.cpu_count()} CPUs: above the CPU count, other processes shared the machine and only the ratios "
        f"of this run mean something\nwrote {args.out} ({doc['seconds_total']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
