"""Tag a folder with phototag (sidecar mode), import it into darktable headless, print what darktable stored.

Not part of the test run (pytest collects ``test_*.py`` only): it needs darktable and Xvfb (Debian:
``apt-get install darktable xvfb``), about a minute, and it is a check of what a real app does with
phototag's sidecars, for the README's interop section::

    python tests/apps/darktable_import.py FOLDER            # phototag scan FOLDER, then the darktable import
    python tests/apps/darktable_import.py FOLDER --no-scan  # import what is there
    python -m phototag.samples demo && python tests/apps/darktable_import.py demo --iptc-example

How: ``darktable-cli`` exports and keeps no library, so this runs the real darktable (``darktable --library
DB --configdir CONF --cachedir CACHE FOLDER``) on a private Xvfb display, with a fresh library in a temp folder,
``write_sidecar_files=never`` (darktable would otherwise rewrite the folder's sidecars on import) and no Lua.
darktable imports the folder given on its command line as a film roll and reads each photo's
``photo.jpg.xmp``. The script waits until every photo is in ``library.db`` and the tags stop changing, stops
darktable, and prints per photo the tags (``tagged_images`` joined with ``tags`` in ``data.db``; darktable's
own ``darktable|...`` tags left out) and the title, description and creator (``meta_data``). darktable 4.2
has no face or object regions: nothing of ``mwg-rs:RegionInfo`` or ``Iptc4xmpExt:ImageRegion`` is stored,
which the output says.

``--iptc-example``: first adds ``iptc_only.jpg`` to the folder, a copy of one photo whose user keywords and
caption are in IPTC-IIM only (unmarked UTF-8), to show that they reach the new sidecar and darktable.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

PHOTO_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".dng", ".cr2", ".cr3", ".nef", ".arw"}
# darktable's dt_metadata_t keys in meta_data.key (4.2)
METADATA_KEYS = {0: "creator", 2: "title", 3: "description"}
IPTC_EXAMPLE = {
    "keywords": ["Urlaub", "Strand, Meer", "Zürich"],
    "caption": "Am Strand in Zürich",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--no-scan", action="store_true", help="do not run phototag scan first")
    parser.add_argument("--iptc-example", action="store_true", help="add iptc_only.jpg first (see above)")
    parser.add_argument(
        "--darktable", default="darktable", help="the darktable program (default: %(default)s)"
    )
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the import")
    parser.add_argument("--keep", type=Path, help="keep darktable's library and config in this new folder")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)

    folder = args.folder.resolve()
    for program in (args.darktable, "Xvfb", "exiftool"):
        if shutil.which(program) is None:
            sys.exit(
                f"{program} is not installed (Debian: apt-get install darktable xvfb libimage-exiftool-perl)"
            )
    if args.iptc_example:
        add_iptc_example(folder)
    photos = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PHOTO_EXTS and p.is_file())
    if not photos:
        sys.exit(f"no photos in {folder}")

    with tempfile.TemporaryDirectory(prefix="phototag-darktable-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.no_scan:
            scan(folder, work)
        library = import_into_darktable(folder, work, photos, args.darktable, args.timeout)
        stored = read_library(library, work / "conf" / "data.db")
    if args.json:
        print(json.dumps(stored, ensure_ascii=False, indent=2))
    else:
        print_text(stored)
    return 0


def add_iptc_example(folder: Path) -> None:
    source = next((p for p in sorted(folder.glob("*.jpg")) if p.name != "iptc_only.jpg"), None)
    if source is None:
        sys.exit(f"--iptc-example needs a JPEG in {folder}")
    target = folder / "iptc_only.jpg"
    shutil.copyfile(source, target)
    keywords = [f"-IPTC:Keywords={k}" for k in IPTC_EXAMPLE["keywords"]]
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-charset", "iptc=UTF8", "-XMP:all=", *keywords,
         f"-IPTC:Caption-Abstract={IPTC_EXAMPLE['caption']}", str(target)],
        check=True,
    )  # fmt: skip


def scan(folder: Path, work: Path) -> None:
    """``phototag scan FOLDER`` in sidecar mode with a throwaway state database."""
    command = [
        sys.executable, "-m", "phototag", "scan", str(folder), "--quiet",
        "--set", "metadata.mode=sidecar", "--set", f"state_db={work / 'state.db'}",
    ]  # fmt: skip
    print("$", " ".join(command[2:]), file=sys.stderr)
    subprocess.run(command, check=True, stdout=sys.stderr)  # its per-photo lines are not the output


def import_into_darktable(
    folder: Path, work: Path, photos: list[str], darktable: str, timeout: float
) -> Path:
    conf, cache, library = work / "conf", work / "cache", work / "library.db"
    conf.mkdir(exist_ok=True)
    cache.mkdir(exist_ok=True)
    library.unlink(missing_ok=True)
    (conf / "darktablerc").write_text(
        "write_sidecar_files=never\n"  # leave the folder's sidecars as phototag wrote them
        "run_crawler_on_start=FALSE\n"
        "ui_last/import_apply_metadata=FALSE\n"  # no creator/rights/tags from an earlier import dialog
        "ui_last/import_last_tags=\n"
    )
    command = [
        darktable, "--library", str(library), "--configdir", str(conf), "--cachedir", str(cache),
        "--conf", "write_sidecar_files=never", str(folder),
    ]  # fmt: skip
    with (work / "darktable.log").open("wb") as log:
        xvfb, display = start_xvfb(log)
        try:
            print(f"$ DISPLAY={display}", " ".join(command), file=sys.stderr)
            env = {**os.environ, "DISPLAY": display}
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                wait_for_import(library, len(photos), process, timeout)
            finally:
                stop(process)
        finally:
            stop(xvfb)
    return library


def start_xvfb(log: IO[bytes]) -> tuple[subprocess.Popen[bytes], str]:
    """A private X server on a free display (Xvfb picks it and says which on ``-displayfd``)."""
    read, write = os.pipe()
    try:
        xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
            pass_fds=(write,), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    finally:
        os.close(write)
    with os.fdopen(read, "rb") as pipe:
        number = pipe.readline().strip().decode()
    if not number.isdigit():
        stop(xvfb)
        sys.exit("Xvfb did not start; see darktable.log")
    return xvfb, f":{number}"


def wait_for_import(library: Path, expected: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Until ``expected`` images are in the library and the number of tags has not changed for 3 s."""
    deadline = time.monotonic() + timeout
    last: tuple[int, int] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"darktable exited ({process.returncode}) before the import finished; see darktable.log")
        counts = _counts(library)
        if counts != last:
            last, since = counts, time.monotonic()
        elif counts is not None and counts[0] >= expected and time.monotonic() - since >= 3:
            return
        time.sleep(0.5)
    sys.exit(f"darktable did not import {expected} photos in {timeout:.0f} s (got {last})")


def _counts(library: Path) -> tuple[int, int] | None:
    if not library.exists():
        return None
    try:
        with sqlite3.connect(f"file:{library}?mode=ro", uri=True, timeout=1) as db:
            images = db.execute("SELECT count(*) FROM images").fetchone()[0]
            tags = db.execute("SELECT count(*) FROM tagged_images").fetchone()[0]
    except sqlite3.Error:
        return None  # not created yet, or busy
    return images, tags


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def read_library(library: Path, data: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(f"file:{library}?mode=ro", uri=True)
    try:
        db.execute("ATTACH DATABASE ? AS data", (f"file:{data}?mode=ro",))
        out = []
        for image_id, name in db.execute("SELECT id, filename FROM images ORDER BY filename"):
            tags = [
                row[0]
                for row in db.execute(
                    "SELECT t.name FROM tagged_images ti JOIN data.tags t ON t.id = ti.tagid "
                    "WHERE ti.imgid = ? ORDER BY t.name",
                    (image_id,),
                )
                if not row[0].startswith("darktable|")
            ]
            meta = {
                METADATA_KEYS[key]: value
                for key, value in db.execute("SELECT key, value FROM meta_data WHERE id = ?", (image_id,))
                if key in METADATA_KEYS
            }
            out.append({"photo": name, "tags": tags, **meta, "regions": None})
        return out
    finally:
        db.close()


def print_text(stored: list[dict[str, Any]]) -> None:
    for item in stored:
        print(f"{item['photo']}")
        print(f"  tags: {' ; '.join(item['tags']) or '(none)'}")
        for key in ("title", "description", "creator"):
            if item.get(key):
                print(f"  {key}: {item[key]}")
    print("regions: none stored (darktable 4.2 imports no mwg-rs face or IPTC object regions)")


if __name__ == "__main__":
    sys.exit(main())
