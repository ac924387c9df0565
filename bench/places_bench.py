"""Geocoding speed: microseconds per photo for the ``places`` plugin, against reverse-geocode's own lookup.

    python bench/places_bench.py [--positions 20000] [--out bench/out/places.json]

Rows (one run, same random positions on land and sea, seeded):

* load: building phototag's gazetteer (GeoNames cities1000, KD-tree on the unit sphere) vs reverse-geocode's
  first call (its KD-tree on raw degrees);
* lookup: :func:`phototag.places.locate` (64 neighbours, town radii, the country rule) per position vs
  ``reverse_geocode.get`` per position (one nearest point in degrees), and the batched ``search``;
* read GPS: :func:`phototag.plugins.places.read_gps` on a real JPEG with EXIF GPS (Pillow reads the header);
* agreement: how often both name the same place for positions within 50 km of one (they differ where degrees
  distort distance, and where phototag prefers a big city's centre over a nearer suburb's point).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from phototag import places as geo
from phototag.plugins.places import read_gps
from phototag.samples import write_samples

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "places.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--positions", type=int, default=20000)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    rng = random.Random(12)
    positions = [(rng.uniform(-60, 70), rng.uniform(-180, 180)) for _ in range(args.positions)]

    t = time.perf_counter()
    gazetteer = geo.Gazetteer.load()
    load_ours = time.perf_counter() - t
    import reverse_geocode

    t = time.perf_counter()
    reverse_geocode.get(positions[0])
    load_theirs = time.perf_counter() - t

    t = time.perf_counter()
    ours = [geo.locate(gazetteer, lat, lon, 50, 150) for lat, lon in positions]
    lookup_ours = (time.perf_counter() - t) / len(positions)
    t = time.perf_counter()
    theirs = [reverse_geocode.get(p) for p in positions]
    lookup_theirs = (time.perf_counter() - t) / len(positions)
    t = time.perf_counter()
    reverse_geocode.search(positions)
    batch_theirs = (time.perf_counter() - t) / len(positions)

    with tempfile.TemporaryDirectory() as tmp:
        write_samples(Path(tmp))
        photo = Path(tmp) / "cat.jpg"
        gps = ["-GPSLatitude=48.8584", "-GPSLatitudeRef=N", "-GPSLongitude=2.2945", "-GPSLongitudeRef=E"]
        subprocess.run([shutil.which("exiftool") or "exiftool", "-q", "-overwrite_original", *gps, str(photo)],
                       check=True)  # fmt: skip
        t = time.perf_counter()
        for _ in range(500):
            read_gps(photo)
        read_s = (time.perf_counter() - t) / 500

    near = [(o, r) for o, r in zip(ours, theirs, strict=True) if o is not None and o.city]
    same = sum(o.city == r["city"] and o.country_code == r["country_code"] for o, r in near)
    said = {
        "city": sum(1 for o in ours if o is not None and o.city),
        "country only": sum(1 for o in ours if o is not None and not o.city),
        "nothing": sum(1 for o in ours if o is None),
    }
    rows = {
        "load_s": [round(load_ours, 3), round(load_theirs, 3)],
        "lookup_us": [round(lookup_ours * 1e6, 1), round(lookup_theirs * 1e6, 1)],
        "batched_lookup_us (reverse-geocode search)": round(batch_theirs * 1e6, 1),
        "read_gps_us": round(read_s * 1e6, 1),
        "positions": len(positions),
        "said": said,
        "same_place_within_50_km": [same, len(near)],
    }
    print(f"{len(positions)} random positions between 60°S and 70°N\n")
    print(f"{'':34}{'phototag':>12}{'reverse-geocode':>17}")
    print(f"{'load (s)':34}{load_ours:>12.2f}{load_theirs:>17.2f}")
    print(f"{'lookup per position (µs)':34}{lookup_ours * 1e6:>12.1f}{lookup_theirs * 1e6:>17.1f}"
          f"   (batched search: {batch_theirs * 1e6:.1f})")  # fmt: skip
    print(f"{'read GPS from a JPEG (µs)':34}{read_s * 1e6:>12.1f}")
    print(f"{'per photo, read + lookup (µs)':34}{(read_s + lookup_ours) * 1e6:>12.1f}")
    print(f"\nsaid: {said}; same place as reverse-geocode for {same} of {len(near)} positions near a place")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
