"""Infilling: fill the blanks of a template, conditioned on everything around them (σ-GPT; F3).

A left-to-right model can only continue a prefix: p(x_{t+1} | x_{≤t}). A σ-GPT model (any order,
:mod:`arlm.models.sigma_gpt`) can put the known tokens first in its order and generate the unknown
ones after them, each conditioned on *every* known token, left and right:

    p(x_U | x_K) = ∏_{i ∈ U, in a random order} p(x_i | x_K, the x_U drawn so far).

**Templates.** Each blank character ``_`` is one unknown *token*: with a character tokenizer,
``"To be, or ___ to be"`` asks for exactly three characters (a blank's length is decided by the
template; write as many ``_`` as characters wanted). The text between blanks is encoded with the
model's tokenizer. A template must hold at least one blank and at least one known token.

:func:`parse_template` turns a template into ``[SOS] … [EOS]`` ids and a mask of known positions;
:func:`infill_tokens` fills any such mask (the Python API: any positions, e.g. the bottom half of an
image); :func:`infill_text` does both and decodes.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from arlm.errors import ConfigError, MismatchError
from arlm.streams import EOS_ID, PAD_ID, SOS_ID

BLANK = "_"


def parse_template(tokenizer, template: str, blank: str = BLANK) -> tuple[np.ndarray, np.ndarray]:
    """A template -> (ids (n+2,) ``[SOS] … [EOS]`` with [PAD] at the blanks, known (n+2,) bool).

    Each ``blank`` character is one unknown token; the text between blanks is encoded as usual."""
    if blank not in template:
        raise ConfigError(f"the template {template!r} has no blank; mark each unknown character with "
                          f"{blank} (e.g. \"To be, or {blank * 3} to be\")")
    ids, known = [SOS_ID], [True]
    for piece in re.split(f"({re.escape(blank)})", template):
        if piece == blank:
            ids.append(PAD_ID)
            known.append(False)
        elif piece:
            encoded = tokenizer.encode(piece)
            ids.extend(encoded)
            known.extend([True] * len(encoded))
    ids.append(EOS_ID)
    known.append(True)
    if all(not k for k in known[1:-1]):
        raise ConfigError("the template is only blanks: give some known text around them to condition "
                          "on, or use `arlm sample` to draw text from nothing")
    return np.array(ids, dtype=np.int64), np.array(known, dtype=bool)


def check_infill_model(model) -> None:
    """Only an any-order model can infill: a ConfigError naming the family otherwise."""
    from arlm.models.sigma_gpt import SigmaGPT

    if not isinstance(model, SigmaGPT):
        family = getattr(model, "family", type(model).__name__)
        raise MismatchError(f"infilling needs a σ-GPT model (arlm train sigma_gpt), which can condition "
                            f"on text to the right of a blank; this is a {family!r} model, trained in "
                            "one fixed order")


def infill_tokens(model, tokens, known_mask, num_samples: int = 1, seed: int = 0,
                  temperature: float = 1.0, order: str = "random", banned: tuple[int, ...] = ()
                  ) -> torch.Tensor:
    """Fill the unknown positions of rows ``[SOS] x_1 … x_n [EOS]`` (B, T) or (T,), ``known_mask``
    of the same shape, ``num_samples`` times each -> (B·num_samples, T); known positions unchanged.
    ``order``: the unknown positions in a random or left-to-right (``"l2r"``) order; ``banned``: ids
    never drawn (e.g. ``(UNK_ID,)`` for images)."""
    check_infill_model(model)
    if num_samples < 1:
        raise ConfigError(f"num_samples must be at least 1, not {num_samples}")
    tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    known_mask = torch.as_tensor(np.asarray(known_mask), dtype=torch.bool)
    if tokens.dim() == 1:
        tokens, known_mask = tokens[None], known_mask[None]
    if tokens.shape[1] > model.config.block_size:
        raise ConfigError(f"the template is {tokens.shape[1]} tokens ([SOS] and [EOS] included) but the "
                          f"model's context is {model.config.block_size}; shorten the template")
    tokens = tokens.repeat_interleave(num_samples, dim=0)
    known_mask = known_mask.repeat_interleave(num_samples, dim=0)
    model.eval()
    return model.infill(tokens, known_mask, seed=seed, temperature=temperature, order=order,
                        banned=banned).cpu()


def infill_text(model, tokenizer, template: str, num_samples: int = 1, seed: int = 0,
                temperature: float = 1.0, order: str = "random") -> list[str]:
    """Fill the blanks of ``template`` ``num_samples`` times -> the completed texts."""
    check_infill_model(model)
    ids, known = parse_template(tokenizer, template)
    filled = infill_tokens(model, ids, known, num_samples, seed, temperature, order)
    return [tokenizer.decode(row[1:-1]) for row in filled.tolist()]
