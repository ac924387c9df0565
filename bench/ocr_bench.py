"""OCR speed: milliseconds per photo for the ``text`` plugin (PP-OCRv6 small via rapidocr 3.10), against
rapidocr's own ``RapidOCR()(image)`` on the same images in the same run.

    python bench/ocr_bench.py [--repeats 3] [--threads N] [--det-side 736] [--out bench/out/ocr.json]

Images: scikit-image's page.png (a scanned page, 384x191) and text.png (handwriting, 448x172: PP-OCRv6 small
finds no text in it, so it times the detector alone), a rendered
receipt (900x640 JPEG), a 12 MP photo of that receipt (4000x3000, decoded as the pipeline does, to a 736 px
shorter side) and a photo without text (the cat). The detector works at ``--det-side`` (the plugin's
``input_size``, 736). phototag's engine runs rapidocr's stages itself to keep the detector's box scores
(:mod:`phototag.ocr`); the baseline shows what that costs (ratio ~1.0 expected). Best of
``--repeats`` per image (interference only ever slows a pass down). Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from phototag.config import ImageSettings
from phototag.files import make_photo
from phototag.images import decode
from phototag.ocr import MODEL_ID, OcrEngine
from phototag.samples import write_samples

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_ocr import render_receipt

SKIMAGE = Path(os.path.dirname(skimage.data.__file__))
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "ocr.json"
INPUT_SIZE = 736  # plugins.text.input_size


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--det-side", type=int, default=INPUT_SIZE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        receipt = render_receipt(folder / "receipt.jpg")
        big = folder / "receipt-12mp.jpg"
        Image.open(receipt).resize((4000, 3000), Image.Resampling.LANCZOS).save(big, quality=90)
        write_samples(folder / "samples")
        images = {
            "page.png": Image.open(SKIMAGE / "page.png").convert("RGB"),
            "text.png": Image.open(SKIMAGE / "text.png").convert("RGB"),
            "receipt.jpg": Image.open(receipt).convert("RGB"),
            "receipt-12mp.jpg (decoded to 736)": decode(make_photo(big), INPUT_SIZE, ImageSettings()).image,
            "cat.jpg (no text)": decode(
                make_photo(folder / "samples" / "cat.jpg"), INPUT_SIZE, ImageSettings()
            ).image,
        }
        engine = OcrEngine(threads=args.threads, det_side=args.det_side)
        baseline = engine._engine  # the same loaded RapidOCR: its own __call__
        for image in images.values():  # warm-up: ONNX Runtime's first run allocates
            engine.read(image)
        rows = []
        for name, image in images.items():
            bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
            ours = best_ms(lambda image=image: engine.read(image), args.repeats)
            theirs = best_ms(lambda bgr=bgr: baseline(bgr), args.repeats)
            lines = engine.read(image)
            rows.append({"image": name, "size": list(image.size), "lines": len(lines), "phototag_ms": round(ours, 1),
                         "rapidocr_ms": round(theirs, 1), "ratio": round(theirs / ours, 2)})  # fmt: skip

    print(f"OCR, {MODEL_ID}, {args.threads} threads, detector at {args.det_side}, best of {args.repeats}\n")
    print(f"{'image':36}{'size':>11}{'lines':>6}{'phototag ms':>13}{'RapidOCR() ms':>15}{'ratio':>7}")
    for r in rows:
        size = "x".join(map(str, r["size"]))
        print(f"{r['image']:36}{size:>11}{r['lines']:>6}{r['phototag_ms']:>13.1f}{r['rapidocr_ms']:>15.1f}"
              f"{r['ratio']:>7.2f}")  # fmt: skip
    mean = sum(r["phototag_ms"] for r in rows) / len(rows)
    print(f"\nmean {mean:.0f} ms/photo")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": platform.processor() or platform.machine(), "model": MODEL_ID, "threads": args.threads,
           "det_side": args.det_side, "rows": rows, "mean_ms": round(mean, 1)}  # fmt: skip
    args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
