"""A contact sheet of a person's faces (``phototag people show``): people would rather look than read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

CELL = 128
"""Side of one face crop, in pixels."""
PAD = 6


def face_crop(photo: Path, box: tuple[float, float, float, float], cell: int = CELL) -> Image.Image:
    """The face at ``box`` (normalised x, y, w, h in the orientation-corrected frame) with some room around
    it, as a ``cell`` x ``cell`` square."""
    from PIL import Image, ImageOps

    with Image.open(photo) as im:
        im.draft("RGB", (cell * 8, cell * 8))  # JPEG: decode small when the photo is large
        image = ImageOps.exif_transpose(im).convert("RGB")
    width, height = image.size
    x, y, w, h = box
    side = max(w * width, h * height) * 1.4
    cx, cy = (x + w / 2) * width, (y + h / 2) * height
    left, top = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
    right, bottom = int(min(cx + side / 2, width)), int(min(cy + side / 2, height))
    crop = image.crop((left, top, max(right, left + 1), max(bottom, top + 1)))
    return ImageOps.pad(crop, (cell, cell), color=(32, 32, 32))


def contact_sheet(
    crops: Sequence[Image.Image], title: str, columns: int = 6, cell: int = CELL
) -> Image.Image:
    """``crops`` in a grid under a ``title`` line."""
    from PIL import Image, ImageDraw, ImageFont

    columns = max(1, min(columns, len(crops) or 1))
    rows = max(1, -(-len(crops) // columns))
    head = 28
    sheet = Image.new(
        "RGB", (PAD + columns * (cell + PAD), head + PAD + rows * (cell + PAD)), color=(245, 245, 245)
    )
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 5), title, fill=(20, 20, 20), font=ImageFont.load_default(size=16))
    for n, crop in enumerate(crops):
        r, c = divmod(n, columns)
        sheet.paste(crop.resize((cell, cell)), (PAD + c * (cell + PAD), head + PAD + r * (cell + PAD)))
    return sheet
