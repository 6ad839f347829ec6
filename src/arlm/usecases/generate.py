"""``arlm generate``: a prompt continued by a model folder, as streamed text, a timed run, or beam
search's n-best.

* :func:`generate`: the use case (:class:`GenerateRequest` -> :class:`GeneratedTexts`,
  :class:`Generation` or :class:`NBest`); a model that writes in another order than reading order
  (right to left) continues its prompt to the left and shows its text in reading order;
* :func:`run_generation`: :func:`~arlm.usecases.decoding.decode`, timed, as a :class:`Generation`;
* :func:`nbest`: beam search's n-best list as :class:`Hypothesis` values (the CLI prints them, the
  server and ``--json`` serialise them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arlm.data.detokenize import IncrementalDetokenizer
from arlm.data.orders import OrderSpec
from arlm.data.tokenizers import Tokenizer
from arlm.decode.config import DecodingConfig
from arlm.decode.search import Beams, Samples
from arlm.errors import ConfigError
from arlm.models.base import ARModel
from arlm.usecases.checkpoints import load_model, load_order
from arlm.usecases.data import image_shape
from arlm.usecases.decoding import check_draft, decode, encode_prompt, load_draft, quantize, unknown_pieces
from arlm.usecases.sample import reading_order_text

# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class Hypothesis:
    """One hypothesis of beam search's n-best list (of the first prompt)."""

    rank: int  # 1-based place in the n-best list
    tokens: list[int]  # the new ids
    text: str
    score: float  # the ranking score s(y) / |y|^α
    log_prob: float  # log p(y | prompt)
    stop_reason: str

    def to_dict(self) -> dict[str, Any]:
        """As ``arlm generate --json`` writes a beam sequence."""
        return {"text": self.text, "tokens": self.tokens, "stop_reason": self.stop_reason,
                "score": self.score, "log_prob": self.log_prob}


def nbest(beams: Beams, text: Callable[[list[int]], str]) -> list[Hypothesis]:
    """The n-best list of the first prompt of ``beams``, empty hypotheses left out; ``text`` makes
    a hypothesis's text from its new ids."""
    out = []
    for r in range(beams.tokens.shape[1]):
        n = int(beams.lengths[0, r])
        if n == 0:
            continue
        row = beams.tokens[0, r, :n].tolist()
        out.append(Hypothesis(r + 1, row, text(row), float(beams.scores[0, r]), float(beams.log_probs[0, r]),
                              beams.stop_reason[0][r]))
    return out


@dataclass
class NBest:
    """Beam search's n-best list, each text in reading order."""

    hypotheses: list[Hypothesis]


@dataclass
class GeneratedTexts:
    """Sampled or greedy texts, in reading order: ``streamed`` when they were handed out while they
    were generated (``on_text``, ``on_sample``), and the length and stop reason of each."""

    texts: list[str]
    lengths: list[int]
    stop_reasons: list[str]
    order: OrderSpec
    streamed: bool


@dataclass
class Generation:
    """A timed :func:`~arlm.usecases.decoding.decode` run, ready to print or to serialise
    (``arlm generate --json``)."""

    prompt: str
    sequences: list[dict[str, Any]]  # each: text (prompt + continuation), tokens (new ids), stop_reason
    seconds: float  # wall clock of decoding (prefill included; loading excluded)
    new_tokens: int  # over all sequences
    draft: str | None = None
    draft_tokens: int | None = None
    adaptive_draft: bool = True
    stats: dict[str, Any] | None = None  # speculative decoding: acceptance rate, tokens per forward, …
    quantize: str | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        """One line: tokens, why the first sequence stopped, speed, the draft's acceptance."""
        line = (f"{self.new_tokens} tokens, {self.sequences[0]['stop_reason'] if self.sequences else '-'}; "
                f"{self.tokens_per_second:,.1f} tokens/s")
        if self.stats:
            line += (f"; draft acceptance {self.stats['acceptance_rate']:.1%}, "
                     f"{self.stats['tokens_per_target_forward']:.2f} tokens per target forward")
        return line

    def to_dict(self) -> dict[str, Any]:
        first = self.sequences[0] if self.sequences else {"text": self.prompt, "tokens": []}
        out = {"prompt": self.prompt, "text": first["text"], "tokens": first["tokens"],
               "sequences": self.sequences, "new_tokens": self.new_tokens,
               "decode_seconds": round(self.seconds, 6), "tokens_per_s": round(self.tokens_per_second, 3),
               "quantize": self.quantize, "draft": self.draft}
        if self.draft is not None:
            out.update({"draft_tokens": self.draft_tokens, "adaptive_draft": self.adaptive_draft,
                        **(self.stats or {})})
        return out


def run_generation(model: ARModel, tokenizer: Tokenizer, prompt: str, prompt_ids: list[int],
                   config: DecodingConfig, *, on_token: Callable | None = None, draft: Any = None,
                   draft_name: str | None = None, draft_tokens: int = 4, fast: bool = True,
                   quantize: str | None = None, adaptive_draft: bool = True) -> Generation:
    """:func:`~arlm.usecases.decoding.decode`, timed (loading excluded), its output as text: a
    :class:`Generation`."""
    t0 = time.perf_counter()
    result = decode(model, tokenizer, prompt_ids, config, on_token, draft=draft, draft_tokens=draft_tokens,
                    adaptive_draft=adaptive_draft, fast=fast)
    seconds = time.perf_counter() - t0
    head = prompt_ids[1:]
    stats = None
    if isinstance(result, Samples):
        rows = [result.tokens[i, : int(n)].tolist() for i, n in enumerate(result.lengths.tolist())]
        seqs = [{"text": tokenizer.decode(head + r), "tokens": r, "stop_reason": why}
                for r, why in zip(rows, result.stop_reason, strict=True)]
    elif isinstance(result, Beams):
        seqs = [h.to_dict() for h in nbest(result, lambda row: tokenizer.decode(head + row))]
    else:  # a SpeculativeResult
        row = result.tokens.tolist()
        seqs = [{"text": tokenizer.decode(head + row), "tokens": row, "stop_reason": result.stop_reason}]
        s = result.stats
        stats = {"acceptance_rate": round(s.acceptance_rate, 6),
                 "tokens_per_target_forward": round(s.tokens_per_target_forward, 6),
                 "target_forwards": s.target_forwards, "draft_forwards": s.draft_forwards,
                 "proposed": s.proposed, "accepted": s.accepted, "rounds": s.rounds,
                 "mean_draft_tokens": round(s.mean_draft_length, 6), "rounds_off": s.rounds_off,
                 "probes": s.probes}
    return Generation(prompt, seqs, seconds, sum(len(s["tokens"]) for s in seqs),
                      draft_name if draft is not None else None, draft_tokens if draft is not None else None,
                      adaptive_draft, stats, quantize)


# ---------------------------------------------------------------------------------------------
# The use case
# ---------------------------------------------------------------------------------------------


@dataclass
class GenerateRequest:
    """``arlm generate``: continue ``prompt`` with a model folder (or an ARPA file) and ``config``.

    ``draft`` (a model folder, ``prompt-lookup``, ``distilled`` or a distilled draft's file) turns on
    speculative decoding; ``quantize``
    (``int8``) quantizes the model (and a draft model); ``timed`` returns the whole run at the end as
    a :class:`Generation` (as a draft does) instead of streaming it. ``fast``: a Transformer decodes
    with the lean one-token step (the same tokens)."""

    model_path: Path
    prompt: str
    config: DecodingConfig
    draft: str | None = None
    draft_tokens: int = 4
    adaptive_draft: bool = True
    quantize: str | None = None
    fast: bool = True
    timed: bool = False


TextListener = Callable[[str], Any]
SampleListener = Callable[[int, str], Any]
UnknownListener = Callable[[list[str]], Any]


def generate(request: GenerateRequest, *, on_text: TextListener | None = None,
             on_sample: SampleListener | None = None,
             on_unknown: UnknownListener | None = None) -> GeneratedTexts | Generation | NBest:
    """Run ``request``: a :class:`Generation` when timed or with a draft, an :class:`NBest` for beam
    search, else :class:`GeneratedTexts`.

    A left-to-right model's sampled text is streamed: one sequence through ``on_text`` (first the
    prompt's text, then what each new token adds to it), several through ``on_sample`` (index, text)
    as each one finishes. ``on_unknown`` hears the prompt's pieces that the tokenizer reads as [UNK].
    """
    r, config = request, request.config
    if r.draft is not None:
        check_draft(config, r.draft_tokens)
    model, tok = load_model(r.model_path)
    spec = load_order(r.model_path)
    if not spec.identity:
        if r.draft is not None or r.quantize is not None or r.timed:
            raise ConfigError(f"--draft, --quantize and --json work with left-to-right models; this one "
                              f"generates in order {spec.name!r}: drop them")
        return generate_in_order(model, tok, spec, r.prompt, config)
    model = quantize(model, r.quantize)
    draft_model = None if r.draft is None else load_draft(r.draft, tok, r.quantize, r.model_path)
    unknown = unknown_pieces(tok, r.prompt)
    if unknown and on_unknown is not None:
        on_unknown(unknown)
    try:
        ids = encode_prompt(model, tok, r.prompt, config.max_new_tokens)
    except ConfigError as e:
        raise ConfigError(str(e).replace("max_new_tokens", "--max-new-tokens")) from None
    if r.timed or r.draft is not None:  # the whole text at the end
        return run_generation(model, tok, r.prompt, ids, config, draft=draft_model, draft_name=r.draft,
                              draft_tokens=r.draft_tokens, fast=r.fast, quantize=r.quantize,
                              adaptive_draft=r.adaptive_draft)
    if config.strategy == "beam":
        beams = decode(model, tok, ids, config, fast=r.fast)
        return NBest(nbest(beams, lambda row: tok.decode(ids[1:] + row)))
    return _stream(model, tok, ids, config, spec, r.fast, on_text or _ignore, on_sample or _ignore)


def _ignore(*_: Any) -> None:
    pass


def _stream(model: ARModel, tok: Tokenizer, ids: list[int], config: DecodingConfig, spec: OrderSpec,
            fast: bool, on_text: TextListener, on_sample: SampleListener) -> GeneratedTexts:
    """Sampling or greedy decoding, handing out one sequence's text as it grows, or each of several
    sequences once it is complete."""
    n_samples = config.sequences_per_prompt
    new: list[list[int]] = [[] for _ in range(n_samples)]
    text = IncrementalDetokenizer(tok, ids[1:])  # one sequence's text, token by token

    def on_token(step) -> None:
        for row, token, finished in zip(step.rows.tolist(), step.tokens.tolist(),
                                        step.finished.tolist(), strict=True):
            new[row].append(token)
            if n_samples == 1:
                on_text(text.add(token))
            elif finished:
                on_sample(row, tok.decode(ids[1:] + new[row]))

    if n_samples == 1:
        on_text(text.prompt_text)
    result = decode(model, tok, ids, config, on_token=on_token, fast=fast)
    if n_samples == 1:
        on_text(text.flush())  # the text held back to the end (an unfinished UTF-8 character)
    texts = [tok.decode(ids[1:] + row) for row in result.rows()]
    return GeneratedTexts(texts, result.lengths.tolist(), list(result.stop_reason), spec, streamed=True)


def generate_in_order(model: ARModel, tok: Tokenizer, spec: OrderSpec, prompt: str,
                      config: DecodingConfig) -> GeneratedTexts | NBest:
    """Generation by a model that writes in another order than reading order: an R2L model continues
    the prompt to the left (the prompt is the end of the text); texts come back in reading order."""
    if prompt and spec.name != "r2l":
        raise ConfigError(f"a model trained in order {spec.name} cannot continue a prompt (only l2r and "
                          "r2l models can); leave --prompt out")
    if not spec.reversible:
        raise ConfigError("a random-order model does not know which position it writes; use `arlm sample` "
                          "to see its draws, or a σ-GPT model and `arlm infill`")
    if image_shape(tok) is not None:
        raise ConfigError("this model draws images; use `arlm sample` (with --png FILE for a PNG grid)")
    prompt_ids = tok.encode(prompt)[::-1]  # read right to left: the last character first
    ids = encode_prompt(model, tok, "", config.max_new_tokens + len(prompt_ids))
    ids = ids + prompt_ids
    result = decode(model, tok, ids, config)

    def text(row: list[int]) -> str:
        return reading_order_text(prompt_ids + row, spec, tok)

    if config.strategy == "beam":
        return NBest(nbest(result, text))
    return GeneratedTexts([text(row) for row in result.rows()], result.lengths.tolist(),
                          list(result.stop_reason), spec, streamed=False)
