"""Helpers for the client-compatible route tests (``test_serve_{photoprism,immich,openai,ollama}.py``): the
images the clients send, built from the real sample photos the way each client builds them."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from PIL import Image

from phototag.samples import sample_sources


def sample(name: str) -> Path:
    """A real sample photo by name: ``cat``, ``astronaut``, ``coffee``, ``motorcycle``, ``grace_hopper``..."""
    for key, path in sample_sources().items():
        if name in (key, Path(key).stem, path.stem):
            return path
    raise KeyError(f"no sample photo {name!r}: {sorted(sample_sources())}")


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def photo_jpeg(name: str, short_side: int | None = None) -> bytes:
    """A sample photo as JPEG bytes, scaled so its shorter side is ``short_side`` (as a thumbnail)."""
    with Image.open(sample(name)) as im:
        im = im.convert("RGB")
        if short_side is not None:
            scale = short_side / min(im.size)
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BICUBIC)
        return jpeg(im)


def data_url(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def photoprism_tiles(name: str, size: int = 224) -> list[bytes]:
    """What PhotoPrism sends for labels at Resolution 224: ``tile_224`` (the centre square), plus ``left_224``
    and ``right_224`` (the left and right squares) when the photo is not square."""
    with Image.open(sample(name)) as im:
        im = im.convert("RGB")
        side = min(im.size)
        boxes = [((im.width - side) // 2, (im.height - side) // 2)]
        if im.width != im.height:
            boxes += [(0, 0), (im.width - side, im.height - side)]
        return [jpeg(im.crop((x, y, x + side, y + side)).resize((size, size))) for x, y in boxes]


def photoprism_request(images: list[bytes], *, model: str = "phototag", **extra: Any) -> dict[str, Any]:
    """A "vision" format request exactly as PhotoPrism's Go client builds it (``suffix`` and ``stream`` are
    always present; labels requests carry the default LLM prompts)."""
    return {
        "id": "3f1c2a9e-7d4b-4a55-9e0c-1b2d3e4f5a6b",
        "model": model,
        "version": "latest",
        "system": "You are a PhotoPrism vision model. Output concise JSON that matches the schema.",
        "prompt": "Analyze the image and return label objects with name, confidence (0-1), and topicality (0-1).",
        "suffix": "",
        "stream": False,
        "images": [data_url(b) for b in images],
        **extra,
    }


LABELS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "labels": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "confidence": {"type": "number"},
                    "topicality": {"type": "number"},
                },
                "required": ["name", "confidence", "topicality"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["labels"],
    "additionalProperties": False,
}
"""The shape of PhotoPrism's ``photoprism_vision_labels_v1`` schema."""
LABELS_SYSTEM = "You are a PhotoPrism vision model. Output concise JSON that matches the schema."
LABELS_PROMPT = (
    "Analyze the image and return label objects with name, confidence (0-1), and topicality (0-1).\n\n"
    "Return JSON that matches this schema:\n"
)
