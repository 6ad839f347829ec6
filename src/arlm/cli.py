"""The `arlm` command line: a thin view of the Python API.

Every command parses its options, calls the library and prints. Bad input raises an ArlmError in the
library; :func:`main` prints it on one line and exits with code 2 (never a traceback).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from arlm.errors import ArlmError

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
UnitOpt = Annotated[str, typer.Option(
    help="lines: each line is a sentence [SOS] … [EOS]; documents: each document is one sequence.")]


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
    lines: Annotated[int, typer.Option(help="How many lines to print.")] = 10,
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
    order: Annotated[int, typer.Option("--order", "-n", help="N: the longest n-gram counted.")] = 5,
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
) -> None:
    """Count n-grams on a corpus split and save a smoothed n-gram model (and optionally ARPA)."""
    from arlm import pipeline
    from arlm.data.corpora import load_corpus
    from arlm.models.ngram import NGramModel

    corp = load_corpus(corpus, encoding)
    spec = pipeline.TokenizerSpec(tokenizer, lowercase, vocab_size, min_count)
    tok = pipeline.build_tokenizer(corp, spec, split)
    data = pipeline.encode(corp, split, tok, unit)
    err.print(f"{corp.name} {split}: {data.num_sequences:,} sequences, {len(data.tokens):,} tokens, "
              f"vocabulary {tok.vocab_size:,} ({tok.kind})")
    model = NGramModel.fit(data.tokens, order=order, vocab=tok.vocab, smoothing=smoothing, k=k,
                           discount_fallback=discount_fallback)
    pipeline.save_model(out_dir, model, tok)
    err.print(f"saved {order}-gram ({smoothing}) to {out_dir}")
    if arpa is not None:
        from arlm.interop.arpa import write_arpa

        write_arpa(model, arpa)
        err.print(f"wrote ARPA {arpa}")


# ------------------------------------------------------------------------------------------ eval
@app.command("eval")
def evaluate(
    model_path: Annotated[Path, typer.Argument(help="A model folder or an .arpa file.")],
    corpus: CorpusOpt = "shakespeare",
    split: SplitOpt = "test",
    unit: UnitOpt = "lines",
    encoding: EncodingOpt = "utf-8",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (for scripts).")] = False,
) -> None:
    """Likelihood of a corpus split: NLL, perplexity (with and without OOVs), bits per char."""
    from arlm import pipeline
    from arlm.data.corpora import load_corpus
    from arlm.evaluate.likelihood import evaluate_likelihood

    model, tok = pipeline.load_model(model_path)
    corp = load_corpus(corpus, encoding)
    data = pipeline.encode(corp, split, tok, unit)
    report = evaluate_likelihood(model, data.tokens, num_chars=data.num_chars)
    result = {"model": str(model_path), "corpus": corp.name, "split": split, "unit": unit,
              **report.to_dict()}
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"{model_path} on {corp.name} ({split})", show_header=False)
    table.add_row("sequences", f"{report.num_sequences:,}")
    table.add_row("scored tokens ([EOS] included)", f"{report.num_tokens:,}")
    table.add_row("OOV tokens ([UNK])", f"{report.num_oov:,}")
    table.add_row("NLL per token (nats)", _fmt(report.nll_per_token, 4))
    table.add_row("perplexity (corpus)", _fmt(report.perplexity))
    table.add_row("perplexity excluding OOVs", _fmt(report.perplexity_excluding_oov))
    table.add_row("mean per-sentence perplexity", _fmt(report.mean_sentence_ppl))
    table.add_row("bits per token", _fmt(report.bits_per_token, 4))
    table.add_row("bits per character", _fmt(report.bits_per_char, 4))
    out.print(table)


# ---------------------------------------------------------------------------------------- sample
@app.command("sample")
def sample(
    model_path: Annotated[Path, typer.Argument(help="A model folder or an .arpa file.")],
    num_samples: Annotated[int, typer.Option("--num-samples", "-n")] = 5,
    max_new_tokens: Annotated[int, typer.Option(help="Stop a sample after this many tokens.")] = 60,
    temperature: Annotated[float, typer.Option(help="> 0; below 1 sharpens, above 1 flattens.")] = 1.0,
    seed: Annotated[int, typer.Option(help="The same seed gives the same samples.")] = 0,
) -> None:
    """Ancestral sampling from [SOS] until [EOS] or the length limit."""
    from arlm import pipeline
    from arlm.decode.search import ancestral_sample

    model, tok = pipeline.load_model(model_path)
    samples = ancestral_sample(model, num_samples, max_new_tokens, temperature, seed)
    for row in samples.tokens.tolist():
        out.print(tok.decode(row), markup=False, highlight=False)


@app.command("export-arpa")
def export_arpa(
    model_path: Annotated[Path, typer.Argument(help="An n-gram model folder.")],
    arpa: Annotated[Path, typer.Argument(help="The ARPA file to write (.arpa or .arpa.gz).")],
) -> None:
    """Write an n-gram model as an ARPA file that KenLM and SRILM read."""
    from arlm import pipeline
    from arlm.interop.arpa import write_arpa

    model, _ = pipeline.load_model(model_path)
    write_arpa(model, arpa)
    err.print(f"wrote {arpa}")


# ------------------------------------------------------------------------------------ quickstart
@app.command("quickstart")
def quickstart(
    max_order: Annotated[int, typer.Option(help="Build orders 1..max_order.")] = 5,
    samples: Annotated[int, typer.Option(help="Samples to print from the best model.")] = 3,
    seed: int = 0,
) -> None:
    """The n-gram ladder on Shakespeare: orders 1–5 × each smoothing, a perplexity table, samples."""
    from arlm.quickstart import run_quickstart

    run_quickstart(max_order=max_order, num_samples=samples, seed=seed, console=out)


def _fail(message: str) -> None:
    """One line on stderr (never wrapped), exit code 2."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    """Entry point: run the app; user errors become one line on stderr and exit code 2."""
    try:
        app(standalone_mode=False)
    except ArlmError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"{e.strerror or e}: {e.filename or ''}".rstrip(": "))
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # click's usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
