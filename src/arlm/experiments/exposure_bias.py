"""Exposure bias measured against a known truth (F11): an oracle LSTM, students trained with teacher
forcing and with scheduled sampling, swept over how far scheduled sampling goes.

**The chapter's claim.** Teacher forcing trains p_θ(x_t | x_<t) only on *true* prefixes x_<t ~ p_data,
but generation feeds the model its *own* prefixes x_<t ~ p_θ. Errors then compound: a prefix the
model would not have seen in training leads to a worse next-token distribution, which leads to a
stranger prefix (exposure bias). Scheduled sampling (Bengio et al. 2015) trains on a mix: each input
token is, by its own coin flip, the true one with probability ε_i and otherwise a token drawn from the
model's prediction for that position (given the mixed prefix before it), with ε_i decaying over the
training steps i (linear, exponential or inverse-sigmoid; :mod:`arlm.train.schedules`).

**The objection.** Huszár (2015) showed that scheduled sampling's objective is improper: with ε → 0
the target x_t is still the true token while the input is the model's own sample, independent of x_t
given the prefix before it, so the loss is minimised by a model that *ignores its input* and predicts
a blurred, marginal distribution. Which of the two shows up depends on how far ε decays, so the
experiment sweeps the last step's ε_end ∈ {0.9, 0.75, 0.5, 0.25} for each schedule and measures, beside
the errors, how much each student relies on its input.

**A known truth.** Real text has no known p_data, so (as SeqGAN and Texygen do) a fixed *oracle*
stands in for it: an LSTM with seeded random weights, all drawn from N(0, 1) (which makes its gates
saturate and its samples structured: an entropy of about 1.2 nats per token over 16 tokens, against
ln 16 = 2.77 for the uniform distribution). Sequences have a fixed length L; the distribution at every
position is the model's next-token distribution restricted to the real tokens (ids ≥ 4) and
renormalised, for the oracle and the students alike. The oracle samples the training corpus (framed
``[SOS] x_1 … x_L [EOS]``) and a held-out test set; both are fixed by the run's seed.

Students of the oracle's family and size are trained by the :class:`~arlm.train.trainer.Trainer` for
the same number of optimizer steps (the budget, in steps), with teacher forcing or scheduled sampling;
seed s fixes a student's initial weights, data order and coin flips, and is shared by every arm (the
comparisons with teacher forcing are paired by seed). For each student:

* NLL_test = -(1/NL) Σ log p_θ(x) over held-out oracle samples x (floor: the oracle's entropy rate);
* NLL_oracle = -(1/NL) Σ log p_oracle(y) over student samples y (SeqGAN / Texygen): the oracle's
  entropy rate for a perfect student; lower means less diverse samples, higher less coherent ones;
* KL_P(t) = E_{x_<t ~ P} [ KL( p_oracle(· | x_<t) ‖ p_θ(· | x_<t) ) ] for t = 1..L with prefixes from
  the oracle (the error teacher forcing trains on) or the student (the error met in generation), and
  EB-M = mean_t KL_own / mean_t KL_oracle (He et al. 2021's exposure-bias measure, with KL): 1 is none;
* input reliance R = E_t E_{x ~ oracle} [ KL( p(· | x_<t) ‖ p(· | x_<t-1 with x_{t-1} → r) ) ], t ≥ 2,
  r a uniformly drawn *other* real token: how far the next-token distribution moves when the last input
  token is replaced. The oracle's R is the reliance of the truth; a student that ignores its input has
  R near 0.

Students train in ``config.threads`` worker processes, one torch thread each: every student's numbers
depend on its seed only, not on how many run at once.
"""

from __future__ import annotations

import itertools
import math
import os
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
from arlm.experiments.protocol import (
    A_LOWER,
    B_LOWER,
    Protocol,
    compare_paired,
    comparison_sentence,
    summarize,
)
from arlm.experiments.workers import in_workers, worker_count
from arlm.models.rnn import RNNLM, RNNConfig
from arlm.progress import progress
from arlm.streams import EOS_ID, SOS_ID, SPECIAL_TOKENS, UNK_ID
from arlm.train.schedules import teacher_forcing_ratio

NAME = "exposure-bias"
SUMMARY = ("teacher forcing vs scheduled sampling (3 schedules × 4 end ratios × 3 seeds) against a known "
           "oracle LSTM: NLL, per-position KL, input reliance (F11)")

NUM_SPECIAL = len(SPECIAL_TOKENS)  # ids 0..3; the real tokens follow
HEAD_SCALE = 1.0  # the oracle's output layer × this: larger is sharper (entropy ≈ 1.2 nats at 1.0)
TEACHER_FORCING = "teacher forcing"
SCHEDULES = ("linear", "exponential", "inverse_sigmoid")
METRICS = ("nll_test", "nll_oracle", "mean_kl_oracle_prefix", "mean_kl_own_prefix", "eb_m", "input_reliance")


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
    n_reliance: int = 500  # held-out sequences for the input-reliance diagnostic
    steps: int = 3_000  # optimizer steps per student: the budget
    rows: int = 32  # sequences' worth of rows per batch
    lr: float = 1e-2
    eps_ends: tuple[float, ...] = (0.9, 0.75, 0.5, 0.25)  # ε at the last step, swept
    seeds: int = 3


FULL = Setup()
QUICK = Setup(vocab=8, length=10, d_embed=8, d_hidden=16, n_train=400, n_test=100, n_eval=100, n_reliance=50,
              steps=30, eps_ends=(0.9, 0.25), seeds=2)


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


def kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p ‖ q) over the last dimension of two log-distributions (…, V) -> (…)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def per_position_kl(oracle: RNNLM, student: RNNLM, prefixes: Tensor) -> Tensor:
    """KL(p_oracle(· | x_<t) ‖ p_student(· | x_<t)) averaged over the rows of ``prefixes`` (N, L), for
    t = 1..L -> (L,) float64 (nats). Zero for a student equal to the oracle."""
    return kl_rows(real_log_probs(oracle, prefixes), real_log_probs(student, prefixes)).mean(0)  # (L,)


def input_reliance(model: RNNLM, seqs: Tensor, seed: int) -> float:
    """R = mean over t = 2..L and the rows of ``seqs`` (N, L) of KL(p(· | x_<t) ‖ p(· | x_<t with x_{t-1}
    replaced by r)), r drawn uniformly from the *other* real tokens (nats). 0 for a model that ignores
    its input tokens."""
    n, length = seqs.shape
    vocab = model.config.vocab_size - NUM_SPECIAL
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, vocab, (length - 1, n), generator=gen)  # (L-1, N): never the same token
    variants = seqs.repeat(length - 1, 1).view(length - 1, n, length).clone()  # (L-1, N, L)
    for j in range(length - 1):  # variant j: the input before predicting x_{j+2}, i.e. x_{j+1}, replaced
        real = variants[j, :, j] - NUM_SPECIAL
        variants[j, :, j] = (real + shift[j]) % vocab + NUM_SPECIAL
    clean = real_log_probs(model, seqs)[:, 1:]  # (N, L-1): the distributions of x_2 … x_L
    moved = real_log_probs(model, variants.view(-1, length)).view(length - 1, n, length, vocab)
    moved = torch.stack([moved[j, :, j + 1] for j in range(length - 1)], 1)  # (N, L-1, V)
    return float(kl_rows(clean, moved).mean())


def stream_of(seqs: Tensor) -> np.ndarray:
    """Sequences (N, L) -> the flat training stream [SOS] x_1 … x_L [EOS] [SOS] …"""
    n = seqs.shape[0]
    framed = torch.cat([torch.full((n, 1), SOS_ID), seqs, torch.full((n, 1), EOS_ID)], 1)  # (N, L+2)
    return framed.reshape(-1).numpy().astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Training schemes: teacher forcing, and each schedule decaying to each ε_end
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


def schedule_fields(schedule: str, steps: int, final: float) -> dict[str, Any]:
    """TrainConfig fields of ``schedule`` set to reach ε = ``final`` at the last of ``steps`` steps."""
    last = max(1, steps - 1)
    if schedule == "linear":
        return {"scheduled_sampling": "linear", "ss_k": 1.0, "ss_c": (1.0 - final) / last}
    if schedule == "exponential":
        return {"scheduled_sampling": "exponential", "ss_k": final ** (1.0 / last)}
    return {"scheduled_sampling": "inverse_sigmoid", "ss_k": inverse_sigmoid_k(last, final)}


def arm_name(schedule: str, final: float) -> str:
    """The name of a scheduled-sampling arm, e.g. 'SS linear → 0.25'."""
    return f"SS {schedule.replace('_', ' ')} → {final:g}"


def schemes(setup: Setup) -> dict[str, dict[str, Any]]:
    """Every arm's TrainConfig fields: teacher forcing, then each schedule × each ε_end."""
    plan: dict[str, dict[str, Any]] = {TEACHER_FORCING: {"scheduled_sampling": None}}
    for schedule in SCHEDULES:
        for final in setup.eps_ends:
            plan[arm_name(schedule, final)] = schedule_fields(schedule, setup.steps, final)
    return plan


def ratio_curve(scheme: dict[str, Any], steps: int, points: int = 50) -> list[list[float]]:
    """[(step, ε)] along training, for the schedule plot."""
    at = np.unique(np.linspace(0, steps - 1, points).round().astype(int)).tolist()
    if scheme["scheduled_sampling"] is None:
        return [[i, 1.0] for i in at]
    return [[i, teacher_forcing_ratio(i, scheme["scheduled_sampling"], scheme.get("ss_k", 1.0),
                                      scheme.get("ss_c", 0.0))] for i in at]


# ---------------------------------------------------------------------------------------------
# The work: students trained, then measured, in worker processes (one torch thread each)
# ---------------------------------------------------------------------------------------------

_SHARED: dict[str, Any] = {}  # what every job of a pool reads: set once per process by _share


def _share(setup: Setup, oracle_seed: int, data: Any, device: str) -> None:
    """A worker's start: the oracle and the data (training stream or test set)."""
    _SHARED.update(setup=setup, oracle=build_oracle(setup, oracle_seed).to(device), data=data, device=device)


def _train_job(arm: str, scheme: dict[str, Any], seed: int) -> tuple[str, int, dict[str, Tensor], dict]:
    """One student, trained by the Trainer for ``setup.steps`` steps with ``scheme`` and ``seed``."""
    from arlm.train.trainer import TrainConfig, Trainer

    setup, stream = _SHARED["setup"], _SHARED["data"]
    block = setup.length + 2  # one sequence's worth of tokens per row and window
    config = TrainConfig(batch_tokens=setup.rows * block, micro_batch_size=setup.rows, block_size=block,
                         lr=setup.lr, min_lr=setup.lr / 10, warmup_steps=min(50, setup.steps // 10),
                         max_steps=setup.steps, weight_decay=0.0, eval_interval=0,
                         log_interval=max(1, setup.steps // 10), seed=seed, device=_SHARED["device"],
                         show_progress=False, **scheme)
    student = build_student(setup, seed + 1)
    summary = Trainer(student, config, stream).train()
    info = {"train_loss": summary.train_loss,
            "final_teacher_forcing": config.teacher_forcing(setup.steps - 1)}
    return arm, seed, {k: v.cpu() for k, v in student.state_dict().items()}, info


def measure(oracle: RNNLM, model: RNNLM, test: Tensor, setup: Setup, seed: int) -> dict[str, Any]:
    """NLL_test, NLL_oracle, the per-position KL after oracle and after own prefixes, EB-M, and the
    input reliance."""
    own = sample(model, setup.n_eval, setup.length, seed)
    kl_oracle = per_position_kl(oracle, model, test)
    kl_own = per_position_kl(oracle, model, own)
    return {"nll_test": nll_per_token(model, test), "nll_oracle": nll_per_token(oracle, own),
            "kl_oracle_prefix": kl_oracle.tolist(), "kl_own_prefix": kl_own.tolist(),
            "mean_kl_oracle_prefix": float(kl_oracle.mean()), "mean_kl_own_prefix": float(kl_own.mean()),
            "eb_m": float(kl_own.mean() / kl_oracle.mean().clamp_min(1e-12)),
            "input_reliance": input_reliance(model, test[: setup.n_reliance], seed)}


def _measure_job(arm: str, seed: int, state: dict[str, Tensor]) -> tuple[str, int, dict[str, Any]]:
    """One trained student measured against the oracle on the test set."""
    setup = _SHARED["setup"]
    student = build_student(setup, 0)
    student.load_state_dict(state)
    student = student.to(_SHARED["device"]).eval()
    return arm, seed, measure(_SHARED["oracle"], student, _SHARED["data"], setup, seed + 2)


def run(config: ExperimentConfig) -> dict:
    """Sample the oracle's corpus; train every arm × seed for the same number of steps; then, in the one
    final test, measure every student against the oracle; summarise over seeds and pair with teacher
    forcing."""
    setup = QUICK if config.quick else FULL
    plan = schemes(setup)
    seeds = [config.seed + i for i in range(setup.seeds)]
    workers = worker_count(config.threads, len(plan) * len(seeds), os.cpu_count())
    oracle = build_oracle(setup, config.seed).to(config.device)
    train = sample(oracle, setup.n_train, setup.length, config.seed)  # (N, L)
    test = sample(oracle, setup.n_test, setup.length, config.seed + 1)
    # nothing is chosen here (no validation split is needed); the protocol still guards the test set
    protocol = Protocol({"train": train, "val": None, "test": test}, budget_unit="steps")
    stream = stream_of(torch.as_tensor(np.asarray(protocol.split("train"))))
    trained: dict[tuple[str, int], tuple[dict[str, Tensor], dict]] = {}
    measured: dict[tuple[str, int], dict[str, Any]] = {}
    with progress(config.show_progress) as bar:
        total = 2 * len(plan) * len(seeds)  # trained, then measured
        task = bar.add_task(f"training {len(plan)} arms × {len(seeds)} seeds", total=total)
        advance = lambda: bar.advance(task)  # noqa: E731
        jobs = [(arm, scheme, seed) for seed in seeds for arm, scheme in plan.items()]
        share = (setup, config.seed, stream, config.device)
        for arm, seed, state, info in in_workers(jobs, _train_job, _share, share, workers, advance):
            trained[arm, seed] = state, info
            protocol.budget.spend(arm, setup.steps)
        protocol.budget.check_equal()
        bar.update(task, description="measuring every student against the oracle")
        with protocol.final_test() as held_out:
            test_set = torch.as_tensor(np.asarray(held_out))
            jobs = [(arm, seed, trained[arm, seed][0]) for seed in seeds for arm in plan]
            share = (setup, config.seed, test_set, config.device)
            for arm, seed, result in in_workers(jobs, _measure_job, _share, share, workers, advance):
                measured[arm, seed] = result
            reference = measure(oracle, oracle, test_set, setup, config.seed + 2)
    noise = torch.randint(NUM_SPECIAL, NUM_SPECIAL + setup.vocab, (setup.n_eval, setup.length),
                          generator=torch.Generator().manual_seed(config.seed + 3))  # uniformly random text
    arms = {}
    for arm, scheme in plan.items():
        runs = [{"seed": seed, **trained[arm, seed][1], **measured[arm, seed]} for seed in seeds]
        arms[arm] = {**{k: v for k, v in scheme.items() if v is not None},
                     "final_teacher_forcing": runs[0]["final_teacher_forcing"],
                     "teacher_forcing_curve": ratio_curve(scheme, setup.steps), "runs": runs,
                     "summary": {m: asdict(summarize([r[m] for r in runs])) for m in METRICS}}
    return {
        "claim": "teacher forcing trains on true prefixes only, so errors compound on the model's own "
                 "prefixes (exposure bias); scheduled sampling is meant to reduce the gap",
        "setup": {**asdict(setup), "head_scale": HEAD_SCALE, "family": "rnn (lstm)", "workers": workers,
                  "oracle_parameters": oracle.num_parameters(), "train_tokens": len(stream),
                  "seed_values": seeds},
        "oracle": {"entropy_rate": reference["nll_test"], "nll_oracle": reference["nll_oracle"],
                   "input_reliance": reference["input_reliance"], "uniform": math.log(setup.vocab),
                   "uniform_nll_oracle": nll_per_token(oracle, noise)},
        "arms": arms,
        "comparisons": comparisons(arms),
        "protocol": protocol.record(),
    }


def comparisons(arms: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each scheduled-sampling arm against teacher forcing, paired by seed, for every metric: the per-seed
    differences SS − TF summarised, and the verdict."""
    tf = arms[TEACHER_FORCING]["runs"]
    out: dict[str, dict[str, Any]] = {}
    for arm, a in arms.items():
        if arm == TEACHER_FORCING:
            continue
        out[arm] = {}
        for metric in METRICS:
            c = compare_paired([r[metric] for r in a["runs"]], [r[metric] for r in tf], arm, TEACHER_FORCING)
            out[arm][metric] = {"difference": asdict(c.difference), "verdict": c.verdict}
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

PANELS = (("nll_test", "NLL_test, nats/token (held-out oracle text)"),
          ("nll_oracle", "NLL_oracle, nats/token (student samples)"),
          ("mean_kl_own_prefix", "mean KL(oracle ‖ student), own prefixes"),
          ("input_reliance", "input reliance R, nats"))


def _ss_arms(results: dict) -> dict[str, dict[str, Any]]:
    return {arm: a for arm, a in results["arms"].items() if arm != TEACHER_FORCING}


def _by_schedule(results: dict, schedule: str) -> list[tuple[float, dict[str, Any]]]:
    """[(ε_end, arm)] of one schedule, in the order of the sweep."""
    return [(final, results["arms"][arm_name(schedule, final)]) for final in results["setup"]["eps_ends"]]


def plot_sweep(results: dict, path: Path) -> Path:
    """Four panels against ε_end (teacher forcing at ε = 1, left): each schedule's mean over seeds with
    its 95 % interval; teacher forcing's mean and interval as a band; the oracle and uniform lines."""
    fig = new_figure(11.0, 7.6)
    axes = fig.subplots(2, 2).ravel()
    tf = results["arms"][TEACHER_FORCING]["summary"]
    o = results["oracle"]
    offsets = np.linspace(-0.012, 0.012, len(SCHEDULES))
    for ax, (metric, label) in zip(axes, PANELS, strict=True):
        s = tf[metric]
        ax.axhline(s["mean"], color="black", lw=1.2, label="teacher forcing (mean, 95 % band)")
        if not math.isnan(s["low"]):
            ax.axhspan(s["low"], s["high"], color="black", alpha=0.12, lw=0)
        for i, schedule in enumerate(SCHEDULES):
            points = _by_schedule(results, schedule)
            x = np.array([final for final, _ in points]) + offsets[i]
            mean = np.array([a["summary"][metric]["mean"] for _, a in points])
            low = np.array([a["summary"][metric]["low"] for _, a in points])
            high = np.array([a["summary"][metric]["high"] for _, a in points])
            err = None if np.isnan(low).any() else np.vstack([mean - low, high - mean])
            ax.errorbar(x, mean, yerr=err, color=f"C{i}", marker="o", ms=4, capsize=3,
                        label=f"SS {schedule.replace('_', ' ')}")
        if metric in ("nll_test", "nll_oracle"):
            ax.axhline(o["entropy_rate"], color="C2", ls=":", lw=1.2, label="oracle entropy rate")
        if metric == "nll_test":
            ax.axhline(o["uniform"], color="C3", ls="-.", lw=1.0, label="uniform model, ln V")
        if metric == "nll_oracle":
            ax.axhline(o["uniform_nll_oracle"], color="C3", ls="-.", lw=1.0, label="uniformly random samples")
        if metric == "input_reliance":
            ax.axhline(o["input_reliance"], color="C2", ls=":", lw=1.2, label="the oracle's reliance")
            ax.set_ylim(bottom=0)
        ax.set_xlim(1.03, min(results["setup"]["eps_ends"]) - 0.05)  # teacher forcing (ε = 1) on the left
        ax.set_xlabel("ε at the last step (share of true input tokens)")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=6.5, loc="best")
    return save_png(fig, path)


def plot_kl(results: dict, path: Path) -> Path:
    """Per-position KL after oracle prefixes (solid) and own prefixes (dashed), seed means: one panel per
    ε_end, teacher forcing in black in each."""
    finals = results["setup"]["eps_ends"]
    fig = new_figure(3.1 * len(finals) + 0.6, 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(finals), sharey=True))

    def curves(ax, arm: dict, color: str, label: str) -> None:
        oracle_kl = np.mean([r["kl_oracle_prefix"] for r in arm["runs"]], 0)
        own_kl = np.mean([r["kl_own_prefix"] for r in arm["runs"]], 0)
        t = np.arange(1, len(oracle_kl) + 1)
        ax.plot(t, oracle_kl, color=color, lw=1.2, label=f"{label}, oracle prefixes")
        ax.plot(t, own_kl, color=color, lw=1.2, ls="--", label=f"{label}, own prefixes")

    for ax, final in zip(axes, finals, strict=True):
        curves(ax, results["arms"][TEACHER_FORCING], "black", "teacher forcing")
        for i, schedule in enumerate(SCHEDULES):
            label = f"SS {schedule.replace('_', ' ')}"
            curves(ax, results["arms"][arm_name(schedule, final)], f"C{i}", label)
        ax.set_title(f"scheduled sampling to ε = {final:g}", fontsize=9)
        ax.set_xlabel("position t")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("KL(oracle ‖ student) at t, nats")
    axes[0].legend(fontsize=6, loc="upper left")
    return save_png(fig, path)


def plot_schedules(results: dict, path: Path) -> Path:
    """The teacher-forcing ratio ε over training steps: a panel per schedule, a line per ε_end."""
    fig = new_figure(10.0, 3.2)
    axes = fig.subplots(1, len(SCHEDULES), sharey=True)
    for ax, schedule in zip(axes, SCHEDULES, strict=True):
        for j, (final, arm) in enumerate(_by_schedule(results, schedule)):
            steps, eps = zip(*arm["teacher_forcing_curve"], strict=True)
            ax.plot(steps, eps, color=f"C{j}", label=f"ε_end {final:g}")
        ax.set_title(schedule.replace("_", " "), fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("ε (probability of the true token)")
    axes[0].legend(fontsize=7)
    return save_png(fig, path)


def _cell(s: dict, digits: int = 3) -> str:
    if math.isnan(s["std"]):
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def render(results: dict, out_dir: Path) -> str:
    """The report: claim, setup, the table over arms (mean ± std over seeds), the verdicts against
    teacher forcing, the plots and the findings, written from the numbers."""
    out_dir = Path(out_dir)
    sweep_png = plot_sweep(results, out_dir / "sweep.png")
    kl_png = plot_kl(results, out_dir / "kl_per_position.png")
    sched_png = plot_schedules(results, out_dir / "teacher_forcing_schedules.png")
    s, o = results["setup"], results["oracle"]
    lines = [
        "## Claim", "",
        "A model trained with teacher forcing only ever sees true prefixes; in generation it reads its "
        "own, so its errors compound along the sequence (exposure bias). Scheduled sampling (Bengio et "
        "al. 2015) feeds the model its own predictions during training with a probability 1 − ε that "
        "grows over training, and is meant to close that gap; Huszár (2015) showed that its objective "
        "is improper and rewards a model that ignores its inputs.", "",
        "## Setup", "",
        f"The oracle is an LSTM ({s['d_embed']}-dim embeddings, {s['d_hidden']} hidden units, "
        f"{s['oracle_parameters']:,} parameters) with seeded N(0, 1) weights over {s['vocab']} tokens; it "
        f"samples {s['n_train']:,} training and {s['n_test']:,} held-out sequences of L = {s['length']} "
        f"tokens. Its entropy rate on the held-out set is {o['entropy_rate']:.3f} nats/token (uniform: "
        f"{o['uniform']:.3f}); its input reliance is {o['input_reliance']:.3f} nats. Students: the "
        f"oracle's architecture, {s['steps']:,} optimizer steps each (the budget, equal for every arm) of "
        f"{s['rows']} sequences (AdamW, lr {s['lr']}, cosine), teacher forcing or scheduled sampling "
        "(Bengio et al.: a coin per input token; the replacement is sampled from the student's prediction "
        "for that position given the mixed prefix) with the linear, exponential and inverse-sigmoid "
        f"decays each reaching ε_end ∈ {{{', '.join(f'{e:g}' for e in s['eps_ends'])}}} at the last "
        f"step; {s['seeds']} seeds ({', '.join(map(str, s['seed_values']))}), each fixing a student's "
        "initial weights, data order and coins and shared by all arms, so comparisons with teacher "
        f"forcing are paired by seed. {s['n_eval']:,} samples per student give NLL_oracle and the "
        f"own-prefix KL; the held-out sequences give NLL_test and the oracle-prefix KL; "
        f"{s['n_reliance']:,} of them give the input reliance R (the mean KL between the next-token "
        "distribution and the one after the last input token is replaced by another token).", "",
        "## Results", "",
        "Mean ± std over seeds (nats; NLL per token; KL averaged over positions 1..L; EB-M = mean KL "
        "after own prefixes / mean KL after oracle prefixes).", "",
        "| arm | ε at the end | NLL_test | NLL_oracle | KL, oracle prefixes | KL, own prefixes | EB-M "
        "| input reliance |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| oracle (the truth) | – | {o['entropy_rate']:.3f} | {o['nll_oracle']:.3f} | 0 | 0 | – "
        f"| {o['input_reliance']:.3f} |",
    ]
    for arm, a in results["arms"].items():
        m = a["summary"]
        lines.append(f"| {arm} | {a['final_teacher_forcing']:.2f} | {_cell(m['nll_test'])} "
                     f"| {_cell(m['nll_oracle'])} | {_cell(m['mean_kl_oracle_prefix'])} "
                     f"| {_cell(m['mean_kl_own_prefix'])} | {_cell(m['eb_m'], 2)} "
                     f"| {_cell(m['input_reliance'])} |")
    lines += ["", "Against teacher forcing, paired by seed (SS − TF, the 95 % interval of the mean "
              "difference; \"lower\"/\"higher\" only when the interval excludes 0):", "",
              "| arm | NLL_test | KL, own prefixes | NLL_oracle | input reliance |",
              "|---|---|---|---|---|"]
    for arm, c in results["comparisons"].items():
        lines.append(f"| {arm} | " + " | ".join(_verdict_cell(c[m]) for m in
                                                ("nll_test", "mean_kl_own_prefix", "nll_oracle",
                                                 "input_reliance")) + " |")
    lines += ["", f"![the sweep against ε_end]({sweep_png.name})", "",
              f"![per-position KL]({kl_png.name})", "", f"![teacher-forcing schedules]({sched_png.name})", "",
              "## What was measured against the claim", "",
              *[p for sentence in findings(results) for p in (sentence, "")]]
    return "\n".join(lines)


def _verdict_cell(c: dict[str, Any]) -> str:
    d = c["difference"]
    word = {A_LOWER: "lower", B_LOWER: "higher"}.get(c["verdict"], "not distinguishable")
    if math.isnan(d["low"]):
        return f"{d['mean']:+.3f} ({word})"
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] {word}"


def _count(results: dict, metric: str) -> tuple[list[str], list[str], list[str]]:
    """(arms lower than teacher forcing, arms higher, arms not distinguishable) on ``metric``."""
    lower, higher, same = [], [], []
    for arm, c in results["comparisons"].items():
        {A_LOWER: lower, B_LOWER: higher}.get(c[metric]["verdict"], same).append(arm)
    return lower, higher, same


def _tally(results: dict, metric: str, what: str) -> str:
    lower, higher, same = _count(results, metric)
    n = len(results["comparisons"])
    text = (f"On {what}, scheduled sampling is lower than teacher forcing in {len(lower)} of {n} settings, "
            f"higher in {len(higher)}, and not distinguishable in {len(same)}")
    return text + (f" (lower: {', '.join(lower)})." if lower else ".")


def findings(results: dict) -> list[str]:
    """The comparison in words, each sentence computed from the numbers (a paragraph each)."""
    arms, o = results["arms"], results["oracle"]
    tf = arms[TEACHER_FORCING]["summary"]
    eb = tf["eb_m"]
    out = []
    if math.isnan(eb["low"]):
        out.append(f"Teacher forcing's EB-M is {eb['mean']:.2f} (one seed: no interval).")
    elif eb["low"] > 1:
        out.append(f"Exposure bias is measurable: after its own prefixes the teacher-forced student's KL "
                   f"from the oracle is {eb['mean']:.2f}× (95 % interval [{eb['low']:.2f}, {eb['high']:.2f}] "
                   f"over seeds) what it is after true prefixes ({tf['mean_kl_own_prefix']['mean']:.3f} vs "
                   f"{tf['mean_kl_oracle_prefix']['mean']:.3f} nats).")
    else:
        out.append(f"No exposure bias can be told apart here: teacher forcing's EB-M is {eb['mean']:.2f} "
                   f"(95 % interval [{eb['low']:.2f}, {eb['high']:.2f}], which contains or lies below 1).")
    out.append(_tally(results, "mean_kl_own_prefix", "the divergence met in generation (KL after own "
                                                     "prefixes)") + " " +
               _tally(results, "nll_test", "NLL_test"))
    # input reliance: the Huszár diagnostic
    tf_r = tf["input_reliance"]["mean"]
    smallest = min(results["setup"]["eps_ends"])
    falling = [schedule for schedule in SCHEDULES
               if _monotone([a["summary"]["input_reliance"]["mean"]
                             for _, a in _by_schedule(results, schedule)])]
    less = [arm for arm, c in results["comparisons"].items()
            if c["input_reliance"]["verdict"] == A_LOWER and arm.endswith(f"→ {smallest:g}")]
    reliance = (f"Input reliance: the oracle's is {o['input_reliance']:.3f} nats, teacher forcing's "
                f"{tf_r:.3f}; ")
    reliance += ", ".join(f"{arm} {a['summary']['input_reliance']['mean']:.3f}" for arm, a in arms.items()
                          if arm.endswith(f"→ {smallest:g}")) + ". "
    reliance += (f"It falls as ε_end falls for {len(falling)} of {len(SCHEDULES)} schedules"
                 + (f" ({', '.join(s.replace('_', ' ') for s in falling)})" if falling else "") + ", and at "
                 f"ε_end = {smallest:g} it is below teacher forcing's (interval excluding 0) for "
                 f"{len(less)} of "
                 f"{len(SCHEDULES)}. ")
    if less and falling:
        reliance += ("Students fed more of their own samples lean less on their input, as Huszár (2015) "
                     "predicts for scheduled sampling's improper objective.")
    else:
        reliance += "The loss of input reliance that Huszár (2015) predicts does not show clearly here."
    out.append(reliance)
    noise = o["uniform_nll_oracle"]
    above = [arm for arm, a in arms.items() if a["summary"]["nll_oracle"]["mean"] > noise]
    out.append(f"NLL_oracle against the oracle's entropy rate {o['entropy_rate']:.3f} and its NLL on "
               f"uniformly random sequences {noise:.3f}: teacher forcing {tf['nll_oracle']['mean']:.3f}; "
               + (f"{len(above)} arm(s) score above random sequences ({', '.join(above)}): the oracle finds "
                  "their samples less likely than noise." if above else
                  "every arm's samples are more likely under the oracle than random sequences."))
    lower_gen, _, _ = _count(results, "mean_kl_own_prefix")
    if lower_gen:
        out.append("Against Bengio et al. (2015), who found scheduled sampling better than teacher "
                   "forcing on "
                   "captioning, parsing and speech: here it lowers the error met in generation in "
                   f"{len(lower_gen)} setting(s) ({', '.join(lower_gen)}).")
    else:
        out.append("Against Bengio et al. (2015), who found scheduled sampling better than teacher "
                   "forcing on "
                   "captioning, parsing and speech: against this oracle no schedule and no ε_end lowers, "
                   "distinguishably, the "
                   "error met in generation below teacher forcing's.")
    best, arm = min(_ss_arms(results).items(), key=lambda kv: kv[1]["summary"]["mean_kl_own_prefix"]["mean"])
    c = compare_paired([r["mean_kl_own_prefix"] for r in arm["runs"]],
                       [r["mean_kl_own_prefix"] for r in arms[TEACHER_FORCING]["runs"]],
                       best, TEACHER_FORCING)
    out.append("The scheduled-sampling arm closest to the oracle in generation (KL after own prefixes): "
               + comparison_sentence(c, "nats"))
    return out


def _monotone(values: list[float]) -> bool:
    """Whether ``values`` (in the sweep's order of decreasing ε_end) never rise."""
    return all(b <= a for a, b in itertools.pairwise(values))
