"""An independent metadata reader for the tests: libexiv2 (python-exiv2), which shares no code with exiftool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import exiv2

from phototag.exiftool import NAMESPACE_URI

exiv2.XmpParser.initialize()
exiv2.XmpProperties.registerNs(NAMESPACE_URI, "phototag")


def exiv2_read(path: Path) -> dict[str, Any]:
    """XMP, IPTC and EXIF as exiv2 reads them: lang-alt -> x-default text, arrays -> lists."""
    image = exiv2.ImageFactory.open(str(path))
    image.readMetadata()
    out: dict[str, Any] = {}
    for datum in image.xmpData():
        value = datum.getValue()
        if datum.typeName() == "LangAlt":
            out[datum.key()] = dict(value)["x-default"]
        elif datum.typeName() in ("XmpBag", "XmpSeq", "XmpAlt"):
            out[datum.key()] = [value.toString(i) for i in range(value.count())]
        else:
            out[datum.key()] = datum.toString()
    for datum in image.iptcData():
        out.setdefault(datum.key(), []).append(datum.toString())
    for datum in image.exifData():
        out[datum.key()] = datum.toString()
    return out
