"""The Ollama-compatible routes on a real phototag server (loopback port), called with the official ``ollama``
client and with the request PhotoPrism's ``ollama`` engine sends (APIS.md §1c, §4)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import ollama
import pytest

from hf_helpers import config_with
from phototag.serve.testing import Served, serving
from serve_compat_helpers import LABELS_PROMPT, LABELS_SCHEMA, LABELS_SYSTEM, photo_jpeg, photoprism_request


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("ollama")
    plugins = {
        "faces": {"enabled": False},
        "embed": {"enabled": False},
        "caption": {"enabled": True, "model": str(tiny_model("blip")), "max_new_tokens": 8},
    }
    with serving(config_with(tmp, plugins, device="cpu")) as s:
        yield s


@pytest.fixture(scope="module")
def client(served: Served) -> ollama.Client:
    return ollama.Client(host=served.url)


@pytest.fixture(scope="module")
def caption(served: Served) -> tuple[bytes, str]:
    """An image and the caption PhotoPrism's vision route gives for it (the same caption model)."""
    image = photo_jpeg("astronaut", 384)
    r = httpx.post(served.url + "/api/v1/vision/caption", json=photoprism_request([image]), timeout=60)
    return image, str(r.json()["result"]["caption"]["text"])


def test_generate_with_an_image(client: ollama.Client, caption: tuple[bytes, str]) -> None:
    image, text = caption
    done = client.generate(model="phototag", prompt="Describe this photo.", images=[image], stream=False)
    assert done.response == text and done.done and done.done_reason == "stop"
    assert done.total_duration and done.total_duration > 0 and done.model == "phototag"


def test_generate_streamed(client: ollama.Client, caption: tuple[bytes, str]) -> None:
    image, text = caption
    parts = list(client.generate(model="caption", prompt="Describe this photo.", images=[image], stream=True))
    assert "".join(p.response for p in parts) == text
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].eval_count == len(text.split())


def test_stream_is_the_default_and_is_ndjson(served: Served, caption: tuple[bytes, str]) -> None:
    image, text = caption
    body = {"model": "phototag", "prompt": "Describe it.", "images": [base64.b64encode(image).decode()]}
    r = httpx.post(served.url + "/api/generate", json=body, timeout=60)
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert len(lines) == 2 and lines[0]["response"] == text and lines[-1]["done"] is True


def test_chat_with_an_image(client: ollama.Client, caption: tuple[bytes, str]) -> None:
    image, text = caption
    messages = [{"role": "user", "content": "Write a caption for this image.", "images": [image]}]
    done = client.chat(model="phototag", messages=messages, stream=False)
    assert done.message.role == "assistant" and done.message.content == text and done.done
    streamed = list(client.chat(model="phototag", messages=messages, stream=True))
    assert "".join(p.message.content or "" for p in streamed) == text and streamed[-1].done


def test_labels_request_as_photoprism_sends_it(served: Served) -> None:
    """PhotoPrism's ollama engine (format json, raw base64, stream false) gets labels from the classifiers, the
    ones its vision route gives, in ``{"labels": [...]}`` inside ``response``."""
    image = photo_jpeg("cat", 720)
    body = {
        "id": "c0ffee00-0000-4000-8000-000000000001",
        "model": "gemma3:latest",
        "system": LABELS_SYSTEM,
        "prompt": LABELS_PROMPT + json.dumps(LABELS_SCHEMA),
        "suffix": "",
        "format": "json",
        "options": {"temperature": 0.1, "top_p": 0.9, "stop": ["\n\n"]},
        "think": False,
        "stream": False,
        "images": [base64.b64encode(image).decode()],
    }
    r = httpx.post(served.url + "/api/generate", json=body, timeout=60)
    assert r.status_code == 404 and "gemma3:latest" in r.json()["error"]  # not answered by another model
    r = httpx.post(served.url + "/api/generate", json={**body, "model": "phototag"}, timeout=60)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["done"] is True
    labels = json.loads(doc["response"])["labels"]
    vision = httpx.post(
        served.url + "/api/v1/vision/labels", json=photoprism_request([image]), timeout=60
    ).json()
    assert [lb["name"] for lb in labels] == [lb["name"] for lb in vision["result"]["labels"]]
    assert "Cat" in [lb["name"] for lb in labels]


def test_tags_list_the_models(client: ollama.Client) -> None:
    names = [m.model for m in client.list().models]
    assert names[0] == "phototag" and "caption" in names


def test_errors(client: ollama.Client, served: Served) -> None:
    with pytest.raises(ollama.ResponseError) as unknown:
        client.generate(model="llava:7b", prompt="Describe.", images=[photo_jpeg("cat", 224)], stream=False)
    assert unknown.value.status_code == 404 and "llava:7b" in unknown.value.error
    with pytest.raises(ollama.ResponseError) as bad:
        client.generate(model="phototag", prompt="Describe.", images=[b"not an image"], stream=False)
    assert bad.value.status_code == 400
    r = httpx.post(served.url + "/api/chat", json={"model": "phototag", "messages": [], "stream": False})
    assert (
        r.status_code == 400 and r.json() == {"error": r.json()["error"]} and "messages" in r.json()["error"]
    )
    body = {"model": "phototag", "prompt": "What is this?", "images": ["%%%"], "stream": False}
    r = httpx.post(served.url + "/api/generate", json=body)
    assert r.status_code == 400 and "base64" in r.json()["error"]
    # a question with no VQA model configured: the error names the setting
    body = {
        "model": "phototag",
        "prompt": "How many cups?",
        "images": [base64.b64encode(photo_jpeg("coffee", 224)).decode()],
    }
    r = httpx.post(served.url + "/api/generate", json=body, timeout=60)
    assert r.status_code == 422 and "plugins.vqa" in r.json()["error"]
