"""Continuous batching: many sampling or greedy generations of one model decoded together, one forward
per step for every active row, rows joining and leaving between steps (vLLM's and TGI's scheduling).

A generation is a :class:`Row`: a prompt, its own :class:`~arlm.decode.config.DecodingConfig`
(temperature, top-k/p, min-p, penalties, bans, stop strings, max_new_tokens, seed) and what it has
produced. A :class:`ContinuousBatch` holds the active rows of one model and advances them together:

1. :meth:`~ContinuousBatch.join` prefills new rows (rows with prompts of one length in one forward,
   each apart from the rows already decoding) and appends them to the batch;
2. :meth:`~ContinuousBatch.choose` picks every row's next token from its pending log-probs
   log p(· | x_≤t) exactly as :func:`arlm.decode.search.stream` picks one row's: the row's processors
   on its own history, then the argmax (greedy) or a draw from softmax(P(log p)) with the row's own
   ``torch.Generator`` seeded with its seed; a row stops on [EOS], a stop string or its budget, and
   leaves the batch at once;
3. :meth:`~ContinuousBatch.forward` feeds every remaining row its token in **one** forward,
   (n, 1) tokens -> (n, V) log-probs;
4. between steps, :meth:`~ContinuousBatch.leave` drops rows whose client went away.

So a row's tokens do not depend on the other rows: a greedy row gives the tokens it gives alone, a
sampled row the tokens its seed gives alone (its generator is drawn from by it only), up to the order
of floating-point sums in a matrix product of n rows instead of one (the tests compare token for token).

The model's state per row:

* a Transformer (through :class:`~arlm.decode.fast.FastDecoder`'s lean forward): a KV cache per row in
  one pool (:class:`KVRows`), rows of different lengths side by side. Row b, at position L_b, writes its
  new key and value at L_b and attends over the pool's first max_b L_b + 1 positions with the mask

      A_b = softmax(q_b Kᵀ / √D + M_b),    M_b,j = 0 if j ≤ L_b, -inf otherwise

  (no mask when every row has the same length, as a lone row has none); a row that leaves is replaced
  by the last row (its filled positions copied), so the active rows are always the pool's first n;
* the RNNs (h and c), the window model (its last k tokens) and the n-gram (its last N-1 tokens): the
  state rows stacked along the state's batch dimension (:class:`StackedRows`).

Other models (σ-GPT, a Transformer with explicit attention) and other strategies (beam search,
speculative decoding, several samples per request) are not batched: :func:`batchable` says why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from arlm.decode.config import DecodingConfig
from arlm.decode.fast import FastDecoder, fast_decoder, split_heads
from arlm.decode.processors import BannedTokens, MinP, Temperature, TopK, TopP
from arlm.decode.search import STOP_EOS, STOP_LENGTH, STOP_STRING, StopStrings
from arlm.errors import ArlmError, ConfigError
from arlm.models.ngram import NGramState
from arlm.models.rnn import RNNState
from arlm.models.transformer import KVCache
from arlm.models.window import WindowState

STACKED_STATES = (RNNState, WindowState, NGramState)  # row-independent states on one batch dimension
HISTORY_FREE = (BannedTokens, Temperature, TopK, TopP, MinP)  # processors that never read the tokens


def batchable(model: Any) -> str | None:
    """None when :class:`ContinuousBatch` can decode ``model`` (a lean Transformer, an RNN, a window
    model, an n-gram), else why not."""
    if getattr(model, "family", None) == "sigma_gpt":  # its lean step exists, batched rows are untested
        return "σ-GPT is decoded one request at a time (its batched rows are not yet tested against it alone)"
    model = fast_decoder(model, True)
    if isinstance(model, FastDecoder):
        return None
    state = model.start(1)
    if isinstance(state, STACKED_STATES):
        return None
    return (f"a {type(model).__name__} keeps a {type(state).__name__}, which continuous batching does "
            "not stack; it is decoded one request at a time")


def draw(probs: Tensor, generators: Sequence[torch.Generator | None]) -> Tensor:
    """One token per row of ``probs`` (k, V) float64, row j drawn with ``generators[j]`` -> (k,) int64:
    the token ``torch.multinomial(probs[j:j+1], 1, generator=generators[j])`` draws, for every row.

    That is ATen's path for one sample, the exponential race (the Gumbel-max trick with exp applied):
    token = argmax_w p_w / q_w with q_w ~ Exp(1), i.i.d. from the row's generator, which picks w with
    probability p_w / Σ p. The exponentials are drawn row by row (each row's own generator, as
    alone), the race is run once for all rows: a fifth of the cost of k multinomial calls here.
    tests/decode/test_batched.py checks it against ``torch.multinomial``.
    """
    if probs.device.type != "cpu":  # another device's multinomial draws otherwise: call it row by row
        return torch.cat([torch.multinomial(probs[j:j + 1], 1, generator=g)[:, 0]
                          for j, g in enumerate(generators)])
    q = torch.empty_like(probs)  # (k, V)
    for j, generator in enumerate(generators):
        q[j].exponential_(1, generator=generator)
    return (probs / q).argmax(-1)


# ---------------------------------------------------------------------------------------------
# The model's state, row by row
# ---------------------------------------------------------------------------------------------


class StackedRows:
    """The state rows of a model whose state is a few tensors with one batch dimension and rows that
    never read each other (RNN: h, c (layers, n, H); window: (n, k); n-gram: (n, N-1))."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.state: Any = None  # None: no rows

    def add(self, state: Any) -> None:
        """Append the rows of ``state`` (a freshly prefilled state of the model's kind)."""
        if self.state is None:
            self.state = state
            return
        dim = getattr(type(state), "batch_dim", 0)
        joined = {f.name: None if getattr(self.state, f.name) is None else
                  torch.cat([getattr(self.state, f.name), getattr(state, f.name)], dim)
                  for f in dataclasses.fields(state)}
        self.state = type(state)(**joined)

    def select(self, keep: Tensor) -> None:
        """Keep rows ``keep`` (n',) in that order."""
        self.state = self.state.select(keep) if keep.numel() else None

    def step(self, tokens: Tensor) -> Tensor:
        """tokens (n, 1), one per row -> log p(next) (n, V)."""
        logp, self.state = self.model.step(tokens, self.state)
        return logp


class KVRows:
    """A Transformer's KV caches of the active rows, in one pool (n_layer, S, nh, block, hs) whose
    first n slots are the rows; each row has its own length (the positions it has filled)."""

    def __init__(self, decoder: FastDecoder) -> None:
        self.decoder = decoder
        self.config = decoder.config
        self.pool: KVCache | None = None
        self.lengths: list[int] = []  # filled positions of each active row

    def add(self, cache: KVCache) -> None:
        """Append the rows of ``cache`` (prefilled, one length for all its rows)."""
        k, n, L = cache.batch_size, len(self.lengths), cache.length
        if self.pool is None or n + k > self.pool.batch_size:
            self._grow(max(2 * n, n + k, 4))
        self.pool.k[:, n:n + k, :, :L] = cache.k[:, :, :, :L]
        self.pool.v[:, n:n + k, :, :L] = cache.v[:, :, :, :L]
        self.lengths += [L] * k

    def _grow(self, slots: int) -> None:
        old, n = self.pool, len(self.lengths)
        self.pool = KVCache.allocate(self.config, slots, self.decoder.lean.wte.dtype, self.decoder.device)
        if old is not None and n:
            end = max(self.lengths)
            self.pool.k[:, :n, :, :end] = old.k[:, :n, :, :end]
            self.pool.v[:, :n, :, :end] = old.v[:, :n, :, :end]

    def select(self, keep: Tensor) -> None:
        """Keep rows ``keep`` (n',) in that order: a slot j < n' takes row keep[j] (copied only where it
        moves, and only its filled positions)."""
        order = keep.tolist()
        lengths = [self.lengths[i] for i in order]
        if not order:  # no rows: the pool's memory goes back
            self.pool, self.lengths = None, []
            return
        k, v = self.pool.k, self.pool.v
        if all(src == j or src >= len(order) for j, src in enumerate(order)):  # moves from the tail
            for j, src in enumerate(order):
                if src != j:
                    L = self.lengths[src]
                    k[:, j, :, :L] = k[:, src, :, :L]
                    v[:, j, :, :L] = v[:, src, :, :L]
        else:
            end = max(lengths)
            index = keep.to(k.device)
            k[:, :len(order), :, :end] = k[:, :, :, :end].index_select(1, index)
            v[:, :len(order), :, :end] = v[:, :, :, :end].index_select(1, index)
        self.lengths = lengths

    def step(self, tokens: Tensor) -> Tensor:
        """tokens (n, 1), row b at position L_b -> log p(next) (n, V): the lean forward with each row's
        key and value written at its own position and the mask M_b (module docstring)."""
        n, nh, dec = tokens.shape[0], self.config.n_head, self.decoder
        if max(self.lengths) + 1 > self.config.block_size:
            raise ConfigError(f"a row would be {max(self.lengths) + 1} tokens long but the model's "
                              f"block_size is {self.config.block_size}; lower max_new_tokens")
        device = tokens.device
        positions = torch.tensor(self.lengths, device=device)  # (n,) where each new token goes
        end = max(self.lengths) + 1
        rows = torch.arange(n, device=device)
        mask = None
        if min(self.lengths) + 1 != end:  # ragged: row b sees keys j ≤ L_b only
            mask = (torch.arange(end, device=device)[None, :] <= positions[:, None]).view(n, 1, 1, end)
        layers = self.pool.layers()

        def attend(layer: int, qkv: Tensor) -> Tensor:  # (n, 3C) -> (n, C)
            q, k, v = split_heads(qkv, n, nh)  # 3 x (n, nh, 1, hs)
            k_pool, v_pool = layers[layer]  # (S, nh, block, hs)
            k_pool[rows, :, positions] = k[:, :, 0]  # (n, nh, hs) at (b, :, L_b)
            v_pool[rows, :, positions] = v[:, :, 0]
            y = F.scaled_dot_product_attention(q, k_pool[:n, :, :end], v_pool[:n, :, :end],
                                               attn_mask=mask)  # (n, nh, 1, hs)
            return y.view(n, -1)

        x = dec.lean(tokens, positions.view(n, 1), attend)  # (n, C)
        self.lengths = [L + 1 for L in self.lengths]
        return dec.log_softmax_head(x)  # (n, V)


# ---------------------------------------------------------------------------------------------
# Rows and the batch
# ---------------------------------------------------------------------------------------------


class Row:
    """One generation: its prompt, its settings, its generator, and what it has produced so far."""

    def __init__(self, prompt: Sequence[int], config: DecodingConfig, *, pad_id: int,
                 decode: Callable[[list[int]], str] | None = None, tag: Any = None,
                 device: torch.device | str = "cpu") -> None:
        if config.strategy == "beam" or config.sequences_per_prompt != 1:
            raise ConfigError("continuous batching decodes one sample per request with a sampling or "
                              "greedy strategy; decode beam search and several samples on their own")
        if config.stop_strings and decode is None:
            raise ConfigError("stop_strings need decode=, a callback from token ids to text")
        if not prompt:
            raise ConfigError("a prompt is empty; start it with [SOS]")
        self.prompt, self.config, self.tag = list(prompt), config, tag
        self.processors = config.processors()
        self.greedy = config.greedy
        self.reads_history = any(not isinstance(p, HISTORY_FREE) for p in self.processors)
        self.key = (self.greedy, tuple(self.processors))  # rows with equal keys are processed together
        self.generator = (torch.Generator(device=device).manual_seed(config.seed)  # as stream() seeds it
                          if not self.greedy and config.seed is not None else None)
        self.stops = StopStrings(config.stop_strings, decode) if config.stop_strings else None
        # everything fed so far, for the processors that read it: prompt, then the new tokens
        self.history = (torch.full((1, len(prompt) + config.max_new_tokens), pad_id, dtype=torch.long,
                                   device=device) if self.reads_history else None)  # (1, Tp + L)
        if self.history is not None:
            self.history[0, :len(prompt)] = torch.tensor(self.prompt, device=device)
        self.tokens: list[int] = []
        self.log_probs: list[float] = []
        self.stop_reason: str | None = None
        self.error: ArlmError | None = None

    @property
    def done(self) -> bool:
        return self.stop_reason is not None


@dataclass
class RowStep:
    """What one row got at one step: a token with its log-prob under the model, whether the row
    stopped with it; or ``error`` (e.g. every token excluded), which ends the row without a token."""

    row: Row
    token: int
    log_prob: float
    finished: bool
    error: ArlmError | None = None


class ContinuousBatch:
    """The active rows of one model, decoded one forward per step (see the module docstring).

    >>> batch = ContinuousBatch(model, eos_id=tok.eos_id, pad_id=tok.pad_id)
    >>> a = batch.add([tok.sos_id, *tok.encode("the")], DecodingConfig(temperature=0))
    >>> batch.step(); batch.step()                    # a alone
    >>> b = batch.add([tok.sos_id], DecodingConfig(seed=3))
    >>> while batch.rows: batch.step()                # a and b in one forward a step
    """

    def __init__(self, model: Any, *, eos_id: int | None, pad_id: int,
                 decode: Callable[[list[int]], str] | None = None) -> None:
        reason = batchable(model)
        if reason is not None:
            raise ConfigError(reason)
        self.model = fast_decoder(model, True)
        self.eos_id, self.pad_id, self.decode = eos_id, pad_id, decode
        self.states = KVRows(self.model) if isinstance(self.model, FastDecoder) else StackedRows(self.model)
        self.block_size = getattr(getattr(self.model, "config", None), "block_size", None)
        self.device = getattr(self.model, "device", torch.device("cpu"))
        self.rows: list[Row] = []  # the active rows, in the state's row order
        self.logp: Tensor | None = None  # (n, V) each row's pending log p(next | x_≤t)
        self._chosen: Tensor | None = None  # (n',) tokens chosen, waiting for forward()

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, prompt: Sequence[int], config: DecodingConfig, tag: Any = None) -> Row:
        """A new row for ``prompt`` ([SOS] + ids) under ``config``, checked, not yet joined."""
        if self.block_size is not None and len(prompt) + config.max_new_tokens - 1 > self.block_size:
            raise ConfigError(f"the prompt is {len(prompt)} tokens and max_new_tokens is "
                              f"{config.max_new_tokens}, more than the model's context of "
                              f"{self.block_size}; shorten them")
        return Row(prompt, config, pad_id=self.pad_id, decode=self.decode, tag=tag, device=self.device)

    def add(self, prompt: Sequence[int], config: DecodingConfig) -> Row:
        """:meth:`row` and :meth:`join` in one."""
        row = self.row(prompt, config)
        self.join([row])
        return row

    @torch.inference_mode()
    def join(self, rows: Sequence[Row]) -> None:
        """Prefill ``rows`` (those with prompts of one length in one forward, apart from the batch) and
        append them; their first tokens are chosen at the next :meth:`choose`."""
        self._between_steps()
        by_length: dict[int, list[Row]] = {}
        for row in rows:
            by_length.setdefault(len(row.prompt), []).append(row)
        for group in by_length.values():
            prompts = torch.tensor([r.prompt for r in group], device=self.device)  # (k, Tp)
            logp, state = self.model.step(prompts, self.model.start(len(group)))  # (k, V)
            self.states.add(state)
            self.logp = logp if self.logp is None else torch.cat([self.logp, logp.to(self.logp.dtype)])
            self.rows += group

    @torch.inference_mode()
    def leave(self, rows: Iterable[Row]) -> None:
        """Drop ``rows`` from the batch now (a client went away); they take no more steps."""
        self._between_steps()
        gone = {id(r) for r in rows}
        keep = [i for i, r in enumerate(self.rows) if id(r) not in gone]
        if len(keep) < len(self.rows):
            self._keep(self._tail_fill(keep))

    def _between_steps(self) -> None:
        if self._chosen is not None:
            raise ConfigError("rows join or leave between steps: call forward() after choose() first")

    def _tail_fill(self, keep: list[int]) -> list[int]:
        """The rows ``keep`` (ascending) in an order where each hole is filled by a row from the tail,
        so that the Transformer's pool moves as few rows as possible."""
        n = len(keep)
        stay = [i for i in keep if i < n]
        movers = [i for i in keep if i >= n]
        order, staying = list(range(n)), set(stay)
        holes = [j for j in range(n) if j not in staying]
        for j, src in zip(holes, movers, strict=True):
            order[j] = src
        return order

    def _keep(self, order: list[int]) -> None:
        index = torch.tensor(order, dtype=torch.long)
        self.states.select(index)
        self.rows = [self.rows[i] for i in order]
        self.logp = self.logp[index.to(self.logp.device)] if order else None

    @torch.inference_mode()
    def choose(self) -> list[RowStep]:
        """Every active row's next token (one :class:`RowStep` each, in row order); rows that stop
        leave the batch. Call :meth:`forward` before the next ``choose``."""
        self._between_steps()
        n = len(self.rows)
        if n == 0:
            return []
        logp = self.logp  # (n, V)
        tokens = torch.empty(n, dtype=torch.long)
        errors: dict[int, ArlmError] = {}
        groups: dict[tuple, list[int]] = {}
        for i, row in enumerate(self.rows):
            groups.setdefault(row.key, []).append(i)
        for idx in groups.values():
            self._choose_group([self.rows[i] for i in idx], idx, logp, tokens, errors)
        tok_lp = logp.gather(1, tokens.to(logp.device)[:, None]).squeeze(1).double().tolist()  # (n,)
        out, keep = [], []
        for i, (row, token) in enumerate(zip(self.rows, tokens.tolist(), strict=True)):
            if i in errors:
                row.stop_reason, row.error = "error", errors[i]
                out.append(RowStep(row, -1, float("nan"), True, errors[i]))
                continue
            out.append(self._record(row, token, tok_lp[i]))
            if not row.done:
                keep.append(i)
        if len(keep) < n:
            order = self._tail_fill(keep)
            self._keep(order)
            tokens = tokens[torch.tensor(order, dtype=torch.long)]
        self._chosen = tokens
        return out

    def _choose_group(self, rows: list[Row], idx: list[int], logp: Tensor, tokens: Tensor,
                      errors: dict[int, ArlmError]) -> None:
        """The next tokens of rows that share their settings' shape (greedy or not, the processors)."""
        sub = logp if len(idx) == logp.shape[0] else logp[torch.tensor(idx, device=logp.device)]  # (k, V)
        first = rows[0]
        if not len(first.processors):
            scores = sub
        elif not first.reads_history:  # the same processors, blind to the tokens: once for all rows
            scores = first.processors(sub.new_empty(len(rows), 0, dtype=torch.long), sub)
        else:  # each row's penalties read its own history
            scores = torch.cat([r.processors(r.history[:, :len(r.prompt) + len(r.tokens)], sub[j:j + 1])
                                for j, r in enumerate(rows)])
        if len(first.processors):
            ok = torch.isfinite(scores).any(-1).tolist()
            for j, fine in enumerate(ok):
                if not fine:
                    errors[idx[j]] = ConfigError(
                        "every token is excluded for some row (banned, penalised or cut to -inf); "
                        "loosen the bans or the truncation settings")
        if first.greedy:
            tokens[idx] = scores.argmax(-1).cpu()
            return
        probs = torch.softmax(scores.double(), dim=-1)  # (k, V)
        if errors:
            probs[[j for j, i in enumerate(idx) if i in errors]] = 1.0  # any distribution: the row fails
        tokens[idx] = draw(probs, [r.generator for r in rows]).cpu()

    def _record(self, row: Row, token: int, log_prob: float) -> RowStep:
        """Append ``token`` to ``row`` and decide whether the row stops with it."""
        row.tokens.append(token)
        row.log_probs.append(log_prob)
        if row.history is not None:
            row.history[0, len(row.prompt) + len(row.tokens) - 1] = token
        if self.eos_id is not None and token == self.eos_id:
            row.stop_reason = STOP_EOS
        elif row.stops is not None and row.stops.add(0, token):
            row.stop_reason = STOP_STRING
        elif len(row.tokens) == row.config.max_new_tokens:
            row.stop_reason = STOP_LENGTH
        return RowStep(row, token, log_prob, row.done)

    @torch.inference_mode()
    def forward(self) -> None:
        """Feed every remaining row the token :meth:`choose` gave it: one forward for all of them."""
        tokens, self._chosen = self._chosen, None
        if tokens is None:
            raise ConfigError("forward() follows choose(); nothing was chosen")
        if not self.rows:
            return
        self.logp = self.states.step(tokens.to(self.device)[:, None])  # (n, V)

    def step(self) -> list[RowStep]:
        """:meth:`choose` then :meth:`forward`: every active row one token further."""
        out = self.choose()
        self.forward()
        return out
