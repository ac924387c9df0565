"""Face detectors compared on hand-checked real photos: precision, recall and ms per photo; then the face
descriptors' verification accuracy (same person or not) on the faces the default detector finds.

    python bench/faces_bench.py               # every candidate, MMOD included: about 2 minutes on 2 cores
    python bench/faces_bench.py --no-mmod     # without dlib's CNN detector (about 30 s)

The photos are ``tests/face_photos.py``'s: 21 photos of three real people (the astronaut, Grace Hopper and the
cameraman, whose three-quarter profile a frontal detector is not expected to find) with boxes checked by eye,
and their variants (mirror, crop, rescale, JPEG q25, 12 degree rotation, a collage, a "group photo" of four small
faces), plus 23 real photos without faces (animals, food, vehicles, coins, text, a temple, textures). Each file is
decoded by the pipeline's own decoder at the default decode size (shorter side 640, never upscaled), then each
candidate runs on the same decoded images. A detection counts when it overlaps an unmatched true face with
IoU >= 0.4 (greedy, best score first). Time is detection alone (the resize to the detector's input included),
best of 3 runs per photo (the machine is shared), summed over the set and divided by the photo count. The old
default (Haar, ``min_neighbors`` 6) is the baseline every time is divided by.

Verification: every pair of faces found and matched to a true face, same person or not; accuracy at dlib's
threshold 0.6 and at the threshold this run would choose (midway between the largest same-person distance and
the smallest different-person distance, when they do not overlap). Three people make for few different-person
pairs: this shows the descriptors work on these faces, not a general error rate.

Writes ``bench/out/faces.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from PIL import Image  # noqa: E402

from face_photos import Truth, iou, write_set  # noqa: E402
from phototag.bundled.dlibfaces import DlibFaceAnalyzer  # noqa: E402
from phototag.bundled.haar import HaarFaceDetector  # noqa: E402
from phototag.config import Config, ImageSettings  # noqa: E402
from phototag.files import make_photo  # noqa: E402
from phototag.images import decode  # noqa: E402
from phototag.types import DecodedImage, Device  # noqa: E402

CPU = Device("cpu", threads=2)
DECODE_SIDE = 640
IOU = 0.4
THRESHOLDS = (0.4, 0.5, 0.6, 0.7)
Detections = list[tuple[tuple[float, float, float, float], float]]


def haar(**settings: Any) -> Any:
    a = HaarFaceDetector("faces", HaarFaceDetector.Settings(**settings), Config())
    a.load(CPU)

    def run(d: DecodedImage) -> Detections:
        (analysis,) = a.analyze([d])
        return [((r.x, r.y, r.w, r.h), r.score) for r in analysis.regions]

    return run


class RgbHog(DlibFaceAnalyzer):
    """The HOG detector on the RGB frame (what the default did before it looked at grey)."""

    def detection_frame(self, image: Image.Image) -> Image.Image:
        return image.convert("RGB")


def dlib(rgb: bool = False, **settings: Any) -> Any:
    kind = RgbHog if rgb else DlibFaceAnalyzer
    a = kind("faces", DlibFaceAnalyzer.Settings(**settings), Config())
    a.load(CPU)
    return lambda d: a.detect(d.image)


def candidates(mmod: bool) -> list[tuple[str, Any, tuple[float, ...], int, int]]:
    """(label, detector, region-score thresholds to report, decode side, timing runs); the first is the
    baseline. The decode side is what the pipeline would decode to with that detector's ``input_size``."""
    out = [
        ("opencv-haar (old default: min_neighbors 6)", haar(), (0.5,), 640, 3),
        ("opencv-haar min_neighbors 3", haar(min_neighbors=3), (0.5,), 640, 3),
        ("dlib-hog 480 upsample 0", dlib(threshold=0.0, input_size=480), THRESHOLDS, 640, 3),
        ("dlib-hog 640 upsample 0", dlib(threshold=0.0), THRESHOLDS, 640, 3),
        ("dlib-hog 640 upsample 0, RGB frame (until 0.2)", dlib(rgb=True, threshold=0.0), THRESHOLDS, 640, 3),
        ("dlib-hog 640 upsample 1", dlib(threshold=0.0, upsample=1), THRESHOLDS, 640, 3),
        ("dlib-hog 960 upsample 0 (decoded at 960)", dlib(threshold=0.0, input_size=960), THRESHOLDS, 960, 3),
    ]
    if mmod:  # ~2 s a photo: timed once
        out.append(("dlib-mmod 640 upsample 0", dlib(model="dlib-mmod", threshold=0.0), THRESHOLDS, 640, 1))
    return out


def timed(run: Any, d: DecodedImage, repeats: int) -> tuple[Detections, float]:
    times, found = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        found = run(d)
        times.append(time.perf_counter() - t)
    return found, min(times)  # the least disturbed run: the machine is shared


def score(truths: list[Truth], found: dict[str, Detections], threshold: float) -> dict[str, Any]:
    tp = fp = 0
    hit = {"all": 0, "frontal": 0}
    n = {"all": 0, "frontal": 0}
    false_photos = []
    for t in truths:
        kept = sorted((f for f in found[t.name] if f[1] >= threshold), key=lambda f: -f[1])
        unmatched = list(range(len(t.boxes)))
        n["all"] += len(t.boxes)
        n["frontal"] += sum(t.frontal)
        for box, _ in kept:
            best = max(unmatched, key=lambda i: iou(box, t.boxes[i]), default=None)
            if best is not None and iou(box, t.boxes[best]) >= IOU:
                unmatched.remove(best)
                tp += 1
                hit["all"] += 1
                hit["frontal"] += t.frontal[best]
            else:
                fp += 1
                false_photos.append(t.name)
    return {
        "threshold": threshold,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": hit["all"] / n["all"],
        "recall_frontal": hit["frontal"] / n["frontal"],
        "false_faces": fp,
        "photos_with_a_false_face": sorted(set(false_photos)),
    }


def verification(truths: list[Truth], images: dict[str, DecodedImage]) -> dict[str, Any]:
    """Descriptors of the default analyzer's faces, matched to the true faces; distances of every pair."""
    import numpy as np

    a = DlibFaceAnalyzer("faces", DlibFaceAnalyzer.Settings(), Config())
    a.load(CPU)
    faces: list[tuple[str, str, Any, float]] = []
    seconds, count = 0.0, 0
    for t in truths:
        if not t.boxes:
            continue
        start = time.perf_counter()
        (analysis,) = a.analyze([images[t.name]])
        seconds += time.perf_counter() - start
        for face in analysis.extra.get("faces", []):
            count += 1
            best = max(range(len(t.boxes)), key=lambda i: iou(tuple(face["box"]), t.boxes[i]))
            if iou(tuple(face["box"]), t.boxes[best]) >= IOU:
                faces.append((t.name, t.people[best], np.array(face["descriptor"]), face["quality"]))
    same, diff = [], []
    for (_, p, u, _), (_, q, v, _) in itertools.combinations(faces, 2):
        (same if p == q else diff).append(float(np.linalg.norm(u - v)))
    chosen = (max(same) + min(diff)) / 2 if same and diff and max(same) < min(diff) else 0.6

    def accuracy(th: float) -> float:
        return (sum(d < th for d in same) + sum(d >= th for d in diff)) / (len(same) + len(diff))

    return {
        "faces": len(faces),
        "people": sorted({p for _, p, _, _ in faces}),
        "same_pairs": len(same),
        "different_pairs": len(diff),
        "same_distance_median_max": [statistics.median(same), max(same)] if same else None,
        "different_distance_min_median": [min(diff), statistics.median(diff)] if diff else None,
        "accuracy_at_0.6": accuracy(0.6),
        "chosen_threshold": round(chosen, 3),
        "accuracy_at_chosen": accuracy(chosen),
        "quality_min_median_max": [
            min(f[3] for f in faces),
            statistics.median(f[3] for f in faces),
            max(f[3] for f in faces),
        ],
        "ms_per_face_photo_with_descriptors": 1000 * seconds / max(1, sum(1 for t in truths if t.boxes)),
        "faces_described": count,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-mmod", action="store_true", help="skip dlib's CNN detector (slow on a CPU)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "faces.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        truths = write_set(Path(tmp))
        images = {
            side: {t.name: decode(make_photo(t.path), side, ImageSettings()) for t in truths}
            for side in (640, 960)
        }
    with_faces = sum(1 for t in truths if t.boxes)
    print(f"{len(truths)} photos: {with_faces} with {sum(len(t.boxes) for t in truths)} faces "
          f"({sum(sum(t.frontal) for t in truths)} frontal), {len(truths) - with_faces} without; "
          f"decoded at shorter side {DECODE_SIDE}; IoU >= {IOU}")  # fmt: skip
    rows: list[dict[str, Any]] = []
    baseline_ms = None
    print(
        f"{'detector':<44} {'thr':>4} {'prec':>5} {'recall':>6} {'frontal':>7} {'false':>5} {'ms/photo':>8} x base"
    )
    for label, run, thresholds, side, repeats in candidates(not args.no_mmod):
        found, seconds = {}, 0.0
        for t in truths:
            found[t.name], s = timed(run, images[side][t.name], repeats)
            seconds += s
        ms = 1000 * seconds / len(truths)
        baseline_ms = baseline_ms or ms
        for th in thresholds:
            r = score(truths, found, th)
            rows.append(
                {"detector": label, "ms_per_photo": ms, "time_ratio_to_baseline": ms / baseline_ms, **r}
            )
            where = ", ".join(r["photos_with_a_false_face"])
            print(f"{label:<44} {th:>4.2f} {r['precision']:>5.2f} {r['recall']:>6.2f} {r['recall_frontal']:>7.2f} "
                  f"{r['false_faces']:>5d} {ms:>8.1f} {ms / baseline_ms:>6.2f}"
                  + (f"  false on: {where}" if where else ""))  # fmt: skip

    v = verification(truths, images[DECODE_SIDE])
    print(
        f"\nverification (the default analyzer: dlib-hog, 5-point landmarks, dlib-resnet-v1): {v['faces']} faces "
        f"of {len(v['people'])} people, {v['same_pairs']} same-person and {v['different_pairs']} different pairs"
    )
    print(
        f"  same-person distance median/max {v['same_distance_median_max']}, different min/median "
        f"{v['different_distance_min_median']}"
    )
    print(
        f"  accuracy at 0.6: {v['accuracy_at_0.6']:.3f}; at the chosen {v['chosen_threshold']}: "
        f"{v['accuracy_at_chosen']:.3f}; quality min/median/max {v['quality_min_median_max']}"
    )
    print(
        f"  analyze (detect + landmarks + descriptors): {v['ms_per_face_photo_with_descriptors']:.0f} ms per photo "
        f"with faces ({v['faces_described']} faces)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"photos": len(truths), "detectors": rows, "verification": v}, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
