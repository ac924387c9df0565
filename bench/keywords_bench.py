"""Keyword precision of the offline classifier (EfficientNet-Lite0 + the ImageNet keyword tree), before and after
the generic-keyword rule changed, on every real photo the installed packages carry.

    python bench/keywords_bench.py [--threshold 0.25] [--top-k 5] [--resize squash] [--out bench/out/keywords.json]

The network runs once per photo; both rules are applied to the same probabilities, so the comparison is exact:

* before: a generic keyword (``Dog``, ``Cat``, ``Clock``...) whenever the **sum** of its classes reached the
  threshold (the rule up to 2026-11-30, reproduced here as :func:`keywords_before`);
* after: :func:`phototag.bundled.imagenet.keywords`, a generic keyword only when one of its own classes is a
  keyword itself, scored by the sum.

Labels: for each photo, the keywords a person would accept (``CORRECT``), written by hand from looking at the
photos (2026-11-30); every other keyword emitted counts as wrong. Precision = correct keywords / keywords;
"photos with a correct keyword" shows what the rule costs in recall. The photos are scikit-image's and
matplotlib's sample images, many of them not photos of things (textures, micrographs, a logo), which is where
wrong keywords come from. ``--block`` adds a block list (``plugins.classify.block``) to the "after" run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import skimage.data

from phototag.bundled import imagenet
from phototag.bundled.efficientnet import EfficientNetClassifier
from phototag.config import load_config
from phototag.keywordrules import KeywordRules
from phototag.testing import decoded
from phototag.types import Device, Tag

SKIMAGE = Path(os.path.dirname(skimage.data.__file__))
MPL = Path(matplotlib.get_data_path()) / "sample_data"
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "keywords.json"

CORRECT: dict[str, set[str]] = {
    # photo: keywords a person would accept (ImageNet has no class for many of these subjects)
    "astronaut.png": set(),  # an astronaut in a space suit, flag behind: no ImageNet class fits
    "brick.png": set(),  # a brick wall texture
    "camera.png": {"Tripod", "Reflex camera", "Camera", "Lens cap"},  # a cameraman with a camera on a tripod
    "cell.png": set(),  # a cell under a microscope
    "chelsea.png": {"Egyptian cat", "Tiger cat", "Tabby cat", "Cat"},
    "clock_motion.png": {"Wall clock", "Analog clock", "Clock"},  # a clock, motion-blurred
    "coffee.png": {"Espresso", "Cup", "Coffee mug", "Coffee", "Saucer"},
    "coins.png": set(),  # old coins on a tray
    "color.png": set(),  # a colour test chart
    "grass.png": set(),  # grass texture
    "gravel.png": set(),  # gravel texture
    "horse.png": {"Sorrel horse", "Horse"},  # a horse's silhouette
    "hubble_deep_field.jpg": set(),  # galaxies
    "ihc.png": set(),  # a stained tissue sample
    "logo.png": set(),  # the scikit-image logo
    "microaneurysms.png": set(),  # a retina scan
    "moon.png": set(),  # the moon's surface
    "motorcycle_left.png": {"Moped", "Motor scooter", "Motorcycle", "Disk brake"},
    "motorcycle_right.png": {"Moped", "Motor scooter", "Motorcycle", "Disk brake"},
    "page.png": set(),  # a scanned book page
    "phantom.png": set(),  # the Shepp-Logan phantom
    "retina.jpg": set(),  # a retina photograph
    "rocket.jpg": {"Missile", "Projectile", "Space shuttle", "Rocket"},  # a rocket on its launch pad
    "text.png": set(),  # handwritten formulas on paper
    "grace_hopper.jpg": {"Military uniform", "Windsor tie", "Bow tie", "Tie"},
    "logo2.png": set(),  # the matplotlib logo
    "Minduka_Present_Blue_Pack.png": {"Carton", "Packet"},  # a blue gift pack
}


def photos() -> list[Path]:
    found = [SKIMAGE / n if (SKIMAGE / n).exists() else MPL / n for n in CORRECT]
    return [p for p in found if p.exists()]


def keywords_before(probs: Sequence[float], threshold: float, top_k: int) -> list[Tag]:
    """The rule before: every generic node whose summed probability reaches the threshold."""
    p = np.asarray(probs, dtype=np.float64)
    label, path = imagenet.names(), imagenet.paths()
    nodes = imagenet.generic_members()
    ranked = [int(i) for i in np.argsort(-p, kind="stable")[:top_k]]
    tags = [
        Tag(label[i], round(float(p[i]), 4), path[i])
        for i in ranked
        if p[i] >= threshold and path[i] not in nodes
    ]
    tags += [Tag(n[-1], round(float(p[m].sum()), 4), n) for n, m in nodes.items() if p[m].sum() >= threshold]
    return sorted(tags, key=lambda t: -t.score)


def score(emitted: dict[str, list[Tag]]) -> dict[str, float | int]:
    n = sum(len(tags) for tags in emitted.values())
    good = sum(t.name in CORRECT[photo] for photo, tags in emitted.items() for t in tags)
    covered = sum(any(t.name in CORRECT[p] for t in tags) for p, tags in emitted.items() if CORRECT[p])
    return {
        "keywords": n,
        "correct": good,
        "precision": round(good / n, 3) if n else 1.0,
        "photos_with_a_correct_keyword": covered,
        "photos_with_a_subject": sum(1 for p in emitted if CORRECT[p]),
        "photos_with_a_wrong_keyword": sum(
            any(t.name not in CORRECT[p] for t in tags) for p, tags in emitted.items()
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", type=float, default=0.25)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--resize", default="squash", choices=("squash", "crop"))
    ap.add_argument("--block", action="append", default=[], help="a block-list entry (repeatable)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    settings = EfficientNetClassifier.Settings(threshold=args.threshold, top_k=args.top_k, resize=args.resize)
    analyzer = EfficientNetClassifier("classify", settings, load_config(None, environ={}))
    analyzer.load(Device("cpu", threads=os.cpu_count() or 1))
    rules = KeywordRules.of(args.block, {})
    before: dict[str, list[Tag]] = {}
    after: dict[str, list[Tag]] = {}
    started = time.perf_counter()
    for path in photos():
        [(_, probs)] = analyzer.runtime.run([decoded(path)], args.resize)
        before[path.name] = keywords_before(probs.tolist(), args.threshold, args.top_k)
        after[path.name] = rules.apply(imagenet.keywords(probs.tolist(), args.threshold, args.top_k))
    seconds = time.perf_counter() - started

    def show(tags: list[Tag], photo: str) -> str:
        return (
            ", ".join(f"{t.name} {t.score:.2f}{'' if t.name in CORRECT[photo] else ' (wrong)'}" for t in tags)
            or "-"
        )

    print(f"{len(before)} photos, threshold {args.threshold}, top_k {args.top_k}, resize {args.resize}"
          f"{', block ' + repr(args.block) if args.block else ''} ({seconds:.1f} s)\n")  # fmt: skip
    for photo in before:
        if before[photo] != after[photo]:
            print(f"{photo}\n  before: {show(before[photo], photo)}\n  after:  {show(after[photo], photo)}")
    results = {"before": score(before), "after": score(after)}
    print(f"\n{'':8}{'keywords':>9}{'correct':>9}{'precision':>10}{'photos right':>14}{'photos wrong':>14}")
    for name, r in results.items():
        right = f"{r['photos_with_a_correct_keyword']}/{r['photos_with_a_subject']}"
        print(f"{name:8}{r['keywords']:>9}{r['correct']:>9}{r['precision']:>10.3f}{right:>14}"
              f"{r['photos_with_a_wrong_keyword']:>14}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "settings": vars(args) | {"out": str(args.out)},
        "results": results,
        "keywords": {
            photo: {"before": [t.name for t in before[photo]], "after": [t.name for t in after[photo]]}
            for photo in before
        },
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
