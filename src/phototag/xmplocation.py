"""``XMP-iptcExt:LocationShown``: the place phototag found, as an IPTC location structure; pure.

The ``places`` plugin gives the place as answer fields (``XMP-photoshop:City``, ``State``, ``Country``,
``XMP-iptcCore:CountryCode``), which the XMP writer writes, keeps and takes back like every answer field
(:mod:`phototag.xmpplan`). LocationShown is a list of structures, which answer fields cannot be, so this module
adds it: one ``LocationDetails`` entry (City, ProvinceState, CountryName, CountryCode) made from those fields,
marked as phototag's by ``LocationId = phototag:places`` (as phototag's object regions carry ``RId
phototag:N``). Entries without the mark are the user's and are never changed. A re-run replaces phototag's
entry only when it changed; ``untag`` (nothing wanted) removes it.

The XMP writer calls :func:`shown_args` from its apply step with the file's current metadata, the desired
fields, and a way to read the file's LocationShown (read only when there is a location to write or one was
recorded before: one small exiftool read for those photos, none for the others).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .exiftool import as_list, serialize_struct

TAG = "XMP-iptcExt:LocationShown"
MARK = "phototag:places"
"""The LocationId that marks phototag's LocationShown entry."""
FROM_FIELDS = {
    "City": "XMP-photoshop:City",
    "ProvinceState": "XMP-photoshop:State",
    "CountryName": "XMP-photoshop:Country",
    "CountryCode": "XMP-iptcCore:CountryCode",
}
"""LocationDetails field -> the answer field it is made from."""


def wanted_entry(fields: Mapping[str, str]) -> dict[str, Any] | None:
    """phototag's LocationShown entry for the desired answer fields (None: no country among them)."""
    entry: dict[str, Any] = {k: fields[v] for k, v in FROM_FIELDS.items() if fields.get(v)}
    if "CountryName" not in entry and "CountryCode" not in entry:
        return None
    return {**entry, "LocationId": [MARK]}


def is_ours(entry: Any) -> bool:
    return isinstance(entry, Mapping) and MARK in [str(v) for v in as_list(entry.get("LocationId"))]


def had_location(recorded: list[tuple[str, str]]) -> bool:
    """Whether phototag recorded location fields in this file (``XMP-phototag:Fields``): it may have written
    a LocationShown entry too."""
    tags = {v.lower() for v in FROM_FIELDS.values()}
    return any(tag.lower() in tags for tag, _ in recorded)


def _norm(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): [str(x) for x in as_list(v)] if isinstance(v, list) else str(v) for k, v in entry.items()}


def shown_args(
    fields: Mapping[str, str], recorded: list[tuple[str, str]], read_current: Callable[[], Any]
) -> list[str]:
    """exiftool arguments that make the file's LocationShown hold phototag's entry for ``fields`` (none when
    there is no location) next to the user's entries. ``recorded``: the (tag, value) pairs phototag recorded
    in the file; ``read_current``: reads the file's LocationShown (called only when needed)."""
    want = wanted_entry(fields)
    if want is None and not had_location(recorded):
        return []
    current = [e for e in as_list(read_current()) if isinstance(e, Mapping)]
    ours = [e for e in current if is_ours(e)]
    user = [e for e in current if not is_ours(e)]
    if [_norm(e) for e in ours] == ([_norm(want)] if want else []):
        return []
    if not user:
        return [f"-{TAG}=" + (serialize_struct([want]) if want else "")]
    return [f"-{TAG}-={serialize_struct(e)}" for e in ours] + (
        [f"-{TAG}+={serialize_struct(want)}"] if want else []
    )
