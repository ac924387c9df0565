"""Thumbnails and face crops for the web pages, made on demand and cached on disk beside the state database.

A thumbnail is decoded with the same safe reader the pipeline uses (:func:`phototag.images.read_image`: format
allow-list, decompression-bomb limit, EXIF orientation applied, JPEG draft decoding so a 24-megapixel photo is
decoded at an eighth of its size), scaled to fit a square and saved as a JPEG in ``thumbnails/`` next to the
state DB, named by the photo's content hash: never next to the user's photos, and a renamed photo keeps its
thumbnail. The folder has a size cap (:data:`MAX_BYTES`); when a new file takes it over the cap, the files used
least recently are deleted until it is 10 % under.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from pathlib import Path

from PIL import Image, ImageOps

from ..config import ImageSettings
from ..images import read_image

SIZES = (256, 1024)
"""The thumbnail sizes served (longer side): grid and photo page."""
FACE = 128
"""Side of a face crop."""
MAX_BYTES = 256 * 1024 * 1024
"""Default cap of the thumbnail folder."""
QUALITY = 80


class ThumbnailCache:
    """The ``thumbnails`` folder beside a state DB; safe to share between threads."""

    def __init__(self, folder: Path, settings: ImageSettings, max_bytes: int = MAX_BYTES) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._total: int | None = None

    @classmethod
    def beside(cls, state_db: Path, settings: ImageSettings, max_bytes: int = MAX_BYTES) -> ThumbnailCache:
        return cls(Path(state_db).expanduser().absolute().parent / "thumbnails", settings, max_bytes)

    def thumbnail(self, photo: Path, content_hash: str, size: int) -> bytes:
        """JPEG bytes of ``photo`` fitting a ``size`` square (cached); raises
        :class:`~phototag.errors.ImageError` for a photo that cannot be decoded."""
        if size not in SIZES:
            raise ValueError(f"thumbnail size must be one of {SIZES}")

        def make() -> Image.Image:
            frame = read_image(photo, size, self.settings)
            image = frame.image
            image.thumbnail((size, size), Image.Resampling.LANCZOS)
            return image

        return self._cached(f"{_safe(content_hash)}-{size}.jpg", make)

    def face(self, photo: Path, content_hash: str, box: tuple[float, float, float, float], key: str) -> bytes:
        """JPEG bytes of the face at ``box`` (normalised x, y, w, h in the oriented frame), with room around
        it, as a square (cached under ``key``)."""

        def make() -> Image.Image:
            x, y, w, h = box
            # decode just large enough that the face itself is about FACE pixels
            need = int(FACE * 1.4 / max(min(w, h), 0.01))
            frame = read_image(photo, min(need, 4096), self.settings)
            image = frame.image
            width, height = image.size
            side = max(w * width, h * height) * 1.4
            cx, cy = (x + w / 2) * width, (y + h / 2) * height
            left, top = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
            right, bottom = int(min(cx + side / 2, width)), int(min(cy + side / 2, height))
            crop = image.crop((left, top, max(right, left + 1), max(bottom, top + 1)))
            return ImageOps.pad(crop, (FACE, FACE), color=(32, 32, 32))

        return self._cached(f"{_safe(content_hash)}-face-{_safe(key)}.jpg", make)

    # -- the cache ------------------------------------------------------------------------------------------

    def _cached(self, name: str, make: object) -> bytes:
        path = self.folder / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            pass
        else:
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used: pruned last
            return data
        image = make()  # type: ignore[operator]
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=QUALITY, optimize=True, progressive=True)
        data = out.getvalue()
        self._store(path, data)
        return data

    def _store(self, path: Path, data: bytes) -> None:
        """Write atomically (a temp name, then rename); a read-only or full disk only costs the cache."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            return
        with self._lock:
            if self._total is None:
                self._total = self.size()
            else:
                self._total += len(data)
            if self._total > self.max_bytes:
                self._total = self._prune(int(self.max_bytes * 0.9))

    def size(self) -> int:
        """Bytes in the folder now."""
        total = 0
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.folder):
                with contextlib.suppress(OSError):
                    total += entry.stat().st_size
        return total

    def _prune(self, target: int) -> int:
        """Delete the least recently used files until at most ``target`` bytes remain; returns what is left."""
        entries = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.folder):
                with contextlib.suppress(OSError):
                    st = entry.stat()
                    entries.append((st.st_mtime, entry.path, st.st_size))
        entries.sort()
        total = sum(e[2] for e in entries)
        for _, path, size in entries:
            if total <= target:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size
        return total


def _safe(text: str) -> str:
    """A file-name part from a content hash or key: hex digits, letters, digits and dashes only."""
    return "".join(c for c in text if c.isalnum() or c == "-")[:96] or "x"
