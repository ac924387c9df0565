"""Uploaded bytes -> a :class:`~phototag.types.DecodedImage`, with the same safety checks as files on disk.

The bytes go through :mod:`phototag.images`' Pillow path (format allow-list, decompression-bomb limit,
truncation and corruption turned into a clear error, JPEG draft mode, EXIF orientation) from memory: nothing a
client sends is written to disk or used as a path. The client's file name is only a label for messages and
the result document, cleaned of folders and control characters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
from pathlib import Path

from .. import images
from ..config import ImageSettings
from ..errors import ImageError
from ..types import DecodedImage, Photo
from .errors import BadImage, BadRequest

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def upload_name(name: str | None) -> str:
    """A label for an uploaded file: its base name without folders or control characters, at most 200
    characters; ``upload`` when the client gave none."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip().lstrip(".")[:200]
    return base or "upload"


def content_hash(data: bytes) -> str:
    """BLAKE2b-128 of the bytes (hex): the same key ``scan`` gives a file with these bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def decode_bytes(data: bytes, name: str | None, min_side: int, settings: ImageSettings) -> DecodedImage:
    """Decode an uploaded image (blocking: call it in a worker thread). Raises :class:`BadImage` naming the
    upload and what is wrong with it."""
    label = upload_name(name)
    if not data:
        raise BadImage(f"{label}: the image is empty (0 bytes): send the file's bytes")
    path = Path(label)
    limit = int(settings.max_megapixels * 1_000_000)
    images._raise_pillow_limit(limit)
    try:
        frame = images._read_pillow(path, io.BytesIO(data), min_side, limit)
    except ImageError as e:
        raise BadImage(str(e)) from None
    photo = Photo(path=path, size=len(data), mtime_ns=0, content_hash=content_hash(data))
    return DecodedImage(
        photo=photo, image=frame.image, width=frame.width, height=frame.height, format=frame.format
    )


def bytes_from_text(text: str) -> bytes:
    """The image bytes of a ``data:`` URL (``data:image/jpeg;base64,...``) or of bare base64. Raises
    :class:`BadRequest` for anything else (an http URL is :func:`phototag.serve.security.fetch_image`'s)."""
    value = text.strip()
    if value.startswith("data:"):
        head, sep, payload = value.partition(",")
        if not sep or not head.endswith(";base64"):
            raise BadRequest("a data URL must be base64: data:image/jpeg;base64,<data>")
        value = payload
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(
            "the image is neither base64 nor a data: URL (data:image/jpeg;base64,...): encode the file's bytes"
        ) from None


def is_url(text: str) -> bool:
    """Is ``text`` an http(s) URL (to be fetched, if the server allows it)?"""
    return text.strip().lower().startswith(("http://", "https://"))
