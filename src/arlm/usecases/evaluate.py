"""``arlm eval``: the likelihood of a corpus split under a model, scored in the order the model was
trained in (text in reading order, the same tokens, so orders compare).

* :func:`evaluate`: the use case (:class:`EvalRequest` -> :class:`EvalResult`, or with ``quantize``
  a :class:`QuantizedEval`);
* :func:`random_orders_bits`: σ-GPT's bits per character (or per pixel) in K random orders, with
  their spread (:class:`RandomOrders`);
* :func:`evaluate_quantized`: the fp32 model against its int8 copy on one split;
* :func:`load_mixture`: ``--mix CKPT --lambda λ``, the model interpolated per token with another one
  ((1-λ) p_model + λ p_mix, :class:`~arlm.models.mixture.MixtureModel`), λ chosen on the validation
  split over a grid when not given (:class:`MixtureInfo` records the choice).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arlm.data.cache import EncodedSplit
from arlm.data.corpora import Corpus
from arlm.data.orders import OrderSpec, reorder_split
from arlm.data.tokenizers import Tokenizer
from arlm.errors import ConfigError, MismatchError
from arlm.evaluate.likelihood import LikelihoodReport, bits_per_unit, evaluate_likelihood
from arlm.evaluate.orders import bits_per_dim, evaluate_in_order, sigma_gpt_orders, spread
from arlm.evaluate.token_scores import model_context, token_log_probs
from arlm.models.base import ARModel
from arlm.models.mixture import LambdaChoice, MixtureModel, check_lambda, choose_lambda
from arlm.usecases.checkpoints import load_model, load_order
from arlm.usecases.data import encode_split, image_shape
from arlm.usecases.decoding import quantize


@dataclass
class RandomOrders:
    """Bits per unit (character or pixel) of a split under K random orders (each sequence its own),
    their mean and spread, and the mean spread of one sequence's NLL across the orders (nats)."""

    values: list[float]
    mean: float
    std: float
    nll_per_sequence_std: float

    def to_dict(self, key: str) -> dict[str, Any]:
        """As ``arlm eval --json`` writes it, ``key`` naming the unit (bits_per_char, bits_per_dim)."""
        return {"num_orders": len(self.values), key: self.values, f"{key}_mean": self.mean,
                f"{key}_std": self.std, "nll_per_sequence_std": self.nll_per_sequence_std}


def random_orders_bits(model: ARModel, split: EncodedSplit, num_orders: int, seed: int,
                       units: int) -> RandomOrders:
    """σ-GPT's NLL of ``split`` in ``num_orders`` random orders drawn from ``seed``
    (:func:`~arlm.evaluate.orders.sigma_gpt_orders`), in bits per unit: ``units`` is the split's
    characters or pixels."""
    orders = sigma_gpt_orders(model, split.tokens, num_orders, seed)
    values = [bits_per_unit(nll, units) for nll in orders["nll"]]
    mean, std = spread(values)
    return RandomOrders(values, mean, std, orders["nll_per_sequence_std"])


def evaluate_quantized(model: ARModel, tokenizer: Tokenizer, split: EncodedSplit,
                       mode: str) -> dict[str, Any]:
    """Score ``split`` with the fp32 model and with its ``mode`` (int8) copy: each one's likelihood
    report plus scored tokens/s, the two side by side (``{"fp32": {…}, mode: {…}}``) with the
    perplexity change in percent."""
    reports = {}
    for name, m in (("fp32", model), (mode, quantize(model, mode))):
        t0 = time.perf_counter()
        report = evaluate_likelihood(m, split.tokens, num_chars=split.num_chars, sos_id=tokenizer.sos_id,
                                     eos_id=tokenizer.eos_id, unk_id=tokenizer.unk_id).to_dict()
        seconds = time.perf_counter() - t0
        reports[name] = {**report, "seconds": round(seconds, 4),
                         "tokens_per_s": report["num_tokens"] / seconds if seconds > 0 else None}
    a, b = reports["fp32"]["perplexity"], reports[mode]["perplexity"]
    change = (b / a - 1) * 100 if a and b is not None and math.isfinite(a) else None
    return {**reports, "quantize": mode, "perplexity_change_percent": change}


@dataclass
class EvalRequest:
    """``arlm eval``: score ``split`` of ``corpus`` (default: shakespeare, digits for an image model)
    with a model folder or an ARPA file (read with ``arpa_split``, optionally lowercased).

    ``quantize`` (int8) compares the fp32 and the quantized model instead (left-to-right models);
    ``orders`` random orders (σ-GPT; 0: none) and random-order models draw from ``seed``."""

    model_path: Path
    corpus: str | None = None
    split: str = "test"
    unit: str = "lines"
    encoding: str = "utf-8"
    arpa_split: str = "whitespace"
    arpa_lowercase: bool = False
    quantize: str | None = None
    orders: int = 4
    seed: int = 0
    mix: Path | None = None  # a second model folder to interpolate with, per token
    mix_lambda: float | None = None  # its weight λ; None: chosen on ``mix_split`` over LAMBDA_GRID
    mix_split: str = "val"


@dataclass
class MixtureInfo:
    """What was mixed: the second model, λ, and how λ was set (given, or chosen on a split: the grid
    and the held-out NLL per token at each point)."""

    model: str
    lam: float
    chosen_on: str | None = None  # None: λ was given
    choice: LambdaChoice | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "lambda": self.lam, "chosen_on": self.chosen_on}
        if self.choice is not None:
            choice = self.choice.to_dict()
            out |= {"grid": choice["grid"], "nll_per_token": choice["nll_per_token"]}
        return out


def mixture_context(a: ARModel, b: ARModel) -> int | None:
    """The rows a mixture is scored in: the shorter of the two models' contexts (None: no limit), for
    choosing λ and for the split alike, so that λ is chosen on what is scored."""
    return min((c for c in (model_context(a), model_context(b)) if c is not None), default=None)


def load_mixture(model: ARModel, tok: Tokenizer, spec: OrderSpec, r: EvalRequest,
                 corpus: Corpus) -> tuple[ARModel, MixtureInfo]:
    """``model`` mixed with ``r.mix`` ((1-λ) p_model + λ p_mix), checked to share the tokenizer and the
    order; λ is ``r.mix_lambda`` or the best of LAMBDA_GRID on ``corpus``'s ``r.mix_split`` (never the
    split scored)."""
    other, other_tok = load_model(r.mix)
    if list(other_tok.vocab) != list(tok.vocab) or load_order(r.mix) != spec:
        raise MismatchError(f"--mix {r.mix} reads other tokens or another order than {r.model_path}; mix "
                            "models trained with the same tokenizer on the same corpus, in the same order")
    if r.mix_lambda is not None:
        lam = check_lambda(r.mix_lambda)
        return MixtureModel(model, other, lam), MixtureInfo(str(r.mix), lam)
    if r.mix_split == r.split:
        raise ConfigError(f"λ is chosen on held-out text, not on the split being scored ({r.split}); pass "
                          "--lambda, or score another split")
    held_out = encode_split(corpus, tok, r.mix_split, r.unit, r.encoding).encoded
    stream = reorder_split(held_out, spec, r.seed).tokens
    ids = {"sos_id": tok.sos_id, "eos_id": tok.eos_id, "context": mixture_context(model, other)}
    choice = choose_lambda(token_log_probs(model, stream, **ids), token_log_probs(other, stream, **ids))
    return MixtureModel(model, other, choice.lam), MixtureInfo(str(r.mix), choice.lam, r.mix_split, choice)


@dataclass
class EvalResult:
    """The likelihood report of one split in the model's order; bits per dimension for an image
    model; σ-GPT's random orders when asked."""

    model: str
    corpus: str
    split: str
    unit: str
    order: OrderSpec
    report: LikelihoodReport
    image: bool
    bits_per_dim: float | None = None
    random_orders: RandomOrders | None = None
    mixture: MixtureInfo | None = None

    @property
    def unit_key(self) -> str:
        """The unit random orders are reported in: bits_per_dim for images, else bits_per_char."""
        return "bits_per_dim" if self.image else "bits_per_char"

    def to_dict(self) -> dict[str, Any]:
        """As ``arlm eval --json`` writes it."""
        out = {"model": self.model, "corpus": self.corpus, "split": self.split, "unit": self.unit,
               "order": self.order.name, **self.report.to_dict()}
        if self.image:
            out["bits_per_dim"] = self.bits_per_dim
        if self.random_orders is not None:
            out["random_orders"] = self.random_orders.to_dict(self.unit_key)
        if self.mixture is not None:
            out["mixture"] = self.mixture.to_dict()
        return out


@dataclass
class QuantizedEval:
    """The fp32 and the ``mode`` (int8) model on one split (:func:`evaluate_quantized`)."""

    model: str
    corpus: str
    split: str
    unit: str
    mode: str
    comparison: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """As ``arlm eval --quantize MODE --json`` writes it."""
        return {"model": self.model, "corpus": self.corpus, "split": self.split, "unit": self.unit,
                **self.comparison}


def evaluate(request: EvalRequest) -> EvalResult | QuantizedEval:
    """Score ``request``'s split in the model's order (or compare fp32 and int8 with ``quantize``)."""
    r = request
    model, tok = load_model(r.model_path, r.arpa_split, r.arpa_lowercase)
    spec = load_order(r.model_path)
    image = image_shape(tok)
    data = encode_split(r.corpus or ("digits" if image else "shakespeare"), tok, r.split, r.unit, r.encoding)
    split = data.encoded
    sigma_gpt = getattr(model, "family", None) == "sigma_gpt"
    mixture = None
    if r.mix is not None:
        if r.quantize is not None or sigma_gpt:
            raise ConfigError("--mix interpolates two models read in one order; drop --quantize, or mix "
                              "models other than σ-GPT (which is scored in many orders)")
        model, mixture = load_mixture(model, tok, spec, r, data.corpus)
    if r.quantize is not None:
        if spec.name != "l2r" or sigma_gpt:
            raise ConfigError(f"--quantize compares left-to-right models; this one is {spec.name!r}"
                              f"{' (σ-GPT)' if spec.name == 'l2r' else ''}: drop --quantize")
        comparison = evaluate_quantized(model, tok, split, r.quantize)
        return QuantizedEval(str(r.model_path), data.corpus.name, r.split, r.unit, r.quantize, comparison)
    context = None if mixture is None else mixture_context(model.a, model.b)
    report = evaluate_in_order(model, split, spec, sos_id=tok.sos_id, eos_id=tok.eos_id, unk_id=tok.unk_id,
                               seed=r.seed, context=context)
    pixels = image[0] * image[1] if image else 0
    result = EvalResult(str(r.model_path), data.corpus.name, r.split, r.unit, spec, report, image is not None,
                        mixture=mixture)
    if image:
        result.bits_per_dim = bits_per_dim(report.nll, report.num_sequences, pixels)
    if sigma_gpt and r.orders > 0:
        units = report.num_sequences * pixels if image else split.num_chars
        result.random_orders = random_orders_bits(model, split, r.orders, r.seed, units)
    return result
