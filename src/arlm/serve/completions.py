"""OpenAI's legacy completions on arlm's generation path: each choice is one generation opened with
:meth:`Service.generation <arlm.serve.service.Service.generation>` and read with
:meth:`Service.next_events <arlm.serve.service.Service.next_events>`, the very calls ``POST
/v1/generate`` makes: a row of the model's continuous batch (:mod:`arlm.serve.batcher`), or with
``arlm serve --no-batching`` a :class:`~arlm.serve.engine.TokenStream` on a worker. Either way a choice
with seed s gives the tokens ``/v1/generate`` (and ``arlm generate``) give with seed s.

What OpenAI's shape adds to a generation is here:

* :class:`StopText` — the text a client may see: cut before the first stop string (OpenAI leaves it
  out; arlm keeps it), and while streaming, an end that may still become a stop string held back;
* log-probabilities in the legacy shape (``tokens``, ``token_logprobs``, ``top_logprobs``,
  ``text_offset``): a prompt's (``echo``) from one teacher-forced forward, a completion's token by
  token from :class:`NextTokenLogprobs`, a second incremental pass over the same tokens (the
  generation's own distribution is not kept), so each streamed chunk carries its token's numbers;
* :class:`Choice` — one choice, advanced by :meth:`Choice.step` (the next token, and those the batch
  has already made for it), and :func:`rounds`, which advances every live choice of a request
  together (their generations open at once, so the batch decodes them in one step).

Every log-probability is log p(token | prefix) under the model, before temperature or truncation (as
``/v1/generate`` reports it); ``top_logprobs`` holds the ``logprobs`` most likely tokens and the chosen
one. A token's text is what it adds in context, so the tokens of a choice join to its text (the token
that completes a stop string is listed whole, though the text stops before the stop string).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import torch
from fastapi import Request

from arlm.data.detokenize import IncrementalDetokenizer
from arlm.data.tokenizers import Tokenizer
from arlm.decode.config import DecodingConfig
from arlm.decode.fast import fast_decoder
from arlm.serve.engine import Generation, is_special, num, token_text
from arlm.serve.models import LoadedModel
from arlm.serve.service import Service

FINISH = {"eos": "stop", "stop_string": "stop", "length": "length"}  # arlm's stop reason -> OpenAI's
ABORT = "abort"  # a choice ended early (the server shut down), as vLLM reports it
CONTEXT_TOKENS = 4  # tokens before a candidate decoded with it, to show its text in context
SEED_SPAN = 2**64  # seeds are 64-bit: seed + i wraps around


def choice_seed(seed: int, index: int) -> int:
    """The seed of choice ``index`` (0-based) of a request with ``seed``: seed + index, wrapped into
    DecodingConfig's range, so choice 0 is what ``/v1/generate`` gives with ``seed``."""
    s = seed + index
    return s - SEED_SPAN if s >= SEED_SPAN else s


# ---------------------------------------------------------------------------------------------
# Stop strings, as OpenAI applies them
# ---------------------------------------------------------------------------------------------


class StopText:
    """A completion's visible text, piece by piece: cut before the first occurrence of any stop
    string, and holding back the longest end that is a proper prefix of one (it may still become
    one). The pieces :meth:`add` and :meth:`flush` return join to the completion cut before its first
    stop string (or all of it when none occurs)."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.longest = max((len(s) for s in stops), default=0)
        self.text = ""  # everything added, cut at the stop string once found
        self.sent = 0  # characters of text already returned
        self.stopped = False

    def add(self, piece: str) -> str:
        """Append ``piece`` -> the text that may now be shown."""
        if self.stopped:
            return ""
        self.text += piece
        if not self.stops:
            return self.flush()
        start = max(0, self.sent - self.longest)  # an earlier stop string would have been found
        found = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
        if found:
            self.text, self.stopped = self.text[:min(found)], True
            return self.flush()
        hold = next((k for k in range(min(self.longest - 1, len(self.text) - self.sent), 0, -1)
                     if any(s.startswith(self.text[-k:]) for s in self.stops)), 0)
        shown = self.text[self.sent:len(self.text) - hold]
        self.sent += len(shown)
        return shown

    def flush(self) -> str:
        """The end of the completion: what was held back."""
        rest = self.text[self.sent:]
        self.sent = len(self.text)
        return rest


# ---------------------------------------------------------------------------------------------
# Log-probabilities in the legacy shape
# ---------------------------------------------------------------------------------------------


def candidate_text(tok: Tokenizer, before: list[int], token: int) -> str:
    """The text ``token`` would add after the tokens ``before`` (its last few decoded with it)."""
    if is_special(tok, token):
        return tok.id_to_token(token)
    context = [t for t in before if not is_special(tok, t)][-CONTEXT_TOKENS:]
    head, full = tok.decode(context), tok.decode([*context, token])
    return full[len(head):] if full.startswith(head) else token_text(tok, token)


def top_entries(tok: Tokenizer, row: torch.Tensor, before: list[int], k: int, chosen: int,
                chosen_text: str) -> dict[str, float]:
    """The ``k`` most likely tokens of ``row`` (V,) log-probs, and the chosen one, as {text: log p}
    (the chosen token under ``chosen_text``; a text shared by two tokens keeps the likelier)."""
    finite = int(torch.isfinite(row).sum())
    best = row.topk(min(k, finite)).indices.tolist() if k and finite else []
    out: dict[str, float] = {}
    for t in sorted({*best, chosen}, key=lambda t: -float(row[t])):
        value = num(row[t])
        key = chosen_text if t == chosen else candidate_text(tok, before, t)
        if value is not None and key not in out:
            out[key] = value
    return out


@dataclass
class LogprobsPart:
    """The legacy ``logprobs`` lists of some tokens (a chunk's, or a whole choice's)."""

    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)

    def extend(self, other: LogprobsPart) -> None:
        for name in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
            getattr(self, name).extend(getattr(other, name))

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "token_logprobs": self.token_logprobs,
                "top_logprobs": self.top_logprobs, "text_offset": self.text_offset}


@torch.inference_mode()
def prompt_logprobs(lm: LoadedModel, ids: list[int], k: int, offset: int = 0) -> LogprobsPart:
    """The prompt's tokens ``ids[1:]`` (after [SOS]) with log p(x_t | x_<t), the ``k`` most likely
    tokens at each position, and text offsets from ``offset``: one teacher-forced forward."""
    tok, part = lm.tokenizer, LogprobsPart()
    if len(ids) < 2:
        return part
    logp = lm.model.log_probs(torch.tensor([ids]))[0].double()  # (T, V)
    pieces = IncrementalDetokenizer(tok)
    texts = [pieces.add(t) for t in ids[1:]]
    texts[-1] += pieces.flush()
    for t, (token, text) in enumerate(zip(ids[1:], texts, strict=True)):
        row = logp[t]  # (V,): p(· | ids[:t+1])
        part.tokens.append(text)
        part.token_logprobs.append(num(row[token]))
        part.top_logprobs.append(top_entries(tok, row, ids[:t + 1], k, token, text))
        part.text_offset.append(offset)
        offset += len(text)
    return part


class NextTokenLogprobs:
    """The model's distribution after a prompt and each generated token, one token at a time (an
    incremental pass beside the generation's: its log p of each chosen token, and the ``k`` likeliest)."""

    def __init__(self, lm: LoadedModel, ids: list[int], k: int) -> None:
        self.lm, self.ids, self.k = lm, list(ids), k
        self.model = fast_decoder(lm.model, True)
        self.state: Any = None
        self.logp: torch.Tensor | None = None  # (V,) p(· | ids)
        self.unfed: list[int] = list(ids)  # ids not yet given to the model

    @torch.inference_mode()
    def add(self, token: int, text: str) -> tuple[float | None, dict[str, float]]:
        """The next token ``token`` (its text ``text``) -> (log p(token | ids), top entries); then
        ``token`` is appended to ``ids`` (fed to the model at the next call)."""
        if self.unfed:
            if self.state is None:
                self.state = self.model.start(1)
            logp, self.state = self.model.step(torch.tensor([self.unfed]), self.state)  # (1, V)
            self.logp, self.unfed = logp[0].double(), []
        assert self.logp is not None
        out = num(self.logp[token]), top_entries(self.lm.tokenizer, self.logp, self.ids, self.k, token, text)
        self.ids.append(token)
        self.unfed = [token]
        return out

    def add_all(self, tokens: list[tuple[int, str]]) -> list[tuple[float | None, dict[str, float]]]:
        """:meth:`add` for each (token, text) in order (one worker job for the tokens of a step)."""
        return [self.add(token, text) for token, text in tokens]


# ---------------------------------------------------------------------------------------------
# One choice, token by token
# ---------------------------------------------------------------------------------------------


@dataclass
class Delta:
    """What one step adds to a choice: text, its tokens' log-probs (None: not asked), and the finish
    reason once it has ended."""

    index: int
    text: str = ""
    logprobs: LogprobsPart | None = None
    finish_reason: str | None = None


class Choice:
    """One choice of a completion: ``prompt_text`` / ``ids`` ([SOS] + the prompt's ids) continued
    with ``config`` (None: no new tokens, ``max_tokens`` 0), ``logprobs`` the number of likeliest
    tokens to report (None: no log-probs)."""

    def __init__(self, index: int, lm: LoadedModel, prompt_text: str, ids: list[int],
                 config: DecodingConfig | None, logprobs: int | None, echo: bool) -> None:
        self.index, self.lm, self.prompt_text, self.ids = index, lm, prompt_text, ids
        self.logprobs, self.echo, self.config = logprobs, echo, config
        self.gen: Generation | None = None  # opened by open(): a batch row, or a TokenStream
        self.visible = StopText(config.stop_strings if config is not None else ())
        self.next_logprobs = (NextTokenLogprobs(lm, ids, logprobs)
                              if logprobs is not None and config is not None else None)
        self.offset = len(prompt_text) if echo else 0  # where the next token's text starts
        self.generated = 0  # new tokens ([EOS] included)
        self.finish_reason: str | None = None if config is not None else "length"

    def open(self, svc: Service) -> None:
        """Start the generation (on the event loop): it joins the model's batch at its next step."""
        if self.config is not None:
            self.gen = svc.generation(self.lm, self.ids, self.config)

    async def first(self, svc: Service, request: Request, deadline: float) -> Delta:
        """The prompt as the choice's first text (``echo``), with its log-probs when asked."""
        delta = Delta(self.index, text=self.prompt_text if self.echo else "")
        if self.logprobs is not None:
            delta.logprobs = LogprobsPart()
            if self.echo:
                delta.logprobs = await svc.work(request, prompt_logprobs, self.lm, self.ids,
                                                self.logprobs, 0, deadline=deadline)
        if self.config is None:  # max_tokens 0: nothing to generate
            delta.finish_reason = self.finish_reason
        return delta

    async def step(self, svc: Service, request: Request, deadline: float) -> Delta:
        """The next token and those already made after it (the calls ``/v1/generate`` makes) -> their
        Delta; the last one says why the choice ended. Tokens after the one that completes a stop
        string are dropped (the generation is ended)."""
        assert self.gen is not None
        events = await svc.next_events(request, self.gen, deadline)
        delta = Delta(self.index, logprobs=LogprobsPart() if self.logprobs is not None else None)
        if not events:
            delta.text = self.visible.flush()
            self.finish_reason = delta.finish_reason = FINISH.get(self.gen.stop_reason or "", ABORT)
            return delta
        used: list[tuple[dict[str, Any], int]] = []  # (event, its text's offset)
        pieces = []
        for event in events:
            used.append((event, self.offset))
            self.offset += len(event["text"])
            pieces.append(self.visible.add(event["text"]))
            if self.visible.stopped:
                break
        delta.text = "".join(pieces)
        svc.stats["tokens"] += len(used)
        self.generated += len(used)
        scored = [(e, offset) for e, offset in used if not e["special"]]
        if delta.logprobs is not None and scored:
            assert self.next_logprobs is not None
            numbers = await svc.work(request, self.next_logprobs.add_all,
                                     [(e["id"], e["text"]) for e, _ in scored], deadline=deadline)
            delta.logprobs.extend(LogprobsPart([e["text"] for e, _ in scored], [n[0] for n in numbers],
                                               [n[1] for n in numbers], [offset for _, offset in scored]))
        if self.visible.stopped:  # OpenAI's stop: the text ends before the stop string
            self.close(svc, "stop_string")
            self.finish_reason = delta.finish_reason = "stop"
        return delta

    def close(self, svc: Service, reason: str) -> None:
        """End the generation now (a batch row leaves at the next step; a TokenStream's model state
        is freed on a worker)."""
        if self.gen is not None:
            svc.end(self.gen, reason)

    def abort(self) -> Delta:
        """End the choice early (the server is shutting down): its last Delta."""
        if self.gen is not None:
            self.gen.close("shutdown")
        self.finish_reason = ABORT
        return Delta(self.index, text=self.visible.flush(), finish_reason=ABORT)


async def rounds(svc: Service, request: Request, choices: list[Choice],
                 deadline: float) -> AsyncIterator[list[Delta]]:
    """Every choice advanced together, a :meth:`Choice.step` each a round (its next token, and those
    its batch row has already made) -> each round's Deltas (the first round also holds the echoed
    prompts). When the server starts shutting down, the live choices end
    with finish reason "abort"."""
    for c in choices:  # every generation opened before any waits: they join the batch together
        c.open(svc)
    first = [await c.first(svc, request, deadline) for c in choices]
    while True:
        live = [c for c in choices if c.finish_reason is None]
        if not live:
            if first:
                yield first
            return
        if svc.admission.stopping:
            yield [*first, *(c.abort() for c in live)]
            return
        tasks = [asyncio.ensure_future(c.step(svc, request, deadline)) for c in live]
        try:
            steps = await asyncio.gather(*tasks)
        finally:  # one failed (or the request was cancelled): the others stop too
            for task in tasks:
                task.cancel()
        yield [*first, *steps]
        first = []
