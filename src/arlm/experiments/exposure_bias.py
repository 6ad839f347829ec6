"""Exposure bias measured against a known truth (F11): an oracle LSTM, students trained with teacher
forcing and with scheduled sampling.

**The chapter's claim.** Teacher forcing trains p_θ(x_t | x_<t) only on *true* prefixes x_<t ~ p_data,
but generation feeds the model its *own* prefixes x_<t ~ p_θ. Errors then compound: a prefix the
model would not have seen in training leads to a worse next-token distribution, which leads to a
stranger prefix (exposure bias). Scheduled sampling (Bengio et al. 2015) trains on a mix: each input
token is the true one with probability ε_i and a token sampled from the model otherwise, with ε_i
decaying over training steps i (linear, exponential or inverse-sigmoid; :mod:`arlm.train.schedules`).

**A known truth.** Real text has no known p_data, so (as SeqGAN and Texygen do) a fixed *oracle*
stands in for it: an LSTM with seeded random weights, all drawn from N(0, 1) (which makes its gates
saturate and its samples structured: an entropy of about 1.2 nats per token over 16 tokens, against
2.1 for the unigram distribution), the output layer scaled by ``HEAD_SCALE``. Sequences have a fixed
length L; the distribution at every position is the model's next-token distribution restricted to
the real tokens (ids ≥ 4) and renormalised, for the oracle and the students alike (sampling bans
[EOS] and [UNK], which is the same thing). The oracle samples the training corpus (framed
``[SOS] x_1 … x_L [EOS]``) and a held-out test set.

Students of the same family and size (so the oracle is representable) are trained by the
:class:`~arlm.train.trainer.Trainer` from the same initial weights, data order and number of steps,
with teacher forcing or with scheduled sampling, each schedule set to reach the same ε at the last
step. (The Trainer reads the corpus as one stream with truncated BPTT, so in training a student's state
runs on across the ``[EOS] [SOS]`` boundary; every measurement starts from the zero state at [SOS],
as the oracle generates.) For each student:

* NLL_test = -(1/NL) Σ log p_θ(x) over held-out oracle samples x (the oracle's own value, its
  entropy rate, is the floor);
* NLL_oracle = -(1/NL) Σ log p_oracle(y) over student samples y (SeqGAN / Texygen); the oracle
  entropy rate is the value for a perfect student, and a lower value means less diverse samples;
* per-position divergence at t = 1..L, with prefixes from the oracle (D) or from the student (M):

      KL_P(t) = E_{x_<t ~ P} [ KL( p_oracle(· | x_<t) ‖ p_θ(· | x_<t) ) ],  P ∈ {oracle, student}

  KL_oracle-prefix is the error teacher forcing trains on; KL_own-prefix is the error met in
  generation. Their ratio EB-M(t) = KL_own(t) / KL_oracle(t) is He et al. (2021)'s measure of
  exposure bias (with KL as the divergence): 1 means no exposure bias; t = 1 has only [SOS] as
  its prefix, so EB-M(1) = 1 exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from arlm.decode.config import DecodingConfig
from arlm.decode.search import generate
from arlm.experiments import ExperimentConfig
from arlm.experiments.plots import new_figure, save_png
from arlm.models.rnn import RNNLM, RNNConfig
from arlm.progress import progress
from arlm.streams import EOS_ID, SOS_ID, SPECIAL_TOKENS, UNK_ID
from arlm.train.schedules import teacher_forcing_ratio

NAME = "exposure-bias"
SUMMARY = "teacher forcing vs scheduled sampling against a known oracle LSTM: NLL and per-position KL (F11)"

NUM_SPECIAL = len(SPECIAL_TOKENS)  # ids 0..3; the real tokens follow
HEAD_SCALE = 1.0  # the oracle's output layer × this: larger is sharper (entropy ≈ 1.2 nats at 1.0)
FINAL_RATIO = 0.25  # ε at the last training step, for every scheduled-sampling schedule


@dataclass(frozen=True)
class Setup:
    """The sizes of one run (full or quick)."""

    vocab: int = 16  # real tokens (ids 4 … 4 + vocab - 1)
    length: int = 20  # L, tokens per sequence
    d_embed: int = 16
    d_hidden: int = 32
    n_train: int = 10_000  # oracle sequences to train on
    n_test: int = 2_000  # held-out oracle sequences
    n_eval: int = 2_000  # student (and oracle) samples for NLL_oracle and the own-prefix KL
    steps: int = 6_000  # optimizer steps per student
    rows: int = 32  # sequences' worth of rows per batch
    lr: float = 1e-2


FULL = Setup()
QUICK = Setup(vocab=8, length=10, d_embed=8, d_hidden=16, n_train=400, n_test=100, n_eval=100, steps=30)


# ---------------------------------------------------------------------------------------------
# The oracle and the distributions over real tokens
# ---------------------------------------------------------------------------------------------


def build_oracle(setup: Setup, seed: int) -> RNNLM:
    """The fixed oracle: an LSTM whose every weight is drawn from N(0, 1) with ``seed`` (the output
    layer then scaled by HEAD_SCALE)."""
    model = RNNLM(RNNConfig(vocab_size=NUM_SPECIAL + setup.vocab, cell="lstm", d_embed=setup.d_embed,
                            d_hidden=setup.d_hidden))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        model.lm_head.weight.mul_(HEAD_SCALE)
        model.lm_head.bias.mul_(HEAD_SCALE)
    return model.eval()


def build_student(setup: Setup, seed: int) -> RNNLM:
    """A student of the oracle's family and size, PyTorch's default initialisation drawn from ``seed``."""
    torch.manual_seed(seed)
    return RNNLM(RNNConfig(vocab_size=NUM_SPECIAL + setup.vocab, cell="lstm", d_embed=setup.d_embed,
                           d_hidden=setup.d_hidden))


@torch.inference_mode()
def real_log_probs(model: RNNLM, seqs: Tensor) -> Tensor:
    """seqs (N, L) of real ids -> (N, L, V_real) float64: log p(x_t = 4 + v | x_<t) for t = 1..L, the
    model's distribution restricted to the real tokens and renormalised (the prefix starts at [SOS])."""
    inputs = torch.cat([torch.full_like(seqs[:, :1], SOS_ID), seqs[:, :-1]], 1)  # (N, L)
    lp = model.log_probs(inputs.to(model.device)).double().cpu()[..., NUM_SPECIAL:]  # (N, L, V_real)
    return lp - lp.logsumexp(-1, keepdim=True)


def sample(model: RNNLM, n: int, length: int, seed: int) -> Tensor:
    """``n`` sequences of ``length`` real tokens drawn from the model (N, L) int64 ([EOS], [UNK] banned)."""
    model.eval()
    decoding = DecodingConfig(strategy="sample", max_new_tokens=length, num_samples=n,
                              banned=(EOS_ID, UNK_ID), seed=seed)
    return generate(model, None, decoding, eos_id=None).tokens.cpu()


def nll_per_token(model: RNNLM, seqs: Tensor) -> float:
    """-(1/NL) Σ_i Σ_t log p(x_it | x_i<t) under the real-token distribution (nats per token)."""
    lp = real_log_probs(model, seqs)  # (N, L, V_real)
    return float(-lp.gather(-1, (seqs - NUM_SPECIAL)[..., None]).mean())


def per_position_kl(oracle: RNNLM, student: RNNLM, prefixes: Tensor) -> Tensor:
    """KL(p_oracle(· | x_<t) ‖ p_student(· | x_<t)) averaged over the rows of ``prefixes`` (N, L), for
    t = 1..L -> (L,) float64 (nats). Zero for a student equal to the oracle."""
    lo, ls = real_log_probs(oracle, prefixes), real_log_probs(student, prefixes)  # (N, L, V_real)
    return (lo.exp() * (lo - ls)).sum(-1).mean(0)  # (L,)


def stream_of(seqs: Tensor) -> np.ndarray:
    """Sequences (N, L) -> the flat training stream [SOS] x_1 … x_L [EOS] [SOS] …"""
    n = seqs.shape[0]
    framed = torch.cat([torch.full((n, 1), SOS_ID), seqs, torch.full((n, 1), EOS_ID)], 1)  # (N, L+2)
    return framed.reshape(-1).numpy().astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Training schemes
# ---------------------------------------------------------------------------------------------


def inverse_sigmoid_k(steps: int, final: float) -> float:
    """k ≥ 1 with k / (k + exp(steps / k)) = final (bisection; the left side grows with k)."""
    lo, hi = 1.0, float(max(2, steps))
    if 1.0 / (1.0 + math.exp(min(700.0, steps))) >= final:
        return 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        value = mid / (mid + math.exp(min(700.0, steps / mid)))
        lo, hi = (mid, hi) if value < final else (lo, mid)
    return (lo + hi) / 2


def schemes(steps: int) -> dict[str, dict[str, Any]]:
    """Teacher forcing and the three scheduled-sampling decays, each reaching ε = FINAL_RATIO at the
    last step (TrainConfig fields)."""
    last = max(1, steps - 1)
    return {
        "teacher forcing": {"scheduled_sampling": None},
        "SS linear": {"scheduled_sampling": "linear", "ss_k": 1.0, "ss_c": (1.0 - FINAL_RATIO) / last},
        "SS exponential": {"scheduled_sampling": "exponential", "ss_k": FINAL_RATIO ** (1.0 / last)},
        "SS inverse sigmoid": {"scheduled_sampling": "inverse_sigmoid",
                               "ss_k": inverse_sigmoid_k(last, FINAL_RATIO)},
    }


def ratio_curve(scheme: dict[str, Any], steps: int, points: int = 50) -> list[list[float]]:
    """[(step, ε)] along training, for the schedule plot."""
    at = np.unique(np.linspace(0, steps - 1, points).round().astype(int)).tolist()
    if scheme["scheduled_sampling"] is None:
        return [[i, 1.0] for i in at]
    return [[i, teacher_forcing_ratio(i, scheme["scheduled_sampling"], scheme.get("ss_k", 1.0),
                                      scheme.get("ss_c", 0.0))] for i in at]


def train_student(setup: Setup, scheme: dict[str, Any], stream: np.ndarray, config: ExperimentConfig
                  ) -> tuple[RNNLM, dict[str, Any]]:
    """One student, trained by the Trainer for ``setup.steps`` steps with ``scheme``."""
    from arlm.train.trainer import TrainConfig, Trainer

    block = setup.length + 2  # one sequence's worth of tokens per row and window
    train_config = TrainConfig(batch_tokens=setup.rows * block, micro_batch_size=setup.rows, block_size=block,
                               lr=setup.lr, min_lr=setup.lr / 10, warmup_steps=min(50, setup.steps // 10),
                               max_steps=setup.steps, weight_decay=0.0, eval_interval=0,
                               log_interval=max(1, setup.steps // 10), seed=config.seed, device=config.device,
                               show_progress=False, **scheme)
    student = build_student(setup, config.seed + 1)
    started = time.perf_counter()
    summary = Trainer(student, train_config, stream).train()
    return student.eval(), {"train_loss": summary.train_loss,
                            "train_seconds": round(time.perf_counter() - started, 1),
                            "final_teacher_forcing": train_config.teacher_forcing(setup.steps - 1)}


def measure(oracle: RNNLM, model: RNNLM, test: Tensor, setup: Setup, seed: int) -> dict[str, Any]:
    """NLL_test, NLL_oracle and the per-position KL after oracle and after own prefixes."""
    own = sample(model, setup.n_eval, setup.length, seed)
    kl_oracle = per_position_kl(oracle, model, test)
    kl_own = per_position_kl(oracle, model, own)
    eb_m = (kl_own / kl_oracle.clamp_min(1e-12)).tolist()
    return {"nll_test": nll_per_token(model, test), "nll_oracle": nll_per_token(oracle, own),
            "kl_oracle_prefix": kl_oracle.tolist(), "kl_own_prefix": kl_own.tolist(),
            "mean_kl_oracle_prefix": float(kl_oracle.mean()), "mean_kl_own_prefix": float(kl_own.mean()),
            "eb_m": eb_m, "eb_m_mean": float(np.mean(eb_m[1:])) if len(eb_m) > 1 else 1.0,
            "eb_m_last": eb_m[-1]}


def run(config: ExperimentConfig) -> dict:
    """Sample the oracle's corpus, train a student per scheme, measure each against the oracle."""
    if config.threads:
        torch.set_num_threads(config.threads)
    setup = QUICK if config.quick else FULL
    plan = schemes(setup.steps)
    oracle = build_oracle(setup, config.seed).to(config.device)
    train = sample(oracle, setup.n_train, setup.length, config.seed)  # (N, L)
    test = sample(oracle, setup.n_test, setup.length, config.seed + 1)
    stream = stream_of(train)
    entropy = nll_per_token(oracle, test)
    results: dict[str, Any] = {}
    with progress(config.show_progress) as bar:
        task = bar.add_task("exposure bias", total=len(plan))
        for name, scheme in plan.items():
            bar.update(task, description=f"training the {name} student ({setup.steps:,} steps)")
            student, info = train_student(setup, scheme, stream, config)
            results[name] = {**{k: v for k, v in scheme.items() if v is not None}, **info,
                             **measure(oracle, student, test, setup, config.seed + 2),
                             "teacher_forcing_curve": ratio_curve(scheme, setup.steps)}
            bar.advance(task)
    reference = measure(oracle, oracle, test, setup, config.seed + 2)
    return {
        "claim": "teacher forcing trains on true prefixes only, so errors compound on the model's own "
                 "prefixes (exposure bias); scheduled sampling is meant to reduce the gap",
        "setup": {**asdict(setup), "head_scale": HEAD_SCALE, "final_teacher_forcing": FINAL_RATIO,
                  "family": "rnn (lstm)", "oracle_parameters": oracle.num_parameters(),
                  "train_tokens": len(stream)},
        "oracle": {"entropy_rate": entropy, "nll_test": reference["nll_test"],
                   "nll_oracle": reference["nll_oracle"]},
        "schemes": results,
    }


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def plot_kl(results: dict, path: Path) -> Path:
    """Per-position KL after oracle prefixes (solid) and own prefixes (dashed), and EB-M(t)."""
    fig = new_figure(11.0, 4.4)
    left, right = fig.subplots(1, 2)
    for i, (name, r) in enumerate(results["schemes"].items()):
        t = np.arange(1, len(r["kl_oracle_prefix"]) + 1)
        left.plot(t, r["kl_oracle_prefix"], color=f"C{i}", marker="o", ms=3, label=f"{name}, oracle prefix")
        left.plot(t, r["kl_own_prefix"], color=f"C{i}", ls="--", marker="x", ms=3,
                  label=f"{name}, own prefix")
        right.plot(t, r["eb_m"], color=f"C{i}", marker="o", ms=3, label=name)
    right.axhline(1.0, color="black", lw=0.8, ls=":")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("position t")
    left.set_ylabel("KL(oracle ‖ student) at t, nats")
    left.set_title("next-token divergence after oracle vs own prefixes", fontsize=9)
    left.legend(fontsize=6)
    right.set_xlabel("position t")
    right.set_ylabel("EB-M(t) = KL own / KL oracle prefixes")
    right.set_title("exposure bias (1 = none)", fontsize=9)
    right.legend(fontsize=7)
    return save_png(fig, path)


def plot_schedules(results: dict, path: Path) -> Path:
    """The teacher-forcing ratio ε over training steps for each scheme."""
    fig = new_figure(6.4, 3.6)
    ax = fig.subplots()
    for i, (name, r) in enumerate(results["schemes"].items()):
        steps, eps = zip(*r["teacher_forcing_curve"], strict=True)
        ax.plot(steps, eps, color=f"C{i}", label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("ε (probability of the true token)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.set_title("teacher-forcing ratio schedules", fontsize=9)
    return save_png(fig, path)


def render(results: dict, out_dir: Path) -> str:
    """The report: claim, setup, the table of NLLs, KLs and EB-M, the plots and what they show."""
    out_dir = Path(out_dir)
    kl_png = plot_kl(results, out_dir / "kl_per_position.png")
    sched_png = plot_schedules(results, out_dir / "teacher_forcing_schedules.png")
    s, o = results["setup"], results["oracle"]
    lines = [
        "## Claim", "",
        "A model trained with teacher forcing only ever sees true prefixes; in generation it reads its "
        "own, so its errors compound along the sequence (exposure bias). Scheduled sampling (Bengio et "
        "al. 2015) feeds the model its own samples during training with a probability 1 − ε that grows "
        "over training, and is meant to close that gap.", "",
        "## Setup", "",
        f"The oracle is an LSTM ({s['d_embed']}-dim embeddings, {s['d_hidden']} hidden units, "
        f"{s['oracle_parameters']:,} parameters) with seeded N(0, 1) weights (output layer × "
        f"{s['head_scale']}) over {s['vocab']} tokens; it samples {s['n_train']:,} training and "
        f"{s['n_test']:,} held-out sequences of L = {s['length']} tokens. Its entropy rate on the "
        f"held-out set is {o['entropy_rate']:.3f} nats/token (uniform: {math.log(s['vocab']):.3f}). "
        f"Students: the same architecture, the same initial weights, data order and {s['steps']:,} "
        f"steps of {s['rows']} sequences (AdamW, lr {s['lr']}, cosine), trained by the Trainer with "
        f"teacher forcing or scheduled sampling (tokens sampled from the model), each decay reaching "
        f"ε = {s['final_teacher_forcing']} at the last step. {s['n_eval']:,} samples per student "
        "give NLL_oracle and the own-prefix KL; the held-out oracle sequences give NLL_test and the "
        "oracle-prefix KL. Distributions are over the real tokens (specials removed, renormalised).", "",
        "## Results", "",
        "| scheme | ε at the end | NLL_test | NLL_oracle | mean KL, oracle prefixes | mean KL, own prefixes "
        "| EB-M (mean over t ≥ 2) | EB-M(L) | training, wall seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| oracle (the truth) | – | {o['nll_test']:.4f} | {o['nll_oracle']:.4f} | 0 | 0 | – | – | – |",
    ]
    for name, r in results["schemes"].items():
        lines.append(f"| {name} | {r['final_teacher_forcing']:.2f} | {r['nll_test']:.4f} "
                     f"| {r['nll_oracle']:.4f} | {r['mean_kl_oracle_prefix']:.4f} "
                     f"| {r['mean_kl_own_prefix']:.4f} | {r['eb_m_mean']:.3f} "
                     f"| {r['eb_m_last']:.3f} | {r['train_seconds']:.0f} |")
    lines += ["", "NLL in nats per token; NLL_test's floor and NLL_oracle's target is the oracle's "
              "entropy rate. KL(oracle ‖ student) in nats, averaged over positions 1..L.", "",
              f"![per-position KL]({kl_png.name})", "", f"![teacher-forcing schedules]({sched_png.name})", "",
              "## What was measured against the claim", "", _findings(results), ""]
    return "\n".join(lines)


def _findings(results: dict) -> str:
    """The comparison in words, computed from the numbers."""
    r = results["schemes"]
    tf = r["teacher forcing"]
    ss = {k: v for k, v in r.items() if k != "teacher forcing"}
    parts = []
    if tf["eb_m_mean"] > 1.0:
        parts.append(f"Exposure bias is measurable: after its own prefixes the teacher-forced student's "
                     f"KL from the oracle is {tf['eb_m_mean']:.2f}× (mean over positions) what it is after "
                     f"true prefixes ({tf['mean_kl_own_prefix']:.4f} vs {tf['mean_kl_oracle_prefix']:.4f} "
                     "nats).")
    else:
        parts.append(f"No exposure bias shows for teacher forcing here: EB-M is {tf['eb_m_mean']:.2f}, the "
                     "student errs no more after its own prefixes than after the oracle's.")
    better_eb = [k for k, v in ss.items() if v["eb_m_mean"] < tf["eb_m_mean"]]
    better_own = [k for k, v in ss.items() if v["mean_kl_own_prefix"] < tf["mean_kl_own_prefix"]]
    better_test = [k for k, v in ss.items() if v["nll_test"] < tf["nll_test"]]
    final = results["setup"]["final_teacher_forcing"]
    parts.append(f"With ε decaying to {final} (at the end, {1 - final:.0%} of the inputs are the student's "
                 f"own samples), scheduled sampling lowers the EB-M ratio for {len(better_eb)} of {len(ss)} "
                 "schedules"
                 + (f" ({', '.join(better_eb)})" if better_eb else "")
                 + f", the divergence met in generation (own prefixes) for {len(better_own)} of {len(ss)}, "
                 f"and NLL_test for {len(better_test)} of {len(ss)}.")
    parts.append("A lower ratio can come from a worse fit on true prefixes rather than a better one on "
                 "the model's own: scheduled sampling's objective is not a proper likelihood (Huszár "
                 "2015), so the absolute KLs and NLL_test are the numbers to compare, EB-M only with them.")
    o = results["oracle"]["entropy_rate"]
    nll_o = {k: v["nll_oracle"] for k, v in r.items()}
    parts.append("NLL_oracle against the oracle's entropy rate " + f"{o:.3f}: "
                 + ", ".join(f"{k} {v:.3f}" for k, v in nll_o.items())
                 + " (below the entropy rate: samples more predictable than the oracle's, i.e. less "
                   "diverse; above: less coherent).")
    return " ".join(parts)
