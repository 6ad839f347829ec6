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
import math
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
    return EncodedSplit(tokens, split.num_chars, split.num_sequences, split.num_bytes)


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
        saved_order = load_order(resume)
        if saved_order != spec:
            raise MismatchError(f"checkpoint {resume} was trained in order {saved_order.name}, not "
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
    if not isinstance(model, TransformerLM) or not model.gpt2_layout:
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
           on_token: Callable | None = None, *, draft: Any = None, draft_tokens: int = 4,
           fast: bool = True):
    """Continue one prompt with ``config``'s strategy: :class:`~arlm.decode.search.Samples` (sampling,
    greedy; ``on_token`` streams them) or :class:`~arlm.decode.search.Beams` (beam search).

    ``draft`` (a model on the same tokenizer, or a :class:`~arlm.decode.speculative.Draft` such as
    prompt lookup; see :func:`load_draft`) turns on speculative decoding with ``draft_tokens``
    proposals a round: a :class:`~arlm.decode.speculative.SpeculativeResult` (the same tokens as
    plain greedy decoding; sampling keeps the model's distribution). ``fast`` decodes a Transformer
    with the lean one-token step of :class:`~arlm.decode.fast.FastDecoder` (the same tokens).
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
                                    k=draft_tokens, eos_id=ids["eos_id"], sos_id=ids["sos_id"])
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


# ---------------------------------------------------------------------------------------------
# Faster decoding: drafts for speculative decoding, int8 weights, timed runs
# ---------------------------------------------------------------------------------------------

PROMPT_LOOKUP = "prompt-lookup"


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


def evaluate_quantized(model: ARModel, tokenizer: Tokenizer, split: EncodedSplit,
                       mode: str) -> dict[str, Any]:
    """Score ``split`` with the fp32 model and with its ``mode`` (int8) copy: each one's likelihood
    report plus scored tokens/s, the two side by side (``{"fp32": {…}, mode: {…}}``) with the
    perplexity change in percent."""
    import time

    from arlm.evaluate.likelihood import evaluate_likelihood

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


@dataclass
class Generation:
    """A timed :func:`decode` run, ready to print or to serialise (``arlm generate --json``)."""

    prompt: str
    sequences: list[dict[str, Any]]  # each: text (prompt + continuation), tokens (new ids), stop_reason
    seconds: float  # wall clock of decoding (prefill included; loading excluded)
    new_tokens: int  # over all sequences
    draft: str | None = None
    draft_tokens: int | None = None
    stats: dict[str, Any] | None = None  # speculative decoding: acceptance rate, tokens per forward, …
    quantize: str | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        """One line: tokens, why the first sequence stopped, speed, the draft's acceptance."""
        line = (f"{self.new_tokens} tokens, {self.sequences[0]['stop_reason'] if self.sequences else '-'}; "
                f"{self.tokens_per_second:,.1f} tokens/s")
        if self.stats:
            line += (f"; draft acceptance {self.stats['acceptance_rate']:.1%}, "
                     f"{self.stats['tokens_per_target_forward']:.2f} tokens per target forward")
        return line

    def to_dict(self) -> dict[str, Any]:
        first = self.sequences[0] if self.sequences else {"text": self.prompt, "tokens": []}
        out = {"prompt": self.prompt, "text": first["text"], "tokens": first["tokens"],
               "sequences": self.sequences, "new_tokens": self.new_tokens,
               "decode_seconds": round(self.seconds, 6), "tokens_per_s": round(self.tokens_per_second, 3),
               "quantize": self.quantize, "draft": self.draft}
        if self.draft is not None:
            out.update({"draft_tokens": self.draft_tokens, **(self.stats or {})})
        return out


def run_generation(model: ARModel, tokenizer: Tokenizer, prompt: str, prompt_ids: list[int],
                   config: DecodingConfig, *, on_token: Callable | None = None, draft: Any = None,
                   draft_name: str | None = None, draft_tokens: int = 4, fast: bool = True,
                   quantize: str | None = None) -> Generation:
    """:func:`decode`, timed (loading excluded), its output as text: a :class:`Generation`."""
    import time

    from arlm.decode.search import Beams, Samples

    t0 = time.perf_counter()
    result = decode(model, tokenizer, prompt_ids, config, on_token, draft=draft, draft_tokens=draft_tokens,
                    fast=fast)
    seconds = time.perf_counter() - t0
    head = prompt_ids[1:]
    stats = None
    if isinstance(result, Samples):
        rows = [result.tokens[i, : int(n)].tolist() for i, n in enumerate(result.lengths.tolist())]
        seqs = [{"text": tokenizer.decode(head + r), "tokens": r, "stop_reason": why}
                for r, why in zip(rows, result.stop_reason, strict=True)]
    elif isinstance(result, Beams):
        seqs = []
        for r in range(result.tokens.shape[1]):
            n = int(result.lengths[0, r])
            if n:
                row = result.tokens[0, r, :n].tolist()
                seqs.append({"text": tokenizer.decode(head + row), "tokens": row,
                             "stop_reason": result.stop_reason[0][r], "score": float(result.scores[0, r]),
                             "log_prob": float(result.log_probs[0, r])})
    else:  # a SpeculativeResult
        row = result.tokens.tolist()
        seqs = [{"text": tokenizer.decode(head + row), "tokens": row, "stop_reason": result.stop_reason}]
        s = result.stats
        stats = {"acceptance_rate": round(s.acceptance_rate, 6),
                 "tokens_per_target_forward": round(s.tokens_per_target_forward, 6),
                 "target_forwards": s.target_forwards, "draft_forwards": s.draft_forwards,
                 "proposed": s.proposed, "accepted": s.accepted}
    return Generation(prompt, seqs, seconds, sum(len(s["tokens"]) for s in seqs),
                      draft_name if draft is not None else None, draft_tokens if draft is not None else None,
                      stats, quantize)


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
