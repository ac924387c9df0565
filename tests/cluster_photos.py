"""Many small real photos from the six samples (scaled, cropped, mirrored, rotated variants), for the cluster
tests and bench/cluster_bench.py: every file has other bytes, so none is a cached copy of another."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from phototag.samples import write_samples


def make_variants(folder: Path, count: int, *, side: int = 256, per_folder: int = 50) -> list[Path]:
    """``count`` JPEGs of about ``side`` px in subfolders of ``folder`` (``per_folder`` each); returns them."""
    sources = folder / ".sources"
    sources.mkdir(parents=True, exist_ok=True)
    originals = []
    for path in sorted(write_samples(sources)):
        with Image.open(path) as im:
            small = im.convert("RGB")
            small.thumbnail((side + 64, side + 64))
            originals.append(small)
    made = []
    for i in range(count):
        round_, k = divmod(i, len(originals))
        im = originals[k]
        if round_ % 2:
            im = ImageOps.mirror(im)
        if round_ % 3 == 2:
            im = im.rotate(90, expand=True)
        w, h = im.size
        cut = (round_ * 3) % 48
        im = im.crop((cut, cut // 2, w - cut // 2, h - cut))
        im.thumbnail((side, side))
        sub = folder / f"f{i // per_folder:03d}"
        sub.mkdir(exist_ok=True)
        out = sub / f"p{i:05d}.jpg"
        im.save(out, quality=80 + round_ % 15)
        made.append(out)
    for path in sources.iterdir():
        path.unlink()
    sources.rmdir()
    return made
