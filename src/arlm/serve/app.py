"""The HTTP application: the JSON API under /v1, its documentation at /docs, and the playground at /.

Beside arlm's own routes (below), the app includes OpenAI's (:mod:`arlm.serve.openai_api`:
``GET /v1/models``, ``POST /v1/completions``, with OpenAI's error shape on those paths) and
``GET /metrics`` with an access log line per request (:mod:`arlm.serve.metrics`).

:func:`create_app` takes models that are already loaded (``arlm serve`` loads them once, at start)
and the server's :class:`~arlm.serve.limits.ServeSettings`, and keeps them in one
:class:`~arlm.serve.service.Service`. The routes are plain functions of one router: each receives
the service as a dependency, parses, checks limits, and hands the model work to
:mod:`arlm.serve.engine` on worker threads (:class:`~arlm.serve.limits.Admission`).

Errors are answered as ``{"detail": "one line"}`` (:class:`~arlm.serve.schemas.ErrorBody`) with a
4xx status, never a 500: an unknown model is 404, a bad decoding setting 422 naming the field
(``DecodingError.field``), a prompt over the cap 413, malformed JSON 400, a body that is not
``application/json`` 415, a wrong or missing API key 401, a full queue 503, a request over its time
limit 504. Every other :class:`~arlm.errors.ArlmError` the library raises (a prompt longer than the
model's context, …) is 422. Each route declares the statuses it can answer (``responses=``), so the
OpenAPI document is the contract the answers keep (tests/serve/test_contract.py checks it).

Requiring JSON bodies keeps other web pages from making the server work with a plain cross-site
form or text POST (a JSON POST from another origin needs CORS, off unless ``cors_origins`` names
origins).

Streaming (``"stream": true``) answers with server-sent events::

    event: start   data: {"model", "prompt", "config"}
    event: token   data: {"index", "id", "text", "logprob", "prob", "special"}    (one per token)
    event: done    data: {"stop_reason", "text", "completion", "num_tokens"}

    event: error   data: {"detail"}                                              (instead of done)

Between tokens the server checks whether the client is still there; if not, the generation stops.
When the server shuts down, running streams end after their current token with stop reason "shutdown".
A stream past the time limit ends with an error event.
"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from arlm.decode.config import DecodingError
from arlm.errors import ArlmError
from arlm.serve import engine, metrics, openai_api
from arlm.serve.limits import Cancel, ServeError, ServeSettings
from arlm.serve.models import LoadedModel
from arlm.serve.schemas import (
    AttentionRequest,
    BeamRequest,
    ErrorBody,
    GenerateRequest,
    NextRequest,
    ScoreRequest,
)
from arlm.serve.service import Service, check_key, get_service

STATIC = resources.files("arlm.serve") / "static"


def create_app(models: dict[str, LoadedModel], settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``models`` (loaded once) under ``settings``' limits."""
    service = Service(models, settings or ServeSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()  # clean shutdown: no new work, running steps and jobs finish, threads stop

    app = FastAPI(title="arlm", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Autoregressive language models: generate, stream, score, and look inside "
                              "decoding (next-token distributions, beam trees, causal attention).")
    app.state.service = service
    app.state.models, app.state.settings = service.models, service.settings
    app.state.admission, app.state.stats = service.admission, service.stats
    app.state.metrics = metrics.Metrics(service)
    _install_error_handlers(app)
    app.include_router(openai_api.router)
    app.include_router(v1)
    app.include_router(metrics.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_api_route("/", playground, include_in_schema=False)
    app.add_api_route("/docs", api_docs, include_in_schema=False)
    app.add_middleware(RequireJSON)
    app.add_middleware(openai_api.OpenAIErrors)  # outside RequireJSON: its 415 in OpenAI's shape too
    openai_api.declare_openai_errors(app)
    if service.settings.cors_origins:  # the outermost but one, so it answers preflights
        app.add_middleware(CORSMiddleware, allow_origins=list(service.settings.cors_origins),
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key"])
    app.add_middleware(metrics.Observe, metrics=app.state.metrics)  # sees every answer as sent
    return app


async def playground() -> FileResponse:
    """The playground page."""
    return FileResponse(str(STATIC / "index.html"))


async def api_docs(request: Request) -> HTMLResponse:
    """The API's operations, listed from the OpenAPI document, on a page that loads nothing from
    elsewhere (Swagger UI would come from a CDN and stay blank offline)."""
    document = request.app.openapi()
    rows = "".join(
        f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
        f"<td>{html.escape(op.get('summary', ''))}</td></tr>"
        for path, operations in document["paths"].items() for method, op in operations.items())
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>arlm API</title>"
        "<link rel=stylesheet href=/static/style.css></head><body><main>"
        f"<h1>arlm API</h1><p>{html.escape(document['info'].get('description', ''))}</p>"
        "<p>The whole contract (every request field with its help text and bounds, every answer and "
        "error) is the OpenAPI document at <a href=/openapi.json>/openapi.json</a>: open it in any "
        "OpenAPI viewer or client generator. This page loads nothing from other sites.</p>"
        f"<table><tr><th>method</th><th>path</th><th>what</th></tr>{rows}</table>"
        "<p>See docs/serving.md.</p></main></body></html>")


class RequireJSON:
    """ASGI middleware: a POST to the API must carry ``Content-Type: application/json`` (415 otherwise),
    so a web page elsewhere cannot make the server work with a plain form or text POST."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/v1/"):
            headers = dict(scope["headers"])
            media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if media != b"application/json" and not (media.startswith(b"application/")
                                                      and media.endswith(b"+json")):
                shown = media.decode("latin-1") or "none"
                response = JSONResponse({"detail": f"the body must be JSON sent with Content-Type: "
                                                   f"application/json (got {shown})"}, status_code=415)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------

def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each status it may answer, with :class:`ErrorBody` and why."""
    return {status: {"model": ErrorBody, "description": ERRORS[status]} for status in statuses}


ERRORS = {
    400: "Malformed JSON.",
    401: "Missing or wrong API key (when the server has one).",
    404: "Unknown model.",
    413: "Prompt or text over the server's --max-prompt-chars.",
    415: "The body is not sent as application/json.",
    422: "A bad, missing or unknown field, named in `field`; settings the model or the server cannot "
         "honour (a prompt longer than the model's context, max_new_tokens over the cap, …).",
    503: "The server is busy (its --queue is full) or shutting down; retry.",
    504: "The request took longer than the server's --request-timeout; its work was cancelled.",
}
MODEL_WORK = (400, 401, 404, 413, 415, 422, 503, 504)  # what a POST that runs the model may answer
STREAM_CONTENT = {"text/event-stream": {"schema": {  # one server-sent event (stream=true)
    "type": "object", "required": ["event", "data"],
    "description": "Server-sent events: start, one token event per token, then done (or error).",
    "properties": {"event": {"type": "string", "enum": ["start", "token", "done", "error"]},
                   "data": {"type": "string", "contentMediaType": "application/json"}}}}}

v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_key)], responses=errors(401))
ServiceDep = Annotated[Service, Depends(get_service)]


@v1.get("/health", summary="Liveness, load and counters")
async def health(svc: ServiceDep) -> dict[str, Any]:
    return {"status": "ok", "active": svc.admission.active, "queue": svc.settings.queue, **svc.stats}


@v1.post("/generate", summary="Continue a prompt (JSON, or server-sent events with stream=true)",
         responses={200: {"content": STREAM_CONTENT}, **errors(*MODEL_WORK)})
async def generate(body: GenerateRequest, request: Request, svc: ServiceDep):
    lm, prompt_tokens = svc.prompt(body)
    config = svc.decoding(body, lm, prompt_tokens)
    if body.stream and config.strategy == "beam":
        raise DecodingError("stream", "stream: beam search finishes its hypotheses together; use "
                                      "stream=false or POST /v1/beam for the search tree")
    ids = engine.prompt_ids(lm, prompt_tokens, (), config.max_new_tokens)
    admission, cancel = svc.admission, Cancel()
    if config.strategy == "beam":
        with admission.slot():
            return await svc.work(request, engine.beam_result, lm, ids, config, cancel, cancel=cancel)
    if not body.stream:
        with admission.slot():
            tokens = svc.generation(lm, ids, config)
            await svc.complete(request, tokens, cancel)
            svc.stats["tokens"] += len(tokens.tokens)
            return tokens.result()
    admission.admit()
    deadline, tokens = svc.deadline(), None
    try:
        tokens = svc.generation(lm, ids, config)
        first = await svc.next_event(request, tokens, deadline)  # its errors are still a 4xx
    except BaseException:
        admission.release()
        if tokens is not None:  # out of time (or the client left) before the first token
            svc.end(tokens, "cancelled")
        raise
    return StreamingResponse(_events(request, svc, tokens, first, deadline), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(request: Request, svc: Service, tokens: engine.Generation, first: dict | None,
                  deadline: float):
    """The stream's server-sent events: start, one token event per token, done (or error: a bad step,
    or the time limit, ``deadline`` on the event loop's clock)."""
    admission, stats = svc.admission, svc.stats
    finished = False
    try:
        yield _sse("start", {"model": tokens.lm.name, "prompt": tokens.prompt_text,
                             "config": tokens.config.to_dict()})
        events = [first] if first is not None else []
        while events:
            stats["tokens"] += len(events)
            yield "".join(_sse("token", event) for event in events)  # those ready go out in one write
            if await request.is_disconnected():
                return
            if admission.stopping:  # shutting down: end this stream cleanly, now
                tokens.close("shutdown")
                break
            try:
                events = await svc.next_events(request, tokens, deadline)
            except ArlmError as e:
                yield _sse("error", {"detail": _one_line(str(e))})
                return
        result = tokens.result()
        yield _sse("done", {k: result[k] for k in ("stop_reason", "text", "completion", "num_tokens")})
        finished = True
    finally:
        if not finished:  # the client left (or the server stops): end the generation
            svc.end(tokens, "disconnected")
        admission.release()
        stats["streams_done" if finished else "streams_cancelled"] += 1


@v1.post("/score", summary="NLL, perplexity, bits/char and per-token log-probs of a text",
         responses=errors(*MODEL_WORK))
async def score(body: ScoreRequest, request: Request, svc: ServiceDep) -> dict[str, Any]:
    lm = svc.pick(body.model)
    svc.check_prompt(body.text, "text")
    with svc.admission.slot():
        return await svc.work(request, engine.score_text, lm, body.text)


@v1.post("/next", summary="The next-token distribution after a prefix, before and after the processors",
         responses=errors(*MODEL_WORK))
async def next_token(body: NextRequest, request: Request, svc: ServiceDep) -> dict[str, Any]:
    lm, prompt_tokens = svc.prompt(body)
    config = svc.decoding(body, lm, prompt_tokens, max_new_tokens=1)
    if body.top_n > svc.settings.top_n_cap:
        raise DecodingError("top_n", f"top_n is {body.top_n}; this server returns at most "
                                     f"{svc.settings.top_n_cap} candidates")
    ids = engine.prompt_ids(lm, prompt_tokens, body.tokens, 1)
    with svc.admission.slot():
        return await svc.work(request, engine.next_distribution, lm, ids, config, body.top_n)


@v1.post("/beam", summary="Beam search with its tree: every hypothesis kept, finished or pruned",
         responses=errors(*MODEL_WORK))
async def beam(body: BeamRequest, request: Request, svc: ServiceDep) -> dict[str, Any]:
    lm, prompt_tokens = svc.prompt(body)
    config = svc.decoding(body, lm, prompt_tokens, strategy="beam")
    if config.strategy != "beam":
        raise DecodingError("strategy", f"/v1/beam runs beam search, not {config.strategy!r}; leave "
                                        "strategy out or set it to 'beam'")
    ids = engine.prompt_ids(lm, prompt_tokens, (), config.max_new_tokens)
    cancel = Cancel()
    with svc.admission.slot():
        return await svc.work(request, engine.beam_tree, lm, ids, config, cancel, cancel=cancel)


@v1.post("/attention", summary="A Transformer's causal mask and attention weights over a text",
         responses=errors(*MODEL_WORK))
async def attention(body: AttentionRequest, request: Request, svc: ServiceDep) -> dict[str, Any]:
    lm, prompt_tokens = svc.prompt(body)
    ids = engine.prompt_ids(lm, prompt_tokens, body.tokens, None)
    with svc.admission.slot():
        return await svc.work(request, engine.attention_view, lm, ids, svc.settings.attention_tokens)


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

    def answer(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
        if status == 401:
            headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
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
            return answer(422, f"unknown field {field!r}; see the request schema at /openapi.json",
                          field=field)
        if first["type"] == "missing":
            return answer(422, f"{field} is required", field=field)
        if first["type"] in ("model_attributes_type", "dict_type"):
            return answer(422, "the body must be a JSON object", field=field)
        ctx = first.get("ctx", {})
        if first["type"] in ("too_long", "string_too_long"):
            what = "characters" if first["type"] == "string_too_long" else "entries"
            got = f", got {ctx['actual_length']:,}" if ctx.get("actual_length") is not None else ""
            most = f"at most {ctx['max_length']:,}" if ctx.get("max_length") is not None else "too many"
            return answer(422, f"{field}: {most} {what}{got}", field=field)
        return answer(422, f"{field}: {first['msg']}", field=field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return answer(e.status_code, str(e.detail), headers=e.headers)  # a 405 keeps its Allow header

