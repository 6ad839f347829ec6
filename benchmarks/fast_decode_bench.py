"""Fast batch-1 greedy decoding of a char Transformer trained on Shakespeare (imported by decode_speed.py).

Everything is measured in one run on the same weights, cases alternating round-robin so that all
see the same machine load: arlm's plain greedy (the model's own modules), the lean step
(:class:`~arlm.decode.fast.FastDecoder`), speculative decoding with each kind of draft (prompt lookup,
a char 5-gram counted on the training split, a small Transformer trained on it), int8 weights, and
HF ``generate`` on the same weights (exported with ``interop.gpt2.to_hf``): greedy, prompt-lookup
decoding (``prompt_lookup_num_tokens``) and assisted generation with the small Transformer as the
assistant. Every exact case is checked to give the tokens of HF's greedy decoding.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from arlm.decode.fast import FastDecoder
from arlm.decode.search import generate
from arlm.decode.speculative import PromptLookupDraft, speculative_generate
from arlm.errors import ConfigError, MismatchError
from arlm.models.ngram import NGramModel
from arlm.models.quantize import quantize_int8
from arlm.models.transformer import TransformerLM
from arlm.usecases.checkpoints import load_model
from arlm.usecases.train import TrainRequest, train_neural
from report import round_robin

COMMON = ["block_size=256", "batch_tokens=3072", "micro_batch_size=12", "warmup_steps=20", "eval_interval=0",
          "show_progress=false"]
TARGET = [*COMMON, "n_layer=4", "n_head=4", "d_model=256", "lr=3e-3"]
DRAFT = [*COMMON, "n_layer=1", "n_head=2", "d_model=64", "lr=5e-3"]


def train(overrides: list[str], steps: int, seed: int = 0):
    """A Transformer trained by `arlm train transformer`'s use case on Shakespeare's train split (chars),
    seeded."""
    t0 = time.perf_counter()
    request = TrainRequest("transformer", preset="tiny", tokenizer="char",
                           overrides=[*overrides, f"max_steps={steps}", f"seed={seed}"], out_dir=None,
                           threads=1)
    result = train_neural(request, log=lambda *_: None)
    return result.trainer.model.eval(), result.trainer.tokenizer, result.summary, time.perf_counter() - t0


def load_target(path: Path):
    """A trained arlm Transformer checkpoint (a model folder) as the target, in eval mode, with its
    tokenizer; anything else is a one-line error."""
    model, tok = load_model(path)
    if not isinstance(model, TransformerLM) or not model.gpt2_layout or not model.config.causal:
        raise ConfigError(f"{path} holds a {type(model).__name__}, not a causal Transformer; pass a "
                          "checkpoint of `arlm train transformer`")
    return model.float().eval(), tok


def run(new: int, repeats: int, target_steps: int, draft_steps: int, k: int = 4,
        target_path: Path | None = None, threads: int = 1) -> dict:
    """Every case on one target (trained here for ``target_steps``, or loaded from ``target_path``),
    timed with ``threads`` torch threads for every system (training runs on 1)."""
    from arlm.data.cache import encode_corpus
    from arlm.data.corpora import load_corpus
    from arlm.interop.gpt2 import to_hf

    torch.set_num_threads(1)
    if target_path is None:
        target, tok, t_summary, t_secs = train(TARGET, target_steps)
        t_info = dict(steps=target_steps, seconds=t_secs, val=t_summary.val_loss, path=None)
    else:
        target, tok = load_target(target_path)
        t_info = dict(path=str(target_path))
    small, draft_tok, d_summary, d_secs = train(DRAFT, draft_steps, seed=1)
    if list(tok.vocab) != list(draft_tok.vocab):
        raise MismatchError(f"the tokenizer of {target_path} is not the drafts' (Shakespeare's chars, "
                            f"{draft_tok.vocab_size} tokens); train the target with the char tokenizer on "
                            "shakespeare")
    corpus = load_corpus("shakespeare")
    train_split = encode_corpus(corpus, "train", tok)
    ngram = NGramModel.fit(train_split.tokens, order=5, vocab=tok.vocab, smoothing="kn",
                           discount_fallback=True)
    test_lines = corpus.lines("test")
    prompt_text = "\n".join(test_lines[:6])[:120]  # a passage of the test split, ~120 chars
    ids = [tok.sos_id, *tok.encode(prompt_text)]
    prompt = torch.tensor([ids])
    int8 = quantize_int8(target)
    torch.set_num_threads(threads)  # after training (train_neural sets 1): the timed cases' threads

    hf = to_hf(target, eos_token_id=tok.eos_id, bos_token_id=tok.sos_id).eval()
    hf_small = to_hf(small, eos_token_id=tok.eos_id, bos_token_id=tok.sos_id).eval()
    for m in (hf, hf_small):
        m.generation_config.pad_token_id = tok.pad_id
        m.generation_config.eos_token_id = None
    hf_kw = dict(max_new_tokens=new, min_new_tokens=0, do_sample=False, pad_token_id=tok.pad_id,
                 eos_token_id=None, attention_mask=torch.ones_like(prompt))

    def hf_gen(**kw):
        with torch.inference_mode():
            return hf.generate(prompt, **hf_kw, **kw)[0, prompt.shape[1]:].tolist()

    def greedy(model):
        return lambda: generate(model, prompt, temperature=0, max_new_tokens=new, eos_id=None).rows()[0]

    stats: dict[str, object] = {}

    def spec(name, tgt, draft):
        def f():
            r = speculative_generate(tgt, draft, prompt, temperature=0, max_new_tokens=new, k=k, eos_id=None,
                                     adaptive=False)  # k every round (speculative_bench.py: the schedule)
            stats[name] = r.stats
            return r.tokens.tolist()
        return f

    fast, fast_small, fast_int8 = FastDecoder(target), FastDecoder(small), FastDecoder(int8)
    pl, ng, tf = ("arlm speculative, prompt lookup", "arlm speculative, char 5-gram draft",
                  "arlm speculative, 1×64 Transformer draft")
    cases: dict[str, tuple[Callable, bool]] = {  # name -> (run, expected to equal HF greedy)
        "HF greedy": (lambda: hf_gen(), True),
        "HF prompt lookup": (lambda: hf_gen(prompt_lookup_num_tokens=k), True),
        "HF assisted (1×64 Transformer)": (lambda: hf_gen(assistant_model=hf_small), True),
        "arlm greedy (modules)": (greedy(target), True),
        "arlm greedy, lean step": (greedy(fast), True),
        pl: (spec(pl, fast, PromptLookupDraft()), True),
        ng: (spec(ng, fast, ngram), True),
        tf: (spec(tf, fast, fast_small), True),
        "arlm int8, lean step": (greedy(fast_int8), False),
        "arlm int8, speculative char 5-gram": (spec("arlm int8, speculative char 5-gram", fast_int8, ngram),
                                               False),
    }
    runs = round_robin({name: f for name, (f, _) in cases.items()}, repeats)
    outs = {name: r.last for name, r in runs.items()}  # the outputs to compare (the last run's)
    ref = outs["HF greedy"]
    rows = []
    for name, (_, exact) in cases.items():
        s = stats.get(name)
        rows.append(dict(case=name, seconds=runs[name].median, same=outs[name] == ref,
                         exact=exact, acceptance=None if s is None else s.acceptance_rate,
                         per_forward=None if s is None else s.tokens_per_target_forward))
    # perplexity of the test split's first lines, fp32 vs int8 (what int8 costs)
    from arlm.evaluate.likelihood import evaluate_likelihood

    toks = np.array([i for line in tok.encode_lines(test_lines[:300])
                     for i in (tok.sos_id, *line.tolist(), tok.eos_id)])
    ppl = {name: evaluate_likelihood(m, toks, sos_id=tok.sos_id, eos_id=tok.eos_id,
                                     unk_id=tok.unk_id).perplexity
           for name, m in (("fp32", target), ("int8", int8))}
    return dict(rows=rows, new=new, repeats=repeats, k=k, threads=threads, prompt_len=len(ids),
                text=prompt_text,
                target=dict(t_info, params=target.num_parameters(), n_layer=target.config.n_layer,
                            n_head=target.config.n_head, d_model=target.config.d_model,
                            block=target.config.block_size),
                draft=dict(steps=draft_steps, seconds=d_secs, val=d_summary.val_loss,
                           params=small.num_parameters()),
                ngram_tokens=len(train_split.tokens), ppl=ppl, ppl_lines=300,
                sample=tok.decode(outs["HF greedy"]))


def report(res: dict) -> list[str]:
    base = next(r for r in res["rows"] if r["case"] == "HF greedy")["seconds"]
    ours = next(r for r in res["rows"] if r["case"] == "arlm greedy (modules)")["seconds"]
    t, d = res["target"], res["draft"]
    shape = (f"a char Transformer, {t['n_layer']} layers × {t['n_head']} heads × {t['d_model']}, block "
             f"{t['block']} ({t['params'] / 1e6:.2f}M parameters)")
    if t["path"] is None:
        origin = (f"trained in the run with `usecases.train.train_neural` on Shakespeare's train split: "
                  f"{t['steps']} steps of 12 × 256 tokens, seed 0, {t['seconds']:.0f} s, val loss "
                  f"{t['val']:.3f} nats/char (6 × 384 trains too slowly on this shared 2-core machine to be "
                  f"part of the benchmark; `--target CHECKPOINT` takes one trained elsewhere)")
    else:
        origin = f"loaded from the checkpoint `{t['path']}` (`--target`)"
    lines = [
        f"Target: {shape}, {origin}. "
        f"Drafts: a 1 × 64 Transformer "
        f"({d['params'] / 1e3:.0f}k parameters, {d['steps']} steps, {d['seconds']:.0f} s, val loss "
        f"{d['val']:.3f}), a char 5-gram (Kneser-Ney) counted on the same {res['ngram_tokens']:,} training "
        f"tokens, and prompt lookup (last 1–3-gram, most recent earlier occurrence). k = {res['k']} draft "
        f"tokens per round. Prompt: the first {res['prompt_len'] - 1} characters of the test split; "
        f"{res['new']} new tokens, greedy, [EOS] disabled; batch 1, fp32, {res['threads']} torch "
        f"thread(s) for every system. Medians of "
        f"{res['repeats']} runs after a warm-up, all cases alternating round-robin (same load).",
        "",
        "| case | tok/s | time | vs HF greedy | vs arlm greedy (modules) | same tokens as HF greedy "
        "| acceptance | tokens / target forward |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        acc = "-" if r["acceptance"] is None else f"{r['acceptance']:.1%}"
        pf = "-" if r["per_forward"] is None else f"{r['per_forward']:.2f}"
        same = ("yes" if r["same"] else "NO") if r["exact"] else ("yes" if r["same"] else "no (int8 weights)")
        lines.append(f"| {r['case']} | {res['new'] / r['seconds']:,.0f} | {r['seconds']:.3f} s | "
                     f"{base / r['seconds']:.2f}× | {ours / r['seconds']:.2f}× | {same} | {acc} | {pf} |")
    p = res["ppl"]
    lines += ["", f"int8 (dynamic quantization of every Linear, per-channel): perplexity of the first "
              f"{res['ppl_lines']} test lines {p['fp32']:.3f} (fp32) → {p['int8']:.3f} (int8), "
              f"{(p['int8'] / p['fp32'] - 1) * 100:+.2f}%.", "",
              f"Greedy continuation (HF and every exact arlm case): `{res['sample'][:100]!r}…`", "",
              ("Caveat: a target trained for a few hundred steps on this machine is weak, and greedy "
               "decoding of a weak char model falls into repetition; repeated text is where drafts (prompt "
               "lookup above all) are accepted most, so the speculative rows are an optimistic case. "
               if t["path"] is None else
               "The speculative rows depend on how often the drafts agree with this target on this text. ")
              + "The lean-step and int8 rows do not depend on the text."]
    return lines
