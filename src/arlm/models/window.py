"""Fixed-window neural language model (Bengio, Ducharme, Vincent & Jauvin 2003).

Like an n-gram model it assumes the next token depends on the last k tokens only,

    p(x_{t+1} | x_{≤t}) ≈ p(x_{t+1} | x_{t-k+1}, ..., x_t),

but instead of counting it learns a *distributed representation*: each token v has an embedding
C(v) ∈ R^m (a row of the matrix C, trained jointly with the rest), and

    e_t = [C(x_{t-k+1}); ...; C(x_t)]              (concatenation, k·m numbers)
    a_t = tanh(H e_t + d)                          (hidden layer, d_hidden units)
    y_t = b + U a_t (+ W e_t)                      (logits; W is the optional "direct" connection)
    p(x_{t+1} | ·) = softmax(y_t)                  ([PAD] and [SOS] masked to -inf first)

Similar tokens get similar embeddings, so the model generalises to windows it never saw, which an
n-gram model cannot do. The cost is fixed context: nothing older than k tokens can matter.

**Convention for the start of a sequence.** A position t with fewer than k tokens x_{≤t} (the
first k-1 positions) fills the missing slots on the left with [PAD]. [PAD]'s embedding is a fixed
zero vector (``padding_idx``), so "nothing there" adds nothing to H e_t. Since every sequence starts
with [SOS], the model still knows where the sequence begins.

Teacher forcing computes all windows at once with ``Tensor.unfold``; incremental decoding keeps the
last k tokens as its state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arlm.errors import ConfigError
from arlm.models.neural import NeuralLM, mask_unpredictable
from arlm.streams import PAD_ID

ACTIVATIONS = {"tanh": torch.tanh, "relu": F.relu, "gelu": F.gelu}


@dataclass
class WindowConfig:
    vocab_size: int
    context: int = 3  # k: how many previous tokens (the current one included) the model sees
    d_embed: int = 64  # m: embedding size
    d_hidden: int = 128  # hidden units
    activation: str = "tanh"  # "tanh" (as in the paper), "relu" or "gelu"
    direct: bool = False  # the paper's optional direct connection W e_t from embeddings to logits
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose one of "
                              f"{', '.join(ACTIVATIONS)}")
        for name in ("vocab_size", "context", "d_embed", "d_hidden"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"window model: {name} must be at least 1, not {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), not {self.dropout}")


@dataclass
class WindowState:
    """The last k tokens fed, (B, k), [PAD] where fewer than k have been seen."""

    context: Tensor  # (B, k)

    def select(self, index: Tensor) -> WindowState:
        return WindowState(self.context.index_select(0, index.to(self.context.device)))


class WindowLM(NeuralLM):
    family = "window"
    config_class = WindowConfig

    def __init__(self, config: WindowConfig) -> None:
        super().__init__(config)
        k, m = config.context, config.d_embed
        self.embed = nn.Embedding(config.vocab_size, m, padding_idx=PAD_ID)  # C
        self.hidden = nn.Linear(k * m, config.d_hidden)  # H, d
        self.out = nn.Linear(config.d_hidden, config.vocab_size)  # U, b
        self.direct = nn.Linear(k * m, config.vocab_size, bias=False) if config.direct else None  # W
        self.drop = nn.Dropout(config.dropout)
        self.act = ACTIVATIONS[config.activation]

    def _windows(self, windows: Tensor) -> Tensor:
        """windows (B, T, k) of token ids -> features (B, T, k·m [+ d_hidden])."""
        B, T, k = windows.shape
        e = self.embed(windows).view(B, T, k * self.config.d_embed)  # (B, T, k·m)
        e = self.drop(e)
        a = self.drop(self.act(self.hidden(e)))  # (B, T, d_hidden)
        return torch.cat([a, e], dim=-1) if self.direct is not None else a

    def features(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> (B, T, F): the window x_{t-k+1..t} of every position, in parallel."""
        B, _ = tokens.shape
        k = self.config.context
        pad = tokens.new_full((B, k), PAD_ID)
        padded = torch.cat([pad, tokens], dim=1)  # (B, k + T)
        windows = padded.unfold(1, k, 1)[:, 1:]  # (B, T, k): window t ends at x_t
        return self._windows(windows)

    def head(self, features: Tensor) -> Tensor:
        """features (..., F) -> logits (..., V) = b + U a (+ W e)."""
        h = self.config.d_hidden
        logits = self.out(features[..., :h])  # (..., V)
        if self.direct is not None:
            logits = logits + self.direct(features[..., h:])
        return mask_unpredictable(logits)

    # ----- incremental decoding ----------------------------------------------------------------

    def start(self, batch_size: int) -> WindowState:
        return WindowState(torch.full((batch_size, self.config.context), PAD_ID, dtype=torch.long,
                                      device=self.device))

    def step(self, tokens: Tensor, state: WindowState) -> tuple[Tensor, WindowState]:
        """tokens (B, t) -> (log p(next | last k tokens) (B, V), state with the last k tokens)."""
        tokens = self._tokens(tokens)
        k = self.config.context
        ctx = torch.cat([state.context, tokens], dim=1)[:, -k:]  # (B, k)
        logits = self.head(self._windows(ctx[:, None, :]))[:, 0]  # (B, V)
        return F.log_softmax(logits.float(), dim=-1), WindowState(ctx)
