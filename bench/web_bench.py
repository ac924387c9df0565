"""Page weight and time to first render of the web page (``phototag serve``, ``/ui``) on a library of 10,000 photos.

    python bench/web_bench.py                 # 10,000 photos; Chromium for navigation timing when installed
    python bench/web_bench.py --photos 2000   # quicker

What it builds (in a temp folder, removed after unless ``--keep``): N real JPEG files (480x360 crops of the
scikit-image and matplotlib sample photos, each tinted differently, so every file has its own bytes and
thumbnail), and a state DB recording each as scanned, with three keywords from a 40-word vocabulary each (the
``runs`` rows ``scan`` writes), plus 3,000 faces in 200 people clusters (``faces``/``people`` rows). Then a
real server on a loopback port (:func:`phototag.serve.testing.serving`).

What it measures, per page (People, Search for a keyword, Review, Status, a photo page):

* **server**: time to first byte and to the last byte of the HTML (median of 7 warm requests, plus the first,
  cold one), with ``GET /healthz`` measured in the same run as the baseline (the server's floor: routing,
  guard, HTTP) and the ratio to it;
* **page weight**: bytes of HTML + CSS + JS + every thumbnail the page shows;
* **thumbnails**: making them (cold: decode with JPEG draft mode, scale, encode, store) against serving them
  from the cache, same run;
* **browser** (Chromium, when installed): the Navigation Timing of a real load: ``responseStart`` (first byte),
  ``first-contentful-paint``, ``domContentLoaded`` and ``load`` (all images in), cold and warm thumbnails.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageEnhance

from phototag.config import load_config
from phototag.manager import get_plugin_manager
from phototag.samples import _matplotlib_sample, _skimage_dir
from phototag.serialize import run_to_dict
from phototag.serve.testing import serving
from phototag.state import StateDB
from phototag.types import Analysis, AnalyzerRun, ModelInfo, Tag

VOCABULARY = [
    "Cat", "Dog", "Beach", "Mountain", "Car", "Bicycle", "Coffee", "Espresso", "Rocket", "Motorcycle", "Coins",
    "Book", "Text", "Sky", "Tree", "Flower", "Horse", "Bird", "Boat", "Bridge", "Building", "Street", "Snow",
    "Lake", "Forest", "Food", "Pizza", "Cake", "Child", "Portrait", "Uniform", "Flag", "Clock", "Computer",
    "Phone", "Table", "Chair", "Window", "Door", "Night",
]  # fmt: skip
SOURCES = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "coins.png",
           "camera.png", "page.png"]  # fmt: skip
FP = "bench-classify-1"
PAGES = {
    "people": "/ui/people",
    "search": "/ui/search?q=Coffee",
    "review": "/ui/review",
    "status": "/ui/status",
}


def make_photos(folder: Path, n: int, seed: int = 7) -> list[Path]:
    rng = random.Random(seed)
    bases = []
    for name in SOURCES:
        with Image.open(_skimage_dir() / name) as im:
            bases.append(im.convert("RGB").resize((640, 480)))
    with Image.open(_matplotlib_sample("grace_hopper.jpg")) as im:
        bases.append(im.convert("RGB").resize((640, 480)))
    paths = []
    for i in range(n):
        base = bases[i % len(bases)]
        x, y = rng.randrange(0, 160), rng.randrange(0, 120)
        image = base.crop((x, y, x + 480, y + 360))
        image = ImageEnhance.Color(image).enhance(0.6 + rng.random() * 0.8)
        path = folder / f"d{i // 500:03d}" / f"img_{i:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        image.save(path, quality=85)
        paths.append(path)
    return paths


def build_state(state_db: Path, photos: list[Path], seed: int = 7) -> None:
    from phototag.files import hash_file
    from phototag.people.store import PeopleStore

    rng = random.Random(seed)
    rows, runs = [], []
    now = time.time()
    hashes = []
    for i, path in enumerate(photos):
        st = path.stat()
        h = hash_file(path)
        hashes.append(h)
        rows.append((str(path), st.st_size, st.st_mtime_ns, h, "done", None, json.dumps({"classify": FP}),
                     now - (len(photos) - i), "[]"))  # fmt: skip
        tags = tuple(
            Tag(word, round(0.3 + rng.random() * 0.7, 4), ("Things", word))
            for word in rng.sample(VOCABULARY, 3)
        )
        run = AnalyzerRun(
            "classify", "classify", ModelInfo("efficientnet-lite0", "bench"), FP, Analysis(tags=tags)
        )
        runs.append((h, "classify", FP, json.dumps(run_to_dict(run)), now))
    with StateDB(state_db) as db, db._tx() as tx:
        tx.executemany(
            "INSERT OR REPLACE INTO files (path, size, mtime_ns, content_hash, status, error, fingerprints, updated,"
            " outputs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        tx.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?)", runs)
    with PeopleStore(state_db) as people:
        ids = [people.new_person(None if k % 3 else f"Person {k}") for k in range(200)]
        with people._tx() as tx:
            faces = []
            for k in range(3000):
                h = hashes[(k * 7) % len(hashes)]
                faces.append((h, "bench-faces", k, 0.3, 0.2, 0.25, 0.33, "[]", 0.9, None, "", ids[k % 200], 0.3,
                              "detected", None))  # fmt: skip
            tx.executemany(
                "INSERT OR REPLACE INTO faces (content_hash, model, idx, x, y, w, h, landmarks, quality, descriptor,"
                " descriptor_model, person, distance, source, user_name) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                faces,
            )


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.assets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img" and a.get("src"):
            self.images.append(str(a["src"]))
        elif tag == "link" and a.get("rel") == "stylesheet" and a.get("href"):
            self.assets.append(str(a["href"]))
        elif tag == "script" and a.get("src"):
            self.assets.append(str(a["src"]))


def timed_get(client: httpx.Client, path: str) -> tuple[float, float, bytes]:
    """(seconds to first byte, seconds to the last byte, body)."""
    start = time.perf_counter()
    with client.stream("GET", path) as response:
        first = time.perf_counter() - start
        body = response.read()
        response.raise_for_status()
    return first, time.perf_counter() - start, body


def server_figures(base: str, pages: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # a new connection per request, as a browser's parallel fetches are: httpx's keep-alive requests meet a
    # 40 ms delayed-ACK stall on loopback that browsers (TCP_NODELAY) do not see
    with httpx.Client(base_url=base, timeout=120, headers={"Connection": "close"}) as client:
        health = [timed_get(client, "/healthz")[0] for _ in range(15)]
        out["healthz_ttfb"] = statistics.median(health)
        for name, path in pages.items():
            cold = timed_get(client, path)
            warm = [timed_get(client, path) for _ in range(7)]
            html = cold[2]
            parser = _Assets()
            parser.feed(html.decode())
            assets = sum(len(client.get(a).content) for a in dict.fromkeys(parser.assets))
            t0 = time.perf_counter()
            thumbs_cold = [client.get(src).content for src in parser.images]
            made = time.perf_counter() - t0
            t0 = time.perf_counter()
            thumbs_warm = [client.get(src).content for src in parser.images]
            cached = time.perf_counter() - t0
            assert [len(t) for t in thumbs_cold] == [len(t) for t in thumbs_warm]
            out[name] = {
                "ttfb_cold": cold[0], "html_cold": cold[1],
                "ttfb": statistics.median(w[0] for w in warm), "html": statistics.median(w[1] for w in warm),
                "html_bytes": len(html), "asset_bytes": assets, "images": len(parser.images),
                "image_bytes": sum(len(t) for t in thumbs_cold), "thumbs_made_s": made, "thumbs_cached_s": cached,
            }  # fmt: skip
    return out


def browser_figures(base: str, pages: dict[str, str], profile: Path) -> dict[str, Any] | None:
    chromium, driver_path = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    if not (chromium.is_file() and driver_path.is_file()):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    script = """
        const n = performance.getEntriesByType('navigation')[0];
        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
        return {ttfb: n.responseStart, fcp: fcp ? fcp.startTime : null, dcl: n.domContentLoadedEventEnd,
                load: n.loadEventEnd, transfer: performance.getEntriesByType('resource')
                  .reduce((s, r) => s + r.encodedBodySize, n.encodedBodySize)};
    """
    out: dict[str, Any] = {}
    try:
        for name, path in pages.items():
            runs = []
            for _ in range(3):
                driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
                driver.get(base + path)
                time.sleep(0.05)
                runs.append(driver.execute_script(script))
            out[name] = runs
    finally:
        driver.quit()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="phototag-web-bench-"))
    try:
        t0 = time.perf_counter()
        (root / "photos").mkdir()
        photos = make_photos(root / "photos", args.photos)
        t1 = time.perf_counter()
        state_db = root / "state" / "state.db"
        state_db.parent.mkdir()
        build_state(state_db, photos)
        t2 = time.perf_counter()
        print(f"library: {len(photos)} photos written in {t1 - t0:.1f} s; state DB built in {t2 - t1:.1f} s "
              f"({state_db.stat().st_size / 1e6:.1f} MB)")  # fmt: skip
        config = load_config(None, overrides={"state_db": str(state_db)}, environ={})
        pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "classify,xmp"})
        with StateDB(state_db, readonly=True) as db:
            newest = db._query("SELECT content_hash FROM files ORDER BY updated DESC LIMIT 1")[0][0]
        pages = {**PAGES, "photo": f"/ui/photo/{newest}"}
        with serving(config, pm=pm) as served:
            served.app.state.pm = pm
            browser_cold = browser_figures(served.url, pages, root / "chromium-cold")
            shutil.rmtree(state_db.parent / "thumbnails", ignore_errors=True)
            server = server_figures(served.url, pages)
            browser_warm = browser_figures(served.url, pages, root / "chromium-warm")
        floor = server["healthz_ttfb"]
        print(f"\nserver (httpx, same machine), {len(photos)} photos; baseline GET /healthz first byte "
              f"{floor * 1000:.1f} ms")  # fmt: skip
        print(f"{'page':8} {'TTFB cold':>10} {'TTFB warm':>10} {'x healthz':>9} {'HTML':>8} {'CSS+JS':>7} "
              f"{'thumbs':>7} {'thumb KB':>9} {'weight KB':>9} {'make thumbs':>11} {'cached':>8}")  # fmt: skip
        for name in pages:
            f = server[name]
            weight = f["html_bytes"] + f["asset_bytes"] + f["image_bytes"]
            print(f"{name:8} {f['ttfb_cold'] * 1000:8.1f}ms {f['ttfb'] * 1000:8.1f}ms {f['ttfb'] / floor:9.1f} "
                  f"{f['html_bytes'] / 1024:6.1f}KB {f['asset_bytes'] / 1024:5.1f}KB {f['images']:7d} "
                  f"{f['image_bytes'] / 1024:9.1f} {weight / 1024:9.1f} {f['thumbs_made_s'] * 1000:9.0f}ms "
                  f"{f['thumbs_cached_s'] * 1000:6.0f}ms")  # fmt: skip
        for label, figures in (("cold thumbnails", browser_cold), ("cached thumbnails", browser_warm)):
            if figures is None:
                print("\nbrowser: no Chromium (apt-get install chromium chromium-driver)")
                break
            print(f"\nbrowser (headless Chromium, {label}; median of 3 loads, browser cache off)")
            print(
                f"{'page':8} {'first byte':>10} {'first paint':>11} {'DOM ready':>10} {'load':>9} {'transfer KB':>11}"
            )
            for name, runs in figures.items():

                def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
                    return statistics.median(float(r[key] or 0) for r in runs)

                print(f"{name:8} {med('ttfb'):8.1f}ms {med('fcp'):9.1f}ms {med('dcl'):8.1f}ms {med('load'):7.1f}ms "
                      f"{med('transfer') / 1024:11.1f}")  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")


if __name__ == "__main__":
    main()
