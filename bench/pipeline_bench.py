"""phototag throughput benchmark: decode, each analyzer, metadata writes, the whole pipeline vs a naive loop;
a large re-scan against a bare walk, memory over re-scans, and start-up times.

    python bench/pipeline_bench.py [--images N] [--quick] [--repeats R] [--config FILE] [--set KEY=VALUE ...]
                                   [--out bench/out/pipeline.json] [--tiny] [--tmp DIR] [--keep]
                                   [--sections pipeline,rescan,startup,memory] [--rescan-files N] [--memory]

Sections: ``pipeline`` (12 MP JPEGs: decode, analyzers, one shared pass per network, torch vs ONNX Runtime,
metadata, the whole pipeline), ``rescan`` (``--rescan-files`` unchanged processed photos, default 50,000, against
``os.walk`` + ``os.stat`` of the same tree), ``startup`` (``phototag --help``, ``status`` and a scan with nothing
to do, against ``python -c pass``) and, with ``--memory``, ``memory`` (RSS of a fresh process over three
re-scans of 100,000 photos).

Everything is measured in one run on the same freshly made 12-megapixel JPEGs; the figures that matter are the
ratios between rows of one run (shared machines are noisy, absolute numbers drift between runs). Repeated
timings report the best of R passes (interference from other processes only ever slows a pass down), per-image
timings the median over images. What each row means is in ``bench/README.md``. Nothing here asserts on time;
the only checks are that the pipeline tagged every photo and that every re-scan skipped every photo.

The analyzers are those the effective configuration enables (``--config``, else ``$PHOTOTAG_CONFIG`` or the
user's config file, then ``--set``), so a configuration with transformers models (hub ids or local folders)
benchmarks those through the same code. ``--tiny`` swaps classify/embed/detect for tiny *randomly initialised*
transformers models (``tests/tiny_models.py``): a check of the transformers code path, not a model speed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from phototag.config import Config, load_config, parse_overrides
from phototag.errors import PhototagError
from phototag.exiftool import Exiftool
from phototag.files import hash_file, iter_photos, make_photo
from phototag.hardware import probe, usable_cores
from phototag.images import decode, read_image
from phototag.pipeline import Outcome, Pipeline
from phototag.plugins.sidecar import sidecar_path as json_sidecar_path
from phototag.plugins.xmp import XmpWriter
from phototag.runtime import AnalyzerRuntime
from phototag.samples import write_samples
from phototag.serialize import result_to_dict
from phototag.state import StateDB
from phototag.types import Analysis, Analyzer, AnalyzerRun, DecodedImage, Device, Photo, PhotoResult
from phototag.xmpdesired import desired_from

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "pipeline.json"
SECTIONS = ("pipeline", "rescan", "startup")
"""What runs by default: decode + analyzers + metadata + whole pipeline, the large re-scan, start-up times."""
ALL_SECTIONS = (*SECTIONS, "memory")
SIZE = (4000, 3000)  # 12 MP, 4:3 like most phone and compact-camera sensors
QUALITY = 90
# sigma of the luma noise, in 8-bit levels: upscaled photos are too smooth to compress like a camera's JPEGs
GRAIN = 5.0
MAKE = b"BenchCam"  # EXIF Make; copies patch it (same length) so that every copy has its own content hash

_variants = itertools.count(1)


@dataclass
class Row:
    """One line of the table. ``ratio`` compares with the row's baseline (see bench/README.md)."""

    section: str
    name: str
    value: float
    unit: str
    ratio: float | None = None
    note: str = ""


class Report:
    """Rows, printed as they come."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(
        self, section: str, name: str, value: float, unit: str, ratio: float | None = None, note: str = ""
    ) -> None:
        row = Row(section, name, value, unit, ratio, note)
        self.rows.append(row)
        print(_format_row(row), flush=True)


# -- helpers ------------------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _format_row(row: Row) -> str:
    ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
    return f"  {row.name:<48} {_fmt(row.value):>8} {row.unit:<9} {ratio:>7}  {row.note}".rstrip()


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ms(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in values.items())


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far: the whole machine's busy and steal time (/proc/stat), and this process's own
    (children included: exiftool). The difference over the run is what other processes took."""
    t = os.times()
    out = {"own": t.user + t.system + t.children_user + t.children_system}
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return out
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    out["busy"] = (user + nice + system + irq + softirq) / tick
    out["steal"] = steal / tick
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _stat_photo(path: Path, content_hash: str) -> Photo:
    """A Photo without hashing the file (for timings that must not include a hash)."""
    st = path.stat()
    return Photo(path, st.st_size, st.st_mtime_ns, content_hash)


def copy_tree(files: Sequence[Path], folder: Path) -> list[Path]:
    """Copies of ``files`` in ``folder`` whose bytes (EXIF Make only) differ from every other copy set, so that
    no result cached by content hash (state DB, the shared EfficientNet runtime) is reused across scenarios."""
    folder.mkdir(parents=True)
    tag = f"Bench{next(_variants):03d}".encode()
    assert len(tag) == len(MAKE)
    out = []
    for f in files:
        data = f.read_bytes()
        if MAKE not in data:
            raise RuntimeError(f"{f}: no EXIF Make {MAKE!r} to patch")
        dst = folder / f.name
        dst.write_bytes(data.replace(MAKE, tag, 1))
        out.append(dst)
    return out


def _target_size(w: int, h: int, min_side: int) -> tuple[int, int]:
    """Shorter side ``min_side``, same aspect ratio, never upscaled (what phototag.images does)."""
    short = min(w, h)
    if min_side <= 0 or short <= min_side:
        return (w, h)
    s = min_side / short
    return (min_side, max(1, round(h * s))) if w <= h else (max(1, round(w * s)), min_side)


def full_decode(path: Path, min_side: int) -> Image.Image:
    """The naive way: decode every pixel of the JPEG, convert to RGB, then scale down to the model size."""
    with Image.open(path) as im:
        im.load()
        rgb = im.convert("RGB")
    return rgb.resize(_target_size(*rgb.size, min_side), Image.Resampling.BICUBIC)


def _fresh(images: Sequence[DecodedImage], tag: str) -> list[DecodedImage]:
    """The same pixels under a new content hash: analyzers that cache results by content hash (the bundled
    EfficientNet does, so that classify and embed share one forward pass) must really compute in every pass."""
    return [replace(d, photo=replace(d.photo, content_hash=f"{d.photo.content_hash}-{tag}")) for d in images]


def _model_id(analyzer: Analyzer) -> str:
    try:
        return analyzer.model_info().id
    except Exception:
        return "?"


def _short(model: str) -> str:
    return Path(model).name if os.sep in model else model


# -- 1. test images -----------------------------------------------------------------------------------------------


def make_photos(folder: Path, n: int) -> list[Path]:
    """``n`` 12 MP JPEGs (quality 90, camera-like EXIF and grain) from the real sample photos.

    Each is a slightly different crop, brightness, mirror and grain of one of the six samples, so every file
    has its own content hash; files come out around 3 MB, like a phone's 12 MP JPEG.
    """
    samples = write_samples(folder / "samples")
    out_dir = folder / "src"
    out_dir.mkdir(parents=True)
    rng = np.random.default_rng(12)
    pad = 64
    noise = rng.standard_normal((SIZE[1] + pad, SIZE[0] + pad), dtype=np.float32)
    paths = []
    for i in range(n):
        src = samples[i % len(samples)]
        with Image.open(src) as im:
            rgb = im.convert("RGB")
        w, h = rgb.size
        size = SIZE if w >= h else SIZE[::-1]
        # a random crop of 90-100% of the largest box with the target's aspect ratio
        aspect = size[0] / size[1]
        cw, ch = (w, w / aspect) if w / h < aspect else (h * aspect, h)
        scale = rng.uniform(0.9, 1.0)
        cw, ch = cw * scale, ch * scale
        x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
        big = rgb.resize(size, Image.Resampling.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))
        if (i // len(samples)) % 2:
            big = big.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = np.asarray(big, dtype=np.float32) * rng.uniform(0.92, 1.08)
        dy, dx = (int(v) for v in rng.integers(0, pad, 2))
        grid = noise if size == SIZE else noise.T
        arr += grid[dy : dy + size[1], dx : dx + size[0], None] * GRAIN
        photo = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
        exif = Image.Exif()
        exif[0x010F] = MAKE.decode()  # Make
        exif[0x0110] = "BC-12"  # Model
        exif[0x0112] = 1  # Orientation
        exif[0x0132] = f"2024:05:{1 + i % 28:02d} 12:{i % 60:02d}:00"  # DateTime
        path = out_dir / f"{src.stem}-{i:03d}.jpg"
        photo.save(path, "JPEG", quality=QUALITY, exif=exif)
        paths.append(path)
    return paths


# -- 2. decode ----------------------------------------------------------------------------------------------------


def bench_decode(
    report: Report, config: Config, paths: Sequence[Path], sizes: Sequence[int]
) -> dict[str, Any]:
    """ms/image, median over images: full decode + resize against phototag's decode (JPEG draft mode)."""
    full_decode(paths[0], sizes[0])  # warm-up: Pillow's plugin registry, libjpeg's tables
    decode(_stat_photo(paths[0], "warm"), sizes[0], config.image)
    out: dict[str, Any] = {}
    for size in sizes:
        full_ms, draft_ms = [], []
        for p in paths:  # interleaved, so that a noisy moment hits both
            t = time.perf_counter()
            full_decode(p, size)
            full_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            decode(_stat_photo(p, "bench"), size, config.image)
            draft_ms.append((time.perf_counter() - t) * 1000)
        dw, dh = read_image(paths[0], size, config.image).decoded_size
        full, draft = _median(full_ms), _median(draft_ms)
        report.add("decode", f"full decode + resize, short side {size}", full, "ms/image", note="baseline")
        report.add(
            "decode",
            f"phototag decode (draft), short side {size}",
            draft,
            "ms/image",
            full / draft,
            f"libjpeg decodes {dw}x{dh}, then resize",
        )
        out[str(size)] = {"full_ms": full, "draft_ms": draft, "decoded_size": [dw, dh]}
    return out


# -- 3. analyzers -------------------------------------------------------------------------------------------------


def load_analyzers(report: Report, runtime: AnalyzerRuntime) -> dict[str, Any]:
    """Load each analyzer through the runtime, on the device the pipeline picks (cold: the first load in this
    process)."""
    devices = {}
    for a in runtime.analyzers:
        t = time.perf_counter()
        error = runtime.load(a.name)
        seconds = time.perf_counter() - t
        if error is not None:
            raise SystemExit(error)
        device = runtime.devices()[a.name]
        where = f"{device.torch_device} {device.dtype}, {device.threads} threads"
        devices[a.name] = {"device": device.torch_device, "dtype": device.dtype, "threads": device.threads}
        shared = " (model shared, already loaded)" if seconds < 0.005 else ""
        report.add("load", f"{a.name}: load {_short(_model_id(a))}", seconds, "s", note=where + shared)
    return devices


def analyze(runtime: AnalyzerRuntime, name: str, images: Sequence[DecodedImage]) -> list[Analysis]:
    """``runtime.analyze``, stopping the benchmark on an error (a benchmark of a failing model means nothing)."""
    ran = runtime.analyze(name, images)
    if ran.analyses is None:
        raise SystemExit(ran.error)
    return ran.analyses


def _timed_pass(
    runtime: AnalyzerRuntime, analyzer: Analyzer, images: Sequence[DecodedImage], batch: int, tag: str
) -> tuple[float, list[Analysis]]:
    images = _fresh(images, tag)
    results: list[Analysis] = []
    t = time.perf_counter()
    for i in range(0, len(images), batch):
        results += analyze(runtime, analyzer.name, images[i : i + batch])
    return time.perf_counter() - t, results


def bench_analyzers(
    report: Report, runtime: AnalyzerRuntime, images: Sequence[DecodedImage], batch: int, repeats: int
) -> tuple[dict[str, Any], dict[str, list[Analysis]]]:
    """images/s per analyzer at batch 1 and batch ``batch`` on pre-decoded images, after a warm-up."""
    sizes = [1] if batch == 1 else [1, batch]
    out: dict[str, Any] = {}
    analyses: dict[str, list[Analysis]] = {}
    n = len(images)
    for a in runtime.analyzers:
        for b in sizes:  # warm-up: first calls allocate, pick kernels, encode vocabularies
            _timed_pass(runtime, a, images[:b], b, f"{a.name}-warm{b}")
        times: dict[int, list[float]] = {b: [] for b in sizes}
        for r in range(repeats):
            for b in sizes:  # interleaved, so that a noisy moment does not hit one batch size only
                seconds, analyses[a.name] = _timed_pass(runtime, a, images, b, f"{a.name}-b{b}r{r}")
                times[b].append(seconds)
        rates = {b: n / min(times[b]) for b in sizes}
        label = f"{a.name} ({_short(_model_id(a))})"
        report.add(
            "analyze", f"{label} batch 1", rates[1], "images/s", note=f"{1000 / rates[1]:.0f} ms/image"
        )
        if batch != 1:
            report.add(
                "analyze",
                f"{label} batch {batch}",
                rates[batch],
                "images/s",
                rates[batch] / rates[1],
                f"{1000 / rates[batch]:.0f} ms/image",
            )
        out[a.name] = {
            "model": _model_id(a),
            "images_per_s": {str(b): r for b, r in rates.items()},
            "pass_seconds": {str(b): t for b, t in times.items()},
        }
    return out, analyses


def bench_shared(
    report: Report, runtime: AnalyzerRuntime, images: Sequence[DecodedImage], batch: int, repeats: int
) -> dict[str, Any]:
    """Analyzers on one network (same model id: the bundled classify + embed): each on its own copy of the
    images (one forward pass each, the sum) against all of them on the same images (the network's results
    are shared per photo, so one pass serves all), at the pipeline's batch size."""
    groups: dict[str, list[Analyzer]] = {}
    for a in runtime.analyzers:
        groups.setdefault(_model_id(a), []).append(a)
    out: dict[str, Any] = {}
    for model, members in groups.items():
        if len(members) < 2 or model == "?":
            continue
        separate, shared = [], []
        for r in range(repeats + 1):  # the first round is a warm-up
            alone = 0.0
            for a in members:
                seconds, _ = _timed_pass(runtime, a, images, batch, f"{a.name}-alone{r}")
                alone += seconds
            same = _fresh(images, f"shared{r}")
            t = time.perf_counter()
            for i in range(0, len(same), batch):
                for a in members:
                    analyze(runtime, a.name, same[i : i + batch])
            if r:
                separate.append(alone)
                shared.append(time.perf_counter() - t)
        n = len(images)
        names = " + ".join(a.name for a in members)
        sep_ms, shared_ms = 1000 * min(separate) / n, 1000 * min(shared) / n
        report.add("analyze", f"{names}, each its own pass", sep_ms, "ms/image", note="baseline")
        report.add(
            "analyze",
            f"{names}, one shared pass",
            shared_ms,
            "ms/image",
            sep_ms / shared_ms,
            f"{sep_ms - shared_ms:.0f} ms/image saved ({_short(model)})",
        )
        out[names] = {"model": model, "separate_ms": sep_ms, "shared_ms": shared_ms}
    return out


def bench_onnx(
    report: Report,
    analyzers: Sequence[Analyzer],
    images: Sequence[DecodedImage],
    batch: int,
    repeats: int,
    clip: str | None = None,
    tiny: bool = False,
) -> dict[str, Any]:
    """ONNX Runtime against fp32 torch: the bundled EfficientNet (torch, ONNX fp32, ONNX int8: same photos,
    same batch size, same threads; each export made once, in the user's cache) and a CLIP model's towers
    (:func:`bench_onnx_clip`), with the accuracy gate's verdicts and the agreement on these photos."""
    out: dict[str, Any] = {}
    if any(_model_id(a) == "efficientnet-lite0" for a in analyzers):
        out["efficientnet"] = bench_onnx_efficientnet(report, images, batch, repeats)
    out["clip"] = bench_onnx_clip(report, analyzers, images, batch, repeats, clip, tiny)
    return out


def _agreement(
    reference: Sequence[tuple[np.ndarray, np.ndarray]], got: Sequence[tuple[np.ndarray, np.ndarray]]
) -> Any:
    """How close ``got`` is to ``reference`` (features, probabilities per photo): the gate's figures."""
    from phototag.onnxbackend import compare

    return compare(
        (np.stack([f for f, _ in reference]), np.stack([p for _, p in reference])),
        (np.stack([f for f, _ in got]), np.stack([p for _, p in got])),
    )


def bench_onnx_efficientnet(
    report: Report, images: Sequence[DecodedImage], batch: int, repeats: int
) -> dict[str, Any]:
    """EfficientNet-Lite0 forward passes on torch fp32 (the baseline), ONNX Runtime fp32 and int8."""
    from phototag.bundled.efficientnet import MODEL_ID, EfficientNetRuntime

    threads = _torch_threads()
    cpu = Device("cpu", threads=threads)
    runtimes = {
        "torch": EfficientNetRuntime.load(cpu, "torch"),
        "onnx": EfficientNetRuntime.load(cpu, "onnx"),
        "onnx_int8": EfficientNetRuntime.load(cpu, "onnx", quantize="int8"),
    }
    times: dict[str, list[float]] = {k: [] for k in runtimes}
    outputs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for r in range(repeats + 1):  # the first round is a warm-up
        for name, rt in runtimes.items():
            rt.clear_cache()
            t = time.perf_counter()
            results = []
            for i in range(0, len(images), batch):
                results += rt.run(images[i : i + batch], "squash")
            if r:
                times[name].append(time.perf_counter() - t)
            outputs[name] = results
    n = len(images)
    ms = {k: 1000 * min(v) / n for k, v in times.items()}
    report.add(
        "onnx", f"{MODEL_ID} forward, torch fp32, batch {batch}", ms["torch"], "ms/image", note="baseline"
    )
    doc: dict[str, Any] = {"ms_per_image": ms, "threads": threads, "gate": {}, "here": {}}
    for name, label in (("onnx", "ONNX Runtime fp32"), ("onnx_int8", "ONNX Runtime int8")):
        rt = runtimes[name]
        runs = "int8" if rt.onnx is not None and rt.onnx.path.name.endswith("-int8.onnx") else "fp32"
        report.add(
            "onnx",
            f"{MODEL_ID} forward, {label}, batch {batch}",
            ms[name],
            "ms/image",
            ms["torch"] / ms[name],
            f"{threads} threads; runs {runs}; gate: {rt.backend_reason}",
        )
        here = _agreement(outputs["torch"], outputs[name])
        report.add(
            "onnx",
            f"{label} vs torch on these photos: top-1 agreement",
            100 * here.top1_agreement,
            "%",
            note=f"min embedding cosine {here.min_cosine:.6f} (gate: top-1 >= 99%, cosine >= 0.99)",
        )
        doc["gate"][name], doc["here"][name] = rt.backend_reason, asdict(here)
    return doc


def _clip_model(analyzers: Sequence[Analyzer], clip: str | None) -> tuple[str | None, str]:
    """The CLIP-family model to measure and where it came from: ``--onnx-clip``, else a configured zero-shot
    classify or dual-encoder embed, else the default CLIP if the Hugging Face cache has it; None and why not."""
    from phototag.hf.classify import HFClassifier
    from phototag.hf.embed import HFEmbedder, is_dual_encoder
    from phototag.hf.loading import load_config as load_model_config
    from phototag.hf.loading import resolve_model

    if clip:
        return clip, "--onnx-clip"
    for a in analyzers:
        if isinstance(a, HFClassifier | HFEmbedder):
            model = str(a.settings.model)  # type: ignore[attr-defined]
            try:
                if is_dual_encoder(load_model_config(resolve_model(model, download=False))):
                    return model, f"plugins.{a.name}.model"
            except PhototagError:
                continue
    default = "openai/clip-vit-base-patch32"
    try:
        resolve_model(default, download=False)
    except PhototagError:
        return None, (
            f"no local CLIP model: {default} is not in the Hugging Face cache; pass --onnx-clip MODEL (a folder or "
            "a cached hub id) or configure a CLIP in plugins.classify/embed"
        )
    return default, "the Hugging Face cache"


def bench_onnx_clip(
    report: Report,
    analyzers: Sequence[Analyzer],
    images: Sequence[DecodedImage],
    batch: int,
    repeats: int,
    clip: str | None,
    tiny: bool,
) -> dict[str, Any]:
    """A CLIP model's image and text towers on torch fp32 (the baseline), ONNX Runtime fp32 and ONNX Runtime
    int8 (each export made once, in the user's cache): each tower's gate verdict and its agreement with torch
    on these photos, and the speed (ms/image for the image tower, ms/text over the bundled vocabulary's
    prompts) only for a full-size model: the tiny random models of ``--tiny`` are a correctness check, their
    speed means nothing. int8 is timed even when it fails the gate (then the plugins use fp32), and says so."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    from phototag.hf.embed import image_features, text_features
    from phototag.hf.loading import load_config as load_model_config
    from phototag.hf.loading import load_model, load_processor, release_model, resolve_model
    from phototag.hf.onnxtowers import TowerOpener, gate_texts
    from phototag.onnxbackend import compare

    model, origin = _clip_model(analyzers, clip)
    if model is None:
        print(f"  CLIP on ONNX Runtime: skipped, {origin}")
        return {"skipped": origin}
    source = resolve_model(model, download=False)
    model_config = load_model_config(source)
    width = int(getattr(model_config.vision_config, "hidden_size", 0))
    toy = tiny or width < 128  # the tiny test models are 32 wide; the smallest real CLIP vision tower is 768
    what = (
        "tiny random weights: a correctness check, speed not measured"
        if toy
        else f"full-size, vision width {width}: speed measured"
    )
    print(f"  CLIP on ONNX Runtime: {_short(model)} ({origin}; {what})")
    threads = _torch_threads()
    cpu = Device("cpu", threads=threads, dtype="float32")
    net = load_model(source, AutoModel, cpu)
    try:
        processor = load_processor(source, AutoImageProcessor)
        tokenizer = load_processor(source, AutoTokenizer)
        opener = TowerOpener(net, source, model_config, processor, tokenizer, cpu)
        towers = {q: {t: opener.open(t, q) for t in ("vision", "text")} for q in ("none", "int8")}
        texts = gate_texts()

        def embed(variant: str) -> tuple[np.ndarray, np.ndarray, float, float]:
            q = {"onnx": "none", "onnx_int8": "int8"}.get(variant)
            vision = towers[q]["vision"][0] if q else None
            text = towers[q]["text"][0] if q else None
            t = time.perf_counter()
            image = np.concatenate(
                [
                    image_features(net, processor, images[i : i + batch], vision).numpy()
                    for i in range(0, len(images), batch)
                ]
            )
            t_image = time.perf_counter() - t
            t = time.perf_counter()
            words = text_features(
                net, tokenizer, model_config, texts, chunk=batch * 8, text_tower=text
            ).numpy()
            return image, words, t_image, time.perf_counter() - t

        variants = ("torch", "onnx", "onnx_int8")
        times: dict[str, dict[str, list[float]]] = {v: {"image": [], "text": []} for v in variants}
        vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for r in range(repeats + 1):  # the first round is a warm-up
            for v in variants:
                image, words, t_image, t_text = embed(v)
                if r:
                    times[v]["image"].append(t_image)
                    times[v]["text"].append(t_text)
                vectors[v] = (image, words)
        doc: dict[str, Any] = {"model": model, "origin": origin, "full_size": not toy, "towers": {}}
        ref_image, ref_text = vectors["torch"]
        for v, q in (("onnx", "none"), ("onnx_int8", "int8")):
            label = "ONNX Runtime " + ("int8" if q == "int8" else "fp32")
            image, words = vectors[v]
            # zero-shot over the vocabulary's prompts with the other tower from torch, as the gate does
            here = {
                "vision": compare((ref_image, ref_image @ ref_text.T), (image, image @ ref_text.T)),
                "text": compare((ref_text, ref_image @ ref_text.T), (words, ref_image @ words.T)),
            }
            doc["towers"][v] = {}
            for tower in ("vision", "text"):
                gate = towers[q][tower][1]
                verdict = (
                    "passed" if gate.passed else "FAILED, the plugins would not use it"
                ) + f": {gate.describe()}"
                report.add(
                    "onnx",
                    f"CLIP {'image' if tower == 'vision' else 'text'} tower, {label}: top-1 vs torch here",
                    100 * here[tower].top1_agreement,
                    "%",
                    note=f"min cosine {here[tower].min_cosine:.5f}; gate {verdict}"
                    + ("; tiny random model: correctness only" if toy else ""),
                )
                doc["towers"][v][tower] = {
                    "gate": asdict(gate),
                    "passed": gate.passed,
                    "here": asdict(here[tower]),
                }
        if toy:
            print("  CLIP speed: skipped, the weights are tiny and random (their speed means nothing)")
            return doc
        per = {"image": len(images), "text": len(texts)}
        ms = {v: {k: 1000 * min(t) / per[k] for k, t in times[v].items()} for v in variants}
        for kind, unit in (("image", "ms/image"), ("text", "ms/text")):
            base = ms["torch"][kind]
            what = f"batch {batch}" if kind == "image" else f"{len(texts)} prompts, {batch * 8} a call"
            report.add("onnx", f"CLIP {kind} tower, torch fp32, {what}", base, unit, note="baseline")
            for v in ("onnx", "onnx_int8"):
                label = "ONNX Runtime " + ("int8" if v == "onnx_int8" else "fp32")
                report.add(
                    "onnx",
                    f"CLIP {kind} tower, {label}",
                    ms[v][kind],
                    unit,
                    base / ms[v][kind],
                    f"{threads} threads",
                )
        doc["ms"] = ms
        return doc
    finally:
        release_model(source, AutoModel, cpu)


# -- 4. metadata --------------------------------------------------------------------------------------------------


def keyword_args(result: PhotoResult, config: Config) -> list[str]:
    """The keywords and hierarchy phototag would write, as plain exiftool assignments."""
    want = desired_from(result, config.metadata.keyword_root, config.metadata.min_score)
    args = [f"-XMP-dc:Subject={k}" for k in want.subject]
    args += [f"-XMP-lr:HierarchicalSubject={h}" for h in want.hierarchy]
    # no keyword: a naive loop still runs exiftool once; it writes its own name (exiftool refuses an empty write)
    return args or ["-XMP-xmp:CreatorTool=phototag-bench"]


def exiftool_process(exe: str, args: Sequence[str], target: Path) -> None:
    """One exiftool process for one file (the naive way): perl starts, loads its modules, writes, exits."""
    done = subprocess.run([exe, "-q", "-m", *args, str(target)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"exiftool failed on {target}: {done.stderr.strip()}")


def results_for(
    paths: Sequence[Path], analyzers: Sequence[Analyzer], analyses: dict[str, list[Analysis]]
) -> list[PhotoResult]:
    """PhotoResults for ``paths`` from the analyses of the analyzer section (same photos, same order)."""
    out = []
    for i, p in enumerate(paths):
        runs = tuple(
            AnalyzerRun(a.name, a.task, a.model_info(), a.fingerprint(), analyses[a.name][i])
            for a in analyzers
            if a.name in analyses
        )
        with Image.open(p) as im:
            w, h = im.size
        out.append(PhotoResult(make_photo(p), w, h, runs))
    return out


def bench_metadata(
    report: Report,
    config: Config,
    work: Path,
    paths: Sequence[Path],
    analyzers: Sequence[Analyzer],
    analyses: dict[str, list[Analysis]],
) -> dict[str, Any]:
    """files/s: one exiftool process per file vs phototag's stay_open client (same arguments) vs XmpWriter."""
    exe = shutil.which(config.exiftool.path) or config.exiftool.path
    n = len(paths)
    out: dict[str, Any] = {}

    per_process = copy_tree(paths, work / "meta-process")
    results = results_for(per_process, analyzers, analyses)
    t = time.perf_counter()
    for p, r in zip(per_process, results, strict=True):
        exiftool_process(exe, keyword_args(r, config), p.with_name(p.name + ".xmp"))
    base = n / (time.perf_counter() - t)
    report.add("metadata", "one exiftool process per file (keywords)", base, "files/s", note="baseline")
    out["process_per_file"] = base

    stay = copy_tree(paths, work / "meta-stay-open")
    results = results_for(stay, analyzers, analyses)
    with Exiftool(config.exiftool.path, timeout=config.exiftool.timeout) as client:
        _ = client.version  # started and answering: its start-up is paid once per run, not per file
        t = time.perf_counter()
        for p, r in zip(stay, results, strict=True):
            client.execute("-m", *keyword_args(r, config), p.with_name(p.name + ".xmp"), file=p)
        rate = n / (time.perf_counter() - t)
    report.add("metadata", "stay_open client, same arguments", rate, "files/s", rate / base, "1 command/file")
    out["stay_open_same_args"] = rate

    full = copy_tree(paths, work / "meta-writer")
    results = results_for(full, analyzers, analyses)
    writer = XmpWriter(config)
    try:
        _ = writer.exiftool.version
        t = time.perf_counter()
        for r in results:
            writer.write(r)
        rate = n / (time.perf_counter() - t)
    finally:
        writer.close()
    report.add(
        "metadata",
        f"XmpWriter.write ({config.metadata.mode}, everything)",
        rate,
        "files/s",
        rate / base,
        "read, seed from photo, plan, write, publish",
    )
    out["xmp_writer"] = rate
    return out


# -- 5. the whole pipeline against a naive loop -------------------------------------------------------------------


def _per_image(spent: dict[str, float], n: int) -> dict[str, float]:
    return {k: v * 1000 / n for k, v in spent.items()}


def naive_loop(
    config: Config, paths: Sequence[Path], runtime: AnalyzerRuntime, min_side: int, tag: str
) -> dict[str, Any]:
    """Full decode, every analyzer at batch 1, one exiftool process per file, JSON written plainly."""
    exe = shutil.which(config.exiftool.path) or config.exiftool.path
    spent = {"decode": 0.0, "analyze": 0.0, "exiftool": 0.0, "json": 0.0}
    in_model: dict[str, float] = {}
    start = time.perf_counter()
    for i, p in enumerate(paths):
        t0 = time.perf_counter()
        image = full_decode(p, min_side)
        with Image.open(p) as im:
            w, h = im.size
        d = DecodedImage(_stat_photo(p, f"{tag}-{i}"), image, w, h, "JPEG")
        t1 = time.perf_counter()
        runs = []
        for a in runtime.analyzers:
            ta = time.perf_counter()
            analysis = analyze(runtime, a.name, [d])[0]
            in_model[a.name] = in_model.get(a.name, 0.0) + time.perf_counter() - ta
            runs.append(AnalyzerRun(a.name, a.task, a.model_info(), a.fingerprint(), analysis))
        result = PhotoResult(d.photo, w, h, tuple(runs))
        t2 = time.perf_counter()
        exiftool_process(exe, keyword_args(result, config), p.with_name(p.name + ".xmp"))
        t3 = time.perf_counter()
        json_sidecar_path(p).write_text(json.dumps(result_to_dict(result), indent=2))
        t4 = time.perf_counter()
        for key, (begin, end) in zip(spent, [(t0, t1), (t1, t2), (t2, t3), (t3, t4)], strict=True):
            spent[key] += end - begin
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "images_per_s": len(paths) / seconds,
        "ms_per_image": _per_image(spent, len(paths)),
        "analyzer_ms_per_image": _per_image(in_model, len(paths)),
    }


def children_cpu() -> float:
    """CPU seconds of this process's live child processes (the writers' exiftool, started by whichever thread
    wrote first), from /proc (0 elsewhere)."""
    total, me = 0.0, os.getpid()
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == me:  # ppid
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def pipeline_scan(pipeline: Pipeline, config: Config, folder: Path, n: int) -> dict[str, Any]:
    """One ``Pipeline.run`` over ``folder`` (walk, stat, hash, decode, analyze, write XMP + JSON, record)."""
    outcomes: list[Outcome] = []
    stages = dict(pipeline.stage_seconds)
    own, kids = os.times(), children_cpu()
    t = time.perf_counter()
    summary = pipeline.run(iter_photos([folder], config), on_outcome=outcomes.append)
    seconds = time.perf_counter() - t
    after = os.times()
    own_cpu = after.user + after.system - own.user - own.system
    exiftool_cpu = children_cpu() - kids
    stages = {k: v - stages[k] for k, v in pipeline.stage_seconds.items()}
    if summary.tagged != n:  # a correctness check, not a timing one
        problems = "; ".join(o.message for o in summary.failures[:3])
        raise SystemExit(f"the pipeline tagged {summary.tagged} of {n} photos: {problems}")
    in_model: dict[str, float] = {}
    for o in outcomes:
        for run in o.result.runs if o.result else ():
            in_model[run.analyzer] = in_model.get(run.analyzer, 0.0) + run.seconds
    return {
        "seconds": seconds,
        "images_per_s": n / seconds,
        "analyzer_ms_per_image": _per_image(in_model, n),
        # the run's wall time outside the analyze stage: walk, stat, hash, waiting for decode, writes, records
        "analyze_stage_ms_per_image": stages["analyze"] * 1000 / n,
        "prepare_wait_ms_per_image": stages["prepare_wait"] * 1000 / n,
        "non_model_share": 1 - stages["analyze"] / seconds,
        "analyze_workers": pipeline.analyze_workers,
        "cpu_ms_per_image": {"phototag": own_cpu * 1000 / n, "exiftool": exiftool_cpu * 1000 / n},
    }


def bench_whole(
    report: Report,
    config: Config,
    work: Path,
    paths: Sequence[Path],
    runtime: AnalyzerRuntime,
    min_side: int,
    repeats: int,
) -> dict[str, Any]:
    """The naive loop and ``Pipeline.from_config(...).run`` in turns (fresh copies and state DB each time),
    then stat-only re-scans of the last processed tree."""
    n = len(paths)
    naive_runs: list[dict[str, Any]] = []
    pipe_runs: list[dict[str, Any]] = []
    serial_runs: list[dict[str, Any]] = []  # analyze_workers 1: one analyzer after the other
    pipelines: list[Pipeline] = []
    try:
        for r in range(repeats):

            def naive(r: int = r) -> None:
                folder = copy_tree(paths, work / f"naive-{r}")
                naive_runs.append(naive_loop(config, folder, runtime, min_side, f"naive{r}"))

            def piped(r: int = r, workers: int = 0, runs: list[dict[str, Any]] = pipe_runs) -> None:
                folder = work / f"pipeline-{r}-{workers}"
                copy_tree(paths, folder)
                cfg = config.model_copy(
                    update={
                        "state_db": work / f"state-{r}-{workers}" / "state.db",
                        "analyze_workers": workers,
                    }
                )
                # models are already loaded (shared pool): the setup is plugin registration only
                pipelines.append(Pipeline.from_config(cfg))
                runs.append(pipeline_scan(pipelines[-1], cfg, folder, n) | {"folder": str(folder)})

            def serial(r: int = r) -> None:
                piped(r, 1, serial_runs)

            for step in (naive, piped, serial) if r % 2 == 0 else (serial, piped, naive):
                step()
        last = next(p for p in reversed(pipelines) if p.config.analyze_workers == 0)
        folder = Path(pipe_runs[-1]["folder"])
        rescans = []
        for _ in range(5):
            t = time.perf_counter()
            again = last.run(iter_photos([folder], last.config))
            rescans.append(time.perf_counter() - t)
            if again.skipped != n:  # a correctness check, not a timing one
                raise SystemExit(f"the re-scan skipped {again.skipped} of {n} unchanged photos, not all")
        devices = {k: f"{d.torch_device} {d.dtype} {d.threads} threads" for k, d in last.devices.items()}
    finally:
        for p in pipelines:
            p.close()
            p.state.close()
    best_naive = max(naive_runs, key=lambda x: x["images_per_s"])
    best = max(pipe_runs, key=lambda x: x["images_per_s"])
    best_serial = max(serial_runs, key=lambda x: x["images_per_s"])
    rescan_rate = n / min(rescans)
    hash_ms = _median([_hash_ms(p) for p in paths[: min(n, 8)]])
    of = f"best of {repeats}"
    naive_name = "naive loop (full decode, batch 1, exiftool/file)"
    report.add("whole", naive_name, best_naive["images_per_s"], "images/s", note=f"baseline, {of}")
    report.add(
        "whole",
        f"phototag pipeline (batch {config.batch_size}, draft, stay_open)",
        best["images_per_s"],
        "images/s",
        best["images_per_s"] / best_naive["images_per_s"],
        f"{of}; XMP + JSON written; analyze_workers {best['analyze_workers']}",
    )
    report.add(
        "whole",
        "  the same, analyze_workers 1 (one analyzer at a time)",
        best_serial["images_per_s"],
        "images/s",
        best["images_per_s"] / best_serial["images_per_s"],
        f"{of}; ratio: the default's speed over this",
    )
    report.add(
        "whole",
        "  naive: full decode + resize",
        best_naive["ms_per_image"]["decode"],
        "ms/image",
    )
    report.add(
        "whole",
        "  naive: analyzers at batch 1",
        best_naive["ms_per_image"]["analyze"],
        "ms/image",
        note=_ms(best_naive["analyzer_ms_per_image"]),
    )
    report.add(
        "whole",
        "  naive: exiftool process + JSON",
        best_naive["ms_per_image"]["exiftool"] + best_naive["ms_per_image"]["json"],
        "ms/image",
    )
    report.add(
        "whole",
        f"  pipeline: analyzers at batch {config.batch_size}",
        sum(best["analyzer_ms_per_image"].values()),
        "ms/image",
        note=_ms(best["analyzer_ms_per_image"]),
    )
    report.add(
        "whole",
        "  pipeline: the analyze stage (wall)",
        best["analyze_stage_ms_per_image"],
        "ms/image",
        note=f"analyzers overlap: {best['analyze_workers']} at a time",
    )
    report.add(
        "whole",
        "  pipeline: non-model overhead (wall outside the analyze stage)",
        1000 / best["images_per_s"] - best["analyze_stage_ms_per_image"],
        "ms/image",
        note=f"{best['non_model_share']:.1%} of wall (target <= 10%): walk, stat, hash, decode not overlapped "
        f"(waited {best['prepare_wait_ms_per_image']:.1f} ms/image), writes, records",
    )
    cpu = best["cpu_ms_per_image"]
    cores = usable_cores()
    report.add(
        "whole",
        "  pipeline: CPU per photo (phototag + its exiftool)",
        cpu["phototag"] + cpu["exiftool"],
        "ms/image",
        note=f"phototag {cpu['phototag']:.0f}, exiftool {cpu['exiftool']:.0f}: on {cores} cores at most "
        f"{cores * 1000 / (cpu['phototag'] + cpu['exiftool']):.1f} images/s",
    )
    report.add(
        "whole",
        "re-scan of the processed tree (all skipped)",
        rescan_rate,
        "files/s",
        rescan_rate / best["images_per_s"],
        f"stat only; hashing alone would be {hash_ms:.1f} ms/file",
    )
    return {
        "naive_runs": naive_runs,
        "pipeline_runs": pipe_runs,
        "naive_images_per_s": best_naive["images_per_s"],
        "pipeline_images_per_s": best["images_per_s"],
        "serial_runs": serial_runs,
        "serial_images_per_s": best_serial["images_per_s"],
        "non_model_share": best["non_model_share"],
        "rescan_files_per_s": rescan_rate,
        "rescan_seconds": rescans,
        "hash_ms_per_file": hash_ms,
        "devices": devices,
    }


def _hash_ms(path: Path) -> float:
    t = time.perf_counter()
    hash_file(path)
    return (time.perf_counter() - t) * 1000


# -- 6. re-scan of a large processed tree, start-up, memory ----------------------------------------------------


SEED = 50
"""Photos per folder of the re-scan tree: a seed folder tagged by the real pipeline, then linked."""


def make_seed(folder: Path, n: int) -> list[Path]:
    """``n`` small JPEGs (about 200x150) from the sample photos, each with its own bytes."""
    samples = write_samples(folder.parent / "rescan-samples")
    folder.mkdir(parents=True)
    out = []
    for i in range(n):
        with Image.open(samples[i % len(samples)]) as im:
            small = im.convert("RGB").resize((192 + i, 144), Image.Resampling.BILINEAR)
        path = folder / f"IMG_{i:04d}.jpg"
        small.save(path, "JPEG", quality=85)
        out.append(path)
    return out


def processed_tree(config: Config, work: Path, files: int) -> tuple[Path, int]:
    """A tree of ``files`` photos as a finished ``phototag scan`` leaves it: their sidecars beside them and a
    ``done`` row each in the state DB. Returns (tree, photos).

    Only the seed folder is tagged by the real pipeline (the configured analyzers and writers); the other
    folders are hard links to its files (same size and mtime) with the seed's rows copied under their paths:
    what the pipeline would have recorded had it tagged them, at the cost of a ``link()`` instead of the models.
    """
    seed = work / "rescan-seed"
    make_seed(seed, SEED)
    with Pipeline.from_config(config) as pipeline:
        summary = pipeline.run(iter_photos([seed], config))
        pipeline.state.close()
    if summary.tagged != SEED:  # a correctness check, not a timing one
        raise SystemExit(f"the re-scan seed: tagged {summary.tagged} of {SEED} photos")
    names = sorted(e.name for e in os.scandir(seed) if e.is_file() and not e.name.startswith("."))
    tree = work / "rescan-tree"
    folders = -(-files // SEED)
    db = sqlite3.connect(config.state_db)
    try:
        with db:
            for k in range(folders):
                folder = tree / f"{2000 + k // 100}" / f"{k % 100:02d}-{k:05d}"
                folder.mkdir(parents=True)
                for name in names:
                    os.link(seed / name, folder / name)
                prefix = f"{seed}/"
                db.execute(
                    "INSERT INTO files (path, size, mtime_ns, content_hash, status, error, fingerprints,"
                    " updated, outputs) SELECT ? || substr(path, ?), size, mtime_ns, content_hash, status,"
                    " error, fingerprints, updated, outputs FROM files WHERE path >= ? AND path < ?",
                    (f"{folder}/", len(prefix) + 1, prefix, f"{seed}0"),
                )
    finally:
        db.close()
    return tree, folders * SEED


def bare_walk(tree: Path, photos_only: bool) -> int:
    """``os.walk`` + ``os.stat``: of every file, or of the ``.jpg`` files only (what any re-scan must do)."""
    n = 0
    for root, _dirs, names in os.walk(tree):
        for name in names:
            if not photos_only or name.endswith(".jpg"):
                os.stat(os.path.join(root, name))
                n += 1
    return n


def rss_mb() -> float:
    """This process's resident set now (MB), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rescan(config: Config, tree: Path, photos: int, memory: bool = False) -> dict[str, float]:
    """One in-process ``phototag scan`` of the unchanged tree (walk, skip test, outcomes), as cli.py runs
    it: the walk listed first, then ``Pipeline.run``; with ``memory``, RSS sampled every 5,000 photos."""
    samples: list[float] = []
    seen = 0

    def count(_: Outcome) -> None:
        nonlocal seen
        seen += 1
        if memory and seen % 5000 == 0:
            samples.append(rss_mb())

    with Pipeline.from_config(config) as pipeline:
        before = rss_mb()
        t = time.perf_counter()
        files = list(iter_photos([tree], config))
        summary = pipeline.run(files, on_outcome=count)
        seconds = time.perf_counter() - t
        pipeline.state.close()
    if summary.skipped != photos:  # a correctness check, not a timing one
        raise SystemExit(f"the re-scan skipped {summary.skipped} of {photos} unchanged photos, not all")
    return {"seconds": seconds, "rss_before_mb": before, "rss_max_mb": max(samples, default=before)}


def bench_rescan(report: Report, config: Config, work: Path, files: int, repeats: int) -> dict[str, Any]:
    """Re-scan of an unchanged processed tree against bare walks of the same tree, interleaved, best of R."""
    cfg = config.model_copy(update={"state_db": work / "rescan-state" / "state.db"})
    t = time.perf_counter()
    tree, photos = processed_tree(cfg, work, files)
    entries = bare_walk(tree, False)
    print(
        f"  (re-scan tree: {photos} photos, {entries} files in all, made in {time.perf_counter() - t:.0f} s)"
    )
    times: dict[str, list[float]] = {"all": [], "photos": [], "phototag": []}
    for _ in range(max(repeats, 2)):
        for key in ("all", "photos"):
            t = time.perf_counter()
            bare_walk(tree, key == "photos")
            times[key].append(time.perf_counter() - t)
        times["phototag"].append(rescan(cfg, tree, photos)["seconds"])
    best = {k: min(v) for k, v in times.items()}
    rate = photos / best["phototag"]
    report.add(
        "rescan",
        "bare os.walk + os.stat of every file",
        entries / best["all"],
        "files/s",
        note=f"baseline: {entries} files (photos + sidecars) in {best['all']:.2f} s",
    )
    report.add(
        "rescan",
        "bare os.walk + os.stat of each photo",
        photos / best["photos"],
        "photos/s",
        note=f"baseline: {best['photos']:.2f} s, the least any re-scan does",
    )
    report.add(
        "rescan",
        f"phototag re-scan, {photos} unchanged photos",
        rate,
        "photos/s",
        best["photos"] / best["phototag"],
        f"{best['phototag']:.2f} s; {best['all'] / best['phototag']:.2f}x the every-file walk's time",
    )
    return {
        "photos": photos,
        "files": entries,
        "seconds": times,
        "photos_per_s": rate,
        "ratio_to_photo_walk": best["photos"] / best["phototag"],
        "ratio_to_file_walk": best["all"] / best["phototag"],
        "tree": str(tree),
        "state_db": str(cfg.state_db),
    }


MEMORY_PROBE = """
import json, sys, time
from pathlib import Path
from phototag.config import load_config
from phototag.files import iter_photos
from phototag.pipeline import Pipeline

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

from phototag.config import parse_overrides

given = json.loads(sys.argv[2])
sets = parse_overrides(given["sets"]) | {"state_db": given["state_db"]}
config = load_config(Path(given["config"]) if given["config"] else None, overrides=sets)
tree, out = Path(sys.argv[1]), {"start_mb": rss(), "scans": []}
for _ in range(3):
    samples, seen = [], [0]

    def count(_o):
        seen[0] += 1
        if seen[0] % 5000 == 0:
            samples.append(rss())

    with Pipeline.from_config(config) as pipeline:
        t = time.perf_counter()
        summary = pipeline.run(list(iter_photos([tree], config)), on_outcome=count)
        pipeline.state.close()
    out["scans"].append({"skipped": summary.skipped, "seconds": time.perf_counter() - t,
                         "peak_mb": max(samples, default=rss()), "after_mb": rss()})
print(json.dumps(out))
"""


def bench_memory(
    report: Report, config: Config, work: Path, args: argparse.Namespace, files: int = 100_000
) -> dict[str, Any]:
    """RSS of a fresh process (``python`` + phototag, as ``phototag scan`` runs it) over three re-scans of a
    ``files``-photo tree, sampled every 5,000 photos: the first shows what a re-scan holds (the walk's list of
    paths), the later ones that nothing grows from one to the next."""
    cfg = config.model_copy(update={"state_db": work / "memory-state" / "state.db"})
    tree, photos = processed_tree(cfg, work / "memory", files)
    given = {"config": str(args.config or ""), "sets": args.sets, "state_db": str(cfg.state_db)}
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(tree), json.dumps(given)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the memory probe failed: {done.stderr.strip()[-800:]}")
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    scans = doc["scans"]
    if any(s["skipped"] != photos for s in scans):  # a correctness check, not a timing one
        raise SystemExit(f"the memory re-scans skipped {[s['skipped'] for s in scans]} of {photos} photos")
    first, last = scans[0], scans[-1]
    report.add(
        "memory",
        f"RSS peak, first re-scan of {photos} photos",
        first["peak_mb"] - doc["start_mb"],
        "MB",
        note=f"above the {doc['start_mb']:.0f} MB of a started process (the walk's list of paths)",
    )
    report.add(
        "memory",
        f"RSS peak growth, re-scan 1 -> {len(scans)}",
        last["peak_mb"] - first["peak_mb"],
        "MB",
        note=f"peaks {', '.join(str(round(s['peak_mb'])) for s in scans)} MB: flat means no per-file growth",
    )
    return {"photos": photos, **doc}


STARTUP_RUNS = 5


def _best_run(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """Best wall time and best CPU time (user + system: what a busy machine does not inflate much) of
    ``argv`` over STARTUP_RUNS runs (it must succeed)."""
    walls, cpus = [], []
    for _ in range(STARTUP_RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return min(walls), min(cpus)


def bench_startup(report: Report, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``phototag --help``, ``status`` and a fully cached ``scan`` of one photo, as fresh processes, against
    ``python -c pass`` (the interpreter alone). The scan's photo is tagged once first (models load then);
    ``status`` and the scans get the benchmark's ``--config`` and ``--set`` options and a fresh state DB."""
    photo = make_seed(work / "startup", 1)[0]
    exe = str(Path(sys.executable).with_name("phototag"))
    extra = [f"--config={args.config}"] if args.config else []
    extra += [f"--set={x}" for x in args.sets] + [f"--set=state_db={work / 'startup-state' / 'state.db'}"]
    env = dict(os.environ)
    once = subprocess.run([exe, "scan", *extra, str(photo)], capture_output=True, text=True, env=env)
    if once.returncode != 0:
        raise SystemExit(f"phototag scan {photo} failed: {once.stderr.strip()[-500:]}")
    base, base_cpu = _best_run([sys.executable, "-c", "pass"], env)
    out: dict[str, Any] = {"python -c pass": {"wall_s": base, "cpu_s": base_cpu}}
    report.add(
        "startup", "python -c pass", base, "s", note=f"baseline, best of {STARTUP_RUNS}; CPU {base_cpu:.2f} s"
    )
    for label, argv in (
        ("phototag --help", [exe, "--help"]),
        ("phototag status", [exe, "status", *extra]),
        ("phototag scan (one photo, done)", [exe, "scan", *extra, str(photo)]),
    ):
        seconds, cpu = _best_run(argv, env)
        out[label] = {"wall_s": seconds, "cpu_s": cpu}
        report.add(
            "startup",
            label,
            seconds,
            "s",
            seconds / base,
            f"CPU {cpu:.2f} s; ratio: times the bare interpreter",
        )
    return out


# -- machine and main ---------------------------------------------------------------------------------------------


def machine_info(config: Config) -> dict[str, Any]:
    import PIL
    import PIL.features
    import torch

    hw = probe()
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "os_cpu_count": os.cpu_count(),
        "usable_cores": hw.cpu_cores,
        "ram_mb": hw.ram_total_mb,
        "torch": torch.__version__,
        "cuda": [f"{g.name} ({g.total_mb} MB)" for g in hw.gpus],
        "pillow": PIL.__version__,
        "libjpeg_turbo": bool(PIL.features.check_feature("libjpeg_turbo")),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        with Exiftool(config.exiftool.path) as et:
            info["exiftool"] = et.version
    except Exception as e:  # reported here; the metadata rows then fail with the real error
        info["exiftool"] = f"unavailable: {e}"
    return info


def tiny_overrides(folder: Path) -> dict[str, str]:
    """Tiny random CLIP (classify + embed) and RT-DETR (detect) from tests/tiny_models.py, saved to ``folder``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from transformers.utils import logging as hf_logging

    from tiny_models import build_tiny_clip, build_tiny_rt_detr

    hf_logging.disable_progress_bar()  # "Writing model shards" bars would break the table

    clip = build_tiny_clip(folder / "tiny-clip")
    detr = build_tiny_rt_detr(folder / "tiny-rt-detr")
    return {
        "plugins.classify.model": str(clip),
        "plugins.embed.model": str(clip),
        "plugins.detect.model": str(detr),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=None, help="number of 12 MP JPEGs (default 24; --quick: 8)")
    ap.add_argument("--quick", action="store_true", help="8 images, one pass each: a fast smoke run")
    ap.add_argument(
        "--repeats", type=int, default=None, help="passes per timing, best kept (default 2; --quick 1)"
    )
    ap.add_argument(
        "--config", type=Path, default=None, help="phototag config file (default: as phototag finds it)"
    )
    ap.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="JSON output (default: bench/out/pipeline.json)"
    )
    ap.add_argument(
        "--tiny", action="store_true", help="tiny RANDOM transformers models (a code-path check only)"
    )
    ap.add_argument(
        "--tmp", type=Path, default=None, help="folder for the work files (default: the system's temp)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument(
        "--onnx-clip",
        default=None,
        metavar="MODEL",
        help="CLIP model (local folder or cached hub id) for the ONNX Runtime rows (default: a configured CLIP)",
    )
    ap.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated, of {', '.join(ALL_SECTIONS)} (default: {','.join(SECTIONS)})",
    )
    ap.add_argument(
        "--rescan-files", type=int, default=50_000, help="photos in the re-scan tree (default 50000)"
    )
    ap.add_argument(
        "--memory", action="store_true", help="add the memory section: RSS over a 100,000-photo re-scan"
    )
    args = ap.parse_args(argv)
    args.images = args.images or (8 if args.quick else 24)
    args.sections = [x.strip() for x in args.sections.split(",") if x.strip()]
    if args.memory and "memory" not in args.sections:
        args.sections.append("memory")
    unknown = set(args.sections) - set(ALL_SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {', '.join(sorted(unknown))}: choose from {', '.join(ALL_SECTIONS)}")
    args.repeats = args.repeats or (1 if args.quick else 2)
    if args.images < 1 or args.repeats < 1:
        ap.error("--images and --repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="phototag-bench-", dir=args.tmp))
    try:
        overrides = tiny_overrides(work / "models") if args.tiny else {}
        overrides.update(parse_overrides(args.sets))
        overrides["state_db"] = str(work / "state" / "state.db")  # always fresh, never the user's
        config = load_config(args.config, overrides=overrides)
        doc = run(Report(), config, work, args)
    except PhototagError as e:  # a config or model problem: its message says what to fix
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"work files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    doc["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n{doc['seconds']:.0f} s in all; JSON written to {args.out}")
    return 0


def run(report: Report, config: Config, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every section in order; returns the JSON document."""
    # the analyzers as the pipeline registers them (a config error stops here, before any work); this pipeline
    # never runs, it lends its loaded analyzers to every section
    holder = Pipeline.from_config(config, state=StateDB(work / "state-holder.db"))
    try:
        if not holder.analyzers:
            raise SystemExit("no analyzer is enabled in this configuration: nothing to benchmark")
        return _sections(report, config, work, args, holder.analyzers)
    finally:
        holder.close()
        holder.state.close()


def _sections(
    report: Report, config: Config, work: Path, args: argparse.Namespace, analyzers: Sequence[Analyzer]
) -> dict[str, Any]:
    machine = machine_info(config)
    n = args.images
    print(
        f"phototag pipeline benchmark: {n} x 12 MP JPEG, batch_size {config.batch_size}, best of {args.repeats}"
    )
    print(
        f"  CPU: {machine['cpu']}, {machine['usable_cores']} usable cores; load average {machine['loadavg_start']}"
    )
    print(
        f"  torch {machine['torch']}, CUDA: {', '.join(machine['cuda']) or 'none'}; Pillow {machine['pillow']} "
        f"(libjpeg-turbo {machine['libjpeg_turbo']}); exiftool {machine['exiftool']}; config: {config.source}"
    )
    if args.tiny:
        print(
            "  --tiny: classify/embed/detect are tiny RANDOM transformers models: a code-path check, not a speed"
        )

    cpu_start, wall_start = cpu_seconds(), time.perf_counter()
    doc: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "tiny_random_models": bool(args.tiny)}
    if "pipeline" in args.sections:
        doc |= _pipeline_sections(report, config, work, args, analyzers, machine)
    else:
        print(f"  {'':<48} {'figure':>8} {'unit':<9} {'ratio':>7}  note")
    if "rescan" in args.sections:
        doc["rescan"] = bench_rescan(report, config, work, args.rescan_files, args.repeats)
    if "memory" in args.sections:
        doc["memory"] = bench_memory(report, config, work, args)
    if "startup" in args.sections:
        doc["startup"] = bench_startup(report, work, args)
    machine["cpu_seconds"] = competition(cpu_start, cpu_seconds(), time.perf_counter() - wall_start, machine)
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["machine"] = machine
    doc["rows"] = [asdict(r) for r in report.rows]
    return doc


def _pipeline_sections(
    report: Report,
    config: Config,
    work: Path,
    args: argparse.Namespace,
    analyzers: Sequence[Analyzer],
    machine: dict[str, Any],
) -> dict[str, Any]:
    """Decode, each analyzer, metadata writes, the whole pipeline against the naive loop (12 MP JPEGs)."""
    n = args.images
    t = time.perf_counter()
    paths = make_photos(work, n)
    mb = [p.stat().st_size / 1e6 for p in paths]
    print(
        f"  made {n} images in {time.perf_counter() - t:.0f} s: {SIZE[0]}x{SIZE[1]}, quality {QUALITY}, "
        f"{_median(mb):.1f} MB median ({min(mb):.1f}-{max(mb):.1f})\n"
    )
    print(f"  {'':<48} {'figure':>8} {'unit':<9} {'ratio':>7}  note")

    runtime = AnalyzerRuntime(config, analyzers)
    devices = load_analyzers(report, runtime)
    torch_threads = _torch_threads()
    # the size the pipeline decodes to: the largest input any enabled analyzer needs
    min_side = max(a.input_size for a in analyzers)
    decode_rows = bench_decode(report, config, paths[: min(n, 12)], sorted({224, 384, min_side}))
    decoded = [decode(make_photo(p), min_side, config.image) for p in paths]
    per_task, analyses = bench_analyzers(report, runtime, decoded, config.batch_size, args.repeats)
    shared = bench_shared(report, runtime, decoded, config.batch_size, args.repeats)
    onnx = bench_onnx(report, analyzers, decoded, config.batch_size, args.repeats, args.onnx_clip, args.tiny)
    del decoded
    meta = bench_metadata(report, config, work, paths, analyzers, analyses)
    whole = bench_whole(report, config, work, paths, runtime, min_side, args.repeats)

    machine["torch_threads"] = torch_threads
    return {
        "config": {
            "source": config.source,
            "batch_size": config.batch_size,
            "decode_workers": config.decode_workers,
            "device": config.device,
            "metadata_mode": config.metadata.mode,
            "analyzers": {a.name: _model_id(a) for a in analyzers},
            "decode_min_side": min_side,
        },
        "images": {"count": n, "size": list(SIZE), "quality": QUALITY, "mb": [round(x, 2) for x in mb]},
        "repeats": args.repeats,
        "devices": devices,
        "decode": decode_rows,
        "analyzers": per_task,
        "shared_network": shared,
        "onnx": onnx,
        "metadata": meta,
        "whole": whole,
    }


def competition(
    start: dict[str, float], end: dict[str, float], wall: float, machine: dict[str, Any]
) -> dict[str, float]:
    """What other processes (and the hypervisor, as steal) took from this machine during the run; printed."""
    delta = {k: end[k] - start[k] for k in start if k in end}
    if "busy" not in delta:
        return delta
    others = max(0.0, delta["busy"] - delta["own"])
    share = others / (wall * machine["usable_cores"])
    print(
        f"\n  other processes used {others:.0f} CPU-s during the {wall:.0f} s run ({share:.0%} of "
        f"{machine['usable_cores']} cores); steal {delta['steal']:.1f} s. "
        + ("Figures are disturbed: compare ratios only." if share > 0.1 else "A quiet machine.")
    )
    return delta | {"others": others, "others_share": share, "wall": wall}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    raise SystemExit(main())
