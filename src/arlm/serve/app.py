"""The HTTP application: the JSON API under /v1, its OpenAPI page at /docs, and the playground at /.

:func:`create_app` takes models that are already loaded (``arlm serve`` loads them once, at start)
and the server's :class:`~arlm.serve.limits.ServeSettings`. Routes only parse, check limits and
hand the model work to :mod:`arlm.serve.engine` on worker threads (:class:`~arlm.serve.limits.Admission`).

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

import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from arlm.decode.config import DecodingError
from arlm.errors import ArlmError
from arlm.serve import engine
from arlm.serve.limits import Admission, ServeError, ServeSettings
from arlm.serve.models import LoadedModel
from arlm.serve.schemas import AttentionRequest, BeamRequest, GenerateRequest, NextRequest, ScoreRequest

DEFAULT_NEW_TOKENS = 100  # max_new_tokens when a request leaves it out (capped by the server's limit)


def create_app(models: dict[str, LoadedModel], settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``models`` (loaded once) under ``settings``' limits."""
    settings = settings or ServeSettings()
    if not models:
        raise ServeError(500, "no models to serve")
    admission = Admission(settings.queue, settings.workers)
    stats = {"requests": 0, "tokens": 0, "streams_done": 0, "streams_cancelled": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        admission.close()  # clean shutdown: no new work, running jobs finish, threads stop

    app = FastAPI(title="arlm", version="1", lifespan=lifespan,
                  description="Autoregressive language models: generate, stream, score, and look inside "
                              "decoding (next-token distributions, beam trees, causal attention).")
    app.state.models, app.state.settings, app.state.admission, app.state.stats = \
        models, settings, admission, stats
    _install_error_handlers(app)

    # ----- helpers --------------------------------------------------------------------------

    def check_key(request: Request) -> None:
        if settings.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise ServeError(401, "missing or wrong API key; send it as `Authorization: Bearer KEY` "
                                  "or `X-API-Key: KEY`")

    def pick(name: str | None) -> LoadedModel:
        if name is None:
            return next(iter(models.values()))
        if name not in models:
            raise ServeError(404, f"unknown model {name!r}; this server has {', '.join(models)} "
                                  "(GET /v1/models)")
        return models[name]

    def check_prompt(text: str, field: str = "prompt") -> None:
        if len(text) > settings.max_prompt_chars:
            raise ServeError(413, f"{field} is {len(text):,} characters; this server accepts at most "
                                  f"{settings.max_prompt_chars:,} (--max-prompt-chars)")

    def decoding(body, lm: LoadedModel, prompt_tokens: list[int], **defaults: Any):
        """The request's DecodingConfig: ``defaults`` for the fields it left out; a max_new_tokens
        left out fits the model's context after the prompt (``prompt_tokens``, its ids); the server's
        caps checked."""
        if "max_new_tokens" not in body.model_fields_set and "max_new_tokens" not in defaults:
            room = DEFAULT_NEW_TOKENS
            if lm.block_size:
                used = 1 + len(prompt_tokens) + len(getattr(body, "tokens", []))
                room = lm.block_size + 1 - used
            defaults["max_new_tokens"] = max(1, min(DEFAULT_NEW_TOKENS, settings.max_new_tokens_cap, room))
        config = body.decoding(**defaults)
        if config.max_new_tokens > settings.max_new_tokens_cap:
            raise DecodingError("max_new_tokens", f"max_new_tokens is {config.max_new_tokens}; this "
                                f"server allows at most {settings.max_new_tokens_cap} (--max-new-tokens-cap)")
        if config.strategy == "beam" and config.num_beams > settings.num_beams_cap:
            raise DecodingError("num_beams", f"num_beams is {config.num_beams}; this server allows at "
                                             f"most {settings.num_beams_cap}")
        if config.strategy != "beam" and config.sequences_per_prompt != 1:
            raise DecodingError("num_samples", "the server returns one sample per request; send several "
                                               "requests with different seeds")
        return config

    # ----- the API --------------------------------------------------------------------------

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    @v1.get("/models", summary="The models this server holds")
    async def list_models() -> dict[str, Any]:
        return {"models": [lm.info() for lm in models.values()]}

    @v1.get("/health", summary="Liveness, load and counters")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "active": admission.active, "queue": settings.queue, **stats}

    @v1.post("/generate", summary="Continue a prompt (JSON, or server-sent events with stream=true)")
    async def generate(body: GenerateRequest, request: Request):
        stats["requests"] += 1
        lm = pick(body.model)
        check_prompt(body.prompt)
        prompt_tokens = lm.tokenizer.encode(body.prompt)
        config = decoding(body, lm, prompt_tokens)
        if body.stream and config.strategy == "beam":
            raise DecodingError("stream", "stream: beam search finishes its hypotheses together; use "
                                          "stream=false or POST /v1/beam for the search tree")
        ids = engine.prompt_ids(lm, prompt_tokens, (), config.max_new_tokens)
        if config.strategy == "beam":
            with admission.slot():
                return await admission.run(engine.beam_result, lm, ids, config)
        if not body.stream:
            with admission.slot():
                tokens = engine.TokenStream(lm, ids, config)
                await admission.run(tokens.run)
                stats["tokens"] += len(tokens.tokens)
                return tokens.result()
        admission.admit()
        try:
            tokens = engine.TokenStream(lm, ids, config)
            first = await admission.run(tokens.advance)  # errors of the first step are still a 4xx
        except BaseException:
            admission.release()
            raise
        return StreamingResponse(_events(request, tokens, first), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _events(request: Request, tokens: engine.TokenStream, first: dict | None):
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
    async def score(body: ScoreRequest) -> dict[str, Any]:
        stats["requests"] += 1
        lm = pick(body.model)
        check_prompt(body.text, "text")
        with admission.slot():
            return await admission.run(engine.score_text, lm, body.text)

    @v1.post("/next", summary="The next-token distribution after a prefix, before and after the processors")
    async def next_token(body: NextRequest) -> dict[str, Any]:
        stats["requests"] += 1
        lm = pick(body.model)
        check_prompt(body.prompt)
        prompt_tokens = lm.tokenizer.encode(body.prompt)
        config = decoding(body, lm, prompt_tokens, max_new_tokens=1)
        if body.top_n > settings.top_n_cap:
            raise DecodingError("top_n", f"top_n is {body.top_n}; this server returns at most "
                                         f"{settings.top_n_cap} candidates")
        ids = engine.prompt_ids(lm, prompt_tokens, body.tokens, 1)
        with admission.slot():
            return await admission.run(engine.next_distribution, lm, ids, config, body.top_n)

    @v1.post("/beam", summary="Beam search with its tree: every hypothesis kept, finished or pruned")
    async def beam(body: BeamRequest) -> dict[str, Any]:
        stats["requests"] += 1
        lm = pick(body.model)
        check_prompt(body.prompt)
        prompt_tokens = lm.tokenizer.encode(body.prompt)
        config = decoding(body, lm, prompt_tokens, strategy="beam")
        if config.strategy != "beam":
            raise DecodingError("strategy", f"/v1/beam runs beam search, not {config.strategy!r}; leave "
                                            "strategy out or set it to 'beam'")
        ids = engine.prompt_ids(lm, prompt_tokens, (), config.max_new_tokens)
        with admission.slot():
            return await admission.run(engine.beam_tree, lm, ids, config)

    @v1.post("/attention", summary="A Transformer's causal mask and attention weights over a text")
    async def attention(body: AttentionRequest) -> dict[str, Any]:
        stats["requests"] += 1
        lm = pick(body.model)
        check_prompt(body.prompt)
        ids = engine.prompt_ids(lm, lm.tokenizer.encode(body.prompt), body.tokens, None)
        with admission.slot():
            return await admission.run(engine.attention_view, lm, ids, settings.attention_tokens)

    app.include_router(v1)

    # ----- the playground -------------------------------------------------------------------

    static = resources.files("arlm.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(static / "index.html"))

    return app


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

