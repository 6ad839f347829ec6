"""σ-GPT: a Transformer that reads and writes a sequence in any order (Pannatier et al. 2024; F3).

The chain rule holds in every order: for any permutation σ of the content positions,

    p(x_1, …, x_n) = ∏_{i=1}^{n} p(x_σ(i) | x_σ(1), …, x_σ(i-1)).

A left-to-right Transformer knows which position comes next (the one after the current); in a
shuffled order it does not, so σ-GPT tells it with a *double positional encoding*. Write the whole
order as π over the slots 0..n+1 of ``[SOS] x_1 … x_n [EOS]``: π(0) = 0, π(i) = σ(i) for
i = 1..n, π(n+1) = n+1 (and π(n+2) = n+2, the slot after the sequence). The input at step i is

    z_0[i] = E[x_π(i)] + P[π(i)] + Q[π(i+1)]        (token, its position, the position to predict)

then the Transformer's own pre-LN :class:`~arlm.models.transformer.Block` stack with the causal mask
*in generation order* (step i sees steps ≤ i), and the tied head y_i = LN_f(z_i) Eᵀ gives the
logits of x_π(i+1). Position 0 ([SOS]) is never a target, so row p-1 of Q stores position p.
With σ = identity and Q = 0 this is exactly :class:`~arlm.models.transformer.TransformerLM`; the
parameter names are the Transformer's plus ``transformer.wpe_next`` (Q), so its weights load as
they are (``load_state_dict(..., strict=False)``).

**Conventions.** [SOS] is first in every order and [EOS] keeps the last slot n+1: σ permutes the
content positions 1..n only (as :mod:`arlm.data.orders` does). An ``order`` is a (B, n) LongTensor
in that module's convention: ``order[b, i] = j`` means the (i+1)-th token generated is content
token j, i.e. x_{j+1} at slot j+1 (so ``order = arange(n)`` is left-to-right).

**Known length.** To place a token at slot σ(i) the model must already know that slot exists, so
the ordered methods work with sequences of a *given* length n: a content slot can never hold [EOS]
(nor [PAD], [SOS]), so each content prediction is renormalised over the content ids (every id but
[PAD], [SOS], [EOS]; [UNK] is content), and [EOS] is not scored — its slot is given. Then

    log p(x | n) = Σ_{i=1}^{n} log p(x_σ(i) | x_σ(<i); x_σ(i) ≠ [EOS])          (``log_prob``)

is a proper distribution over the (V-3)^n content sequences of length n, for every σ (the tests
sum it by brute force). ``log_prob(..., known_length=False)`` instead keeps [EOS] in every
distribution and scores it last, the quantity a left-to-right model reports: under σ = identity it
equals the sum of :meth:`score`, the ARModel interface's log p(x) over sequences of any length.

**The ARModel interface** (``log_probs``, ``score``, ``start``, ``step``) is the left-to-right
order, π(i) = i, so arlm's evaluation and decoding code runs on a σ-GPT unchanged; ``step`` keeps a
:class:`~arlm.models.transformer.KVCache` (one token costs one position's attention over the
cache, as in the Transformer).

**Training.** :func:`random_order_batch` draws a fresh σ per sequence and returns the shuffled
inputs with both position streams and the shuffled targets ([EOS] stays the last target, so the
model also learns the left-to-right end of a sequence); :func:`random_order_loss` is the
cross-entropy a plain training loop minimises. The :class:`~arlm.train.trainer.Trainer` trains it
through :meth:`SigmaGPT.training_inputs` (``arlm train sigma_gpt``), one sequence per row.

**Sampling and infilling** generate slot by slot with the KV cache, in any order: ``sample`` in a
random order by default, ``infill`` with the known positions first in the order (a prefill) and
the unknown ones after them, in random or left-to-right order, each drawn conditioned on every
known token and every token drawn so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arlm.data.permutations import random_keys, random_permutations
from arlm.errors import ConfigError, DataError
from arlm.models.neural import NeuralLM
from arlm.models.transformer import KVCache, TransformerConfig, TransformerLM
from arlm.streams import EOS_ID, PAD_ID, SOS_ID, UNK_ID

INFILL_ORDERS = ("random", "l2r")


@dataclass
class SigmaGPTConfig(TransformerConfig):
    """The Transformer's settings (vocab_size, block_size, n_layer, n_head, d_model, dropout, bias,
    tie_weights, attention, causal); the second position table needs none.

    ``l2r_fraction``: the fraction of training rows read left to right instead of in a random order
    (the rest: a fresh random order each). With [EOS] always generated last, pure random-order
    training sees "every slot before the next one is filled" almost only when the next slot is the
    [EOS] slot, so it learns to end there — exactly the configuration of every left-to-right step,
    whose [EOS] probability it then overestimates on text of varying length. Some left-to-right rows
    teach it that configuration (images of one fixed length do not need them).

    ``l2r_start``: a curriculum (Pannatier et al. 2024 close most of the gap to a left-to-right model on
    text with one): the share of left-to-right rows at the first training step, decaying linearly to
    ``l2r_fraction`` at the last, f(i) = l2r_start + (l2r_fraction − l2r_start) · i / (max_steps − 1);
    None: no curriculum, ``l2r_fraction`` throughout.

    ``train_orders``: a fixed set of orders to train in instead of fresh random ones (each a
    permutation of the content indices 0..n-1 of sequences of one length n, e.g. an image's pixel
    orders); every training row is read in one of them, drawn uniformly: one model with shared weights
    for several orders (LMConv's order ensemble, Jain et al. 2020), scored per order with
    :meth:`SigmaGPT.log_prob` and as their mixture with :meth:`SigmaGPT.log_prob_mixture`. None: a fresh
    random order per row."""

    l2r_fraction: float = 0.0
    l2r_start: float | None = None
    train_orders: list[list[int]] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.l2r_fraction <= 1.0:
            raise ConfigError(f"l2r_fraction is a fraction of training rows, in [0, 1], "
                              f"not {self.l2r_fraction}")
        if self.l2r_start is not None and not 0.0 <= self.l2r_start <= 1.0:
            raise ConfigError(f"l2r_start is the share of left-to-right rows at the first step, in [0, 1], "
                              f"not {self.l2r_start}")

        if self.train_orders is not None:
            orders = [list(map(int, order)) for order in self.train_orders]
            n = len(orders[0]) if orders else 0
            if not orders or any(sorted(order) != list(range(n)) for order in orders):
                raise ConfigError("train_orders must be a non-empty list of permutations of 0..n-1, one n "
                                  "for all (the content indices of sequences of n tokens)")
            if n + 2 > self.block_size:
                raise ConfigError(f"train_orders are orders of {n} tokens, but block_size {self.block_size} "
                                  f"holds [SOS] + {self.block_size - 2} + [EOS]; raise block_size to {n + 2}")
            self.train_orders = orders

    def l2r_share(self, progress: float) -> float:
        """The share of left-to-right training rows at ``progress`` (0: the first step, 1: the last)."""
        if self.l2r_start is None:
            return self.l2r_fraction
        return self.l2r_start + (self.l2r_fraction - self.l2r_start) * min(1.0, max(0.0, progress))


# ---------------------------------------------------------------------------------------------
# Orders and training batches
# ---------------------------------------------------------------------------------------------


def random_orders(batch_size: int, n: int, generator: torch.Generator) -> Tensor:
    """(batch_size, n) LongTensor: an independent uniformly random permutation of 0..n-1 per row."""
    return random_permutations(batch_size, n, generator)


def full_order(order: Tensor) -> Tensor:
    """order (B, n) over the content tokens -> π (B, n+2) over the slots: 0, order + 1, n + 1."""
    B, n = order.shape
    first = torch.zeros(B, 1, dtype=torch.long, device=order.device)
    return torch.cat([first, order + 1, first + n + 1], dim=1)  # (B, n+2)


def random_order_batch(tokens: Tensor, generator: torch.Generator
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A σ-GPT training batch: each row read in a fresh random order.

    ``tokens`` (B, T): one sequence per row, ``[SOS] x_1 … x_n [EOS]`` right-padded with [PAD] (or
    cut before its [EOS]: its last token then keeps the last slot, so every position read is below
    T-1, the model's block_size); the content slots 1..n of each row are shuffled, [SOS] stays first
    and [EOS] and the padding keep their slots. Returns four (B, T-1) LongTensors: ``inputs`` x_π(i),
    ``positions`` π(i), ``next_positions`` π(i+1) and ``targets`` x_π(i+1) ([PAD] targets are not
    to be scored); ``model.forward_positions(inputs, positions, next_positions)`` predicts targets.
    """
    tokens = torch.as_tensor(tokens).long()
    if tokens.dim() != 2 or tokens.shape[1] < 2 or not bool((tokens[:, 0] == SOS_ID).all()):
        raise DataError("random_order_batch needs rows of shape (B, T ≥ 2), one [SOS] … [EOS] "
                        "sequence per row starting with [SOS]; pad whole sequences, not chunks")
    B, T = tokens.shape
    ended = ((tokens == EOS_ID) | (tokens == PAD_ID)).long().cumsum(dim=1) > 0  # (B, T)
    content = ~ended
    content[:, 0] = False
    content[:, -1] = False  # a sequence cut by the row keeps its last token last: positions stay < T-1
    slots = torch.arange(T, device=tokens.device).expand(B, T).float()
    noise = random_keys(B, T, generator).to(tokens.device)
    keys = torch.where(content, noise, slots + 1.0)  # content in [0, 1); the rest after it, in place
    keys[:, 0] = -1.0  # [SOS] first
    pi = keys.argsort(dim=1)  # (B, T)
    return tokens.gather(1, pi[:, :-1]), pi[:, :-1], pi[:, 1:], tokens.gather(1, pi[:, 1:])


def fixed_order_batch(tokens: Tensor, orders: Tensor, generator: torch.Generator
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`random_order_batch`, each row read in one of ``orders`` (K, n), drawn uniformly: ``tokens``
    (B, T ≥ n+2) holds ``[SOS] x_1 … x_n [EOS]`` per row (then [PAD]). Returns four (B, n+1) LongTensors
    (the steps up to [EOS]; the padding is not read)."""
    tokens = torch.as_tensor(tokens).long()
    K, n = orders.shape
    if tokens.dim() != 2 or tokens.shape[1] < n + 2 or not bool((tokens[:, n + 1] == EOS_ID).all()):
        raise DataError(f"training in fixed orders of {n} tokens needs rows [SOS] x_1 … x_{n} [EOS] of "
                        "exactly that length (images of one size)")
    pick = torch.randint(K, (tokens.shape[0],), generator=generator)  # (B,)
    pi = full_order(orders[pick])  # (B, n+2)
    tokens = tokens[:, : n + 2]
    return tokens.gather(1, pi[:, :-1]), pi[:, :-1], pi[:, 1:], tokens.gather(1, pi[:, 1:])


def random_order_loss(model: SigmaGPT, tokens: Tensor, generator: torch.Generator) -> Tensor:
    """Mean cross-entropy (nats per scored token) of ``tokens`` under fresh random orders."""
    inputs, positions, next_positions, targets = random_order_batch(tokens, generator)
    device = model.device
    logits = model.forward_positions(inputs.to(device), positions.to(device),
                                     next_positions.to(device))  # (B, T-1, V)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.to(device).flatten(),
                           ignore_index=PAD_ID)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


def _at_least_float32(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _content_only(logits: Tensor) -> Tensor:
    """logits (..., V) -> the same with [EOS] at -inf as well: a content slot of known length."""
    return logits.index_fill(-1, torch.tensor([EOS_ID], device=logits.device), float("-inf"))


class SigmaGPT(TransformerLM):
    """A :class:`~arlm.models.transformer.TransformerLM` with a second position table Q
    (``transformer.wpe_next``), read in any order; left to right (the ARModel interface) it is the
    Transformer with Q[t] added to every input."""

    family = "sigma_gpt"
    config_class = SigmaGPTConfig
    batch_kind = "sequences"  # the Trainer gives it one whole [SOS] … [EOS] sequence per row
    gpt2_layout = False  # E + P + Q: no attention maps or GPT-2 export (the lean forward adds Q)
    step_all = None  # a speculative verifier feeds σ-GPT one token at a time, as it always has

    def _position_tables(self, config: SigmaGPTConfig) -> dict[str, nn.Module]:
        """P, the position of the input token, then Q, the position to predict (row p-1 = position p)."""
        return {**super()._position_tables(config),
                "wpe_next": nn.Embedding(config.block_size, config.d_model)}  # Q

    def lean_position_tables(self) -> tuple[Tensor, ...]:
        """P, then Q: read left to right, position t predicts t + 1, whose row of Q is t (as
        :meth:`_run_in_order` adds them), so the lean forward of fast decoding computes σ-GPT too."""
        return (self.transformer.wpe.weight, self.transformer.wpe_next.weight)

    # ----- the forward pass in any order -------------------------------------------------------

    def _run(self, tokens: Tensor, cache: KVCache | None = None) -> Tensor:
        """tokens (B, T) read left to right (π(i) = i), after cache.length positions -> (B, T, C)."""
        offset = 0 if cache is None else cache.length
        pos = torch.arange(offset, offset + tokens.shape[1], device=tokens.device)  # (T,)
        return self._run_in_order(tokens, pos, pos + 1, cache)

    def _run_in_order(self, tokens: Tensor, positions: Tensor, next_positions: Tensor,
                      cache: KVCache | None = None) -> Tensor:
        """tokens, positions π(i), next_positions π(i+1), all (B, t) -> hidden states (B, t, C).

        With a cache the t steps come after the cache.length steps already fed."""
        offset = 0 if cache is None else cache.length
        self._check_length(offset + tokens.shape[1])
        wte, wpe, wpe_next = self.transformer.wte, self.transformer.wpe, self.transformer.wpe_next
        x = wte(tokens) + wpe(positions) + wpe_next(next_positions - 1)  # (B, t, C): E + P + Q
        return self._blocks(x, cache)

    def forward_positions(self, inputs: Tensor, positions: Tensor, next_positions: Tensor) -> Tensor:
        """inputs x_π(i), positions π(i), next_positions π(i+1), all (B, t) -> logits (B, t, V) of
        x_π(i+1), [PAD] and [SOS] at -inf. What a training loop calls (see random_order_batch)."""
        return self.head(self._run_in_order(self._tokens(inputs), positions.to(self.device),
                                            next_positions.to(self.device)))

    def _check_sequences(self, tokens: Tensor) -> None:
        if tokens.shape[1] < 2:
            raise DataError("a σ-GPT sequence needs at least [SOS] and [EOS]; pass rows "
                            "[SOS] x_1 … x_n [EOS]")
        content = tokens[:, 1:-1]
        special = (content == PAD_ID) | (content == SOS_ID) | (content == EOS_ID)
        if not ((tokens[:, 0] == SOS_ID).all() and (tokens[:, -1] == EOS_ID).all()) or special.any():
            raise DataError("σ-GPT orders need rows [SOS] x_1 … x_n [EOS] of one length n with no "
                            "special token inside; score padded batches row by row or by length")
        if int(tokens.max()) >= self.vocab_size or int(tokens.min()) < 0:
            raise DataError(f"a token id is outside the model's vocabulary of {self.vocab_size}; "
                            "encode with the model's tokenizer")

    def _check_order(self, order, batch_size: int, n: int) -> Tensor:
        order = torch.as_tensor(order).long().to(self.device)
        if order.dim() == 1:
            order = order.expand(batch_size, -1)
        if order.shape != (batch_size, n):
            raise ConfigError(f"the order has shape {tuple(order.shape)} but the batch needs "
                              f"({batch_size}, {n}) (one permutation of 0..{n - 1} per row); "
                              "make it with random_orders or arange")
        identity = torch.arange(n, device=self.device).expand(batch_size, n)
        if not torch.equal(order.sort(dim=1).values, identity):
            raise ConfigError(f"each row of the order must be a permutation of 0..{n - 1} (content "
                              "token indices); make it with random_orders or arange")
        return order

    def forward_ordered(self, tokens: Tensor, order: Tensor) -> Tensor:
        """tokens (B, T = n+2) ``[SOS] x_1 … x_n [EOS]``, order (B, n) or (n,) -> logits (B, T, V)
        in generation order: row i predicts x_π(i+1) after reading x_π(0), …, x_π(i) (the last row
        predicts the slot after [EOS], as a left-to-right Transformer's last row does)."""
        tokens = self._tokens(tokens)
        self._check_sequences(tokens)
        B, T = tokens.shape
        pi = full_order(self._check_order(order, B, T - 2))  # (B, T)
        after = torch.full((B, 1), T, dtype=torch.long, device=tokens.device)
        next_pi = torch.cat([pi[:, 1:], after], dim=1)  # (B, T)
        return self.head(self._run_in_order(tokens.gather(1, pi), pi, next_pi))  # (B, T, V)

    def log_prob(self, tokens: Tensor, order: Tensor, known_length: bool = True) -> Tensor:
        """Joint log p(x) (B,) of rows ``[SOS] x_1 … x_n [EOS]`` generated in ``order`` (B, n).

        ``known_length``: log p(x_1 … x_n | n), content predictions renormalised without [EOS] and
        [EOS] not scored (a distribution over the content sequences of length n). False: every
        prediction over the full vocabulary and [EOS] scored last (log p(x), left-to-right style).
        """
        tokens = self._tokens(tokens)
        logits = self.forward_ordered(tokens, order)  # (B, T, V)
        B, T = tokens.shape
        n = T - 2
        pi = full_order(self._check_order(order, B, n))
        targets = tokens.gather(1, pi[:, 1:])  # (B, n+1): x_π(1), …, x_π(n), [EOS]
        logits = _at_least_float32(logits[:, : n + 1])  # (B, n+1, V)
        if known_length:
            logits, targets = _content_only(logits[:, :n]), targets[:, :n]
        lp = F.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return lp.sum(dim=1)  # (B,)

    def log_prob_mixture(self, tokens: Tensor, orders: Tensor, known_length: bool = True) -> Tensor:
        """log p_mix(x) (B,) of the uniform mixture over ``orders`` (K, n):
        log (1/K) Σ_k p(x | order k) = logsumexp_k log p(x | order k) − log K; by Jensen it is at least
        the mean of the per-order log-probabilities."""
        orders = torch.as_tensor(orders).long()
        values = torch.stack([self.log_prob(tokens, order, known_length) for order in orders])  # (K, B)
        return torch.logsumexp(values, dim=0) - math.log(len(orders))

    def log_prob_orders(self, tokens: Tensor, num_orders: int = 8, seed: int = 0,
                        known_length: bool = True) -> tuple[Tensor, Tensor]:
        """Mean and spread of ``log_prob`` over ``num_orders`` random orders (fresh per row):
        (mean (B,), population standard deviation (B,)). A perfect model gives every order the
        same p(x); the spread measures how far this one is from order-consistent."""
        if num_orders < 1:
            raise ConfigError(f"num_orders must be at least 1, not {num_orders}")
        tokens = self._tokens(tokens)
        B, T = tokens.shape
        g = torch.Generator(device=self.device).manual_seed(seed)
        values = torch.stack([self.log_prob(tokens, random_orders(B, T - 2, g), known_length)
                              for _ in range(num_orders)])  # (K, B)
        return values.mean(dim=0), values.std(dim=0, correction=0)

    # ----- generation in any order -------------------------------------------------------------

    @torch.no_grad()
    def _generate(self, tokens: Tensor, known: Tensor, order: Tensor, generator: torch.Generator,
                  temperature: float, banned: tuple[int, ...] = ()) -> Tensor:
        """Fill the unknown content slots of ``tokens`` (B, n+2) in ``order`` (B, n), whose known
        steps ``known`` (B, n), in slot terms, come first. One cached step per generated slot."""
        if not temperature >= 0:
            raise ConfigError(f"temperature must be ≥ 0 (0 is greedy), not {temperature}")
        B, T = tokens.shape
        n = T - 2
        pi = full_order(order)  # (B, T)
        known_step = known.gather(1, order)  # (B, n): is the (i+1)-th generated slot known?
        out = tokens.clone()
        cache = self.start(B)
        # steps whose targets are known in every row go in one prefill: k0 steps
        k0 = int(known_step.long().cumprod(dim=1).sum(dim=1).min()) if n else 0
        if k0:
            self._run_in_order(out.gather(1, pi[:, :k0]), pi[:, :k0], pi[:, 1 : k0 + 1], cache)
        for i in range(k0, n):
            cur, nxt = pi[:, i : i + 1], pi[:, i + 1 : i + 2]  # (B, 1)
            h = self._run_in_order(out.gather(1, cur), cur, nxt, cache)  # (B, 1, C)
            logits = _content_only(_at_least_float32(self.head(h[:, 0])))  # (B, V)
            if banned:  # ids that may not fill a slot (e.g. [UNK] in an image)
                logits = logits.index_fill(-1, torch.tensor(banned, device=logits.device), float("-inf"))
            if temperature == 0:
                drawn = logits.argmax(dim=-1)  # (B,)
            else:
                probs = F.softmax(logits / temperature, dim=-1)
                drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
            new = torch.where(known_step[:, i], out.gather(1, nxt).squeeze(1), drawn)
            out.scatter_(1, nxt, new.unsqueeze(1))
        return out

    def sample(self, n: int, batch_size: int = 1, order: Tensor | None = None, seed: int = 0,
               temperature: float = 1.0, banned: tuple[int, ...] = ()) -> Tensor:
        """``batch_size`` sequences of known length ``n`` -> (B, n+2) ``[SOS] x_1 … x_n [EOS]``,
        drawn slot by slot in ``order`` ((B, n) or (n,); None: a random order per row).
        ``temperature`` 0 is greedy; the same seed gives the same output; ``banned`` ids are never
        drawn (besides [EOS], [PAD] and [SOS]: e.g. [UNK] for images)."""
        if n < 0 or batch_size < 1 or n + 2 > self.config.block_size:
            raise ConfigError(f"cannot sample {batch_size} sequences of length {n}: need "
                              f"batch_size ≥ 1 and 0 ≤ n ≤ block_size - 2 = {self.config.block_size - 2}")
        g = torch.Generator(device=self.device).manual_seed(seed)
        order = random_orders(batch_size, n, g) if order is None else order
        order = self._check_order(order, batch_size, n)
        tokens = torch.full((batch_size, n + 2), PAD_ID, dtype=torch.long, device=self.device)
        tokens[:, 0], tokens[:, -1] = SOS_ID, EOS_ID
        known = torch.zeros(batch_size, n, dtype=torch.bool, device=self.device)
        return self._generate(tokens, known, order, g, temperature, tuple(banned))

    def infill(self, tokens: Tensor, known_mask: Tensor, seed: int = 0, temperature: float = 1.0,
               order: str = "random", banned: tuple[int, ...] = ()) -> Tensor:
        """Fill the unknown slots of rows ``[SOS] x_1 … x_n [EOS]`` (B, T), conditioned on all known ones.

        ``known_mask`` (B, T) bool marks the known slots ([SOS] and [EOS] always are; unknown slots
        may hold any id, e.g. [PAD]). The known content slots come first in the order (left to
        right), then the unknown ones in a random (``order="random"``) or left-to-right
        (``"l2r"``) order. Returns a new (B, T) tensor; known slots are never changed. ``banned`` ids
        are never drawn.
        """
        if order not in INFILL_ORDERS:
            raise ConfigError(f"unknown infill order {order!r}; choose one of {', '.join(INFILL_ORDERS)}")
        tokens = self._tokens(tokens)
        known_mask = torch.as_tensor(known_mask, dtype=torch.bool, device=self.device)
        if known_mask.dim() == 1:
            known_mask = known_mask.unsqueeze(0)
        if known_mask.shape != tokens.shape:
            raise ConfigError(f"known_mask has shape {tuple(known_mask.shape)} but tokens have "
                              f"{tuple(tokens.shape)}; give one flag per token")
        B, T = tokens.shape
        checked = tokens.clone()
        checked[:, 1:-1] = torch.where(known_mask[:, 1:-1], tokens[:, 1:-1], UNK_ID)  # a placeholder
        self._check_sequences(checked)
        known = known_mask[:, 1:-1]  # (B, n)
        g = torch.Generator(device=self.device).manual_seed(seed)
        slots = torch.arange(T - 2, device=self.device).expand(B, T - 2).float()
        later = slots if order == "l2r" else random_keys(B, T - 2, g)
        keys = torch.where(known, slots - T, later)  # known first, left to right
        return self._generate(checked, known, keys.argsort(dim=1), g, temperature, tuple(banned))

    # ----- training: what the Trainer calls --------------------------------------------------------

    def training_inputs(self, window: Tensor, generator: torch.Generator,
                        progress: float = 1.0) -> tuple[Tensor, Tensor]:
        """A training batch, each row in a fresh random order (or, with probability
        ``config.l2r_share(progress)``, left to right): window (B, T+1), one sequence per row
        (``batch_kind = "sequences"``) -> (inputs (B, T, 3) = [x_π(i), π(i), π(i+1)] per step,
        targets (B, T) = x_π(i+1), [PAD] not scored). ``forward`` reads such inputs."""
        if self.config.train_orders is None:
            inputs, positions, next_positions, targets = random_order_batch(window, generator)
        else:
            orders = torch.tensor(self.config.train_orders, dtype=torch.long)  # (K, n)
            inputs, positions, next_positions, targets = fixed_order_batch(window, orders, generator)
            window = torch.as_tensor(window)[:, : orders.shape[1] + 2]
        share = self.config.l2r_share(progress)
        if share > 0:
            window = torch.as_tensor(window).long()
            B, T = inputs.shape
            rows = torch.rand(B, generator=generator) < share  # (B,)
            slots = torch.arange(T).expand(B, T)
            l2r_targets = window[:, 1:].masked_fill(window[:, 1:] == SOS_ID, PAD_ID)
            inputs = torch.where(rows[:, None], window[:, :-1], inputs)
            positions = torch.where(rows[:, None], slots, positions)
            next_positions = torch.where(rows[:, None], slots + 1, next_positions)
            targets = torch.where(rows[:, None], l2r_targets, targets)
        return torch.stack([inputs, positions, next_positions], dim=-1), targets

    def forward(self, tokens: Tensor, state=None) -> tuple[Tensor, None]:
        """tokens (B, T) read left to right, or (B, T, 3) steps [token, its position, the position to
        predict] in any order (:meth:`training_inputs`) -> (logits (B, T, V), None)."""
        tokens = self._tokens(tokens)
        if tokens.dim() == 3:
            if state is not None:
                raise ConfigError("the σ-GPT model carries no state between calls; pass state=None")
            return self.forward_positions(tokens[..., 0], tokens[..., 1], tokens[..., 2]), None
        return NeuralLM.forward(self, tokens, state)  # no state between calls, as for training
