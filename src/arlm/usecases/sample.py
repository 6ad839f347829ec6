"""``arlm sample``: texts and images drawn from [SOS] in a model's order, shown in reading order.

* :func:`sample`: the use case (:class:`SampleRequest` -> :class:`TextSamples` or :class:`ImageSamples`);
* :func:`sample_texts`, :func:`sample_images`: the draws of a loaded model;
* :func:`reading_order_ids`, :func:`reading_order_text`: generated ids (model order) in reading order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arlm.data.orders import OrderSpec, check_reversible, to_reading_order
from arlm.data.tokenizers import PixelTokenizer, Tokenizer
from arlm.decode.config import DecodingConfig
from arlm.errors import ConfigError, MismatchError
from arlm.models.base import ARModel
from arlm.usecases.checkpoints import load_model, load_order
from arlm.usecases.data import image_shape
from arlm.usecases.decoding import decode


def reading_order_ids(ids: list[int], spec: OrderSpec, tokenizer: Tokenizer) -> list[int]:
    """Generated ids in the model's order (no [SOS]; cut at [EOS] if any) -> reading order.
    Raises ConfigError for a ``random``-order model (see :func:`~arlm.data.orders.to_reading_order`)."""
    ids = [i for i in ids if i not in (tokenizer.pad_id, tokenizer.sos_id)]
    if tokenizer.eos_id in ids:
        ids = ids[: ids.index(tokenizer.eos_id)]
    return to_reading_order(np.asarray(ids, dtype=np.int64), spec).tolist()


def reading_order_text(ids: list[int], spec: OrderSpec, tokenizer: Tokenizer) -> str:
    """The text of generated ids (model order) in reading order."""
    return tokenizer.decode(reading_order_ids(ids, spec, tokenizer))


def sample_texts(model: ARModel, tokenizer: Tokenizer, spec: OrderSpec, config: DecodingConfig) -> list[str]:
    """``config.num_samples`` texts drawn from [SOS] in the model's order, shown in reading order.

    A ``random``-order model's samples stay in the order they were drawn (no position to undo)."""
    samples = decode(model, tokenizer, [tokenizer.sos_id], config)
    if not spec.reversible:
        return [tokenizer.decode(row) for row in samples.rows()]
    return [reading_order_text(row, spec, tokenizer) for row in samples.rows()]


def sample_images(model: ARModel, tokenizer: PixelTokenizer, spec: OrderSpec, num_samples: int = 16,
                  seed: int = 0, temperature: float = 1.0) -> np.ndarray:
    """``num_samples`` images (N, H, W) of grey levels, drawn pixel by pixel in the model's order.

    The length is known (H·W pixels), so [EOS] and [UNK] are never drawn: each pixel's distribution
    is renormalised over the grey levels, p(x | n = H·W)."""
    from arlm.data.images import tokens_to_image

    if not isinstance(tokenizer, PixelTokenizer):
        raise MismatchError("this model reads text, not images; use `arlm sample` without --png")
    height, width = tokenizer.image_shape
    check_reversible(spec)  # a random-order model cannot place its pixels
    config = DecodingConfig(num_samples=num_samples, max_new_tokens=height * width, temperature=temperature,
                            seed=seed, banned=(tokenizer.eos_id, tokenizer.unk_id))
    rows = decode(model, tokenizer, [tokenizer.sos_id], config).rows()
    pixels = np.stack([reading_order_ids(row, spec, tokenizer) for row in rows])  # (N, H·W) raster
    return tokens_to_image(pixels, height, width, int(tokenizer.options["levels"]))


@dataclass
class SampleRequest:
    """``arlm sample``: ``config.num_samples`` draws from a model folder (or an ARPA file).

    An image model draws whole images (``config``'s count, seed and temperature; its length is the
    image's); ``need_images`` refuses a text model (``--png``)."""

    model_path: Path
    config: DecodingConfig
    need_images: bool = False


@dataclass
class TextSamples:
    """Texts in reading order (a ``random``-order model's: in the order they were drawn)."""

    texts: list[str]
    order: OrderSpec

    @property
    def in_reading_order(self) -> bool:
        return self.order.reversible


@dataclass
class ImageSamples:
    """Images (N, H, W) of grey levels ``0 .. levels - 1``, drawn in the model's order."""

    images: np.ndarray
    levels: int
    order: OrderSpec


def sample(request: SampleRequest) -> TextSamples | ImageSamples:
    """Draw ``request``'s samples from its model, in the model's order."""
    model, tok = load_model(request.model_path)
    spec = load_order(request.model_path)
    config = request.config
    if image_shape(tok) is not None:
        images = sample_images(model, tok, spec, config.num_samples, config.seed, config.temperature)
        return ImageSamples(images, int(tok.options["levels"]), spec)
    if request.need_images:
        raise ConfigError("--png draws images, but this model reads text; leave --png out")
    return TextSamples(sample_texts(model, tok, spec, config), spec)
