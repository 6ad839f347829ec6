"""What the three neural families (window, RNN, Transformer) share: the output rule, scoring, files.

Every neural LM here ends the same way: some *features* h_t of the prefix x_{≤t} (a window of
embeddings, an RNN hidden state, a Transformer residual stream), then a linear *head* that gives
logits z_t = W h_t + b over the vocabulary, and

    log p(x_{t+1} = v | x_{≤t}) = z_{t,v} - log Σ_{u ∉ {[PAD], [SOS]}} exp z_{t,u}      (log_softmax)

with z_{t,[PAD]} = z_{t,[SOS]} = -inf: those two tokens are never predicted (see
:mod:`arlm.models.base`), and the remaining probabilities sum to one. :func:`mask_unpredictable`
is that one rule, applied by every family inside ``head``.

:class:`NeuralLM` builds the rest of the :class:`~arlm.models.base.ARModel` interface on top of a
family's ``features(tokens)`` and ``head(features)``:

* ``forward(tokens, state=None)`` -> (logits (B, T, V), state): the one step interface of every
  neural family, what a trainer feeds to ``F.cross_entropy``. ``state`` is None for the stateless
  families; a ``recurrent`` family (the RNNs) returns the state after x_T, which a trainer carries to
  the next batch of the same streams (truncated BPTT) without knowing the family; the Transformer
  accepts its ``KVCache`` and returns logits at every new position (a verifier's prefill);
* ``log_probs(tokens)`` -> (B, T, V), teacher forcing;
* ``score(tokens)`` -> (B, T-1), applying the head to chunks of positions so that (B, T, V) is never
  materialised;
* ``save(folder)`` / ``load(folder)``: ``config.json`` (``{"family": ..., "config": {...}}``) and
  ``model.safetensors`` (tied weights are stored once).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arlm.errors import ConfigError, FormatError, MismatchError
from arlm.io import atomic_dir, atomic_write
from arlm.models.base import as_long_tensor
from arlm.models.configs import config_from_dict
from arlm.streams import PAD_ID, SOS_ID

FORMAT_VERSION = 1
SCORE_CHUNK = 1 << 22  # logits held at once by ``score`` (positions per chunk x vocabulary size)


def mask_unpredictable(logits: Tensor) -> Tensor:
    """logits (..., V) -> the same with [PAD] and [SOS] set to -inf (never predicted). Not in place."""
    idx = torch.tensor([PAD_ID, SOS_ID], device=logits.device)
    return logits.index_fill(-1, idx, float("-inf"))


class NeuralLM(nn.Module):
    """Base class of the neural families: subclasses set ``family``, ``config_class`` and implement
    ``features`` and ``head`` (plus ``start``/``step`` for incremental decoding)."""

    family: ClassVar[str]
    config_class: ClassVar[type]
    recurrent: ClassVar[bool] = False  # the state after one batch starts the next (truncated BPTT)

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    # ----- what a family provides -------------------------------------------------------------

    def features(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> features (B, T, F) of each prefix x_{≤t}."""
        raise NotImplementedError

    def head(self, features: Tensor) -> Tensor:
        """features (..., F) -> logits (..., V), with [PAD] and [SOS] at -inf."""
        raise NotImplementedError

    # ----- the ARModel interface built on them ------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _tokens(self, tokens) -> Tensor:
        return as_long_tensor(tokens).to(self.device)

    def forward(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """tokens (B, T), state -> (logits (B, T, V), state); logits[:, t] predicts x_{t+1}.

        A stateless family takes and returns ``state=None``."""
        if state is not None:
            raise ConfigError(f"the {self.family} model carries no state between calls; pass state=None")
        return self.head(self.features(self._tokens(tokens))), None

    def log_probs(self, tokens: Tensor) -> Tensor:
        """Teacher forcing: tokens (B, T) -> (B, T, V) log p(x_{t+1} | x_{≤t})."""
        return F.log_softmax(self(tokens)[0].float(), dim=-1)  # (B, T, V)

    def score(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> (B, T-1) log-probs of the next tokens, the head applied chunk by chunk."""
        tokens = self._tokens(tokens)
        B, T = tokens.shape
        feats = self.features(tokens)[:, :-1]  # (B, T-1, F)
        feats = feats.reshape(B * (T - 1), feats.shape[-1])  # (N, F)
        targets = tokens[:, 1:].reshape(-1)  # (N,)
        chunk = max(1, SCORE_CHUNK // self.vocab_size)
        out = []
        for i in range(0, feats.shape[0], chunk):
            lp = F.log_softmax(self.head(feats[i : i + chunk]).float(), dim=-1)  # (n, V)
            out.append(lp.gather(-1, targets[i : i + chunk, None]).squeeze(-1))  # (n,)
        if not out:
            return torch.zeros(B, max(T - 1, 0), device=tokens.device)
        return torch.cat(out).view(B, T - 1)

    def num_parameters(self) -> int:
        """Number of parameters, tied ones counted once."""
        return sum(p.numel() for p in self.parameters())

    # ----- files --------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the model folder atomically: config.json and model.safetensors."""
        with atomic_dir(folder) as tmp:
            self.save_files(tmp)
        return Path(folder)

    def save_files(self, folder: str | Path) -> None:
        """Write the model's files into an existing folder (a caller may add tokenizer.json)."""
        from safetensors.torch import save_model

        folder = Path(folder)
        dtype = str(next(self.parameters()).dtype).removeprefix("torch.")
        config = {"family": self.family, "format_version": FORMAT_VERSION, "dtype": dtype,
                  "config": dataclasses.asdict(self.config)}
        save_model(self, str(folder / "model.safetensors"))
        with atomic_write(folder / "config.json") as f:
            json.dump(config, f, indent=2)

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> NeuralLM:
        """Read a folder written by :meth:`save`: same config, weights and dtype, in eval mode."""
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        folder = Path(folder)
        path = folder / "config.json"
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise FormatError(f"{path} is missing; save the model again") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FormatError(f"{path} is not valid JSON ({e}); save the model again") from e
        family = meta.get("family") if isinstance(meta, dict) else None
        if family != cls.family:
            raise MismatchError(f"{folder} holds a {family!r} model, not a {cls.family!r} model; "
                                "load it with that family's loader")
        if "config" not in meta:
            raise FormatError(f"{path} lacks the model's configuration; save the model again")
        config = config_from_dict(cls.config_class, meta["config"], path)
        dtype = getattr(torch, str(meta.get("dtype", "float32")), None)
        if not isinstance(dtype, torch.dtype):
            raise FormatError(f"{path} names an unknown dtype {meta.get('dtype')!r}; save the model again")
        try:
            model = cls(config).to(dtype)
        except (ValueError, AssertionError, RuntimeError) as e:
            raise FormatError(f"{path} describes a model that cannot be built ({e}); save the model "
                              "again") from None
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise FormatError(f"{weights} is missing; save the model again")
        try:
            load_model(model, str(weights), device=str(device))
        except (SafetensorError, OSError, RuntimeError) as e:
            raise FormatError(f"{weights} does not fit the configuration or is corrupt ({e}); "
                              "save the model again") from e
        return model.to(device).eval()
