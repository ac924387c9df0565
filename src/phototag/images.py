"""Safe decoding: a file -> an 8-bit RGB frame the size the models need, or a clear :class:`ImageError`.

What "safe" means here:

- two allow-lists: the file's extension must be in ``image.extensions``, and its *content* must be one of
  :data:`SAFE_FORMATS` (a PNG named ``.jpg`` decodes; a text file named ``.jpg`` is "not an image";
  formats that run external programs, such as EPS, are never tried);
- a decompression-bomb limit per call (``image.max_megapixels``), checked on the header before any pixel
  is decoded;
- truncated, empty, unreadable and corrupt files become an :class:`ImageError` that names the file and
  says what to do; the file is opened read-only and closed before returning.

What "the size the models need" means: the shorter side is scaled down to ``min_side`` (never up), and
JPEGs are decoded in draft mode (libjpeg's DCT scaling by 1/2, 1/4 or 1/8), so a 12 MP JPEG is never fully
decoded to make a 224-640 px input (19 ms instead of 162 ms, PERFORMANCE.md); HEIC files use an embedded
thumbnail when one is large enough. EXIF orientation is applied after the downscale, where it is cheap;
``width``/``height`` are the full orientation-corrected size of the original.

HEIC/HEIF goes through pillow-heif (the ``heic`` extra), registered on first use. Camera RAW files give
their embedded preview through rawpy (the ``raw`` extra); without rawpy, TIFF-based RAWs (DNG, ...) are
tried with Pillow.

Why one module of ~490 lines: every format path (Pillow, HEIF, RAW previews) must pass the same safety checks
(allow-lists, bomb limit, orientation, errors naming the file); one module keeps them from drifting apart.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from PIL import Image, ImageChops, ImageSequence, UnidentifiedImageError

from .config import ImageSettings
from .errors import ImageError
from .extras import MissingExtra, hint, require
from .files import open_regular
from .types import DecodedImage, Photo

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

SAFE_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "TIFF", "WEBP", "HEIF", "AVIF", "GIF", "BMP")
"""Pillow format ids phototag decodes. Anything else (EPS runs Ghostscript, PSD, ICO, ...) is refused."""

RAW_EXTENSIONS = frozenset(
    {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf",
     ".pef", ".srw", ".rwl", ".3fr", ".erf", ".kdc", ".dcr", ".mrw", ".x3f", ".iiq", ".mos", ".mef"}
)  # fmt: skip
HEIF_BRANDS = frozenset(
    (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1")
)

RAW_HINT = hint("raw", "RAW previews")

# EXIF Orientation -> the transpose that undoes it (the table ImageOps.exif_transpose uses).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = frozenset({5, 6, 7, 8})

# Errors Pillow raises for bad data while parsing or decoding (it has no single base class for them).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)

_lock = threading.Lock()
_heif_registered = False

# Pillow only *warns* between MAX_IMAGE_PIXELS and twice that. Make the warning an error, process-wide,
# once: it only ever makes Pillow stricter. phototag's own per-call check does not depend on it.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class Frame:
    """The result of :func:`read_image`.

    ``image`` is 8-bit RGB, orientation applied, shorter side ``min_side`` (or the original's, if smaller).
    ``width``/``height`` are the full orientation-corrected size of the original. ``decoded_size`` is the
    size of the pixels actually decoded before the final resize (smaller than the original when JPEG draft
    mode applied).
    """

    image: Image.Image
    width: int
    height: int
    format: str
    decoded_size: tuple[int, int]


def decode(photo: Photo, min_side: int, settings: ImageSettings) -> DecodedImage:
    """Decode ``photo`` for analysis: 8-bit RGB, EXIF orientation applied, shorter side downscaled to
    ``min_side`` (never upscaled; ``0`` keeps the full size). Raises :class:`ImageError` for anything that
    cannot be decoded safely; the message names the file and what to do."""
    f = read_image(photo.path, min_side, settings)
    return DecodedImage(photo=photo, image=f.image, width=f.width, height=f.height, format=f.format)


def read_image(path: Path | str, min_side: int, settings: ImageSettings) -> Frame:
    """:func:`decode` for a bare path; also reports how much was decoded (see :class:`Frame`)."""
    path = Path(path)
    if min_side < 0:
        raise ValueError(f"min_side must be >= 0, got {min_side}")
    suffix = path.suffix.lower()
    if suffix not in settings.extensions:
        shown = suffix or "(no extension)"
        raise ImageError(
            path,
            f"extension {shown} is not in image.extensions ({', '.join(settings.extensions)}); "
            "add it there if this is a photo",
        )
    limit = int(settings.max_megapixels * 1_000_000)
    _raise_pillow_limit(limit)
    try:
        with open_regular(path, ImageError) as fp:
            if os.fstat(fp.fileno()).st_size == 0:
                raise ImageError(path, "empty file (0 bytes): a failed copy, or still being written")
            if suffix in RAW_EXTENSIONS:
                return _read_raw(path, fp, min_side, limit)
            return _read_pillow(path, fp, min_side, limit)
    except ImageError:
        raise
    except OSError as e:  # opening or reading the file itself; Pillow's decode errors are converted inside
        raise ImageError(path, _os_problem(e)) from e


def photo_dimensions(path: Path | str) -> tuple[int, int]:
    """The orientation-corrected ``(width, height)`` of an image, read from its header without decoding pixels
    (for RAW files with rawpy: the sensor's output size; without it, the size of the preview Pillow finds)."""
    path = Path(path)
    try:
        with open_regular(path, ImageError) as fp:
            if path.suffix.lower() in RAW_EXTENSIONS:
                dims = _raw_dimensions(path)
                if dims is not None:
                    return dims
            with _open_pillow(path, fp) as im:
                return _oriented_size(im)
    except ImageError:
        raise
    except OSError as e:
        raise ImageError(path, _os_problem(e)) from e


def pixel_hash(path: Path | str) -> str:
    """SHA-256 over every frame's mode, size and fully decoded pixels, exactly as stored (no orientation, no
    conversion). Equal hashes before and after a metadata write prove the pixels were not touched."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with open_regular(path, ImageError) as fp, _open_pillow(path, fp) as im:
            for frame in ImageSequence.Iterator(im):
                frame.load()
                digest.update(f"{frame.mode} {frame.size}\n".encode())
                digest.update(frame.tobytes())
    except OSError as e:
        raise ImageError(path, _os_problem(e)) from e
    return digest.hexdigest()


# -- opening -------------------------------------------------------------------------------------------------


def _raise_pillow_limit(limit: int) -> None:
    """Make sure Pillow's own (global) bomb check never refuses what this call allows.

    The per-call limit is enforced by :func:`_finish`; Pillow's global threshold only ever goes *up*,
    under a lock, to the largest limit any caller asked for, so concurrent decodes with different settings
    stay correct."""
    if Image.MAX_IMAGE_PIXELS is None or limit <= Image.MAX_IMAGE_PIXELS:
        return
    with _lock:
        if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = limit


def _open_pillow(path: Path, fp: BinaryIO) -> Image.Image:
    """``Image.open`` restricted to :data:`SAFE_FORMATS`, errors turned into :class:`ImageError`. Only the
    header is read."""
    fp.seek(0)
    head = fp.read(32)
    fp.seek(0)
    heif = _is_heif(head)
    if heif:
        _register_heif(path)
    try:
        return Image.open(fp, formats=_formats())
    except UnidentifiedImageError:
        if heif:  # an ISO-BMFF file that no registered decoder accepted
            raise ImageError(path, "not a HEIF/AVIF image phototag can decode (unsupported brand)") from None
        raise ImageError(path, _not_an_image(head)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(path, f"refused as a possible decompression bomb ({e}); {_BOMB_FIX}") from None
    except _DECODE_ERRORS as e:
        raise ImageError(path, f"corrupt image header ({e}); re-export or re-copy the file") from None


_BOMB_FIX = "if the image is genuine, raise image.max_megapixels in the config"


def _formats() -> list[str]:
    Image.init()  # loads every plugin once; then a no-op
    # Image.open raises KeyError for a format id that is not registered: offer only those that are.
    return [f for f in SAFE_FORMATS if f in Image.OPEN]


def _is_heif(head: bytes) -> bool:
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def _register_heif(path: Path) -> None:
    """Register pillow-heif's opener the first time a HEIF file is seen (importing it costs ~100 ms)."""
    global _heif_registered
    if _heif_registered:
        return
    with _lock:
        if _heif_registered:
            return
        try:
            pillow_heif = require("pillow_heif", "heic", "HEIC photos")
        except MissingExtra as e:
            raise ImageError(path, str(e)) from None
        pillow_heif.register_heif_opener()
        _heif_registered = True


def _not_an_image(head: bytes) -> str:
    known = {b"%PDF": "a PDF", b"%!PS": "PostScript", b"8BPS": "a Photoshop document", b"PK\x03\x04": "a ZIP"}
    what = next((name for magic, name in known.items() if head.startswith(magic)), None)
    kind = f"{what}, " if what else ""
    return (
        f"not an image ({kind}content is none of {', '.join(SAFE_FORMATS)}); "
        "check the file, or exclude it in the config"
    )


def _os_problem(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return "permission denied: give the user phototag runs as read access to this file"
    if isinstance(e, FileNotFoundError):
        return "file not found: it was moved or deleted before it could be read"
    if isinstance(e, IsADirectoryError):
        return "is a directory, not a photo"
    return f"cannot read the file ({e.strerror or e}); check the disk and the file's permissions"


# -- decoding ------------------------------------------------------------------------------------------------


def _read_pillow(path: Path, fp: BinaryIO, min_side: int, limit: int) -> Frame:
    im = _open_pillow(path, fp)
    try:
        return _finish(path, im, min_side, limit)
    finally:
        im.close()  # the file object is ours (closed by the caller); this drops Pillow's references to it


def _finish(
    path: Path,
    im: Image.Image,
    min_side: int,
    limit: int,
    *,
    orientation: int | None = None,
    full_size: tuple[int, int] | None = None,
    fmt: str | None = None,
) -> Frame:
    """Bomb check, draft, decode, convert to RGB, downscale, orient. ``orientation``/``full_size``
    override what the image itself says (RAW previews take them from the RAW file)."""
    w, h = im.size
    if w * h > limit:
        raise ImageError(
            path,
            f"{w}x{h} ({w * h / 1e6:.0f} MP) is more than image.max_megapixels ({limit / 1e6:g} MP): "
            f"refused as a possible decompression bomb; {_BOMB_FIX}",
        )
    target = _target_size(w, h, min_side)
    if target != (w, h) and im.format in ("JPEG", "MPO", "HEIF"):
        # JPEG: libjpeg scales by 1/2, 1/4 or 1/8 while decoding (Pillow picks the largest that stays
        # >= target). HEIF: pillow-heif decodes the smallest embedded thumbnail >= target, if there is one.
        im.draft("RGB", target)
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(path, f"refused as a possible decompression bomb ({e}); {_BOMB_FIX}") from None
    except _DECODE_ERRORS as e:
        if isinstance(e, OSError) and e.errno is not None:  # a real I/O error, not bad data
            raise ImageError(path, _os_problem(e)) from e
        raise ImageError(
            path,
            f"truncated or corrupt image data ({e}): the file may be incomplete (still copying?) or damaged; "
            "re-copy or re-export it",
        ) from None
    if orientation is None:
        # read after load(): Pillow >= 11 rotates a TIFF itself while loading and then drops its tag
        orientation = _orientation(im)
    decoded_size = im.size
    rgb = _to_rgb(path, im)
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
    method = _TRANSPOSE.get(orientation)
    if method is not None:
        rgb = rgb.transpose(method)
    if rgb is im:  # never hand out the file's own image object
        rgb = rgb.copy()
    rgb.info.clear()  # EXIF/ICC/XMP bytes of the original are not needed downstream
    fw, fh = full_size or (w, h)
    if orientation in _SWAPS_SIDES:
        fw, fh = fh, fw
    return Frame(rgb, fw, fh, fmt or im.format or "unknown", decoded_size)


def _target_size(w: int, h: int, min_side: int) -> tuple[int, int]:
    """The size whose shorter side is ``min_side``, same aspect ratio; the original size if smaller."""
    short = min(w, h)
    if min_side <= 0 or short <= min_side:
        return (w, h)
    scale = min_side / short
    if w <= h:
        return (min_side, max(1, round(h * scale)))
    return (max(1, round(w * scale)), min_side)


def _oriented_size(im: Image.Image) -> tuple[int, int]:
    """The displayed size of an opened (not yet loaded) image."""
    w, h = im.size
    if _orientation(im) not in _SWAPS_SIDES:
        return (w, h)
    tags = getattr(im, "tag_v2", None)
    if tags is not None and (h, w) == (tags.get(256), tags.get(257)):
        return (w, h)  # Pillow >= 11 reports a TIFF's size already oriented (and rotates it on load)
    return (h, w)


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)  # also finds tiff:Orientation in XMP
    except Exception:  # a broken EXIF block must not make the photo undecodable
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _to_rgb(path: Path, im: Image.Image) -> Image.Image:
    """8-bit RGB from any mode Pillow decodes: alpha on white, 16-bit and float scaled (not clipped)."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode == "CMYK":
        return _cmyk_to_rgb(im)
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_l(im).convert("RGB")
    try:
        if "transparency" in im.info or mode in ("P", "PA"):
            # palette transparency and tRNS colour keys become a real alpha channel first
            im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
        if im.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            # composite on white: a transparent logo on black would read as a black photo to the models
            return Image.alpha_composite(white, rgba).convert("RGB")
        return im.convert("RGB")
    except ValueError as e:
        raise ImageError(path, f"unsupported colour mode {mode} ({e}); convert the file to RGB") from None


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    if im.format in ("JPEG", "MPO") and "adobe" not in im.info:
        # Pillow reads every CMYK JPEG with Adobe's inverted polarity; without an Adobe APP14 marker the
        # data is stored plain, so undo the inversion (libjpeg's convention).
        im = ImageChops.invert(im)
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if out is not None:
                return out
        except Exception as e:  # a broken profile: fall back to the naive conversion below
            log.debug("CMYK ICC conversion failed (%s); using the naive conversion", e)
    return im.convert("RGB")


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greyscale -> 8-bit ``L``. ``convert('L')`` would clip everything above 255
    to white; instead 16-bit spans 0..65535, float 0..1, and anything else is stretched to its min..max."""
    import numpy as np

    arr: np.ndarray[Any, Any] = np.asarray(im)
    if im.mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    else:
        arr = arr.astype(np.float64)
        finite = arr[np.isfinite(arr)]
        amin = float(finite.min()) if finite.size else 0.0
        amax = float(finite.max()) if finite.size else 0.0
        if im.mode == "F" and amin >= 0.0 and amax <= 1.0:
            lo, hi = 0.0, 1.0
        elif im.mode != "F" and amin >= 0 and amax <= 65535:  # Pillow's old "I" for 16-bit PNGs
            lo, hi = 0.0, 65535.0
        else:
            lo, hi = amin, amax if amax > amin else amin + 1.0
    scaled = (np.nan_to_num(arr.astype(np.float32), nan=lo) - lo) * (255.0 / (hi - lo))
    return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8))  # 2-D uint8: mode L


# -- camera RAW ----------------------------------------------------------------------------------------------

# LibRaw's "flip" (0, 3: 180 degrees, 5: 90 counter-clockwise, 6: 90 clockwise) as the EXIF orientation that
# undoes it; RAW previews are stored unrotated and the RAW's own orientation applies to them.
_RAW_FLIP_AS_EXIF = {3: 3, 5: 8, 6: 6}


def _import_rawpy() -> Any | None:
    try:
        import rawpy
    except ImportError:
        return None
    return rawpy


def _read_raw(path: Path, fp: BinaryIO, min_side: int, limit: int) -> Frame:
    """The embedded preview of a camera RAW: by rawpy, else Pillow (TIFF-based RAWs, a misnamed JPEG)."""
    rawpy_problem = RAW_HINT
    rawpy = _import_rawpy()
    if rawpy is not None:
        try:
            return _read_rawpy(rawpy, path, min_side, limit)
        except ImageError:
            raise
        except Exception as e:  # LibRawError and friends: try Pillow before giving up
            rawpy_problem = f"rawpy could not read it either ({type(e).__name__}: {e})"
    try:
        return _read_pillow(path, fp, min_side, limit)
    except ImageError as e:
        reason = str(e).removeprefix(f"{path}: ")
        raise ImageError(path, f"no usable preview in this RAW file ({reason}); {rawpy_problem}") from None


def _read_rawpy(rawpy: Any, path: Path, min_side: int, limit: int) -> Frame:
    import numpy as np

    with rawpy.imread(str(path)) as raw:
        sizes = raw.sizes
        thumb = raw.extract_thumb()
    flip = int(getattr(sizes, "flip", 0))
    full = (int(sizes.width), int(sizes.height))
    im: Image.Image
    if thumb.format == rawpy.ThumbFormat.JPEG:
        im = Image.open(io.BytesIO(thumb.data), formats=["JPEG", "MPO"])
    else:  # BITMAP: an RGB array
        im = Image.fromarray(np.asarray(thumb.data, dtype=np.uint8))
    with im:
        return _finish(
            path,
            im,
            min_side,
            limit,
            orientation=_RAW_FLIP_AS_EXIF.get(flip, 1),
            full_size=full,
            fmt=f"RAW({path.suffix.lstrip('.').upper()})",
        )


def _raw_dimensions(path: Path) -> tuple[int, int] | None:
    rawpy = _import_rawpy()
    if rawpy is None:
        return None
    try:
        with rawpy.imread(str(path)) as raw:
            w, h, flip = int(raw.sizes.width), int(raw.sizes.height), int(raw.sizes.flip)
    except Exception:
        return None
    return (h, w) if flip in (5, 6) else (w, h)


def supported_formats() -> Sequence[str]:
    """The format ids decodable right now (HEIF appears once pillow-heif is registered)."""
    return _formats()
