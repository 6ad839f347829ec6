"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023): a cheap draft guesses, the target checks.

Decoding a large *target* model p costs one forward pass per token, and at batch size 1 that pass is
bound by reading the weights, not by arithmetic: scoring k+1 positions costs about as much as
scoring one. So let a cheap *draft* propose k tokens x_1..x_k, score all of them with the target
in ONE pass (the context plus the k proposals, giving p(· | ctx, x_<i) for i = 1..k+1), keep the
longest prefix the target agrees with, and add one token of the target's own. Every round yields
between 1 and k+1 tokens for one target pass, and — the point — the tokens have exactly the
distribution of plain decoding from p.

**The acceptance rule** (sampling). Let q = q(· | ctx, x_<i) be the draft's distribution at
position i, x_i ~ q its proposal, and p = p(· | ctx, x_<i) the target's. Accept x_i with probability

    min(1, p(x_i) / q(x_i));

on rejection, emit y ~ r = norm(max(0, p − q)) instead and end the round. Why y ~ p:

    P(y) = q(y) · min(1, p(y)/q(y))  +  [Σ_x q(x) (1 − min(1, p(x)/q(x)))] · r(y)
         = min(p(y), q(y))           +  [Σ_x max(0, q(x) − p(x))] · max(0, p(y) − q(y)) / Z
         = min(p(y), q(y)) + max(0, p(y) − q(y))  =  p(y),

because Z = Σ_x max(0, p(x) − q(x)) = Σ_x max(0, q(x) − p(x)) (both p and q sum to one). Position
by position: the token emitted at i is ~ p given exactly the prefix it follows, and if all k are
accepted the extra (bonus) token is drawn from p(· | ctx, x_1..x_k) directly; so the whole sequence
is distributed as ancestral sampling from p, whatever the draft (a bad draft only costs speed).
A *deterministic* draft (prompt lookup) is the point mass q = δ_x: accept with probability p(x),
else sample from p with x removed and renormalised.

**Greedy** (temperature 0): p and q are point masses at their argmaxes, so the rule reads "accept
x_i iff x_i = argmax p", and the replacement is argmax p. Speculative greedy returns exactly the
tokens of :func:`arlm.decode.search.greedy_search` (up to floating-point rounding: the one-pass
verification computes the target's logits in differently shaped matmuls than one-token steps, so
two logits within ~1e-6 of each other could swap, as in any batched decoder).

**Expected speed-up.** The probability that a proposal is accepted is β = Σ_x min(p(x), q(x))
= 1 − TV(p, q); call its average α. If acceptances were independent with probability α, a round
accepts N ≥ i tokens with probability α^i (i ≤ k) and yields N + 1 tokens, so

    E[tokens per target pass] = Σ_{i=0}^{k} α^i = (1 − α^{k+1}) / (1 − α)        (k + 1 when α = 1).

:class:`SpeculativeStats` reports the measured counterpart (``tokens_per_target_forward``) and the
acceptance rate accepted / proposed (proposals after a rejection count as not accepted).

**Processors.** All settings of :func:`arlm.decode.processors.build_processors` are supported
(temperature, top-k, top-p, min-p, repetition penalty, no-repeat n-gram, bans). Each is a
deterministic function of (prefix, logits), so it turns p into another conditional distribution
p̃(· | prefix), and the rule above preserves p̃: the output is what :func:`arlm.decode.search.generate`
samples with the same settings. The same pipeline, on the same prefix, shapes the draft's q (any q
is correct; one shaped like p̃ is accepted more often). Stop strings are not supported.

**Drafts.** Any arlm :class:`~arlm.models.base.ARModel` on the same vocabulary (a small
Transformer, an n-gram model, an RNN) — wrapped in :class:`ModelDraft` — or :class:`PromptLookupDraft`
(Saxena 2023), which copies what followed an earlier occurrence of the context's last n-gram, or a
:class:`~arlm.decode.distilled_draft.DistilledDraft`, a table of the target's own greedy choices after
short contexts. A draft may say what one proposal costs (``proposal_cost``, in parameter reads: what
:class:`RoundCost` charges it).

**State rollback.** A rejection makes the models forget the rejected tokens. A KV cache is cropped
(``KVCache.crop``); a state that cannot roll back (RNN hidden state, n-gram history, a user's
state) is restored from a copy (``State.select``) taken before the proposals, and the accepted
tokens are fed again. The target is verified in one pass when it has ``step_all`` (tokens (B, t)
-> log-probs after every token (B, t, V); :class:`~arlm.models.transformer.TransformerLM` has it);
other targets are fed one token at a time — exact, but with no speed-up (``target_forwards``
counts every call).

**The schedule** (:class:`DraftSchedule`, one per call: no state outlives it). A fixed k loses when
the draft is rarely right: every proposal costs a draft step and a wider verifying pass, and a
weak target with a char 7-gram draft that agreed on 9% of its proposals decoded at 0.54× plain
greedy. So the number of proposals adapts, round by round, from counts only (never from timers, so
the same seed gives the same tokens):

* two acceptances are estimated from decayed counts (a window of ~10 rounds): a₁, the probability
  that a round's first proposal is accepted, and a, that a later one is when those before it were.
  They differ where agreement comes in runs: a char n-gram draft is more often wrong at the start
  of a word than inside it (benchmarks/speculative_bench.py's 4 × 128 char Transformer after 2,000
  steps and its 7-gram, k = 4: a₁ 0.46–0.54, a 0.62–0.69), and one shared rate had switched that
  draft off where a fixed k = 4 ran 1.11× plain greedy (the schedule: 0.93×; docs/fast_decoding.md).
  A round with no proposal (prompt lookup found no match) counts nothing;
* a round of k proposals is expected to yield 1 + a₁(1 + a + … + a^(k-1)) tokens for 1 + c(k) target steps,
  where c(k) is what the proposals cost beyond a plain step (:class:`RoundCost`: the wider verifying
  pass and the draft's steps, relative to a target step, from fixed per-kind constants and
  parameter counts). The next round proposes the k ≤ the ``k`` passed that maximises that ratio,
  and speculation switches off while the best ratio is ≤ 1. HF's "heuristic" schedule (k + 2 after
  a round whose proposals were all accepted, k − 1 otherwise) was measured first: it shrinks k
  after every partial acceptance, to the lengths where the verifying pass's fixed cost weighs
  most, and lost to a fixed k on a small target with prompt lookup (docs/fast_decoding.md);
* while off the rounds are plain target steps (the draft is not called); a probe asks the draft for
  2 tokens after 4 plain steps, then 8, 16, … up to 64 while the probes lose (back to 4 after one
  that would have gained), and its counts, weighing more than the older ones, switch speculation
  back on when the draft agrees again. A probe costs the target nothing (:func:`_shadow_probe`): the
  next plain steps produce the target's tokens anyway, and the proposals that match them from the
  first on count as accepted — the acceptance a verified round would have had, exactly for greedy
  decoding (for sampling, a deterministic draft's proposal matches the drawn token with the
  probability the rule would accept it). On a target whose verifying pass is dear (one that streams
  its weights: a probe of 2 cost ~2.5 steps for at most 3 tokens) verified probes had cost 6% of the
  run with a draft that never agreed. A draft that can never pay (no round of at most ``k`` proposals
  could gain even with every proposal accepted, e.g. a target without ``step_all``, verified a step
  a token) is never called: the call is plain decoding (:func:`arlm.decode.search.generate`, at its
  speed).

Which tokens come out does not depend on the schedule (greedy gives plain greedy's tokens; sampling
keeps p̃, since each round's length depends only on the rounds before it); only the speed does.
``adaptive=False`` proposes k tokens every round.

Batch size 1 only: rows of a batch would accept different numbers of tokens per round.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from arlm.decode.config import DecodingConfig, check_positive_int, decoding_config
from arlm.decode.processors import LogitsPipeline
from arlm.decode.search import STOP_EOS, STOP_LENGTH, _device_of, generate
from arlm.errors import ConfigError, MismatchError
from arlm.models.base import ARModel, as_long_tensor
from arlm.models.ngram import NGramModel
from arlm.models.numpy_gemv import parameter_bytes, weights_stream
from arlm.streams import EOS_ID, SOS_ID

# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class SpeculativeStats:
    """Counts of one :func:`speculative_generate` run."""

    target_forwards: int = 0  # step / step_all calls on the target (one per round with step_all)
    draft_forwards: int = 0  # step calls on the draft model (0 for prompt lookup)
    rounds: int = 0  # propose-then-verify rounds
    proposed: int = 0  # draft tokens sent to the target for verification
    accepted: int = 0  # of those, kept
    new_tokens: int = 0  # tokens generated ([EOS] included)
    draft_rounds: int = 0  # rounds that asked the draft for proposals
    draft_length_sum: int = 0  # the draft lengths asked for, summed over those rounds
    rounds_off: int = 0  # rounds with speculation switched off: a plain target step (a probe's included)
    probes: int = 0  # of the draft rounds, the probes while speculation was off (checked by plain steps)

    @property
    def acceptance_rate(self) -> float:
        """accepted / proposed (0 when nothing was proposed)."""
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_target_forward(self) -> float:
        """new tokens / target forward calls: 1 for plain decoding, up to k + 1 here."""
        return self.new_tokens / self.target_forwards if self.target_forwards else 0.0

    @property
    def mean_draft_length(self) -> float:
        """The mean number of proposals asked of the draft per draft round (0 when none)."""
        return self.draft_length_sum / self.draft_rounds if self.draft_rounds else 0.0


@dataclass
class SpeculativeResult:
    """The new tokens (the prompt is not repeated), their log-probs under the target model (before
    any processor), why decoding stopped ("eos" or "length") and the run's statistics."""

    tokens: Tensor  # (L,) int64, L ≤ max_new_tokens, [EOS] included
    log_probs: Tensor  # (L,) float64
    stop_reason: str
    stats: SpeculativeStats = field(default_factory=SpeculativeStats)


# ---------------------------------------------------------------------------------------------
# The acceptance rule (one position)
# ---------------------------------------------------------------------------------------------


def acceptance_probability(p: Tensor, q: Tensor, x: int) -> float:
    """min(1, p(x) / q(x)) for the target's p (V,) and the draft's q (V,), q(x) > 0."""
    return min(1.0, float(p[x]) / float(q[x]))


def residual_distribution(p: Tensor, q: Tensor) -> Tensor:
    """norm(max(0, p − q)) (V,): what to sample from after a rejection (p itself if p = q)."""
    r = (p - q).clamp(min=0)  # (V,)
    total = r.sum()
    return r / total if total > 0 else p  # total = 0 only when p = q, where nothing is rejected


def accept_or_resample(p: Tensor, q: Tensor, x: int,
                       generator: torch.Generator | None = None) -> tuple[int, bool]:
    """One step of the rule: (x, True) with probability min(1, p(x)/q(x)), else (y ~ residual, False).

    p, q (V,) float64 probabilities; x was drawn from q. The token returned is ~ p (module docstring).
    """
    u = float(torch.rand((), dtype=torch.float64, generator=generator, device=p.device))
    if u < acceptance_probability(p, q, x):  # x ~ q, so q(x) > 0
        return x, True
    r = residual_distribution(p, q)
    return int(torch.multinomial(r, 1, generator=generator)), False


# ---------------------------------------------------------------------------------------------
# How tokens are chosen: the processors, greedy or sampling, the generator
# ---------------------------------------------------------------------------------------------


@dataclass
class Sampler:
    """The decoding settings shared by the draft and the target, so that p and q are shaped alike."""

    processors: LogitsPipeline
    greedy: bool
    generator: torch.Generator | None
    device: torch.device
    eos_id: int | None = EOS_ID

    def scores(self, context: Sequence[int], logp: Tensor) -> Tensor:
        """The processed scores (V,) of the next token after ``context`` (prompt and [SOS] included)."""
        logp = logp.to(self.device)
        if not len(self.processors):
            return logp
        tokens = torch.tensor([list(context)], dtype=torch.long, device=self.device)  # (1, t)
        scores = self.processors(tokens, logp[None])[0]  # (V,)
        if not torch.isfinite(scores).any():
            raise ConfigError("every token is excluded (banned, penalised or cut to -inf); loosen "
                              "the bans or the truncation settings")
        return scores

    @staticmethod
    def probs(scores: Tensor) -> Tensor:
        """softmax(scores) in float64 (V,)."""
        return torch.softmax(scores.double(), dim=-1)

    def choose(self, scores: Tensor) -> int:
        """argmax of the scores (greedy) or a draw from their softmax."""
        if self.greedy:
            return int(scores.argmax())
        return int(torch.multinomial(self.probs(scores), 1, generator=self.generator))


# ---------------------------------------------------------------------------------------------
# A model's state, with the tokens it has been fed, and how to roll it back
# ---------------------------------------------------------------------------------------------


def _common_prefix(a: list[int], b: list[int]) -> int:
    """The length of the longest common prefix of two lists: a binary search on slice equality (the
    comparisons run in C, so a round costs a few µs however long the context)."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while hi - lo > 1:  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class _Fed:
    """An ARModel's batch-of-1 state and the tokens it has been fed.

    :meth:`rewind` forgets the fed tokens that are not a prefix of a new context: a KV cache is
    cropped; any other state is replaced by the copy :meth:`mark` kept (or by a fresh start when the
    copy is past the common prefix), and the caller feeds the rest again.
    """

    def __init__(self, model: ARModel) -> None:
        self.model = model
        self.device = _device_of(model)
        self.state = model.start(1)
        self.tokens: list[int] = []
        self.snapshot: tuple[int, object] | None = None  # (len(tokens), a copy of the state)
        self.forwards = 0
        self.can_crop = callable(getattr(self.state, "crop", None))

    def rewind(self, context: Sequence[int]) -> list[int]:
        """Roll back to the longest fed prefix of ``context`` (leaving ≥ 1 token to feed, so that the
        next step returns the distribution after the whole context); return the tokens to feed."""
        context = context if isinstance(context, list) else list(context)
        keep = min(_common_prefix(self.tokens, context), len(context) - 1)
        if keep < len(self.tokens):
            if self.can_crop:
                self.state = self.state.crop(keep)
            elif self.snapshot is not None and self.snapshot[0] <= keep:
                keep, self.state = self.snapshot
            else:
                keep, self.state = 0, self.model.start(1)
            del self.tokens[keep:]
        return list(context[keep:])

    def mark(self) -> None:
        """Remember the current state for :meth:`rewind` (a KV cache needs no copy: it crops)."""
        if not self.can_crop:
            self.snapshot = (len(self.tokens), self.state.select(torch.arange(1)))

    def step(self, tokens: list[int]) -> Tensor:
        """Feed tokens -> log p(next | everything fed) (V,)."""
        logp, self.state = self.model.step(self._tensor(tokens), self.state)  # (1, V)
        self.tokens += tokens
        self.forwards += 1
        return logp[0]

    def step_all(self, tokens: list[int]) -> Tensor:
        """Feed tokens -> the log-probs after each of them (t, V), in one call (needs ``step_all``)."""
        logp, self.state = self.model.step_all(self._tensor(tokens), self.state)  # (1, t, V)
        self.tokens += tokens
        self.forwards += 1
        return logp[0]

    def _tensor(self, tokens: list[int]) -> Tensor:
        return torch.tensor([tokens], dtype=torch.long, device=self.device)  # (1, t)


class TargetVerifier:
    """The target side of a round: score the context plus the proposals, roll back what was rejected.

    ``verify(context, proposals)`` returns the target's log-probs (n+1, V): row i is
    log p(· | context, proposals[:i]). With ``target.step_all`` this is one call that feeds only what
    the cache lacks (after a rejection: the replacement token) plus the proposals; otherwise one
    ``step`` for the new context tokens and one per proposal (slow but exact).
    """

    def __init__(self, target: ARModel) -> None:
        self.fed = _Fed(target)
        self.one_pass = callable(getattr(target, "step_all", None))

    def verify(self, context: Sequence[int], proposals: Sequence[int]) -> Tensor:
        todo = self.fed.rewind(context)
        if self.one_pass:
            return self.fed.step_all(todo + list(proposals))[-(len(proposals) + 1):]  # (n+1, V)
        rows = [self.fed.step(todo)]
        self.fed.mark()
        rows += [self.fed.step([x]) for x in proposals]
        return torch.stack(rows)  # (n+1, V)

    def step(self, context: Sequence[int]) -> Tensor:
        """A round with no proposals: log p(· | context) (V,) by the target's plain ``step`` (what a
        round costs while speculation is off: one decoding step, nothing wider)."""
        return self.fed.step(self.fed.rewind(context))

    @property
    def state(self):
        """The target's state after the last verification (it includes every proposal fed)."""
        return self.fed.state

    @property
    def forwards(self) -> int:
        return self.fed.forwards


# ---------------------------------------------------------------------------------------------
# Drafts
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class Draft(Protocol):
    """Proposes up to k next tokens for a context (prompt and everything generated so far)."""

    def propose(self, context: Sequence[int], k: int, sampler: Sampler) -> tuple[list[int], Tensor | None]:
        """-> (n ≤ k proposed tokens, their draft distributions q (n, V) float64 after the sampler's
        processors, or None for a deterministic draft: q is then the point mass on each token).
        Greedy decoding (``sampler.greedy``) compares tokens only and never reads q."""
        ...


class ModelDraft:
    """Any ARModel as a draft: proposes k tokens by its own sampling (or greedy) under the sampler.

    Between rounds its state follows the context: a KV cache is cropped to the accepted tokens, any
    other state is restored from a copy taken before the proposals and the accepted tokens re-fed.
    """

    def __init__(self, model: ARModel) -> None:
        self.model = model
        self.fed = _Fed(model)

    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size

    @property
    def forwards(self) -> int:
        return self.fed.forwards

    def propose(self, context: Sequence[int], k: int, sampler: Sampler) -> tuple[list[int], Tensor | None]:
        logp = self.fed.step(self.fed.rewind(context))  # (V,) q(· | context), unprocessed
        self.fed.mark()
        tokens: list[int] = []
        qs: list[Tensor] = []
        for i in range(k):
            scores = sampler.scores([*context, *tokens], logp)  # (V,)
            x = sampler.choose(scores)
            tokens.append(x)
            if not sampler.greedy:  # a greedy draft is a point mass: no q to keep
                qs.append(sampler.probs(scores))
            if i == k - 1 or x == sampler.eos_id:  # the last proposal is never fed
                break
            logp = self.fed.step([x])
        return tokens, (None if sampler.greedy else torch.stack(qs))  # (n, V)


class NGramDraft:
    """A counted n-gram model (:class:`~arlm.models.ngram.NGramModel`) as a draft.

    Greedy proposals with no processors are the model's own greedy continuation
    (:meth:`~arlm.models.ngram.NGramModel.greedy_continuation`): an n-gram's state is nothing but the
    context's last N-1 tokens, so nothing is rolled back or fed again, no distribution leaves numpy,
    and a context met before in this call costs a dict lookup. Sampling, or any processor, needs the
    draft's distributions q: those proposals come from :class:`ModelDraft` (the same tokens a greedy
    ModelDraft would propose, at ~2× the cost).
    """

    def __init__(self, model: NGramModel) -> None:
        self.model = model
        self.general = ModelDraft(model)
        self.memo: dict = {}  # context ids -> argmax, for this draft's lifetime (one call)
        self.greedy_proposals = 0

    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size

    @property
    def forwards(self) -> int:
        """Draft steps: the general path's calls, and one per greedy proposal."""
        return self.general.forwards + self.greedy_proposals

    def propose(self, context: Sequence[int], k: int, sampler: Sampler) -> tuple[list[int], Tensor | None]:
        if sampler.greedy and not len(sampler.processors):
            tokens = self.model.greedy_continuation(context, k, sampler.eos_id, self.memo)
            self.greedy_proposals += len(tokens)
            return tokens, None
        return self.general.propose(context, k, sampler)


@dataclass(frozen=True)
class PromptLookupDraft:
    """Prompt lookup decoding (Saxena 2023): a draft with no model.

    For n = ``max_ngram`` down to ``min_ngram``: take the context's last n tokens, find their most
    recent earlier occurrence in the context, and propose the (up to k) tokens that followed it.
    No occurrence: no proposal (the round is a plain target step). Deterministic: q is a point mass.
    (Saxena's reference takes the *first* occurrence; the most recent one tends to be the
    relevant one in generated text. Either choice is exact; only the acceptance rate differs.)
    """

    max_ngram: int = 3
    min_ngram: int = 1

    def __post_init__(self) -> None:
        check_positive_int("min_ngram", self.min_ngram, "use e.g. min_ngram=1")
        check_positive_int("max_ngram", self.max_ngram, "use e.g. max_ngram=3")
        if self.min_ngram > self.max_ngram:
            raise ConfigError(f"min_ngram ({self.min_ngram}) is larger than max_ngram "
                              f"({self.max_ngram}); swap them")

    def propose(self, context: Sequence[int], k: int, sampler: Sampler) -> tuple[list[int], None]:
        context = list(context)
        T = len(context)
        data = array("q", context).tobytes()  # 8 bytes a token: bytes.rfind searches in C
        for n in range(self.max_ngram, self.min_ngram - 1, -1):
            if n >= T:  # no room for an earlier occurrence
                continue
            tail = data[(T - n) * 8 :]
            end = (T - 1) * 8  # the match must end before the tail does: start + n ≤ T − 1
            while (at := data.rfind(tail, 0, end)) >= 0:
                if at % 8 == 0:  # aligned on a token
                    start = at // 8
                    return context[start + n : start + n + k], None
                end = at + len(tail) - 1  # a match across token boundaries: look further back
        return [], None


# ---------------------------------------------------------------------------------------------
# How many tokens to propose: the draft length and the on/off switch (module docstring)
# ---------------------------------------------------------------------------------------------

# Cost estimates, fixed (deterministic: the same seed gives the same tokens), measured once on one
# CPU core (docs/fast_decoding.md) and rounded towards caution (a draft judged too costly only loses
# some speed-up; one judged too cheap could make decoding slower than plain greedy).
STEP_OVERHEAD = 250_000  # a model step's fixed cost (Python, kernel calls), in parameter reads
NGRAM_STEP_PER_ORDER = 40_000  # an n-gram model's one-row step, per order (scalar lookups), in param. reads
# one proposal of NGramDraft's greedy path, per order: 17–21 µs for a char 7-gram, 0.06× a step of a
# 4 × 128 char Transformer (0.84M parameters, 336 µs), i.e. ~10,000 reads an order; 1.5× for caution
NGRAM_GREEDY_PER_ORDER = 15_000
PROPOSAL_CALL = 50_000  # one proposal of a draft with no model (prompt lookup's search), in parameter reads
# a verifying pass over 2 positions instead of 1 (a masked attention, the head on every position):
# VERIFY_FIRST target steps + VERIFY_OVERHEAD parameter reads; each further position VERIFY_PER_TOKEN
# target steps + VERIFY_PER_TOKEN_OVERHEAD (the fixed parts weigh most on a small target). Measured on
# char Transformers in the CPU's cache (0.44M and 0.84M parameters, 1 thread, AVX-512 EPYC;
# benchmarks/speculative_bench.py, three runs): 2 positions 1.19–1.27×, 5 positions 1.46–1.50×,
# 9 positions 1.75–1.84× a one-token step; these constants put them 0–9% higher (the first estimates,
# 0.3 + 150,000 and 0.08 + 30,000, were 9–36% higher)
VERIFY_FIRST, VERIFY_OVERHEAD = 0.25, 50_000
VERIFY_PER_TOKEN, VERIFY_PER_TOKEN_OVERHEAD = 0.07, 10_000
# the same for a target whose weights stream from memory on a CPU (too large for its cache:
# numpy_gemv.weights_stream): a pass over several rows is a matrix product that streams them no faster
# than one row's, so it costs far more than a one-row step. 6 × 384, 1 thread, AVX-512 EPYC (32 MiB L3):
# 2 rows 2.16×, 3 rows 2.69×, 5 rows 2.70×, 9 rows 3.64× a one-row step (benchmarks/speculative_bench.py,
# "large" target)
VERIFY_FIRST_STREAMED, VERIFY_PER_TOKEN_STREAMED = 1.2, 0.25
# the counts before the first round: an acceptance of 0.75 for the first proposal and for the later ones,
# each worth ~2 rounds (a round counts one first proposal, and up to k - 1 later ones): two rounds
# rejected at once do not switch a draft off; three do
PRIOR_ACCEPTED, PRIOR_REJECTED = 1.5, 0.5
PRIOR_ACCEPTED_NEXT, PRIOR_REJECTED_NEXT = 6.0, 2.0
COUNT_DECAY = 0.9  # each round multiplies the counts by this before adding its own (a window of ~10)
PROBE_DECAY = 0.8  # a probe ages them more: the evidence from before speculation paused is stale
PROBE_LENGTH = 2  # proposals in a probe round
PROBE_FIRST, PROBE_LAST = 4, 64  # plain rounds before a probe: doubled while the probes lose


def step_cost(model: object) -> float:
    """An estimate of one decoding step's cost, in parameter reads, from the model's kind and size
    (never timed): a network STEP_OVERHEAD + its parameter count, an n-gram model
    NGRAM_STEP_PER_ORDER × its order, anything else STEP_OVERHEAD."""
    inner = getattr(model, "model", model)  # a FastDecoder (or another wrapper) around its model
    if isinstance(inner, torch.nn.Module):
        return STEP_OVERHEAD + sum(p.numel() for p in inner.parameters())
    order = getattr(inner, "order", None)
    if isinstance(order, int):
        return NGRAM_STEP_PER_ORDER * order
    return STEP_OVERHEAD


def streams_weights(model: object) -> bool:
    """Whether one step of ``model`` (a network on a CPU) streams its weights from memory: they fill
    too much of the CPU's last-level cache to stay there (:func:`~arlm.models.numpy_gemv.weights_stream`)."""
    inner = getattr(model, "model", model)
    if not isinstance(inner, torch.nn.Module):
        return False
    first = next(inner.parameters(), None)
    return first is not None and first.device.type == "cpu" and weights_stream(parameter_bytes(inner))


@dataclass(frozen=True)
class RoundCost:
    """What a round's proposals cost beyond a plain target step, in target steps."""

    verify_first: float  # verifying the first proposal (a pass over 2 positions instead of 1)
    verify_per_token: float  # verifying each further proposal
    draft_call: float  # one call of a draft with no model (prompt lookup's search)
    draft_step: float  # one step of a draft model

    @classmethod
    def of(cls, target: ARModel, draft: Draft, one_pass: bool, plain_greedy: bool = False) -> RoundCost:
        """The estimates for ``draft`` proposing to ``target`` (verified in one pass, or a step a token;
        ``plain_greedy``: greedy decoding with no processors, where an n-gram draft takes its fast path)."""
        target_step = step_cost(target)
        verify_first, verify_per_token = 1.0, 1.0  # a step per proposal
        if one_pass and streams_weights(target):
            verify_first, verify_per_token = VERIFY_FIRST_STREAMED, VERIFY_PER_TOKEN_STREAMED
        elif one_pass:
            verify_first = VERIFY_FIRST + VERIFY_OVERHEAD / target_step
            verify_per_token = VERIFY_PER_TOKEN + VERIFY_PER_TOKEN_OVERHEAD / target_step
        per_proposal = getattr(draft, "proposal_cost", None)  # a draft that says what a proposal costs
        if isinstance(per_proposal, (int, float)):  # (DistilledDraft), in parameter reads
            return cls(verify_first, verify_per_token, 0.0, per_proposal / target_step)
        if isinstance(draft, NGramDraft) and plain_greedy:
            greedy_step = NGRAM_GREEDY_PER_ORDER * draft.model.order
            return cls(verify_first, verify_per_token, 0.0, greedy_step / target_step)
        if isinstance(draft, (ModelDraft, NGramDraft)):
            return cls(verify_first, verify_per_token, 0.0, step_cost(draft.model) / target_step)
        return cls(verify_first, verify_per_token, PROPOSAL_CALL / target_step, 0.0)

    def extra(self, proposed: int, draft_forwards: int) -> float:
        """The cost of a round that called the draft, beyond a plain target step."""
        verify = self.verify_first + self.verify_per_token * (proposed - 1) if proposed else 0.0
        return verify + self.draft_call + self.draft_step * draft_forwards

    def can_pay(self, k_max: int) -> bool:
        """Whether some round of at most ``k_max`` proposals, all accepted, would beat plain steps:
        k + 1 tokens for 1 + c(k) target steps, for some k ≤ k_max. The gain k - c(k) is linear in k,
        so it is largest at k = 1 or k = k_max."""
        return any(k - self.extra(k, k) > 0 for k in {1, k_max})


@dataclass
class DraftSchedule:
    """The draft length and the on/off switch of one :func:`speculative_generate` call (module
    docstring): :meth:`next_length` before a round, :meth:`update` with the round's counts after it.
    With ``adaptive=False``: k_max every round."""

    k_max: int
    cost: RoundCost
    adaptive: bool = True
    k: int = 0  # the draft length of the next round that proposes (k_max at the start)
    accepted: float = PRIOR_ACCEPTED  # decayed count of a round's first proposals accepted
    rejected: float = PRIOR_REJECTED  # decayed count of those rejected
    accepted_next: float = PRIOR_ACCEPTED_NEXT  # decayed count of later proposals (after an accepted one)
    rejected_next: float = PRIOR_REJECTED_NEXT  # accepted, and of those rejected (at most one a round)
    on: bool = True  # speculation on; off: plain target steps, with a probe every `backoff` rounds
    wait: int = 0  # plain rounds left before the next probe (while off; -1: never, it cannot pay)
    backoff: int = PROBE_FIRST
    probing: bool = False  # the current round is a probe

    def __post_init__(self) -> None:
        self.k = self.k_max
        if self.adaptive and not self.cost.can_pay(self.k_max):  # no acceptance rate could make it pay
            self.on, self.wait = False, -1

    @property
    def never_pays(self) -> bool:
        """No acceptance rate could make proposing pay: the draft is never called."""
        return self.adaptive and self.wait < 0

    @property
    def acceptance(self) -> float:
        """The estimated probability that a round's first proposal is accepted."""
        return self.accepted / (self.accepted + self.rejected)

    @property
    def acceptance_next(self) -> float:
        """The estimated probability that a later proposal is accepted, given that those before it were
        (higher than :attr:`acceptance` where agreement comes in runs: inside a word, a copied line)."""
        return self.accepted_next / (self.accepted_next + self.rejected_next)

    def speedup(self, k: int) -> float:
        """The expected tokens per unit of cost (a plain target step: 1 token for 1) of a round of k
        proposals, the first accepted with probability a₁ = :attr:`acceptance`, each later one with
        a = :attr:`acceptance_next` after the ones before it: (1 + a₁(1 + a + … + a^(k-1))) / (1 + the
        proposals' cost)."""
        a1, a = self.acceptance, self.acceptance_next
        return (1 + a1 * sum(a**i for i in range(k))) / (1 + self.cost.extra(k, k))

    def best_length(self) -> tuple[int, float]:
        """The length in [1, k_max] with the largest :meth:`speedup`, and that speed-up. The expected
        tokens are concave in k (the k-th proposal adds a₁a^(k-1), less than the one before) and the
        cost affine, so the speed-up rises to one peak and falls after it: the search stops at the first
        fall (a few lengths, however large k_max)."""
        a, tokens, term = self.acceptance_next, 1.0, self.acceptance
        best = (1, 0.0)
        for k in range(1, self.k_max + 1):
            tokens += term  # 1 + a₁(1 + a + … + a^(k-1))
            term *= a
            speedup = tokens / (1 + self.cost.extra(k, k))
            if speedup <= best[1]:
                break
            best = (k, speedup)
        return best

    def next_length(self) -> int:
        """The number of proposals to ask for this round: 0 for a plain target step (no draft call)."""
        self.probing = False
        if not self.adaptive or self.on:
            return self.k
        if self.wait != 0:
            self.wait -= self.wait > 0
            return 0
        self.probing = True
        return min(PROBE_LENGTH, self.k_max)

    def update(self, proposed: int, accepted: int, draft_forwards: int) -> None:
        """After a round that called the draft: count its acceptances, take the length that maximises
        the expected speed-up, and keep speculating only while that speed-up exceeds 1."""
        if not self.adaptive:
            return
        if proposed:  # a round with no proposal (prompt lookup found no match) says nothing of the draft
            decay = PROBE_DECAY if self.probing else COUNT_DECAY
            self.accepted = decay * self.accepted + (accepted > 0)
            self.rejected = decay * self.rejected + (accepted == 0)
            self.accepted_next = decay * self.accepted_next + max(accepted - 1, 0)
            self.rejected_next = decay * self.rejected_next + (0 < accepted < proposed)
        self.k, speedup = self.best_length()
        self.on = speedup > 1
        if self.probing:  # the gaps between probes double while the probes lose
            won = accepted > self.cost.extra(proposed, draft_forwards)
            self.backoff = PROBE_FIRST if won else min(2 * self.backoff, PROBE_LAST)
        if not self.on:
            self.wait = self.backoff


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def _as_draft(draft, target: ARModel) -> Draft:
    if isinstance(draft, Draft):
        if hasattr(draft, "vocab_size") and draft.vocab_size != target.vocab_size:
            raise MismatchError(f"the draft's vocabulary has {draft.vocab_size} tokens but the target's "
                                f"{target.vocab_size}; use a draft trained with the target's tokenizer")
        return draft
    if not isinstance(draft, ARModel):
        raise ConfigError(f"the draft must be an ARModel or a Draft (e.g. PromptLookupDraft()), got "
                          f"{type(draft).__name__}; pass a model on the target's vocabulary")
    if draft.vocab_size != target.vocab_size:
        raise MismatchError(f"the draft's vocabulary has {draft.vocab_size} tokens but the target's "
                            f"{target.vocab_size}; use a draft trained with the target's tokenizer")
    return NGramDraft(draft) if isinstance(draft, NGramModel) else ModelDraft(draft)


def _point_mass(x: int, like: Tensor) -> Tensor:
    """δ_x (V,): the distribution of a deterministic draft that proposes x."""
    q = torch.zeros_like(like)
    q[x] = 1.0
    return q


def _greedy_round(logp: Tensor, proposals: list[int], eos_id: int | None) -> tuple[list[int], int]:
    """Greedy verification with no processors: the target's argmax after the context and each proposal
    (logp (n+1, V)) -> (the round's tokens: the accepted proposals, then the target's own token; the
    number accepted). The tokens end at the first disagreement or at [EOS]."""
    choices = logp.argmax(-1).tolist()  # (n+1,)
    new: list[int] = []
    for i, y in enumerate(choices):
        new.append(y)
        if i == len(proposals) or y != proposals[i] or y == eos_id:
            return new, i + (i < len(proposals) and y == proposals[i])
    raise AssertionError("unreachable: the last row always ends the round")


def _prompt_list(prompt, sos_id: int) -> list[int]:
    if prompt is None:
        return [sos_id]
    try:
        t = as_long_tensor(prompt)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"the prompt must be a list of token ids ({e})") from e
    if t.dim() != 2 or t.shape[0] != 1 or t.shape[1] == 0:
        raise ConfigError(f"speculative decoding takes one non-empty prompt (batch size 1), got shape "
                          f"{tuple(t.shape)}; call it once per prompt")
    return t[0].tolist()


def _shadow_probe(draft: Draft, verifier: TargetVerifier, sampler: Sampler, context: list[int], n: int,
                  eos_id: int | None, plain_argmax: bool) -> tuple[list[int], list[float], int, int, int]:
    """A probe that costs the target nothing: the draft proposes up to ``n`` tokens after ``context``,
    the target decodes ``n`` plain steps (as speculation being off would), and the proposals equal to
    the target's tokens from the first on count as accepted. -> (the new tokens, their log-probs under
    the target, proposals made, proposals matched, the draft's forward calls)."""
    forwards_before = getattr(draft, "forwards", 0)
    proposals = list(draft.propose(context, n, sampler)[0])[:n]
    draft_forwards = getattr(draft, "forwards", 0) - forwards_before
    new: list[int] = []
    new_lp: list[float] = []
    matched = 0
    for i in range(max(n, 1)):
        logp = verifier.step([*context, *new])  # (V,)
        y = int(logp.argmax()) if plain_argmax else sampler.choose(sampler.scores([*context, *new], logp))
        new.append(y)
        new_lp.append(float(logp[y]))
        matched += matched == i and i < len(proposals) and y == proposals[i]
        if y == eos_id:
            break
    return new, new_lp, len(proposals), matched, draft_forwards


@torch.inference_mode()
def speculative_generate(
    target: ARModel,
    draft: ARModel | Draft,
    prompt=None,
    config: DecodingConfig | None = None,
    *,
    k: int = 4,
    adaptive: bool = True,
    cost: RoundCost | None = None,
    processors: LogitsPipeline | None = None,
    eos_id: int | None = EOS_ID,
    sos_id: int = SOS_ID,
    generator: torch.Generator | None = None,
    **settings: Any,
) -> SpeculativeResult:
    """Decode ``target`` from ``prompt`` (one row; None = [SOS]), ``draft`` proposing ≤ k tokens a round.

    ``draft``: an ARModel on the target's vocabulary, or a :class:`Draft` such as
    :class:`PromptLookupDraft`. The settings are a :class:`~arlm.decode.config.DecodingConfig` (or its
    fields as keyword arguments), as for :func:`arlm.decode.search.generate` (``temperature=0`` or the
    greedy strategy is greedy; the output then equals ``greedy_search``); the tokens are distributed
    as plain sampling from the (processed) target. Stops on ``eos_id`` or after ``max_new_tokens``.
    The same ``seed`` (or ``generator`` state) gives the same tokens.

    ``k`` is the first and the largest draft length: with ``adaptive`` (the default) the length
    follows the acceptance and speculation switches off while it does not pay
    (:class:`DraftSchedule`); ``adaptive=False`` proposes k tokens every round. ``cost``: what a
    round's proposals cost, in target steps (default: :meth:`RoundCost.of`'s fixed estimates).
    """
    # ----- validate (ConfigError / MismatchError, one sentence naming problem and fix) -----
    if not isinstance(target, ARModel):
        raise ConfigError(f"the target must be an ARModel, got {type(target).__name__}; pass a "
                          "model such as a TransformerLM")
    check_positive_int("k", k, "propose at least one draft token per round, e.g. k=4")
    config = decoding_config(config, settings)
    if config.stop_strings or config.sequences_per_prompt != 1:
        raise ConfigError("speculative decoding returns one sequence and takes no stop strings; "
                          "drop num_samples and stop_strings")
    max_new_tokens, seed = config.max_new_tokens, config.seed
    draft = _as_draft(draft, target)
    if processors is None:
        processors = config.processors()
    device = _device_of(target)
    greedy = config.greedy
    if generator is None and not greedy and seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    sampler = Sampler(processors, greedy, generator, device, eos_id)
    context = _prompt_list(prompt, sos_id)
    verifier = TargetVerifier(target)
    if cost is None:
        cost = RoundCost.of(target, draft, verifier.one_pass, plain_greedy=greedy and not len(processors))
    elif not isinstance(cost, RoundCost):
        raise ConfigError(f"cost must be a RoundCost, got {type(cost).__name__}; leave it out for the "
                          "built-in estimates")
    schedule = DraftSchedule(k, cost, adaptive)
    if schedule.never_pays:  # plain decoding, through its own loop (the same tokens, at its speed)
        plain = generate(target, [context], config, processors=processors, eos_id=eos_id, sos_id=sos_id,
                         generator=generator)
        n = int(plain.lengths[0])
        stats = SpeculativeStats(target_forwards=n, rounds=n, new_tokens=n, rounds_off=n)
        return SpeculativeResult(plain.tokens[0, :n], plain.log_probs[0, :n], plain.stop_reason[0], stats)
    stats = SpeculativeStats()
    draft_forwards0 = getattr(draft, "forwards", 0)
    out: list[int] = []
    out_lp: list[float] = []
    reason = STOP_LENGTH

    while len(out) < max_new_tokens:
        # ----- the draft proposes (never past the budget: the round adds one token of its own) -----
        length = schedule.next_length()  # 0: speculation is off this round
        if schedule.probing:  # off, probing: plain steps check the proposals (no verifying pass)
            n = min(length, max_new_tokens - len(out))
            new, new_lp, proposed, matched, draft_forwards = _shadow_probe(
                draft, verifier, sampler, context, n, eos_id, plain_argmax=greedy and not len(processors))
            stats.rounds += len(new)
            stats.rounds_off += len(new)
            stats.draft_rounds += 1
            stats.draft_length_sum += n
            stats.probes += 1  # (proposed and accepted count verified proposals only)
            schedule.update(proposed, matched, draft_forwards)
            context += new
            out += new
            out_lp += new_lp
            if eos_id is not None and out[-1] == eos_id:
                reason = STOP_EOS
                break
            continue
        n_max = min(length, max_new_tokens - len(out) - 1)
        proposals, q, draft_forwards = [], None, 0
        if n_max > 0:
            forwards_before = getattr(draft, "forwards", 0)
            proposals, q = draft.propose(context, n_max, sampler)
            draft_forwards = getattr(draft, "forwards", 0) - forwards_before
            stats.draft_rounds += 1
            stats.draft_length_sum += n_max
            stats.probes += schedule.probing
        stats.rounds_off += length == 0
        proposals = list(proposals[:n_max])
        if eos_id is not None and eos_id in proposals:  # nothing after [EOS] is worth checking
            proposals = proposals[: proposals.index(eos_id) + 1]

        # ----- the target scores context + proposals in one pass: row i is p(· | context, x_<i) -----
        stats.rounds += 1
        stats.proposed += len(proposals)
        new: list[int] = []
        round_accepted = 0
        if not proposals and greedy and not len(processors):  # a plain step (speculation off): its argmax
            logp = verifier.step(context)  # (V,)
            new.append(int(logp.argmax()))
            out_lp.append(float(logp[new[0]]))
        elif greedy and not len(processors):  # the model's argmaxes: one op for the round, not ~5 a row
            logp = verifier.verify(context, proposals)  # (n+1, V)
            new, round_accepted = _greedy_round(logp, proposals, eos_id)
            out_lp += logp.gather(1, torch.tensor(new, device=logp.device)[:, None])[:, 0].tolist()
        else:
            logp = verifier.verify(context, proposals)  # (n+1, V)
            for i in range(len(proposals) + 1):
                scores = sampler.scores([*context, *new], logp[i])  # (V,) the processed target
                if i == len(proposals):  # all proposals accepted: a bonus token from p itself
                    y, accepted = sampler.choose(scores), False
                elif greedy:
                    y = int(scores.argmax())
                    accepted = y == proposals[i]
                else:
                    p = sampler.probs(scores)  # (V,)
                    qi = q[i].to(device) if q is not None else _point_mass(proposals[i], p)  # (V,)
                    y, accepted = accept_or_resample(p, qi, proposals[i], generator)
                new.append(y)
                out_lp.append(float(logp[i, y]))
                round_accepted += accepted
                if not accepted or y == eos_id:
                    break
        stats.accepted += round_accepted
        if n_max > 0:
            schedule.update(len(proposals), round_accepted, draft_forwards)
        context += new
        out += new
        if eos_id is not None and out[-1] == eos_id:
            reason = STOP_EOS
            break

    stats.new_tokens = len(out)
    stats.target_forwards = verifier.forwards
    stats.draft_forwards = getattr(draft, "forwards", 0) - draft_forwards0
    return SpeculativeResult(torch.tensor(out, dtype=torch.long),
                             torch.tensor(out_lp, dtype=torch.float64), reason, stats)
