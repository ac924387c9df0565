"""The OpenAI-compatible routes on a real phototag server (loopback port), called with the official ``openai``
SDK and with the Responses request PhotoPrism's ``openai`` engine sends (APIS.md §1d, §3). Labels come from the
bundled offline models, captions from a tiny random BLIP, answers from a tiny random BLIP-VQA."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from hf_helpers import config_with
from phototag import adhoc
from phototag.serve.decode import decode_bytes
from phototag.serve.llm_intent import LLMRequest, intent_of, openai_chat
from phototag.serve.testing import Served, serving
from serve_compat_helpers import (
    LABELS_PROMPT,
    LABELS_SCHEMA,
    LABELS_SYSTEM,
    data_url,
    photo_jpeg,
    photoprism_request,
    photoprism_tiles,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("openai")
    plugins = {
        "faces": {"enabled": False},
        "embed": {"enabled": False},
        "caption": {"enabled": True, "model": str(tiny_model("blip")), "max_new_tokens": 8},
        "vqa": {
            "enabled": True,
            "model": str(tiny_model("blip_vqa")),
            "questions": [{"question": "Is there a cat?", "keyword": "Cat"}],
        },
    }
    with serving(config_with(tmp, plugins, device="cpu")) as s:
        yield s


@pytest.fixture(scope="module")
def client(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key="not-checked-on-loopback", max_retries=0)


def image_message(text: str, image: bytes) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": data_url(image), "detail": "low"}},
            ],
        }
    ]


def caption_of(served: Served, image: bytes) -> str:
    """The caption PhotoPrism's vision route gives for ``image`` (the same caption model)."""
    r = httpx.post(served.url + "/api/v1/vision/caption", json=photoprism_request([image]), timeout=60)
    return str(r.json()["result"]["caption"]["text"])


def test_models_lists_what_the_routes_accept(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "phototag" and "caption" in ids and "vqa" in ids
    assert all(m.owned_by == "phototag" for m in client.models.list())


def test_chat_completion_with_an_image_is_the_caption(client: openai.OpenAI, served: Served) -> None:
    image = photo_jpeg("astronaut", 384)
    done = client.chat.completions.create(
        model="phototag", messages=image_message("Describe this photo.", image)
    )
    assert done.object == "chat.completion" and done.choices[0].finish_reason == "stop"
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].message.content == caption_of(served, image)
    assert done.usage is not None and done.usage.prompt_tokens == 3
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens


def test_streamed_chat_gives_the_same_text_and_usage(client: openai.OpenAI) -> None:
    image = photo_jpeg("astronaut", 384)
    messages = image_message("Write a caption for this image.", image)
    whole = client.chat.completions.create(model="caption", messages=messages)
    stream = client.chat.completions.create(
        model="caption", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_sse_ends_with_done(served: Served) -> None:
    body = {
        "model": "phototag",
        "stream": True,
        "messages": image_message("Describe it", photo_jpeg("cat", 256)),
    }
    with httpx.stream("POST", served.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)


def test_labels_schema_is_answered_by_the_classifiers(client: openai.OpenAI, served: Served) -> None:
    """A chat request for labels in a JSON schema gets phototag's labels, the ones PhotoPrism's labels route
    gives for the same image, without any language model."""
    image = photo_jpeg("cat", 224)
    done = client.chat.completions.create(
        model="phototag",
        messages=[{"role": "system", "content": LABELS_SYSTEM}, *image_message(LABELS_PROMPT, image)],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "photoprism_vision_labels_v1", "schema": LABELS_SCHEMA, "strict": True},
        },
    )
    labels = json.loads(done.choices[0].message.content or "")["labels"]
    assert labels and all(set(lb) == {"name", "confidence", "topicality"} for lb in labels)
    vision = httpx.post(
        served.url + "/api/v1/vision/labels", json=photoprism_request([image]), timeout=60
    ).json()
    assert [(lb["name"], lb["confidence"]) for lb in labels] == [
        (lb["name"], lb["confidence"]) for lb in vision["result"]["labels"]
    ]


def test_responses_request_as_photoprism_sends_it(served: Served) -> None:
    tile = photoprism_tiles("cat")[0]
    body = {
        "model": "phototag",
        "input": [
            {"role": "system", "type": "message", "content": [{"type": "input_text", "text": LABELS_SYSTEM}]},
            {
                "role": "user",
                "type": "message",
                "content": [
                    {"type": "input_text", "text": LABELS_PROMPT + json.dumps(LABELS_SCHEMA)},
                    {"type": "input_image", "image_url": data_url(tile), "detail": "low"},
                ],
            },
        ],
        "text": {
            "format": {"type": "json_schema", "name": "photoprism_vision_labels_v1", "schema": LABELS_SCHEMA}
        },
        "reasoning": {"effort": "low"},
        "max_output_tokens": 1024,
    }
    r = httpx.post(served.url + "/v1/responses", json=body, headers={"Authorization": "Bearer k"}, timeout=60)
    assert r.status_code == 200, r.text
    part = r.json()["output"][0]["content"][0]
    assert part["type"] == "output_text"
    names = [lb["name"] for lb in json.loads(part["text"])["labels"]]
    assert "Cat" in names


def test_responses_through_the_sdk_captions(client: openai.OpenAI, served: Served) -> None:
    image = photo_jpeg("astronaut", 384)
    done = client.responses.create(
        model="phototag",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Create a caption with exactly one sentence."},
                    {"type": "input_image", "image_url": data_url(image), "detail": "auto"},
                ],
            }
        ],
    )
    assert done.output_text == caption_of(served, image)


def test_a_question_goes_to_the_vqa_model(client: openai.OpenAI, served: Served) -> None:
    image = photo_jpeg("coffee", 384)
    done = client.chat.completions.create(
        model="phototag", messages=image_message("What is on the table?", image)
    )
    decoded = decode_bytes(image, "q", served.engine.min_side(), served.engine.config.image)
    expected = adhoc.ask(served.engine.runtime, decoded, "What is on the table?", analyzer="vqa").answer
    assert done.choices[0].message.content == expected


def test_errors_are_typed_sdk_exceptions(client: openai.OpenAI) -> None:
    image = photo_jpeg("cat", 224)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=image_message("Describe this photo.", image))
    assert "gpt-4o" in unknown.value.message and "phototag" in unknown.value.message
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="phototag", messages=image_message("Describe it.", b"not a jpeg")
        )
    assert bad.value.code == "image_not_decodable"
    with pytest.raises(openai.BadRequestError, match="no image"):
        client.chat.completions.create(model="phototag", messages=[{"role": "user", "content": "hello"}])
    with pytest.raises(openai.UnprocessableEntityError, match=r"serve\.fetch_urls"):
        client.chat.completions.create(
            model="phototag",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x.org/a.jpg"}}],
                }
            ],
        )


def test_question_without_vqa_names_the_setting(tmp_path, tiny_model) -> None:
    plugins = {
        "faces": {"enabled": False},
        "embed": {"enabled": False},
        "detect": {"enabled": False},
        "caption": {"enabled": True, "model": str(tiny_model("blip"))},
    }
    with serving(config_with(tmp_path, plugins, device="cpu")) as s:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.UnprocessableEntityError, match=r"plugins\.vqa"):
            client.chat.completions.create(
                model="phototag",
                messages=image_message("How many cups are there?", photo_jpeg("coffee", 224)),
            )


# -- the intent rules (pure) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "kind"),
    [
        (LLMRequest("m", "", images=("x",)), "caption"),
        (LLMRequest("m", "Describe this photo in one sentence."), "caption"),
        (LLMRequest("m", "Create a caption with exactly one sentence."), "caption"),
        (LLMRequest("m", "What is on the table?"), "question"),
        (LLMRequest("m", "List labels for this image."), "question"),  # no JSON asked for: not the labels API
        (LLMRequest("m", "Return labels.", json_mode=True), "labels"),
        (LLMRequest("m", "Describe it.", json_mode=True), "caption"),
        (LLMRequest("m", "x", json_mode=True, schema=LABELS_SCHEMA), "labels"),
        (
            LLMRequest("m", "x", json_mode=True, schema={}, schema_name="photoprism_vision_labels_v1"),
            "labels",
        ),
    ],
)
def test_intent(request_: LLMRequest, kind: str) -> None:
    assert intent_of(request_).kind == kind


def test_chat_parsing_accepts_ollama_style_string_image_urls() -> None:
    parsed = openai_chat(
        {
            "model": "phototag",
            "messages": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": "data:,"}],
                },
            ],
        }
    )
    assert parsed.system == "be brief" and parsed.prompt == "hi" and parsed.images == ("data:,",)


def test_api_key_as_the_sdk_sends_it(tmp_path) -> None:
    plugins = {"faces": {"enabled": False}, "embed": {"enabled": False}, "detect": {"enabled": False}}
    with serving(config_with(tmp_path, plugins, device="cpu"), key="s3cret") as s:
        good = openai.OpenAI(base_url=s.url + "/v1", api_key="s3cret", max_retries=0)
        assert [m.id for m in good.models.list()] == ["phototag"]
        bad = openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
