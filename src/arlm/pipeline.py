"""The orchestration layer: corpus → tokenizer → encoded splits → model → Trainer → checkpoint → text.

The command line, the quickstart, the benchmarks (and later the experiments and the server) call
these functions and only parse arguments and render results. Each step is one function:

* :func:`build_tokenizer` / :func:`prepare_data`: a corpus, a tokenizer trained on its training
  split, and the encoded splits (cached on disk, :mod:`arlm.data.cache`);
* :func:`build_model`: a neural model from resolved preset settings, its initial weights drawn from
  the run's seed (the same seed gives the same weights, in any process);
* :func:`train_neural`: the whole ``arlm train FAMILY`` run, checkpoints that are model folders;
* :func:`save_model` / :func:`load_model`: model folders of every registered family (and ARPA files);
* :func:`import_gpt2` / :func:`export_gpt2`: GPT-2 folders in Hugging Face's format;
* :func:`encode_prompt` and :func:`decode`: text in, a :class:`~arlm.decode.config.DecodingConfig`
  applied, tokens out.

A model folder holds ``config.json`` (with ``family``, one of :data:`arlm.models.registry.FAMILIES`),
the family's weights or tables, ``tokenizer.json``, and ``order.json`` when the model reads its
sequences in another order than left to right (:mod:`arlm.data.orders`: :func:`order_spec` makes one,
:func:`reorder_split` puts data in it, :func:`load_order` reads it back, :func:`reading_order_text`
shows a generated sequence in reading order).

Image corpora (``digits``) are read with their own pixel tokenizer, whatever tokenizer is asked for.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arlm.data.cache import EncodedSplit, encode_corpus
from arlm.data.corpora import Corpus, load_corpus
from arlm.data.orders import (
    ORDER_FILE,
    OrderSpec,
    check_reversible,
    read_order_file,
    to_model_order,
    to_reading_order,
    write_order_file,
)
from arlm.data.tokenizers import (
    ForeignTokenizer,
    PixelTokenizer,
    Tokenizer,
    WordTokenizer,
    load_tokenizer,
    train_tokenizer,
)
from arlm.decode.config import DecodingConfig
from arlm.errors import ConfigError, DataError, FormatError, MismatchError
from arlm.io import atomic_dir, atomic_write
from arlm.models.base import ARModel
from arlm.models.registry import FAMILIES, family_of, load_family_model
from arlm.train.presets import ResolvedSettings, resolve

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclass
class TokenizerSpec:
    """How to build a tokenizer: a kind and its options (see arlm.data.tokenizers)."""

    kind: str = "word"
    lowercase: bool = False
    vocab_size: int | None = None  # bpe: merges target; word: keep the most frequent
    min_count: int = 1

    def options(self) -> dict:
        opts: dict = {}
        if self.kind == "word":
            opts["lowercase"] = self.lowercase
            opts["min_count"] = self.min_count
            if self.vocab_size:
                opts["max_vocab"] = self.vocab_size
        elif self.kind == "whitespace":
            opts["whitespace"] = True
            opts["min_count"] = self.min_count
            if self.vocab_size:
                opts["max_vocab"] = self.vocab_size
        elif self.kind == "char":
            opts["min_count"] = self.min_count
        elif self.kind == "bpe" and self.vocab_size:
            opts["vocab_size"] = self.vocab_size
        return opts


def image_shape(corpus_or_tokenizer) -> tuple[int, int] | None:
    """(H, W) when a corpus or tokenizer is of images (``digits``, the pixel tokenizer), else None."""
    return getattr(corpus_or_tokenizer, "image_shape", None)


def build_tokenizer(corpus: Corpus, spec: TokenizerSpec, split: str = "train") -> Tokenizer:
    """Train a tokenizer of ``spec`` on the ``split`` lines of ``corpus`` (an image corpus: its own
    pixel tokenizer, whatever ``spec`` says)."""
    if image_shape(corpus) is not None:
        return corpus.tokenizer()
    kind = "word" if spec.kind == "whitespace" else spec.kind
    return train_tokenizer(kind, corpus.lines(split), **spec.options())


@dataclass
class PreparedData:
    """A corpus, its tokenizer, and the encoded training (and validation) splits."""

    corpus: Corpus
    tokenizer: Tokenizer
    train: EncodedSplit
    val: EncodedSplit | None


def prepare_data(corpus: str | Corpus, tokenizer: TokenizerSpec | Tokenizer, split: str = "train",
                 val_split: str | None = "val", unit: str = "lines", encoding: str = "utf-8"
                 ) -> PreparedData:
    """Load ``corpus`` (a name or path), train the tokenizer on ``split`` (unless one is given) and
    encode ``split`` and ``val_split`` (None or "": no validation split)."""
    corp = corpus if isinstance(corpus, Corpus) else load_corpus(corpus, encoding)
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else build_tokenizer(corp, tokenizer, split)
    if (image_shape(corp) is None) != (not isinstance(tok, PixelTokenizer)):
        raise MismatchError(f"the model reads {'images' if isinstance(tok, PixelTokenizer) else 'text'} "
                            f"but corpus {corp.name} is {'images' if image_shape(corp) else 'text'}; "
                            + ("pass --corpus digits" if isinstance(tok, PixelTokenizer)
                               else "pass a text corpus"))
    train = encode_corpus(corp, split, tok, unit)
    val = encode_corpus(corp, val_split, tok, unit) if val_split else None
    return PreparedData(corp, tok, train, val)


# ---------------------------------------------------------------------------------------------
# Orders
# ---------------------------------------------------------------------------------------------


def order_spec(name: str, data: Corpus | Tokenizer, seed: int = 0) -> OrderSpec:
    """The order ``name`` for a corpus's (or a tokenizer's) sequences: text orders for text; for
    images also the pixel orders of their shape. A bad name, or an order that does not fit the data
    (a pixel order on text, Hilbert on a non-square image), is a ConfigError."""
    return OrderSpec(name, seed, image_shape(data))


def reorder_split(split: EncodedSplit, spec: OrderSpec, seed: int | None = None) -> EncodedSplit:
    """The split's sequences in the model's order (the same tokens; ``num_chars`` unchanged, so bits
    per character compare across orders). ``random`` draws from ``seed`` (default: the spec's)."""
    if spec.identity:
        return split
    tokens = to_model_order(split.tokens, spec, seed)
    tokens.setflags(write=False)
    return EncodedSplit(tokens, split.num_chars, split.num_sequences)


def load_order(path: str | Path) -> OrderSpec:
    """The order saved with a model folder (``l2r`` for an ARPA file or a folder without order.json)."""
    path = Path(path)
    return read_order_file(path) if path.is_dir() else OrderSpec()


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


def check_family_order(family: str, spec: OrderSpec) -> OrderSpec:
    """σ-GPT trains on a fresh random order per sequence by itself: its data stays in reading order
    (its order file says so); any order other than the default or ``random`` is refused."""
    if family != "sigma_gpt":
        return spec
    if spec.name not in ("l2r", "raster", "random"):
        raise ConfigError(f"σ-GPT draws a fresh random order for every sequence itself, so it takes no "
                          f"--order {spec.name}; leave --order out (or pass random)")
    return OrderSpec("raster" if spec.image else "l2r", spec.seed, spec.image)


def train_ngram(corpus: str | Corpus = "shakespeare", *, split: str = "train", n: int = 5,
                smoothing: str = "mkn", k: float | None = None, discount_fallback: bool = False,
                tokenizer: TokenizerSpec | Tokenizer | None = None, unit: str = "lines",
                encoding: str = "utf-8", order: str = "l2r", seed: int = 0,
                out_dir: str | Path | None = None):
    """``arlm train ngram``: count n-grams of ``split`` read in ``order`` and smooth them.
    Returns (model, tokenizer, order spec, data); writes the model folder when ``out_dir`` is given."""
    from arlm.models.ngram import NGramModel

    data = prepare_data(corpus, tokenizer or TokenizerSpec("word"), split, None, unit, encoding)
    spec = order_spec(order, data.tokenizer, seed)
    train = reorder_split(data.train, spec)
    model = NGramModel.fit(train.tokens, order=n, vocab=data.tokenizer.vocab, smoothing=smoothing, k=k,
                           discount_fallback=discount_fallback)
    if out_dir is not None:
        save_model(out_dir, model, data.tokenizer, spec)
    return model, data.tokenizer, spec, data


# ---------------------------------------------------------------------------------------------
# Neural models and their training
# ---------------------------------------------------------------------------------------------


def build_model(settings: ResolvedSettings, vocab_size: int, seed: int | None = None):
    """The model of ``settings`` for a vocabulary, its initial weights drawn from ``seed`` (default:
    the training seed), so the same settings give the same weights in any process.

    A Transformer's positions default to the training block_size.
    """
    import torch

    family = FAMILIES[settings.family]
    values = dict(settings.model)
    block = settings.train.get("block_size", 128)
    if "block_size" in {f.name for f in dataclasses.fields(family.config_class)}:
        if "block_size" not in settings.model_fields_given or "block_size" not in values:
            values["block_size"] = block
        if values["block_size"] < block:
            raise ConfigError(f"the {settings.family} model has {values['block_size']} positions but "
                              f"training rows are block_size={block} tokens; raise model.block_size or "
                              "lower train.block_size")
    try:
        config = family.config_class(vocab_size=vocab_size, **values)
    except TypeError as e:
        raise ConfigError(f"bad {settings.family} model settings: {e}") from e
    torch.manual_seed(settings.train.get("seed", 0) if seed is None else seed)
    try:
        return family.model_class(config)
    except (AssertionError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"bad {settings.family} model settings ({e}); fix them with --set") from e


def make_train_config(settings: ResolvedSettings, **extra: Any):
    """The :class:`~arlm.train.trainer.TrainConfig` of ``settings``, with ``extra`` fields set."""
    from arlm.train.trainer import TrainConfig

    values = {**settings.train, **extra}
    try:
        return TrainConfig.from_dict(values)
    except TypeError as e:
        raise ConfigError(f"bad training settings: {e}") from e


def check_resume(folder: str | Path, tokenizer: Tokenizer, family: str) -> None:
    """Refuse a checkpoint of another family or tokenizer before anything is touched."""
    folder = Path(folder)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise ConfigError(f"cannot resume: {folder} is not a checkpoint folder (e.g. OUT/last)")
    try:
        saved_family = family_of(folder)
    except FormatError as e:
        raise ConfigError(f"cannot resume: {e}") from e
    if saved_family != family:
        raise MismatchError(f"checkpoint {folder} holds a {saved_family!r} model, not a {family!r} model; "
                            "resume with the same model command and settings")
    tok_file = folder / "tokenizer.json"
    if tok_file.is_file():
        saved = load_tokenizer(tok_file)
        if saved.kind != tokenizer.kind or list(saved.vocab) != list(tokenizer.vocab):
            raise MismatchError(f"checkpoint {folder} was trained with another tokenizer ({saved.kind}, "
                                f"{saved.vocab_size} tokens; now {tokenizer.kind}, {tokenizer.vocab_size}); "
                                "resume with the same --tokenizer and corpus")


def check_stream_lengths(config, data: PreparedData) -> None:
    """Each split must hold at least one training row (block_size + 1 tokens)."""
    for name, split in (("training", data.train), ("validation", data.val)):
        if split is not None and len(split.tokens) < config.block_size + 1:
            raise DataError(f"the {name} split has {len(split.tokens):,} tokens, fewer than block_size + 1 = "
                            f"{config.block_size + 1}; lower block_size (--set block_size=…) or use "
                            "more data")


def train_neural(command: str, *, corpus: str = "shakespeare", split: str = "train",
                 val_split: str = "val", preset: str = "tiny", overrides: list[str] | None = None,
                 tokenizer: str = "char", vocab_size: int | None = None, unit: str = "lines",
                 encoding: str = "utf-8", out_dir: str | Path | None = "runs/model",
                 resume: str | Path | None = None, threads: int = 0, order: str = "l2r",
                 log: Callable[[str], Any] = print):
    """``arlm train COMMAND``: train a neural family on ``corpus``'s ``split`` (validating on
    ``val_split``) with its sequences read in ``order``, writing ``OUT/last`` and ``OUT/best`` (model
    folders, with ``order.json``) and ``OUT/run.json``.

    Returns (trainer, summary). Every user error is an ArlmError raised before anything is written.
    """
    import torch

    from arlm.train.checkpoint import check_model
    from arlm.train.trainer import Trainer

    settings = resolve(command, preset, overrides or [])
    if threads:
        torch.set_num_threads(threads)
    data = prepare_data(corpus, TokenizerSpec(tokenizer, vocab_size=vocab_size), split, val_split, unit,
                        encoding)
    tok = data.tokenizer
    seed = int(settings.train.get("seed", 0))
    spec = check_family_order(settings.family, order_spec(order, tok, seed))
    train_split = reorder_split(data.train, spec)
    val_split = None if data.val is None else reorder_split(data.val, spec, seed + 1)
    config = make_train_config(settings, out_dir=None if out_dir is None else str(out_dir))
    check_stream_lengths(config, data)
    if resume is not None:
        check_resume(resume, tok, settings.family)
        if load_order(resume) != spec:
            raise MismatchError(f"checkpoint {resume} was trained in order {load_order(resume).name}, not "
                                f"{spec.name}; resume with the same --order")
    model = build_model(settings, tok.vocab_size)
    if resume is not None:
        check_model(resume, model)
    trainer = Trainer(model, config, train_split, val_split, tokenizer=tok,
                      json_files={ORDER_FILE: spec.to_json()})
    if trainer.dist.is_main:
        log(f"{data.corpus.name} {split}: {len(data.train.tokens):,} tokens ({tok.kind}, vocabulary "
            f"{tok.vocab_size:,}, order {spec.name}); {settings.family} {dataclasses.asdict(model.config)}; "
            f"{model.num_parameters():,} parameters")
    if out_dir is not None and trainer.dist.is_main:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        run = {"command": command, "preset": preset, "overrides": overrides or [], "corpus": corpus,
               "split": split, "tokenizer": tok.kind, "unit": unit, "order": spec.to_json(),
               "model": dataclasses.asdict(model.config), "train": dataclasses.asdict(config)}
        with atomic_write(out / "run.json") as f:
            json.dump(run, f, indent=2, default=str)
    summary = trainer.train(resume_from=resume)
    return trainer, summary


# ---------------------------------------------------------------------------------------------
# Model folders
# ---------------------------------------------------------------------------------------------


def save_model(folder: str | Path, model: ARModel, tokenizer: Tokenizer | None,
               order: OrderSpec | None = None) -> Path:
    """Write a model folder atomically: the family's files plus ``tokenizer.json`` (and
    ``order.json`` for a model that reads in another order than left to right)."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        model.save_files(tmp)
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer.json")
        if order is not None:
            write_order_file(tmp, order)
    return folder


ARPA_SPLITS = ("whitespace", "word")


def load_model(path: str | Path, arpa_split: str = "whitespace", lowercase: bool = False,
               need_tokenizer: bool = True) -> tuple[ARModel, Tokenizer | None]:
    """A model folder (any registered family) or an ARPA file -> (model, tokenizer), checked to belong
    together. With ``need_tokenizer`` a folder without ``tokenizer.json`` (an imported GPT-2 that had
    none) is a one-line error; without, its tokenizer is None.

    An ARPA file holds no tokenizer: its text is split on whitespace (``arpa_split="whitespace"``,
    KenLM's convention for pre-tokenized text) or with arlm's word regex (``"word"``, for ARPA files
    that ``arlm train ngram`` wrote with its default word tokenizer), optionally lowercased.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"model {path} does not exist; train one with `arlm train … --out {path}`")
    if path.is_file():
        return _load_arpa(path, arpa_split, lowercase)
    model = load_family_model(path)
    tok_file = path / "tokenizer.json"
    if not tok_file.is_file():
        if need_tokenizer:
            raise DataError(f"{path} has no tokenizer.json, so its text cannot be encoded or decoded; "
                            "import the GPT-2 folder again with its tokenizer.json next to config.json")
        return model, None
    tokenizer = load_tokenizer(tok_file)
    model_vocab = getattr(model, "vocab", None)
    if tokenizer.vocab_size != model.vocab_size or (
            model_vocab is not None and list(model_vocab) != list(tokenizer.vocab)):
        raise MismatchError(f"the tokenizer in {path} does not match the model ({tokenizer.vocab_size} "
                            f"vs {model.vocab_size} tokens, or other tokens); save a model and its "
                            "tokenizer together, as `arlm train` does")
    return model, tokenizer


def _load_arpa(path: Path, split: str, lowercase: bool) -> tuple[ARModel, Tokenizer]:
    from arlm.interop.arpa import read_arpa

    if split not in ARPA_SPLITS:
        raise ConfigError(f"unknown ARPA text split {split!r}; choose one of {', '.join(ARPA_SPLITS)}")
    model = read_arpa(path)
    tokenizer = WordTokenizer.from_vocab(model.vocab, whitespace=split == "whitespace",
                                         lowercase=lowercase)
    return model, tokenizer


def import_gpt2(hf_folder: str | Path, out: str | Path) -> tuple[ARModel, Tokenizer | None]:
    """An HF GPT-2 folder (``config.json``, ``model.safetensors``, optionally ``tokenizer.json``) ->
    an arlm model folder of family ``gpt2`` that ``eval``/``sample``/``generate`` read."""
    from arlm.interop.gpt2 import load_gpt2

    hf_folder = Path(hf_folder)
    if not hf_folder.is_dir():
        raise DataError(f"{hf_folder} is not a folder; pass the folder that save_pretrained wrote")
    model = load_gpt2(hf_folder)
    tok_file = hf_folder / "tokenizer.json"
    tokenizer = ForeignTokenizer.from_file(tok_file) if tok_file.is_file() else None
    if tokenizer is not None and tokenizer.vocab_size > model.vocab_size:
        raise MismatchError(f"{tok_file} has {tokenizer.vocab_size} tokens but the model only "
                            f"{model.vocab_size}; pass the tokenizer that belongs to the model")
    save_model(out, model, tokenizer)
    return model, tokenizer


def export_gpt2(checkpoint: str | Path, hf_folder: str | Path) -> Path:
    """A Transformer or GPT-2 model folder -> an HF GPT-2 folder (``from_pretrained`` reads it).

    A model with arlm's own vocabulary keeps its ids: [EOS] = 2, [SOS] = 1, [PAD] = 0 in the config.
    A foreign tokenizer (an imported GPT-2's) is written back as ``tokenizer.json``.
    """
    from arlm.interop.gpt2 import save_gpt2
    from arlm.models.transformer import TransformerLM
    from arlm.streams import EOS_ID, PAD_ID, SOS_ID

    hf_folder = Path(hf_folder)
    if hf_folder.exists() and (not hf_folder.is_dir() or any(hf_folder.iterdir())):
        raise ConfigError(f"{hf_folder} already exists and is not an empty folder; choose a new folder "
                          "or remove it first")
    model, tokenizer = load_model(checkpoint, need_tokenizer=False)
    if not isinstance(model, TransformerLM):
        raise MismatchError(f"{checkpoint} holds a {family_of(checkpoint)!r} model; only Transformer and "
                            "GPT-2 models export to GPT-2's format")
    if isinstance(tokenizer, ForeignTokenizer):
        save_gpt2(model, hf_folder, eos_token_id=tokenizer.eos_id, bos_token_id=tokenizer.sos_id)
        with atomic_write(hf_folder / "tokenizer.json") as f:
            f.write(tokenizer._hf.to_str())
    else:
        save_gpt2(model, hf_folder, eos_token_id=EOS_ID, bos_token_id=SOS_ID, pad_token_id=PAD_ID)
    return hf_folder


# ---------------------------------------------------------------------------------------------
# Text in, text out
# ---------------------------------------------------------------------------------------------


def unknown_pieces(tokenizer: Tokenizer, text: str) -> list[str]:
    """The pieces of ``text`` that the tokenizer maps to [UNK] (words, or characters)."""
    if tokenizer.unk_id is None or tokenizer.unk_id not in tokenizer.encode(text):
        return []
    pieces = tokenizer.split(text) if hasattr(tokenizer, "split") else list(dict.fromkeys(text))
    return list(dict.fromkeys(p for p in pieces if tokenizer.unk_id in tokenizer.encode(p)))


def encode_prompt(model: ARModel, tokenizer: Tokenizer, prompt: str, max_new_tokens: int) -> list[int]:
    """``[SOS]`` + the prompt's ids, checked to leave room for ``max_new_tokens`` in the model's context."""
    ids = [tokenizer.sos_id, *tokenizer.encode(prompt)]
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
    return ids


def decode(model: ARModel, tokenizer: Tokenizer, prompt_ids: list[int], config: DecodingConfig,
           on_token: Callable | None = None):
    """Continue one prompt with ``config``'s strategy: :class:`~arlm.decode.search.Samples` (sampling,
    greedy; ``on_token`` streams them) or :class:`~arlm.decode.search.Beams` (beam search)."""
    from arlm.decode.search import beam_search, generate

    if hasattr(model, "eval"):
        model.eval()
    ids = {"eos_id": tokenizer.eos_id, "sos_id": tokenizer.sos_id, "pad_id": tokenizer.pad_id}
    if config.strategy == "beam":
        return beam_search(model, [prompt_ids], config, **ids)
    return generate(model, [prompt_ids], config, on_token=on_token,
                    decode=tokenizer.decode if config.stop_strings else None, **ids)


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
