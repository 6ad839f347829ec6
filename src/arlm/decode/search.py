"""Generation loops written once against the ARModel interface (``start`` / ``step`` / ``State.select``).

Two loops serve every model family (n-gram, window, RNN, Transformer):

**Sampling and greedy search** (F19, F20) — :func:`generate`. From a prompt (by default [SOS]) draw

    x_{t+1} ~ softmax(P(log p(· | x_≤t)))

where P is the logits-processor pipeline of :mod:`arlm.decode.processors` (penalties → bans →
temperature τ → top-k → top-p → min-p). The temperature reshapes the distribution,
p_τ(w) ∝ p(w)^{1/τ}: τ = 1 is the model, τ → 0 tends to greedy, and τ = 0 *is* greedy search,
x_{t+1} = argmax_w P(log p(w | x_≤t)), taken without drawing a random number. ``top_k=1`` is greedy
too. The prompt is prefilled in one ``step`` (prompts of different lengths: see :func:`generate`).
Rows stop independently on [EOS], on a stop string (needs a ``decode`` callback) or when they
have ``max_new_tokens`` new tokens; a finished row is dropped from the batch (``State.select``) so
the model never computes it again. The same ``seed`` gives the same samples. :func:`stream` yields
the tokens step by step as they are chosen; :func:`generate` takes an ``on_token`` callback.

**Beam search** (F21) — :func:`beam_search`. Keep the K = ``num_beams`` best partial hypotheses by
joint log-probability s(y) = Σ_t log p(y_t | y_<t, prompt). Each step (the fairseq / HF scheme):

1. every live hypothesis y (B rows × K beams) is extended by every token w: s(y·w) = s(y) + log p(w | y);
2. the 2K best candidates of the row are taken (2K, so that K non-[EOS] ones remain even if up
   to K of them end in [EOS]);
3. a candidate that ends in [EOS] — or reaches ``max_new_tokens`` — is *finished*: if it ranks among
   the first K candidates it joins the row's finished list with the length-normalised score
   score(y) = s(y) / |y|^α (α = ``length_penalty``, |y| = generated tokens, [EOS] included), and
   the list keeps its K best; finished hypotheses are never extended;
4. the K best unfinished candidates become the live beams; ``State.select`` reorders the model state
   so that each beam follows its parent.

Stopping rule (HF ``early_stopping``, same semantics): a row is done — it takes no more finished
hypotheses — when its finished list holds K hypotheses (``early_stopping=True``, the default here);
with ``False`` when the list is full and the best live beam, normalised at the current length,
s_best / t^α, cannot beat the worst finished one (a heuristic: with α > 0 a longer continuation
might still); with ``"never"`` the same test but at the longest possible length L when α > 0, an
exact bound since log-probs are ≤ 0. The search ends when every row is done, no live beam is
left, or the budget of L = ``max_new_tokens`` is spent. The n-best list is the finished list,
best first. (Done rows of a batch keep being computed until all are done; ``tests/decode`` checks
that a beam as wide as V^L reproduces exhaustive search, and ``tests/interop`` that 4 beams match
HF ``generate`` token for token and score for score.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from arlm.data.detokenize import IncrementalDetokenizer
from arlm.decode.config import DecodingConfig, decoding_config
from arlm.decode.processors import LogitsPipeline
from arlm.errors import ConfigError
from arlm.models.base import ARModel, as_long_tensor
from arlm.streams import EOS_ID, PAD_ID, SOS_ID

STOP_EOS, STOP_LENGTH, STOP_STRING = "eos", "length", "stop_string"


# ---------------------------------------------------------------------------------------------
# Stop strings
# ---------------------------------------------------------------------------------------------


class StopStrings:
    """Whether a row's new text contains a stop string yet, one token at a time.

    Each row's text is decoded incrementally (:class:`~arlm.data.detokenize.IncrementalDetokenizer`
    over ``decode``) and only its end is searched: the characters a new token adds, the text held
    back, and the ``len(stop) - 1`` characters before them; an earlier match would have stopped the
    row already. So a row stops at the token where ``decode(new tokens)`` first contains a stop
    string, with work per token that does not grow with the row.
    """

    def __init__(self, stop_strings: tuple[str, ...] | list[str], decode: Callable[[list[int]], str]):
        self.stop_strings = tuple(stop_strings)
        self.decode = decode
        self.keep = max(len(s) for s in self.stop_strings) - 1  # characters that may start a match
        self.rows: dict[int, tuple[IncrementalDetokenizer, str]] = {}  # row -> (its text, its end)

    def add(self, row: int, token: int) -> bool:
        """Read row ``row``'s next token -> whether its text now contains a stop string."""
        detok, end = self.rows.get(row) or (IncrementalDetokenizer(self.decode), "")
        piece = detok.add(token)
        searched = end + piece + detok.pending
        self.rows[row] = (detok, (end + piece)[-self.keep:] if self.keep else "")
        return any(s in searched for s in self.stop_strings)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class Samples:
    """The output of :func:`generate` for N rows (N = prompts × ``num_samples``, prompt-major).

    ``tokens`` holds only the new tokens (the prompt is not repeated), right-padded with ``pad_id``
    — use ``lengths``, not the padding, to cut a row (in a GPT-2 vocabulary id 0 is a real token).
    ``log_probs`` are log p(token | prefix) under the *model* (before any processor), 0 where padded.
    ``stop_reason[i]`` is "eos", "length" (the token budget) or "stop_string".
    """

    tokens: Tensor  # (N, L) int64, L ≤ max_new_tokens
    log_probs: Tensor  # (N, L) float64, 0 where padded
    stop_reason: list[str]
    lengths: Tensor  # (N,) int64: new tokens in each row ([EOS] included)

    def rows(self) -> list[list[int]]:
        """Each row's new tokens as a list, padding cut off."""
        return [r[:n].tolist() for r, n in zip(self.tokens, self.lengths.tolist(), strict=True)]


@dataclass
class Step:
    """What :func:`stream` yields after every decoding step: the token each live row just got."""

    rows: Tensor  # (n,) int64: which output rows (0..N-1) produced a token at this step
    tokens: Tensor  # (n,) int64: the tokens, in the order of ``rows``
    log_probs: Tensor  # (n,) float64: their log-probs under the model
    finished: Tensor  # (n,) bool: the row stopped with this token


@dataclass
class Beams:
    """The n-best output of :func:`beam_search` for B prompts, R = ``num_return_sequences`` each.

    ``tokens[b, r]`` is the r-th best hypothesis of prompt b (new tokens only, padded with
    ``pad_id`` after ``lengths[b, r]``), ``scores`` its length-normalised score s / |y|^α,
    ``log_probs`` its joint log-probability s (under the processed distribution; with no
    processors, the model's). Rows are sorted best first; a slot with no hypothesis (possible only
    when fewer than R complete sequences exist) has score -inf and length 0.
    """

    tokens: Tensor  # (B, R, L) int64
    scores: Tensor  # (B, R) float64
    log_probs: Tensor  # (B, R) float64
    lengths: Tensor  # (B, R) int64
    stop_reason: list[list[str]]  # "eos" or "length"


@dataclass
class BeamStep:
    """One step of :func:`beam_search`, for a ``trace``: the 2K candidates of each prompt and their fate.

    Candidate j of prompt b extends live beam ``parent[b, j]`` (a slot 0..K-1 of the previous step;
    at step 0 every candidate extends slot 0, the prompt) by ``tokens[b, j]``, with joint score
    s(y·w) = ``scores[b, j]`` (-inf: not a real candidate). It either joined the finished list
    (``finished``), lives on in slot ``slot[b, j]`` ≥ 0, or was pruned (neither). Candidates
    outside the 2K best are pruned without being listed.
    """

    step: int  # t: candidates have t + 1 new tokens
    parent: Tensor  # (B, 2K) int64
    tokens: Tensor  # (B, 2K) int64
    scores: Tensor  # (B, 2K) float64
    finished: Tensor  # (B, 2K) bool
    slot: Tensor  # (B, 2K) int64: the live slot next step, -1 if not kept


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def _prompt_tensor(prompt, sos_id: int, pad_id: int = PAD_ID,
                   ragged: bool = False) -> tuple[Tensor, Tensor]:
    """None -> [[SOS]]; a (T,) or (B, T) tensor/array/nested list -> ((B, T) ids, (B,) lengths).

    Rows of different lengths (a list of lists) are right-padded with ``pad_id`` when ``ragged``
    (the caller never feeds the padding), else refused: no family sees a padding mask, so padding
    fed to a model would be read as text.
    """
    if prompt is None:
        return torch.full((1, 1), sos_id, dtype=torch.long), torch.ones(1, dtype=torch.long)
    lengths = None
    if isinstance(prompt, (list, tuple)) and prompt and isinstance(prompt[0], (list, tuple)):
        lengths = [len(r) for r in prompt]
        if len(set(lengths)) > 1:
            if not ragged:
                raise ConfigError(f"prompts have different lengths {sorted(set(lengths))}; beam "
                                  "search needs one length per call, so group the prompts by length")
            if min(lengths) == 0:
                raise ConfigError("a prompt is empty; start every prompt with [SOS] "
                                  f"(id {sos_id}) for arlm models")
            T = max(lengths)
            prompt = [[*r, *([pad_id] * (T - len(r)))] for r in prompt]
    try:
        t = as_long_tensor(prompt)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"the prompt must be a (batch, time) array of token ids ({e})") from e
    if t.dim() != 2 or t.shape[1] == 0 or t.shape[0] == 0:
        raise ConfigError(f"the prompt must be a non-empty (batch, time) array of token ids, got shape "
                          f"{tuple(t.shape)}; start it with [SOS] (id {sos_id}) for arlm models")
    if lengths is not None:
        return t, torch.tensor(lengths, dtype=torch.long)
    return t, torch.full((t.shape[0],), t.shape[1], dtype=torch.long)


def _device_of(model: ARModel) -> torch.device:
    dev = getattr(model, "device", None)
    return dev if isinstance(dev, torch.device) else torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# Sampling and greedy search
# ---------------------------------------------------------------------------------------------


@torch.inference_mode()
def stream(
    model: ARModel,
    prompt=None,
    config: DecodingConfig | None = None,
    *,
    processors: LogitsPipeline | None = None,
    eos_id: int | None = EOS_ID,
    sos_id: int = SOS_ID,
    pad_id: int = PAD_ID,
    decode: Callable[[list[int]], str] | None = None,
    generator: torch.Generator | None = None,
    **settings: Any,
) -> Iterator[Step]:
    """Generate as :func:`generate` does, yielding a :class:`Step` after each chosen token.

    The generator's return value (``StopIteration.value``, or ``result = yield from stream(...)``)
    is the :class:`Samples` of the whole run.
    """
    config = decoding_config(config, settings)
    if processors is None:
        processors = config.processors()
    greedy = config.greedy
    num_samples, max_new_tokens = config.sequences_per_prompt, config.max_new_tokens
    stop_strings, seed = list(config.stop_strings), config.seed
    if stop_strings and decode is None:
        raise ConfigError("stop_strings need decode=, a callback from token ids to text "
                          "(e.g. tokenizer.decode)")
    stops = StopStrings(stop_strings, decode) if stop_strings else None
    device = _device_of(model)
    prompts, plen = _prompt_tensor(prompt, sos_id, pad_id, ragged=True)  # (B, Tp), (B,)
    prompts, plen = prompts.to(device), plen.to(device)
    B, Tp = prompts.shape
    T0 = int(plen.min())  # the common length, prefilled at once
    N = B * num_samples
    L = max_new_tokens

    # ----- prefill: the first T0 prompt tokens in one step, then one row per sample -----
    state = model.start(B)
    logp, state = model.step(prompts[:, :T0], state)  # (B, V)
    if num_samples > 1:
        rep = torch.arange(B, device=device).repeat_interleave(num_samples)  # (N,)
        state, logp, prompts, plen = state.select(rep), logp[rep], prompts[rep], plen[rep]

    # history[i, :T0 + t]: everything row i has been fed before step t (prompt, then new tokens);
    # kept only for the processors that read it (penalties, n-gram bans)
    history = (torch.cat([prompts, prompts.new_full((N, L), pad_id)], 1)  # (N, Tp+L)
               if len(processors) else None)
    out_tok = torch.full((N, L), pad_id, dtype=torch.long, device=device)  # (N, L)
    out_lp = torch.zeros(N, L, dtype=torch.float64, device=device)  # (N, L)
    lengths = torch.zeros(N, dtype=torch.long, device=device)  # (N,) new tokens so far
    reasons = [STOP_LENGTH] * N
    alive = torch.arange(N, device=device)  # output rows still generating, (n,)
    everyone = True  # alive is still every row 0..N-1
    T_max = int(plen.max())  # from step T_max - T0 on, no row reads its prompt any more
    uniform = T_max == T0  # one prompt length: every live row has t new tokens before step t
    if generator is None and not greedy and seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)

    # Each step costs a handful of tensor operations on (n,) rows — at batch 1 their dispatch, not
    # their arithmetic, is the price, so what is known in Python (no row forced any more, one prompt
    # length, every row still alive) is not recomputed as tensors.
    for t in range(Tp - T0 + L):
        # logp (n, V): log p(· | x_<T0+t) of the live rows; choose the next token of each
        pos = T0 + t  # the column of history this step fills
        forced = pos < plen[alive] if pos < T_max else None  # (n,) rows still reading a longer prompt
        # (n, V); with no processors the history is not gathered: the model's scores are used as is
        if history is not None:
            scores = processors(history[alive, :pos], logp)
            if not torch.isfinite(scores if forced is None else scores[~forced]).any(-1).all():
                raise ConfigError("every token is excluded for some row (banned, penalised or cut to "
                                  "-inf); loosen the bans or the truncation settings")
        else:
            scores = logp
        if greedy:
            nxt = scores.argmax(-1)  # (n,)
        else:
            probs = torch.softmax(scores.double(), dim=-1)  # (n, V)
            if forced is not None:
                probs[forced] = 1.0  # any valid distribution: the token is replaced below
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (n,)
        if forced is not None:
            nxt = torch.where(forced, prompts[alive, pos], nxt)
        if history is not None:
            history[alive, pos] = nxt
        nxt_col = nxt[:, None]  # (n, 1): gathered here, fed to the model below
        tok_lp = logp.gather(1, nxt_col).squeeze(1).double()  # (n,)
        if forced is None:  # every live row produced a new token
            gen, rows, new_tok, new_lp = None, alive, nxt, tok_lp
        else:
            gen = ~forced
            rows, new_tok, new_lp = alive[gen], nxt[gen], tok_lp[gen]  # the rows that produced one
        if uniform:  # column t for every live row
            if everyone:
                out_tok[:, t], out_lp[:, t] = nxt, tok_lp
                lengths.fill_(t + 1)
            else:
                out_tok[alive, t], out_lp[alive, t] = nxt, tok_lp
                lengths[alive] = t + 1
        else:
            col = lengths[rows]
            out_tok[rows, col], out_lp[rows, col] = new_tok, new_lp
            lengths[rows] = col + 1

        # ----- which rows stop with this token (over the n live rows; None: no row can) -----
        is_eos = None if eos_id is None else (nxt == eos_id if gen is None else gen & (nxt == eos_id))
        done = is_eos  # (n,) bool or None
        if stops is not None:
            done = torch.zeros_like(nxt, dtype=torch.bool) if done is None else done.clone()
            for i in (done.logical_not() if gen is None else gen & ~done).nonzero().squeeze(1).tolist():
                row = int(alive[i])
                if stops.add(row, int(nxt[i])):  # the row's new text contains a stop string
                    done[i] = True
                    reasons[row] = STOP_STRING
        if uniform:
            if t + 1 == L:  # the budget
                done = torch.ones_like(nxt, dtype=torch.bool)
        else:
            budget = (lengths[alive] == L) if gen is None else gen & (lengths[alive] == L)
            done = budget if done is None else done | budget
        if gen is None or gen.any():
            finished = done if done is not None else torch.zeros_like(nxt, dtype=torch.bool)
            yield Step(rows, new_tok, new_lp, finished if gen is None else finished[gen])

        if done is not None and done.any():  # drop finished rows from the batch and the model state
            if is_eos is not None:
                for row in alive[is_eos].tolist():
                    reasons[row] = STOP_EOS
            keep = (~done).nonzero().squeeze(1)  # (n',)
            if keep.numel() == 0:
                break
            alive, nxt_col, state = alive[keep], nxt_col[keep], state.select(keep)
            everyone = False
        logp, state = model.step(nxt_col, state)  # (n, V)

    n_max = int(lengths.max())
    return Samples(out_tok[:, :n_max].clone(), out_lp[:, :n_max].clone(), reasons, lengths)


def generate(model: ARModel, prompt=None, config: DecodingConfig | None = None, *,
             on_token: Callable[[Step], None] | None = None, **kwargs) -> Samples:
    """Sample (or, with ``temperature=0``, greedily decode) continuations of ``prompt``.

    ``prompt``: None (each row starts from [SOS]) or B prompts of ids — a (B, T) array, or a list of
    lists of any lengths; each prompt gets ``num_samples`` rows, prompt-major. The common length
    T0 = min_i |prompt_i| is prefilled in one ``step``; a longer prompt's remaining tokens are fed
    one per step (forced, not sampled) while shorter rows already generate. No padding ever enters
    a model (no family takes a padding mask), so every row is decoded exactly as if it were alone;
    the price is one step per extra prompt token. Group prompts by length for the fastest prefill.

    The settings are a :class:`~arlm.decode.config.DecodingConfig` (strategy sample, greedy, top-k or
    top-p; validated once), given whole as ``config`` or as its fields in keyword arguments
    (``temperature=0``, ``top_k=50``, ``num_samples=4``, ``max_new_tokens``, ``stop_strings``,
    ``seed``, …), which override ``config``'s. Beyond it:

    * ``eos_id`` — the token that ends a row (None: never); ``sos_id``/``pad_id`` — the vocabulary's;
    * ``processors`` — a ready pipeline instead of the config's (the config then only says greedy or not);
    * ``decode`` (ids -> text, e.g. ``tokenizer.decode``) — needed by ``stop_strings``: a row stops once
      the text of its new tokens contains a stop string (the token completing it is kept); the text
      is decoded incrementally (:class:`StopStrings`);
    * ``generator`` — instead of ``seed``; the same seed gives the same samples;
    * ``on_token`` — called with each :class:`Step` as it is produced (streaming).
    """
    it = stream(model, prompt, config, **kwargs)
    while True:
        try:
            step = next(it)
        except StopIteration as stop:
            return stop.value
        if on_token is not None:
            on_token(step)


def greedy_search(model: ARModel, prompt=None, **kwargs) -> Samples:
    """:func:`generate` with ``temperature=0``: x_{t+1} = argmax_w log p(w | x_≤t)."""
    return generate(model, prompt, temperature=0.0, **kwargs)


def ancestral_sample(
    model: ARModel,
    num_samples: int = 1,
    max_new_tokens: int = 100,
    temperature: float = 1.0,
    seed: int | None = 0,
) -> Samples:
    """Ancestral sampling from [SOS] (F19): ``num_samples`` rows in one batch until [EOS] or the budget.

    Kept for its callers; :func:`generate` is the general form. ``temperature`` must be > 0 here
    (use :func:`greedy_search` for τ = 0).
    """
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0 for sampling, got {temperature}; "
                          "use greedy_search for temperature 0")
    config = DecodingConfig(num_samples=num_samples, max_new_tokens=max_new_tokens,
                            temperature=temperature, seed=seed)
    return generate(model, None, config)


# ---------------------------------------------------------------------------------------------
# Beam search
# ---------------------------------------------------------------------------------------------

@torch.inference_mode()
def beam_search(
    model: ARModel,
    prompt=None,
    config: DecodingConfig | None = None,
    *,
    processors: LogitsPipeline | None = None,
    eos_id: int | None = EOS_ID,
    sos_id: int = SOS_ID,
    pad_id: int = PAD_ID,
    trace: Callable[[BeamStep], None] | None = None,
    **settings: Any,
) -> Beams:
    """Beam search with n-best output (see the module docstring for the algorithm and stopping rule).

    ``prompt``: None ([SOS]) or (B, T) ids, one length (prefilled in one ``step``); each prompt is
    searched independently, its K beams being rows of one model batch (B·K rows).
    The settings are a :class:`~arlm.decode.config.DecodingConfig` with strategy "beam" (or its fields
    as keyword arguments): ``num_beams`` K; ``length_penalty`` α: finished hypotheses are ranked by
    s / |y|^α (0: raw joint log-prob, 1: per-token average); ``early_stopping``; ``num_samples``
    R ≤ K (default K): how many of the n-best to return; ``repetition_penalty``,
    ``no_repeat_ngram_size`` and ``banned`` reshape the log-probs before they are added, as in HF
    (or pass a ready ``processors`` pipeline). ``trace``, if given, is called with a
    :class:`BeamStep` after every step (the server draws the search tree from it).
    """
    config = decoding_config(config, settings, strategy="beam")
    num_beams, max_new_tokens = config.num_beams, config.max_new_tokens
    length_penalty, early_stopping = config.length_penalty, config.early_stopping
    R = config.sequences_per_prompt
    if processors is None:
        processors = config.processors()
    processors = processors if len(processors) else None

    device = _device_of(model)
    prompts = _prompt_tensor(prompt, sos_id)[0].to(device)  # (B, T0)
    B = prompts.shape[0]
    K, L, V = num_beams, max_new_tokens, model.vocab_size
    alpha = float(length_penalty)
    neg = float("-inf")
    rows = torch.arange(B, device=device)[:, None]  # (B, 1)

    # live beams: (B, K) slots; only beam 0 is live at first (the others would duplicate it)
    run_tok = torch.full((B, K, L), pad_id, dtype=torch.long, device=device)  # generated so far
    run_score = torch.full((B, K), neg, dtype=torch.float64, device=device)  # s(y)
    run_score[:, 0] = 0.0
    # finished hypotheses: the K best per row, by normalised score
    fin_tok = torch.full((B, K, L), pad_id, dtype=torch.long, device=device)
    fin_norm = torch.full((B, K), neg, dtype=torch.float64, device=device)  # s / |y|^α
    fin_score = torch.full((B, K), neg, dtype=torch.float64, device=device)  # s
    fin_len = torch.zeros(B, K, dtype=torch.long, device=device)
    row_done = torch.zeros(B, dtype=torch.bool, device=device)  # no more additions
    heuristic_ok = torch.ones(B, dtype=torch.bool, device=device)

    state = model.start(B)
    logp, state = model.step(prompts, state)  # (B, V): one prefill per prompt
    flat = torch.arange(B, device=device).repeat_interleave(K)  # (B*K,) beam slot -> prompt row
    state, logp = state.select(flat), logp[flat]  # (B*K, V)
    prompt_rows = prompts[flat]  # (B*K, T0)

    for t in range(L):
        n_new = t + 1  # |y| of a candidate made at this step
        if processors is not None:
            hist = torch.cat([prompt_rows, run_tok.view(B * K, L)[:, :t]], 1)  # (B*K, T0+t)
            logp = processors(hist, logp)
        cand = run_score[:, :, None] + logp.double().view(B, K, V)  # (B, K, V): s(y·w)
        cand = cand.view(B, K * V)
        n_cand = min(2 * K, K * V)
        top_s, top_i = cand.topk(n_cand, dim=1)  # (B, 2K), best first
        beam, tok = top_i // V, top_i % V  # (B, 2K) parent beam, new token
        valid = torch.isfinite(top_s)
        ends = torch.ones_like(valid) if n_new == L else (tok == eos_id if eos_id is not None
                                                        else torch.zeros_like(valid))
        seqs = run_tok[rows, beam].clone()  # (B, 2K, L) parents' tokens
        seqs[:, :, t] = tok

        # finished candidates among the first K join the finished list (unless the row is done)
        rank_ok = torch.arange(n_cand, device=device)[None, :] < K
        add = ends & valid & rank_ok & ~row_done[:, None]  # (B, 2K)
        new_norm = torch.where(add, top_s / n_new**alpha, neg)  # (B, 2K)
        m_norm = torch.cat([fin_norm, new_norm], 1)  # (B, K+2K)
        keep = m_norm.topk(K, dim=1).indices  # (B, K)
        fin_norm = m_norm.gather(1, keep)
        fin_score = torch.cat([fin_score, torch.where(add, top_s, neg)], 1).gather(1, keep)
        fin_len = torch.cat([fin_len, torch.full_like(tok, n_new)], 1).gather(1, keep)
        fin_tok = torch.cat([fin_tok, seqs], 1)[rows, keep]  # (B, K, L)

        # the K best unfinished candidates live on
        live_s = torch.where(ends | ~valid, neg, top_s)  # (B, 2K)
        nxt = live_s.topk(K, dim=1).indices  # (B, K)
        run_score = live_s.gather(1, nxt)
        parent = beam.gather(1, nxt)  # (B, K)
        run_tok = seqs[rows, nxt]  # (B, K, L)
        new_tok = tok.gather(1, nxt)  # (B, K)
        if trace is not None:
            kept = torch.where(torch.isfinite(run_score), torch.arange(K, device=device), -1)  # (B, K)
            slot = torch.full_like(tok, -1).scatter(1, nxt, kept)  # (B, 2K)
            trace(BeamStep(t, beam.clone(), tok.clone(), top_s.clone(), add.clone(), slot))

        # stopping rule (HF): full finished list (early_stopping=True) or no possible improvement
        full = torch.isfinite(fin_norm).all(1)  # (B,)
        best_len = L if (early_stopping == "never" and alpha > 0) else n_new
        best_possible = run_score[:, 0] / best_len**alpha  # (B,)
        heuristic_ok &= ~full | (best_possible > fin_norm.min(1).values)
        row_done = ~heuristic_ok | (full & (early_stopping is True))
        if n_new == L or row_done.all() or not torch.isfinite(run_score).any():
            break
        # follow the surviving hypotheses: slot (b, k) continues beam parent[b, k] of row b
        src = (parent + rows * K).view(-1)  # (B*K,)
        state = state.select(src)
        logp, state = model.step(new_tok.view(B * K, 1), state)  # (B*K, V)

    # ----- the n-best lists, best first -----
    order = fin_norm.argsort(dim=1, descending=True, stable=True)[:, :R]  # (B, R)
    lens = fin_len.gather(1, order)
    lens = torch.where(torch.isfinite(fin_norm.gather(1, order)), lens, 0)
    Lmax = max(int(lens.max()), 1)
    toks = fin_tok[rows, order][:, :, :Lmax]  # (B, R, Lmax)
    reasons = [["eos" if n and eos_id is not None and int(toks[b, r, n - 1]) == eos_id else "length"
                for r, n in enumerate(lens[b].tolist())] for b in range(B)]
    return Beams(toks, fin_norm.gather(1, order), fin_score.gather(1, order), lens, reasons)
