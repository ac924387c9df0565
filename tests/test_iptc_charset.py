"""IPTC-IIM text without a CodedCharacterSet: which charset its bytes are in, and the embed writer keeping the
user's UTF-8 and Latin-1 keywords and captions intact (real exiftool, real JPEGs, checked byte by byte)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from exiv2_reader import exiv2_read
from phototag.config import Config
from phototag.exiftool import Exiftool
from phototag.iptc import (
    TEXT_DATASETS,
    Dataset,
    guess_iptc_charset,
    iim_datasets,
    iptc_charset,
    may_be_misread,
    read_iptc_block,
)
from phototag.plugins.xmp import XmpWriter
from phototag.types import Analysis, AnalyzerRun, ModelInfo, Photo, PhotoResult, Tag

# -- building IIM blocks -------------------------------------------------------------------------------------


def ds(record: int, dataset: int, value: bytes) -> bytes:
    """One dataset with a standard 2-byte length."""
    return bytes([0x1C, record, dataset]) + len(value).to_bytes(2, "big") + value


def ext(record: int, dataset: int, value: bytes, n: int = 4) -> bytes:
    """One extended dataset: the length in ``n`` bytes after a 0x8000|n length field."""
    return (
        bytes([0x1C, record, dataset])
        + (0x8000 | n).to_bytes(2, "big")
        + len(value).to_bytes(n, "big")
        + value
    )


KEYWORD, CAPTION, VERSION, PREVIEW = (2, 25), (2, 120), (2, 0), (2, 202)
UTF8_MARK = ds(1, 90, b"\x1b%G")
ZURICH_UTF8, ZURICH_LATIN = "Zürich".encode(), "Zürich".encode("latin-1")
CAFE_UTF8, CAFE_LATIN = "Café au lait".encode(), "Café au lait".encode("latin-1")
VERSION_4 = ds(*VERSION, b"\x00\x04")

GUESSES = [
    ("empty", b"", None),
    ("only the record version", VERSION_4, None),
    ("ASCII keywords", VERSION_4 + ds(*KEYWORD, b"Zurich") + ds(*CAPTION, b"a cat"), None),
    ("UTF-8 keyword", VERSION_4 + ds(*KEYWORD, ZURICH_UTF8), "UTF8"),
    ("UTF-8 caption after ASCII", ds(*KEYWORD, b"cat") + ds(*CAPTION, CAFE_UTF8), "UTF8"),
    ("Latin-1 keyword", ds(*KEYWORD, ZURICH_LATIN), "Latin"),
    ("cp1252 euro sign", ds(*CAPTION, b"5 \x80"), "Latin"),
    ("UTF-8 keyword, Latin-1 caption", ds(*KEYWORD, ZURICH_UTF8) + ds(*CAPTION, CAFE_LATIN), "Latin"),
    ("Latin-1 first, UTF-8 after", ds(*KEYWORD, ZURICH_LATIN) + ds(*KEYWORD, CAFE_UTF8), "Latin"),
    ("cut-off UTF-8 sequence", ds(*KEYWORD, b"Z\xc3"), "Latin"),
    ("overlong encoding is not UTF-8", ds(*KEYWORD, b"\xc0\xaf"), "Latin"),
    ("NUL terminator stripped", ds(*KEYWORD, ZURICH_UTF8 + b"\0\0"), "UTF8"),
    ("marked UTF-8 wins over Latin bytes", UTF8_MARK + ds(*KEYWORD, ZURICH_LATIN), None),
    ("marked UTF-8", UTF8_MARK + ds(*KEYWORD, ZURICH_UTF8), None),
    ("unknown ESC % set: exiftool ignores -charset", ds(1, 90, b"\x1b%/I") + ds(*KEYWORD, ZURICH_LATIN), None),
    ("ISO 8859-1 designation: exiftool decodes with -charset",
     ds(1, 90, b"\x1b-A") + ds(*KEYWORD, ZURICH_LATIN), "Latin"),
    ("junk CodedCharacterSet is ignored", ds(1, 90, b"utf-8") + ds(*KEYWORD, ZURICH_UTF8), "UTF8"),
    ("binary preview is not text", ds(*PREVIEW, b"\xff\xd8\xff\xe0") + ds(*KEYWORD, ZURICH_UTF8), "UTF8"),
    ("record 1 text is never translated", ds(1, 5, ZURICH_LATIN) + ds(*KEYWORD, CAFE_UTF8), "UTF8"),
    ("unknown dataset is not text", ds(2, 240, b"\xfe\xff") + ds(*KEYWORD, b"cat"), None),
    ("object data record 8", ds(8, 10, b"\xff\xfe\x00") + ds(*KEYWORD, ZURICH_UTF8), "UTF8"),
    ("3:10 is text", ds(3, 10, ZURICH_LATIN), "Latin"),
    ("extended length read", ext(*CAPTION, CAFE_UTF8) + ds(*KEYWORD, b"cat"), "UTF8"),
    ("extended length, 1 byte", ext(*CAPTION, ZURICH_LATIN, n=1), "Latin"),
    ("extended length of 0 bytes", ext(*CAPTION, b"", n=0) + ds(*KEYWORD, ZURICH_UTF8), "UTF8"),
    ("extended length field over 8 bytes stops",
     ds(*KEYWORD, ZURICH_UTF8) + b"\x1c\x02\x78\x80\x09" + b"\xff" * 12, "UTF8"),
    ("extended length field past the end stops", ds(*KEYWORD, ZURICH_UTF8) + b"\x1c\x02\x78\x80\x04\x00", "UTF8"),
    ("value past the end stops", ds(*KEYWORD, ZURICH_UTF8) + b"\x1c\x02\x78\x00\x50\xfc\xfc", "UTF8"),
    ("bad marker stops", ds(*KEYWORD, ZURICH_UTF8) + b"\x1b\x02\x19\x00\x02\xfc\xfc", "UTF8"),
    ("TIFF NUL padding", ds(*KEYWORD, ZURICH_UTF8) + b"\0", "UTF8"),
    ("header cut short", ds(*KEYWORD, ZURICH_UTF8) + b"\x1c\x02", "UTF8"),
    ("not IIM at all", b"\xff\xfe\xfd\xfc\xfb\xfa", None),
]  # fmt: skip


@pytest.mark.parametrize(("block", "expected"), [g[1:] for g in GUESSES], ids=[g[0] for g in GUESSES])
def test_guess_iptc_charset(block: bytes, expected: str | None) -> None:
    assert guess_iptc_charset(block) == expected


def test_iim_datasets_parse_standard_and_extended_lengths() -> None:
    big = bytes(range(256)) * 300  # 76800 bytes: more than a 15-bit length can say
    block = UTF8_MARK + ds(*KEYWORD, b"a") + ext(8, 10, big) + ds(*CAPTION, b"") + b"\0\0"
    assert list(iim_datasets(block)) == [
        Dataset(1, 90, b"\x1b%G"),
        Dataset(2, 25, b"a"),
        Dataset(8, 10, big),
        Dataset(2, 120, b""),
    ]


def test_text_datasets_are_the_ones_exiftool_decodes() -> None:
    # spot checks against Image::ExifTool::IPTC: keywords, caption, by-line, city are strings; dates
    # (digits), the record version and the preview are not
    assert {(2, 25), (2, 120), (2, 80), (2, 90), (2, 5)} <= TEXT_DATASETS
    assert not {(2, 0), (2, 55), (2, 125), (2, 200), (2, 202), (1, 90), (1, 5)} & TEXT_DATASETS


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=400))
def test_guess_never_raises_on_arbitrary_bytes(block: bytes) -> None:
    assert guess_iptc_charset(block) in (None, "UTF8", "Latin")
    assert sum(5 + len(d.value) for d in iim_datasets(block)) <= len(block)


_dataset = st.builds(
    lambda rec, num, value, extended, n: ext(rec, num, value, n) if extended else ds(rec, num, value),
    st.sampled_from([1, 2, 3, 8]),
    st.sampled_from([0, 5, 25, 90, 120, 202, 240]),
    st.binary(max_size=40) | st.text(max_size=20).map(str.encode),
    st.booleans(),
    st.integers(1, 9),  # 9: a length field exiftool (and the parser) refuse
)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(_dataset, max_size=8), st.binary(max_size=8))
def test_guess_never_raises_on_near_valid_blocks(parts: list[bytes], tail: bytes) -> None:
    block = b"".join(parts) + tail
    assert guess_iptc_charset(block) in (None, "UTF8", "Latin")
    assert guess_iptc_charset(block[: len(block) // 2]) in (None, "UTF8", "Latin")


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({}, False),
        ({"XMP-dc:Subject": ["Zürich"]}, False),
        ({"IPTC:Keywords": ["Zurich", "cat"], "IPTC:ApplicationRecordVersion": "4"}, False),
        ({"IPTC:Keywords": ["ZÃ¼rich", "cat"]}, True),
        ({"IPTC:Caption-Abstract": "CafÃ©"}, True),
        ({"IPTC:Keywords": "Zürich", "IPTC:CodedCharacterSet": "UTF8"}, False),
        ({"IPTC:Keywords": "Zürich", "IPTC:CodedCharacterSet": "ESC - A"}, True),
    ],
)
def test_may_be_misread(tags: dict[str, object], expected: bool) -> None:
    assert may_be_misread(tags) is expected


# -- real files ----------------------------------------------------------------------------------------------

MODEL = ModelInfo("test/classifier", "rev-1")
CAPTION_TEXT = "Grüße aus Zürich, Café au lait"
USER_KEYWORDS = ["Zürich", "Café au lait"]


def exiftool_cli(*args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args], check=True)


def iptc_bytes(photo: Path) -> bytes:
    """The file's IPTC block as exiftool extracts it, independent of phototag's client."""
    return subprocess.run(["exiftool", "-b", "-IPTC", str(photo)], check=True, capture_output=True).stdout


def make_sample(photo: Path, kind: str) -> None:
    """User IPTC keywords and caption as ``kind``: unmarked UTF-8, unmarked Latin-1, or marked UTF-8."""
    charset = "Latin" if kind == "latin1" else "UTF8"
    values = [f"-IPTC:Keywords={k}" for k in USER_KEYWORDS] + [f"-IPTC:Caption-Abstract={CAPTION_TEXT}"]
    mark = ["-IPTC:CodedCharacterSet=UTF8"] if kind == "marked" else ["-IPTC:CodedCharacterSet="]
    exiftool_cli("-IPTC:all=", photo.as_posix())
    exiftool_cli("-charset", f"iptc={charset}", *values, *mark, photo.as_posix())
    # the file really holds what the test means, byte for byte
    encoding = "latin-1" if kind == "latin1" else "utf-8"
    data, block = photo.read_bytes(), iptc_bytes(photo)
    for k in USER_KEYWORDS:
        assert ds(*KEYWORD, k.encode(encoding)) in data
    assert ds(*CAPTION, CAPTION_TEXT.encode(encoding)) in data
    assert (UTF8_MARK in block) is (kind == "marked")
    assert (b"\x1c\x01\x5a" in block) is (kind == "marked")  # no CodedCharacterSet at all unless marked


@pytest.fixture
def embed_writer(make_config: Callable[..., Config]) -> Iterator[XmpWriter]:
    writer = XmpWriter(make_config(metadata__mode="embed"))
    yield writer
    writer.close()


def photo_result(photo: Path, *tags: Tag, caption: str | None = None) -> PhotoResult:
    with Image.open(photo) as im:
        width, height = im.size
    st_ = photo.stat()
    runs = (AnalyzerRun("classify", "classify", MODEL, "fp", Analysis(tags=tags, caption=caption)),)
    return PhotoResult(Photo(photo, st_.st_size, st_.st_mtime_ns, "hash"), width, height, runs)


def test_exiftool_charset_option_holds_for_one_stay_open_command(photos: Path, reader: Exiftool) -> None:
    """What the writer relies on: ``-charset iptc=UTF8`` changes that command's decoding and no later one."""
    photo = photos / "cat.jpg"
    make_sample(photo, "utf8")
    assert reader.read_tags(photo, "IPTC:Keywords") == {"IPTC:Keywords": ["ZÃ¼rich", "CafÃ© au lait"]}
    pid = reader.pid
    got = reader.execute_json("-charset", "iptc=UTF8", "-IPTC:Keywords", str(photo))
    assert got[0]["IPTC:Keywords"] == USER_KEYWORDS
    assert reader.read_tags(photo, "IPTC:Keywords") == {"IPTC:Keywords": ["ZÃ¼rich", "CafÃ© au lait"]}
    assert reader.pid == pid  # the same process: the option was reset by -execute, not by a restart


@pytest.mark.parametrize(("kind", "expected"), [("utf8", "UTF8"), ("latin1", "Latin"), ("marked", None)])
def test_iptc_charset_of_real_files(photos: Path, reader: Exiftool, kind: str, expected: str | None) -> None:
    photo = photos / "cat.jpg"
    make_sample(photo, kind)
    assert iptc_charset(reader, photo) == expected
    assert read_iptc_block(reader, photo) == iptc_bytes(photo)


def test_iptc_charset_without_iptc_and_in_tiff(photos: Path, reader: Exiftool) -> None:
    assert read_iptc_block(reader, photos / "rocket.jpg") is None
    assert iptc_charset(reader, photos / "rocket.jpg") is None
    tiff = photos / "cat.tif"
    with Image.open(photos / "cat.jpg") as im:
        im.save(tiff)
    exiftool_cli("-charset", "iptc=UTF8", "-IPTC:Keywords=Zürich", tiff.as_posix())
    assert iptc_charset(reader, tiff) == "UTF8"


@pytest.mark.parametrize("kind", ["utf8", "latin1", "marked"])
def test_embed_keeps_the_users_iptc_text(
    embed_writer: XmpWriter, photos: Path, reader: Exiftool, kind: str
) -> None:
    photo = photos / "cat.jpg"
    make_sample(photo, kind)
    # phototag's own "Zürich" is the user's keyword already; "Cat" is new
    res = photo_result(photo, Tag("Zürich", 0.9, ("Places", "Zürich")), Tag("Cat", 0.8, ("Animals", "Cat")))
    embed_writer.write(res)

    got = reader.read_tags(photo, "IPTC:all", "XMP-dc:Subject", "XMP-phototag:AddedKeywords")
    assert got["IPTC:CodedCharacterSet"] == "UTF8"
    assert got["IPTC:Keywords"] == [*USER_KEYWORDS, "Cat"]
    assert got["IPTC:Caption-Abstract"] == CAPTION_TEXT  # caption: keep, and it is the user's
    # the photo's first XMP is seeded from its IPTC (MWG rules), so XMP readers see the user's keywords too
    assert got["XMP-dc:Subject"] == [*USER_KEYWORDS, "Cat"]
    assert got["XMP-phototag:AddedKeywords"] == ["Cat"]  # the user's Zürich is not phototag's to remove
    # bytes: proper UTF-8, each once, no double encoding (an independent reader agrees)
    block = iptc_bytes(photo)
    assert block.count("Zürich".encode()) == 2 and "Ã".encode() not in block  # keyword + caption
    assert exiv2_read(photo)["Iptc.Application2.Keywords"] == [*USER_KEYWORDS, "Cat"]

    before = photo.read_bytes()
    embed_writer.write(res)  # a re-run changes nothing
    assert photo.read_bytes() == before

    embed_writer.remove(photo)
    got = reader.read_tags(photo, "IPTC:all", "XMP-dc:Subject")
    assert got["IPTC:Keywords"] == USER_KEYWORDS
    assert got["IPTC:Caption-Abstract"] == CAPTION_TEXT
    assert got["XMP-dc:Subject"] == USER_KEYWORDS  # the seeded copy is the user's: untag keeps it


@pytest.mark.parametrize("kind", ["utf8", "latin1"])
def test_embed_caption_and_keywords_written_next_to_unmarked_iptc(
    make_config: Callable[..., Config], photos: Path, reader: Exiftool, kind: str
) -> None:
    """caption: replace overwrites the user's caption with phototag's, in UTF-8, and untag takes it back
    (the user's caption is not restored: replace means replace); the user's keywords stay readable."""
    photo = photos / "cat.jpg"
    make_sample(photo, kind)
    writer = XmpWriter(make_config(metadata__mode="embed", metadata__caption="replace"))
    try:
        writer.write(photo_result(photo, Tag("Café", 0.9, ("Places", "Café")), caption="Ein Café in Zürich"))
        got = reader.read_tags(photo, "IPTC:all")
        assert got["IPTC:Keywords"] == [*USER_KEYWORDS, "Café"]
        assert got["IPTC:Caption-Abstract"] == "Ein Café in Zürich"
        writer.remove(photo)
        got = reader.read_tags(photo, "IPTC:all")
        assert got["IPTC:Keywords"] == USER_KEYWORDS
        assert "IPTC:Caption-Abstract" not in got
    finally:
        writer.close()
