"""The HTTP application: the JSON API under /v1, its OpenAPI page at /docs, and the playground at /.

:func:`create_app` takes models that are already loaded (``arlm serve`` loads them once, at start)
and the server's :class:`~arlm.serve.limits.ServeSettings`, and keeps them in one
:class:`~arlm.serve.service.Service`. The routes are plain functions of one router: each receives
the service as a dependency, parses, checks limits, and hands the model work to
:mod:`arlm.serve.engine` on worker threads (:class:`~arlm.serve.limits.Admission`).

Errors are answered as ``{"detail": "one line"}`` with a 4xx status, never a 500: an unknown model
is 404, a bad decoding setting 422 naming the field (``DecodingError.field``), a prompt over the cap
413, malformed JSON 400, a wrong or missing API key 401, a full queue 503. Every other
:class:`~arlm.errors.ArlmError` the library raises (a prompt longer than the model's context, …) is 422.

Streaming (``"stream": true``) answers with server-sent events::

    event: start   data: {"model", "prompt", "config"}
    event: token   data: {"index", "id", "text", "logprob", "prob", "special"}    (one per token)
    event: done    data: {"stop_reason", "text", "completion", "num_tokens"}

Between tokens the server checks whether the client is still there; if not, the generation stops.
When the server shuts down, running streams end after their current token with stop reason "shutdown".
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from arlm.decode.config import DecodingError
from arlm.errors import ArlmError
from arlm.serve import engine
from arlm.serve.limits import ServeError, ServeSettings
from arlm.serve.models import LoadedModel
from arlm.serve.schemas import AttentionRequest, BeamRequest, GenerateRequest, NextRequest, ScoreRequest
from arlm.serve.service import Service, check_key, get_service

STATIC = resources.files("arlm.serve") / "static"


def create_app(models: dict[str, LoadedModel], settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``models`` (loaded once) under ``settings``' limits."""
    service = Service(models, settings or ServeSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.admission.close()  # clean shutdown: no new work, running jobs finish, threads stop

    app = FastAPI(title="arlm", version="1", lifespan=lifespan,
                  description="Autoregressive language models: generate, stream, score, and look inside "
                              "decoding (next-token distributions, beam trees, causal attention).")
    app.state.service = service
    app.state.models, app.state.settings = service.models, service.settings
    app.state.admission, app.state.stats = service.admission, service.stats
    _install_error_handlers(app)
    app.include_router(v1)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_api_route("/", playground, include_in_schema=False)
    return app


async def playground() -> FileResponse:
    """The playground page."""
    return FileResponse(str(STATIC / "index.html"))


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------

v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])
ServiceDep = Annotated[Service, Depends(get_service)]


@v1.get("/models", summary="The models this server holds")
async def list_models(svc: ServiceDep) -> dict[str, Any]:
    return {"models": [lm.info() for lm in svc.models.values()]}


@v1.get("/health", summary="Liveness, load and counters")
async def health(svc: ServiceDep) -> dict[str, Any]:
    return {"status": "ok", "active": svc.admission.active, "queue": svc.settings.queue, **svc.stats}


@v1.post("/generate", summary="Continue a prompt (JSON, or server-sent events with stream=true)")
async def generate(body: GenerateRequest, request: Request, svc: ServiceDep):
    lm = svc.pick(body.model)
    svc.check_prompt(body.prompt)
    prompt_tokens = lm.tokenizer.encode(body.prompt)
    config = svc.decoding(body, lm, prompt_tokens)
    if body.stream and config.strategy == "beam":
        raise DecodingError("stream", "stream: beam search finishes its hypotheses together; use "
                                      "stream=false or POST /v1/beam for the search tree")
    ids = engine.prompt_ids(lm, prompt_tokens, (), config.max_new_tokens)
    admission = svc.admission
    if config.strategy == "beam":
        with admission.slot():
            return await admission.run(engine.beam_result, lm, ids, config)
    if not body.stream:
        with admission.slot():
            tokens = engine.TokenStream(lm, ids, config)
            await admission.run(tokens.run)
            svc.stats["tokens"] += len(tokens.tokens)
            return tokens.result()
    admission.admit()
    try:
        tokens = engine.TokenStream(lm, ids, config)
        first = await admission.run(tokens.advance)  # errors of the first step are still a 4xx
    except BaseException:
        admission.release()
        raise
    return StreamingResponse(_events(request, svc, tokens, first), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(request: Request, svc: Service, tokens: engine.TokenStream, first: dict | None):
    """The stream's server-sent events: start, one token event per token, done (or error)."""
    admission, stats = svc.admission, svc.stats
    finished = False
    try:
        yield _sse("start", {"model": tokens.lm.name, "prompt": tokens.prompt_text,
                             "config": tokens.config.to_dict()})
        event = first
        while event is not None:
            stats["tokens"] += 1
            yield _sse("token", event)
            if await request.is_disconnected():
                return
            if admission.stopping:  # shutting down: end this stream cleanly, now
                tokens.close("shutdown")
                break
            try:
                event = await admission.run(tokens.advance)
            except ArlmError as e:
                yield _sse("error", {"detail": _one_line(str(e))})
                return
        result = tokens.result()
        yield _sse("done", {k: result[k] for k in ("stop_reason", "text", "completion", "num_tokens")})
        finished = True
    finally:
        admission.release()
        stats["streams_done" if finished else "streams_cancelled"] += 1
        if not finished:  # the client left (or the server stops): end the generation
            admission.submit(tokens.close, "disconnected")


@v1.post("/score", summary="NLL, perplexity, bits/char and per-token log-probs of a text")
async def score(body: ScoreRequest, svc: ServiceDep) -> dict[str, Any]:
    lm = svc.pick(body.model)
    svc.check_prompt(body.text, "text")
    with svc.admission.slot():
        return await svc.admission.run(engine.score_text, lm, body.text)


@v1.post("/next", summary="The next-token distribution after a prefix, before and after the processors")
async def next_token(body: NextRequest, svc: ServiceDep) -> dict[str, Any]:
    lm = svc.pick(body.model)
    svc.check_prompt(body.prompt)
    prompt_tokens = lm.tokenizer.encode(body.prompt)
    config = svc.decoding(body, lm, prompt_tokens, max_new_tokens=1)
    if body.top_n > svc.settings.top_n_cap:
        raise DecodingError("top_n", f"top_n is {body.top_n}; this server returns at most "
                                     f"{svc.settings.top_n_cap} candidates")
    ids = engine.prompt_ids(lm, prompt_tokens, body.tokens, 1)
    with svc.admission.slot():
        return await svc.admission.run(engine.next_distribution, lm, ids, config, body.top_n)


@v1.post("/beam", summary="Beam search with its tree: every hypothesis kept, finished or pruned")
async def beam(body: BeamRequest, svc: ServiceDep) -> dict[str, Any]:
    lm = svc.pick(body.model)
    svc.check_prompt(body.prompt)
    prompt_tokens = lm.tokenizer.encode(body.prompt)
    config = svc.decoding(body, lm, prompt_tokens, strategy="beam")
    if config.strategy != "beam":
        raise DecodingError("strategy", f"/v1/beam runs beam search, not {config.strategy!r}; leave "
                                        "strategy out or set it to 'beam'")
    ids = engine.prompt_ids(lm, prompt_tokens, (), config.max_new_tokens)
    with svc.admission.slot():
        return await svc.admission.run(engine.beam_tree, lm, ids, config)


@v1.post("/attention", summary="A Transformer's causal mask and attention weights over a text")
async def attention(body: AttentionRequest, svc: ServiceDep) -> dict[str, Any]:
    lm = svc.pick(body.model)
    svc.check_prompt(body.prompt)
    ids = engine.prompt_ids(lm, lm.tokenizer.encode(body.prompt), body.tokens, None)
    with svc.admission.slot():
        return await svc.admission.run(engine.attention_view, lm, ids, svc.settings.attention_tokens)


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


def _sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event: ``event: NAME`` and one ``data:`` line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _install_error_handlers(app: FastAPI) -> None:
    """Every error as {"detail": one line} with a 4xx status (503 when busy)."""

    def answer(status: int, detail: str, **extra: Any) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": _one_line(detail), **extra}, status_code=status, headers=headers)

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, e: ServeError) -> JSONResponse:
        return answer(e.status, str(e))

    @app.exception_handler(DecodingError)
    async def decoding_error(request: Request, e: DecodingError) -> JSONResponse:
        message = str(e)
        return answer(422, message if e.field in message else f"{e.field}: {message}", field=e.field)

    @app.exception_handler(ArlmError)
    async def arlm_error(request: Request, e: ArlmError) -> JSONResponse:
        return answer(422, str(e))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        first = errors[0] if errors else {"type": "", "loc": (), "msg": "invalid request"}
        if first["type"] == "json_invalid":
            return answer(400, f"malformed JSON body: {first.get('ctx', {}).get('error', first['msg'])}")
        loc = [str(p) for p in first["loc"] if p != "body"]
        field = ".".join(loc) or "body"
        if first["type"] == "extra_forbidden":
            return answer(422, f"unknown field {field!r}; see the request schema at /docs", field=field)
        if first["type"] == "missing":
            return answer(422, f"{field} is required", field=field)
        if first["type"] in ("model_attributes_type", "dict_type"):
            return answer(422, "the body must be a JSON object", field=field)
        return answer(422, f"{field}: {first['msg']}", field=field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return answer(e.status_code, str(e.detail))

