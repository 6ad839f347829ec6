"""GPT-2 as an arlm family: the Transformer of :mod:`arlm.models.transformer` over GPT-2's vocabulary.

arlm's own vocabularies reserve ids 0 and 1 for [PAD] and [SOS], and its models give them probability
0. In GPT-2's vocabulary ids 0 and 1 are ordinary tokens ("!" and '"'), and ``<|endoftext|>`` (50256)
opens and closes every text. So a GPT-2 model is the same network with a head that masks nothing;
its weights come from Hugging Face through :mod:`arlm.interop.gpt2` (``arlm import-gpt2``), and its
tokenizer is the folder's own (:class:`arlm.data.tokenizers.ForeignTokenizer`).
"""

from __future__ import annotations

from torch import Tensor

from arlm.models.transformer import TransformerLM


class GPT2LM(TransformerLM):
    """A :class:`TransformerLM` whose vocabulary is GPT-2's: no id is reserved, nothing is masked.

    log p(x_{t+1} = v | x_≤t) = z_{t,v} - log Σ_u exp z_{t,u} over *all* V tokens, as in HF.
    """

    family = "gpt2"

    def head(self, features: Tensor) -> Tensor:
        """(..., C) -> logits (..., V) = LN_f(z) Eᵀ, every token allowed."""
        return self.lm_head(features)
