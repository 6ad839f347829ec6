"""Text in, tokens out: a prompt encoded for a model, a :class:`~arlm.decode.config.DecodingConfig`
applied to it, and what makes decoding faster (drafts for speculative decoding, int8 weights).

* :func:`encode_prompt`: ``[SOS]`` + the prompt's ids, checked to leave room in the model's context
  (:func:`check_context`); :func:`unknown_pieces`: what of a prompt the tokenizer reads as [UNK];
* :func:`decode`: one prompt continued with the config's strategy (sampling, greedy, beam search,
  speculative decoding with a draft); :func:`decode_steps`: the same one token at a time (the server);
* :func:`load_draft`, :func:`check_draft`, :func:`quantize`;
* :func:`distill_draft` (``arlm distill-draft``): a draft distilled from a model, saved beside it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arlm.data.tokenizers import Tokenizer
from arlm.decode.config import DecodingConfig
from arlm.errors import ConfigError, MismatchError
from arlm.models.base import ARModel
from arlm.usecases.checkpoints import load_model, load_order

PROMPT_LOOKUP = "prompt-lookup"
DISTILLED = "distilled"  # --draft distilled: the distilled draft saved in the model folder
DISTILLED_FILE = "distilled_draft.safetensors"  # its name there (arlm distill-draft's default)


def unknown_pieces(tokenizer: Tokenizer, text: str) -> list[str]:
    """The pieces of ``text`` that the tokenizer maps to [UNK] (words, or characters)."""
    if tokenizer.unk_id is None or tokenizer.unk_id not in tokenizer.encode(text):
        return []
    pieces = tokenizer.split(text) if hasattr(tokenizer, "split") else list(dict.fromkeys(text))
    return list(dict.fromkeys(p for p in pieces if tokenizer.unk_id in tokenizer.encode(p)))


def encode_prompt(model: ARModel, tokenizer: Tokenizer, prompt: str, max_new_tokens: int) -> list[int]:
    """``[SOS]`` + the prompt's ids, checked to leave room for ``max_new_tokens`` in the model's context."""
    ids = [tokenizer.sos_id, *tokenizer.encode(prompt)]
    check_context(model, ids, max_new_tokens)
    return ids


def check_context(model: ARModel, ids: list[int], max_new_tokens: int) -> None:
    """Refuse prompt ids (``[SOS]`` included) that leave no room for ``max_new_tokens`` in the model's
    context (its ``block_size``; a model without one takes any length)."""
    limit = getattr(getattr(model, "config", None), "block_size", None)
    if limit is not None and len(ids) + max_new_tokens - 1 > limit:
        fixes = []
        if limit + 1 - max_new_tokens >= 1:
            fixes.append(f"shorten the prompt to ≤ {limit + 1 - max_new_tokens} tokens")
        if limit + 1 - len(ids) >= 1:
            fixes.append(f"lower max_new_tokens to ≤ {limit + 1 - len(ids)}")
        raise ConfigError(
            f"the prompt is {len(ids)} tokens ([SOS] included) and max_new_tokens asks for "
            f"{max_new_tokens} more, but the model's context (block_size) is {limit} tokens; "
            + (" or ".join(fixes) or f"the prompt's tokens plus max_new_tokens must be ≤ {limit + 1}"))


def decode(model: ARModel, tokenizer: Tokenizer, prompt_ids: list[int], config: DecodingConfig,
           on_token: Callable | None = None, *, draft: Any = None, draft_tokens: int = 4,
           adaptive_draft: bool = True, fast: bool = True):
    """Continue one prompt with ``config``'s strategy: :class:`~arlm.decode.search.Samples` (sampling,
    greedy; ``on_token`` streams them) or :class:`~arlm.decode.search.Beams` (beam search).

    ``draft`` (a model on the same tokenizer, or a :class:`~arlm.decode.speculative.Draft` such as
    prompt lookup; see :func:`load_draft`) turns on speculative decoding with at most
    ``draft_tokens`` proposals a round (the first round's number; with ``adaptive_draft`` the number
    then follows the acceptance and speculation pauses while it does not pay; without it,
    ``draft_tokens`` every round): a :class:`~arlm.decode.speculative.SpeculativeResult` (the same
    tokens as plain greedy decoding; sampling keeps the model's distribution). ``fast`` decodes a
    Transformer with the lean one-token step of :class:`~arlm.decode.fast.FastDecoder` (the same
    tokens).
    """
    from arlm.decode.fast import fast_decoder
    from arlm.decode.search import beam_search, generate

    for m in (model, draft):
        if hasattr(m, "eval"):
            m.eval()
    ids = {"eos_id": tokenizer.eos_id, "sos_id": tokenizer.sos_id, "pad_id": tokenizer.pad_id}
    target = fast_decoder(model, fast)
    if draft is not None:
        from arlm.decode.speculative import speculative_generate

        check_draft(config, draft_tokens)
        return speculative_generate(target, fast_decoder(draft, fast), [prompt_ids], config,
                                    k=draft_tokens, adaptive=adaptive_draft, eos_id=ids["eos_id"],
                                    sos_id=ids["sos_id"])
    if config.strategy == "beam":
        return beam_search(target, [prompt_ids], config, **ids)
    return generate(target, [prompt_ids], config, on_token=on_token,
                    decode=tokenizer.decode if config.stop_strings else None, **ids)


def decode_steps(model: ARModel, tokenizer: Tokenizer, prompt_ids: list[int], config: DecodingConfig):
    """:func:`decode` for the sampling and greedy strategies, one token at a time: a generator of
    :class:`~arlm.decode.search.Step` whose return value is the :class:`~arlm.decode.search.Samples`.
    The same tokens as :func:`decode` for the same config (the server streams them)."""
    from arlm.decode.config import DecodingError
    from arlm.decode.search import stream

    if config.strategy == "beam":
        raise DecodingError("strategy", "beam search finishes its hypotheses together and cannot be "
                                        "streamed token by token; use a sampling or greedy strategy")
    from arlm.decode.fast import fast_decoder

    if hasattr(model, "eval"):
        model.eval()
    return stream(fast_decoder(model, True), [prompt_ids], config, eos_id=tokenizer.eos_id,
                  sos_id=tokenizer.sos_id, pad_id=tokenizer.pad_id,
                  decode=tokenizer.decode if config.stop_strings else None)


def load_draft(spec: str | Path, tokenizer: Tokenizer, quantize_mode: str | None = None,
               model_path: str | Path | None = None):
    """A speculative-decoding draft: ``"prompt-lookup"``
    (:class:`~arlm.decode.speculative.PromptLookupDraft`); ``"distilled"`` (the
    :class:`~arlm.decode.distilled_draft.DistilledDraft` that ``arlm distill-draft`` saved in
    ``model_path``) or a distilled draft's ``.safetensors`` file; or a model folder (any family: an
    n-gram, a small Transformer, …) whose tokenizer is the same as ``tokenizer`` (the target model's),
    optionally int8-quantized."""
    from arlm.decode.speculative import PromptLookupDraft

    if str(spec) == PROMPT_LOOKUP:
        return PromptLookupDraft()
    if str(spec) == DISTILLED or (Path(spec).suffix == ".safetensors" and not Path(spec).is_dir()):
        return _load_distilled(spec, tokenizer, model_path)
    draft, draft_tok = load_model(spec)
    if not isinstance(draft, ARModel):
        raise ConfigError(f"the draft {spec} is not a language model (ARModel); pass a model folder "
                          f"or {PROMPT_LOOKUP}")
    if (draft_tok.kind != tokenizer.kind or draft_tok.vocab_size != tokenizer.vocab_size
            or list(draft_tok.vocab) != list(tokenizer.vocab)):
        raise MismatchError(f"the draft {spec} uses another tokenizer ({draft_tok.kind}, "
                            f"{draft_tok.vocab_size} tokens) than the model ({tokenizer.kind}, "
                            f"{tokenizer.vocab_size} tokens); train the draft on the same corpus with the "
                            f"same --tokenizer, or use --draft {PROMPT_LOOKUP}")
    return quantize(draft, quantize_mode) if hasattr(draft, "parameters") else draft


def _load_distilled(spec: str | Path, tokenizer: Tokenizer, model_path: str | Path | None):
    """The distilled draft ``spec`` names (a file, or ``distilled``: the one in ``model_path``), checked to
    be distilled with ``tokenizer``."""
    from arlm.decode.distilled_draft import DistilledDraft

    if str(spec) == DISTILLED:
        if model_path is None or not Path(model_path).is_dir():
            raise ConfigError(f"--draft {DISTILLED} reads {DISTILLED_FILE} from the model folder; pass the "
                              "draft's file instead")
        spec = Path(model_path) / DISTILLED_FILE
        if not spec.exists():
            raise ConfigError(f"{model_path} holds no distilled draft ({DISTILLED_FILE}); make one with "
                              f"`arlm distill-draft {model_path}`")
    draft = DistilledDraft.load(spec)
    digest = draft.source.get("tokenizer")
    if draft.vocab_size != tokenizer.vocab_size or digest not in (None, tokenizer_digest(tokenizer)):
        raise MismatchError(f"the draft {spec} was distilled with another tokenizer ({draft.vocab_size} "
                            f"tokens) than the model's ({tokenizer.vocab_size} tokens); distill it from this "
                            "model with `arlm distill-draft`")
    return draft


def tokenizer_digest(tokenizer: Tokenizer) -> str:
    """A short fingerprint of a tokenizer's vocabulary (what a distilled draft records)."""
    return hashlib.sha256("\x00".join(tokenizer.vocab).encode("utf-8")).hexdigest()[:16]


@dataclass
class DistillRequest:
    """``arlm distill-draft``: read ``split`` of ``corpus`` (encoded with the model's tokenizer, by
    ``unit``; at most ``max_tokens`` of it) through the model and save the table of its greedy choices
    after contexts of 1 … ``order`` − 1 tokens to ``out`` (default: the model folder's
    ``distilled_draft.safetensors``)."""

    model_path: Path
    corpus: str = "shakespeare"
    split: str = "train"
    unit: str = "documents"
    encoding: str = "utf-8"
    order: int = 10
    max_tokens: int | None = None
    rollouts: int = 128  # greedy continuations of passages of the text, counted too (0: none)
    out: Path | None = None


@dataclass
class DistilledInfo:
    """What :func:`distill_draft` wrote: the file, the tokens read, the contexts kept, the seconds."""

    path: Path
    tokens: int
    contexts: int
    order: int
    seconds: float


def distill_draft(request: DistillRequest,
                  progress: Callable[[int, int], None] | None = None) -> DistilledInfo:
    """Run ``request`` (:class:`DistillRequest`); ``progress(done, total)`` hears the tokens read."""
    from arlm.decode.distilled_draft import DistilledDraft
    from arlm.usecases.data import encode_split

    r = request
    if r.max_tokens is not None and (isinstance(r.max_tokens, bool) or not isinstance(r.max_tokens, int)
                                     or r.max_tokens < 2):
        raise ConfigError(f"--max-tokens must be an integer ≥ 2, got {r.max_tokens!r}; leave it out to read "
                          "the whole split")
    model_path = Path(r.model_path)
    out = r.out if r.out is not None else (model_path / DISTILLED_FILE if model_path.is_dir()
                                           else model_path.with_name(model_path.name + ".draft.safetensors"))
    if Path(out).is_dir():
        raise ConfigError(f"{out} is a folder; name the draft's file (e.g. {Path(out) / DISTILLED_FILE})")
    model, tok = load_model(model_path)
    order = load_order(model_path)
    if not order.identity:
        raise ConfigError(f"{model_path} reads its sequences in order {order.name!r}; a draft proposes the "
                          "next tokens left to right, so distill a left-to-right model")
    if tok is None:
        raise ConfigError(f"{model_path} has no tokenizer, so no text can be read through it; distill "
                          "through the Python API with token ids (DistilledDraft.distill)")
    tokens = encode_split(r.corpus, tok, r.split, r.unit, r.encoding).encoded.tokens
    tokens = tokens[: r.max_tokens] if r.max_tokens is not None else tokens
    t0 = time.perf_counter()
    draft = DistilledDraft.distill(model, tokens, order=r.order, rollouts=r.rollouts, progress=progress)
    draft.source = {"model": str(model_path), "corpus": str(r.corpus), "split": r.split, "unit": r.unit,
                    "tokens": str(len(tokens)), "rollouts": str(r.rollouts),
                    "tokenizer": tokenizer_digest(tok)}
    seconds = time.perf_counter() - t0
    draft.save(out)
    return DistilledInfo(Path(out), len(tokens), draft.size, draft.order, seconds)


def quantize(model: ARModel, mode: str | None) -> ARModel:
    """``model`` with int8 weights (``mode="int8"``, CPU only; :mod:`arlm.models.quantize`), or as it is
    (None). A model without weights to quantize (an n-gram) is a one-line error."""
    from arlm.models.quantize import quantize_model

    return quantize_model(model, mode)


def check_draft(config: DecodingConfig, draft_tokens: int) -> None:
    """What speculative decoding accepts: one sequence (no beam, no num_samples, no stop strings) and
    at least one draft token per round."""
    if isinstance(draft_tokens, bool) or not isinstance(draft_tokens, int) or draft_tokens < 1:
        raise ConfigError(f"draft_tokens (--draft-tokens) must be an integer ≥ 1, got {draft_tokens!r}; "
                          "propose e.g. 4 tokens a round")
    if config.strategy == "beam":
        raise ConfigError("a draft (speculative decoding) works with the greedy and sampling strategies, "
                          "not beam search; drop the draft or choose --strategy greedy")
    if config.sequences_per_prompt != 1 or config.stop_strings:
        raise ConfigError("a draft (speculative decoding) produces one sequence with no stop strings; "
                          "drop num_samples (--num-samples) and stop strings (--stop), or the draft")
