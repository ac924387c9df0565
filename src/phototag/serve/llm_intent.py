"""What a language-model request asks for, read from the OpenAI and Ollama request shapes.

phototag has no general language model. It answers the three things photo apps send to one:

* **labels** -- PhotoPrism's ``ollama`` and ``openai`` engines ask for ``{"labels": [{name, confidence,
  topicality}]}`` in a JSON schema (``text.format`` / ``response_format`` ``json_schema``, or Ollama
  ``format: "json"`` with a prompt that asks for labels). phototag's classifiers and detectors answer those,
  no language model needed;
* **caption** -- "describe / caption this photo" (or no prompt at all): the configured caption model;
* **question** -- any other prompt about the photo: the configured visual-question-answering model.

Every route family parses its body into one :class:`LLMRequest` here, and :func:`intent_of` decides, so the
OpenAI and Ollama routes answer the same request the same way. Pure: no I/O, no models; malformed bodies raise
:class:`~phototag.serve.errors.BadRequest` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import BadRequest

Kind = Literal["labels", "caption", "question"]

# Prompt words that ask for a description of the whole photo rather than an answer to a question.
_CAPTION = re.compile(
    r"\b(caption|describe|description|summari[sz]e|what is (?:in|shown in|happening in) (?:this|the) "
    r"(?:image|photo|picture)|what(?:'s| is) in (?:this|the) (?:image|photo|picture))\b",
    re.IGNORECASE,
)
_LABELS = re.compile(r"\blabels?\b|\bkeywords?\b|\btags?\b", re.IGNORECASE)
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w-]+=[^;,]*)*)(;base64)?,", re.IGNORECASE)


@dataclass(frozen=True)
class LLMRequest:
    """A chat/generate request reduced to what phototag can act on."""

    model: str
    prompt: str
    """The text of the last user turn (all its text parts, joined by newlines)."""
    system: str = ""
    images: tuple[str, ...] = ()
    """Image references as sent: data URLs, raw base64 (Ollama) or http(s) URLs."""
    json_mode: bool = False
    """The client asked for JSON output (a schema, ``json_object`` or Ollama ``format: "json"``)."""
    schema: Mapping[str, Any] | None = None
    schema_name: str = ""
    stream: bool = False
    include_usage: bool = False


@dataclass(frozen=True)
class Intent:
    kind: Kind
    reason: str
    """Why this kind was chosen (for logs and error messages)."""


def intent_of(request: LLMRequest) -> Intent:
    """What ``request`` asks for. Labels need JSON output *and* labels asked for (a schema with a ``labels``
    property, a schema named for labels, or a prompt that says labels/keywords/tags); a caption is a prompt that
    asks to describe or caption the photo, or none; anything else is a question."""
    if request.json_mode:
        if schema_wants_labels(request.schema, request.schema_name):
            return Intent("labels", "the JSON schema asks for labels")
        if request.schema is None and _LABELS.search(f"{request.system}\n{request.prompt}"):
            return Intent("labels", "JSON output was asked for and the prompt asks for labels")
    text = request.prompt.strip()
    if not text or _CAPTION.search(text):
        return Intent("caption", "the prompt asks for a caption" if text else "there is no prompt")
    return Intent("question", "the prompt is a question about the image")


def schema_wants_labels(schema: Mapping[str, Any] | None, name: str = "") -> bool:
    """True when a JSON schema describes ``{"labels": [...]}`` (PhotoPrism's ``photoprism_vision_labels_v1``)."""
    if "label" in name.lower():
        return True
    if not isinstance(schema, Mapping):
        return False
    props = schema.get("properties")
    return isinstance(props, Mapping) and "labels" in props


def schema_allows_caption(schema: Mapping[str, Any] | None) -> bool:
    """True when ``{"caption": "..."}`` satisfies the schema: no schema, or one whose required properties are at
    most ``caption`` and that has a ``caption`` property (or allows any)."""
    if schema is None:
        return True
    props = schema.get("properties")
    required = set(schema.get("required") or ())
    if not isinstance(props, Mapping) or not props:
        return not required
    return "caption" in props and required <= {"caption"}


# -- images -------------------------------------------------------------------------------------------------


def is_url(ref: str) -> bool:
    return ref[:8].lower().startswith(("http://", "https://"))


def image_bytes(ref: str, where: str) -> bytes:
    """The bytes of an image sent inline: a ``data:<mime>;base64,...`` URL or raw base64 (Ollama). Raises
    BadRequest naming ``where`` (the field) for anything else; URLs are the caller's business (see
    :func:`is_url`)."""
    text = ref.strip()
    match = _DATA_URL.match(text)
    if match:
        if not match.group(3):
            raise BadRequest(f"{where}: a data URL must be base64 (data:image/jpeg;base64,...)")
        text = text[match.end() :]
    elif text[:5].lower() == "data:":
        raise BadRequest(f"{where}: not a valid data URL; send data:image/jpeg;base64,<bytes>")
    try:
        data = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(
            f"{where}: not base64 image data; send a data URL (data:image/jpeg;base64,...) or raw base64"
        ) from None
    if not data:
        raise BadRequest(f"{where}: the image is empty")
    return data


# -- request shapes -----------------------------------------------------------------------------------------


def _obj(body: Any, where: str = "body") -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise BadRequest(f"{where}: expected a JSON object")
    return body


def _str(value: Any, where: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{where}: expected a string")
    return value


def _model(body: Mapping[str, Any]) -> str:
    model = _str(body.get("model"), "model")
    if not model:
        raise BadRequest(
            "model: required; GET /v1/models (or /api/tags) lists the model names phototag serves"
        )
    return model


def _bool(value: Any, where: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"{where}: expected true or false")
    return value


def _schema(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadRequest(f"{where}: expected a JSON schema object")
    return value


def openai_chat(body: Any) -> LLMRequest:
    """``POST /v1/chat/completions``: ``messages`` with string content or ``text``/``image_url`` parts
    (``image_url`` as ``{"url": ...}`` or, as Ollama accepts, a plain string); ``response_format``."""
    body = _obj(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: required, a non-empty list of {role, content}")
    system: list[str] = []
    prompt = ""
    images: list[str] = []
    for i, message in enumerate(messages):
        message = _obj(message, f"messages[{i}]")
        role = message.get("role")
        texts, refs = _openai_content(message.get("content"), f"messages[{i}].content")
        if role in ("system", "developer"):
            system.extend(texts)
        elif role == "user":
            prompt = "\n".join(texts)
            images.extend(refs)
    json_mode, schema, name = False, None, ""
    fmt = body.get("response_format")
    if fmt is not None:
        fmt = _obj(fmt, "response_format")
        kind = fmt.get("type")
        if kind == "json_object":
            json_mode = True
        elif kind == "json_schema":
            spec = _obj(fmt.get("json_schema"), "response_format.json_schema")
            json_mode, name = True, _str(spec.get("name"), "response_format.json_schema.name")
            schema = _schema(spec.get("schema", {}), "response_format.json_schema.schema")
        elif kind != "text":
            raise BadRequest("response_format.type: expected text, json_object or json_schema")
    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
    return LLMRequest(
        model=_model(body),
        prompt=prompt,
        system="\n".join(system),
        images=tuple(images),
        json_mode=json_mode,
        schema=schema,
        schema_name=name,
        stream=_bool(body.get("stream"), "stream", False),
        include_usage=include_usage,
    )


def _openai_content(content: Any, where: str) -> tuple[list[str], list[str]]:
    if content is None:
        return [], []
    if isinstance(content, str):
        return [content], []
    if not isinstance(content, list):
        raise BadRequest(f"{where}: expected a string or a list of parts")
    texts: list[str] = []
    refs: list[str] = []
    for j, part in enumerate(content):
        part = _obj(part, f"{where}[{j}]")
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            texts.append(_str(part.get("text"), f"{where}[{j}].text"))
        elif kind in ("image_url", "input_image"):
            url = part.get("image_url")
            if isinstance(url, Mapping):
                url = url.get("url")
            if not isinstance(url, str) or not url:
                raise BadRequest(f"{where}[{j}].image_url: expected a data URL (data:image/jpeg;base64,...)")
            refs.append(url)
        else:
            raise BadRequest(f"{where}[{j}].type: {kind!r} is not supported; send text and image_url parts")
    return texts, refs


def openai_responses(body: Any) -> LLMRequest:
    """``POST /v1/responses`` (PhotoPrism's ``openai`` engine): ``input`` as a string or messages with
    ``input_text``/``input_image`` parts, ``instructions``, ``text.format``."""
    body = _obj(body)
    raw = body.get("input")
    system = [_str(body.get("instructions"), "instructions")] if body.get("instructions") else []
    prompt = ""
    images: list[str] = []
    if isinstance(raw, str):
        prompt = raw
    elif isinstance(raw, list) and raw:
        for i, item in enumerate(raw):
            item = _obj(item, f"input[{i}]")
            texts, refs = _openai_content(item.get("content"), f"input[{i}].content")
            if item.get("role") in ("system", "developer"):
                system.extend(texts)
            elif item.get("role", "user") == "user":
                prompt = "\n".join(texts)
                images.extend(refs)
    else:
        raise BadRequest("input: required, a string or a list of messages")
    json_mode, schema, name = False, None, ""
    text = body.get("text")
    if text is not None:
        fmt = _obj(_obj(text, "text").get("format") or {"type": "text"}, "text.format")
        kind = fmt.get("type")
        if kind == "json_object":
            json_mode = True
        elif kind == "json_schema":
            json_mode, name = True, _str(fmt.get("name"), "text.format.name")
            schema = _schema(fmt.get("schema", {}), "text.format.schema")
        elif kind != "text":
            raise BadRequest("text.format.type: expected text, json_object or json_schema")
    return LLMRequest(
        model=_model(body),
        prompt=prompt,
        system="\n".join(system),
        images=tuple(images),
        json_mode=json_mode,
        schema=schema,
        schema_name=name,
        stream=_bool(body.get("stream"), "stream", False),
    )


def _ollama_format(value: Any) -> tuple[bool, Mapping[str, Any] | None]:
    if value is None or value == "":
        return False, None
    if value == "json":
        return True, None
    if isinstance(value, Mapping):
        return True, value
    raise BadRequest('format: expected "json" or a JSON schema object')


def _ollama_images(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{where}: expected a list of base64 strings")
    return list(value)


def ollama_generate(body: Any) -> LLMRequest:
    """``POST /api/generate``: ``prompt``, ``system``, ``images`` (raw base64), ``format``, ``stream`` (default
    true)."""
    body = _obj(body)
    json_mode, schema = _ollama_format(body.get("format"))
    return LLMRequest(
        model=_model(body),
        prompt=_str(body.get("prompt"), "prompt"),
        system=_str(body.get("system"), "system"),
        images=tuple(_ollama_images(body.get("images"), "images")),
        json_mode=json_mode,
        schema=schema,
        stream=_bool(body.get("stream"), "stream", True),
    )


def ollama_chat(body: Any) -> LLMRequest:
    """``POST /api/chat``: ``messages`` of ``{role, content, images}``, ``format``, ``stream`` (default true)."""
    body = _obj(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: required, a non-empty list of {role, content, images}")
    system: list[str] = []
    prompt = ""
    images: list[str] = []
    for i, message in enumerate(messages):
        message = _obj(message, f"messages[{i}]")
        content = _str(message.get("content"), f"messages[{i}].content")
        if message.get("role") == "system":
            system.append(content)
        elif message.get("role") == "user":
            prompt = content
            images.extend(_ollama_images(message.get("images"), f"messages[{i}].images"))
    json_mode, schema = _ollama_format(body.get("format"))
    return LLMRequest(
        model=_model(body),
        prompt=prompt,
        system="\n".join(system),
        images=tuple(images),
        json_mode=json_mode,
        schema=schema,
        stream=_bool(body.get("stream"), "stream", True),
    )


def words(text: str) -> int:
    """Whitespace-separated words: phototag's ``usage`` counts (its models share no tokenizer)."""
    return len(text.split())


def json_answer(kind: Kind, payload: Sequence[Mapping[str, Any]] | str) -> str:
    """The JSON text answered for a JSON request: ``{"labels": [...]}`` or ``{"caption": "..."}``."""
    if kind == "labels":
        return json.dumps({"labels": list(payload)})
    return json.dumps({"caption": payload})
