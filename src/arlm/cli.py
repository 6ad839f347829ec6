"""The `arlm` command line: a thin view of the Python API.

Every command parses its options, calls the library and prints. Bad input raises an ArlmError in the
library; :func:`main` prints it on one line and exits with code 2 (never a traceback).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin

import typer
from rich.console import Console
from rich.table import Table

from arlm.decode.config import KNOB_TYPES, DecodingConfig, DecodingError, flag_of
from arlm.errors import ArlmError, ConfigError, Interrupted

if TYPE_CHECKING:
    from arlm.usecases.evaluate import QuantizedEval
    from arlm.usecases.generate import GeneratedTexts

app = typer.Typer(
    help="arlm: autoregressive language models, from counting n-grams to Transformers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
corpus_app = typer.Typer(help="Built-in corpora and your own text.", no_args_is_help=True)
train_app = typer.Typer(help="Train a model family on a corpus.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
app.add_typer(train_app, name="train")

out = Console()
err = Console(stderr=True)

CorpusOpt = Annotated[str, typer.Option(
    "--corpus", "-c", help="A built-in corpus (see `arlm corpus list`), or a text file, folder or glob.")]
SplitOpt = Annotated[str, typer.Option(
    help="train, val, test, or all (the whole corpus, for a file you split yourself).")]
EncodingOpt = Annotated[str, typer.Option(
    help="Text encoding of your own files (built-in corpora are UTF-8).")]
ArpaSplitOpt = Annotated[str, typer.Option(
    help="For an .arpa model: split text on whitespace (KenLM's convention, for pre-tokenized text) "
         "or with arlm's word regex (for ARPA files that `arlm train ngram` wrote).")]
ArpaLowerOpt = Annotated[bool, typer.Option(help="For an .arpa model: lowercase the text first.")]
QuantizeOpt = Annotated[str | None, typer.Option(
    help="int8: int8 weights in every Linear layer (dynamic quantization; CPU only): faster on a CPU, "
         "slightly different numbers.")]
UnitOpt = Annotated[str, typer.Option(
    help="lines: each line is a sentence [SOS] … [EOS]; documents: each document is one sequence.")]
ThreadsOpt = Annotated[int, typer.Option(
    min=0, max=4096, help="torch CPU threads (0: torch's default; 1 is often fastest for tiny models).")]
OrderOpt = Annotated[str, typer.Option(
    "--order", help="Factorization order the model reads its sequences in: l2r (default), r2l, random "
                    "(a fresh permutation per sequence), fixed-random (one per length); on images "
                    "(--corpus digits) also raster, snake, zorder, hilbert. Saved with the model "
                    "(order.json); eval, sample and generate read it and show text in reading order.")]


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    return "inf" if math.isinf(x) else f"{x:,.{digits}f}"


# ---------------------------------------------------------------------------------------- corpus
@corpus_app.command("list")
def corpus_list() -> None:
    """List the built-in corpora (no download needed) with their sizes."""
    from arlm.data.corpora import list_corpora

    table = Table("name", "description")
    for name, description in list_corpora():
        table.add_row(name, description)
    out.print(table)


@corpus_app.command("show")
def corpus_show(
    name: Annotated[str, typer.Argument(help="Corpus name or path.")],
    split: SplitOpt = "train",
    lines: Annotated[int, typer.Option(min=0, help="How many lines to print.")] = 10,
    encoding: EncodingOpt = "utf-8",
) -> None:
    """Print the first lines of a corpus split, and its size."""
    from arlm.data.corpora import load_corpus

    corpus = load_corpus(name, encoding)
    text_lines = corpus.lines(split)
    docs = corpus.documents(split)
    err.print(f"[bold]{corpus.name}[/] {split}: {len(docs):,} documents, {len(text_lines):,} lines, "
              f"{sum(len(d.text) for d in docs):,} characters")
    for line in text_lines[:lines]:
        out.print(line, markup=False, highlight=False)


# ----------------------------------------------------------------------------------------- train
@train_app.command("ngram")
def train_ngram(
    corpus: CorpusOpt = "shakespeare",
    split: SplitOpt = "train",
    order: OrderOpt = "l2r",
    ngram_order: Annotated[int, typer.Option(
        "--ngram-order", "-n", help="N: the longest n-gram counted (an integer --order is read as N "
                                    "too, as in earlier versions).")] = 5,
    smoothing: Annotated[str, typer.Option(
        help="mkn (modified Kneser-Ney, as KenLM), kn, add-k, laplace, or mle.")] = "mkn",
    k: Annotated[float | None, typer.Option(help="The k of add-k smoothing (default 1).")] = None,
    discount_fallback: Annotated[bool, typer.Option(
        help="When a discount cannot be estimated (too little data), use 0.5 1 1.5 as KenLM's "
             "--discount_fallback does, instead of stopping.")] = False,
    tokenizer: Annotated[str, typer.Option(
        help="word (regex words and punctuation), whitespace (pre-tokenized text, as KenLM), char, "
             "byte or bpe.")] = "word",
    lowercase: Annotated[bool, typer.Option(help="Lowercase words (word tokenizer).")] = False,
    vocab_size: Annotated[int | None, typer.Option(
        help="word: keep the most frequent words; bpe: vocabulary size.")] = None,
    min_count: Annotated[int, typer.Option(help="Drop tokens seen fewer times (→ [UNK]).")] = 1,
    unit: UnitOpt = "lines",
    encoding: EncodingOpt = "utf-8",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")] = Path(
        "runs/ngram"),
    arpa: Annotated[Path | None, typer.Option(help="Also write the model as an ARPA file.")] = None,
    engine: Annotated[str, typer.Option(
        help="memory (numpy, all counts in RAM), duckdb (SQL, spills to disk beyond --memory) or spark "
             "(the same SQL on Spark, --spark-master); duckdb and spark write memory-mapped tables "
             "and give the same model, byte for byte.")] = "memory",
    memory: Annotated[str, typer.Option(help="duckdb/spark: the engine's memory cap, e.g. 4GB.")] = "4GB",
    spark_master: Annotated[str, typer.Option(
        help="spark: local[*] (this machine's cores) or a cluster URL, e.g. spark://host:7077."
    )] = "local[*]",
    work_dir: Annotated[Path | None, typer.Option(
        help="duckdb/spark: folder for the token Parquet files and the engine's spill (default: beside "
             "--out); removed after.")] = None,
) -> None:
    """Count n-grams on a corpus split (read in --order) and save a smoothed n-gram model (and
    optionally ARPA)."""
    from arlm.usecases.data import TokenizerSpec
    from arlm.usecases.train import NgramRequest, train_ngram

    if order.isdigit():  # the n-gram length, as `--order N` meant before factorization orders
        order, ngram_order = "l2r", int(order)
    build = None
    if engine != "memory":
        from arlm.models.ngram_build import BuildSettings, parse_memory

        build = BuildSettings(engine, parse_memory(memory), spark_master, work_dir)
        build.check(None, ngram_order)  # a bad engine, memory or master before the corpus is read
    result = train_ngram(NgramRequest(
        corpus, split=split, n=ngram_order, smoothing=smoothing, k=k, discount_fallback=discount_fallback,
        tokenizer=TokenizerSpec(tokenizer, lowercase, vocab_size, min_count), unit=unit, encoding=encoding,
        order=order, out_dir=out_dir, arpa=arpa, build=build))
    train, tok = result.data.train, result.tokenizer
    err.print(f"{result.data.corpus.name} {split}: {train.num_sequences:,} sequences, {len(train.tokens):,} "
              f"tokens, vocabulary {tok.vocab_size:,} ({tok.kind}), order {result.order.name}")
    err.print(f"saved {ngram_order}-gram ({smoothing}) to {out_dir}")
    if arpa is not None:
        err.print(f"wrote ARPA {arpa}")


@train_app.command("infinigram")
def train_infinigram(
    corpus: CorpusOpt = "shakespeare",
    split: SplitOpt = "train",
    order: OrderOpt = "l2r",
    tokenizer: Annotated[str, typer.Option(
        help="char (default, as the neural families, so that `arlm eval --mix` can mix them), byte, "
             "word, whitespace or bpe.")] = "char",
    vocab_size: Annotated[int | None, typer.Option(
        help="word: keep the most frequent words; bpe: vocabulary size.")] = None,
    unit: UnitOpt = "lines",
    encoding: EncodingOpt = "utf-8",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")] = Path(
        "runs/infinigram"),
) -> None:
    """Index a corpus split in a suffix array and save an ∞-gram (Liu et al. 2024): p(w | context) from
    the longest suffix of the context that occurs in training, 0 where w never followed it (mix it with
    a neural model: `arlm eval NEURAL --mix INFINIGRAM`)."""
    from arlm.usecases.data import TokenizerSpec
    from arlm.usecases.train import InfinigramRequest
    from arlm.usecases.train import train_infinigram as build

    spec = TokenizerSpec(tokenizer, vocab_size=vocab_size)
    result = build(InfinigramRequest(corpus, split=split, tokenizer=spec, unit=unit, encoding=encoding,
                                     order=order, out_dir=out_dir))
    train, tok = result.data.train, result.tokenizer
    err.print(f"{result.data.corpus.name} {split}: {train.num_sequences:,} sequences, {len(train.tokens):,} "
              f"tokens, vocabulary {tok.vocab_size:,} ({tok.kind}), order {result.order.name}")
    err.print(f"saved the ∞-gram to {out_dir}; try `arlm sample {out_dir}` or "
              f"`arlm eval NEURAL --mix {out_dir}`")


def _train_neural(command: str, corpus: str, split: str, val_split: str, preset: str,
                  overrides: list[str] | None, tokenizer: str, vocab_size: int | None, unit: str,
                  encoding: str, out_dir: Path | None, resume: Path | None, threads: int,
                  order: str = "l2r", overwrite: bool = False) -> None:
    from arlm.usecases.train import TrainRequest, train_neural

    out_dir = out_dir or Path(f"runs/{command}")
    request = TrainRequest(command, corpus=corpus, split=split, val_split=val_split, preset=preset,
                           overrides=overrides, tokenizer=tokenizer, vocab_size=vocab_size, unit=unit,
                           encoding=encoding, out_dir=out_dir, resume=resume, threads=threads, order=order,
                           overwrite=overwrite)
    result = train_neural(request, log=err.print)
    if not result.trainer.dist.is_main:
        return
    summary = result.summary
    why = {"max_seconds": f" (stopped by max_seconds after {summary.seconds:.0f} s, before max_steps)",
           "patience": " (stopped early: no improvement)"}.get(summary.stopped_by, "")
    err.print(f"step {summary.step}: train loss {_fmt(summary.train_loss, 4)}, val loss "
              f"{_fmt(summary.val_loss, 4)}, best {_fmt(summary.best_val_loss, 4)}{why}")
    if summary.step_times() is not None:
        err.print(summary.step_times())
    err.print(f"checkpoints in {out_dir}/last and {out_dir}/best; try `arlm eval {out_dir}/best` "
              f"and `arlm sample {out_dir}/best`")


def _make_train_command(command: str, help_text: str) -> None:
    def train_neural(
        corpus: CorpusOpt = "shakespeare",
        split: SplitOpt = "train",
        val_split: Annotated[str, typer.Option(
            "--val-split", help="Validation split ('' for none).")] = "val",
        preset: Annotated[str, typer.Option(
            help="tiny, cpu-small, gpt2-small, or a .toml file with \\[train] and \\[model.FAMILY] "
                 "tables.")] = "tiny",
        overrides: Annotated[list[str] | None, typer.Option(
            "--set", "-s", help="field=value for any training or model setting, e.g. --set lr=3e-4 "
                                "--set model.d_model=64 (repeatable).")] = None,
        tokenizer: Annotated[str, typer.Option(help="char (default), byte, word or bpe.")] = "char",
        vocab_size: Annotated[int | None, typer.Option(help="word/bpe vocabulary size.")] = None,
        unit: UnitOpt = "lines",
        encoding: EncodingOpt = "utf-8",
        out_dir: Annotated[Path | None, typer.Option(
            "--out", "-o", help="Run folder: last/, best/, metrics.jsonl (default runs/COMMAND).")] = None,
        resume: Annotated[Path | None, typer.Option(
            help="Continue exactly from a checkpoint folder, e.g. runs/transformer/last.")] = None,
        overwrite: Annotated[bool, typer.Option(
            help="Replace a run already in --out (its checkpoints and metrics) with this one; without "
                 "it, a folder holding another run is refused.")] = False,
        threads: ThreadsOpt = 0,
        order: OrderOpt = "l2r",
    ) -> None:
        _train_neural(command, corpus, split, val_split, preset, overrides, tokenizer, vocab_size, unit,
                      encoding, out_dir, resume, threads, order, overwrite)

    train_neural.__doc__ = help_text
    train_app.command(command)(train_neural)


def _register_train_commands() -> None:
    """One `arlm train COMMAND` per entry of the registry's TRAIN_COMMANDS."""
    from arlm.models.registry import FAMILIES, TRAIN_COMMANDS

    for command, (family, fixed) in TRAIN_COMMANDS.items():
        what = ", ".join(f"{k}={v}" for k, v in fixed.items())
        _make_train_command(command, f"Train the {family} family: {FAMILIES[family].summary}"
                                     + (f" ({what})." if what else "."))


_register_train_commands()


# ------------------------------------------------------------------------------------------ eval
@app.command("eval")
def evaluate(
    model_path: Annotated[Path, typer.Argument(help="A model folder or an .arpa file.")],
    corpus: Annotated[str | None, typer.Option(
        "--corpus", "-c", help="A built-in corpus (see `arlm corpus list`), or a text file, folder or glob "
                               "(default: shakespeare; digits for an image model).")] = None,
    split: SplitOpt = "test",
    unit: UnitOpt = "lines",
    encoding: EncodingOpt = "utf-8",
    arpa_split: ArpaSplitOpt = "whitespace",
    arpa_lowercase: ArpaLowerOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (for scripts).")] = False,
    quantize: QuantizeOpt = None,
    orders: Annotated[int, typer.Option(
        "--orders", help="σ-GPT only: also score every sequence in this many random orders (mean ± "
                         "spread; 0: left to right only).")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the random orders (random-order models, σ-GPT).")] = 0,
    mix: Annotated[Path | None, typer.Option(
        metavar="CKPT", help="Interpolate the model per token with this one (same tokenizer and order), "
                             "e.g. an ∞-gram: p = (1-λ) p_model + λ p_CKPT.")] = None,
    mix_lambda: Annotated[float | None, typer.Option(
        "--lambda", min=0.0, max=1.0, help="The weight λ of --mix (default: chosen on --mix-split over "
                                           "0, 0.05, …, 1, and printed).")] = None,
    mix_split: Annotated[str, typer.Option(help="The held-out split λ is chosen on.")] = "val",
) -> None:
    """Likelihood of a corpus split, scored in the order the model was trained in (text in reading
    order, the same tokens, so orders compare): NLL, perplexity (with and without OOVs), bits per
    token, per character and per UTF-8 byte (the last two compare models with different tokenizers);
    bits per dimension for images; a σ-GPT also in random orders.

    With --quantize int8 the split is scored twice, by the fp32 and the int8 model (left-to-right
    models), and the perplexity change is printed next to the speed of each. With --mix CKPT the model
    is mixed per token with CKPT (Liu et al. 2024 mix an ∞-gram with a neural model), λ chosen on
    validation unless --lambda gives it."""
    from arlm.usecases.evaluate import EvalRequest, QuantizedEval
    from arlm.usecases.evaluate import evaluate as run_evaluation

    result = run_evaluation(EvalRequest(model_path, corpus=corpus, split=split, unit=unit, encoding=encoding,
                                        arpa_split=arpa_split, arpa_lowercase=arpa_lowercase,
                                        quantize=quantize, orders=orders, seed=seed, mix=mix,
                                        mix_lambda=mix_lambda, mix_split=mix_split))
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    if isinstance(result, QuantizedEval):
        _print_quantized_eval(result)
        return
    report = result.report
    table = Table(title=f"{model_path} on {result.corpus} ({split}), order {result.order.name}",
                  show_header=False)
    table.add_row("sequences", f"{report.num_sequences:,}")
    table.add_row("scored tokens ([EOS] included)", f"{report.num_tokens:,}")
    table.add_row("OOV tokens ([UNK])", f"{report.num_oov:,}")
    if report.num_zero:  # an infinite perplexity, explained
        table.add_row("tokens given probability 0", f"{report.num_zero:,} "
                      f"({100 * report.num_zero / report.num_tokens:.1f} %; mix the model: --mix)")
    table.add_row("NLL per token (nats)", _fmt(report.nll_per_token, 4))
    table.add_row("perplexity (corpus)", _fmt(report.perplexity))
    table.add_row("perplexity excluding OOVs", _fmt(report.perplexity_excluding_oov))
    table.add_row("mean per-sentence perplexity", _fmt(report.mean_sentence_ppl))
    table.add_row("bits per token", _fmt(report.bits_per_token, 4))
    table.add_row("bits per character", _fmt(report.bits_per_char, 4))
    table.add_row("bits per byte (UTF-8)", _fmt(report.bits_per_byte, 4))
    if result.image:
        table.add_row("bits per dimension (pixel)", _fmt(result.bits_per_dim, 4))
    if result.mixture is not None:
        m = result.mixture
        how = "given"
        if m.choice is not None:
            best = min(m.choice.nll_per_token)
            how = f"chosen on {m.chosen_on}: NLL/token {best:.4f}, best of {len(m.choice.grid)}"
        table.add_row("mixed with", f"{m.model}, λ = {m.lam:g} ({how})")
    if result.random_orders is not None:
        r, key = result.random_orders, result.unit_key
        table.add_row(f"{key.replace('_', ' ')}, {len(r.values)} random orders",
                      f"{r.mean:.4f} ± {r.std:.4f}")
    out.print(table)


def _print_quantized_eval(result: QuantizedEval) -> None:
    """The fp32 and int8 models side by side: perplexity, bits per character, scored tokens / s."""
    comparison, mode = result.comparison, result.mode
    table = Table("", "fp32", mode, "change", title=f"{result.model} on {result.corpus} ({result.split})")
    for name, key, digits in (("perplexity", "perplexity", 2), ("bits per character", "bits_per_char", 4),
                              ("scored tokens / s", "tokens_per_s", 0)):
        a, b = comparison["fp32"][key], comparison[mode][key]
        change = f"{(b / a - 1) * 100:+.2f}%" if a and b is not None else "-"
        table.add_row(name, _fmt(a, digits), _fmt(b, digits), change)
    out.print(table)


# ------------------------------------------------------------------------------------ score-text
METRIC_NAMES = {"bleu": "BLEU (sacrebleu, 0-100)", "chrf": "chrF (sacrebleu, 0-100)",
                "rouge1": "ROUGE-1 F (rouge-score, 0-100)", "rouge2": "ROUGE-2 F (rouge-score, 0-100)",
                "rougeL": "ROUGE-L F (rouge-score, 0-100)", "distinct_1": "distinct-1",
                "distinct_2": "distinct-2", "distinct_3": "distinct-3",
                "self_bleu": "self-BLEU-4 (Texygen, 0-100)", "repeat_4gram": "repeated 4-grams (share)",
                "zipf": "Zipf coefficient"}


@app.command("score-text")
def score_text(
    hyp: Annotated[Path, typer.Option(help="Generated texts, one per line.")],
    ref: Annotated[Path | None, typer.Option(
        help="Reference texts, one per line, line i for hypothesis i (without: diversity only).")] = None,
    tokenize: Annotated[str, typer.Option(
        help="Tokens of the diversity metrics (distinct-n, self-BLEU, repetition, Zipf): whitespace or "
             "char. BLEU, chrF and ROUGE use their libraries' own tokenizers.")] = "whitespace",
    encoding: EncodingOpt = "utf-8",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (for scripts).")] = False,
) -> None:
    """Text metrics of generations: BLEU, chrF, ROUGE-1/2/L against references; distinct-1/2/3,
    self-BLEU, repeated 4-grams and the Zipf coefficient of the generations themselves."""
    from arlm.evaluate.metrics import score_text_files

    scores = score_text_files(hyp, ref, tokenize=tokenize, encoding=encoding)
    if as_json:
        print(json.dumps({k: (None if math.isnan(v) else v) for k, v in scores.items()}))
        return
    table = Table(title=f"{hyp}" + (f" against {ref}" if ref is not None else ""), show_header=False)
    for key, value in scores.items():
        table.add_row(METRIC_NAMES.get(key, key), "-" if math.isnan(value) else _fmt(value, 4))
    out.print(table)


# ------------------------------------------------------------------------------ decoding options
def _decoding_config(**fields: Any) -> DecodingConfig:
    """A DecodingConfig from command-line values; a bad one names its flag (top_p -> --top-p)."""
    try:
        return DecodingConfig(**fields)
    except DecodingError as e:
        flag = flag_of(e.field)
        message = str(e)
        for name in sorted(fields, key=len, reverse=True):
            message = message.replace(name, flag_of(name))
        raise ConfigError(message if flag in message else f"{flag}: {message}") from None


def _decoding_options(only: tuple[str, ...] | None = None, defaults: dict[str, Any] | None = None,
                      helps: dict[str, str] | None = None,
                      check: Callable[[dict[str, Any]], None] | None = None) -> Callable:
    """Give a command DecodingConfig's knobs as options, made from the fields (help text, flag,
    short name, command-line default); the command takes them as one value, its ``config`` parameter.

    ``only``: the knobs it offers (default: every knob with a flag); ``defaults`` / ``helps``: where
    the command's meaning differs from the field's; ``check``: run on the knobs' values first.
    """
    knobs = [f for f in dataclasses.fields(DecodingConfig)
             if (f.name in only if only is not None else f.metadata["cli"])]

    def option(f: dataclasses.Field) -> inspect.Parameter:
        kind = KNOB_TYPES[f.name]
        default = (defaults or {}).get(f.name, f.metadata["cli_default"])
        if get_origin(kind) is tuple:  # a repeatable option
            kind, default = list[get_args(kind)[0]] | None, None
        decls = [flag_of(f.name), *([f.metadata["short"]] if f.metadata["short"] else [])]
        info = typer.Option(*decls, help=(helps or {}).get(f.name, f.metadata["help"]))
        return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=Annotated[kind, info])

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command, eval_str=True).parameters
        params: list[inspect.Parameter] = []
        for p in own.values():
            params += [option(f) for f in knobs] if p.name == "config" else [
                p.replace(kind=inspect.Parameter.KEYWORD_ONLY)]

        def with_config(**values: Any) -> None:
            chosen = {f.name: values.pop(f.name) for f in knobs}
            if check is not None:
                check(chosen)
            for f in knobs:
                if get_origin(KNOB_TYPES[f.name]) is tuple:
                    chosen[f.name] = tuple(chosen[f.name] or ())
            command(**values, config=_decoding_config(**chosen))

        with_config.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        with_config.__annotations__ = {p.name: p.annotation for p in params}
        for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(with_config, attribute, getattr(command, attribute))
        return with_config

    return decorate


# ---------------------------------------------------------------------------------------- sample
def _positive_temperature(knobs: dict[str, Any]) -> None:
    if not knobs["temperature"] > 0:
        raise ConfigError(f"--temperature must be > 0 for sampling, got {knobs['temperature']}; "
                          "use `arlm generate --strategy greedy` for temperature 0")


@app.command("sample")
@_decoding_options(only=("num_samples", "max_new_tokens", "temperature", "seed"),
                   defaults={"num_samples": 5, "temperature": 1.0}, check=_positive_temperature,
                   helps={"num_samples": "Samples to draw.",
                          "temperature": "> 0; below 1 sharpens, above 1 flattens."})
def sample(
    model_path: Annotated[Path, typer.Argument(help="A model folder or an .arpa file.")],
    config: DecodingConfig,
    png: Annotated[Path | None, typer.Option(
        help="Image models: also write the samples as a PNG grid to this file.")] = None,
) -> None:
    """Ancestral sampling from [SOS] until [EOS] or the length limit, in the model's order; text is
    shown in reading order. An image model draws whole images (printed as ASCII shades; --png FILE
    writes a PNG grid)."""
    from arlm.usecases.sample import ImageSamples, SampleRequest
    from arlm.usecases.sample import sample as draw_samples

    num_samples = config.sequences_per_prompt
    result = draw_samples(SampleRequest(model_path, config, need_images=png is not None))
    if isinstance(result, ImageSamples):
        from arlm.data.image_render import ascii_images, save_image_grid

        if png is not None:
            save_image_grid(png, result.images, levels=result.levels,
                            title=f"{model_path.name}: {num_samples} samples, order {result.order.name}")
            err.print(f"wrote {png}")
        print(ascii_images(result.images, levels=result.levels), flush=True)  # not rich: never wrapped
        return
    if not result.in_reading_order:
        err.print("note: a random-order model does not know which position it writes, so its samples "
                  "are shown in the order they were drawn")
    for text in result.texts:
        out.print(text, markup=False, highlight=False, soft_wrap=True)


# -------------------------------------------------------------------------------------- generate
@app.command("generate")
@_decoding_options()
def generate_text(
    model_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT",
                                               help="A model folder or an .arpa file.")],
    prompt: Annotated[str, typer.Option(
        help="Text to continue, encoded with the model's tokenizer after [SOS]; empty: from [SOS]. "
             "Pieces the tokenizer does not know become [UNK] (with a warning).")] = "",
    *,
    config: DecodingConfig,
    draft: Annotated[str | None, typer.Option(
        help="Speculative decoding: a draft model folder with the same tokenizer (an n-gram, a small "
             "Transformer, …), prompt-lookup (copy what followed the last n-gram earlier on), or "
             "distilled (the model's own greedy choices, saved in its folder by `arlm distill-draft`; "
             "or that file's path). Greedy gives the same tokens, sampling the same distribution, "
             "usually faster.")] = None,
    draft_tokens: Annotated[int, typer.Option(
        help="The most tokens the draft proposes per round (≥ 1), and the first round's number: it then "
             "follows the acceptance, and speculation pauses while it does not pay (--fixed-draft: "
             "this number every round).")] = 4,
    adaptive_draft: Annotated[bool, typer.Option(
        "--adaptive-draft/--fixed-draft",
        help="Adapt the draft's number of tokens to the acceptance and pause speculation while it "
             "does not pay (never much slower than plain decoding), or propose --draft-tokens every "
             "round.")] = True,
    quantize: QuantizeOpt = None,
    fast: Annotated[bool, typer.Option(
        help="Decode a Transformer with the lean one-token step (same tokens; --no-fast: the "
             "model's own modules).")] = True,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object: text, tokens, decode tokens/s (loading excluded) and, with "
                       "a draft, the acceptance rate, tokens per target forward and the draft "
                       "schedule.")] = False,
) -> None:
    """Continue a prompt: stream sampled or greedy text as it is generated, or beam search's n-best.

    Policies (docs/decoding.md): a prompt too long for the model's context is an error; pieces
    the tokenizer cannot encode become [UNK], with a warning.
    """
    from arlm.usecases.generate import GenerateRequest, Generation, NBest, generate

    request = GenerateRequest(model_path, prompt, config, draft=draft, draft_tokens=draft_tokens,
                              adaptive_draft=adaptive_draft, quantize=quantize, fast=fast, timed=as_json)
    result = generate(request, on_text=_write, on_sample=_print_sample, on_unknown=_warn_unknown)
    if isinstance(result, Generation):
        if as_json:
            print(json.dumps(result.to_dict()))
            return
        print(result.sequences[0]["text"], flush=True)
        err.print(f"({result.summary()})", markup=False, highlight=False)
    elif isinstance(result, NBest):
        for h in result.hypotheses:
            print(f"{h.rank}. score {h.score:.4f}  log p {h.log_prob:.3f}  {len(h.tokens)} tokens "
                  f"({h.stop_reason})  {h.text}", flush=True)
    else:
        _print_texts(result)


def _print_texts(result: GeneratedTexts) -> None:
    """Sampled or greedy texts: the end of a streamed one's line, or each text (numbered when there
    are several); then each one's length and stop reason on stderr."""
    if result.streamed and len(result.texts) == 1:
        _write("\n")
    elif not result.streamed:
        for i, text in enumerate(result.texts):
            print(text if len(result.texts) == 1 else f"[{i + 1}] {text}", flush=True)
    lengths = ", ".join(f"{n} tokens, {r}" for n, r in zip(result.lengths, result.stop_reasons, strict=True))
    shown = "" if result.order.identity else f"; written {result.order.name}, shown in reading order"
    err.print(f"({lengths}{shown})", markup=False, highlight=False)


def _write(text: str) -> None:
    """Streamed text: written as it comes, without a line break."""
    sys.stdout.write(text)
    sys.stdout.flush()


def _print_sample(row: int, text: str) -> None:
    """One of several streamed samples, once it is complete."""
    print(f"[{row + 1}] {text}", flush=True)


def _warn_unknown(pieces: list[str]) -> None:
    """The prompt's pieces that the tokenizer reads as [UNK] (at most 10 shown)."""
    shown = ", ".join(repr(p) for p in pieces[:10]) + (" …" if len(pieces) > 10 else "")
    print(f"warning: {len(pieces)} prompt piece(s) not in the model's vocabulary are read "
          f"as [UNK]: {shown}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- infill
@app.command("infill")
def infill(
    model_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="A σ-GPT model folder.")],
    template: Annotated[str, typer.Option(
        help="Text with blanks: each _ is one unknown token (one character with the char tokenizer), "
             "e.g. \"To be, or ___ to be\" asks for 3 characters.")],
    num_samples: Annotated[int, typer.Option("--num-samples", "-n", help="Fillings to draw.")] = 3,
    temperature: Annotated[float, typer.Option(help="≥ 0; 0 is greedy.")] = 1.0,
    order: Annotated[str, typer.Option(
        help="The order of the unknown positions: random (default) or l2r.")] = "random",
    seed: Annotated[int, typer.Option(help="The same seed gives the same fillings.")] = 0,
) -> None:
    """Fill the blanks of a template, each conditioned on all the known text, left and right (σ-GPT:
    the known tokens first in its order, the blanks after them)."""
    from arlm.decode.infill import check_infill_model, infill_text
    from arlm.usecases.checkpoints import load_model
    from arlm.usecases.data import image_shape

    model, tok = load_model(model_path)
    check_infill_model(model)
    if image_shape(tok) is not None:
        raise ConfigError("this σ-GPT model draws images; infill them with the Python API "
                          "(arlm.decode.infill.infill_tokens) and a mask of known pixels")
    for text in infill_text(model, tok, template, num_samples, seed, temperature, order):
        out.print(text, markup=False, highlight=False, soft_wrap=True)


@app.command("distill-draft")
def distill_draft(
    model_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="The model folder to distill.")],
    corpus: CorpusOpt = "shakespeare",
    split: SplitOpt = "train",
    unit: Annotated[str, typer.Option(
        help="documents: read each document as running text (what generation continues); lines: each "
             "line a sentence.")] = "documents",
    encoding: EncodingOpt = "utf-8",
    order: Annotated[int, typer.Option(
        help="Contexts of 1 … order − 1 tokens; at most what fits an int64 key for the vocabulary (10 for "
             "a char model, 4 for GPT-2's).")] = 10,
    max_tokens: Annotated[int | None, typer.Option(
        help="Read only the split's first this many tokens (faster; the draft agrees less).")] = None,
    rollouts: Annotated[int, typer.Option(
        help="Also let the model continue this many passages greedily (128 tokens each) and learn from "
             "them: the loops that greedy decoding falls into (0: the text only).")] = 128,
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="The draft file to write (default: CHECKPOINT/distilled_draft.safetensors, which "
                      "`--draft distilled` reads).")] = None,
) -> None:
    """Distill a speculative-decoding draft from a model: read a corpus split through it once and keep
    its own greedy choice after every short context (docs/fast_decoding.md). A draft that proposes
    what the model would choose is accepted more often than an n-gram of the text; then
    `arlm generate CHECKPOINT --draft distilled --temperature 0` gives the same text, faster."""
    from arlm.progress import progress
    from arlm.usecases.decoding import DistillRequest
    from arlm.usecases.decoding import distill_draft as run_distill

    request = DistillRequest(model_path, corpus=corpus, split=split, unit=unit, encoding=encoding,
                             order=order, max_tokens=max_tokens, rollouts=rollouts, out=out_file)
    with progress() as bar:
        task = bar.add_task("reading the text through the model", total=None)
        info = run_distill(request, lambda done, total: bar.update(task, completed=done, total=total))
    err.print(f"read {info.tokens:,} tokens in {info.seconds:.1f} s; kept {info.contexts:,} contexts of 1–"
              f"{info.order - 1} tokens; wrote {info.path}")


@app.command("export-arpa")
def export_arpa(
    model_path: Annotated[Path, typer.Argument(help="An n-gram model folder.")],
    arpa: Annotated[Path, typer.Argument(help="The ARPA file to write (.arpa or .arpa.gz).")],
) -> None:
    """Write an n-gram model as an ARPA file that KenLM and SRILM read."""
    from arlm.interop.arpa import write_arpa
    from arlm.usecases.checkpoints import load_model

    model, _ = load_model(model_path)
    write_arpa(model, arpa)
    err.print(f"wrote {arpa}")


@app.command("import-gpt2")
def import_gpt2(
    hf_folder: Annotated[Path, typer.Argument(
        help="A Hugging Face GPT-2 folder: config.json, model.safetensors, and tokenizer.json if any.")],
    out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="The arlm model folder to write.")],
) -> None:
    """Import GPT-2 weights (and the folder's tokenizer.json) as an arlm model folder of family gpt2,
    which `arlm eval`, `sample` and `generate` read like any checkpoint."""
    from arlm.usecases.checkpoints import import_gpt2 as import_folder

    model, tok = import_folder(hf_folder, out_dir)
    c = model.config
    err.print(f"imported GPT-2 ({c.n_layer} layers × {c.n_head} heads × {c.d_model}, vocabulary "
              f"{c.vocab_size:,}, context {c.block_size}) to {out_dir}"
              + ("" if tok is not None else "; no tokenizer.json: commands that need text will say so"))


@app.command("export-gpt2")
def export_gpt2(
    model_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT",
                                               help="A Transformer or GPT-2 model folder.")],
    hf_folder: Annotated[Path, typer.Argument(
        help="A new (or empty) folder for the HF files; GPT2LMHeadModel.from_pretrained reads it.")],
) -> None:
    """Write a Transformer (or imported GPT-2) as a Hugging Face GPT-2 folder."""
    from arlm.usecases.checkpoints import export_gpt2 as export_folder

    export_folder(model_path, hf_folder)
    err.print(f"wrote {hf_folder}")


# ------------------------------------------------------------------------------------ quickstart
@app.command("quickstart")
def quickstart(
    max_order: Annotated[int, typer.Option(help="Build orders 1..max_order.")] = 5,
    samples: Annotated[int, typer.Option(help="Samples to print from the best model.")] = 3,
    seed: Annotated[int, typer.Option(help="The same seed and threads print the same numbers.")] = 0,
    neural: Annotated[bool, typer.Option(
        help="Also train the char-level rungs: window MLP, LSTM, Transformer.")] = True,
    scale: Annotated[float, typer.Option(
        help="Multiply every neural rung's training steps (1: the calibrated default, about 10 minutes "
             "on 2 cores; 0.25 for a quick look).")] = 1.0,
    fast: Annotated[bool, typer.Option(
        help="Tiny models, a few steps, the first 200 test lines (a smoke test).")
    ] = False,
    threads: Annotated[int, typer.Option(
        min=0, max=4096,
        help="torch CPU threads (0: torch's default). 1 by default: these small models gain little "
             "from more, and lose badly when other processes share the cores.")] = 1,
) -> None:
    """The model ladder on Shakespeare: n-gram perplexities (orders × smoothings), then char-level
    n-grams, window MLP, LSTM and Transformer for fixed step counts, compared in bits per character.

    A fixed plan, one seed, printed; `arlm experiment ladder` compares the rungs under the protocol
    (settings chosen on validation, 3 seeds, intervals) and writes a report with plots."""
    from arlm.quickstart import run_quickstart

    if not scale > 0:
        raise ConfigError(f"--scale must be positive, got {scale}; e.g. 0.25 for a quick look")
    run_quickstart(max_order=max_order, num_samples=samples, seed=seed, console=out, neural=neural,
                   scale=scale, fast=fast, threads=threads)


# ----------------------------------------------------------------------------------------- serve
@app.command("serve")
def serve(
    model_paths: Annotated[list[Path], typer.Argument(
        metavar="CHECKPOINT...",
        help="Model folders or .arpa files, loaded once; named after their folder.")],
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 exposes the server to the "
                                           "network (then set --api-key).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port (1-65535).")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        envvar="ARLM_API_KEY", help="Require this key (`Authorization: Bearer KEY` or `X-API-Key`).")] = None,
    max_new_tokens_cap: Annotated[int, typer.Option(help="Largest max_new_tokens a request may ask.")] = 256,
    max_prompt_chars: Annotated[int, typer.Option(
        help="Longest prompt or scored text, in characters.")] = 4000,
    queue: Annotated[int, typer.Option(help="Requests in flight at once; more are answered 503.")] = 64,
    workers: Annotated[int, typer.Option(help="Threads running model computations.")] = 1,
    threads: Annotated[int, typer.Option(min=0, max=4096,
                                         help="torch CPU threads (0: torch's default).")] = 0,
    request_timeout: Annotated[float, typer.Option(
        help="Seconds a request may take; then its work is cancelled and it is answered 504 (a stream "
             "ends with an error event).")] = 60.0,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="Let web pages of this origin call the API (repeatable, e.g. https://example.org); "
             "none: CORS off.")] = None,
    batching: Annotated[bool, typer.Option(
        help="Decode concurrent generations of one model together, one forward per step for every "
             "stream (continuous batching); --no-batching: each stream alone, taking turns on the "
             "workers.")] = True,
    max_batch: Annotated[int, typer.Option(help="Streams in one model's batch at most; more wait to "
                                                "join.")] = 64,
) -> None:
    """Serve models over HTTP: a JSON API under /v1 (streaming with server-sent events) with
    OpenAI-compatible /v1/completions and /v1/models, its docs at /docs, Prometheus metrics at
    /metrics, and a playground at / that shows the next-token distribution, beam trees and attention.
    SIGTERM or Ctrl-C ends open streams with a final event and exits 0."""
    from arlm.serve import ServeSettings, create_app, load_models
    from arlm.serve.server import listen
    from arlm.serve.server import serve as run_server

    settings = ServeSettings(api_key=api_key, max_new_tokens_cap=max_new_tokens_cap,
                             max_prompt_chars=max_prompt_chars, queue=queue, workers=workers,
                             request_timeout=request_timeout, cors_origins=tuple(cors_origin or ()),
                             batching=batching, max_batch=max_batch)
    if threads:
        import torch

        torch.set_num_threads(threads)
    models = load_models(model_paths)
    app_ = create_app(models, settings)
    sock = listen(host, port)  # a bad address fails here, before "serving"
    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        err.print(f"warning: listening on {host} without --api-key: anyone who can reach it can use it")
    err.print(f"serving {', '.join(models)} on http://{host}:{port} (playground /, API /v1, docs /docs)")
    run_server(app_, host, port, sock=sock)


# ------------------------------------------------------------------------------------ experiments
def _experiment_help() -> str:
    from arlm.experiments import EXPERIMENTS

    return ("Run an experiment that measures one of the chapter's claims; write results.json, report.md "
            "and PNG plots into --out (default runs/experiments/NAME). Experiments: "
            + ", ".join(EXPERIMENTS) + " (`arlm experiment --list` describes them).")


@app.command("experiment", help=_experiment_help())
def experiment(
    name: Annotated[str | None, typer.Argument(help="The experiment to run (see --list).")] = None,
    quick: Annotated[bool, typer.Option(
        help="A small run that finishes in well under a minute (tests, a first look).")] = False,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", "-o", help="The experiment's folder (default runs/experiments/NAME); a folder holding "
                            "another experiment's results is refused.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Annotated[int, typer.Option(min=0, max=4096, help="torch CPU threads (the same seed and "
                                                                "threads give the same numbers).")] = 1,
    seed: Annotated[int, typer.Option(help="The same seed gives the same numbers.")] = 0,
    checkpoint: Annotated[Path | None, typer.Option(
        help="A trained model folder, for experiments that take one instead of training their own.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the experiments and exit.")] = False,
) -> None:
    from arlm.experiments import runner

    if list_ or name is None:
        table = Table("experiment", "what it measures")
        for exp_name, summary in runner.list_experiments():
            table.add_row(exp_name, summary)
        out.print(table)
        if name is None and not list_:
            err.print("run one with `arlm experiment NAME [--quick]`")
        return
    config = runner.experiment_config(name, quick=quick, out=out_dir, device=device, threads=threads,
                                      seed=seed, checkpoint=checkpoint)
    import shlex

    typed = shlex.join(["arlm", *sys.argv[1:]])  # the Reproduce line: the command as it was typed
    folder = runner.run_experiment(name, config, log=err.print, command=typed)
    out.print(f"report: {folder / runner.REPORT}")


@app.command("report")
def report(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A folder that `arlm experiment` wrote.")],
) -> None:
    """Re-render an experiment's report.md and plots from its results.json alone."""
    from arlm.experiments import runner

    path = runner.render_report(folder)
    out.print(f"report: {path}")


def _fail(message: str) -> None:
    """One line on stderr (never wrapped), exit code 2."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def _usage_error(e: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit code) of a command-line usage error, whatever copy of click raised it.

    typer ≥ 0.26 carries its own click (``typer._click``), so the classes are matched by name.
    """
    names = {c.__name__ for c in type(e).__mro__}
    if "ClickException" not in names:
        return None
    message = e.format_message()
    ctx = getattr(e, "ctx", None)
    if "UsageError" in names and ctx is not None:
        message = f"{message.rstrip('.')}; see `{ctx.command_path} --help`"
    return message, int(getattr(e, "exit_code", 2))


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """While a command runs, Ctrl-C (SIGINT) and SIGTERM raise :class:`Interrupted` where the program
    is (typer would turn a KeyboardInterrupt into a silent exit); the previous handlers come back after."""

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupted(e: BaseException, code: int) -> None:
    """One line: what stopped the command and what is on disk (the notes the library added), then exit."""
    what = "interrupted" if code == 130 else "terminated"
    saved = "; ".join(getattr(e, "__notes__", None) or ["nothing was written"])
    print(f"{what}: {saved}", file=sys.stderr, flush=True)
    sys.exit(code)


def main() -> None:
    """Entry point: run the app; user errors become one line on stderr and exit code 2; an interrupt,
    one line saying what was saved and exit code 130 (Ctrl-C) or 143 (SIGTERM)."""
    try:
        with _signals_interrupt():
            code = app(standalone_mode=False)
    except ArlmError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"{e.strerror or e}: {e.filename or ''}".rstrip(": "))
    except Interrupted as e:
        _interrupted(e, e.exit_code)
    except KeyboardInterrupt as e:
        _interrupted(e, 130)
    except Exception as e:
        names = {c.__name__ for c in type(e).__mro__}
        if "NoArgsIsHelpError" in names:  # a group called bare: its help, as typer would show it
            print(e.ctx.get_help())
            sys.exit(0)
        usage = _usage_error(e)
        if usage is not None:
            print(f"error: {' '.join(usage[0].split())}", file=sys.stderr)
            sys.exit(usage[1])
        if "Abort" in names:
            sys.exit(130)
        raise
    if code == 130:  # typer turned a KeyboardInterrupt (raised by code, not the signal) into Exit(130)
        _interrupted(KeyboardInterrupt(), 130)
    if isinstance(code, int) and not isinstance(code, bool) and code:  # typer's Exit(n), returned
        sys.exit(code)


if __name__ == "__main__":
    main()
