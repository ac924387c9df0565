"""`phototag scan` end to end: real photos, the bundled offline models, real exiftool, real SQLite.

Runs the real entry point in-process (``cli.main``) so that the models load once for the module.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from phototag.images import pixel_hash
from test_cli import phototag  # noqa: F401  (a fixture)


@pytest.fixture
def scan(phototag):  # type: ignore[no-untyped-def]  # noqa: F811
    """``scan(*args)``: phototag in-process with the state DB in tmp_path (test_cli's ``phototag`` fixture)."""
    return phototag


def exif(path: Path, *tags: str) -> dict:
    out = subprocess.run(
        ["exiftool", "-j", "-G1", "-struct", *tags, str(path)], capture_output=True, check=True
    )
    return json.loads(out.stdout)[0]


def as_list(value) -> list:  # type: ignore[no-untyped-def]
    return value if isinstance(value, list) else [value]


def test_scan_tags_real_photos_offline(photos: Path, scan) -> None:  # type: ignore[no-untyped-def]
    code, out, err = scan("scan", str(photos))
    assert code == 0, err
    # photos outside the current folder are named by their absolute path
    lines = {Path(line.split(": ")[0]).name: line for line in out.splitlines() if f"{photos}/" in line}
    assert "Cat" in lines["cat.jpg"] and "Motorcycle" in lines["motorcycle.jpg"]
    assert "Person" in lines["grace_hopper.jpg"] and "faces: 1" in lines["astronaut.jpg"]
    assert "6 tagged, 0 skipped" in out

    cat = exif(photos / "cat.jpg.xmp")
    assert "Cat" in as_list(cat["XMP-dc:Subject"])
    assert "AI|Animals|Pets|Cat" in as_list(cat["XMP-lr:HierarchicalSubject"])
    assert "AI/Animals/Pets/Cat" in as_list(cat["XMP-digiKam:TagsList"])
    assert any(r["Name"] == "Cat" for r in as_list(cat["XMP-iptcExt:ImageRegion"]))
    faces = exif(photos / "astronaut.jpg.xmp")["XMP-mwg-rs:RegionInfo"]
    assert faces["RegionList"][0]["Type"] == "Face"

    doc = json.loads((photos / "motorcycle.jpg.phototag.json").read_text())
    assert "Motorcycle" in doc["keywords"]
    assert doc["analyzers"]["detect"]["model"]["id"] == "ssd-mobilenet-v2-coco"
    assert doc["analyzers"]["embed"]["embedding"]["dims"] == 1280


def test_second_scan_skips_and_changes_nothing(photos: Path, scan) -> None:  # type: ignore[no-untyped-def]
    assert scan("scan", str(photos))[0] == 0
    outputs = sorted(p for p in photos.iterdir() if p.name.endswith((".xmp", ".json")))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in outputs}
    code, out, _ = scan("scan", str(photos))
    assert code == 0 and "0 tagged, 6 skipped" in out
    assert before == {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in outputs}
    # --force re-analyses everything and still duplicates no keyword
    code, out, _ = scan("scan", "--force", str(photos))
    assert code == 0 and "6 tagged" in out
    subject = as_list(exif(photos / "cat.jpg.xmp")["XMP-dc:Subject"])
    assert len(subject) == len(set(subject))


def test_embed_mode_keeps_user_metadata_and_pixels(photos: Path, scan) -> None:  # type: ignore[no-untyped-def]
    cat = photos / "cat.jpg"
    subprocess.run(
        ["exiftool", "-overwrite_original", "-XMP-dc:Subject=Holiday", "-IPTC:Keywords=Holiday",
         "-XMP-dc:Description=My cat Tom", str(cat)],
        check=True, capture_output=True,
    )  # fmt: skip
    pixels = pixel_hash(cat)
    code, _, err = scan("--set", "metadata.mode=embed", "scan", str(cat))
    assert code == 0, err
    tags = exif(cat)
    assert {"Holiday", "Cat"} <= set(as_list(tags["XMP-dc:Subject"]))
    assert {"Holiday", "Cat"} <= set(as_list(tags["IPTC:Keywords"]))
    assert tags["XMP-dc:Description"] == "My cat Tom"
    assert pixel_hash(cat) == pixels
    assert not (photos / "cat.jpg.xmp").exists()
    assert not list(photos.glob("*_original"))
    # a second run sees our own write as ours: nothing to do
    code, out, _ = scan("--set", "metadata.mode=embed", "scan", str(cat))
    assert "0 tagged, 1 skipped" in out
    # untag removes exactly what phototag wrote
    code, out, _ = scan("--set", "metadata.mode=embed", "untag", str(cat))
    assert code == 0
    tags = exif(cat)
    assert as_list(tags["XMP-dc:Subject"]) == ["Holiday"]
    assert tags["XMP-dc:Description"] == "My cat Tom"
    assert pixel_hash(cat) == pixels


def test_bad_files_fail_clearly_and_the_rest_is_tagged(photos: Path, scan) -> None:  # type: ignore[no-untyped-def]
    data = (photos / "cat.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(data[:5000])
    (photos / "notes.jpg").write_text("shopping list\n")
    (photos / "empty.png").write_bytes(b"")
    code, out, err = scan("scan", str(photos))
    assert code == 1
    assert "6 tagged, 0 skipped (already done), 3 failed" in out
    for name in ("truncated.jpg", "notes.jpg", "empty.png"):
        assert name in err
        assert not (photos / f"{name}.xmp").exists()
    assert (photos / "truncated.jpg").read_bytes() == data[:5000]


def test_json_and_dry_run(photos: Path, scan) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = scan("scan", "--dry-run", "--json", str(photos / "cat.jpg"))
    assert code == 0
    doc = json.loads(out.splitlines()[0])
    assert doc["status"] == "dry-run" and "Cat" in doc["result"]["keywords"]
    assert sorted(p.name for p in photos.iterdir()) == sorted(
        ["cat.jpg", "motorcycle.jpg", "coffee.png", "astronaut.jpg", "rocket.jpg", "grace_hopper.jpg"]
    )


def test_config_errors_exit_2_and_name_the_key(tmp_path: Path, photos: Path, scan) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "config.yaml"
    config.write_text("plugins:\n  classify:\n    treshold: 0.3\n")
    code, _, err = scan("--config", str(config), "scan", str(photos))
    assert code == 2
    assert "plugins.classify.treshold" in err and f"{config}:3" in err
    config.write_text("plugins:\n  clasify: {}\n")
    code, _, err = scan("--config", str(config), "scan", str(photos))
    assert code == 2 and "no plugin named 'clasify'" in err
    code, _, err = scan("scan", str(tmp_path / "nope"))
    assert code == 2 and "no such file" in err


def test_doctor_and_plugins(scan) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = scan("doctor")
    assert code == 0, out
    assert "CPU" in out or "cpu" in out
    assert "exiftool" in out and "version 1" in out
    assert "classify (classify): efficientnet-lite0 -> cpu float32" in out
    # the default analyzers: classify, detect, faces, embed, places, duplicates (the perceptual hash)
    assert out.count("available (loaded in") == 6
    assert "writable" in out
    code, out, _ = scan("plugins")
    assert code == 0
    assert "classify:classify" in out and "writer:xmp" in out and "writer:sidecar" in out
