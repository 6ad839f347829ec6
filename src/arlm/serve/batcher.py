"""Continuous batching in the server: the generation requests for one model decoded together.

Each model that :func:`arlm.decode.batched.batchable` accepts gets one :class:`Batcher`: a thread that
runs a :class:`~arlm.decode.batched.ContinuousBatch` (one forward per step for every active stream),
started at its first request and stopped when the app shuts down. A request becomes a
:class:`BatchedStream`; the loop, between two steps,

1. drops the rows whose request was closed (the client left, the time limit passed, the server is
   stopping): a row leaves at the next step;
2. lets waiting requests join (prefilled, up to ``max_batch`` rows, and at most ``PREFILL_TOKENS``
   prompt tokens per step beyond the first request, so that a burst of long prompts does not stall the
   streams already running for long);
3. chooses every row's next token, hands each stream its token event (one
   ``loop.call_soon_threadsafe`` per step for all of them), then runs the step's one forward while the
   event loop sends the events.

A row's tokens are the ones it gets alone (greedy: the same; sampled: its own seed's draws), so a
request's answer does not depend on the traffic. Requests the batch cannot take (beam search, several
samples, a model that does not batch) keep the one-request path, :class:`~arlm.serve.engine.TokenStream`;
so does everything with ``arlm serve --no-batching`` (the scheduler before batching).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Any

from arlm.decode.batched import ContinuousBatch, Row, RowStep
from arlm.decode.config import DecodingConfig
from arlm.errors import ArlmError
from arlm.serve.engine import Generation
from arlm.serve.models import LoadedModel

PREFILL_TOKENS = 512  # prompt tokens prefilled between two steps (the first waiting request always joins)


class BatchedStream(Generation):
    """One request's generation as a row of its model's batch, read on the event loop.

    The batch thread makes its token events; :meth:`next_event` hands them out in order. :meth:`close`
    (from any thread) ends it: no more events, and its row leaves the batch at the next step.
    """

    def __init__(self, lm: LoadedModel, ids: list[int], config: DecodingConfig,
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(lm, ids, config)
        self.loop = loop
        self.closed = False  # read by the batch thread between steps
        self._items: deque[tuple] = deque()  # ("token", event, pending) | ("end", reason) | ("error", e)
        self._waiter: asyncio.Future | None = None

    def put(self, item: tuple) -> None:
        """Queue what the batch made for this stream (on the event loop)."""
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_event(self, timeout: float) -> tuple[bool, dict[str, Any] | None]:
        """Within ``timeout`` seconds: (True, the next token's event), (True, None) once the
        generation has stopped (``stop_reason`` says why), or (False, None) when nothing came. A
        failed step (every token excluded, …) raises its error."""
        if self.stop_reason is not None:
            return True, None
        if not self._items:
            self._waiter = self.loop.create_future()
            try:
                await asyncio.wait({self._waiter}, timeout=timeout)
            finally:
                self._waiter = None
            if not self._items:
                return False, None
        kind, *rest = self._items.popleft()
        if kind == "token":
            self.record(*rest)
            return True, rest[0]
        self.stop_reason = rest[0] if kind == "end" else "error"
        if kind == "error":
            raise rest[0]
        return True, None

    def ready(self) -> list[dict[str, Any]]:
        """The token events already made and not yet handed out, without waiting (the batch may run
        ahead of a client: they are sent together)."""
        out = []
        while self.stop_reason is None and self._items and self._items[0][0] == "token":
            _, event, pending = self._items.popleft()
            self.record(event, pending)
            out.append(event)
        return out

    def close(self, reason: str = "cancelled") -> None:
        """Stop early: its row leaves the batch at the next step."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.closed = True


class Batcher:
    """One model's continuous batch on its own thread (see the module docstring)."""

    def __init__(self, lm: LoadedModel, max_batch: int) -> None:
        tok = lm.tokenizer
        self.lm, self.max_batch = lm, max_batch
        self.batch = ContinuousBatch(lm.model, eos_id=tok.eos_id, pad_id=tok.pad_id, decode=tok.decode)
        self.steps = 0  # forwards run (one per step, whatever the number of rows)
        self._waiting: deque[BatchedStream] = deque()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"arlm-batch-{lm.name}", daemon=True)
        self._thread.start()

    @property
    def active(self) -> int:
        """Rows in the batch now."""
        return len(self.batch)

    @property
    def waiting(self) -> int:
        """Requests waiting to join."""
        return len(self._waiting)

    def open(self, ids: list[int], config: DecodingConfig) -> BatchedStream:
        """A stream for ``ids`` ([SOS] + prompt) under ``config``; it joins at the next step (called on
        the event loop)."""
        stream = BatchedStream(self.lm, ids, config, asyncio.get_running_loop())
        self._waiting.append(stream)
        self._wake.set()
        return stream

    def close(self) -> None:
        """Stop the thread after its current step and wait for it."""
        self._closed = True
        self._wake.set()
        self._thread.join()

    # ----- the batch thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.clear()
            if self._closed:
                return
            if not len(self.batch) and not self._waiting:
                self._wake.wait()
                continue
            try:
                self._one_step()
            except Exception as e:  # a broken step ends its streams, not the server
                self._fail_all(e)

    def _one_step(self) -> None:
        batch = self.batch
        gone = [row for row in batch.rows if row.tag.closed]
        if gone:
            batch.leave(gone)
        self._join()
        if not len(batch):
            return
        steps = batch.choose()
        self._deliver(steps)
        batch.forward()
        self.steps += 1

    def _join(self) -> None:
        """Let waiting streams join, within ``max_batch`` rows and the prefill budget."""
        rows: list[Row] = []
        budget = PREFILL_TOKENS
        while self._waiting and len(self.batch) + len(rows) < self.max_batch and (not rows or budget > 0):
            stream = self._waiting.popleft()
            if stream.closed:
                continue
            try:
                rows.append(self.batch.row(stream.prompt_ids, stream.config, tag=stream))
            except ArlmError as e:
                self._send({stream.loop: [(stream, ("error", e))]})
                continue
            budget -= len(stream.prompt_ids)
        if rows:
            try:
                self.batch.join(rows)
            except ArlmError as e:
                self._send(_by_loop((row.tag, ("error", e)) for row in rows))

    def _deliver(self, steps: list[RowStep]) -> None:
        items = []
        for s in steps:
            stream = s.row.tag
            if s.error is not None:
                items.append((stream, ("error", s.error)))
                continue
            event, pending = stream.make_event(s.token, s.log_prob, s.finished)
            items.append((stream, ("token", event, pending)))
            if s.finished:
                items.append((stream, ("end", s.row.stop_reason)))
        self._send(_by_loop(items))

    def _send(self, by_loop: dict[asyncio.AbstractEventLoop, list[tuple[BatchedStream, tuple]]]) -> None:
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is reading
                loop.call_soon_threadsafe(_put_all, items)

    def _fail_all(self, error: Exception) -> None:
        """An unexpected failure of a step: every stream of the batch ends with it; the batch starts
        afresh."""
        streams = [row.tag for row in self.batch.rows] + list(self._waiting)
        self._waiting.clear()
        self._send(_by_loop((s, ("error", error)) for s in streams))
        tok = self.lm.tokenizer
        self.batch = ContinuousBatch(self.lm.model, eos_id=tok.eos_id, pad_id=tok.pad_id, decode=tok.decode)


def _by_loop(items) -> dict[asyncio.AbstractEventLoop, list[tuple[BatchedStream, tuple]]]:
    out: dict[asyncio.AbstractEventLoop, list] = {}
    for stream, item in items:
        out.setdefault(stream.loop, []).append((stream, item))
    return out


def _put_all(items: list[tuple[BatchedStream, tuple]]) -> None:
    for stream, item in items:
        stream.put(item)
