"""``phototag duplicates``: real photos and real variants of them (a byte copy, resized, recompressed, format
converted, slightly cropped), scanned by the real pipeline with the bundled embed model and the perceptual hash;
photos that look alike but are different (two far-apart crops of camera.png, a colour-shifted cat beside the
astronaut) must not group. The ``Duplicate`` keyword goes through XMP (real exiftool) and ``untag``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imagehash
import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image, ImageEnhance

from phototag.cli import CliState, cli
from phototag.duplicates import Copy, Thresholds, find_groups, hamming, phash
from phototag.manager import get_plugin_manager
from phototag.samples import _skimage_dir

PLUGINS = "embed,duplicates,sidecar,xmp"
ASTRONAUT = {
    "astronaut.jpg",
    "astronaut-copy.jpg",
    "astronaut-small.jpg",
    "astronaut-q40.jpg",
    "astronaut-converted.png",
    "astronaut-crop.jpg",
}


def make_photos(folder: Path) -> Path:
    folder.mkdir(parents=True)
    data = _skimage_dir()
    ast = Image.open(data / "astronaut.png").convert("RGB")
    ast.save(folder / "astronaut.jpg", quality=95)
    shutil.copy(folder / "astronaut.jpg", folder / "astronaut-copy.jpg")
    ast.resize((256, 256), Image.Resampling.LANCZOS).save(folder / "astronaut-small.jpg", quality=85)
    ast.save(folder / "astronaut-q40.jpg", quality=40)
    ast.save(folder / "astronaut-converted.png")
    w, h = ast.size
    c = int(w * 0.03)
    ast.crop((c, c, w - c, h - c)).save(folder / "astronaut-crop.jpg", quality=92)
    cam = Image.open(data / "camera.png").convert("RGB")
    w, h = cam.size
    cam.crop((0, 0, w * 6 // 10, h * 6 // 10)).save(folder / "camera-top-left.png")
    cam.crop((w * 4 // 10, h * 4 // 10, w, h)).save(folder / "camera-bottom-right.png")
    cat = Image.open(data / "chelsea.png").convert("RGB")
    ImageEnhance.Color(cat).enhance(1.6).resize((512, 512)).save(folder / "cat-shifted.jpg", quality=92)
    Image.open(data / "coffee.png").convert("RGB").save(folder / "coffee.jpg")
    return folder


def run(tmp: Path, *args: str, keyword: bool = False) -> Result:
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": PLUGINS})
    pm.hook.register_commands(cli=cli)
    sets = ["--set", f"state_db={tmp / 'state.db'}", "--set", f"plugins.duplicates.keyword={keyword}"]
    result = CliRunner().invoke(cli, [*sets, *args], obj=CliState(None, (), pm, []))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The photos, scanned once (embed + perceptual hash, JSON and XMP sidecars)."""
    tmp = tmp_path_factory.mktemp("dupes")
    make_photos(tmp / "photos")
    run(tmp, "scan", str(tmp / "photos"))
    return tmp


def groups(tmp: Path, *paths: str) -> list[dict]:
    out = run(tmp, "duplicates", "--json", *paths).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def names(group: dict) -> set[str]:
    return {Path(m["path"]).name for m in [group["best"], *group["others"]]}


# -- pure ---------------------------------------------------------------------------------------------------


def test_phash_is_imagehash_bit_for_bit() -> None:
    for name in ("astronaut.png", "camera.png", "coffee.png", "rocket.jpg", "text.png"):
        image = Image.open(_skimage_dir() / name)
        assert phash(image) == int(str(imagehash.phash(image)), 16), name


def test_grouping_without_embeddings_uses_a_stricter_hash_distance() -> None:
    base = 0x0F0F_0F0F_0F0F_0F0F
    copies = [
        Copy(Path("a.jpg"), "h1", 100, 100, 100, base),
        Copy(Path("b.jpg"), "h2", 300, 100, 100, base ^ 0b111),  # 3 bits apart
        Copy(Path("c.jpg"), "h3", 100, 100, 100, base ^ 0xFFF),  # 12 bits apart
        Copy(Path("a-copy.jpg"), "h1", 100, 100, 100, base),
    ]
    [group] = find_groups(copies, Thresholds(max_distance=6))
    assert {c.path.name for c in group.members} == {"a.jpg", "b.jpg", "a-copy.jpg"}
    assert group.best.path.name == "b.jpg"  # same pixels, bigger file
    assert group.reasons["a-copy.jpg"] == "same bytes" and group.reasons["b.jpg"] == "best copy"
    # with embeddings that disagree, a close hash is not enough
    far = [
        Copy(Path("x.jpg"), "h1", 1, 10, 10, base, embedding=np.array([1.0, 0.0])),
        Copy(Path("y.jpg"), "h2", 1, 10, 10, base, embedding=np.array([0.0, 1.0])),
    ]
    assert find_groups(far, Thresholds(max_distance=6)) == []
    assert hamming(base, base ^ 0xFFF) == 12


def test_user_metadata_decides_between_equal_copies() -> None:
    copies = [Copy(Path("a.jpg"), "h1", 100, 10, 10, 1), Copy(Path("b.jpg"), "h1", 100, 10, 10, 1)]
    [group] = find_groups(copies, has_user_metadata=lambda p: p.name == "b.jpg")
    assert group.best.path.name == "b.jpg"


# -- through the pipeline and the CLI -----------------------------------------------------------------------


def test_variants_group_and_look_alikes_do_not(scanned: Path) -> None:
    found = groups(scanned)
    assert len(found) == 1, found
    [group] = found
    assert names(group) == ASTRONAUT  # copy, resized, recompressed, converted, cropped
    # the best copy: full resolution, then the biggest file (the lossless PNG)
    assert Path(group["best"]["path"]).name == "astronaut-converted.png"
    by_name = {Path(m["path"]).name: m for m in group["others"]}
    assert by_name["astronaut-small.jpg"]["width"] == 256 and by_name["astronaut.jpg"]["width"] == 512
    assert "embedding similarity" in by_name["astronaut-crop.jpg"]["reason"]
    for member in [group["best"], *group["others"]]:
        assert set(member) == {"path", "content_hash", "size", "width", "height", "sharpness", "reason"}


def test_paths_limit_the_search_and_text_output(scanned: Path) -> None:
    sub = scanned / "photos"
    assert groups(scanned, str(sub / "camera-top-left.png")) == []
    out = run(scanned, "duplicates", str(sub)).output
    assert "near duplicates:" in out and "keep  " in out and "astronaut-converted.png" in out
    assert "1 group(s), 5 copy(ies)" in out


def test_duplicate_keyword_on_all_but_the_best_and_untag_removes_it(scanned: Path, reader) -> None:  # type: ignore[no-untyped-def]
    photos = scanned / "photos"
    run(scanned, "scan", str(photos), keyword=True)

    def subjects(name: str) -> list[str]:
        side = photos / f"{name}.xmp"
        if not side.exists():
            return []
        value = reader.read_tags(side, "XMP-dc:Subject").get("XMP-dc:Subject", [])
        return value if isinstance(value, list) else [value]

    for name in ASTRONAUT - {"astronaut-converted.png"}:
        assert "Duplicate" in subjects(name), name
    for name in ("astronaut-converted.png", "camera-top-left.png", "cat-shifted.jpg", "coffee.jpg"):
        assert "Duplicate" not in subjects(name), name
    run(scanned, "untag", str(photos))
    assert all("Duplicate" not in subjects(name) for name in ASTRONAUT)
    assert sorted(p.name for p in photos.iterdir() if p.suffix in (".jpg", ".png")) == sorted(
        ASTRONAUT | {"camera-top-left.png", "camera-bottom-right.png", "cat-shifted.jpg", "coffee.jpg"}
    )  # nothing deleted
