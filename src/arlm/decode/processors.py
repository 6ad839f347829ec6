"""Logits processors: small composable steps that reshape next-token scores before a token is chosen.

Every processor is a callable ``(tokens, logits) -> logits``:

* ``tokens`` (B, t) int64 — everything in the row so far, prompt and [SOS] included;
* ``logits`` (B, V) float — unnormalised scores or log-probs (what ``ARModel.step`` returns); -inf
  means "never this token". The result has the same shape and dtype.

Processors never modify their input, work on the whole batch at once (no Python loop over rows or
the vocabulary), and remove a token by setting its logit to -inf, so ``softmax`` of the result is the
renormalised distribution that sampling draws from. Truncation (top-k, top-p, min-p) always keeps the
most probable token, so it never changes what greedy search picks.
A row whose logits are all -inf (every token banned) has no distribution to sample from.

Use :func:`build_processors` to get a :class:`LogitsPipeline` in the fixed order

    repetition penalty → no-repeat n-gram → banned tokens → temperature → top-k → top-p → min-p

for these reasons:

1. Penalties and bans come first: they decide which distribution we are shaping. If they came after
   truncation, top-k could keep k tokens that are then all banned, leaving fewer than k or none.
2. Temperature comes before truncation: top-p and min-p look at probabilities, and the nucleus must
   be taken of the distribution that is actually sampled from (top-k does not care either way).
3. Top-k, then top-p, then min-p (the order HF transformers uses): the cheap hard cap first; top-p
   then measures mass within the renormalised top-k set, and min-p compares with the best token.

Temperature 0 means greedy decoding. It cannot be applied as a division, so :func:`build_processors`
adds no ``Temperature`` for it and the search loop takes the argmax instead (see :func:`is_greedy`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from arlm.errors import ConfigError
from arlm.streams import PAD_ID

NEG_INF = float("-inf")


class LogitsProcessor(Protocol):
    """tokens (B, t) int64, logits (B, V) float -> logits (B, V), same dtype; never in place."""

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor: ...


def is_greedy(temperature: float) -> bool:
    """True when ``temperature`` asks for greedy decoding (τ = 0): take the argmax, do not sample."""
    _check_temperature(temperature)
    return temperature == 0


def _check_temperature(temperature: float) -> None:
    if not (temperature >= 0 and math.isfinite(temperature)):  # also rejects NaN
        raise ConfigError(f"temperature must be a finite number ≥ 0, got {temperature}; "
                          "use 0 for greedy decoding, 1 for the model's own distribution")


def _keep(logits: Tensor, keep: Tensor) -> Tensor:
    """logits with every token outside ``keep`` (B, V) bool set to -inf."""
    return logits.masked_fill(~keep, NEG_INF)


# --------------------------------------------------------------------------- penalties and bans


@dataclass(frozen=True)
class RepetitionPenalty:
    """CTRL's repetition penalty (Keskar et al. 2019), with HF transformers' sign rule.

    For each token w already in the row (counted once, however often it occurs):
    ``logit(w) / penalty`` if ``logit(w) > 0`` else ``logit(w) · penalty``.
    penalty > 1 makes repeats less likely, 1 does nothing, < 1 makes them more likely.
    """

    penalty: float

    def __post_init__(self) -> None:
        if not (self.penalty > 0 and math.isfinite(self.penalty)):
            raise ConfigError(f"repetition_penalty must be a finite number > 0, got {self.penalty}; "
                              "use 1 for no penalty or a value such as 1.2 to discourage repeats")

    @property
    def noop(self) -> bool:
        """True when this processor leaves every logit unchanged."""
        return self.penalty == 1

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor:
        seen = logits.gather(1, tokens)  # (B, t) the logits of tokens already in the row
        seen = torch.where(seen > 0, seen / self.penalty, seen * self.penalty)
        return logits.scatter(1, tokens, seen)  # repeated ids write the same value: deterministic


@dataclass(frozen=True)
class NoRepeatNGram:
    """Ban every token that would complete an n-gram already present in the row.

    With the row's last n-1 tokens as prefix h, ban w whenever (h, w) occurs in the row.
    n = 1 bans every token already seen; n = 0 does nothing. n-grams containing [PAD] are ignored
    (padding is not text).
    """

    n: int

    def __post_init__(self) -> None:
        if not isinstance(self.n, Integral) or isinstance(self.n, bool) or self.n < 0:
            raise ConfigError(f"no_repeat_ngram_size must be an integer ≥ 0, got {self.n!r}; "
                              "use 0 to allow repeats or a size such as 3")

    @property
    def noop(self) -> bool:
        """True when this processor leaves every logit unchanged."""
        return self.n == 0

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor:
        n, t = self.n, tokens.shape[1]
        if n == 0 or t < n:
            return logits
        grams = tokens.unfold(1, n, 1)  # (B, t-n+1, n) every n-gram in the row
        prefix = tokens[:, t - n + 1 :]  # (B, n-1) the n-gram that the next token would complete
        hit = (grams[:, :, :-1] == prefix[:, None, :]).all(-1)  # (B, t-n+1)
        hit &= (grams != PAD_ID).all(-1)
        # scatter_add, not scatter: an id can end several n-grams, some hits and some not.
        banned = torch.zeros(logits.shape, dtype=torch.long, device=logits.device)
        banned.scatter_add_(1, grams[:, :, -1], hit.long())  # (B, V)
        return logits.masked_fill(banned > 0, NEG_INF)


@dataclass(frozen=True)
class BannedTokens:
    """logit(w) = -inf for every w in ``ids``: those tokens are never produced."""

    ids: tuple[int, ...]

    def __post_init__(self) -> None:
        ids = tuple(self.ids)
        if not all(isinstance(i, Integral) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise ConfigError(f"banned token ids must be integers ≥ 0, got {ids!r}; "
                              "pass the ids from the tokenizer")
        object.__setattr__(self, "ids", tuple(int(i) for i in ids))

    @property
    def noop(self) -> bool:
        """True when this processor leaves every logit unchanged."""
        return not self.ids

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor:
        if not self.ids:
            return logits
        if max(self.ids) >= logits.shape[-1]:
            raise ConfigError(f"banned token id {max(self.ids)} is outside the vocabulary of "
                              f"{logits.shape[-1]} tokens; pass ids from this model's tokenizer")
        return logits.index_fill(1, torch.tensor(self.ids, device=logits.device), NEG_INF)


# --------------------------------------------------------------------------- shaping and truncation


@dataclass(frozen=True)
class Temperature:
    """logits / τ, so p_τ(w) ∝ p(w)^{1/τ}: τ < 1 sharpens, τ > 1 flattens, τ = 1 is the model.

    τ must be > 0 here; τ = 0 (greedy) is the search loop's job, by argmax (see :func:`is_greedy`).
    """

    t: float

    def __post_init__(self) -> None:
        _check_temperature(self.t)
        if self.t == 0:
            raise ConfigError("Temperature(0) would divide by zero; temperature 0 means greedy "
                              "decoding, which the search loop does by argmax (check is_greedy)")

    @property
    def noop(self) -> bool:
        """True when this processor leaves every logit unchanged."""
        return self.t == 1

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor:
        return logits / self.t


@dataclass(frozen=True)
class TopK:
    """Keep the k highest logits, set the rest to -inf (Fan et al. 2018).

    Exactly k tokens are kept (fewer only if fewer than k are finite): ties at the boundary go to
    the lower token id (a stable sort on (-logit, id)). k = 1 is greedy; k = 0 or k ≥ V does nothing.
    """

    k: int

    def __post_init__(self) -> None:
        if not isinstance(self.k, Integral) or isinstance(self.k, bool) or self.k < 0:
            raise ConfigError(f"top_k must be an integer ≥ 0, got {self.k!r}; "
                              "use 0 to disable it or a size such as 50")

    @property
    def noop(self) -> bool:
        """True when this processor leaves every logit unchanged."""
        return self.k == 0

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor:
        if self.k == 0 or self.k >= logits.shape[-1]:
            return logits
        order = logits.argsort(dim=-1, descending=True, stable=True)  # (B, V) best first
        keep = torch.zeros_like(logits, dtype=torch.bool)
        keep.scatter_(1, order[:, : self.k], True)
        return _keep(logits, keep)


@dataclass(frozen=True)
class TopP:
    """Nucleus sampling (Holtzman et al. 2020): keep the smallest most-probable set with mass ≥ p.

    Sort tokens by (-prob, id) (stable, so ties go to the lower id) and keep token i iff the mass
    strictly before it is < p: the token that crosses p is kept, the first token always is, and a
    boundary hit exactly (mass before = p) stops there. Mass within ``tol`` = 1e-6 of p counts as
    reaching it, so a boundary that is exact on paper stays exact after float32 rounding.
    p = 1 does nothing; p must be in (0, 1].
    """

    p: float
    tol = 1e-6  # class constant, not a field

    def __post_init__(self) -> None:
        if not 0 < self.p <= 1:  # also rejects NaN
            raise ConfigError(f"top_p must be in (0, 1], got {self.p}; "
                              "use 1 to disable nucleus sampling or a value such as 0.9")

    @property
    def noop(self) -> bool:
        """True when this processor leaves every logit unchanged."""
        return self.p == 1

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor:
        if self.p == 1:
            return logits
        order = logits.argsort(dim=-1, descending=True, stable=True)  # (B, V) best first
        probs = logits.double().softmax(-1).gather(1, order)  # (B, V) sorted probabilities
        before = F.pad(probs.cumsum(-1)[:, :-1], (1, 0))  # (B, V) mass strictly before each token
        keep_sorted = before < self.p - self.tol
        keep_sorted[:, 0] = True
        keep = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
        return _keep(logits, keep)


@dataclass(frozen=True)
class MinP:
    """Keep w iff p(w) ≥ p · max_v p(v) (Nguyen et al. 2024): a cut-off that scales with confidence.

    The most probable token (and any tie with it) is always kept. p = 0 does nothing; p must be
    in [0, 1].
    """

    p: float

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:  # also rejects NaN
            raise ConfigError(f"min_p must be in [0, 1], got {self.p}; "
                              "use 0 to disable it or a value such as 0.05")

    @property
    def noop(self) -> bool:
        """True when this processor leaves every logit unchanged."""
        return self.p == 0

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor:
        if self.p == 0:
            return logits
        probs = logits.double().softmax(-1)  # (B, V)
        keep = probs >= self.p * probs.max(-1, keepdim=True).values
        return _keep(logits, keep)


# --------------------------------------------------------------------------- composition


class LogitsPipeline:
    """Processors applied left to right: ``pipe(tokens, logits)``. Empty means logits unchanged."""

    def __init__(self, processors: Iterable[LogitsProcessor] = ()) -> None:
        self.processors: list[LogitsProcessor] = list(processors)

    def __call__(self, tokens: Tensor, logits: Tensor) -> Tensor:
        for proc in self.processors:
            logits = proc(tokens, logits)
        return logits

    def __iter__(self) -> Iterator[LogitsProcessor]:
        return iter(self.processors)

    def __len__(self) -> int:
        return len(self.processors)

    def __repr__(self) -> str:
        return f"LogitsPipeline({self.processors!r})"


def build_processors(
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    banned: Sequence[int] = (),
) -> LogitsPipeline:
    """The pipeline for these settings, in the module's fixed order, with every no-op left out.

    Defaults do nothing. ``temperature=0`` (greedy) adds no ``Temperature``: the caller checks
    :func:`is_greedy` and takes the argmax of the processed logits. Bad settings raise ConfigError.
    """
    steps = [
        RepetitionPenalty(repetition_penalty),
        NoRepeatNGram(no_repeat_ngram_size),
        BannedTokens(tuple(banned)),
        None if is_greedy(temperature) else Temperature(temperature),
        TopK(top_k),
        TopP(top_p),
        MinP(min_p),
    ]  # every setting is built, and so validated, even when it turns out to be a no-op
    return LogitsPipeline(s for s in steps if s is not None and not s.noop)
