"""Copy licence-clean real photos that pip packages carry into a folder, for the quick start and the tests.

scikit-image ships a cat, a motorcycle, coffee, an astronaut and a rocket; matplotlib ships Grace Hopper. They are
written as JPEG (as a camera would), keeping PNG for one so that both paths are exercised.

    python -m phototag.samples DIR
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# name in the package -> file name written (suffix decides the format)
SKIMAGE = {
    "chelsea.png": "cat.jpg",
    "motorcycle_left.png": "motorcycle.jpg",
    "coffee.png": "coffee.png",
    "astronaut.png": "astronaut.jpg",
    "rocket.jpg": "rocket.jpg",
}


def _skimage_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def _matplotlib_sample(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / name


def sample_sources() -> dict[str, Path]:
    """Output file name -> source file in an installed package."""
    out = {dst: _skimage_dir() / src for src, dst in SKIMAGE.items()}
    out["grace_hopper.jpg"] = _matplotlib_sample("grace_hopper.jpg")
    return out


def write_samples(folder: Path) -> list[Path]:
    """Write the sample photos into ``folder`` (created); returns their paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, src in sample_sources().items():
        dst = folder / name
        if src.suffix.lower() == dst.suffix.lower():
            shutil.copyfile(src, dst)
        else:
            with Image.open(src) as im:
                im.convert("RGB").save(dst, quality=92)
        written.append(dst)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m phototag.samples DIR", file=sys.stderr)
        return 2
    for path in write_samples(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
