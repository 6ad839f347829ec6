"""The model work behind each endpoint, as plain functions of a loaded model (no HTTP here).

* :class:`TokenStream` — sampling or greedy decoding one token per call (``POST /v1/generate``),
  through :func:`arlm.usecases.decoding.decode_steps`, so the same seed gives the tokens of ``arlm generate``;
* :func:`beam_result` and :func:`beam_tree` — beam search's n-best, and every hypothesis it kept,
  finished or pruned at each step (``POST /v1/beam``);
* :func:`score_text` — NLL, perplexity, bits per character and per-token log-probs (``POST /v1/score``);
* :func:`next_distribution` — the next-token distribution after a prefix, before and after each
  logits processor (``POST /v1/next``): what temperature reshapes and what top-k / top-p / min-p cut;
* :func:`attention_view` — a Transformer's causal mask and attention weights (``POST /v1/attention``).

Every function returns JSON-ready values: a non-finite float (log 0, an infinite perplexity) is None.
The long ones (a whole generation, beam search) take a :class:`~arlm.serve.limits.Cancel` flag and
check it between steps, so a request that ran out of time or lost its client stops there.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from arlm.data.detokenize import IncrementalDetokenizer
from arlm.data.tokenizers import Tokenizer
from arlm.decode.config import DecodingConfig
from arlm.decode.fast import fast_decoder
from arlm.decode.search import BeamStep, beam_search
from arlm.errors import ConfigError
from arlm.serve.limits import Cancel
from arlm.serve.models import LoadedModel
from arlm.usecases.decoding import check_context, decode_steps
from arlm.usecases.generate import nbest


def num(x: float, digits: int | None = None) -> float | None:
    """A float for JSON: None when infinite or NaN, optionally rounded."""
    x = float(x)
    if not math.isfinite(x):
        return None
    return round(x, digits) if digits is not None else x


def token_text(tokenizer: Tokenizer, token: int) -> str:
    """How one token reads on its own: its decoded text, or its vocabulary entry for a special."""
    text = tokenizer.decode([token])
    return text if text else tokenizer.id_to_token(token)


def is_special(tokenizer: Tokenizer, token: int) -> bool:
    return token in (tokenizer.pad_id, tokenizer.sos_id, tokenizer.eos_id)


def token_event(tokenizer: Tokenizer, index: int, token: int, piece: str, logp: float) -> dict[str, Any]:
    """One token as the API shows it: position, id, its text in context, log p and p under the model."""
    return {"index": index, "id": token, "text": piece, "logprob": num(logp, 6),
            "prob": num(math.exp(logp), 6), "special": is_special(tokenizer, token)}


def prompt_ids(lm: LoadedModel, prompt_tokens: Sequence[int], tokens: Sequence[int] = (),
               max_new_tokens: int | None = 1) -> list[int]:
    """[SOS] + the prompt's ids (``prompt_tokens``, the request's prompt encoded once) + ``tokens`` (ids
    continuing it), checked to fit the model's context with room for ``max_new_tokens``
    (:func:`arlm.usecases.decoding.check_context`; None: not checked)."""
    for t in tokens:
        if not 0 <= t < lm.model.vocab_size:
            raise ConfigError(f"tokens: id {t} is outside the vocabulary of {lm.name} "
                              f"(0..{lm.model.vocab_size - 1})")
    ids = [lm.tokenizer.sos_id, *prompt_tokens]
    if max_new_tokens is None:
        return [*ids, *tokens]
    check_context(lm.model, ids, max_new_tokens)
    ids = [*ids, *tokens]
    if lm.block_size is not None and len(ids) + max_new_tokens - 1 > lm.block_size:
        raise ConfigError(f"the prompt and tokens are {len(ids)} tokens and max_new_tokens is "
                          f"{max_new_tokens}, more than the model's context of {lm.block_size}; "
                          "shorten them")
    return ids


# ---------------------------------------------------------------------------------------------
# Generation, token by token
# ---------------------------------------------------------------------------------------------


class Generation:
    """One generation request's answer as it grows: its tokens' events (each token's text in context,
    read by its own :class:`~arlm.data.detokenize.IncrementalDetokenizer`) and, once it has stopped,
    why. :class:`TokenStream` (one request on a worker) and
    :class:`~arlm.serve.batcher.BatchedStream` (a row of a continuous batch) share it."""

    def __init__(self, lm: LoadedModel, ids: list[int], config: DecodingConfig) -> None:
        self.lm, self.prompt_ids, self.config = lm, ids, config
        self._text = IncrementalDetokenizer(lm.tokenizer, ids[1:])  # each token's text in context
        self.prompt_text = self._text.prompt_text
        self.tokens: list[int] = []
        self.events: list[dict[str, Any]] = []
        self.pending = ""  # the text held back after the last event (an incomplete UTF-8 character)
        self._made = 0  # token events made (a batch makes them ahead of those recorded)
        self.stop_reason: str | None = None

    def make_event(self, token: int, logp: float, finished: bool) -> tuple[dict[str, Any], str]:
        """The next token's event ({index, id, text, logprob, prob, special}) and the text held back
        after it; the last token (``finished``) also carries the text held back to the end."""
        piece = self._text.add(token)
        if finished:
            piece += self._text.flush()
        event = token_event(self.lm.tokenizer, self._made, token, piece, logp)
        self._made += 1
        return event, self._text.pending

    def record(self, event: dict[str, Any], pending: str) -> None:
        """Count ``event`` as sent: its token is part of the answer."""
        self.tokens.append(event["id"])
        self.events.append(event)
        self.pending = pending

    def result(self) -> dict[str, Any]:
        """The whole answer: prompt, text (prompt + completion, as ``arlm generate`` prints it),
        completion, tokens with log-probs, and the stop reason. The tokens' texts join to the
        completion (closed early, the text also holds what was held back: an incomplete UTF-8
        character, shown as U+FFFD)."""
        completion = "".join(e["text"] for e in self.events) + self.pending
        return {"model": self.lm.name, "prompt": self.prompt_text, "text": self.prompt_text + completion,
                "completion": completion, "tokens": self.events, "num_tokens": len(self.tokens),
                "stop_reason": self.stop_reason, "config": self.config.to_dict()}


class TokenStream(Generation):
    """One request's sampling or greedy decoding, advanced one token per :meth:`advance` call.

    Calls may come from any worker thread (one at a time: a lock guards the generator), so
    concurrent requests interleave token by token. :meth:`close` stops the generation early.
    """

    def __init__(self, lm: LoadedModel, ids: list[int], config: DecodingConfig) -> None:
        super().__init__(lm, ids, config)
        self._steps = decode_steps(lm.model, lm.tokenizer, ids, config)
        self._lock = threading.Lock()

    def advance(self) -> dict[str, Any] | None:
        """One decoding step -> the new token's event ({index, id, text, logprob, prob, special}),
        or None once the generation has stopped (``stop_reason`` then says why)."""
        with self._lock:
            if self.stop_reason is not None:
                return None
            try:
                step = next(self._steps)
            except StopIteration as stop:
                self.stop_reason = stop.value.stop_reason[0]
                return None
            event, pending = self.make_event(int(step.tokens[0]), float(step.log_probs[0]),
                                              bool(step.finished[0]))
            self.record(event, pending)
            return event

    def run(self, cancel: Cancel | None = None) -> None:
        """Advance to the end (or until ``cancel`` is set: :class:`~arlm.serve.limits.Cancelled`)."""
        while True:
            if cancel is not None:
                cancel.check()
            if self.advance() is None:
                return

    def close(self, reason: str = "cancelled") -> None:
        """Stop early (the generator is closed; its model state is freed)."""
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason
            self._steps.close()


# ---------------------------------------------------------------------------------------------
# Beam search: the n-best and the tree
# ---------------------------------------------------------------------------------------------


def beam_tree(lm: LoadedModel, ids: list[int], config: DecodingConfig,
              cancel: Cancel | None = None) -> dict[str, Any]:
    """Run beam search from ``ids``, recording each step (:class:`arlm.decode.search.BeamStep`);
    ``cancel``, when set, stops it between steps.

    Nodes: the prompt (id 0) and every candidate among the 2K best of each step, with its parent
    node, token, joint log-prob ``score`` s(y) and ``status``: "kept" (a live beam next step),
    "finished" (joined the n-best list with ``norm`` = s / |y|^α) or "pruned".
    """
    steps: list[BeamStep] = []

    def record(step: BeamStep) -> None:
        if cancel is not None:
            cancel.check()
        steps.append(step)

    beams = beam_search(lm.model, [ids], config, eos_id=lm.tokenizer.eos_id, sos_id=lm.tokenizer.sos_id,
                        pad_id=lm.tokenizer.pad_id, trace=record)
    tok = lm.tokenizer
    alpha = float(config.length_penalty)
    nodes: list[dict[str, Any]] = [{"id": 0, "step": -1, "parent": None, "token": None,
                                    "text": tok.decode(ids[1:]), "score": 0.0, "status": "kept"}]
    live = {0: 0}  # live slot -> node id
    for s in steps:
        nxt: dict[int, int] = {}
        for j in range(s.tokens.shape[1]):
            score = float(s.scores[0, j])
            if not math.isfinite(score):
                continue
            slot, token = int(s.slot[0, j]), int(s.tokens[0, j])
            status = "finished" if bool(s.finished[0, j]) else ("kept" if slot >= 0 else "pruned")
            node = {"id": len(nodes), "step": s.step, "parent": live[int(s.parent[0, j])], "token": token,
                    "text": token_text(tok, token), "score": num(score, 5), "status": status}
            if status == "finished":
                node["norm"] = num(score / (s.step + 1) ** alpha, 5)
            nodes.append(node)
            if slot >= 0:
                nxt[slot] = node["id"]
        live = nxt
    return {"model": lm.name, "prompt": tok.decode(ids[1:]), "num_beams": config.num_beams,
            "length_penalty": alpha, "nodes": nodes, "steps": len(steps),
            "best": _nbest(lm, ids, beams)}


def beam_result(lm: LoadedModel, ids: list[int], config: DecodingConfig,
                cancel: Cancel | None = None) -> dict[str, Any]:
    """``/v1/generate`` with strategy beam: the best hypothesis as a generation result, and the n-best.
    The search is :func:`arlm.usecases.decoding.decode`'s (the same model step, the same hypotheses);
    ``cancel``, when set, stops it between steps."""
    tok = lm.tokenizer
    beams = beam_search(fast_decoder(lm.model, True), [ids], config, eos_id=tok.eos_id, sos_id=tok.sos_id,
                        pad_id=tok.pad_id, trace=cancel.check if cancel is not None else None)
    best = _nbest(lm, ids, beams)
    top = best[0] if best else {"text": lm.tokenizer.decode(ids[1:]), "tokens": [], "stop_reason": "length"}
    prompt = lm.tokenizer.decode(ids[1:])
    completion = top["text"][len(prompt):] if top["text"].startswith(prompt) else top["text"]
    return {"model": lm.name, "prompt": prompt, "text": top["text"], "completion": completion,
            "tokens": top["tokens"], "num_tokens": len(top["tokens"]), "stop_reason": top["stop_reason"],
            "config": config.to_dict(), "nbest": best}


def _nbest(lm: LoadedModel, ids: list[int], beams) -> list[dict[str, Any]]:
    """The n-best list of prompt 0: text, tokens with the model's log-probs, scores."""
    out = []
    for h in nbest(beams, lambda row: lm.tokenizer.decode(ids[1:] + row)):
        new = h.tokens
        logps = _model_logprobs(lm, ids, new)
        pieces = IncrementalDetokenizer(lm.tokenizer, ids[1:])
        tokens = [token_event(lm.tokenizer, i, t, pieces.add(t), lp)
                  for i, (t, lp) in enumerate(zip(new, logps, strict=True))]
        if tokens:  # the text held back to the end is the last token's
            tokens[-1]["text"] += pieces.flush()
        out.append({"text": h.text, "tokens": tokens, "score": num(h.score, 6),
                    "log_prob": num(h.log_prob, 6), "stop_reason": h.stop_reason})
    return out


@torch.inference_mode()
def _model_logprobs(lm: LoadedModel, ids: list[int], new: list[int]) -> list[float]:
    """log p(new_i | ids, new_<i) under the model (teacher forcing through ``score``)."""
    seq = torch.tensor([[*ids, *new]])  # (1, T)
    return lm.model.score(seq)[0, len(ids) - 1:].double().tolist()


# ---------------------------------------------------------------------------------------------
# Likelihood of a text
# ---------------------------------------------------------------------------------------------


class _KeepScores:
    """A model whose ``score`` calls are kept (``scores``), so one forward gives both the likelihood
    report and each token's log-prob."""

    def __init__(self, model) -> None:
        self.model, self.scores = model, []

    def score(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model.score(tokens)  # (B, T-1)
        self.scores.append(out)
        return out


@torch.inference_mode()
def score_text(lm: LoadedModel, text: str) -> dict[str, Any]:
    """NLL, perplexity and bits of ``text`` as one sequence [SOS] text [EOS]
    (:func:`arlm.evaluate.likelihood.evaluate_likelihood`), and each token's log p(x_t | x_<t), from
    one forward."""
    from arlm.evaluate.likelihood import evaluate_likelihood

    tok = lm.tokenizer
    ids = [tok.sos_id, *tok.encode(text), tok.eos_id]
    if lm.block_size is not None and len(ids) > lm.block_size:
        raise ConfigError(f"text: {len(ids)} tokens ([SOS] and [EOS] included) do not fit the model's "
                          f"context of {lm.block_size}; shorten the text")
    model = _KeepScores(lm.model)
    report = evaluate_likelihood(model, [np.array(ids, dtype=np.int64)], num_chars=len(text) + 1,
                                 sos_id=tok.sos_id, eos_id=tok.eos_id, unk_id=tok.unk_id,
                                 show_progress=False)
    (scores,) = model.scores  # one sequence that fits the context: one row, one forward
    logps = scores[0].double().tolist()  # (T-1,)
    pieces = IncrementalDetokenizer(tok)
    tokens = [token_event(tok, i, t, pieces.add(t), lp)
              for i, (t, lp) in enumerate(zip(ids[1:], logps, strict=True))]
    return {"model": lm.name, "text": text, "num_tokens": report.num_tokens, "nll": num(report.nll),
            "nll_per_token": num(report.nll_per_token), "perplexity": num(report.perplexity),
            "bits_per_token": num(report.bits_per_token), "bits_per_char": num(report.bits_per_char),
            "num_oov": report.num_oov, "tokens": tokens}


# ---------------------------------------------------------------------------------------------
# The next-token distribution, stage by stage
# ---------------------------------------------------------------------------------------------

TRUNCATION = ("top_k", "top_p", "min_p")


def stage_name(processor: Any) -> str:
    """A processor's setting name: TopK -> "top_k", NoRepeatNGram -> "no_repeat_ngram"."""
    name = type(processor).__name__.replace("NGram", "Ngram")
    return {"BannedTokens": "banned"}.get(name, re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower())


@torch.inference_mode()
def next_distribution(lm: LoadedModel, ids: list[int], config: DecodingConfig, top_n: int) -> dict[str, Any]:
    """p(· | ids) under the model, then after each processor of ``config`` (its fixed order).

    For the ``top_n`` most probable tokens: ``p`` (the model's), ``p_shaped`` (after penalties, bans
    and temperature: the distribution truncation looks at), ``p_final`` (what is sampled from;
    greedy: 1 for the argmax) and ``removed_by``, the first processor that set it to -inf.
    """
    model = lm.model
    logp, _ = model.step(torch.tensor([ids]), model.start(1))  # (1, V)
    logp = logp.double()
    history = torch.tensor([ids])  # (1, T)
    V = logp.shape[1]
    removed_by: list[str | None] = [None] * V
    scores, shaped = logp, logp
    for proc in config.processors():
        name = stage_name(proc)
        new = proc(history, scores)
        gone = (torch.isfinite(scores) & ~torch.isfinite(new))[0].nonzero().squeeze(1).tolist()
        for i in gone:
            removed_by[i] = name
        scores = new
        if name not in TRUNCATION:
            shaped = scores
    if not torch.isfinite(scores).any():
        raise ConfigError("every token is excluded after this prefix (banned, penalised or cut to "
                          "-inf); loosen the bans or the truncation settings")
    p_model = logp.exp()[0]  # (V,)
    p_shaped = torch.softmax(shaped, -1)[0]  # (V,)
    p_final = torch.softmax(scores, -1)[0]  # (V,)
    if config.greedy:
        best = int(scores.argmax())
        for i in torch.isfinite(scores)[0].nonzero().squeeze(1).tolist():
            if i != best:
                removed_by[i] = "greedy"
        p_final = torch.zeros_like(p_final)
        p_final[best] = 1.0
    top = p_model.topk(min(top_n, int(torch.isfinite(logp).sum())))  # tokens the model can predict
    tok = lm.tokenizer
    candidates = [{"id": i, "text": token_text(tok, i), "special": is_special(tok, i),
                   "p": num(p_model[i], 6), "logprob": num(logp[0, i], 6), "p_shaped": num(p_shaped[i], 6),
                   "p_final": num(p_final[i], 6), "removed_by": removed_by[i]}
                  for i in top.indices.tolist()]
    kept = int(torch.isfinite(scores).sum()) if not config.greedy else 1
    entropy = -(p_model * logp[0]).nan_to_num(0.0).sum()
    return {"model": lm.name, "prefix": tok.decode(ids[1:]), "position": len(ids) - 1,
            "vocab_size": V, "kept": kept, "greedy": config.greedy,
            "temperature": config.effective_temperature,
            "stages": [stage_name(p) for p in config.processors()],
            "entropy_bits": num(entropy / math.log(2), 5), "candidates": candidates,
            "mass_shown": num(top.values.sum(), 6)}


# ---------------------------------------------------------------------------------------------
# What a Transformer's tokens attend to
# ---------------------------------------------------------------------------------------------


def attention_view(lm: LoadedModel, ids: list[int], max_tokens: int) -> dict[str, Any]:
    """The causal mask (T, T) and the attention weights (layers, heads, T, T) of the first
    ``max_tokens`` tokens of ``ids`` (later tokens cannot change them: the mask hides them)."""
    from arlm.models.attention_maps import attention_weights, causal_grid

    if not lm.has_attention:
        raise ConfigError(f"model {lm.name!r} is a {lm.family} model; the attention view needs a "
                          "Transformer (family transformer or gpt2)")
    shown = ids[:min(max_tokens, lm.block_size or max_tokens)]
    weights = attention_weights(lm.model, torch.tensor(shown))  # (L, H, T, T)
    T = len(shown)
    mask = causal_grid(T) if lm.model.config.causal else torch.ones(T, T, dtype=torch.bool)
    return {"model": lm.name, "tokens": [token_text(lm.tokenizer, t) for t in shown], "ids": shown,
            "truncated": len(ids) > len(shown), "n_layer": weights.shape[0], "n_head": weights.shape[1],
            "mask": mask.int().tolist(), "weights": weights.round(decimals=4).tolist()}
