"""Safe decoding on real photos and on every kind of bad input RELIABILITY.md lists."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from phototag.config import ImageSettings
from phototag.errors import ImageError
from phototag.images import decode, photo_dimensions, pixel_hash, read_image
from phototag.types import Photo

SETTINGS = ImageSettings()
HAS_RAWPY = importlib.util.find_spec("rawpy") is not None


def photo_of(path: Path) -> Photo:
    st = path.stat()
    digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    return Photo(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, content_hash=digest)


def reference(path: Path, size: tuple[int, int]) -> np.ndarray:
    """What decoding should give, the slow obvious way: full decode, exif_transpose, RGB, resize."""
    with Image.open(path) as im:
        full = ImageOps.exif_transpose(im).convert("RGB")
    return np.asarray(full.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)


def mean_diff(a: Image.Image, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - b).mean())


def with_orientation(src: Path, dst: Path, orientation: int) -> Path:
    with Image.open(src) as im:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(dst, quality=92, exif=exif.tobytes())
    return dst


def png_bomb(path: Path, side: int, rows: int | None = None) -> Path:
    """A greyscale PNG of side x side black pixels: a few hundred KB that decode to side**2 bytes. With
    ``rows``, only that many rows of data follow the header (enough for a header-only check)."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(side if rows is None else rows)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def open_fds_to(path: Path) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path.resolve()):
                out.append(fd)
        except OSError:
            pass
    return out


# -- real photos --------------------------------------------------------------------------------------------


def test_every_sample_photo_decodes_to_rgb_at_min_side(photos: Path) -> None:
    for path in sorted(photos.iterdir()):
        d = decode(photo_of(path), 224, SETTINGS)
        with Image.open(path) as im:
            full = im.size
        assert d.image.mode == "RGB", path.name
        assert min(d.image.size) == 224, path.name
        assert (d.width, d.height) == full, path.name  # the samples carry no orientation tag
        assert d.format == ("PNG" if path.suffix == ".png" else "JPEG")
        assert mean_diff(d.image, reference(path, d.image.size)) < 4.0, path.name


def test_never_upscaled_and_zero_keeps_full_size(photos: Path) -> None:
    cat = photos / "cat.jpg"  # 451x300
    assert read_image(cat, 1000, SETTINGS).image.size == (451, 300)
    frame = read_image(cat, 0, SETTINGS)
    assert frame.image.size == frame.decoded_size == (451, 300)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(photos: Path, tmp_path: Path, orientation: int) -> None:
    path = with_orientation(photos / "cat.jpg", tmp_path / "o.jpg", orientation)
    d = decode(photo_of(path), 200, SETTINGS)
    swapped = orientation >= 5
    assert (d.width, d.height) == ((300, 451) if swapped else (451, 300))
    assert d.image.size == ((200, 301) if swapped else (301, 200))
    expected = reference(path, d.image.size)
    assert mean_diff(d.image, expected) < 4.0
    if orientation != 1:  # the check can tell orientations apart: the unrotated frame is far off
        plain = reference(photos / "cat.jpg", (301, 200))
        if swapped:
            plain = np.asarray(Image.fromarray(plain.astype(np.uint8)).resize(d.image.size), np.float32)
        assert mean_diff(d.image, plain) > 15.0


def test_photo_dimensions_reads_orientation_without_decoding(photos: Path, tmp_path: Path) -> None:
    rotated = with_orientation(photos / "cat.jpg", tmp_path / "r.jpg", 6)
    assert photo_dimensions(rotated) == (300, 451)
    assert photo_dimensions(photos / "coffee.png") == (600, 400)
    # a truncated JPEG has an intact header: its size is known even though its pixels cannot be decoded
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(rotated.read_bytes()[:2000])
    assert photo_dimensions(truncated) == (300, 451)
    text = tmp_path / "x.jpg"
    text.write_text("not an image")
    with pytest.raises(ImageError, match="not an image"):
        photo_dimensions(text)


# -- JPEG draft mode ----------------------------------------------------------------------------------------


@pytest.fixture
def big_jpeg(photos: Path, tmp_path: Path) -> Path:
    """A 12 MP JPEG made from a real photo."""
    path = tmp_path / "big.jpg"
    with Image.open(photos / "astronaut.jpg") as im:
        im.convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(path, quality=90)
    return path


def test_draft_mode_decodes_a_12mp_jpeg_at_reduced_size(big_jpeg: Path) -> None:
    frame = read_image(big_jpeg, 224, SETTINGS)
    assert (frame.width, frame.height) == (4000, 3000)
    assert frame.image.size == (299, 224)
    # libjpeg decoded at 1/8 (the largest factor that keeps the short side >= 224): 500x375, not 4000x3000
    assert frame.decoded_size == (500, 375)
    assert mean_diff(frame.image, reference(big_jpeg, (299, 224))) < 4.0
    # a larger input needs a smaller factor, still never below the requested size
    frame = read_image(big_jpeg, 640, SETTINGS)
    assert frame.decoded_size == (1000, 750)
    assert frame.image.size == (853, 640)


def test_draft_mode_with_orientation_reports_full_rotated_size(big_jpeg: Path, tmp_path: Path) -> None:
    path = with_orientation(big_jpeg, tmp_path / "rot.jpg", 8)
    d = decode(photo_of(path), 224, SETTINGS)
    assert (d.width, d.height) == (3000, 4000)
    assert d.image.size == (224, 299)


# -- bad input ----------------------------------------------------------------------------------------------


def test_truncated_jpeg(photos: Path, tmp_path: Path) -> None:
    path = tmp_path / "half.jpg"
    data = (photos / "grace_hopper.jpg").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    for min_side in (224, 0):  # draft-mode decode and full decode both notice
        with pytest.raises(ImageError, match="truncated") as err:
            decode(photo_of(path), min_side, SETTINGS)
        assert str(path) in str(err.value)
        assert err.value.path == path


def test_text_named_jpg_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list\n")
    with pytest.raises(ImageError, match="not an image") as err:
        decode(photo_of(path), 224, SETTINGS)
    assert str(path) in str(err.value)


def test_pdf_named_jpg_says_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "scan.jpg"
    path.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
    with pytest.raises(ImageError, match="not an image \\(a PDF"):
        decode(photo_of(path), 224, SETTINGS)


def test_png_named_jpg_decodes_by_content(photos: Path, tmp_path: Path) -> None:
    path = tmp_path / "really_a_png.jpg"
    shutil.copyfile(photos / "coffee.png", path)
    d = decode(photo_of(path), 224, SETTINGS)
    assert d.format == "PNG"
    assert (d.width, d.height) == (600, 400)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file") as err:
        decode(photo_of(path), 224, SETTINGS)
    assert str(path) in str(err.value)


def test_unsupported_extension_even_with_valid_content(photos: Path, tmp_path: Path) -> None:
    path = tmp_path / "cat.xyz"
    shutil.copyfile(photos / "cat.jpg", path)
    with pytest.raises(ImageError, match=r"extension \.xyz is not in image\.extensions"):
        decode(photo_of(path), 224, SETTINGS)
    # and the allow-list is the configured one, case-insensitively
    assert decode(photo_of(path), 224, ImageSettings(extensions=("XYZ",))).format == "JPEG"


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    bomb = png_bomb(tmp_path / "bomb.png", 10_000)  # 100 MP of black in a few hundred KB
    assert bomb.stat().st_size < 300_000
    with pytest.raises(ImageError, match="decompression bomb") as err:
        decode(photo_of(bomb), 224, ImageSettings(max_megapixels=50))
    assert "image.max_megapixels" in str(err.value)
    # past Pillow's own hard limit the message is just as clear
    huge = png_bomb(tmp_path / "huge.png", 20_000, rows=10)  # 400 MP claimed
    with pytest.raises(ImageError, match="decompression bomb"):
        decode(photo_of(huge), 224, SETTINGS)


def test_bomb_limit_is_per_call_under_concurrency(photos: Path, tmp_path: Path) -> None:
    """Decoding runs in a thread pool; a generous limit in one call must not loosen another call's."""
    bomb = png_bomb(tmp_path / "bomb.png", 3_000)  # 9 MP
    strict, loose = ImageSettings(max_megapixels=5), ImageSettings(max_megapixels=500)
    cat = photos / "cat.jpg"

    def job(i: int) -> str:
        try:
            read_image(bomb if i % 2 else cat, 224, loose if i % 4 == 3 else strict)
        except ImageError as e:
            return "bomb" if "decompression bomb" in str(e) else f"other: {e}"
        return "ok"

    read_image(cat, 224, loose)  # Pillow's global threshold is now 500 MP
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(job, range(12)))
    for i, r in enumerate(results):
        if i % 2 == 0:
            assert r == "ok"
        elif i % 4 == 1:
            assert r == "bomb", i  # strict call: refused even though a loose call raised the global
        else:
            assert r == "ok", i  # loose call: 9 MP is allowed and decodes


def test_directory_named_like_a_photo(tmp_path: Path) -> None:
    path = tmp_path / "folder.jpg"
    path.mkdir()
    with pytest.raises(ImageError, match=r"not a regular file \(a folder\)"):
        read_image(path, 224, SETTINGS)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="moved or deleted"):
        read_image(tmp_path / "gone.jpg", 224, SETTINGS)


def test_unreadable_file(photos: Path) -> None:
    path = photos / "cat.jpg"
    path.chmod(0)
    code = (
        "import sys; from phototag.images import read_image; from phototag.config import ImageSettings\n"
        "try:\n    read_image(sys.argv[1], 224, ImageSettings())\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    cmd = [sys.executable, "-c", code, str(path)]
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that let it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.startswith("ImageError"), out
    assert str(path) in out and "permission denied" in out and "read access" in out


def test_file_is_never_written_and_no_handle_is_left_open(photos: Path, tmp_path: Path) -> None:
    good = photos / "rocket.jpg"
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(good.read_bytes()[:3000])
    for path in (good, bad):
        before = (path.read_bytes(), path.stat().st_mtime_ns)
        try:
            decode(photo_of(path), 224, SETTINGS)
        except ImageError:
            assert path == bad
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before
        assert open_fds_to(path) == []


# -- colour modes -------------------------------------------------------------------------------------------


def pixel(path: Path, xy: tuple[int, int] = (5, 5)) -> tuple[int, ...]:
    return read_image(path, 0, SETTINGS).image.getpixel(xy)  # type: ignore[return-value]


def test_palette_with_transparency_composites_on_white(tmp_path: Path) -> None:
    im = Image.new("P", (20, 20), 0)
    im.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    im.paste(1, (10, 0, 20, 20))
    path = tmp_path / "p.png"
    im.save(path, transparency=0)
    assert pixel(path, (2, 2)) == (255, 255, 255)  # transparent black -> white, not black
    assert pixel(path, (15, 2)) == (200, 30, 30)
    plain = tmp_path / "p_opaque.png"
    im.save(plain)
    assert pixel(plain, (2, 2)) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_composites_on_white(tmp_path: Path, mode: str) -> None:
    rgba = np.zeros((10, 30, 4), np.uint8)
    rgba[:, :, :3] = (0, 0, 0)
    rgba[:, 10:20, 3] = 128
    rgba[:, 20:, 3] = 255
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").convert(mode).save(path)
    assert pixel(path, (5, 5)) == (255, 255, 255)  # fully transparent
    assert all(abs(c - 127) <= 1 for c in pixel(path, (15, 5)))  # half black over white
    assert pixel(path, (25, 5)) == (0, 0, 0)  # opaque black stays black


def test_cmyk_jpeg_adobe_inverted(tmp_path: Path) -> None:
    path = tmp_path / "adobe.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path, quality=95)  # Pillow writes Adobe APP14
    assert b"Adobe" in path.read_bytes()[:200]
    assert _close(pixel(path), (255, 0, 0))


def test_cmyk_jpeg_without_adobe_marker(tmp_path: Path) -> None:
    # Pillow stores CMYK inverted (Adobe polarity); saving the inverse then dropping APP14 gives a plain CMYK
    # JPEG whose stored values are red, as a non-Adobe writer would produce
    tmp = tmp_path / "tmp.jpg"
    Image.new("CMYK", (32, 32), (255, 0, 0, 255)).save(tmp, quality=95)
    data = tmp.read_bytes()
    at = data.find(b"\xff\xee")
    length = int.from_bytes(data[at + 2 : at + 4], "big")
    path = tmp_path / "plain.jpg"
    path.write_bytes(data[:at] + data[at + 2 + length :])
    with Image.open(path) as im:
        assert im.mode == "CMYK" and "adobe" not in im.info
    assert _close(pixel(path), (255, 0, 0))


def test_cmyk_tiff(tmp_path: Path) -> None:
    path = tmp_path / "c.tif"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path)
    assert _close(pixel(path), (255, 0, 0))


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_greyscale_is_scaled_not_clipped(tmp_path: Path, suffix: str) -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (8, 1))
    path = tmp_path / f"g16{suffix}"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")
    out = np.asarray(read_image(path, 0, SETTINGS).image)[0, :, 0].astype(int)
    assert out[0] == 0 and out[-1] == 255
    assert abs(out[128] - 128) <= 1  # a naive convert('RGB') gives 255 here
    assert (np.diff(out) >= 0).all() and len(set(out.tolist())) > 200


def test_32bit_int_greyscale(tmp_path: Path) -> None:
    path = tmp_path / "i32.tif"
    Image.fromarray(np.tile(np.arange(0, 65536, 256, dtype=np.int32), (4, 1))).save(path)
    out = np.asarray(read_image(path, 0, SETTINGS).image)[0, :, 0].astype(int)
    assert out[0] == 0 and 250 <= out[-1] <= 255 and abs(out[128] - 128) <= 1


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (-3.0, 5.0)])
def test_float_tiff(tmp_path: Path, lo: float, hi: float) -> None:
    path = tmp_path / "f.tif"
    Image.fromarray(np.tile(np.linspace(lo, hi, 101, dtype=np.float32), (4, 1)), "F").save(path)
    out = np.asarray(read_image(path, 0, SETTINGS).image)[0, :, 0].astype(int)
    assert out[0] == 0 and out[-1] == 255 and abs(out[50] - 128) <= 1


def test_one_bit(tmp_path: Path) -> None:
    im = Image.new("1", (16, 16), 0)
    im.paste(1, (8, 0, 16, 16))
    path = tmp_path / "bw.png"
    im.save(path)
    assert pixel(path, (2, 2)) == (0, 0, 0)
    assert pixel(path, (12, 2)) == (255, 255, 255)


def test_webp_and_greyscale_jpeg(photos: Path, tmp_path: Path) -> None:
    with Image.open(photos / "cat.jpg") as im:
        im.save(tmp_path / "cat.webp", quality=90)
        im.convert("L").save(tmp_path / "grey.jpg", quality=90)
    assert decode(photo_of(tmp_path / "cat.webp"), 224, SETTINGS).image.size == (337, 224)
    grey = decode(photo_of(tmp_path / "grey.jpg"), 224, SETTINGS).image
    assert grey.mode == "RGB" and grey.size == (337, 224)


# -- HEIC and RAW -------------------------------------------------------------------------------------------


def test_heic_with_orientation(photos: Path, tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / "cat.heic"
    with Image.open(photos / "cat.jpg") as im:
        exif = Image.Exif()
        exif[0x0112] = 6
        pillow_heif.from_pillow(im).save(path, quality=90, exif=exif.tobytes())
    d = decode(photo_of(path), 224, SETTINGS)
    assert d.format == "HEIF"
    assert (d.width, d.height) == (300, 451)  # displayed upright: rotated once, not twice
    with Image.open(photos / "cat.jpg") as im:
        upright = im.transpose(Image.Transpose.ROTATE_270).convert("RGB").resize(d.image.size)
    assert mean_diff(d.image, np.asarray(upright, np.float32)) < 8.0


def test_heic_decodes_an_embedded_thumbnail_when_large_enough(photos: Path, tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / "thumbs.heic"
    with Image.open(photos / "astronaut.jpg") as im:
        pillow_heif.from_pillow(im.resize((1200, 900))).save(path, quality=60, thumbnails=[320])
    small = read_image(path, 224, SETTINGS)
    assert small.decoded_size == (320, 240)  # the thumbnail, not the 1200x900 image
    assert (small.width, small.height) == (1200, 900) and small.image.size == (299, 224)
    with Image.open(photos / "astronaut.jpg") as im:
        expected = np.asarray(im.resize((299, 224), Image.Resampling.BICUBIC), np.float32)
    assert mean_diff(small.image, expected) < 8.0
    assert read_image(path, 640, SETTINGS).decoded_size == (1200, 900)  # no thumbnail that large


def test_heic_without_pillow_heif_names_the_extra(photos: Path, tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / "cat.heic"
    with Image.open(photos / "cat.jpg") as im:
        pillow_heif.from_pillow(im).save(path, quality=60)
    code = (
        "import sys; sys.modules['pillow_heif'] = None\n"  # as if the extra were not installed
        "from phototag.images import read_image; from phototag.config import ImageSettings\n"
        "try:\n    read_image(sys.argv[1], 224, ImageSettings())\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.startswith("ImageError") and str(path) in out
    assert "pip install 'phototag[heic]'" in out


def asymmetric(w: int = 320, h: int = 240) -> np.ndarray:
    """A test card whose every rotation and flip looks different: a horizontal ramp plus a corner block."""
    card = np.zeros((h, w, 3), np.uint8)
    card[:, :, 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    card[: h // 3, : w // 4] = (0, 255, 0)
    return card


def oriented(card: np.ndarray, orientation: int, size: tuple[int, int]) -> np.ndarray:
    """The card as a viewer would display it for an EXIF ``orientation``, resized to ``size``."""
    im = ImageOps.exif_transpose(_tagged(Image.fromarray(card), orientation))
    return np.asarray(im.resize(size, Image.Resampling.BICUBIC), np.float32)


def _tagged(im: Image.Image, orientation: int) -> Image.Image:
    exif = im.getexif()
    exif[0x0112] = orientation
    return im


def make_dng(
    path: Path, preview: np.ndarray, orientation: int = 1, sensor: tuple[int, int] = (640, 480)
) -> Path:
    """A DNG laid out as cameras and Adobe write them: IFD0 an 8-bit RGB preview carrying the DNG and
    orientation tags, a SubIFD the raw Bayer (CFA) data."""
    tifffile = pytest.importorskip("tifffile")
    w, h = sensor
    cfa = np.random.default_rng(0).integers(0, 4095, (h, w)).astype(np.uint16)
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            preview,
            photometric="rgb",
            subfiletype=1,  # reduced-resolution image
            subifds=1,
            extratags=[
                (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
                (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
                (50708, "s", 0, "phototag test", True),  # UniqueCameraModel
                (274, "H", 1, orientation, True),
            ],
        )
        tw.write(
            cfa,
            photometric=32803,  # CFA
            subfiletype=0,
            extratags=[
                (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
                (33422, "B", 4, (2, 1, 1, 0), True),  # CFAPattern BGGR
                (50717, "I", 1, 4095, True),  # WhiteLevel
                (
                    50721,
                    "2i",
                    9,
                    (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1),
                    True,
                ),  # ColorMatrix1
                (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
            ],
        )
    return path


def test_tiff_orientation(tmp_path: Path) -> None:
    card = asymmetric()
    path = tmp_path / "card.tif"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(card).save(path, exif=exif.tobytes())
    assert photo_dimensions(path) == (240, 320)
    frame = read_image(path, 120, SETTINGS)
    assert (frame.width, frame.height) == (240, 320) and frame.image.size == (120, 160)
    assert mean_diff(frame.image, oriented(card, 6, (120, 160))) < 3.0  # rotated once, not twice


def test_dng_preview_with_orientation(tmp_path: Path) -> None:
    card = asymmetric()
    path = make_dng(tmp_path / "IMG_0003.DNG", card, orientation=6)
    d = decode(photo_of(path), 200, SETTINGS)
    assert d.image.size == (200, 267)
    assert mean_diff(d.image, oriented(card, 6, (200, 267))) < 3.0
    if HAS_RAWPY:  # the RAW's own size, from LibRaw
        assert d.format == "RAW(DNG)" and (d.width, d.height) == (480, 640)
        assert photo_dimensions(path) == (480, 640)
    else:  # Pillow reads the preview in IFD0; its size is all it knows
        assert d.format == "TIFF" and (d.width, d.height) == (240, 320)
        assert photo_dimensions(path) == (240, 320)


def test_raw_that_is_not_decodable_names_the_extra(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001.NEF"
    path.write_bytes(b"not really a nikon raw" * 10)
    with pytest.raises(ImageError, match="no usable preview in this RAW file") as err:
        decode(photo_of(path), 224, SETTINGS)
    assert str(path) in str(err.value)
    if not HAS_RAWPY:
        assert "pip install 'phototag[raw]'" in str(err.value)


def test_dng_without_a_preview(tmp_path: Path) -> None:
    # only raw Bayer data in IFD0: nothing Pillow can show, and rawpy finds no thumbnail either
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "bare.dng"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint16), photometric=32803)
    with pytest.raises(ImageError, match="no usable preview in this RAW file") as err:
        decode(photo_of(path), 224, SETTINGS)
    assert ("phototag[raw]" in str(err.value)) != HAS_RAWPY


def test_jpeg_named_as_raw_decodes(photos: Path, tmp_path: Path) -> None:
    path = tmp_path / "IMG_0004.cr2"
    shutil.copyfile(photos / "cat.jpg", path)
    assert decode(photo_of(path), 224, SETTINGS).image.size == (337, 224)


# -- pixel hash ---------------------------------------------------------------------------------------------


def test_pixel_hash_ignores_metadata_and_sees_pixels(
    photos: Path, tmp_path: Path, exiftool_path: str
) -> None:
    path = photos / "cat.jpg"
    before = pixel_hash(path)
    raw_before = path.read_bytes()
    subprocess.run(
        [exiftool_path, "-q", "-overwrite_original", "-XMP-dc:Subject+=cat", str(path)],
        check=True,
        timeout=60,
    )
    assert path.read_bytes() != raw_before
    assert pixel_hash(path) == before
    changed = tmp_path / "changed.png"
    with Image.open(path) as im:
        im.save(tmp_path / "same.png")
        im.putpixel((0, 0), (0, 0, 0) if im.getpixel((0, 0)) != (0, 0, 0) else (255, 255, 255))
        im.save(changed)
    assert pixel_hash(tmp_path / "same.png") == before  # lossless re-encode: same pixels, same hash
    assert pixel_hash(changed) != before
