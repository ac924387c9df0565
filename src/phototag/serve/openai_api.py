"""OpenAI-compatible routes: ``POST /v1/chat/completions``, ``POST /v1/responses`` (PhotoPrism's ``openai``
engine), ``GET /v1/models``.

What the request asks for is decided by :mod:`phototag.serve.llm_intent` (labels in a JSON schema -> the
classifiers; describe -> the caption model; a question -> the VQA model), and answered by
:func:`phototag.serve.answers.answer_llm`, the same as the Ollama routes. ``stream: true`` on chat completions
sends the answer as server-sent events (a role chunk, the content, a chunk with ``finish_reason``, a usage chunk
when ``stream_options.include_usage``, then ``data: [DONE]``); the answer is computed first, so a failure is a
plain error response with its status, which the SDK raises as a typed exception.

``usage`` counts whitespace-separated words of the prompt and the answer: phototag's models share no tokenizer,
and none of them bills by token. Errors are OpenAI error objects ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from .answers import answer_llm, served_models
from .engine import Engine, get_engine
from .errors import BadRequest, ServeError, error_response
from .llm_intent import LLMRequest, openai_chat, openai_responses, words

router = APIRouter()
EngineDep = Annotated[Engine, Depends(get_engine)]


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise BadRequest("the body is not JSON") from None


def _usage(request: LLMRequest, text: str) -> dict[str, int]:
    prompt = words(request.system) + words(request.prompt)
    completion = words(text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@router.get("/v1/models")
async def models(engine: EngineDep) -> JSONResponse:
    """The ``model`` values the chat, responses and Ollama routes accept."""
    created = int(engine.started)
    data = [
        {"id": m, "object": "model", "created": created, "owned_by": "phototag"}
        for m in served_models(engine)
    ]
    return JSONResponse({"object": "list", "data": data})


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request, engine: EngineDep) -> JSONResponse | StreamingResponse:
    try:
        parsed = openai_chat(await _json(request))
        text = await answer_llm(engine, parsed)
    except ServeError as e:
        return error_response(e, "openai")
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    usage = _usage(parsed, text)
    if parsed.stream:
        return StreamingResponse(
            _chunks(completion_id, created, parsed, text, usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": parsed.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }
    )


async def _chunks(
    completion_id: str, created: int, parsed: LLMRequest, text: str, usage: dict[str, int]
) -> AsyncIterator[str]:
    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": parsed.model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(chunk)}\n\n"

    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    yield event([{"index": 0, "delta": {"content": text}, "finish_reason": None}])
    yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if parsed.include_usage:
        yield event([], usage=usage)
    yield "data: [DONE]\n\n"


@router.post("/v1/responses")
async def responses(request: Request, engine: EngineDep) -> JSONResponse:
    """The Responses API as PhotoPrism's ``openai`` engine calls it (not streamed)."""
    try:
        parsed = openai_responses(await _json(request))
        if parsed.stream:
            raise BadRequest("stream: not supported on /v1/responses; send stream: false")
        text = await answer_llm(engine, parsed)
    except ServeError as e:
        return error_response(e, "openai")
    usage = _usage(parsed, text)
    return JSONResponse(
        {
            "id": f"resp_{uuid.uuid4().hex}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": parsed.model,
            "output": [
                {
                    "type": "message",
                    "id": f"msg_{uuid.uuid4().hex}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ],
            "usage": {
                "input_tokens": usage["prompt_tokens"],
                "output_tokens": usage["completion_tokens"],
                "total_tokens": usage["total_tokens"],
            },
        }
    )
