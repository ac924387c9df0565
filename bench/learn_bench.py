"""Your own tags: learn time and precision on real photos, against a nearest-neighbour baseline in the same run.

    .venv/bin/python bench/learn_bench.py            # 9 photos x 16 variants
    .venv/bin/python bench/learn_bench.py --variants 12

Photos: nine real photos that pip packages carry (scikit-image, matplotlib), each made into ``--variants``
variants (crops of 60-90%, flips, exposure and colour changes, rotations up to 10 degrees), embedded with the
bundled EfficientNet-Lite0 (1280-d, as ``scan`` does). The "user" tagged the first half of each photo's
variants with a keyword per photo (one photo gets too few, and is refused); the other half is held out.

Rows: time to embed, time of ``learn.train`` (cross-validation included), the cross-validated precision and
recall it reports, the precision and recall on the held-out variants at the chosen thresholds, and the same
for the baseline: give a photo the keyword of its nearest tagged photo (cosine) when that is at least 0.8.
Writes ``bench/out/learn_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from phototag.bundled.efficientnet import EfficientNetEmbedder
from phototag.config import load_config
from phototag.learn import train
from phototag.samples import _matplotlib_sample, _skimage_dir
from phototag.types import DecodedImage, Device, Photo

OUT = Path(__file__).resolve().parent / "out"
SOURCES = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "camera.png",
           "coins.png", "page.png", "grace_hopper.jpg"]  # fmt: skip


def variant(image: Image.Image, r: random.Random) -> Image.Image:
    w, h = image.size
    f = r.uniform(0.6, 0.9)
    cw, ch = int(w * f), int(h * f)
    x, y = r.randint(0, w - cw), r.randint(0, h - ch)
    v = image.crop((x, y, x + cw, y + ch))
    if r.random() < 0.5:
        v = ImageOps.mirror(v)
    v = ImageEnhance.Brightness(v).enhance(r.uniform(0.7, 1.3))
    v = ImageEnhance.Color(v).enhance(r.uniform(0.6, 1.4))
    return v.rotate(r.uniform(-10, 10), resample=Image.Resampling.BICUBIC)


def scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    tp = int((pred & truth).sum())
    return tp / max(1, int(pred.sum())), tp / max(1, int(truth.sum()))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", type=int, default=16)
    args = parser.parse_args()
    r = random.Random(0)
    images, source_of = [], []
    for s, name in enumerate(SOURCES):
        path = _matplotlib_sample(name) if name == "grace_hopper.jpg" else _skimage_dir() / name
        base = Image.open(path).convert("RGB")
        for _ in range(args.variants):
            images.append(variant(base, r))
            source_of.append(s)
    embedder = EfficientNetEmbedder(
        "embed", EfficientNetEmbedder.Settings(), load_config(None, overrides={}, environ={})
    )
    embedder.load(Device("cpu", threads=2))
    t = time.perf_counter()
    vectors = []
    for i, im in enumerate(images):
        scale = 224 / min(im.size)
        small = im.resize((max(224, round(im.width * scale)), max(224, round(im.height * scale))))
        decoded = DecodedImage(
            Photo(Path(f"v{i}.jpg"), 0, 0, f"{i:032x}"), small, im.width, im.height, "JPEG"
        )
        vectors.append(np.asarray(embedder.analyze([decoded])[0].embedding, dtype=np.float32))
    embed_s = time.perf_counter() - t
    x = np.stack(vectors)
    src = np.array(source_of)
    half = args.variants // 2
    rank = np.array([i % args.variants for i in range(len(images))])
    tagged = rank < half
    labels = {}
    for s, name in enumerate(SOURCES):
        n = 3 if s == len(SOURCES) - 1 else half  # the last one: too few to learn
        labels[(Path(name).stem.title(),)] = (src == s) & (rank < n)
    t = time.perf_counter()
    model, reports = train(x[tagged], {k: v[tagged] for k, v in labels.items()}, "bench", min_positives=8)
    train_s = time.perf_counter() - t

    held = ~tagged
    pred = np.zeros((len(model.paths), int(held.sum())), dtype=bool)
    for j, v in enumerate(x[held]):
        found = {p for p, _ in model.predict(v)}
        for i, p in enumerate(model.paths):
            pred[i, j] = p in found
    stems = [Path(n).stem.title() for n in SOURCES]
    truth = np.stack([src[held] == stems.index(p[0]) for p in model.paths])
    precision, recall = scores(pred.ravel(), truth.ravel())
    # baseline: the keyword of the nearest tagged photo, when it is close enough
    tx = x[tagged] / np.linalg.norm(x[tagged], axis=1, keepdims=True)
    hx = x[held] / np.linalg.norm(x[held], axis=1, keepdims=True)
    sims = hx @ tx.T
    nearest, best = sims.argmax(axis=1), sims.max(axis=1)
    base_pred = np.zeros_like(pred)
    for i, p in enumerate(model.paths):
        lab = labels[p][tagged]
        base_pred[i] = lab[nearest] & (best >= 0.8)
    b_precision, b_recall = scores(base_pred.ravel(), truth.ravel())

    print(f"{len(images)} photos ({len(SOURCES)} real photos x {args.variants} variants), half tagged")
    print(f"embed (bundled EfficientNet-Lite0, batch 1): {embed_s / len(images) * 1000:.1f} ms/photo")
    print(f"learn.train ({len(labels)} keywords, 5-fold CV + final fit): {train_s:.2f} s")
    print(f"{'keyword':<16} {'photos':>6} {'CV precision':>12} {'CV recall':>9} {'threshold':>9}")
    for rep in reports:
        name = "|".join(rep.path)
        if rep.refused:
            print(f"{name:<16} {rep.positives:>6}  refused: {rep.refused}")
        else:
            print(
                f"{name:<16} {rep.positives:>6} {rep.precision:>12.2f} {rep.recall:>9.2f} {rep.threshold:>9.3f}"
            )
    print(f"held out: precision {precision:.3f}, recall {recall:.3f} (learned keywords)")
    print(
        f"held out: precision {b_precision:.3f}, recall {b_recall:.3f} (baseline: nearest tagged photo >= 0.8)"
    )
    OUT.mkdir(exist_ok=True)
    doc = {
        "photos": len(images),
        "embed_ms_per_photo": embed_s / len(images) * 1000,
        "train_s": train_s,
        "held_out_precision": precision,
        "held_out_recall": recall,
        "baseline_precision": b_precision,
        "baseline_recall": b_recall,
        "keywords": [
            {"path": list(rep.path), "positives": rep.positives, "precision": rep.precision, "recall": rep.recall,
             "threshold": rep.threshold, "refused": rep.refused}
            for rep in reports
        ],
    }  # fmt: skip
    (OUT / "learn_bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
