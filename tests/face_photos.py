"""Real photos with hand-checked face boxes, and real photos without faces, for the face tests and
``bench/faces_bench.py``.

The faces are the three real people the packages carry: scikit-image's astronaut (Eileen Collins), its
cameraman (three-quarter profile, greyscale) and matplotlib's Grace Hopper. Their boxes (forehead to chin, ear to
ear, in source pixels) were checked by drawing them on the photos and looking. Variants are made from them with
the box carried through exactly: mirror, crop, rescale, JPEG at quality 25, a small rotation, a collage of large
faces and a "group photo" of small faces on a real background. The photos without faces are every other real photo
the packages ship (a cat, coffee, a rocket, motorcycles, coins, text, a temple facade, textures...), some cropped
and enlarged so that texture fills the frame, where the Haar cascade used to fire.

``write_set(folder)`` writes every photo as a file (JPEG or PNG) and returns :class:`Truth` records whose boxes
are normalised (x, y, w, h, top-left), so that the pipeline's own decoder reads them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

Box = tuple[float, float, float, float]  # pixels (x, y, w, h) while building; normalised in Truth


def _skimage_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def _matplotlib_sample(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / name


def _sklearn_image(name: str) -> Path:
    import sklearn

    return Path(sklearn.__file__).parent / "datasets" / "images" / name


# source photo -> (file, [(person, box in pixels)]), boxes checked by eye (see the module docstring)
PEOPLE: dict[str, tuple[Callable[[], Path], list[tuple[str, Box]]]] = {
    "astronaut": (lambda: _skimage_dir() / "astronaut.png", [("collins", (176, 78, 90, 96))]),
    "grace_hopper": (lambda: _matplotlib_sample("grace_hopper.jpg"), [("hopper", (174, 142, 192, 188))]),
    "camera": (lambda: _skimage_dir() / "camera.png", [("cameraman", (180, 108, 90, 92))]),
}
NO_FACES: dict[str, Callable[[], Path]] = {
    name: (lambda n=name: _skimage_dir() / n)
    for name in ("chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
                 "coins.png", "page.png", "text.png", "hubble_deep_field.jpg", "brick.png", "grass.png",
                 "gravel.png", "moon.png", "horse.png", "color.png", "clock_motion.png", "retina.jpg")
}  # fmt: skip
NO_FACES["china.jpg"] = lambda: _sklearn_image("china.jpg")
NO_FACES["flower.jpg"] = lambda: _sklearn_image("flower.jpg")


@dataclass
class Truth:
    """One test photo: its file, its faces (normalised boxes) and who each face is."""

    name: str
    path: Path
    boxes: list[Box] = field(default_factory=list)
    people: list[str] = field(default_factory=list)
    frontal: list[bool] = field(default_factory=list)
    """False for the cameraman's three-quarter profile, which frontal-only detectors are not expected to find."""


@dataclass
class _Made:
    image: Image.Image
    faces: list[tuple[str, Box]]


def _open(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def _mirror(m: _Made) -> _Made:
    w = m.image.width
    return _Made(
        m.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        [(p, (w - x - bw, y, bw, bh)) for p, (x, y, bw, bh) in m.faces],
    )


def _crop(m: _Made, left: int, top: int, right: int, bottom: int) -> _Made:
    return _Made(
        m.image.crop((left, top, right, bottom)),
        [(p, (x - left, y - top, w, h)) for p, (x, y, w, h) in m.faces],
    )


def _scale(m: _Made, factor: float) -> _Made:
    size = (round(m.image.width * factor), round(m.image.height * factor))
    return _Made(
        m.image.resize(size, Image.Resampling.LANCZOS),
        [(p, tuple(v * factor for v in b)) for p, b in m.faces],
    )  # type: ignore[misc]


def _jpeg(m: _Made, quality: int) -> _Made:
    buf = io.BytesIO()
    m.image.save(buf, "JPEG", quality=quality)
    return _Made(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), m.faces)


def _rotate(m: _Made, degrees: float) -> _Made:
    """Rotated about the centre (same canvas); a face's box keeps its size and follows its centre."""
    cx, cy = m.image.width / 2, m.image.height / 2
    a = math.radians(degrees)  # PIL rotates counter-clockwise on screen (y down)
    faces = []
    for p, (x, y, w, h) in m.faces:
        dx, dy = x + w / 2 - cx, y + h / 2 - cy
        nx, ny = cx + dx * math.cos(a) + dy * math.sin(a), cy - dx * math.sin(a) + dy * math.cos(a)
        faces.append((p, (nx - w / 2, ny - h / 2, w, h)))
    return _Made(m.image.rotate(degrees, Image.Resampling.BICUBIC, fillcolor=(128, 128, 128)), faces)


def _paste(canvas: Image.Image, parts: list[tuple[_Made, tuple[int, int]]]) -> _Made:
    faces = []
    for part, (ox, oy) in parts:
        canvas.paste(part.image, (ox, oy))
        faces += [(p, (x + ox, y + oy, w, h)) for p, (x, y, w, h) in part.faces]
    return _Made(canvas, faces)


def _head(m: _Made, margin: float) -> _Made:
    """A crop around the (only) face with ``margin`` face-widths of context on each side."""
    ((_, (x, y, w, h)),) = m.faces
    left, top = max(0, round(x - margin * w)), max(0, round(y - margin * h))
    right, bottom = (
        min(m.image.width, round(x + w + margin * w)),
        min(m.image.height, round(y + h + margin * h)),
    )
    return _crop(m, left, top, right, bottom)


def face_photos() -> dict[str, _Made]:
    src = {name: _Made(_open(make()), list(faces)) for name, (make, faces) in PEOPLE.items()}
    a, g = src["astronaut"], src["grace_hopper"]
    out = dict(src)
    for name, m in src.items():
        out[f"{name}-mirror"] = _mirror(m)
        out[f"{name}-jpeg25"] = _jpeg(m, 25)
        out[f"{name}-x0.6"] = _scale(m, 0.6)
        out[f"{name}-x2.5"] = _scale(m, 2.5)  # decoded back to 640: another resampling
    out["astronaut-crop"] = _crop(a, 90, 10, 400, 330)
    out["grace_hopper-crop"] = _crop(g, 80, 60, 470, 420)
    out["astronaut-rot12"] = _rotate(a, 12)
    out["grace_hopper-rot-12"] = _rotate(g, -12)
    background = _open(_sklearn_image("china.jpg"))
    collage = background.resize((1600, 1068), Image.Resampling.BICUBIC)
    out["collage"] = _paste(collage, [(_scale(_head(a, 0.8), 1.6), (150, 200)), (_head(g, 0.5), (900, 300))])
    group = background.resize((2400, 1602), Image.Resampling.BICUBIC)
    heads = [_head(a, 0.6), _mirror(_head(g, 0.5)), _head(_mirror(a), 0.6), _head(g, 0.5)]
    # faces 150-260 px wide on a 1602 px short side: 60-104 px once decoded at 640
    sizes = [1.7, 1.2, 2.2, 0.9]
    spots = [(100, 500), (700, 450), (1250, 350), (1900, 600)]
    out["group"] = _paste(group, [(_scale(h, s), p) for h, s, p in zip(heads, sizes, spots, strict=True)])
    return out


def no_face_photos() -> dict[str, _Made]:
    out = {name.rsplit(".", 1)[0]: _Made(_open(make()), []) for name, make in NO_FACES.items()}
    china, brick = out["china"], out["brick"]
    out["china-facade-x3"] = _scale(_crop(china, 250, 0, 470, 200), 3.0)
    out["brick-x2"] = _scale(_crop(brick, 0, 0, 256, 256), 2.0)
    out["chelsea-mirror"] = _mirror(out["chelsea"])
    out["coffee-x2.5"] = _scale(out["coffee"], 2.5)
    return out


def write_set(folder: Path, only: str = "all") -> list[Truth]:
    """Write the photos (``only``: ``all``, ``faces`` or ``none``) into ``folder``; returns their truths."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, _Made] = {}
    if only in ("all", "faces"):
        made.update(face_photos())
    if only in ("all", "none"):
        made.update(no_face_photos())
    truths = []
    for name, m in made.items():
        path = folder / f"{name}.png" if "jpeg" in name else folder / f"{name}.jpg"
        # JPEG at 95 for most (as a camera writes); the recompressed variants keep their q25 pixels in a PNG
        m.image.save(path, **({} if path.suffix == ".png" else {"quality": 95}))
        w, h = m.image.size
        truths.append(
            Truth(
                name,
                path,
                [(x / w, y / h, bw / w, bh / h) for _, (x, y, bw, bh) in m.faces],
                [p for p, _ in m.faces],
                [p != "cameraman" for p, _ in m.faces],
            )
        )
    return truths


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
