"""Text in photos: PP-OCRv6 small (detection and recognition, 50 languages in Latin script plus Chinese and
Japanese) and PaddleOCR's mobile orientation classifier on ONNX Runtime, as rapidocr 3.10 ships them inside its
wheel (``rapidocr/models/``; Apache-2.0).

:class:`OcrEngine` runs rapidocr's own stages (its resizing and padding, detector pre- and post-processing,
crops, angle classifier and recogniser) but keeps what ``RapidOCR.__call__`` loses: the detector's score for each
box. (rapidocr 3.10's ``TextDetector`` sorts the boxes into reading order but not their scores, so its
``TextDetOutput.scores`` no longer belong to the boxes beside them; here both are sorted together.) Each line
comes back as :class:`TextLine`: the text, the box's four corners normalised to the image (clockwise from
top-left, ``x1, y1 ... x4, y4``, the layout Immich's ``ocr`` entries use), the box score and the recognition
score.

Never downloads: rapidocr fetches a model file it does not find (from modelscope.cn). The engine names the
packaged files itself (``model_path`` for each stage), so rapidocr's download path is never taken, and checks
first that they are there (:class:`ModelUnavailableError` with the fix when not). The recogniser carries its
character list in the ONNX file, so no dictionary is fetched either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import ModelUnavailableError

MODEL_ID = "PP-OCRv6 small (rapidocr 3.10)"
PIP = "rapidocr>=3.10,<4"
MODULE = "rapidocr"
# the files rapidocr 3.10 ships and its default configuration uses (config.yaml: PP-OCRv6 small, ch, onnxruntime)
MODEL_FILES = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
}
DET_SIDE = 736  # rapidocr's Det.limit_side_len: the detector sees the image at this shorter side
SAME_LINE_PX = 10  # rapidocr's reading order: boxes whose tops differ by less are one line
_RAPIDOCR_LOGGER = "RapidOCR"  # rapidocr's own logger (its own stderr handler, not propagated)


@dataclass(frozen=True)
class TextLine:
    """One line of text found in an image; ``box`` is 8 floats 0..1: x1, y1, x2, y2, x3, y3, x4, y4."""

    text: str
    box: tuple[float, ...]
    box_score: float
    text_score: float

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "box": [round(v, 5) for v in self.box],
            "box_score": round(self.box_score, 4),
            "text_score": round(self.text_score, 4),
        }


def packaged_model_dir() -> Path:
    """The folder rapidocr's wheel keeps its default models in (``rapidocr/models``)."""
    try:
        import rapidocr
    except ImportError as e:
        raise ModelUnavailableError(
            f"text recognition ({MODEL_ID}) needs the rapidocr package: pip install 'phototag[ocr]' "
            f"(or '{PIP}' onnxruntime) ({e})"
        ) from e
    return Path(rapidocr.__file__).resolve().parent / "models"


def model_paths(model_dir: Path) -> dict[str, Path]:
    """The three model files in ``model_dir``; raises :class:`ModelUnavailableError` naming the missing ones
    (rapidocr would otherwise try to download them)."""
    paths = {stage: model_dir / name for stage, name in MODEL_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ModelUnavailableError(
            f"text recognition ({MODEL_ID}): model file(s) missing: {', '.join(missing)}; phototag never "
            f"downloads them: reinstall rapidocr, whose wheel ships them (pip install --force-reinstall '{PIP}')"
        )
    return paths


def rapidocr_log_level() -> str:
    """rapidocr's log level: its INFO chatter (engine, model paths) only when phototag logs debug (``-vv``),
    as the CLI does for other third-party loggers."""
    return "info" if logging.getLogger().getEffectiveLevel() <= logging.DEBUG else "warning"


class OcrEngine:
    """PP-OCRv6 small through rapidocr; one per process and thread count (ONNX sessions are thread-safe for
    ``run``, but callers serialise per engine, as the stages are not documented as re-entrant).

    ``threads``: ONNX Runtime's intra-op threads per stage (0: its default). ``det_side``: the shorter side
    the detector sees the image at (rapidocr's default 736; smaller is faster and finds less small print).
    ``model_dir``: where the three model files are (default: the ones rapidocr's wheel ships)."""

    def __init__(self, threads: int = 0, det_side: int = DET_SIDE, model_dir: Path | None = None) -> None:
        try:
            import onnxruntime  # noqa: F401 - rapidocr does not depend on it; name the fix here
            from rapidocr import RapidOCR
        except ImportError as e:
            raise ModelUnavailableError(
                f"text recognition ({MODEL_ID}) needs rapidocr and onnxruntime: pip install 'phototag[ocr]' "
                f"(or '{PIP}' onnxruntime) ({e})"
            ) from e
        needed = ["preprocess_img", "crop_text_regions"] + [f"_load_{s}_model" for s in ("det", "cls", "rec")]
        if not all(hasattr(RapidOCR, n) for n in needed):
            raise ModelUnavailableError(
                f"this rapidocr is not the version phototag's OCR is written for: pip install '{PIP}'"
            )
        paths = model_paths(model_dir if model_dir is not None else packaged_model_dir())
        params: dict[str, Any] = {
            "Global.log_level": rapidocr_log_level(),
            # where rapidocr would save anything it fetched: the models' own folder (it fetches nothing:
            # every stage gets its model_path, and the recogniser's characters are inside its file)
            "Global.model_root_dir": str(paths["Det"].parent),
            "Det.limit_side_len": det_side,
        }
        for stage, path in paths.items():
            params[f"{stage}.model_path"] = str(path)
        if threads > 0:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
            params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
        self._engine = RapidOCR(params=params)
        # load the three ONNX sessions now (rapidocr loads each on first use): errors surface at load time
        self._det = self._engine._load_det_model()
        self._cls = self._engine._load_cls_model()
        self._rec = self._engine._load_rec_model()
        self.model_files = paths

    def read(self, image: Image.Image, min_text_score: float = 0.5) -> list[TextLine]:
        """The text lines of ``image`` (any mode), top to bottom, left to right; lines whose recognition
        score is below ``min_text_score`` (or whose text is empty) are left out."""
        from rapidocr.ch_ppocr_rec import TextRecInput
        from rapidocr.utils.process_img import apply_vertical_padding, map_boxes_to_original

        rgb = np.asarray(image.convert("RGB"))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        raw_h, raw_w = bgr.shape[:2]
        engine = self._engine
        img, record = engine.preprocess_img(bgr)
        if engine.cfg.Global.use_vertical_padding:
            img, record = apply_vertical_padding(img, record, engine.width_height_ratio, engine.min_height)
        boxes, box_scores = self._detect(img)
        if not len(boxes):
            return []
        crops = engine.crop_text_regions(img, boxes)
        rotated = self._cls(crops).img_list
        recognised = self._rec(TextRecInput(img=rotated, return_word_box=False))
        corners = map_boxes_to_original(boxes.copy(), record, raw_h, raw_w)
        out = []
        for box, box_score, text, text_score in zip(
            corners, box_scores, recognised.txts or (), recognised.scores, strict=True
        ):
            text = str(text).strip()
            if not text or float(text_score) < min_text_score:
                continue
            flat = tuple(
                float(v)
                for x, y in box
                for v in (min(max(x / raw_w, 0.0), 1.0), min(max(y / raw_h, 0.0), 1.0))
            )
            out.append(TextLine(text, flat, float(box_score), float(text_score)))
        return out

    def _detect(self, img: np.ndarray) -> tuple[np.ndarray, list[float]]:
        """rapidocr's detector, keeping each box's score: boxes (n x 4 x 2, clockwise from top-left, in
        ``img``'s pixels) in reading order, with their scores in the same order."""
        det = self._det
        prepared = det.get_preprocess()(img)
        if prepared is None:
            return np.zeros((0, 4, 2), np.float32), []
        boxes, scores = det.postprocess_op(det.session(prepared), img.shape[:2])
        if len(boxes) == 0:
            return np.zeros((0, 4, 2), np.float32), []
        order = reading_order(np.asarray(boxes, dtype=np.float32))
        return np.asarray(boxes, dtype=np.float32)[order], [float(scores[i]) for i in order]


def reading_order(boxes: np.ndarray, same_line_px: float = SAME_LINE_PX) -> list[int]:
    """The order of ``boxes`` (n x 4 x 2) rapidocr 3.10 sorts them in (``TextDetector.sorted_boxes``): by the
    top-left corner's y; a gap of ``same_line_px`` or more between neighbouring tops starts a new line; left
    to right within a line. Returned as indices, so scores can follow their boxes."""
    if len(boxes) == 0:
        return []
    ys = boxes[:, 0, 1]
    by_y = np.argsort(ys, kind="stable")
    line = np.concatenate([[0], np.cumsum(np.diff(ys[by_y]) >= same_line_px)])
    within = np.lexsort((boxes[by_y, 0, 0], line))
    return [int(i) for i in by_y[within]]
