"""OpenAI-compatible endpoints beside arlm's own, so the clients people already use (the ``openai``
package, LangChain, scripts written for vLLM or llama.cpp's server) can talk to arlm:

* ``GET /v1/models`` — OpenAI's model list (``{"object": "list", "data": [...]}``), each model's
  ``id`` its arlm name and arlm's description of it (family, tokenizer, context, …) alongside;
  ``GET /v1/models/{model}`` — one of them;
* ``POST /v1/completions`` — OpenAI's legacy completions (:mod:`arlm.serve.completions`): JSON, or
  server-sent events ``data: {chunk}`` ending with ``data: [DONE]``;
* ``POST /v1/chat/completions`` — not served, and it says why: these are plain language models, with
  no roles and no chat template, so a chat endpoint would have to invent a prompt format.

Errors on these paths are OpenAI's ``{"error": {"message", "type", "param", "code"}}`` (the
:class:`OpenAIErrors` middleware rewrites the app's ``{"detail", "field"}`` answers there): a bad
parameter is 400 (arlm's own endpoints say 422, and 413 for a long prompt), a wrong key 401 with code
``invalid_api_key``, an unknown model 404 with code ``model_not_found``, a busy server 503, a request
over its time limit 504. A stream that fails after it has started sends ``data: {"error": {...}}``
and ``data: [DONE]`` (the ``openai`` client raises it as an ``APIError``).

Every request passes the checks of arlm's own endpoints (the API key, the caps, the time limit) and
each choice takes one of the server's ``--queue`` slots.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arlm.decode.config import DecodingError
from arlm.errors import ArlmError
from arlm.serve import engine
from arlm.serve.completions import Choice, Delta, LogprobsPart, choice_seed, rounds
from arlm.serve.limits import ServeError
from arlm.serve.models import LoadedModel
from arlm.serve.openai_schemas import (
    DEFAULT_MAX_TOKENS,
    MAX_CHOICES,
    STREAM_CONTENT,
    Completion,
    CompletionRequest,
    ModelCard,
    ModelList,
    OpenAIErrorBody,
)
from arlm.serve.schemas import GenerateRequest
from arlm.serve.service import Service, check_key, get_service

OPENAI_NAMES = {"max_new_tokens": "max_tokens", "stop_strings": "stop"}  # arlm's knob -> OpenAI's field
ERRORS = {
    400: "A bad, missing or unknown parameter (named in `param`), malformed JSON, a prompt over the "
         "server's caps or the model's context.",
    401: "Missing or wrong API key (when the server has one).",
    404: "Unknown model.",
    415: "The body is not sent as application/json.",
    503: "The server is busy (its --queue is full) or shutting down; retry.",
    504: "The request took longer than the server's --request-timeout; its work was cancelled.",
}


def openai_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each status it may answer, with OpenAI's error body."""
    return {status: {"model": OpenAIErrorBody, "description": ERRORS[status]} for status in statuses}


def is_openai_path(path: str) -> bool:
    """Whether ``path`` is one of OpenAI's (its errors then take OpenAI's shape)."""
    return path in ("/v1/completions", "/v1/models") or path.startswith(("/v1/models/", "/v1/chat/"))


router = APIRouter(prefix="/v1", dependencies=[Depends(check_key)], responses=openai_errors(401),
                   tags=["OpenAI-compatible"])
ServiceDep = Annotated[Service, Depends(get_service)]


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def model_card(lm: LoadedModel) -> dict[str, Any]:
    """A model in OpenAI's shape (``created``: when its checkpoint was written), arlm's info beside."""
    path = Path(lm.path) if lm.path else None
    created = int(path.stat().st_mtime) if path is not None and path.exists() else 0
    return {"id": lm.name, "object": "model", "created": created, "owned_by": "arlm", **lm.info()}


@router.get("/models", summary="The models this server holds (OpenAI's list, arlm's details alongside)",
            response_model=ModelList)
async def list_models(svc: ServiceDep) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(lm) for lm in svc.models.values()]}


@router.get("/models/{model:path}", summary="One model (OpenAI's shape)", response_model=ModelCard,
            responses=openai_errors(404))
async def get_model(model: str, svc: ServiceDep) -> dict[str, Any]:
    if model not in svc.models:
        raise ServeError(404, f"unknown model {model!r}; this server has {', '.join(svc.models)} "
                              "(GET /v1/models)")
    return model_card(svc.models[model])


@router.post("/chat/completions", include_in_schema=False)
async def chat_completions() -> None:
    raise ServeError(404, "this server holds plain language models, not chat models: they have no roles "
                          "and no chat template, so it does not serve /v1/chat/completions; send the "
                          "conversation as text to POST /v1/completions")


# ---------------------------------------------------------------------------------------------
# Completions
# ---------------------------------------------------------------------------------------------


@router.post("/completions", summary="Continue prompts (OpenAI's legacy completions; stream=true: SSE)",
             responses={200: {"model": Completion, "content": STREAM_CONTENT},
                        **openai_errors(400, 401, 404, 415, 503, 504)})
async def completions(body: CompletionRequest, request: Request, svc: ServiceDep):
    lm = svc.pick(body.model)
    prompts = _prompts(body, svc, lm)
    choices = [choice for i, (text, tokens) in enumerate(prompts)
               for choice in _choices(body, svc, lm, text, tokens, first=i * body.n)]
    for taken in range(len(choices)):  # a slot for each choice, or none
        try:
            svc.admission.admit()
        except ServeError:
            for _ in range(taken):
                svc.admission.release()
            raise
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": lm.name}
    prompt_tokens = sum(len(tokens) for _, tokens in prompts)
    steps = rounds(svc, request, choices, svc.deadline())
    try:
        first = await anext(steps)  # a bad first step is still a 4xx
    except BaseException:
        _end(svc, choices, finished=False, stream=body.stream)
        raise
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(_events(request, svc, choices, steps, first, head, prompt_tokens,
                                         include_usage),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    finished = False
    try:
        collected = [first, *[r async for r in steps]]
        finished = True
    finally:
        _end(svc, choices, finished, stream=False)
    return {**head, "choices": _whole(choices, collected), "usage": _usage(prompt_tokens, choices)}


def _prompts(body: CompletionRequest, svc: Service, lm: LoadedModel) -> list[tuple[str, list[int]]]:
    """Each prompt as (text, token ids), checked: text against the server's cap, ids against the
    vocabulary; every field OpenAI has that cannot be honoured refused with why."""
    unsupported = [("suffix", body.suffix is not None, "a left-to-right model continues text; it "
                    "cannot fill in before a suffix"),
                   ("best_of", body.best_of not in (None, 1, body.n), "only best_of 1 (or equal to n) "
                    "is supported; send n and rank the choices by their logprobs"),
                   ("presence_penalty", bool(body.presence_penalty), "only 0 is supported; use "
                    "repetition_penalty (e.g. 1.3) to discourage repeats"),
                   ("frequency_penalty", bool(body.frequency_penalty), "only 0 is supported; use "
                    "repetition_penalty (e.g. 1.3) to discourage repeats")]
    for field, bad, why in unsupported:
        if bad:
            raise DecodingError(field, f"{field}: {why}")
    raw = body.prompt
    if isinstance(raw, str) or (raw and isinstance(raw[0], str)):
        texts = [raw] if isinstance(raw, str) else list(raw)
        for text in texts:
            svc.check_prompt(text)
        prompts = [(text, lm.tokenizer.encode(text)) for text in texts]
    else:
        lists = [raw] if not raw or isinstance(raw[0], int) else list(raw)
        V = lm.model.vocab_size
        for ids in lists:
            bad = next((t for t in ids if not 0 <= t < V), None)
            if bad is not None:
                raise DecodingError("prompt", f"prompt: token id {bad} is outside the vocabulary of "
                                              f"{lm.name} (0..{V - 1})")
        prompts = [(lm.tokenizer.decode(ids), list(ids)) for ids in lists]
    if len(prompts) * body.n > MAX_CHOICES:
        raise DecodingError("n", f"n: {len(prompts)} prompts × n {body.n} is more than the "
                                 f"{MAX_CHOICES} choices one request may ask for; send fewer")
    return prompts


def _banned(body: CompletionRequest, lm: LoadedModel) -> list[int]:
    """``logit_bias`` as the tokens it bans (-100: never generated, as OpenAI reads it)."""
    banned = []
    for key, bias in (body.logit_bias or {}).items():
        if not key.isdigit() or not int(key) < lm.model.vocab_size:
            raise DecodingError("logit_bias", f"logit_bias: {key!r} is not a token id of {lm.name} "
                                              f"(0..{lm.model.vocab_size - 1})")
        if bias != -100:
            raise DecodingError("logit_bias", f"logit_bias: only -100 (never generate the token) is "
                                              f"supported, got {bias:g} for token {key}")
        banned.append(int(key))
    return banned


def _choices(body: CompletionRequest, svc: Service, lm: LoadedModel, text: str, tokens: list[int],
             first: int) -> list[Choice]:
    """The ``n`` choices of one prompt, numbered from ``first``: its DecodingConfig made and checked
    as ``/v1/generate`` makes it (``Service.decoding``), its i-th choice with seed + i."""
    knobs = {"temperature": body.temperature, "top_p": body.top_p, "top_k": body.top_k,
             "min_p": body.min_p, "repetition_penalty": body.repetition_penalty, "seed": body.seed,
             "banned": _banned(body, lm) or None,
             "stop_strings": [body.stop] if isinstance(body.stop, str) else body.stop}
    max_tokens = body.max_tokens
    if max_tokens is None:
        room = lm.block_size - len(tokens) if lm.block_size else DEFAULT_MAX_TOKENS
        max_tokens = max(1, min(DEFAULT_MAX_TOKENS, svc.settings.max_new_tokens_cap, room))
    request = GenerateRequest(**{k: v for k, v in knobs.items() if v is not None},
                              max_new_tokens=max(1, max_tokens))
    config = svc.decoding(request, lm, tokens)  # the caps checked, as for /v1/generate
    ids = engine.prompt_ids(lm, tokens, (), max(1, max_tokens))  # room for one token: the forward of echo
    out = []
    for i in range(body.n):
        seeded = config.replace(seed=choice_seed(config.seed, i)) if config.seed is not None else config
        out.append(Choice(first + i, lm, text, ids, seeded if max_tokens else None, body.logprobs,
                          body.echo))
    return out


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


def _whole(choices: list[Choice], collected: list[list[Delta]]) -> list[dict[str, Any]]:
    """Each choice's Deltas joined: its whole text, log-probs and finish reason."""
    out = []
    for c in choices:
        deltas = [d for r in collected for d in r if d.index == c.index]
        logprobs = None
        if c.logprobs is not None:
            logprobs = LogprobsPart()
            for d in deltas:
                if d.logprobs is not None:
                    logprobs.extend(d.logprobs)
        out.append(_choice(c.index, "".join(d.text for d in deltas), logprobs, c.finish_reason))
    return out


def _choice(index: int, text: str, logprobs: LogprobsPart | None, finish: str | None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": logprobs.to_dict() if logprobs is not None else None,
            "finish_reason": finish}


def _usage(prompt_tokens: int, choices: list[Choice]) -> dict[str, int]:
    """Prompt tokens (each prompt once), new tokens of every choice ([EOS] included), their sum."""
    completion = sum(c.generated for c in choices)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion}


async def _events(request: Request, svc: Service, choices: list[Choice], steps: AsyncIterator[list[Delta]],
                  first: list[Delta], head: dict[str, Any], prompt_tokens: int, include_usage: bool):
    """The stream: a chunk per Delta that says something, then the usage (when asked) and [DONE]."""
    finished = False
    try:
        batch: list[Delta] | None = first
        while batch is not None:
            for d in batch:
                if d.text or d.finish_reason or (d.logprobs is not None and d.logprobs.tokens):
                    yield _data({**head, "choices": [_choice(d.index, d.text, d.logprobs, d.finish_reason)]})
            if await request.is_disconnected():
                return
            try:
                batch = await anext(steps)
            except StopAsyncIteration:
                batch = None
            except ArlmError as e:
                yield _data(error_body(getattr(e, "status", 422), str(e), getattr(e, "field", None)))
                yield "data: [DONE]\n\n"
                return
        if include_usage:
            yield _data({**head, "choices": [], "usage": _usage(prompt_tokens, choices)})
        yield "data: [DONE]\n\n"
        finished = True
    finally:
        _end(svc, choices, finished)


def _end(svc: Service, choices: list[Choice], finished: bool, stream: bool = True) -> None:
    """A request's end: its slots released, its unfinished generations closed, the counters."""
    for _ in choices:
        svc.admission.release()
    if stream:
        svc.stats["streams_done" if finished else "streams_cancelled"] += 1
    for c in choices:
        if c.finish_reason is None:
            c.close(svc, "disconnected")


def _data(payload: dict[str, Any]) -> str:
    """One server-sent event: a ``data:`` line of JSON."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


# ---------------------------------------------------------------------------------------------
# Errors in OpenAI's shape
# ---------------------------------------------------------------------------------------------


def declare_openai_errors(app: FastAPI) -> None:
    """Keep the OpenAPI document true: FastAPI declares a 422 with its own body on every route that
    takes parameters, but OpenAI's routes answer a bad request 400 (:class:`OpenAIErrors`), so that
    422 leaves their operations, and FastAPI's validation-error schemas the document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            for path, operations in document["paths"].items():
                if is_openai_path(path):
                    for operation in operations.values():
                        operation["responses"].pop("422", None)
            if "HTTPValidationError" not in json.dumps(document["paths"]):
                for name in ("HTTPValidationError", "ValidationError"):
                    document.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _openai_words(text: str) -> str:
    for arlm_name, openai_name in OPENAI_NAMES.items():
        text = re.sub(rf"\b{arlm_name}\b", openai_name, text)
    return text


def _param(field: str) -> str:
    """A field's path without the union members pydantic names in it (``stop.constrained-str`` ->
    ``stop``, ``prompt.list[int].3`` -> ``prompt.3``)."""
    return ".".join(p for p in field.split(".") if re.fullmatch(r"\w+", p) and p not in TYPE_NAMES)


TYPE_NAMES = frozenset(("str", "int", "float", "bool", "list", "dict"))


def error_body(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    """``{"error": {message, type, param, code}}`` for an answer of ``status``; arlm's knob names in
    ``message`` and ``field`` become OpenAI's (max_new_tokens -> max_tokens, stop_strings -> stop)."""
    message = " ".join(message.split())
    if field:
        message, field = message.replace(field, _param(field)), _param(field)
    message = _openai_words(message)
    code = None
    if status == 401:
        code = "invalid_api_key"
    elif status == 404 and message.startswith("unknown model"):
        code = "model_not_found"
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind,
                      "param": _openai_words(field) if field else None, "code": code}}


class OpenAIErrors:
    """ASGI middleware: on OpenAI's paths, an error answer of the app (``{"detail", "field"}``) is
    sent in OpenAI's shape, a 413 or 422 as 400 (OpenAI's status for any bad request); its other
    headers (Allow, WWW-Authenticate) are kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_openai_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        parts: list[bytes] = []

        async def send_openai(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held until the body is known
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status, body = _rewrite(start["status"], b"".join(parts))
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            await send({**start, "status": status, "headers": [*headers, (b"content-length",
                                                                         str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_openai)


def _rewrite(status: int, body: bytes) -> tuple[int, bytes]:
    """arlm's error body -> OpenAI's (and 413, 422 -> 400); any other body as it is."""
    try:
        detail = json.loads(body)
    except ValueError:
        return status, body
    if not isinstance(detail, dict) or not isinstance(detail.get("detail"), str):
        return status, body
    status = 400 if status in (413, 422) else status
    return status, json.dumps(error_body(status, detail["detail"], detail.get("field"))).encode()
