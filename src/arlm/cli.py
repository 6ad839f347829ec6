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
ArpaSplitOpt = Annotated[str, typer.Option(
    help="For an .arpa model: split text on whitespace (KenLM's convention, for pre-tokenized text) "
         "or with arlm's word regex (for ARPA files that `arlm train ngram` wrote).")]
ArpaLowerOpt = Annotated[bool, typer.Option(help="For an .arpa model: lowercase the text first.")]
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
    from arlm.data.cache import encode_corpus
    from arlm.data.corpora import load_corpus
    from arlm.models.ngram import NGramModel

    corp = load_corpus(corpus, encoding)
    spec = pipeline.TokenizerSpec(tokenizer, lowercase, vocab_size, min_count)
    tok = pipeline.build_tokenizer(corp, spec, split)
    data = encode_corpus(corp, split, tok, unit)
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


def _train_neural(command: str, corpus: str, split: str, val_split: str, preset: str,
                  overrides: list[str] | None, tokenizer: str, vocab_size: int | None, unit: str,
                  encoding: str, out_dir: Path | None, resume: Path | None, threads: int) -> None:
    from arlm.train.presets import run_training

    out_dir = out_dir or Path(f"runs/{command}")
    _, summary = run_training(command, corpus=corpus, split=split, val_split=val_split, preset=preset,
                              overrides=overrides, tokenizer=tokenizer, vocab_size=vocab_size,
                              unit=unit, encoding=encoding, out_dir=out_dir, resume=resume,
                              threads=threads, log=err.print)
    err.print(f"step {summary.step}: train loss {_fmt(summary.train_loss, 4)}, val loss "
              f"{_fmt(summary.val_loss, 4)}, best {_fmt(summary.best_val_loss, 4)}"
              + (" (stopped early)" if summary.stopped_early else ""))
    err.print(f"checkpoints in {out_dir}/last and {out_dir}/best; try `arlm eval {out_dir}/best` "
              f"and `arlm sample {out_dir}/best`")


def _make_train_command(command: str, help_text: str) -> None:
    def train_neural(
        corpus: CorpusOpt = "shakespeare",
        split: SplitOpt = "train",
        val_split: Annotated[str, typer.Option(
            "--val-split", help="Validation split ('' for none).")] = "val",
        preset: Annotated[str, typer.Option(
            help="tiny, cpu-small, gpt2-small, or a .toml file with [train] and [model.FAMILY].")] = "tiny",
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
        threads: Annotated[int, typer.Option(
            help="torch CPU threads (0: torch's default; 1 is often fastest for tiny models).")] = 0,
    ) -> None:
        _train_neural(command, corpus, split, val_split, preset, overrides, tokenizer, vocab_size, unit,
                      encoding, out_dir, resume, threads)

    train_neural.__doc__ = help_text
    train_app.command(command)(train_neural)


for _cmd, _help in (
        ("window", "Train a fixed-window neural LM (Bengio et al. 2003)."),
        ("rnn", "Train a recurrent LM (cell from the preset or --set cell=lstm|gru|rnn), truncated BPTT."),
        ("lstm", "Train an LSTM LM (truncated BPTT)."),
        ("gru", "Train a GRU LM (truncated BPTT)."),
        ("transformer", "Train a decoder-only Transformer LM (GPT)."),
):
    _make_train_command(_cmd, _help)


# ------------------------------------------------------------------------------------------ eval
@app.command("eval")
def evaluate(
    model_path: Annotated[Path, typer.Argument(help="A model folder or an .arpa file.")],
    corpus: CorpusOpt = "shakespeare",
    split: SplitOpt = "test",
    unit: UnitOpt = "lines",
    encoding: EncodingOpt = "utf-8",
    arpa_split: ArpaSplitOpt = "whitespace",
    arpa_lowercase: ArpaLowerOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (for scripts).")] = False,
) -> None:
    """Likelihood of a corpus split: NLL, perplexity (with and without OOVs), bits per char."""
    from arlm import pipeline
    from arlm.data.cache import encode_corpus
    from arlm.data.corpora import load_corpus
    from arlm.evaluate.likelihood import evaluate_likelihood

    model, tok = pipeline.load_model(model_path, arpa_split, arpa_lowercase)
    corp = load_corpus(corpus, encoding)
    data = encode_corpus(corp, split, tok, unit)
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


# -------------------------------------------------------------------------------------- generate
STRATEGIES = ("sample", "greedy", "top-k", "top-p", "beam")


def _check_generate_options(strategy: str, temperature: float | None, top_k: int | None,
                            top_p: float | None, min_p: float, num_beams: int, max_new_tokens: int,
                            num_samples: int | None, stop: list[str]) -> None:
    """Bad settings -> ConfigError (one line, exit 2) before any model is loaded."""
    from arlm.errors import ConfigError

    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown --strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if temperature is not None and not (temperature >= 0 and math.isfinite(temperature)):
        raise ConfigError(f"--temperature must be a finite number ≥ 0, got {temperature}; "
                          "0 is greedy, 1 is the model's own distribution")
    if top_k is not None and top_k < 0:
        raise ConfigError(f"--top-k must be ≥ 0, got {top_k}; 0 disables it, e.g. 50 keeps 50 tokens")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"--top-p must be in (0, 1], got {top_p}; 1 disables it, e.g. 0.9")
    if not 0 <= min_p <= 1:
        raise ConfigError(f"--min-p must be in [0, 1], got {min_p}; 0 disables it, e.g. 0.05")
    if num_beams < 1:
        raise ConfigError(f"--num-beams must be ≥ 1, got {num_beams}; e.g. 4")
    if max_new_tokens <= 0:
        raise ConfigError(f"--max-new-tokens must be ≥ 1, got {max_new_tokens}; e.g. 60")
    if num_samples is not None and num_samples < 1:
        raise ConfigError(f"--num-samples must be ≥ 1, got {num_samples}")
    if strategy == "top-k" and top_k == 0:
        raise ConfigError("--strategy top-k needs --top-k ≥ 1 (e.g. 50); 0 would disable it")
    if strategy == "beam":
        if num_samples is not None and num_samples > num_beams:
            raise ConfigError(f"beam search returns at most --num-beams ({num_beams}) hypotheses, "
                              f"--num-samples is {num_samples}; lower it or raise --num-beams")
        if stop:
            raise ConfigError("--stop works with sampling and greedy strategies, not beam; "
                              "drop --stop or use --strategy greedy")
        if temperature not in (None, 1.0) or top_k or top_p not in (None, 1.0) or min_p:
            raise ConfigError("beam search does not sample: --temperature, --top-k, --top-p and "
                              "--min-p do not apply; drop them or pick a sampling --strategy")


def _unknown_pieces(tok, text: str) -> list[str]:
    """The pieces of ``text`` that the tokenizer maps to [UNK] (words, or characters)."""
    from arlm.streams import UNK_ID

    pieces = tok.split(text) if hasattr(tok, "split") else list(dict.fromkeys(text))
    return list(dict.fromkeys(p for p in pieces if UNK_ID in tok.encode(p)))


@app.command("generate")
def generate_text(
    model_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT",
                                               help="A model folder or an .arpa file.")],
    prompt: Annotated[str, typer.Option(
        help="Text to continue, encoded with the model's tokenizer after [SOS]; empty: from [SOS]. "
             "Pieces the tokenizer does not know become [UNK] (with a warning).")] = "",
    strategy: Annotated[str, typer.Option(
        help="sample (temperature and any truncation), greedy (argmax), top-k (default k 50), "
             "top-p (default p 0.9) or beam (prints the n-best with scores).")] = "sample",
    temperature: Annotated[float | None, typer.Option(
        help="≥ 0 (default 1); 0 is greedy. Sampling strategies only.")] = None,
    top_k: Annotated[int | None, typer.Option(help="Keep the k most probable tokens (0: off).")] = None,
    top_p: Annotated[float | None, typer.Option(
        help="Nucleus: keep the smallest set with mass ≥ p, p in (0, 1] (1: off).")] = None,
    min_p: Annotated[float, typer.Option(help="Keep w iff p(w) ≥ min_p · max p (0: off).")] = 0.0,
    repetition_penalty: Annotated[float, typer.Option(help="> 1 discourages repeats (1: off).")] = 1.0,
    no_repeat_ngram_size: Annotated[int, typer.Option(
        help="Never repeat an n-gram of this size (0: off).")] = 0,
    num_beams: Annotated[int, typer.Option(help="Beam width K (beam).")] = 4,
    length_penalty: Annotated[float, typer.Option(
        help="Beam score s/|y|^α: 0 raw log-prob, 1 per-token average.")] = 1.0,
    num_samples: Annotated[int | None, typer.Option(
        "--num-samples", "-n", help="Samples to draw (default 1); beam: n-best size (default K).")] = None,
    seed: Annotated[int, typer.Option(help="The same seed gives the same samples.")] = 0,
    max_new_tokens: Annotated[int, typer.Option(help="At most this many new tokens per sample.")] = 60,
    stop: Annotated[list[str] | None, typer.Option(
        help="Stop a sample once its text contains this string (repeatable; kept in the output).")] = None,
) -> None:
    """Continue a prompt: stream sampled or greedy text as it is generated, or beam search's n-best.

    Policies (docs/decoding.md): a prompt too long for the model's context is an error; pieces
    the tokenizer cannot encode become [UNK], with a warning.
    """
    from arlm import pipeline
    from arlm.decode.processors import build_processors
    from arlm.decode.search import beam_search, generate
    from arlm.errors import ConfigError
    from arlm.streams import SOS_ID, UNK_ID

    stop = list(stop or [])
    _check_generate_options(strategy, temperature, top_k, top_p, min_p, num_beams, max_new_tokens,
                            num_samples, stop)
    model, tok = pipeline.load_model(model_path)
    if hasattr(model, "eval"):
        model.eval()
    body = tok.encode(prompt)
    unknown = _unknown_pieces(tok, prompt) if UNK_ID in body else []
    if unknown:
        shown = ", ".join(repr(p) for p in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        print(f"warning: {len(unknown)} prompt piece(s) not in the model's vocabulary are read "
              f"as [UNK]: {shown}", file=sys.stderr, flush=True)
    ids = [SOS_ID, *body]
    limit = getattr(getattr(model, "config", None), "block_size", None)
    if limit is not None and len(ids) + max_new_tokens - 1 > limit:
        fixes = []
        if limit + 1 - max_new_tokens >= 1:
            fixes.append(f"shorten the prompt to ≤ {limit + 1 - max_new_tokens} tokens")
        if limit + 1 - len(ids) >= 1:
            fixes.append(f"lower --max-new-tokens to ≤ {limit + 1 - len(ids)}")
        raise ConfigError(
            f"the prompt is {len(ids)} tokens ([SOS] included) and --max-new-tokens asks for "
            f"{max_new_tokens} more, but the model's context (block_size) is {limit} tokens; "
            + (" or ".join(fixes) or f"the prompt's tokens plus --max-new-tokens must be ≤ {limit + 1}"))

    if strategy == "beam":
        procs = build_processors(1.0, 0, 1.0, 0.0, repetition_penalty, no_repeat_ngram_size)
        beams = beam_search(model, [ids], num_beams=num_beams, max_new_tokens=max_new_tokens,
                            length_penalty=length_penalty, num_return_sequences=num_samples,
                            processors=procs if len(procs) else None)
        for r in range(beams.tokens.shape[1]):
            n = int(beams.lengths[0, r])
            if n == 0:
                continue
            text = tok.decode(ids[1:] + beams.tokens[0, r, :n].tolist())
            print(f"{r + 1}. score {float(beams.scores[0, r]):.4f}  log p {float(beams.log_probs[0, r]):.3f}"
                  f"  {n} tokens ({beams.stop_reason[0][r]})  {text}", flush=True)
        return

    if strategy == "greedy":
        temperature = 0.0
    tau = 1.0 if temperature is None else temperature
    k = top_k if top_k is not None else (50 if strategy == "top-k" else 0)
    p = top_p if top_p is not None else (0.9 if strategy == "top-p" else 1.0)
    n_samples = num_samples or 1
    new: list[list[int]] = [[] for _ in range(n_samples)]
    shown_text = [""]

    def on_token(step) -> None:
        for row, token, finished in zip(step.rows.tolist(), step.tokens.tolist(),
                                        step.finished.tolist(), strict=True):
            new[row].append(token)
            if n_samples == 1:  # stream: print what the new token adds to the text
                text = tok.decode(ids[1:] + new[0])
                if text.startswith(shown_text[0]):
                    sys.stdout.write(text[len(shown_text[0]):])
                else:  # the tokenizer re-joined earlier text: start a fresh line
                    sys.stdout.write("\n" + text)
                shown_text[0] = text
                sys.stdout.flush()
            elif finished:  # several samples: print each as soon as it is complete
                print(f"[{row + 1}] {tok.decode(ids[1:] + new[row])}", flush=True)

    if n_samples == 1:
        shown_text[0] = tok.decode(ids[1:])
        sys.stdout.write(shown_text[0])
        sys.stdout.flush()
    result = generate(model, [ids], on_token=on_token, num_samples=n_samples,
                      max_new_tokens=max_new_tokens, temperature=tau, top_k=k, top_p=p, min_p=min_p,
                      repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                      stop_strings=stop, decode=tok.decode if stop else None, seed=seed)
    if n_samples == 1:
        sys.stdout.write("\n")
        sys.stdout.flush()
    lens = result.lengths.tolist()
    err.print(f"({', '.join(f'{n} tokens, {r}' for n, r in zip(lens, result.stop_reason, strict=True))})",
              markup=False, highlight=False)


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
    neural: Annotated[bool, typer.Option(
        help="Also train the char-level rungs: window MLP, LSTM, Transformer.")] = True,
    budget_minutes: Annotated[float, typer.Option(
        help="CPU time budget of the whole ladder in minutes; each neural model trains for its share "
             "by wall clock.")] = 10.0,
    fast: Annotated[bool, typer.Option(
        help="Tiny models and the first 200 test lines (a smoke test; use a small budget).")] = False,
    threads: Annotated[int, typer.Option(
        help="torch CPU threads (0: torch's default). 1 by default: these small models gain little "
             "from more, and lose badly when other processes share the cores.")] = 1,
) -> None:
    """The model ladder on Shakespeare: n-gram perplexities (orders × smoothings), then char-level
    n-gram, window MLP, LSTM and Transformer within a CPU budget, compared in bits per character."""
    from arlm.quickstart import run_quickstart

    run_quickstart(max_order=max_order, num_samples=samples, seed=seed, console=out, neural=neural,
                   budget_minutes=budget_minutes, fast=fast, threads=threads)


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
