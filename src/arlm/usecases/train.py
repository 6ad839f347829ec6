"""Training: ``arlm train ngram`` (:func:`train_ngram`), ``arlm train infinigram``
(:func:`train_infinigram`) and ``arlm train FAMILY`` (:func:`train_neural`).

* :func:`build_model`: a neural model from resolved preset settings, its initial weights drawn from
  the run's seed (the same seed gives the same weights, in any process);
* :func:`train_neural`: the whole run, checkpoints that are model folders (with ``order.json``) and
  ``run.json``; every user error is raised before anything is written.

The training seed is read in one place, :func:`training_seed`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arlm.data.corpora import Corpus
from arlm.data.orders import ORDER_FILE, OrderSpec, reorder_split
from arlm.data.tokenizers import Tokenizer
from arlm.errors import ConfigError, DataError, MismatchError
from arlm.io import atomic_write
from arlm.models.base import ARModel
from arlm.models.registry import FAMILIES
from arlm.train.presets import ResolvedSettings, resolve
from arlm.usecases.checkpoints import check_resume, load_order, save_model
from arlm.usecases.data import TokenizerSpec, TrainingData, order_spec, prepare_data

if TYPE_CHECKING:
    from arlm.models.ngram_build import BuildSettings
    from arlm.train.trainer import Trainer, TrainSummary


def training_seed(settings: ResolvedSettings) -> int:
    """The run's seed (``train.seed``, default 0): initial weights, data order, dropout, random orders."""
    return int(settings.train.get("seed", 0))


def check_family_order(family: str, spec: OrderSpec) -> OrderSpec:
    """σ-GPT trains on a fresh random order per sequence by itself: its data stays in reading order
    (its order file says so); any order other than the default or ``random`` is refused."""
    if family != "sigma_gpt":
        return spec
    if spec.name not in ("l2r", "raster", "random"):
        raise ConfigError(f"σ-GPT draws a fresh random order for every sequence itself, so it takes no "
                          f"--order {spec.name}; leave --order out (or pass random)")
    return OrderSpec("raster" if spec.image else "l2r", spec.seed, spec.image)


# ---------------------------------------------------------------------------------------------
# N-grams
# ---------------------------------------------------------------------------------------------


@dataclass
class NgramRequest:
    """``arlm train ngram``: count n-grams of a corpus split read in ``order`` and smooth them."""

    corpus: str | Corpus = "shakespeare"
    split: str = "train"
    n: int = 5
    smoothing: str = "mkn"
    k: float | None = None
    discount_fallback: bool = False
    tokenizer: TokenizerSpec | Tokenizer | None = None  # default: the word tokenizer
    unit: str = "lines"
    encoding: str = "utf-8"
    order: str = "l2r"
    seed: int = 0
    out_dir: str | Path | None = None  # the model folder to write (None: nothing written)
    arpa: str | Path | None = None  # also write the model as an ARPA file
    build: BuildSettings | None = None  # count on an engine out of core (None: numpy in memory)


@dataclass
class NgramResult:
    """The counted model, its tokenizer, the order it reads in and the training data."""

    model: ARModel
    tokenizer: Tokenizer
    order: OrderSpec
    data: TrainingData


def train_ngram(request: NgramRequest) -> NgramResult:
    """Count the n-grams of ``request``; write the model folder when ``out_dir`` is given."""
    from arlm.models.ngram import NGramModel

    r = request
    if r.arpa is not None:
        check_arpa_target(Path(r.arpa), r.smoothing, r.n)
    data = prepare_data(r.corpus, r.tokenizer or TokenizerSpec("word"), r.split, None, r.unit, r.encoding)
    spec = order_spec(r.order, data.tokenizer, r.seed)
    train = reorder_split(data.train, spec)
    if r.build is not None:
        model = _build_on_engine(r, data.tokenizer, spec, train.tokens)
        return NgramResult(model, data.tokenizer, spec, data)
    model = NGramModel.fit(train.tokens, order=r.n, vocab=data.tokenizer.vocab, smoothing=r.smoothing,
                           k=r.k, discount_fallback=r.discount_fallback)
    if r.out_dir is not None:
        save_model(r.out_dir, model, data.tokenizer, spec)
    if r.arpa is not None:
        from arlm.interop.arpa import write_arpa

        write_arpa(model, r.arpa)
    return NgramResult(model, data.tokenizer, spec, data)


def _build_on_engine(r: NgramRequest, tokenizer: Tokenizer, spec: OrderSpec, tokens) -> ARModel:
    """Count on ``r.build``'s engine into a memory-mapped model folder (written whole or not at all)."""
    from arlm.data.orders import write_order_file
    from arlm.io import atomic_dir
    from arlm.models.ngram_build import build_ngram_tables

    if r.out_dir is None:
        raise ConfigError(f"--engine {r.build.engine} writes the model's tables into its folder; give --out")
    with atomic_dir(r.out_dir) as tmp:
        model = build_ngram_tables(tokens, r.n, tokenizer.vocab, tmp, r.build, r.smoothing,
                                   r.discount_fallback)
        tokenizer.save(tmp / "tokenizer.json")
        write_order_file(tmp, spec)
    if r.arpa is not None:
        from arlm.interop.arpa import write_arpa

        write_arpa(model, r.arpa)
    return model


def check_arpa_target(path: Path, smoothing: str, n: int) -> None:
    """What would stop the ARPA file after the model is counted, refused before: a folder as the
    file, or a smoothing without an ARPA form (add-k above order 1)."""
    if path.is_dir():
        raise ConfigError(f"--arpa {path} is a folder; name a file to write (e.g. {path / 'model.arpa'})")
    if smoothing in ("add-k", "laplace") and n > 1:
        raise ConfigError(f"{smoothing} smoothing above order 1 has no exact ARPA form (unseen words get a "
                          "per-context constant, not a backoff); use mle, kn or mkn, or leave --arpa out")


# ---------------------------------------------------------------------------------------------
# The ∞-gram
# ---------------------------------------------------------------------------------------------


@dataclass
class InfinigramRequest:
    """``arlm train infinigram``: index a corpus split, read in ``order``, in a suffix array."""

    corpus: str | Corpus = "shakespeare"
    split: str = "train"
    tokenizer: TokenizerSpec | Tokenizer | None = None  # default: the char tokenizer, as the neural families
    unit: str = "lines"
    encoding: str = "utf-8"
    order: str = "l2r"
    seed: int = 0
    out_dir: str | Path | None = None  # the model folder to write (None: nothing written)


def train_infinigram(request: InfinigramRequest) -> NgramResult:
    """Index the ∞-gram of ``request`` (:class:`~arlm.models.infinigram.InfiniGramModel`); write the
    model folder when ``out_dir`` is given. Nothing is written before the index is built."""
    from arlm.models.infinigram import InfiniGramModel

    r = request
    data = prepare_data(r.corpus, r.tokenizer or TokenizerSpec("char"), r.split, None, r.unit, r.encoding)
    spec = order_spec(r.order, data.tokenizer, r.seed)
    train = reorder_split(data.train, spec)
    model = InfiniGramModel.fit(train.tokens, vocab=data.tokenizer.vocab)
    if r.out_dir is not None:
        save_model(r.out_dir, model, data.tokenizer, spec)
    return NgramResult(model, data.tokenizer, spec, data)


# ---------------------------------------------------------------------------------------------
# Neural models
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
    torch.manual_seed(training_seed(settings) if seed is None else seed)
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


def check_stream_lengths(config, data: TrainingData) -> None:
    """Each split must hold at least one training row (block_size + 1 tokens)."""
    for name, split in (("training", data.train), ("validation", data.val)):
        if split is not None and len(split.tokens) < config.block_size + 1:
            raise DataError(f"the {name} split has {len(split.tokens):,} tokens, fewer than block_size + 1 = "
                            f"{config.block_size + 1}; lower block_size (--set block_size=…) or use "
                            "more data")


def check_fixed_orders(model_settings: dict[str, Any], data: TrainingData) -> None:
    """σ-GPT trained in fixed orders (``train_orders`` of n tokens) needs every sequence to hold exactly n
    content tokens (images of one size)."""
    from arlm.streams import sequence_spans

    orders = model_settings.get("train_orders")
    if not orders:
        return
    n = len(orders[0])
    for name, split in (("training", data.train), ("validation", data.val)):
        if split is None:
            continue
        _, lengths = sequence_spans(split.tokens)
        if len(lengths) and not (lengths - 2 == n).all():
            raise DataError(f"train_orders are orders of {n} tokens, but the {name} split has sequences of "
                            f"{int(lengths.min()) - 2}–{int(lengths.max()) - 2} tokens; give orders of "
                            "the data's one length (images of one size), or leave train_orders out")


@dataclass
class TrainRequest:
    """``arlm train COMMAND``: a neural family trained on ``corpus``'s ``split`` (validating on
    ``val_split``, "" for none) with its sequences read in ``order``."""

    command: str
    corpus: str = "shakespeare"
    split: str = "train"
    val_split: str = "val"
    preset: str = "tiny"
    overrides: list[str] | None = None  # --set field=value
    tokenizer: str = "char"
    vocab_size: int | None = None
    unit: str = "lines"
    encoding: str = "utf-8"
    out_dir: str | Path | None = "runs/model"  # None: nothing written
    resume: str | Path | None = None
    threads: int = 0  # torch CPU threads (0: torch's default)
    order: str = "l2r"
    overwrite: bool = False  # replace a run already in out_dir (else: refused, unless resuming it)


@dataclass
class TrainResult:
    """The finished run: its trainer (the model, the tokenizer), summary, order and data."""

    trainer: Trainer
    summary: TrainSummary
    order: OrderSpec
    data: TrainingData


@dataclass
class PreparedTraining:
    """A run ready for its first step: the trainer (model, streams, tokenizer), the order, the data and
    the resolved settings."""

    trainer: Trainer
    order: OrderSpec
    data: TrainingData
    settings: ResolvedSettings


def prepare_training(request: TrainRequest) -> PreparedTraining:
    """Everything :func:`train_neural` does before its first step (settings, data, order, model,
    Trainer; resume checks), writing nothing: a caller may then step it with ``trainer.train(steps=k)``
    (e.g. to validate in its own way between chunks). Every user error is an ArlmError."""
    import torch

    from arlm.train.checkpoint import check_model
    from arlm.train.trainer import Trainer

    r = request
    check_threads(r.threads)
    settings = resolve(r.command, r.preset, r.overrides or [])
    if r.out_dir is not None:
        check_run_folder(Path(r.out_dir), r.resume, r.overwrite)
    if r.threads:
        torch.set_num_threads(r.threads)
    data = prepare_data(r.corpus, TokenizerSpec(r.tokenizer, vocab_size=r.vocab_size), r.split, r.val_split,
                        r.unit, r.encoding)
    tok = data.tokenizer
    seed = training_seed(settings)
    spec = check_family_order(settings.family, order_spec(r.order, tok, seed))
    train_split = reorder_split(data.train, spec)
    val_split = None if data.val is None else reorder_split(data.val, spec, seed + 1)
    config = make_train_config(settings, out_dir=None if r.out_dir is None else str(r.out_dir))
    check_stream_lengths(config, data)
    check_fixed_orders(settings.model, data)
    if r.resume is not None:
        check_resume(r.resume, tok, settings.family)
        saved_order = load_order(r.resume)
        if saved_order != spec:
            raise MismatchError(f"checkpoint {r.resume} was trained in order {saved_order.name}, not "
                                f"{spec.name}; resume with the same --order")
    model = build_model(settings, tok.vocab_size, seed)
    if r.resume is not None:
        check_model(r.resume, model)
    trainer = Trainer(model, config, train_split, val_split, tokenizer=tok,
                      json_files={ORDER_FILE: spec.to_json()})
    if r.resume is not None:
        trainer.load(r.resume)  # a checkpoint that does not fit fails here, before the summary
    return PreparedTraining(trainer, spec, data, settings)


def train_neural(request: TrainRequest, log: Callable[[str], Any] = print) -> TrainResult:
    """Train ``request``'s family, writing ``OUT/last`` and ``OUT/best`` (model folders, with
    ``order.json``) and ``OUT/run.json``. Every user error is an ArlmError raised before anything
    is written."""
    from arlm.train.trainer import end_distributed

    r = request
    prepared = prepare_training(r)
    trainer, spec, data, settings = prepared.trainer, prepared.order, prepared.data, prepared.settings
    tok, model, config = data.tokenizer, trainer.model, trainer.config
    if trainer.dist.is_main:
        log(f"{data.corpus.name} {r.split}: {len(data.train.tokens):,} tokens ({tok.kind}, vocabulary "
            f"{tok.vocab_size:,}, order {spec.name}); {settings.family} {dataclasses.asdict(model.config)}; "
            f"{model.num_parameters():,} parameters")
        if trainer.compile_note is not None:  # compile=auto says what it chose and why
            log(trainer.compile_note)
    if r.out_dir is not None and trainer.dist.is_main:
        out = Path(r.out_dir)
        if r.overwrite and r.resume is None:
            remove_run(out)
        out.mkdir(parents=True, exist_ok=True)
        run = {"command": r.command, "preset": r.preset, "overrides": r.overrides or [], "corpus": r.corpus,
               "split": r.split, "tokenizer": tok.kind, "unit": r.unit, "order": spec.to_json(),
               "model": dataclasses.asdict(model.config), "train": dataclasses.asdict(config)}
        with atomic_write(out / "run.json") as f:
            json.dump(run, f, indent=2, default=str)
    try:
        summary = trainer.train()  # from the resumed state, if any
    finally:
        end_distributed()  # on every way out (errors and interrupts too): no leaked process group
    return TrainResult(trainer, summary, spec, data)


MAX_THREADS = 4096


def check_threads(threads: int) -> None:
    """A torch thread count: 0 (torch's default) up to :data:`MAX_THREADS`."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= MAX_THREADS:
        raise ConfigError(f"--threads must be an integer from 0 (torch's default) to {MAX_THREADS}, got "
                          f"{threads!r}")


RUN_ENTRIES = ("run.json", "metrics.jsonl", "last", "best", "tensorboard", ".last.old", ".best.old")


def check_run_folder(out: Path, resume: str | Path | None, overwrite: bool) -> None:
    """Refuse to train into a folder that holds another run, whose ``best/`` would be replaced and whose
    metrics would be mixed with the new run's: resuming a checkpoint of that folder continues it,
    ``overwrite`` replaces it whole."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; choose a folder for the run")
    held = [name for name in RUN_ENTRIES if (out / name).exists()]
    if not held or overwrite:
        return
    if resume is not None and Path(resume).resolve().parent == out.resolve():
        return  # resuming this run's own checkpoint: the run goes on
    raise ConfigError(f"{out} already holds a training run ({', '.join(held)}); continue it with "
                      f"--resume {out / 'last'}, replace it with --overwrite, or choose another --out")


def remove_run(out: Path) -> None:
    """Remove the run in ``out`` (what :data:`RUN_ENTRIES` names), so a new one replaces it whole."""
    for name in RUN_ENTRIES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
