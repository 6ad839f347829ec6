"""Speculative decoding with a fixed draft length against the adaptive schedule, and plain greedy.

Three char Transformers are trained in the run on Shakespeare's train split, read as whole plays
(``unit="documents"``: running text, newlines included, so that 248 positions of prompt and continuation
are text of the kind the model was trained on), by the ``arlm train transformer`` use case in bf16
mixed precision: a weak one (2 × 128, a few hundred steps) and a trained one (4 × 128, the cpu-small
shape, 5,000 steps, as long as nanoGPT's baby recipe), whose weights stay in the CPU's cache; and a
large one (6 × 384, briefly trained), whose weights stream from memory at every step, so that a
verifying pass over several positions costs much more than a step (the schedule's streamed costs,
measured here too).
Each decodes greedily from two prompts: a passage of the test split, and a short passage repeated
(where a copying draft should agree). How far the n-gram draft can agree is measured too: the share of
plain greedy's new tokens that are the n-gram's own argmax after the same prefix. For each: plain
greedy through the lean step
(:class:`~arlm.decode.fast.FastDecoder`, what ``arlm generate`` runs), then speculative decoding with
a char n-gram draft (Kneser-Ney, counted on the same plays; :class:`~arlm.decode.speculative.NGramDraft`),
with a draft distilled from the target (:class:`~arlm.decode.distilled_draft.DistilledDraft`: the
target's own greedy choices after short contexts of the same plays) and with prompt lookup, each with a
fixed k (``adaptive=False``) and with the adaptive schedule (:class:`~arlm.decode.speculative.DraftSchedule`),
and an oracle draft that proposes plain greedy's own continuation (every proposal accepted: the
ceiling of the speed-up a round's cost allows).
Every speculative case is checked to give plain greedy's tokens. Batch 1, fp32, one torch thread;
the cases of a target alternate round-robin (``report.round_robin``), so all see the same load.

    python benchmarks/speculative_bench.py              # prints the table, updates docs/benchmarks.md
    python benchmarks/speculative_bench.py --no-write   # a trial run: prints only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from arlm.decode.distilled_draft import ROLLOUT_LENGTH, ROLLOUTS, DistilledDraft
from arlm.decode.fast import FastDecoder
from arlm.decode.search import generate
from arlm.decode.speculative import (
    ModelDraft,
    PromptLookupDraft,
    RoundCost,
    speculative_generate,
    streams_weights,
)
from arlm.models.ngram import NGramModel
from arlm.usecases.train import TrainRequest, train_neural
from report import OUTPUT_ONLY, command_line, ratio_interval, round_robin, table_argv, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Speculative decoding: fixed k against the adaptive schedule"
UNIT = "documents"  # whole plays: running text with its newlines, as the prompts and continuations are
TRAINING = ["block_size=256", "batch_tokens=1536", "micro_batch_size=6", "warmup_steps=20", "eval_interval=0",
            "show_progress=false", "dtype=bf16"]
SMALL = ["n_layer=2", "n_head=4", "d_model=128", "lr=3e-3"]  # 0.44M parameters: in any CPU's cache
TRAINED = ["n_layer=4", "n_head=4", "d_model=128", "lr=2e-3", "min_lr=2e-4"]  # cpu-small's 0.8M: in cache
LARGE = ["n_layer=6", "n_head=6", "d_model=384", "lr=1e-3"]  # 10.8M (43 MB): streamed from memory
TRAIN_THREADS = 2  # the targets train on 2 threads (decoding is timed on 1)
VERIFY_ROWS = (2, 3, 5, 9)  # positions of a verifying pass (1, 2, 4, 8 proposals), timed in verify_costs
DISTILL_ORDER = 10  # the distilled drafts' contexts: 1–9 characters (the most an int64 key holds for 74)
DISTILL_TOKENS = {"large": 500_000}  # the large target reads only this much of the training text (time)
DISTILL_ROLLOUTS = {"large": 32}  # and continues fewer passages (the default: 128 of 128 tokens)


def train(steps: int, shape: list[str], threads: int = TRAIN_THREADS) -> tuple[torch.nn.Module, object, dict]:
    """A char Transformer of ``shape`` trained for ``steps`` by the use case (seed 0), in eval mode."""
    t0 = time.perf_counter()
    request = TrainRequest("transformer", preset="tiny", tokenizer="char", unit=UNIT,
                           overrides=[*TRAINING, *shape, f"max_steps={steps}", "seed=0"], out_dir=None,
                           threads=threads)
    result = train_neural(request, log=lambda *_: None)
    torch.set_num_threads(1)  # decoding is timed on one thread
    model = result.trainer.model.eval()
    info = dict(steps=steps, seconds=time.perf_counter() - t0, val=result.summary.val_loss, threads=threads,
                params=model.num_parameters(), streams=streams_weights(model),
                shape="{n_layer} layers × {n_head} heads × {d_model}".format(**vars(model.config)))
    return model, result.trainer.tokenizer, info


def prompts(tok) -> dict[str, list[int]]:
    """[SOS] + the first 120 characters of the test split's first play, and one test line repeated
    (newline-separated) to 120."""
    from arlm.data.corpora import load_corpus

    corpus = load_corpus("shakespeare")
    lines = corpus.lines("test")
    text = str(corpus.documents("test")[0].text)[:120]
    line = next(x for x in lines if 24 <= len(x) <= 40)
    repeated = "\n".join([line] * (120 // (len(line) + 1) + 1))[:120]
    return {"test text": [tok.sos_id, *tok.encode(text)],
            "a repeated line": [tok.sos_id, *tok.encode(repeated)]}


def cases(target, ngram, distilled, prompt: list[int], new: int, k: int, stats: dict) -> dict[str, Callable]:
    """name -> a call that decodes ``new`` tokens from ``prompt`` greedily ([EOS] disabled) -> the ids."""
    fast = FastDecoder(target)
    ids = torch.tensor([prompt])

    def plain():
        return generate(fast, ids, temperature=0, max_new_tokens=new, eos_id=None).rows()[0]

    def spec(name, make_draft, adaptive, k=k):  # a fresh draft each run: no state kept from the last
        def run():
            r = speculative_generate(fast, make_draft(), ids, temperature=0, max_new_tokens=new, k=k,
                                     eos_id=None, adaptive=adaptive)
            stats[name] = r.stats
            return r.tokens.tolist()
        return run

    out = {"plain greedy": plain}
    out[f"n-gram step by step, fixed k = {k}"] = spec(f"n-gram step by step, fixed k = {k}",
                                                      lambda: ModelDraft(ngram), False)
    for draft_name, draft in (("n-gram", lambda: ngram), ("distilled", lambda: distilled),
                              ("prompt lookup", PromptLookupDraft)):
        for adaptive in (False, True):
            name = f"{draft_name}, {'adaptive' if adaptive else f'fixed k = {k}'}"
            out[name] = spec(name, draft, adaptive)
        if draft_name != "n-gram":  # a longer largest length, where the draft agrees
            name = f"{draft_name}, adaptive, k ≤ {2 * k}"
            out[name] = spec(name, draft, True, 2 * k)
    oracle = OracleDraft([*prompt, *plain()])  # the ceiling: every proposal accepted
    for length in (k, 2 * k):
        name = f"oracle draft (always right), fixed k = {length}"
        out[name] = spec(name, lambda: oracle, False, length)
    return out


class OracleDraft:
    """A draft that proposes plain greedy's own continuation (known in advance): every proposal is
    accepted, so its rows show what a round costs when nothing is rejected — the most any draft can
    give this target (not a decoding method: it needs the answer)."""

    def __init__(self, sequence: list[int]) -> None:
        self.sequence = sequence  # the prompt and plain greedy's new tokens

    def propose(self, context, k: int, sampler) -> tuple[list[int], None]:
        n = len(context)
        return self.sequence[n : n + k], None


STEP_CALLS = 64  # one-token steps per timed call in step_costs


def step_costs(target, ngram, prompt: list[int], repeats: int) -> dict[str, float]:
    """Seconds of one one-token step (greedy, the argmax fed back) of the target's lean step and of
    the n-gram draft's step, after ``prompt``, timed round-robin: what a proposal costs against what a
    target step costs (a draft slower than its target cannot pay at any acceptance)."""
    fast, ids = FastDecoder(target), torch.tensor([prompt])

    def stepper(model) -> Callable[[], None]:
        @torch.inference_mode()
        def run() -> None:
            state = model.start(1)
            logp, state = model.step(ids, state)
            for _ in range(STEP_CALLS):
                logp, state = model.step(logp.argmax(-1, keepdim=True), state)
        return run

    def greedy_proposals(calls: int) -> Callable[[], None]:
        return lambda: ngram.greedy_continuation(prompt, calls)  # NGramDraft's path, without its memo

    prefill = {"target prefill": stepper_prefill(fast, ids), "n-gram prefill": stepper_prefill(ngram, ids),
               "n-gram greedy prefill": greedy_proposals(1)}
    runs = round_robin({"target": stepper(fast), "n-gram": stepper(ngram),
                        "n-gram greedy": greedy_proposals(1 + STEP_CALLS), **prefill}, repeats)
    return {name: (runs[name].median - runs[f"{name} prefill"].median) / STEP_CALLS
            for name in ("target", "n-gram", "n-gram greedy")}


def verify_costs(target, prompt: list[int], repeats: int) -> dict[int, float]:
    """A verifying pass over t positions (``step_all``: the token and t - 1 proposals) after ``prompt``,
    over a one-token step at the same place, for t in VERIFY_ROWS: timed round-robin, 32 calls each,
    the cache cut back to the prompt before each call. What the schedule's RoundCost estimates."""
    fast, ids = FastDecoder(target), torch.tensor([prompt])
    with torch.inference_mode():
        state = fast.start(1)
        fast.step(ids, state)
    tokens = {t: torch.tensor([prompt[1 : t + 1]]) for t in (1, *VERIFY_ROWS)}  # (1, t) real ids

    def passes(t: int) -> Callable[[], None]:
        @torch.inference_mode()
        def run() -> None:
            for _ in range(32):
                state.length = len(prompt)
                fast.step(tokens[t], state) if t == 1 else fast.step_all(tokens[t], state)
        return run

    runs = round_robin({t: passes(t) for t in (1, *VERIFY_ROWS)}, repeats)
    return {t: runs[t].median / runs[1].median for t in VERIFY_ROWS}


def ngram_agreement(ngram, prompt: list[int], new: list[int]) -> float:
    """The share of ``new`` (plain greedy's tokens after ``prompt``) that are the n-gram's own argmax
    after the same prefix: how often a greedy n-gram proposal, made where every earlier one was right,
    would be accepted (the rounds' acceptance is lower: a proposal after a rejected one is never checked)."""
    seq = torch.tensor([[*prompt, *new]])
    argmax = ngram.log_probs(seq)[0, len(prompt) - 1 : -1].argmax(-1)  # (len(new),)
    return float((argmax == torch.tensor(new)).double().mean())


def draft_agreement(draft, prompt: list[int], new: list[int]) -> float:
    """The share of ``new`` that is the draft's first proposal after the same prefix (as
    :func:`ngram_agreement`, for a draft with no distribution)."""
    context = [*prompt, *new]
    return sum(draft.propose(context[: len(prompt) + i], 1)[0] == [y] for i, y in enumerate(new)) / len(new)


def distill(target, tokens, name: str) -> tuple[DistilledDraft, dict]:
    """The target's distilled draft (order DISTILL_ORDER), read on TRAIN_THREADS threads."""
    limit = DISTILL_TOKENS.get(name, len(tokens))
    torch.set_num_threads(TRAIN_THREADS)
    t0 = time.perf_counter()
    rollouts = DISTILL_ROLLOUTS.get(name, ROLLOUTS)
    draft = DistilledDraft.distill(target, tokens[:limit], order=DISTILL_ORDER, rollouts=rollouts)
    torch.set_num_threads(1)
    return draft, dict(tokens=min(limit, len(tokens)), rollouts=rollouts, seconds=time.perf_counter() - t0,
                       contexts=draft.size)


def stepper_prefill(model, ids: torch.Tensor) -> Callable[[], None]:
    """The prompt's step alone (subtracted from :func:`step_costs`'s runs)."""
    @torch.inference_mode()
    def run() -> None:
        model.step(ids, model.start(1))
    return run


def run(weak_steps: int, trained_steps: int, large_steps: int, order: int, new: int, k: int,
        repeats: int) -> dict:
    from arlm.data.cache import encode_corpus
    from arlm.data.corpora import load_corpus

    torch.set_num_threads(1)
    targets = {"weak": train(weak_steps, SMALL), "trained": train(trained_steps, TRAINED)}
    if large_steps:
        targets["large"] = train(large_steps, LARGE)
    tok = targets["weak"][1]
    t0 = time.perf_counter()
    train_split = encode_corpus(load_corpus("shakespeare"), "train", tok, UNIT)
    ngram = NGramModel.fit(train_split.tokens, order=order, vocab=tok.vocab, smoothing="kn",
                           discount_fallback=True)
    ngram_seconds = time.perf_counter() - t0
    distilled = {name: distill(target, train_split.tokens, name) for name, (target, _, _) in targets.items()}
    test_prompt = prompts(tok)["test text"]
    costs = step_costs(targets["trained"][0], ngram, test_prompt, repeats)
    verify = {name: verify_costs(target, test_prompt, repeats) for name, (target, _, _) in targets.items()}
    estimates = {name: RoundCost.of(FastDecoder(target), PromptLookupDraft(), one_pass=True)
                 for name, (target, _, _) in targets.items()}
    estimated = {name: {t: 1 + c.verify_first + c.verify_per_token * (t - 2) for t in VERIFY_ROWS}
                 for name, c in estimates.items()}
    rows = []
    agreement, distilled_agreement = {}, {}
    for target_name, (target, _, _) in targets.items():
        draft = distilled[target_name][0]
        for prompt_name, prompt in prompts(tok).items():
            stats: dict = {}
            runs = round_robin(cases(target, ngram, draft, prompt, new, k, stats), repeats)
            base = runs["plain greedy"]
            agreement[target_name, prompt_name] = ngram_agreement(ngram, prompt, base.last)
            distilled_agreement[target_name, prompt_name] = draft_agreement(draft, prompt, base.last)
            for name, r in runs.items():
                s = stats.get(name)
                ratio, low, high = ratio_interval(base, r)  # per round: plain's time / the case's
                rows.append(dict(target=target_name, prompt=prompt_name, case=name, seconds=r.median,
                                 ratio=ratio, low=low, high=high, same=r.last == base.last,
                                 acceptance=None if s is None else s.acceptance_rate,
                                 per_forward=None if s is None else s.tokens_per_target_forward,
                                 mean_k=None if s is None else s.mean_draft_length,
                                 off=None if s is None else s.rounds_off,
                                 rounds=None if s is None else s.rounds))
    return dict(rows=rows, targets={n: t[2] for n, t in targets.items()}, order=order,
                ngram_tokens=len(train_split.tokens), ngram_seconds=ngram_seconds, new=new, k=k,
                agreement=agreement, distilled_agreement=distilled_agreement,
                distilled={name: info for name, (_, info) in distilled.items()}, distill_order=DISTILL_ORDER,
                repeats=repeats, step_costs=costs, verify=verify, estimated=estimated,
                prompt_lens={n: len(p) - 1 for n, p in prompts(tok).items()})


def report(res: dict) -> list[str]:
    cost = res["step_costs"]

    def target_line(name: str, t: dict) -> str:
        where = "streamed from memory" if t["streams"] else "in the CPU's cache"
        return (f"{name} {t['shape']} ({t['params'] / 1e6:.2f}M parameters, weights {where}), "
                f"{t['steps']} steps ({t['seconds']:.0f} s on {t['threads']} thread(s), val loss "
                f"{t['val']:.3f} nats/char)")

    targets = "; ".join(target_line(n, t) for n, t in res["targets"].items())
    distilled_info = "; ".join(f"{name}: {d['tokens']:,} tokens read and {d['rollouts']} passages continued "
                               f"in {d['seconds']:.0f} s, {d['contexts']:,} contexts kept"
                               for name, d in res["distilled"].items())
    verify_rows = "; ".join(
        f"{name}: " + ", ".join(f"{t} positions {res['verify'][name][t]:.2f}× (estimated "
                                f"{res['estimated'][name][t]:.2f}×)" for t in VERIFY_ROWS)
        for name in res["targets"])
    lines = [
        f"Targets: char Transformers, block 256, trained in the run by `usecases.train.train_neural` on "
        f"Shakespeare's train split read as whole plays (`unit=documents`: running text with its newlines; "
        f"6 × 256 tokens a step, bf16 mixed precision, seed 0): {targets}. Drafts: a char "
        f"{res['order']}-gram (Kneser-Ney) counted on the same "
        f"{res['ngram_tokens']:,} training tokens ({res['ngram_seconds']:.0f} s), proposing through "
        f"`NGramDraft` (its greedy path; the row \"step by step\" proposes through `ModelDraft`'s "
        f"`step` calls, as before); a distilled draft (`DistilledDraft`, one per target): a table of the "
        f"target's own greedy choices after contexts of 1–{res['distill_order'] - 1} characters, read "
        f"teacher-forced from the training text and from its greedy continuations of evenly spaced "
        f"passages of it ({ROLLOUT_LENGTH} tokens each), on {TRAIN_THREADS} threads ({distilled_info}); "
        f"prompt lookup (last 1–3-gram); and an oracle that proposes plain "
        f"greedy's own continuation (always accepted: what a "
        f"round costs when nothing is rejected, the ceiling for any draft). Fixed: k = {res['k']} "
        f"proposals every round (`adaptive=False`); adaptive: the default schedule with k = {res['k']} as "
        f"the first and largest length (\"k ≤ {2 * res['k']}\": {2 * res['k']}). "
        f"Prompts: the first {res['prompt_lens']['test text']} characters of "
        f"the test split's first play, and one test line repeated to "
        f"{res['prompt_lens']['a repeated line']} characters; "
        f"{res['new']} new tokens, greedy, [EOS] disabled; batch 1, fp32, 1 torch thread. Medians of "
        f"{res['repeats']} runs after a warm-up, the cases of a target and prompt alternating round-robin. "
        "\"vs plain\": plain greedy's time / the case's in the same round (the lean step, as `arlm "
        "generate`), the median over the rounds and the 95% bootstrap interval of that median (this machine "
        "runs in fast and slow spells of minutes: a ratio within a round is steadier than a ratio of "
        "medians); \"mean k\": the mean draft length asked for; \"off\": rounds with speculation switched "
        "off, of all rounds.",
        "",
        f"One greedy one-token step (medians of {res['repeats']} runs of {STEP_CALLS} steps after the test "
        f"prompt, its prefill subtracted): the trained target's lean step {cost['target'] * 1e6:,.0f} µs, "
        f"the {res['order']}-gram's `step` {cost['n-gram'] * 1e6:,.0f} µs "
        f"({cost['n-gram'] / cost['target']:.2f}× a target step), a proposal of its greedy path "
        f"(`greedy_continuation`, what `NGramDraft` calls) {cost['n-gram greedy'] * 1e6:,.0f} µs "
        f"({cost['n-gram greedy'] / cost['target']:.2f}×). A proposal from "
        "a draft that costs more than a target step cannot pay at any acceptance: k proposals cost k draft "
        "steps and a verifying pass for at most k + 1 tokens.",
        "",
        "A verifying pass over t positions (the token and t − 1 proposals, `step_all` after the test "
        "prompt), over a one-token step at the same place (medians of "
        f"{res['repeats']} rounds of 32 calls), and the schedule's fixed estimate of it (`RoundCost`, 1 + "
        f"c(t − 1)): {verify_rows}.",
        "",
        "How far the n-gram can agree with each target: the share of plain greedy's new tokens that are the "
        "n-gram's own argmax after the same prefix (a round's acceptance is lower: a proposal after a "
        "rejected one is never checked): " + "; ".join(
            f"{t} / {p}: {a:.1%}" for (t, p), a in res["agreement"].items()) + ". The same for the distilled "
        "draft (its first proposal after the same prefix): " + "; ".join(
            f"{t} / {p}: {a:.1%}" for (t, p), a in res["distilled_agreement"].items()) + ".",
        "",
        "| target | prompt | case | tok/s | vs plain [95% interval] | same tokens | acceptance | tokens / "
        "target forward | mean k | off |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    def fmt(r: dict, key: str, spec: str) -> str:
        return "-" if r[key] is None else format(r[key], spec)

    for r in res["rows"]:
        off = "-" if r["off"] is None else f"{r['off']}/{r['rounds']}"
        lines.append(f"| {r['target']} | {r['prompt']} | {r['case']} | {res['new'] / r['seconds']:,.0f} | "
                     f"{r['ratio']:.2f}× [{r['low']:.2f}, {r['high']:.2f}] | "
                     f"{'yes' if r['same'] else 'NO'} | {fmt(r, 'acceptance', '.1%')} | "
                     f"{fmt(r, 'per_forward', '.2f')} | {fmt(r, 'mean_k', '.2f')} | {off} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weak-steps", type=int, default=300, help="training steps of the weak target")
    parser.add_argument("--trained-steps", type=int, default=5000,
                        help="training steps of the trained (4 × 128) target")
    parser.add_argument("--large-steps", type=int, default=200,
                        help="training steps of the large (6 × 384) target; 0 leaves it out")
    parser.add_argument("--order", type=int, default=7, help="the n-gram draft's order")
    parser.add_argument("--new", type=int, default=128, help="new tokens per run")
    parser.add_argument("--k", type=int, default=4, help="draft tokens per round (fixed; adaptive: the most)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    if args.large_steps < 0:
        print(f"error: --large-steps must be ≥ 0, got {args.large_steps}", file=sys.stderr)
        sys.exit(2)
    for name in ("weak_steps", "trained_steps", "new", "k", "repeats", "order"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}",
                  file=sys.stderr)
            sys.exit(2)
    load = os.getloadavg()
    res = run(args.weak_steps, args.trained_steps, args.large_steps, args.order, args.new, args.k,
              args.repeats)
    line = command_line("speculative_bench.py", ["platform", "python", "torch"],
                        argv=table_argv(parser, drop=OUTPUT_ONLY), load=[load, os.getloadavg()],
                        note="2 cores shared with other engineers' jobs: absolute tokens/s move with the "
                             "load, the ratios come from alternating runs")
    section = "\n".join([SECTION, "", line, "", *report(res)]) + "\n"
    print(section)
    if not args.no_write:
        write_section(args.out, SECTION, section)
        print(f"updated {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
