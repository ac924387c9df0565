"""PhotoPrism's "vision" API on a real phototag server (loopback port): requests built as PhotoPrism's Go client
builds them (APIS.md §1a), the bundled offline models for labels, a tiny random BLIP for captions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hf_helpers import config_with
from phototag.serve.labelmap import categories_of, merge_tags, photoprism_label, priority_of
from phototag.serve.photoprism import face_model_problem
from phototag.serve.testing import serving
from phototag.types import Tag
from serve_compat_helpers import data_url, jpeg, photo_jpeg, photoprism_request, photoprism_tiles, sample

LABELS = "/api/v1/vision/labels"
REQUEST_ID = "3f1c2a9e-7d4b-4a55-9e0c-1b2d3e4f5a6b"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("photoprism")
    blip = tiny_model("blip")
    plugins = {
        "faces": {"enabled": False},
        "embed": {"enabled": False},
        "caption": {"enabled": True, "model": str(blip), "max_new_tokens": 8},
    }
    with serving(config_with(tmp, plugins, device="cpu")) as served:
        yield served.url, blip


def post(url: str, body: object) -> httpx.Response:
    return httpx.post(url, json=body, timeout=60)


# -- labels -------------------------------------------------------------------------------------------------


def test_labels_request_as_photoprism_sends_it(server: tuple[str, Path]) -> None:
    base, _ = server
    tiles = photoprism_tiles("cat")
    assert len(tiles) == 3  # chelsea is not square: tile, left and right
    r = post(base + LABELS, photoprism_request(tiles))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["id"] == REQUEST_ID and doc["code"] == 200
    assert doc["model"]["type"] == "labels"
    assert "efficientnet-lite0" in doc["model"]["name"]
    labels = doc["result"]["labels"]
    assert labels, "a photo of a cat must get labels"
    for label in labels:
        assert set(label) >= {"name", "confidence", "topicality", "priority", "categories"}
        assert 0 < label["confidence"] <= 1 and isinstance(label["categories"], list)
    by_name = {label["name"]: label for label in labels}
    assert "Cat" in by_name, sorted(by_name)
    assert by_name["Cat"]["priority"] == 5 and "animal" in by_name["Cat"]["categories"]
    assert [lb["confidence"] for lb in labels] == sorted((lb["confidence"] for lb in labels), reverse=True)


def test_three_crops_give_one_merged_list(server: tuple[str, Path]) -> None:
    """The merged answer is each label once with its best confidence over the crops sent alone."""
    base, _ = server
    tiles = photoprism_tiles("cat")
    merged = post(base + LABELS, photoprism_request(tiles)).json()["result"]["labels"]
    best: dict[str, float] = {}
    for tile in tiles:
        for label in post(base + LABELS, photoprism_request([tile])).json()["result"]["labels"]:
            best[label["name"]] = max(best.get(label["name"], 0.0), label["confidence"])
    assert {lb["name"]: lb["confidence"] for lb in merged} == best
    assert len({lb["name"] for lb in merged}) == len(merged)


def test_more_than_three_images_refused(server: tuple[str, Path]) -> None:
    base, _ = server
    tiles = photoprism_tiles("cat")
    r = post(base + LABELS, photoprism_request(tiles + tiles[:1]))
    assert r.status_code == 400
    assert r.json() == {"id": REQUEST_ID, "code": 400, "error": r.json()["error"], "result": {}}
    assert "at most 3" in r.json()["error"]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"this is not an image at all", "image"),
        (photo_jpeg("cat")[:2000], "truncated"),
    ],
    ids=["not-an-image", "truncated-jpeg"],
)
def test_bad_image_answers_photoprism_error_shape(server: tuple[str, Path], data: bytes, words: str) -> None:
    base, _ = server
    r = post(base + LABELS, photoprism_request([data]))
    assert r.status_code == 400, r.text
    doc = r.json()
    assert doc["id"] == REQUEST_ID and doc["code"] == 400 and doc["result"] == {}
    assert words in doc["error"].lower() and "Traceback" not in doc["error"]


def test_not_base64_and_not_json_and_multipart(server: tuple[str, Path]) -> None:
    base, _ = server
    body = photoprism_request([])
    body["images"] = ["data:image/jpeg;base64,@@@not base64@@@"]
    r = post(base + LABELS, body)
    assert r.status_code == 400 and "base64" in r.json()["error"]
    r = httpx.post(base + LABELS, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = httpx.post(base + LABELS, files={"images": ("a.jpg", photo_jpeg("cat", 224), "image/jpeg")})
    assert r.status_code == 400 and "multipart" in r.json()["error"]


def test_image_url_is_not_fetched_by_default(server: tuple[str, Path]) -> None:
    base, _ = server
    body = photoprism_request([])
    body["images"] = ["https://example.com/cat.jpg"]
    r = post(base + LABELS, body)
    assert r.status_code == 422 and "fetch_urls" in r.json()["error"]


# -- caption, describe, nsfw, face ----------------------------------------------------------------------------


def test_caption_is_an_object_with_text(server: tuple[str, Path]) -> None:
    base, blip = server
    body = photoprism_request(
        [photo_jpeg("astronaut", 720)], prompt="Create a caption with exactly one sentence."
    )
    r = post(base + "/api/v1/vision/caption", body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model"] == {"type": "caption", "name": str(blip), "version": doc["model"]["version"]}
    caption = doc["result"]["caption"]
    assert isinstance(caption, dict) and isinstance(caption["text"], str) and caption["text"]
    # the same image asked again gives the same caption (greedy decoding, one model)
    assert post(base + "/api/v1/vision/caption", body).json()["result"]["caption"] == caption


def test_older_describe_route_answers_a_string(server: tuple[str, Path]) -> None:
    base, blip = server
    image = photo_jpeg("astronaut", 720)
    described = post(base + "/api/v1/vision/describe", {"id": "x1", "images": [data_url(image)]})
    assert described.status_code == 200, described.text
    doc = described.json()
    assert doc["id"] == "x1" and doc["model"]["name"] == str(blip)
    caption = post(base + "/api/v1/vision/caption", photoprism_request([image])).json()["result"]["caption"]
    assert doc["result"]["caption"] == caption["text"]


def test_nsfw_without_a_classifier_is_a_clear_error(server: tuple[str, Path]) -> None:
    base, _ = server
    r = post(base + "/api/v1/vision/nsfw", photoprism_request([photo_jpeg("cat", 720)]))
    assert r.status_code == 422
    doc = r.json()
    assert doc["id"] == REQUEST_ID and doc["result"] == {} and "NSFW" in doc["error"]


def test_face_without_a_face_model_is_refused(server: tuple[str, Path]) -> None:
    base, _ = server
    r = post(
        base + "/api/v1/vision/face", photoprism_request([photo_jpeg("astronaut", 160)], model="facenet")
    )
    assert r.status_code == 422
    assert "face" in r.json()["error"] and r.json()["result"] == {}


def test_face_vectors_only_from_the_model_asked_for(tmp_path: Path) -> None:
    """With dlib's 128-d descriptor configured, a request for facenet (512) or sface (128, same length but
    another model) is refused; a request naming phototag's model gets one finite vector per crop."""
    pytest.importorskip("dlib")
    from phototag.bundled.dlibfaces import DlibFaceAnalyzer
    from phototag.runtime import AnalyzerRuntime
    from phototag.serve.engine import Engine

    config = config_with(tmp_path, {}, device="cpu")
    faces = DlibFaceAnalyzer("faces", DlibFaceAnalyzer.Settings(input_size=160, upsample=1), config)
    engine = Engine(config, AnalyzerRuntime(config, [faces]), owns_runtime=True)
    from PIL import Image

    with Image.open(sample("astronaut")) as im:
        crop = jpeg(im.convert("RGB").crop((150, 20, 310, 180)))  # her face, as a 160 px crop
    with serving(config, engine=engine) as served:
        url = served.url + "/api/v1/vision/face"
        for other in ("facenet", "sface"):
            r = post(url, photoprism_request([crop], model=other))
            assert r.status_code == 422, r.text
            assert other in r.json()["error"] and "dlib" in r.json()["error"]
        r = post(url, photoprism_request([crop, crop], model="dlib-resnet-v1"))
        assert r.status_code == 200, r.text
        embeddings = r.json()["result"]["embeddings"]
        assert [len(e) for e in embeddings] == [1, 1]  # exactly one vector per crop
        assert len(embeddings[0][0]) == 128 and embeddings[0] == embeddings[1]
        assert r.json()["model"]["name"] == "dlib-resnet-v1"
        blank = jpeg(Image.new("RGB", (160, 160), (128, 128, 128)))
        r = post(url, photoprism_request([blank], model="dlib-resnet-v1"))
        assert r.status_code == 400 and "no face" in r.json()["error"]


# -- pure parts -----------------------------------------------------------------------------------------------


def test_categories_come_from_the_keyword_tree() -> None:
    owl = Tag("Owl", 0.7, ("Animals", "Wildlife", "Bird", "Owl"))
    assert categories_of(owl) == ["animal", "wildlife", "bird"]
    assert categories_of(Tag("Bird", 0.9, ("Animals", "Wildlife", "Bird"))) == ["animal", "wildlife"]
    assert categories_of(Tag("Espresso", 0.9, ("Food and drink", "Drinks", "Coffee", "Espresso"))) == [
        "beverage",
        "coffee",
    ]
    assert categories_of(Tag("Mystery", 0.9, ("My words", "Mystery"))) == []  # unknown tree: no guess
    assert priority_of(Tag("Tabby cat", 0.5, ("Animals", "Pets", "Cat", "Tabby cat"))) == 5
    assert priority_of(Tag("Cup", 0.5, ("Objects", "Things", "Cup"))) == 0
    label = photoprism_label(Tag("Car", 0.87654, ("Objects", "Vehicles", "Car")))
    assert label == {
        "name": "Car",
        "source": "image",
        "priority": 0,
        "confidence": 0.8765,
        "topicality": 0.8765,
        "categories": ["vehicle"],
        "nsfw": False,
        "nsfw_confidence": 0,
    }
    json.dumps(label)


def test_merge_keeps_each_name_once_with_its_best_score() -> None:
    a = [Tag("Cat", 0.4), Tag("Sofa", 0.2)]
    b = [Tag("Cat", 0.9), Tag("Lamp", 0.2)]
    assert merge_tags([a, b]) == [Tag("Cat", 0.9), Tag("Lamp", 0.2), Tag("Sofa", 0.2)]


def test_face_model_rules() -> None:
    served = ["faces", "dlib-hog", "dlib-resnet-v1"]
    assert face_model_problem("dlib-resnet-v1", served, 128) is None
    assert face_model_problem("faces", served, 128) is None
    assert "would not match" in (face_model_problem("sface", served, 128) or "")
    assert "not served" in (face_model_problem("buffalo_l", served, 128) or "")
    assert "512" in (face_model_problem("facenet", ["facenet"], 128) or "")  # right name, wrong length
