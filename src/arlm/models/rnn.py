"""Recurrent language model: Elman RNN, LSTM or GRU cells (torch's nn.RNN / nn.LSTM / nn.GRU).

An RNN summarises the whole prefix x_{≤t} in a fixed-size hidden state, updated one token at a time:

    h_0 = 0
    h_t = f(h_{t-1}, x_t)                      (the cell, applied to the embedding of x_t)
    y_t = g(h_t) = U h_t + b                   (logits for x_{t+1})
    p(x_{t+1} | x_{≤t}) = softmax(y_t)         ([PAD] and [SOS] masked to -inf first)

The cells differ in f:

* ``rnn`` (Elman): h_t = tanh(W x_t + R h_{t-1} + b);
* ``lstm``: gates i, f, o = σ(·), candidate g = tanh(·), c_t = f ⊙ c_{t-1} + i ⊙ g,
  h_t = o ⊙ tanh(c_t): the additive cell c_t lets gradients flow over long spans;
* ``gru``: update/reset gates z, r; h_t = (1 - z) ⊙ h_{t-1} + z ⊙ tanh(W x_t + R (r ⊙ h_{t-1})).

With ``n_layers`` > 1 the cells stack: layer l reads the hidden states of layer l-1.
Unlike the window model there is no context limit, but training must unroll the recursion:
``forward(tokens, state)`` takes and returns the hidden state (the step interface of every neural
family, see :mod:`arlm.models.neural`), and the family is ``recurrent``, so a trainer carries the state
from one batch of a long stream to the next (detached: *truncated* backpropagation through time).
``tie_weights`` shares the embedding matrix with the output layer (needs d_embed == d_hidden).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from arlm.errors import ConfigError
from arlm.models.neural import NeuralLM, mask_unpredictable

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@dataclass
class RNNConfig:
    vocab_size: int
    cell: str = "lstm"  # "lstm", "gru" or "rnn" (Elman, tanh)
    d_embed: int = 128
    d_hidden: int = 256
    n_layers: int = 1
    dropout: float = 0.0  # on embeddings, between layers and before the output layer
    tie_weights: bool = False  # output layer = embedding matrix (needs d_embed == d_hidden)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ConfigError(f"unknown RNN cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        for name in ("vocab_size", "d_embed", "d_hidden", "n_layers"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"RNN model: {name} must be at least 1, not {getattr(self, name)}")
        if self.tie_weights and self.d_embed != self.d_hidden:
            raise ConfigError(f"tie_weights needs d_embed == d_hidden (got {self.d_embed} and "
                              f"{self.d_hidden}); make them equal or turn tying off")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), not {self.dropout}")


@dataclass
class RNNState:
    """The hidden state h (n_layers, B, d_hidden), and for an LSTM the cell state c (same shape)."""

    h: Tensor  # (n_layers, B, H)
    c: Tensor | None = None  # (n_layers, B, H), LSTM only

    def select(self, index: Tensor) -> RNNState:
        """Rows ``index`` of the batch: dim 1 of torch's hidden tensors."""
        index = index.to(self.h.device)
        return RNNState(self.h.index_select(1, index),
                        None if self.c is None else self.c.index_select(1, index))

    def detach(self) -> RNNState:
        """The same values cut from the graph (truncated BPTT: carry the state, not its history)."""
        return RNNState(self.h.detach(), None if self.c is None else self.c.detach())

    def torch_hidden(self) -> Tensor | tuple[Tensor, Tensor]:
        return self.h if self.c is None else (self.h, self.c)

    # A trainer handles a recurrent state as named tensors whose dim 1 is the batch (checkpoints,
    # micro-batches, DDP), without knowing the family.
    batch_dim = 1

    def tensors(self) -> dict[str, Tensor]:
        """The state as named tensors, batch on dim 1 (for checkpoints)."""
        return {"h": self.h} if self.c is None else {"h": self.h, "c": self.c}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> RNNState:
        """Inverse of :meth:`tensors`."""
        return cls(tensors["h"], tensors.get("c"))


class RNNLM(NeuralLM):
    family = "rnn"
    config_class = RNNConfig
    recurrent = True
    state_class = RNNState

    def __init__(self, config: RNNConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.d_embed)
        self.rnn = CELLS[config.cell](
            config.d_embed, config.d_hidden, num_layers=config.n_layers, batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.d_hidden, config.vocab_size)
        if config.tie_weights:
            self.lm_head.weight = self.embed.weight  # one (V, d) matrix, two uses

    def run(self, tokens: Tensor, state: RNNState | None = None) -> tuple[Tensor, RNNState]:
        """tokens (B, T), state -> hidden states of the top layer (B, T, H) and the new state."""
        x = self.drop(self.embed(tokens))  # (B, T, d_embed)
        hidden = None if state is None else state.torch_hidden()
        out, hidden = self.rnn(x, hidden)  # (B, T, H); h, c: (n_layers, B, H)
        new = RNNState(*hidden) if isinstance(hidden, tuple) else RNNState(hidden)
        return self.drop(out), new

    def features(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> top-layer hidden states h_t (B, T, H), starting from h_0 = 0."""
        return self.run(tokens)[0]

    def head(self, features: Tensor) -> Tensor:
        """h_t (..., H) -> logits (..., V) = U h_t + b."""
        return mask_unpredictable(self.lm_head(features))

    def forward(self, tokens: Tensor, state: RNNState | None = None) -> tuple[Tensor, RNNState]:
        """tokens (B, T), state (None = zeros) -> (logits (B, T, V), state after x_T).

        For truncated BPTT pass ``state.detach()`` of the previous batch of the same streams.
        """
        out, state = self.run(self._tokens(tokens), state)  # (B, T, H)
        return self.head(out), state

    # ----- incremental decoding ----------------------------------------------------------------

    def start(self, batch_size: int) -> RNNState:
        """h_0 = 0 (and c_0 = 0): nothing seen yet."""
        cfg = self.config
        p = self.lm_head.weight
        h = p.new_zeros(cfg.n_layers, batch_size, cfg.d_hidden)
        return RNNState(h, h.clone() if cfg.cell == "lstm" else None)

    def step(self, tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        """tokens (B, t), state -> (log p(next | all fed so far) (B, V), new state)."""
        out, state = self.run(self._tokens(tokens), state)  # (B, t, H)
        return F.log_softmax(self.head(out[:, -1]).float(), dim=-1), state
