"""What the server allows: its settings (caps, API key, queue size) and the admission of requests.

Model work never runs on the event loop. Every request that needs the model first takes one of
``queue`` admission slots (a request that finds them all taken is answered 503 at once: a bounded
queue, not an unbounded wait), then hands its computations to a pool of ``workers`` threads, or, for
a sampling or greedy generation, to its model's continuous batch (:mod:`arlm.serve.batcher`: every
active stream one token further in one forward per step). With ``batching`` off, a streaming request
submits one job per token, so concurrent streams take turns token by token. The slot is released
when the response ends (finished, failed, or the client went away).

Each request also has a time limit (``request_timeout`` seconds): past it, or when its client has
gone, its :class:`Cancel` flag is set, and the model work, which checks the flag between steps
(tokens, beam-search steps), stops there; a job still waiting for a worker never starts.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from arlm.errors import ArlmError, ConfigError

T = TypeVar("T")


class ServeError(ArlmError):
    """A request the server refuses, with its HTTP status (4xx, or 503 when busy)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Cancelled(Exception):
    """Raised inside model work whose request was cancelled (out of time, or its client left)."""


class Cancel(threading.Event):
    """Set when a request's work must stop; the work calls :meth:`check` between its steps."""

    def check(self, *_: Any) -> None:
        """Raise :class:`Cancelled` once set (any arguments are ignored, so it can be a step hook)."""
        if self.is_set():
            raise Cancelled


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits; every cap is checked before any model work starts."""

    api_key: str | None = None  # required as `Authorization: Bearer KEY` or `X-API-Key: KEY`
    max_new_tokens_cap: int = 256  # max_new_tokens above this is refused (422)
    max_prompt_chars: int = 4000  # a prompt or scored text longer than this is refused (413)
    queue: int = 64  # requests admitted at once; one more is answered 503
    workers: int = 1  # threads that run model computations
    top_n_cap: int = 200  # /v1/next: candidates per answer at most
    num_beams_cap: int = 16  # /v1/beam and beam generation: K at most
    attention_tokens: int = 64  # /v1/attention: the first this many tokens are shown
    request_timeout: float = 60.0  # seconds a request may take; then its work is cancelled (504)
    cors_origins: tuple[str, ...] = field(default=())  # origins allowed cross-site (none: CORS off)
    batching: bool = True  # concurrent generations of one model decoded together (arlm.serve.batcher)
    max_batch: int = 64  # rows in one model's batch at most; more requests wait to join

    def __post_init__(self) -> None:
        for name in ("max_new_tokens_cap", "max_prompt_chars", "queue", "workers", "top_n_cap",
                     "num_beams_cap", "attention_tokens", "max_batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer ≥ 1, got {value!r}")
        timeout = self.request_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
                math.isfinite(timeout) and timeout > 0):
            raise ConfigError(f"request_timeout must be a number of seconds > 0, got {timeout!r}; "
                              "e.g. --request-timeout 60")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        for origin in self.cors_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ConfigError(f"--cors-origin {origin!r} is not an origin; give scheme and host, "
                                  "e.g. --cors-origin https://example.org")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("the API key is empty; pass a non-empty --api-key or none")


class Admission:
    """At most ``capacity`` requests in flight; their model work runs on ``workers`` threads.

    ``admit`` and ``release`` are called on the event loop only, so a plain counter suffices.
    """

    def __init__(self, capacity: int, workers: int) -> None:
        self.capacity = capacity
        self.active = 0
        self.stopping = False  # the server is shutting down: streams end after their current token
        self.closed = False
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="arlm-serve")

    def admit(self) -> None:
        """Take a slot, or raise 503 when all ``capacity`` are taken (or the server is stopping)."""
        if self.stopping or self.closed:
            raise ServeError(503, "the server is shutting down; retry on another instance")
        if self.active >= self.capacity:
            raise ServeError(503, f"the server is busy ({self.active} requests in progress, queue "
                                  f"size {self.capacity}); retry in a moment")
        self.active += 1

    def release(self) -> None:
        self.active -= 1

    @contextmanager
    def slot(self) -> Iterator[None]:
        """A slot for the duration of a ``with`` block (non-streaming requests)."""
        self.admit()
        try:
            yield
        finally:
            self.release()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` on a worker thread, not awaited (cleanup from a cancelled request)."""
        if not self.closed:
            self.executor.submit(fn, *args)

    def close(self) -> None:
        """Refuse new requests, drop queued jobs and wait for the running ones."""
        self.closed = True
        self.executor.shutdown(wait=True, cancel_futures=True)
