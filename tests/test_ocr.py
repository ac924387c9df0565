"""Text in photos: PP-OCRv6 small (rapidocr 3.10, its packaged model files) on real images of text, the
sidecar and XMP it gives, and ``phototag search --text`` over a real state DB.

Real images: scikit-image's page.png (a scanned book page) and a receipt rendered with Pillow in matplotlib's
DejaVu Sans, saved as a JPEG (also upside down). The engine runs on links to the packaged model files in a
folder of the test's own, which is also where rapidocr would save anything it downloaded: it stays as it was.
The detector works at a 480 px shorter side here (736 in use): the same words, in less time.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
import skimage.data
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFont

from phototag.cli import CliState, cli
from phototag.config import Config
from phototag.errors import ModelUnavailableError
from phototag.manager import get_plugin_manager
from phototag.ocr import MODEL_FILES, OcrEngine, TextLine, packaged_model_dir, rapidocr_log_level
from phototag.plugins import text as plugin
from phototag.testing import run_plugin

SKIMAGE = Path(os.path.dirname(skimage.data.__file__))
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
RECEIPT = ["CORNER BAKERY", "INVOICE No 4711", "Croissant 2.20", "Espresso 1.80", "TOTAL EUR 4.00"]


def render_receipt(path: Path) -> Path:
    """A receipt: dark text on an off-white slip, on a grey table, saved as a JPEG."""
    font = ImageFont.truetype(str(FONT), 34)
    image = Image.new("RGB", (900, 640), (120, 118, 112))
    draw = ImageDraw.Draw(image)
    draw.rectangle((150, 40, 750, 600), fill=(246, 243, 236))
    for i, line in enumerate(RECEIPT):
        draw.text((190, 80 + i * 100), line, font=font, fill=(25, 25, 30))
    image.save(path, quality=90)
    return path


DET_SIDE = 480


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Links to rapidocr's packaged model files, in a folder only these tests use."""
    folder = tmp_path_factory.mktemp("ocr-models")
    for name in MODEL_FILES.values():
        (folder / name).symlink_to(packaged_model_dir() / name)
    return folder


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> Iterator[OcrEngine]:
    yield OcrEngine(threads=2, det_side=DET_SIDE, model_dir=model_dir)


def words_of(lines: list[TextLine]) -> str:
    return " ".join(line.text for line in lines).lower()


def test_scanned_page_gives_its_words_with_boxes_in_reading_order(engine: OcrEngine) -> None:
    lines = engine.read(Image.open(SKIMAGE / "page.png"))
    text = words_of(lines)
    for word in ("segmentation", "markers", "coins", "background", "pixels", "histogram"):
        assert word in text
    assert lines[0].text.lower().startswith("region")  # the heading comes first
    tops = [line.box[1] for line in lines]
    assert tops == sorted(tops)  # top to bottom
    for line in lines:
        assert len(line.box) == 8 and all(0.0 <= v <= 1.0 for v in line.box)
        x1, y1, x2, y2, x3, y3, x4, y4 = line.box
        assert x1 < x2 and y1 < y4 and x4 < x3 and y2 < y3  # clockwise from top-left
        assert 0.5 <= line.text_score <= 1.0 and 0.0 < line.box_score <= 1.0


def test_same_lines_as_rapidocr_itself(engine: OcrEngine) -> None:
    """Our composition of rapidocr's stages (kept for the box scores) reads what RapidOCR() itself reads
    (its own __call__, on the same loaded engine), with the same boxes and recognition scores."""
    for name in ("page.png", "coins.png"):  # a page; coins, read as "0000" at 0.59 by both (hence min_score)
        theirs = engine._engine(str(SKIMAGE / name))
        ours = engine.read(Image.open(SKIMAGE / name))
        assert ours and [line.text for line in ours] == [str(t).strip() for t in theirs.txts]
        assert [line.text_score for line in ours] == pytest.approx(list(theirs.scores))
        width, height = Image.open(SKIMAGE / name).size
        for line, box in zip(ours, theirs.boxes, strict=True):
            corners = [(x / width, y / height) for x, y in box]
            assert line.box == pytest.approx([v for c in corners for v in c], abs=2e-3)


def two_lines() -> Image.Image:
    image = Image.new("RGB", (900, 400), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), 40)
    draw.text((60, 60), "DARK TEXT HERE", font=font, fill=(0, 0, 0))
    draw.text((60, 250), "FAINT TEXT HERE", font=font, fill=(200, 200, 200))
    return image


def test_each_box_keeps_its_own_detection_score(engine: OcrEngine) -> None:
    """The detector's post-processing gives (box, score) pairs bottom line first here; phototag puts them in
    reading order together. (rapidocr 3.10's TextDetector sorts the boxes but leaves the scores in the old
    order, which is why phototag runs the detector's steps itself.)"""
    det = engine._det
    bgr = np.ascontiguousarray(np.asarray(two_lines())[:, :, ::-1])
    raw_boxes, raw_scores = det.postprocess_op(det.session(det.get_preprocess()(bgr)), bgr.shape[:2])
    key = lambda box: tuple(np.asarray(box).ravel().tolist())  # noqa: E731
    pairs = {key(b): float(s) for b, s in zip(raw_boxes, raw_scores, strict=True)}
    boxes, scores = engine._detect(bgr)
    assert len(boxes) == len(pairs) == 2 and boxes[0][0][1] < boxes[1][0][1]  # top line first
    assert [pairs[key(b)] for b in boxes] == scores
    assert key(raw_boxes[0]) == key(boxes[1])  # the post-processing gave the bottom line first
    lines = engine.read(two_lines())
    assert [line.text for line in lines] == ["DARK TEXT HERE", "FAINT TEXT HERE"]
    assert [line.box_score for line in lines] == scores


def test_upside_down_receipt_is_turned_by_the_angle_classifier(engine: OcrEngine, tmp_path: Path) -> None:
    lines = engine.read(Image.open(render_receipt(tmp_path / "receipt.jpg")).rotate(180))
    text = words_of(lines)
    for word in ("bakery", "invoice", "4711", "croissant", "total"):
        assert word in text, (word, text)
    assert lines[0].text.lower().startswith("total")  # upside down, the total is the top line


def test_never_downloads_missing_models_are_an_error_naming_the_fix(model_dir: Path, tmp_path: Path) -> None:
    for name in list(MODEL_FILES.values())[1:]:
        (tmp_path / name).symlink_to(model_dir / name)
    with pytest.raises(
        ModelUnavailableError, match=r"PP-OCRv6_det_small\.onnx.*never downloads.*pip install"
    ):
        OcrEngine(model_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(list(MODEL_FILES.values())[1:])


def test_rapidocr_logs_info_only_when_phototag_logs_debug(engine: OcrEngine) -> None:
    root = logging.getLogger()
    before = root.level
    try:
        root.setLevel(logging.INFO)
        assert rapidocr_log_level() == "warning"
        root.setLevel(logging.DEBUG)
        assert rapidocr_log_level() == "info"
    finally:
        root.setLevel(before)
    if before > logging.DEBUG:
        assert logging.getLogger("RapidOCR").level == logging.WARNING  # as the engine fixture set it


def test_rendered_receipt_gives_every_line(engine: OcrEngine, tmp_path: Path) -> None:
    lines = engine.read(Image.open(render_receipt(tmp_path / "receipt.jpg")))
    text = words_of(lines)
    for word in ("corner", "bakery", "invoice", "4711", "croissant", "2.20", "espresso", "total", "4.00"):
        assert word in text, (word, text)
    # the receipt's slip is x 150-750 of 900: every box lies on it
    assert all(line.box[0] >= 0.15 and line.box[2] <= 0.84 for line in lines)


def test_analysis_keeps_the_immich_shape_and_keywords_are_optional() -> None:
    lines = [
        TextLine("INVOICE", (0.1, 0.1, 0.5, 0.1, 0.5, 0.2, 0.1, 0.2), 0.8, 0.97),
        TextLine("a long line of small print nobody wants as a keyword", (0,) * 8, 0.7, 0.95),
        TextLine("blur", (0,) * 8, 0.6, 0.55),
    ]
    plain = plugin.analysis_of(lines, plugin.TextSettings())
    assert plain.tags == ()
    assert plain.extra["text"][0] == {
        "text": "INVOICE",
        "box": [0.1, 0.1, 0.5, 0.1, 0.5, 0.2, 0.1, 0.2],
        "box_score": 0.8,
        "text_score": 0.97,
    }
    assert plain.answers[0].text.splitlines() == [x.text for x in lines]
    tagged = plugin.analysis_of(lines, plugin.TextSettings(keywords=True))
    assert [t.path for t in tagged.tags] == [("Text", "INVOICE")]  # short and sure only
    assert plugin.analysis_of([], plugin.TextSettings()).extra == {"text": []}


def test_off_by_default_one_setting_turns_it_on(make_config: Callable[..., Config]) -> None:
    from phototag.manager import get_plugin_manager
    from phototag.registration import register_plugins

    pm, _ = get_plugin_manager({})
    assert "text" not in [a.name for a in register_plugins(make_config(), pm).analyzers]
    on = register_plugins(make_config(**{"plugins.text.enabled": "true"}), pm).analyzers
    assert [a.task for a in on if a.name == "text"] == ["ocr"]


def test_scan_writes_text_to_json_and_xmp_and_search_finds_it(
    photos: Path, tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    render_receipt(folder / "receipt.jpg")
    Image.open(SKIMAGE / "page.png").convert("RGB").save(folder / "page.jpg", quality=92)
    (folder / "cat.jpg").write_bytes((photos / "cat.jpg").read_bytes())
    outcomes = run_plugin(plugin.TextAnalyzer("text", plugin.TextSettings(input_size=DET_SIDE)), folder, tmp_path,
                          plugins="xmp,sidecar")  # fmt: skip
    assert {o.status for o in outcomes.values()} == {"tagged"}

    record = json.loads((folder / "receipt.jpg.phototag.json").read_text())
    lines = record["analyzers"]["text"]["extra"]["text"]
    assert any("INVOICE" in x["text"] for x in lines)
    assert set(lines[0]) == {"text", "box", "box_score", "text_score"} and len(lines[0]["box"]) == 8
    assert "INVOICE" in record["analyzers"]["text"]["answers"]["text"]
    answers = json.loads(subprocess.run(
        ["exiftool", "-j", "-struct", "-XMP-phototag:Answers", str(folder / "receipt.jpg.xmp")],
        check=True, capture_output=True, text=True).stdout)[0]["Answers"]  # fmt: skip
    assert answers[0]["Question"] == plugin.QUESTION and "BAKERY" in answers[0]["Answer"]
    assert not (folder / "cat.jpg.xmp").exists()  # no text in the cat photo: nothing written

    pm, statuses = get_plugin_manager({"PHOTOTAG_PLUGINS": "search"})
    pm.hook.register_commands(cli=cli)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"state_db: {tmp_path / 'state.db'}\n")

    def search(*words: str) -> Any:
        return CliRunner().invoke(
            cli, ["-c", str(config_file), "search", *words], obj=CliState(None, (), pm, statuses)
        )

    got = search("--text", "invoice", "--json")
    assert got.exit_code == 0, got.output
    found = [json.loads(line) for line in got.stdout.splitlines()]
    assert [Path(f["path"]).name for f in found] == ["receipt.jpg"]
    assert "INVOICE" in found[0]["text"]
    # all words, any case; recognisers drop spaces ("ofgreyvalues"), so words match inside runs
    got = search("--text", "Markers COINS grey")
    assert got.exit_code == 0 and "page.jpg" in got.stdout and "receipt.jpg" not in got.stdout
    got = search("--text", "croissant dragon")  # not all words: none
    assert got.exit_code == 0 and got.stdout == "" and "no photo's text contains" in got.stderr


def test_the_model_folder_is_left_as_it_was(engine: OcrEngine, model_dir: Path) -> None:
    """Where rapidocr would have saved a download (its model_root_dir is the models' folder): nothing new."""
    assert engine.model_files == {stage: model_dir / name for stage, name in MODEL_FILES.items()}
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(MODEL_FILES.values())
