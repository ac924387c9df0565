"""Which character set a photo's IPTC-IIM text is really in, when the photo does not say.

IPTC-IIM names its character set in dataset 1:90 (``IPTC:CodedCharacterSet``; ``ESC % G`` is UTF-8). Many
programs write UTF-8 without it; older ones write Latin-1 / cp1252 without it. exiftool decodes unmarked IPTC
as ``-charset iptc`` says, Latin (cp1252) by default, so unmarked UTF-8 reads as mojibake (``ZÃ¼rich``), and a
copy that then sets CodedCharacterSet=UTF8 makes the mojibake permanent.

This module looks at the raw bytes of the IPTC block (``exiftool -b -IPTC``, base64 in JSON) and decides,
mirroring what exiftool 12.57 decodes (``Image::ExifTool::IPTC::ProcessIPTC``):

* exiftool translates only the *string* datasets of records 2..6 (records 4..6 it does not know, so in effect
  record 2 and 3:10), and only values with a byte >= 0x80: those are the bytes examined (:data:`TEXT_DATASETS`);
* a CodedCharacterSet beginning ``ESC %`` (UTF-8, or one exiftool cannot translate) wins over ``-charset``:
  then there is nothing to decide (None). Any other 1:90 value is ignored by exiftool, so it is ignored here;
* "UTF8" when every examined value is valid UTF-8 and one is not ASCII; "Latin" when one is not valid UTF-8;
  None when all are ASCII (every charset reads them the same) or there is no IPTC text.

Caveat: Latin-1 text that happens to be valid UTF-8 (``Ã©`` written as Latin-1 is the UTF-8 of ``é``) is
taken for UTF-8. Real words almost never look like that; the opposite mistake (UTF-8 as Latin) is what this
module exists to avoid.

Reading with the answer: pass ``-charset iptc=<answer>`` on the exiftool command. exiftool resets options at
every ``-execute``, so in phototag's ``-stay_open`` client the option holds for exactly that one command
(checked with exiftool 12.57: the next command reads with the default again, in the same process). It applies
to reading the values and to ``-tagsFromFile @ -IPTC:all`` copies (the source is decoded with it; the copy is
encoded as the destination's CodedCharacterSet says, so adding ``-IPTC:CodedCharacterSet=UTF8`` re-encodes it).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .errors import MetadataError
from .exiftool import Exiftool

UTF8 = "UTF8"
LATIN = "Latin"
"""The ``-charset iptc=`` values this module answers with (exiftool's names; Latin is cp1252)."""

MARKER = 0x1C
CODED_CHARACTER_SET = (1, 90)

# The datasets exiftool 12.57 reads as strings (and so decodes with the IPTC charset): record 2 except the
# binary / digits ones, and 3:10 (generated from Image::ExifTool::IPTC 1.58's tables)
_RECORD_2_TEXT = (
    3, 4, 5, 7, 12, 15, 20, 22, 25, 26, 27, 35, 38, 40, 45, 60, 63, 65, 70, 75, 80, 85, 90, 92, 95, 100, 101,
    103, 105, 110, 115, 116, 118, 120, 121, 122, 130, 131, 135, 150, 154, 184, 185, 186, 187, 188, 221, 225,
    228, 230, 231, 232, 255,
)  # fmt: skip
TEXT_DATASETS: frozenset[tuple[int, int]] = frozenset({*((2, d) for d in _RECORD_2_TEXT), (3, 10)})


class Dataset(NamedTuple):
    """One IIM dataset: record number, dataset number, value bytes."""

    record: int
    dataset: int
    value: bytes


def iim_datasets(block: bytes) -> Iterator[Dataset]:
    """The datasets of an IPTC-IIM block, in order. Never raises: parsing stops, as exiftool's does, at the
    first byte that is not a tag marker (0x1C; trailing NUL padding included), at an extended length field
    longer than 8 bytes or past the end, and at a value that runs past the end."""
    pos, end = 0, len(block)
    while pos + 5 <= end:
        marker, record, dataset, length = block[pos], block[pos + 1], block[pos + 2], block[pos + 3 : pos + 5]
        if marker != MARKER:
            return
        pos += 5
        size = int.from_bytes(length, "big")
        if size & 0x8000:  # extended dataset: the low 15 bits say how many bytes hold the length
            n = size & 0x7FFF
            if n > 8 or pos + n > end:
                return
            size = int.from_bytes(block[pos : pos + n], "big")
            pos += n
        if pos + size > end:
            return
        yield Dataset(record, dataset, block[pos : pos + size])
        pos += size


def guess_iptc_charset(block: bytes) -> str | None:
    """The ``-charset iptc`` value that makes exiftool decode ``block``'s text correctly: ``"UTF8"``,
    ``"Latin"``, or None when it does not matter (see the module docstring). Pure; never raises."""
    non_ascii = False
    for record, dataset, value in iim_datasets(block):
        if (record, dataset) == CODED_CHARACTER_SET:
            if value.rstrip(b"\0").startswith(b"\x1b%"):
                return None  # exiftool follows CodedCharacterSet and ignores -charset
            continue
        if (record, dataset) not in TEXT_DATASETS:
            continue
        value = value.rstrip(b"\0")  # exiftool strips NUL terminators before decoding
        if value.isascii():
            continue
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return LATIN
        non_ascii = True
    return UTF8 if non_ascii else None


def read_iptc_block(exiftool: Exiftool, path: Path) -> bytes | None:
    """The raw IPTC-IIM block of ``path`` (``exiftool -b -IPTC``), or None when it has none.

    Not through :meth:`Exiftool.execute_json`: its read filter would prefix the binary value with its marker
    byte. Raises MetadataError when exiftool cannot read the file."""
    result = exiftool.execute("-j", "-b", "-G1", "-IPTC", str(Path(path).absolute()), file=path, check=False)
    try:
        items = json.loads(result.stdout) if result.stdout.strip() else None
    except json.JSONDecodeError as e:
        raise MetadataError(path, f"exiftool printed invalid JSON ({e}): {result.stdout[:200]}") from e
    if not items or not isinstance(items, list) or not isinstance(items[0], Mapping):
        raise MetadataError(path, f"exiftool cannot read this file: {result.stderr.strip() or 'no output'}")
    value = items[0].get("IPTC:IPTC")
    if not isinstance(value, str):
        return None
    if value.startswith("base64:"):
        try:
            return base64.b64decode(value[len("base64:") :], validate=True)
        except binascii.Error as e:
            raise MetadataError(path, f"exiftool printed an invalid IPTC block: {e}") from e
    return value.encode("utf-8")  # exiftool prints valid UTF-8 without control characters as it is


def iptc_charset(exiftool: Exiftool, path: Path) -> str | None:
    """The ``-charset iptc`` value exiftool needs to read ``path``'s IPTC text correctly; None when the file
    has no non-ASCII IPTC text or a CodedCharacterSet exiftool follows (see the module docstring)."""
    block = read_iptc_block(exiftool, path)
    return guess_iptc_charset(block) if block else None


def may_be_misread(tags: Mapping[str, Any]) -> bool:
    """Whether IPTC values read with exiftool's default charset (``-G1`` keys, as :meth:`Exiftool.read_tags`
    gives them) may be wrong: the record does not say UTF8 and some IPTC text is not ASCII.

    Cheap pre-check before :func:`iptc_charset` (one more exiftool command): a UTF-8 multi-byte sequence always
    starts with a byte >= 0xC2, which every Latin decoding shows as a non-ASCII character, so ASCII-only values
    cannot hide UTF-8."""
    if tags.get("IPTC:CodedCharacterSet") == "UTF8":
        return False
    return any(k.startswith("IPTC:") and not _ascii(v) for k, v in tags.items())


def _ascii(value: Any) -> bool:
    if isinstance(value, str):
        return value.isascii()
    if isinstance(value, list):
        return all(_ascii(v) for v in value)
    return True
