"""Immich's machine-learning API on a real phototag server (loopback port): multipart requests built as
Immich's server builds them (APIS.md §2), a tiny random CLIP as the configured embed model, mapped from an
Immich model name through ``serve.immich_models``."""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw, ImageFont

from hf_helpers import CPU, config_with
from phototag.hf.embed import HFEmbedder, HFEmbedderSettings
from phototag.serve.decode import decode_bytes
from phototag.serve.immich import parse_entries
from phototag.serve.testing import Served, serving
from serve_compat_helpers import jpeg, photo_jpeg

VISUAL = {"clip": {"visual": {"modelName": "ViT-B-32__openai"}}}
TEXTUAL = {"clip": {"textual": {"modelName": "ViT-B-32__openai", "options": {"language": "en-null"}}}}
FACES = {
    "facial-recognition": {
        "detection": {"modelName": "buffalo_l", "options": {"minScore": 0.7}},
        "recognition": {"modelName": "buffalo_l"},
    }
}
OCR_MODEL = "PP-OCRv6 small (rapidocr 3.10)"
OCR = {
    "ocr": {
        "detection": {"modelName": "PP-OCRv5_mobile", "options": {"minScore": 0.5, "maxResolution": 736}},
        "recognition": {"modelName": "PP-OCRv5_mobile", "options": {"minScore": 0.8}},
    }
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> Iterator[tuple[Served, Path]]:
    tmp = tmp_path_factory.mktemp("immich")
    clip = tiny_model("clip")
    plugins = {
        "classify": {"enabled": False},
        "detect": {"enabled": False},
        "faces": {"enabled": False},
        "embed": {"model": str(clip)},
        "text": {"enabled": True},
    }
    mapping = {
        "ViT-B-32__openai": str(clip),
        "ViT-L-14__openai": "openai/clip-vit-large-patch14",
        "PP-OCRv5_mobile": OCR_MODEL,
    }
    config = config_with(tmp, plugins, device="cpu", serve={"immich_models": mapping})
    with serving(config) as served:
        yield served, clip


def predict(
    base: str, entries: dict[str, Any], image: bytes | None = None, text: str | None = None
) -> httpx.Response:
    """``POST {url}predict`` as Immich's machine-learning repository sends it: ``entries`` as a JSON string and
    the preview as a Blob (file name ``blob``), or ``text``."""
    parts: list[tuple[str, tuple[str | None, bytes | str] | tuple[str, bytes, str]]] = [
        ("entries", (None, json.dumps(entries)))
    ]
    if text is not None:
        parts.append(("text", (None, text)))
    if image is not None:
        parts.append(("image", ("blob", image, "application/octet-stream")))
    return httpx.post(base + "/predict", files=parts, timeout=60)


def vector(text: str) -> list[float]:
    assert isinstance(text, str)  # Immich stores the string as it is
    values = json.loads(text)
    assert all(isinstance(v, float) for v in values)
    return values


def norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def test_ping_answers_pong_as_text(server: tuple[Served, Path]) -> None:
    r = httpx.get(server[0].url + "/ping")
    assert r.status_code == 200 and r.text == "pong" and r.headers["content-type"].startswith("text/plain")


def test_clip_visual_is_a_normalised_json_string_with_the_image_size(
    server: tuple[Served, Path], tmp_path: Path
) -> None:
    served, clip = server
    preview = photo_jpeg("cat", 1440)
    r = predict(served.url, VISUAL, image=preview)
    assert r.status_code == 200, r.text
    doc = r.json()
    got = vector(doc["clip"])
    assert abs(norm(got) - 1.0) < 1e-5
    with Image.open(io.BytesIO(preview)) as sent:
        assert (doc["imageWidth"], doc["imageHeight"]) == sent.size
    # the same vector the configured model gives in-process (its own copy, loaded here)
    config = config_with(tmp_path, {}, device="cpu")
    own = HFEmbedder("embed", HFEmbedderSettings(model=str(clip)), config)
    own.load(CPU)
    try:
        image = decode_bytes(preview, "blob", served.engine.min_side(), config.image)
        (analysis,) = own.analyze([image])
    finally:
        own.unload()
    assert analysis.embedding is not None
    assert got == pytest.approx(list(analysis.embedding), abs=1e-5)
    other = vector(predict(served.url, VISUAL, image=photo_jpeg("coffee", 1440)).json()["clip"])
    assert other != pytest.approx(got, abs=1e-3)


def test_clip_textual_has_no_image_size(server: tuple[Served, Path], tmp_path: Path) -> None:
    served, clip = server
    r = predict(served.url, TEXTUAL, text="a cat on a sofa")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert set(doc) == {"clip"}
    got = vector(doc["clip"])
    assert abs(norm(got) - 1.0) < 1e-5
    own = HFEmbedder("embed", HFEmbedderSettings(model=str(clip)), config_with(tmp_path, {}, device="cpu"))
    (expected,) = own.embed_text(["a cat on a sofa"])
    own.unload()
    assert got == pytest.approx(list(expected), abs=1e-5)
    assert vector(predict(served.url, TEXTUAL, text="a red car").json()["clip"]) != pytest.approx(
        got, abs=1e-3
    )


def test_a_model_name_is_never_answered_by_another_model(server: tuple[Served, Path]) -> None:
    base = server[0].url
    image = photo_jpeg("cat", 256)
    unmapped = {"clip": {"visual": {"modelName": "ViT-SO400M-14-SigLIP-384__webli"}}}
    r = predict(base, unmapped, image=image)
    assert r.status_code == 422 and "serve.immich_models" in r.json()["detail"]
    other = {"clip": {"visual": {"modelName": "ViT-L-14__openai"}}}  # mapped, but not the configured model
    r = predict(base, other, image=image)
    assert r.status_code == 422
    assert "openai/clip-vit-large-patch14" in r.json()["detail"] and "plugins.embed" in r.json()["detail"]
    # Immich strips an org/ prefix from names: the mapping applies to the bare name
    r = predict(base, {"clip": {"visual": {"modelName": "immich-app/ViT-B-32__openai"}}}, image=image)
    assert r.status_code == 200, r.text


def test_faces_without_a_face_model_are_422(server: tuple[Served, Path]) -> None:
    r = predict(server[0].url, FACES, image=photo_jpeg("astronaut", 512))
    assert r.status_code == 422, r.text
    assert "facial-recognition" in r.json()["detail"]


def test_ocr_in_immichs_shape(server: tuple[Served, Path]) -> None:
    """PP-OCR (the text plugin) reads a rendered sign; Immich gets text, 8 normalised box values per text and
    both scores. Immich's PP-OCRv5 name answers only because serve.immich_models maps it to this model."""
    pytest.importorskip("rapidocr")
    sign = Image.new("RGB", (1200, 500), "white")
    draw = ImageDraw.Draw(sign)
    draw.text((120, 180), "INVOICE 4711", fill="black", font=ImageFont.load_default(size=110))
    r = predict(server[0].url, OCR, image=jpeg(sign))
    assert r.status_code == 200, r.text
    ocr = r.json()["ocr"]
    assert len(ocr["box"]) == 8 * len(ocr["text"]) == 8 * len(ocr["boxScore"]) == 8 * len(ocr["textScore"])
    assert "4711" in "".join(ocr["text"])
    assert all(0 <= v <= 1 for v in ocr["box"]) and all(s >= 0.8 for s in ocr["textScore"])
    x1, y1, x2, y2, _, y3, _, _ = ocr["box"][:8]
    assert x1 < 0.2 and 0.3 < y1 < 0.5 and x2 > x1 and y3 > y2  # the line's corners, clockwise from top-left
    unmapped = {"ocr": {k: {**v, "modelName": "PP-OCRv5_server"} for k, v in OCR["ocr"].items()}}
    assert predict(server[0].url, unmapped, image=jpeg(sign)).status_code == 422


def test_bad_requests_in_fastapi_shape(server: tuple[Served, Path]) -> None:
    base = server[0].url
    r = predict(base, VISUAL)
    assert r.status_code == 400 and r.json() == {"detail": "either image or text must be sent"}
    r = predict(base, VISUAL, image=b"")
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    r = predict(base, VISUAL, image=b"GIF89a but not really an image")
    assert r.status_code == 400 and "image" in r.json()["detail"]
    r = httpx.post(base + "/predict", data={"entries": "{not json"}, files={"image": ("blob", b"x")})
    assert r.status_code == 422 and "entries" in r.json()["detail"]
    r = httpx.post(base + "/predict", json=VISUAL)
    assert r.status_code == 400 and "multipart" in r.json()["detail"]


def test_entries_are_validated() -> None:
    assert parse_entries(json.dumps(VISUAL)) == VISUAL
    for bad in ("[]", '{"clip": {}}', '{"sing": {"visual": {"modelName": "x"}}}', '{"clip": {"visual": {}}}'):
        with pytest.raises(Exception, match="entries"):
            parse_entries(bad)


def test_image_as_text_field_and_labels_without_a_classifier(server: tuple[Served, Path]) -> None:
    base = server[0].url
    r = httpx.post(
        base + "/predict", files=[("entries", (None, json.dumps(VISUAL))), ("image", (None, "abc"))]
    )
    assert r.status_code == 400 and "file part" in r.json()["detail"]
    # this server runs no classifier: PhotoPrism's labels route says which setting gives one
    body = {
        "id": "a",
        "images": ["data:image/jpeg;base64," + base64.b64encode(photo_jpeg("cat", 224)).decode()],
    }
    r = httpx.post(base + "/api/v1/vision/labels", json=body)
    assert r.status_code == 422 and "plugins.classify" in r.json()["error"] and r.json()["id"] == "a"
