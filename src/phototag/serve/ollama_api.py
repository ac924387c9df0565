"""Ollama-compatible routes: ``POST /api/generate``, ``POST /api/chat`` (base64 ``images``), ``GET /api/tags``.

Requests are read and answered like the OpenAI routes (:mod:`phototag.serve.llm_intent`,
:func:`phototag.serve.answers.answer_llm`): PhotoPrism's ``ollama`` engine asks for labels with
``format: "json"`` and gets ``{"labels": [...]}`` from the classifiers; other prompts go to the caption or VQA
model. ``stream`` defaults to true, as in Ollama: NDJSON (``application/x-ndjson``), one object with the answer
and ``done: false``, then a final ``done: true`` object with ``done_reason`` and the timings (ns). With
``stream: false``, one JSON object. Errors are ``{"error": "..."}`` with the HTTP status; the answer is computed
before the first line, so an error is never hidden inside a 200 stream. ``eval_count`` and
``prompt_eval_count`` count words (phototag's models share no tokenizer).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from .. import __version__
from .answers import answer_llm, served_models
from .engine import Engine, get_engine
from .errors import BadRequest, ServeError, error_response
from .llm_intent import LLMRequest, ollama_chat, ollama_generate, words

router = APIRouter()
EngineDep = Annotated[Engine, Depends(get_engine)]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise BadRequest("the body is not JSON") from None


def _final(parsed: LLMRequest, started: int) -> dict[str, Any]:
    total = time.perf_counter_ns() - started
    return {
        "done": True,
        "done_reason": "stop",
        "total_duration": total,
        "load_duration": 0,
        "prompt_eval_count": words(parsed.system) + words(parsed.prompt),
        "prompt_eval_duration": 0,
        "eval_count": 0,
        "eval_duration": total,
    }


async def _answer(request: Request, engine: Engine, chat: bool) -> JSONResponse | StreamingResponse:
    started = time.perf_counter_ns()
    try:
        body = await _json(request)
        parsed = ollama_chat(body) if chat else ollama_generate(body)
        text = await answer_llm(engine, parsed)
    except ServeError as e:
        return error_response(e, "ollama")

    def piece(content: str) -> dict[str, Any]:
        if chat:
            return {"message": {"role": "assistant", "content": content}}
        return {"response": content}

    final = _final(parsed, started)
    final["eval_count"] = words(text)
    head = {"model": parsed.model, "created_at": _now()}
    if not parsed.stream:
        return JSONResponse({**head, **piece(text), **final})

    async def lines() -> AsyncIterator[str]:
        yield json.dumps({**head, **piece(text), "done": False}) + "\n"
        yield json.dumps({"model": parsed.model, "created_at": _now(), **piece(""), **final}) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/api/generate", response_model=None)
async def generate(request: Request, engine: EngineDep) -> JSONResponse | StreamingResponse:
    return await _answer(request, engine, chat=False)


@router.post("/api/chat", response_model=None)
async def chat(request: Request, engine: EngineDep) -> JSONResponse | StreamingResponse:
    return await _answer(request, engine, chat=True)


@router.get("/api/tags")
async def tags(engine: EngineDep) -> JSONResponse:
    """The model names ``/api/generate`` and ``/api/chat`` accept."""
    modified = datetime.fromtimestamp(engine.started, UTC).isoformat().replace("+00:00", "Z")
    models = [
        {
            "name": m,
            "model": m,
            "modified_at": modified,
            "size": 0,
            "digest": "",
            "details": {
                "format": "phototag",
                "family": "phototag",
                "parameter_size": "",
                "quantization_level": "",
            },
        }
        for m in served_models(engine)
    ]
    return JSONResponse({"models": models})


@router.get("/api/version")
async def version() -> JSONResponse:
    """Ollama clients ask for the version before anything else."""
    return JSONResponse({"version": f"phototag-{__version__}"})
