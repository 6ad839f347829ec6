"""Text in, tokens out: a prompt encoded for a model, a :class:`~arlm.decode.config.DecodingConfig`
applied to it, and what makes decoding faster (drafts for speculative decoding, int8 weights).

* :func:`encode_prompt`: ``[SOS]`` + the prompt's ids, checked to leave room in the model's context
  (:func:`check_context`); :func:`unknown_pieces`: what of a prompt the tokenizer reads as [UNK];
* :func:`decode`: one prompt continued with the config's strategy (sampling, greedy, beam search,
  speculative decoding with a draft); :func:`decode_steps`: the same one token at a time (the server);
* :func:`load_draft`, :func:`check_draft`, :func:`quantize`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from arlm.data.tokenizers import Tokenizer
from arlm.decode.config import DecodingConfig
from arlm.errors import ConfigError, MismatchError
from arlm.models.base import ARModel
from arlm.usecases.checkpoints import load_model

PROMPT_LOOKUP = "prompt-lookup"


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


def load_draft(spec: str | Path, tokenizer: Tokenizer, quantize_mode: str | None = None):
    """A speculative-decoding draft: ``"prompt-lookup"`` (:class:`~arlm.decode.speculative.PromptLookupDraft`)
    or a model folder (any family: an n-gram, a small Transformer, …) whose tokenizer is the same
    as ``tokenizer`` (the target model's), optionally int8-quantized."""
    from arlm.decode.speculative import PromptLookupDraft

    if str(spec) == PROMPT_LOOKUP:
        return PromptLookupDraft()
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
