"""All five transformers tasks through `phototag scan` at once: tiny random models of the real architectures,
real photos, real exiftool. Results reach XMP and JSON; one CLIP serves classify and embed; search works."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from phototag.cli import main


@pytest.fixture(scope="module")
def tiny(tiny_model: Callable[[str], Path]) -> dict[str, Path]:
    return {
        "clip": tiny_model("clip"),
        "blip": tiny_model("blip"),
        "vqa": tiny_model("blip_vqa"),
        "owl": tiny_model("owlvit"),
    }


def exif(path: Path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-G1", "-struct", str(path)], capture_output=True, check=True)
    return json.loads(out.stdout)[0]


def as_list(value) -> list:  # type: ignore[no-untyped-def]
    return value if isinstance(value, list) else [value]


def test_every_transformers_task_reaches_xmp_and_json(
    tiny: dict[str, Path], photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("Animals|Pets|Cat = cat, kitten\nVehicles|Motorcycle\nFood|Drinks|Coffee\n")
    config = {
        "state_db": str(tmp_path / "state.db"),
        "device": "cpu",
        "batch_size": 4,
        "plugins": {
            "classify": {
                "model": str(tiny["clip"]),
                "vocabulary": str(vocabulary),
                "threshold": 0.0,
                "top_k": 2,
            },
            "embed": {"model": str(tiny["clip"])},
            "detect": {
                "model": str(tiny["owl"]),
                "queries": ["cat", "cup"],
                "threshold": 0.0,
                "max_boxes": 2,
            },
            "faces": {"enabled": False},
            # the offline plugins this test is not about
            "places": {"enabled": False},
            "duplicates": {"enabled": False},
            "caption": {"enabled": True, "model": str(tiny["blip"]), "max_new_tokens": 6},
            "vqa": {
                "enabled": True,
                "model": str(tiny["vqa"]),
                "max_new_tokens": 3,
                "questions": [{"question": "what is in the photo?", "field": "subject"}],
            },
        },
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))

    assert main(["--config", str(config_path), "scan", str(photos)]) == 0
    out = capsys.readouterr().out
    assert "6 tagged, 0 skipped (already done), 0 failed" in out

    doc = json.loads((photos / "cat.jpg.phototag.json").read_text())
    runs = doc["analyzers"]
    assert set(runs) == {"classify", "embed", "detect", "caption", "vqa"}
    assert runs["classify"]["model"]["id"] == str(tiny["clip"])
    assert len(runs["classify"]["tags"]) == 2
    assert runs["embed"]["embedding"]["dims"] == 16
    assert runs["detect"]["regions"] and all(0 <= r["box"]["x"] <= 1 for r in runs["detect"]["regions"])
    assert isinstance(runs["vqa"]["answers"]["subject"], str)

    xmp = exif(photos / "cat.jpg.xmp")
    assert xmp["XMP-dc:Description"] == doc["caption"] and doc["caption"]
    hierarchy = set(as_list(xmp["XMP-lr:HierarchicalSubject"]))
    for tag in runs["classify"]["tags"]:
        assert "AI|" + "|".join(tag["path"]) in hierarchy
        assert tag["name"] in as_list(xmp["XMP-dc:Subject"])
    regions = as_list(xmp["XMP-iptcExt:ImageRegion"])
    assert {r["Name"] for r in regions} <= {"cat", "cup", "Cat", "Cup"}

    # a rescan is stat-only; search and similar rank the stored CLIP embeddings
    assert main(["--config", str(config_path), "scan", str(photos)]) == 0
    assert "0 tagged, 6 skipped" in capsys.readouterr().out
    assert main(["--config", str(config_path), "search", "a cat", "--json", "-n", "6"]) == 0
    ranked = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(ranked) == 6
    assert main(["--config", str(config_path), "similar", str(photos / "cat.jpg"), "--json", "-n", "3"]) == 0
    similar = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert Path(similar[0]["path"]).name == "cat.jpg"
