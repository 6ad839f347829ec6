"""What every route of the app needs, as one object: the models, the limits, the worker pool, the
continuous batches and the counters, with the checks that come before any model work (the API key,
the model's name, the prompt's size, the decoding settings against the server's caps),
:meth:`Service.work`, which runs model work on a worker within the request's time limit and cancels
it when the client leaves, and the generation of text token by token: :meth:`Service.generation`
opens one (a row of the model's continuous batch, :mod:`arlm.serve.batcher`, or, when the batch
cannot take it or batching is off, a :class:`~arlm.serve.engine.TokenStream` on a worker),
:meth:`Service.next_event` waits for its next token within the time limit, :meth:`Service.complete`
for all of them, and :meth:`Service.end` stops it early.

:func:`arlm.serve.app.create_app` makes one :class:`Service` per app and keeps it in
``app.state.service``; each route receives it as a FastAPI dependency.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request

from arlm.decode.batched import batchable
from arlm.decode.config import DecodingConfig, DecodingError
from arlm.serve.batcher import BatchedStream, Batcher
from arlm.serve.engine import Generation, TokenStream
from arlm.serve.limits import Admission, Cancel, ServeError, ServeSettings
from arlm.serve.models import LoadedModel

DEFAULT_NEW_TOKENS = 100  # max_new_tokens when a request leaves it out (capped by the server's limit)
DISCONNECT_POLL_S = 0.1  # how often a waiting request checks that its client is still there
CLIENT_GONE = 499  # the status of an answer nobody reads (the client left); nginx's convention
T = TypeVar("T")


class Service:
    """The server's state and its request checks (no HTTP routing here)."""

    def __init__(self, models: dict[str, LoadedModel], settings: ServeSettings) -> None:
        if not models:
            raise ServeError(500, "no models to serve")
        self.models, self.settings = models, settings
        self.admission = Admission(settings.queue, settings.workers)
        self.stats = {"requests": 0, "tokens": 0, "streams_done": 0, "streams_cancelled": 0}
        self.batchers: dict[str, Batcher | None] = {}  # model name -> its batch (None: not batched)

    def close(self) -> None:
        """Shut down: the batch threads stop after their current step, then the workers."""
        for batcher in self.batchers.values():
            if batcher is not None:
                batcher.close()
        self.admission.close()

    def check_key(self, request: Request) -> None:
        """401 unless the request carries the API key (when the server has one)."""
        if self.settings.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), self.settings.api_key.encode()):
            raise ServeError(401, "missing or wrong API key; send it as `Authorization: Bearer KEY` "
                                  "or `X-API-Key: KEY`")

    def pick(self, name: str | None) -> LoadedModel:
        """The model a request names (404 for an unknown name), or the first one; counts the request."""
        self.stats["requests"] += 1
        if name is None:
            return next(iter(self.models.values()))
        if name not in self.models:
            raise ServeError(404, f"unknown model {name!r}; this server has {', '.join(self.models)} "
                                  "(GET /v1/models)")
        return self.models[name]

    def prompt(self, body: Any) -> tuple[LoadedModel, list[int]]:
        """The model a request names and its prompt, checked against the cap and encoded once."""
        lm = self.pick(body.model)
        self.check_prompt(body.prompt)
        return lm, lm.tokenizer.encode(body.prompt)

    def check_prompt(self, text: str, field: str = "prompt") -> None:
        """413 for a prompt (or scored text) over the server's cap."""
        if len(text) > self.settings.max_prompt_chars:
            raise ServeError(413, f"{field} is {len(text):,} characters; this server accepts at most "
                                  f"{self.settings.max_prompt_chars:,} (--max-prompt-chars)")

    def decoding(self, body: Any, lm: LoadedModel, prompt_tokens: list[int],
                 **defaults: Any) -> DecodingConfig:
        """The request's DecodingConfig: ``defaults`` for the fields it left out; a max_new_tokens
        left out fits the model's context after the prompt (``prompt_tokens``, its ids); the server's
        caps checked."""
        settings = self.settings
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

    # ----- generation, token by token ---------------------------------------------------------------

    def batcher(self, lm: LoadedModel) -> Batcher | None:
        """The model's continuous batch (started on first use), or None when batching is off or the
        model does not batch."""
        if lm.name not in self.batchers:
            ok = self.settings.batching and batchable(lm.model) is None
            self.batchers[lm.name] = Batcher(lm, self.settings.max_batch) if ok else None
        return self.batchers[lm.name]

    def generation(self, lm: LoadedModel, ids: list[int], config: DecodingConfig) -> Generation:
        """A sampling or greedy generation of ``ids`` under ``config``: a row of the model's batch when
        it can take it (one sample, not beam search), else a TokenStream (called on the event loop)."""
        batcher = self.batcher(lm)
        if batcher is not None and config.strategy != "beam" and config.sequences_per_prompt == 1:
            return batcher.open(ids, config)
        return TokenStream(lm, ids, config)

    async def next_event(self, request: Request, gen: Generation, deadline: float) -> dict[str, Any] | None:
        """``gen``'s next token event, or None once it has stopped; out of time: 504 (the generation is
        stopped); the client gone: 499."""
        if isinstance(gen, TokenStream):
            return await self.work(request, gen.advance, deadline=deadline)
        assert isinstance(gen, BatchedStream)
        loop = asyncio.get_running_loop()
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self._out_of_time()
                got, event = await gen.next_event(min(remaining, DISCONNECT_POLL_S))
                if got:
                    return event
                if await request.is_disconnected():
                    raise ServeError(CLIENT_GONE, "the client closed the connection")
        except BaseException:
            gen.close("cancelled")  # its row leaves the batch at the next step
            raise

    async def next_events(self, request: Request, gen: Generation, deadline: float) -> list[dict[str, Any]]:
        """:meth:`next_event` and every later event already made (a batch row may run ahead of its
        client; they go out in one write); [] once the generation has stopped."""
        event = await self.next_event(request, gen, deadline)
        if event is None:
            return []
        return [event, *gen.ready()] if isinstance(gen, BatchedStream) else [event]

    async def complete(self, request: Request, gen: Generation, cancel: Cancel) -> None:
        """Every token of ``gen``, within the request's time limit (``cancel`` stops a TokenStream)."""
        if isinstance(gen, TokenStream):
            await self.work(request, gen.run, cancel, cancel=cancel)
            return
        deadline = self.deadline()
        while await self.next_event(request, gen, deadline) is not None:
            pass

    def end(self, gen: Generation, reason: str) -> None:
        """Stop ``gen`` early (its client left): a batch row leaves at the next step; a TokenStream is
        closed on a worker, after the step it may be running."""
        if isinstance(gen, TokenStream):
            self.admission.submit(gen.close, reason)
        else:
            gen.close(reason)

    def _out_of_time(self) -> ServeError:
        return ServeError(504, f"the request took longer than this server's time limit of "
                               f"{self.settings.request_timeout:g} s (--request-timeout) and was "
                               "cancelled; ask for fewer tokens or beams")

    def deadline(self) -> float:
        """When a request that starts now runs out of time (the event loop's clock)."""
        return asyncio.get_running_loop().time() + self.settings.request_timeout

    async def work(self, request: Request, fn: Callable[..., T], *args: Any, cancel: Cancel | None = None,
                   deadline: float | None = None) -> T:
        """``fn(*args)`` on a worker thread, awaited until ``deadline`` (default: the request's time
        limit from now). Out of time: ``cancel`` is set (the work stops at its next step; a job still
        queued never starts) and the request is answered 504. A client that leaves cancels it too."""
        loop = asyncio.get_running_loop()
        deadline = self.deadline() if deadline is None else deadline
        future = asyncio.ensure_future(self.admission.run(fn, *args))
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self._out_of_time()
                done, _ = await asyncio.wait({future}, timeout=min(remaining, DISCONNECT_POLL_S))
                if done:
                    return future.result()
                if await request.is_disconnected():
                    raise ServeError(CLIENT_GONE, "the client closed the connection")
        finally:
            if not future.done():
                if cancel is not None:
                    cancel.set()
                future.cancel()


def get_service(request: Request) -> Service:
    """The app's :class:`Service` (a FastAPI dependency)."""
    return request.app.state.service


def check_key(request: Request) -> None:
    """The API-key check as a FastAPI dependency of every /v1 route."""
    get_service(request).check_key(request)
