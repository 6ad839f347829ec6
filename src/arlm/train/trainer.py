"""The training loop for the neural families: teacher forcing with the NLL loss, and the tricks that
make it work at scale.

**Loss** (F10, teacher forcing): the model reads the true prefix x_{≤t} at every position and is
scored on the true next token,

    L(θ) = -(1/N) Σ_{scored t} log p_θ(x_{t+1} | x_{≤t})

with N the number of scored targets in the whole batch ([PAD] and [SOS] targets are not scored).

**Batches in tokens, micro-batches that fit** (F13): a batch of ``batch_tokens`` tokens is
B = batch_tokens // block_size rows of block_size tokens, processed in micro-batches of
``micro_batch_size`` rows. Each micro-batch m adds the gradient of

    L_m = -(1/N) Σ_{scored t in m} log p_θ(x_{t+1} | x_{≤t})

(normalised by the target count N of the *whole* batch, not of m), so Σ_m ∇L_m = ∇L exactly: the
accumulated gradient is the big-batch gradient, whatever the split.

**Optimizer and stability** (F14): AdamW with decoupled weight decay on weight matrices only (no decay
on biases, norm gains or embeddings); the learning rate follows :func:`~arlm.train.schedules.learning_rate`
(warmup, then cosine/linear decay); the gradient is clipped to global norm ``grad_clip``:
g <- g · min(1, c / ‖g‖₂). AdamW runs torch's fused kernel on CUDA, in the CPU's compiled step and in
bf16 on the CPU (on nanoGPT's baby config 0.935× the for-loop kernel's step, in alternating blocks);
in fp32 on the CPU otherwise it runs torch's for-loop kernel unless ``fused_adamw=True`` (fused on the
CPU from torch 2.4: about 7% faster a step on the baby config, but not the for-loop's last bits, so a
run's numbers move slightly; the committed experiments use the default). On CUDA with fused AdamW no
step waits for the GPU: the loss and gradient norm stay on the device, and a non-finite loss is caught
there (the fused kernel skips that update) and reported when the loop next reads the losses (its log
interval; :meth:`Trainer.read_losses`).

**Mixed precision** (F12): the forward pass runs under ``torch.autocast`` in bf16 or fp16 (matmuls in
low precision, reductions and softmax in fp32; the loss is computed on fp32 logits). The parameters
("master weights") and optimizer state stay fp32. fp16 has a narrow range, so its loss is multiplied
by a scale factor s before ``backward`` (small gradients would flush to zero) and the gradients divided
by s before the update; a ``torch.amp.GradScaler`` adapts s and skips steps whose gradients overflow.

**One step interface.** Every family is called as ``model(tokens, state) -> (logits, state)``. For a
``recurrent`` family (the RNNs: truncated BPTT) the stream is read as B parallel rows
(:class:`~arlm.train.batches.TBPTTStreams`) and the state after one batch starts the next, detached so
gradients stop at the batch boundary; the trainer handles that state as named tensors
(``state.tensors()``, ``state_class.from_tensors``) and never looks inside. The other families get
random chunks and ``state=None``.

**Scheduled sampling** (F11, off by default): teacher forcing only ever shows the model true prefixes,
while generation feeds it its own predictions (exposure bias). With probability 1 - ε_i (ε from
:func:`~arlm.train.schedules.teacher_forcing_ratio`, decaying over steps i) an input token x_t is
replaced by a token drawn from the model's own prediction p(· | x_{<t}); the targets stay the true
tokens. Recurrent families do it step by step (Bengio et al. 2015): the state after the replaced token
is the one that reads it. Transformers and window models cannot, since all positions are computed at
once, so they do two passes (Mihaylova & Martins 2019): pass 1 on the true inputs without gradient gives the
predictions, pass 2 (with gradient) reads the mixed inputs. [SOS] and [PAD] inputs are never replaced.

**Models that make their own training inputs** (σ-GPT, a fresh random order per sequence): a model
with ``batch_kind = "sequences"`` gets rows that each hold one whole ``[SOS] … [EOS]`` sequence,
right-padded (:func:`~arlm.train.batches.random_sequences`; validation likewise), and a model with a
``training_inputs(window, generator, progress) -> (inputs, targets)`` method turns each batch into its
own inputs and targets, drawing any randomness from the trainer's data generator (so a resumed run draws
the same); ``progress`` = i / (max_steps - 1) at step i (0 … 1, for a curriculum); the loss is then the
same cross-entropy over the targets it returns.

**Safety.** A non-finite loss stops training with :class:`TrainingError` before the update, so the
last checkpoint on disk (written atomically) stays the last good one. The validation loss is measured on
the *whole* validation split every ``eval_interval`` steps (or on its first ``eval_batches`` batches: an
estimate, as nanoGPT's ``eval_iters``); ``last/`` and ``best/`` checkpoints are kept,
training stops early after ``patience`` evaluations without improvement, and every log line goes to
``metrics.jsonl``.

**Compiled** (``compile=True``): on the CPU, where a step is one fp32 teacher-forcing pass of a
stateless family with one micro-batch in one process (and torch is recent enough), the forward pass, the
loss and the backward pass are one compiled graph, followed by clipping and fused AdamW
(:mod:`arlm.train.compiled_step`); elsewhere the forward pass and its loss are (:func:`compile_model`).
:meth:`Trainer.whole_step_reason` says which, and why. The compile is paid on the first step: the
summary reports that step's time against the median of the others. What it compiled is saved after that
step and loaded by the next run with the same shapes (:mod:`arlm.train.compile_cache`).
``compile="auto"`` compiles only when ``max_steps`` is long enough to pay the compile back
(:mod:`arlm.train.compile_choice`), and :attr:`Trainer.compile_note` says what it chose and why.

**Budgets.** Training ends at ``max_steps`` (the length of the learning-rate schedule), or earlier at
``max_seconds`` of wall clock if that is set, whichever comes first; the summary and the checkpoint
record which one (``stopped_by``) and the seconds taken. A run stopped by the clock is not repeatable
step for step, and is reported as such; a run that must repeat sets steps only.

**Checkpoints** (F15, :mod:`arlm.train.checkpoint`): ``last/`` and ``best/`` hold the model (a folder
that :func:`arlm.models.registry.load_family_model` reads), optimizer and scaler state, the step, the data
position (generator state, TBPTT window and hidden state) and the RNG states: ``train(steps=N)``, then
``train(resume_from=…/last)`` gives bit-identical weights to one uninterrupted run.

**Data parallel** (F16): with ``distributed=True`` under ``torchrun``, each of W processes computes its
share of the rows of the same global batch (every process draws the same batch from the same generator
and takes rows rank, rank + W, …), DDP averages the gradients, and the loss is multiplied by W so that
the update equals the one-process update. One process is the same code path with W = 1. Every
process evaluates the whole validation split (the same number everywhere); the main one writes files.

**Limits.** PyTorch has no fp16 LSTM kernel on CPU (refused with a ConfigError; bf16 works). On a busy
small CPU, tiny models train far faster with ``torch.set_num_threads(1)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arlm.data.cache import EncodedSplit
from arlm.errors import ArlmError, ConfigError, Interrupted, MismatchError
from arlm.evaluate.likelihood import bits_per_unit
from arlm.io import atomic_write
from arlm.models.neural import NeuralLM
from arlm.progress import progress
from arlm.streams import PAD_ID, SOS_ID, as_stream
from arlm.train import checkpoint as ckpt
from arlm.train import compile_cache
from arlm.train.batches import (
    TBPTTStreams,
    loss_targets,
    random_chunks,
    random_sequences,
    validation_chunks,
    validation_sequences,
    validation_streams,
)
from arlm.train.compile_choice import check_compile_setting, choose_compile
from arlm.train.compiled_step import WHOLE_STEP_SUPPORTED, CompiledGradients
from arlm.train.schedules import LR_SCHEDULES, RATIO_SCHEDULES, learning_rate, teacher_forcing_ratio

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# whether oneDNN has bf16 kernels on this CPU (AVX-512 and up; not on an AVX2-only one)
ONEDNN_BF16 = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)())
FUSED_ADAMW_ON_CPU = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)  # torch >= 2.4


class TrainingError(ArlmError):
    """Training cannot go on (a non-finite loss); the last checkpoint on disk is still good."""


def non_finite_loss(value: float, step: int, note: str = "") -> str:
    """The one-line message of a :class:`TrainingError` for a loss that is not finite."""
    return (f"the training loss became {value} at step {step}{note}; the last checkpoint is intact: "
            "lower lr, raise warmup_steps or use grad_clip, then resume from it")


def _record_step(line: str) -> float:
    """The step of one ``metrics.jsonl`` line (a line that is not a record, e.g. half-written by a
    killed process, counts as after every step, so it is dropped)."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


@dataclass
class TrainConfig:
    batch_tokens: int = 8192  # tokens per optimizer step (the batch size in tokens)
    micro_batch_size: int = 16  # rows per forward/backward pass (gradient accumulation below that)
    block_size: int = 128  # tokens per row (the TBPTT length for RNNs)
    lr: float = 1e-3  # peak learning rate
    min_lr: float = 0.0  # learning rate at max_steps (cosine/linear)
    weight_decay: float = 0.1  # on weight matrices only
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_steps: int = 100
    max_steps: int = 1000  # the schedule's length, and where training ends
    max_seconds: float | None = None  # also end after this much wall clock (reported); None: no limit
    schedule: str = "cosine"  # "cosine", "linear" or "constant" after warmup
    grad_clip: float = 1.0  # global gradient norm; 0 turns clipping off
    dtype: str = "fp32"  # "fp32", "bf16" or "fp16" (autocast; fp16 with a GradScaler)
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", …
    eval_interval: int = 100  # steps between validations (and checkpoints); 0: only at the end
    eval_batch_size: int = 32  # rows per validation batch
    eval_batches: int = 0  # validation batches per evaluation, from the split's start (an estimate, as
    # nanoGPT's eval_iters); 0: the whole split (exact)
    patience: int = 0  # stop after this many evaluations without improvement; 0: never
    log_interval: int = 10  # steps between metrics lines
    seed: int = 0
    out_dir: str | None = None  # checkpoints and metrics.jsonl; None: write nothing
    distributed: bool = False  # DDP under torchrun
    scheduled_sampling: str | None = None  # None: teacher forcing; "linear", "exponential", "inverse_sigmoid"
    ss_k: float = 1.0  # k of the teacher-forcing ratio schedule (see arlm.train.schedules)
    ss_c: float = 0.0  # c, the slope of the linear schedule
    ss_min_ratio: float = 0.0  # ε never goes below this
    ss_pick: str = "sample"  # how a replacing token is chosen: "sample" from p, or "argmax"
    show_progress: bool | None = None  # None: a progress bar when stderr is a terminal
    tensorboard: bool = False  # also write the metrics as TensorBoard scalars to out_dir/tensorboard
    compile: bool | str = False  # torch.compile the training step (see compile_model); "auto": only
    # when max_steps is long enough to pay back the compile (arlm.train.compile_choice)
    fused_adamw: bool | None = None  # None: fused on CUDA, in the CPU's compiled whole step
    # (compile=true) and in bf16 on the CPU, for-loop elsewhere on the CPU; True/False: everywhere

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        for name in ("lr", "min_lr", "weight_decay", "eps", "grad_clip", "ss_k", "ss_c", "ss_min_ratio"):
            if not math.isfinite(float(getattr(self, name))):
                raise ConfigError(f"{name} must be a finite number, not {getattr(self, name)}; "
                                  f"fix it with --set {name}=VALUE")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must lie in [0, 1), not {self.betas}; e.g. --set 'betas=[0.9, 0.95]'")
        if self.eps <= 0:
            raise ConfigError(f"eps must be positive, not {self.eps}; e.g. --set eps=1e-8")
        for name in ("batch_tokens", "micro_batch_size", "block_size", "max_steps", "eval_batch_size",
                     "log_interval"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("warmup_steps", "eval_interval", "eval_batches", "patience"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must not be negative, not {getattr(self, name)}")
        if self.batch_tokens < self.block_size:
            raise ConfigError(f"batch_tokens ({self.batch_tokens}) is smaller than one row of block_size "
                              f"({self.block_size}) tokens; raise batch_tokens or lower block_size")
        if self.micro_batch_size > self.batch_rows:
            raise ConfigError(f"the micro-batch ({self.micro_batch_size} rows) is larger than the batch "
                              f"({self.batch_tokens} tokens = {self.batch_rows} rows of {self.block_size}); "
                              "lower micro_batch_size or raise batch_tokens")
        if self.schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown learning-rate schedule {self.schedule!r}; choose one of "
                              f"{', '.join(LR_SCHEDULES)}")
        if self.scheduled_sampling is not None:
            if self.scheduled_sampling not in RATIO_SCHEDULES:
                raise ConfigError(f"unknown scheduled-sampling schedule {self.scheduled_sampling!r}; choose "
                                  f"one of {', '.join(RATIO_SCHEDULES)} or leave it off")
            self.teacher_forcing(0)  # checks k and c
        if self.ss_pick not in ("sample", "argmax"):
            raise ConfigError(f"ss_pick must be 'sample' or 'argmax', not {self.ss_pick!r}")
        check_compile_setting(self.compile)
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.max_seconds is not None and not 0 < self.max_seconds < math.inf:
            raise ConfigError(f"max_seconds must be positive (or none), not {self.max_seconds}")
        if self.lr <= 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError("lr must be positive, and grad_clip and weight_decay not negative; "
                              "fix the values")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from a dict (e.g. a TOML preset's table or a checkpoint's ``train_config``)."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(f"unknown training setting {', '.join(map(repr, unknown))}; "
                              f"the settings are {', '.join(names)}")
        return cls(**values)

    def teacher_forcing(self, step: int) -> float:
        """ε at ``step``: 1.0 (pure teacher forcing) unless scheduled sampling is on."""
        if self.scheduled_sampling is None:
            return 1.0
        return teacher_forcing_ratio(step, self.scheduled_sampling, self.ss_k, self.ss_c, self.ss_min_ratio)

    @property
    def batch_rows(self) -> int:
        """B = batch_tokens // block_size rows per optimizer step."""
        return self.batch_tokens // self.block_size


@dataclass
class TrainSummary:
    """What a call to :meth:`Trainer.train` ended with."""

    step: int
    tokens_seen: int
    train_loss: float | None  # mean loss of the last logged steps
    val_loss: float | None  # at the last evaluation
    best_val_loss: float | None
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # the metrics lines of this call
    stopped_by: str = "max_steps"  # "max_steps", "steps" (the call's own), "max_seconds" or "patience"
    seconds: float = 0.0  # wall clock of this call
    first_step_seconds: float | None = None  # the call's first step (with compile=true: the compile)
    step_seconds: float | None = None  # the median of its other steps (the steady state)
    compiled: bool = False  # whether the step ran compiled

    def step_times(self) -> str | None:
        """The first step's time against the steady state's, in one line (None before two steps)."""
        if self.first_step_seconds is None or self.step_seconds is None:
            return None
        waited = " (it compiled the step)" if self.compiled else ""
        return (f"the first step took {self.first_step_seconds:.1f} s{waited}, the others "
                f"{1e3 * self.step_seconds:.1f} ms each (median); {self.seconds:.1f} s in all")


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: weight matrices decay; biases, norm gains (1-D) and embeddings do not."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for p in model.parameters():  # tied parameters appear once
        if p.requires_grad:
            (no_decay if p.dim() < 2 or id(p) in embeddings else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available; use device='cpu'")
    return device


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(config: TrainConfig) -> DistContext:
    """The process's place in a torchrun job (rank, world size), starting the process group once."""
    if not config.distributed:
        return DistContext()
    import torch.distributed as dist

    missing = [v for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
               if v not in os.environ]
    if missing:
        raise ConfigError(f"distributed training needs the torchrun variables {', '.join(missing)}; "
                          "launch with `torchrun --nproc-per-node N …` or turn distributed off")
    ctx = DistContext(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo"
        dist.init_process_group(backend)
    return ctx


def end_distributed() -> None:
    """End the torchrun process group if one is running. A run calls it on every way out, errors and
    interrupts included (PyTorch warns that resources may leak when a process exits without it)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class TrainingForward(nn.Module):
    """The training forward pass of a model, teacher forcing or scheduled sampling, as one module:
    ``(inputs (B, T), state, ratio ε) -> (logits (B, T, V), state)``. ``state`` is None for the
    families that are not ``recurrent``."""

    def __init__(self, model: NeuralLM, pick: str = "sample") -> None:
        super().__init__()
        self.model = model
        self.pick = pick

    def forward(self, inputs: Tensor, state: Any = None, ratio: float = 1.0) -> tuple[Tensor, Any]:
        if ratio >= 1.0:  # teacher forcing
            return self.model(inputs, state)
        if self.model.recurrent:
            return self._per_step(inputs, state, ratio)
        return self._two_pass(inputs, ratio), None

    def mix(self, gold: Tensor, logits: Tensor, ratio: float) -> Tensor:
        """gold next inputs (B, t), predictions for them (B, t, V) -> gold with probability ε, else a
        token picked from the prediction; [SOS] and [PAD] inputs stay."""
        logits = logits.detach().float()
        if self.pick == "argmax":
            picked = logits.argmax(-1)
        else:
            probs = logits.softmax(-1).flatten(0, -2)  # (B·t, V)
            picked = torch.multinomial(probs, 1).view(gold.shape)
        keep = (torch.rand(gold.shape, device=gold.device) < ratio) | (gold == SOS_ID) | (gold == PAD_ID)
        return torch.where(keep, gold, picked)

    def _two_pass(self, inputs: Tensor, ratio: float) -> Tensor:
        """Mihaylova & Martins (2019): predictions from the gold inputs, then a pass on mixed inputs."""
        with torch.no_grad():
            first, _ = self.model(inputs)  # (B, T, V): first[:, t] predicts x_{t+1}
        mixed = inputs.clone()
        mixed[:, 1:] = self.mix(inputs[:, 1:], first[:, :-1], ratio)
        return self.model(mixed)[0]  # (B, T, V)

    def _per_step(self, inputs: Tensor, state: Any, ratio: float) -> tuple[Tensor, Any]:
        """Bengio et al. (2015): one step at a time, the next input drawn from this step's prediction."""
        token, out = inputs[:, :1], []
        T = inputs.shape[1]
        for t in range(T):
            logits, state = self.model(token, state)  # (B, 1, V)
            out.append(logits)
            if t + 1 < T:
                token = self.mix(inputs[:, t + 1 : t + 2], logits, ratio)  # (B, 1)
        return torch.cat(out, dim=1), state  # (B, T, V)


class TrainingLoss(nn.Module):
    """The training forward pass and its loss as one module (so that DDP wraps all of it):
    ``(inputs (B, T), targets (B, T), state, ratio ε) -> (Σ -log p over the scored targets, state)``.

    With ``compile=True`` the teacher-forcing pass *and its loss* are one ``torch.compile``'d graph
    (:func:`compile_model`): the cross-entropy fuses with the head and the backward of both is
    generated too; scheduled sampling (:class:`TrainingForward`) runs the compiled model."""

    def __init__(self, model: NeuralLM, pick: str = "sample", compile: bool = False) -> None:
        super().__init__()
        device = next(model.parameters()).device
        self.model = model  # the plain module: its weights are the ones trained and saved
        self.passes = TrainingForward(compile_model(model, device) if compile else model, pick)
        self._teacher = compile_model(self._teacher_loss, device) if compile else self._teacher_loss

    def forward(self, inputs: Tensor, targets: Tensor, state: Any = None,
                ratio: float = 1.0) -> tuple[Tensor, Any]:
        if ratio >= 1.0:  # teacher forcing
            return self._teacher(inputs, targets, state)
        logits, state = self.passes(inputs, state, ratio)  # (B, T, V)
        return nll_sum(logits, targets), state

    def _teacher_loss(self, inputs: Tensor, targets: Tensor, state: Any) -> tuple[Tensor, Any]:
        logits, state = self.model(inputs, state)  # (B, T, V)
        return nll_sum(logits, targets), state


def nll_sum(logits: Tensor, targets: Tensor) -> Tensor:
    """logits (B, T, V), targets (B, T) -> Σ -log p(target) over the targets that are not [PAD] (fp32)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=PAD_ID,
                           reduction="sum")


def compile_model(fn: Any, device: torch.device) -> Any:
    """``torch.compile(fn)`` (TorchInductor) of a model or of a function that runs one: the training
    forward and its loss (and so their backward) fused into generated kernels — fewer passes over
    memory, no Python between ops. The weights stay the model's own (checkpoints, evaluation and
    decoding use the model itself). Compiling takes seconds to tens of seconds on the first step (less
    when Inductor's on-disk cache already holds the graph; again for a new input shape); it pays off
    over long runs. Inductor on a CPU generates C++ and needs a compiler: without one, a one-line error
    before training starts.
    """
    import shutil

    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise ConfigError("compile=true on a CPU needs a C++ compiler (g++ or clang++) for TorchInductor; "
                          "install one or set compile=false")
    return torch.compile(fn)


def global_norm(grads: list[Tensor]) -> Tensor:
    """‖g‖₂ of all gradients together, ‖(‖g_1‖, …, ‖g_n‖)‖₂: the per-tensor norms in one foreach call."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def clip_factor(norm: Tensor, max_norm: float) -> Tensor:
    """min(1, c / (‖g‖₂ + 1e-6)) as a 0-dim tensor (clamped on the device: nothing waits for it)."""
    return (max_norm / (norm + 1e-6)).clamp(max=1.0)


def clip_grad_norm(params: list[Tensor], max_norm: float) -> Tensor:
    """Scale the gradients to global norm ``max_norm`` if their norm ‖g‖₂ is above it:
    g <- g · min(1, c / (‖g‖₂ + 1e-6)); returns ‖g‖₂ before clipping.

    The same numbers as ``torch.nn.utils.clip_grad_norm_``, which on the CPU takes each norm in its own
    call: here they are one foreach call. As torch's, the factor is clamped to 1 on the device
    (x · 1.0 = x), so nothing waits for a GPU; the norm is returned as a 0-dim tensor, and reading it
    (``float``) is the caller's wait."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = global_norm(grads)
    torch._foreach_mul_(grads, clip_factor(total, max_norm))
    return total


@contextlib.contextmanager
def _without_onednn() -> Iterator[None]:
    """oneDNN off for the block (``torch.backends.mkldnn.flags`` would also reset its TF32 setting and
    warn about Intel GPUs)."""
    was = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = was


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------


class Trainer:
    """Train a :class:`~arlm.models.neural.NeuralLM` on a flat token stream (see :mod:`arlm.train.batches`).

    >>> trainer = Trainer(model, TrainConfig(max_steps=1000, out_dir="runs/gpt"), train_ids, val_ids)
    >>> summary = trainer.train()                      # or .train(resume_from="runs/gpt/last")
    """

    def __init__(self, model: NeuralLM, config: TrainConfig, train_stream: np.ndarray | Tensor | EncodedSplit,
                 val_stream: np.ndarray | Tensor | EncodedSplit | None = None, tokenizer: Any = None,
                 json_files: dict[str, Any] | None = None) -> None:
        self.config = config
        self.tokenizer = tokenizer  # saved into every checkpoint (then a model folder) when given
        self.json_files = dict(json_files or {})  # more files every checkpoint holds (order.json)
        self.dist = init_distributed(config)
        if config.batch_rows % self.dist.world_size:
            raise ConfigError(f"the batch of {config.batch_rows} rows does not split evenly over "
                              f"{self.dist.world_size} processes; make batch_tokens // block_size a multiple")
        device = resolve_device(config.device)
        if device.type == "cuda" and config.distributed:
            device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        self.model = model.to(device)
        self.tbptt = model.recurrent  # carry the state across batches (truncated BPTT)
        if config.dtype == "fp16" and device.type == "cpu" and getattr(model.config, "cell", None) == "lstm":
            raise ConfigError("PyTorch has no fp16 LSTM kernel on CPU; use dtype='bf16' or 'fp32' "
                              "(or a GRU/RNN cell)")
        self.train_stream = as_stream(train_stream)
        self.val_stream = None if val_stream is None else as_stream(val_stream)
        self.val_chars: int | None = getattr(val_stream, "num_chars", None)  # an EncodedSplit has them
        self.val_tokens: int | None = getattr(val_stream, "num_tokens", None)
        self.sequence_rows = getattr(model, "batch_kind", "chunks") == "sequences"
        self.training_inputs = getattr(model, "training_inputs", None)
        if self.training_inputs is not None and config.scheduled_sampling is not None:
            raise ConfigError(f"the {model.family} model makes its own training inputs; scheduled "
                              "sampling does not apply to it, so leave scheduled_sampling off")
        if self.tbptt:
            self.streams = TBPTTStreams(self.train_stream, config.batch_rows, config.block_size)
        elif self.sequence_rows:  # checks that the stream holds sequences
            random_sequences(self.train_stream, config.block_size, 1, torch.Generator().manual_seed(0))
        else:  # checks that the stream is long enough
            random_chunks(self.train_stream, config.block_size, 1, torch.Generator().manual_seed(0))
        # compile=auto decides here, from the configuration alone (arlm.train.compile_choice)
        self.compiled, self.compile_note = choose_compile(config.compile, config.max_steps, config.dtype,
                                                          device.type)
        self.wrapped: nn.Module = TrainingLoss(self.model, config.ss_pick, self.compiled)
        if config.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(self.wrapped, device_ids=ids)
        # fused AdamW (one kernel over all tensors): by default on CUDA, in the CPU's compiled whole step
        # (arlm.train.compiled_step) and in bf16 on the CPU, elsewhere on the CPU when asked
        # (torch >= 2.4; the CPU's fp32 eager runs keep the for-loop kernel's bits)
        whole_step = self.whole_step_reason() is None
        fused = (device.type == "cuda" or ((whole_step or config.dtype == "bf16") and FUSED_ADAMW_ON_CPU)
                 if config.fused_adamw is None else config.fused_adamw)
        if fused and device.type == "cpu" and not FUSED_ADAMW_ON_CPU:
            raise ConfigError("fused_adamw=true on the CPU needs torch 2.4 or newer; leave it unset")
        self.fused = fused
        self.optimizer = torch.optim.AdamW(param_groups(self.model, config.weight_decay), lr=config.lr,
                                           betas=config.betas, eps=config.eps, fused=self.fused or None)
        # in the model's order, as clip_grad_norm_ took them: the norm's sum order decides its last bits
        self.params = list(self.model.parameters())
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.dtype == "fp16")
        # On CUDA with fused AdamW (no fp16 loss scaling) a step never waits for the GPU: the loss and
        # the gradient norm stay on the device, a non-finite loss makes the fused kernel skip that
        # update (its found_inf input, as for an fp16 overflow), and the loop reads the losses, and
        # raises, at its next log or evaluation. Elsewhere (the CPU, where reading costs nothing) the
        # loss is read and checked at once, before the update.
        self.checks_on_device = device.type == "cuda" and self.fused and config.dtype != "fp16"
        self.whole_step = CompiledGradients(self.model, nll_sum) if whole_step else None
        # the compiled artifacts of an earlier run with the same key, loaded before the first compile
        # (arlm.train.compile_cache); this run's are saved after its first step
        self.artifact_key = None
        self.artifacts_loaded = False
        if self.compiled and compile_cache.ARTIFACTS_SUPPORTED and self.dist.is_main:
            self.artifact_key = compile_cache.artifact_key(self.model, config, device.type,
                                                           self.whole_step is not None)
            self.artifacts_loaded = compile_cache.load_artifacts(self.artifact_key)
        self.generator = torch.Generator().manual_seed(config.seed)  # data order
        torch.manual_seed(config.seed)  # dropout
        # where training stands (all of it goes into a checkpoint)
        self.step = 0
        self.tokens_seen = 0
        self.window_index = 0  # TBPTT: the next window of the epoch
        self.hidden: Any = None  # TBPTT: the carried state of this process's rows
        self.best_val_loss: float | None = None
        self.evals_since_best = 0
        self.stopped_by: str | None = None  # why the last train() call ended (None: still going)
        self.seconds = 0.0  # wall clock of the current train() call, as recorded in checkpoints
        self.out_dir = Path(config.out_dir) if config.out_dir else None
        self.last_saved_step: int | None = None  # the step of out_dir/last, once there is one
        self.tensorboard = self._tensorboard_writer() if config.tensorboard else None

    # ----- one optimizer step -------------------------------------------------------------------

    def whole_step_reason(self) -> str | None:
        """None when each step runs as one compiled graph, forward to update
        (:mod:`arlm.train.compiled_step`); otherwise why it does not (then ``compile=true`` compiles the
        forward pass and its loss, :func:`compile_model`)."""
        cfg = self.config
        for off, why in ((not self.compiled, "compile is off"),
                         (self.device.type != "cpu", "it is used on the CPU only"),
                         (cfg.dtype != "fp32", f"dtype is {cfg.dtype}, not fp32"),
                         (self.tbptt, "a recurrent family carries its state from batch to batch"),
                         (cfg.scheduled_sampling is not None, "scheduled sampling is on"),
                         (cfg.distributed, "the run is distributed"),
                         (cfg.micro_batch_size < cfg.batch_rows,
                          f"a step has {math.ceil(cfg.batch_rows / cfg.micro_batch_size)} micro-batches"),
                         (not WHOLE_STEP_SUPPORTED, f"torch {torch.__version__} is too old for it")):
            if off:
                return why
        return None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's precision context: autocast to bf16/fp16, or nothing for fp32."""
        if self.config.dtype == "fp32":
            return contextlib.nullcontext()
        cast = torch.autocast(self.device.type, dtype=DTYPES[self.config.dtype])
        if self.device.type == "cpu" and self.config.dtype == "bf16" and not ONEDNN_BF16:
            # oneDNN's bf16 kernels need AVX-512 (its LSTM refuses to build on an AVX2-only CPU):
            # there ATen's own kernels run instead (the LSTM's in fp32)
            stack = contextlib.ExitStack()
            stack.enter_context(_without_onednn())
            stack.enter_context(cast)
            return stack
        return cast

    def next_batch(self) -> Tensor:
        """The global batch (B, T+1) of this step, the same on every process; advances the data position."""
        cfg = self.config
        if self.sequence_rows:
            return random_sequences(self.train_stream, cfg.block_size, cfg.batch_rows, self.generator)
        if not self.tbptt:
            return random_chunks(self.train_stream, cfg.block_size, cfg.batch_rows, self.generator)
        if self.window_index >= len(self.streams):  # a new epoch: back to the start, fresh state
            self.window_index, self.hidden = 0, None
        window = self.streams.window(self.window_index)
        self.window_index += 1
        return window

    def _local_rows(self, window: Tensor) -> Tensor:
        """This process's rows of the global batch: rank, rank + W, rank + 2W, …"""
        return window[self.dist.rank :: self.dist.world_size]

    def _batch(self, window: Tensor) -> tuple[Tensor, Tensor, int]:
        """The global batch ``window`` (B, T+1) -> this process's inputs and targets (B/W, T) on the
        device, and N, the number of scored targets of the whole global batch."""
        if self.training_inputs is None:
            all_inputs, all_targets = loss_targets(window)
        else:  # the model's own inputs (σ-GPT: a fresh order per row, from the data generator)
            progress = self.step / max(1, self.config.max_steps - 1)  # 0 at the first step, 1 at the last
            all_inputs, all_targets = self.training_inputs(window, self.generator, progress)
        n_targets = max(1, int((all_targets != PAD_ID).sum()))  # N of the whole global batch
        inputs, targets = self._local_rows(all_inputs), self._local_rows(all_targets)
        if self.device.type == "cuda":  # copied from pinned memory, the copy does not hold up the host
            inputs, targets = inputs.pin_memory(), targets.pin_memory()
        return (inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True),
                n_targets)

    def _finite(self, value: float) -> float:
        """The step's loss, or :class:`TrainingError` if it is not finite."""
        if not math.isfinite(value):
            raise TrainingError(non_finite_loss(value, self.step))
        return value

    def backward(self, window: Tensor, ratio: float = 1.0) -> float | Tensor:
        """Accumulate ∇L of the global batch ``window`` (B, T+1) into ``.grad`` over micro-batches.

        ``ratio`` is the teacher-forcing ratio ε (1.0: teacher forcing). Returns L, the mean NLL per
        scored target of the whole batch (all processes): a float, after raising
        :class:`TrainingError` if it is not finite (nothing has been updated yet); with
        ``checks_on_device``, a 0-dim device tensor, unread.
        """
        cfg = self.config
        inputs, targets, n_targets = self._batch(window)
        micro = list(range(0, inputs.shape[0], cfg.micro_batch_size))
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        new_hidden = []
        for i, start in enumerate(micro):
            rows = slice(start, start + cfg.micro_batch_size)
            sync = i == len(micro) - 1 or not cfg.distributed
            with contextlib.nullcontext() if sync else self.wrapped.no_sync():
                hidden = None
                if self.hidden is not None:
                    hidden = self.hidden.select(torch.arange(inputs.shape[0], device=self.device)[rows])
                with self.autocast():  # the forward pass only; backward runs in the forward's dtypes
                    loss_sum, state = self.wrapped(inputs[rows], targets[rows], hidden, ratio)
                if state is not None:
                    new_hidden.append(state.detach())
                # Σ over this micro-batch / N of the whole batch (× W: DDP averages over processes)
                loss = loss_sum * (self.dist.world_size / n_targets)
                self.scaler.scale(loss).backward()
            total += loss_sum.detach()
        if self.tbptt:  # the micro-batches' states, back in one piece
            parts = [s.tensors() for s in new_hidden]
            dim = type(new_hidden[0]).batch_dim
            self.hidden = type(new_hidden[0]).from_tensors(
                {k: torch.cat([p[k] for p in parts], dim=dim) for k in parts[0]})
        if cfg.distributed:
            import torch.distributed as dist

            dist.all_reduce(total)
        if self.checks_on_device:
            return total / n_targets
        return self._finite(float(total) / n_targets)

    def train_step(self) -> dict[str, Any]:
        """One optimizer step: learning rate, accumulated gradient, clipping, update.

        Returns the step's loss, learning rate, gradient norm and teacher-forcing ratio; with
        ``checks_on_device`` the loss and norm are 0-dim device tensors (read them with ``float``)."""
        cfg = self.config
        lr = learning_rate(self.step, lr=cfg.lr, warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps,
                           schedule=cfg.schedule, min_lr=cfg.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if not (self.wrapped.training and self.model.training):  # after a caller's eval()
            self.wrapped.train()  # (a walk over every module, each step it would cost ~2% of a small step)
        window = self.next_batch()
        ratio = cfg.teacher_forcing(self.step)
        if self.whole_step is not None:  # the step as one compiled graph (the CPU, see whole_step_reason)
            loss, grad_norm = self._whole_step(window)
        else:
            loss, grad_norm = self._step_in_parts(window, ratio)
        self.step += 1
        self.tokens_seen += window.shape[0] * (window.shape[1] - 1)
        if self.artifact_key is not None:  # the first compiled step is done: keep what it compiled
            self._keep_artifacts()
        return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "teacher_forcing": ratio}

    def _keep_artifacts(self) -> None:
        """Save the compiled artifacts for later runs (:mod:`arlm.train.compile_cache`), unless they
        were loaded and torch's caches answered every lookup (nothing new to keep)."""
        counts = compile_cache.cache_counters()
        if not (self.artifacts_loaded and counts["graph_misses"] == 0 and counts["autograd_misses"] == 0):
            compile_cache.save_artifacts(self.artifact_key)
        self.artifact_key = None

    def _whole_step(self, window: Tensor) -> tuple[float, float | None]:
        """The step's gradients in one compiled graph (:mod:`arlm.train.compiled_step`), then the update
        -> (loss, norm before clipping). A non-finite loss raises before anything is updated."""
        inputs, targets, n_targets = self._batch(window)
        scale = torch.tensor(1.0 / n_targets)  # a tensor: no recompiles
        loss_sum, grads = self.whole_step(inputs, targets, scale)
        loss = self._finite(float(loss_sum) / n_targets)
        for p, g in zip(self.whole_step.params, grads, strict=True):
            p.grad = g
        return loss, self._update(loss)

    def _step_in_parts(self, window: Tensor, ratio: float) -> tuple[float | Tensor, float | Tensor | None]:
        """Backward over the micro-batches, clipping, the optimizer's step -> (loss, norm before clipping)."""
        loss = self.backward(window, ratio)
        return loss, self._update(loss)

    def _update(self, loss: float | Tensor) -> float | Tensor | None:
        """Clip the gradients in ``.grad``, step the optimizer, clear them -> the norm before clipping (None:
        clipping is off)."""
        cfg = self.config
        grad_norm = None
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            grad_norm = clip_grad_norm(self.params, cfg.grad_clip)
            if not self.checks_on_device:
                grad_norm = float(grad_norm)
        if self.checks_on_device:  # the fused kernel skips the whole update where the loss is not finite
            self.optimizer.found_inf = torch.isfinite(loss).logical_not().float()
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf
        else:
            self.scaler.step(self.optimizer)  # skipped by the scaler if fp16 gradients overflowed
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    # ----- evaluation -----------------------------------------------------------------------------

    def _val_batches(self) -> Iterator[Tensor]:
        cfg = self.config
        if self.tbptt:
            return validation_streams(self.val_stream, cfg.eval_batch_size, cfg.block_size)
        if self.sequence_rows:
            return validation_sequences(self.val_stream, cfg.block_size, cfg.eval_batch_size)
        return validation_chunks(self.val_stream, cfg.block_size, cfg.eval_batch_size)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean NLL per scored target over the whole validation split (every process computes it all),
        perplexity exp(loss), and bits per character when the split is an EncodedSplit.

        With ``eval_batches`` = n > 0, over the split's first n batches only (the same ones every
        time): an estimate, whose bits per character is the loss in bits times the whole split's
        targets per character.

        The split is read as one stream (:mod:`arlm.train.batches`): a sequence's first tokens see the
        end of the previous sequence in their window, so this is close to, not the same as,
        :func:`arlm.evaluate.likelihood.evaluate_likelihood`, which scores each sequence alone."""
        if self.val_stream is None:
            raise ConfigError("no validation stream was given; pass val_stream to the Trainer")
        self.model.eval()
        nll, count, hidden = 0.0, 0, None
        cap = self.config.eval_batches
        for i, window in enumerate(self._val_batches()):
            if cap and i == cap:
                break
            inputs, targets = loss_targets(window.to(self.device))
            with self.autocast():
                logits, hidden = self.model(inputs, hidden)  # hidden stays None unless recurrent
            nll += float(nll_sum(logits, targets))
            count += int((targets != PAD_ID).sum())
        self.model.train()
        loss = nll / max(1, count)
        out = {"val_loss": loss, "val_ppl": math.exp(loss) if loss < 709 else float("inf")}
        if self.val_chars and not cap:
            out["val_bits_per_char"] = bits_per_unit(nll, self.val_chars)
        elif self.val_chars and self.val_tokens:  # the targets of a stream: every token but the first
            out["val_bits_per_char"] = bits_per_unit(loss * (self.val_tokens - 1), self.val_chars)
        return out

    # ----- checkpoints --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything but tensors that a resumed run needs (JSON-ready)."""
        return {"step": self.step, "tokens_seen": self.tokens_seen, "window_index": self.window_index,
                "generator": ckpt.generator_state(self.generator), "best_val_loss": self.best_val_loss,
                "evals_since_best": self.evals_since_best, "world_size": self.dist.world_size,
                "stopped_by": self.stopped_by, "seconds": round(self.seconds, 3),
                "train_config": dataclasses.asdict(self.config)}

    def save(self, folder: str | Path) -> Path:
        """Write a checkpoint of the current state to ``folder`` (main process only)."""
        hidden = {} if self.hidden is None else self.hidden.tensors()
        if self.config.distributed and hidden:  # gather every process's rows, back in global order
            import torch.distributed as dist

            dim = type(self.hidden).batch_dim
            full = {}
            for k, v in hidden.items():
                parts = [torch.empty_like(v) for _ in range(self.dist.world_size)]
                dist.all_gather(parts, v.contiguous())
                stacked = torch.stack(parts, dim=dim + 1)  # (…, B_local, W, …): row j of rank r is r + jW
                full[k] = stacked.flatten(dim, dim + 1)
            hidden = full
        if self.dist.is_main:
            ckpt.save_checkpoint(folder, self.model, self.optimizer, self.state(), self.scaler, hidden,
                                 self.tokenizer, self.json_files)
        if self.config.distributed:
            import torch.distributed as dist

            dist.barrier()
        return Path(folder)

    def load(self, folder: str | Path) -> None:
        """Restore model, optimizer, scaler, data position, hidden state and RNGs from a checkpoint."""
        meta = ckpt.read_state(folder)
        saved = meta.get("train_config", {})
        ours = dataclasses.asdict(self.config)
        for name in ("block_size", "batch_tokens"):  # they fix the data position's meaning
            if saved.get(name) != ours[name]:
                raise MismatchError(f"checkpoint {folder} was trained with {name}={saved.get(name)}, not "
                                    f"{ours[name]}; resume with the same {name} (or start a new run)")
        meta, hidden = ckpt.load_checkpoint(folder, self.model, self.optimizer, self.scaler, state=meta)
        for group in self.optimizer.param_groups:  # the saved groups carry their implementation: use ours
            group["fused"], group["foreach"] = self.fused or None, None
        self.step = int(meta["step"])
        if self.out_dir is not None and Path(folder).resolve() == (self.out_dir / "last").resolve():
            self.last_saved_step = self.step  # this run's own last checkpoint
        self._forget_metrics_after(self.step)
        self.tokens_seen = int(meta["tokens_seen"])
        self.window_index = int(meta["window_index"])
        ckpt.set_generator_state(self.generator, meta["generator"])
        self.best_val_loss = meta["best_val_loss"]
        self.evals_since_best = int(meta["evals_since_best"])
        if hidden:
            cls = self.model.state_class
            rows = torch.arange(self.dist.rank, next(iter(hidden.values())).shape[cls.batch_dim],
                                self.dist.world_size)
            self.hidden = cls.from_tensors({k: v.index_select(cls.batch_dim, rows).contiguous()
                                            for k, v in hidden.items()})
        else:
            self.hidden = None

    # ----- the loop -----------------------------------------------------------------------------

    def _tensorboard_writer(self):
        """A TensorBoard SummaryWriter on out_dir/tensorboard (main process only)."""
        if self.out_dir is None:
            raise ConfigError("tensorboard needs an out_dir to write to; set out_dir (--out)")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigError("tensorboard=true needs the tensorboard package; "
                              "pip install tensorboard, or drop the option") from e
        return SummaryWriter(str(self.out_dir / "tensorboard")) if self.dist.is_main else None

    def read_losses(self, losses: list[float | Tensor],
                    history: list[dict[str, Any]] | None = None) -> list[float]:
        """The losses that :meth:`train_step` returned for the last ``len(losses)`` steps, as floats
        (one wait for the device when they are tensors), raising :class:`TrainingError` at the first
        that is not finite (its update was skipped on the device, as the CPU path skips it; the last
        checkpoint is intact). A loop that calls ``train_step`` itself reads them this way."""
        unread = [i for i, loss in enumerate(losses) if isinstance(loss, Tensor)]
        if not unread:
            return losses  # type: ignore[return-value]  (floats: read and checked by backward already)
        values = list(losses)
        for i, value in zip(unread, torch.stack([losses[i] for i in unread]).tolist(), strict=True):
            values[i] = value
            if not math.isfinite(value):
                step = self.step - len(values) + i
                message = non_finite_loss(value, step, " (that update was skipped)")
                if history is not None:
                    self._log({"step": step, "error": message}, history)
                raise TrainingError(message)
        return values

    def _forget_metrics_after(self, step: int) -> None:
        """Drop the records of steps after ``step`` from ``metrics.jsonl`` (atomically): a run resumed
        from a checkpoint at ``step`` logs those steps again, so the file keeps holding one run, each
        step once."""
        path = None if self.out_dir is None else self.out_dir / "metrics.jsonl"
        if path is None or not self.dist.is_main or not path.is_file():
            return
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if _record_step(line) <= step]
        if len(kept) != len(lines):
            with atomic_write(path) as f:
                f.writelines(kept)

    def _log(self, record: dict[str, Any], history: list[dict[str, Any]]) -> None:
        history.append(record)
        if self.out_dir is not None and self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for name, value in record.items():
                if name != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                    self.tensorboard.add_scalar(name, value, record["step"])
            self.tensorboard.flush()

    def _evaluate_and_save(self, history: list[dict[str, Any]]) -> tuple[float | None, bool]:
        """Validate, log, write last/ (and best/ when improved); returns (val loss, stop early?)."""
        val = None
        improved = False
        if self.val_stream is not None:
            metrics = self.evaluate()
            val = metrics["val_loss"]
            improved = self.best_val_loss is None or val < self.best_val_loss
            if improved:
                self.best_val_loss, self.evals_since_best = val, 0
            else:
                self.evals_since_best += 1
            self._log({"step": self.step, "tokens": self.tokens_seen, **metrics}, history)
        patience = self.config.patience
        stop = bool(patience and self.evals_since_best >= patience)
        if stop:
            self.stopped_by = "patience"
        if self.out_dir is not None:
            self.save(self.out_dir / "last")
            self.last_saved_step = self.step
            if improved:
                self.save(self.out_dir / "best")
        return val, stop

    @contextlib.contextmanager
    def _noting_interrupts(self) -> Iterator[None]:
        """An interrupt (Ctrl-C, SIGTERM) leaves with a note of what is on disk: the last checkpoint
        and how to resume from it (every checkpoint is written whole, so the last one is good)."""
        try:
            yield
        except (KeyboardInterrupt, Interrupted) as e:
            if self.dist.is_main:
                e.add_note(self.saved_note())
            raise

    def saved_note(self) -> str:
        """What this run has on disk, in one sentence (said when it is interrupted)."""
        if self.out_dir is None:
            return f"training stopped at step {self.step}; nothing was saved (no out_dir)"
        last = self.out_dir / "last"
        saved = self.last_saved_step
        if last.is_dir():  # the disk decides: an interrupt may come after a swap, before its bookkeeping
            with contextlib.suppress(ArlmError):
                saved = int(ckpt.read_state(last)["step"])
        if saved is None:
            return f"training stopped at step {self.step} before its first checkpoint; nothing was saved"
        return (f"training stopped at step {self.step}; the last checkpoint is {last} (step {saved}): "
                f"continue with --resume {last}")

    def train(self, resume_from: str | Path | None = None, steps: int | None = None) -> TrainSummary:
        """Train until ``max_steps`` (or ``steps`` more steps, ``max_seconds`` of this call's wall clock,
        or early stopping, whichever comes first); returns a summary that says which.

        ``resume_from`` continues exactly from a checkpoint folder (e.g. ``out_dir/last``).
        """
        cfg = self.config
        if resume_from is not None:
            self.load(resume_from)
        end = cfg.max_steps if steps is None else min(cfg.max_steps, self.step + steps)
        self.stopped_by = None
        history: list[dict[str, Any]] = []
        losses: list[float] = []
        train_loss = val = None
        stopped = False
        t0, tokens0 = time.perf_counter(), self.tokens_seen
        step_times: list[float] = []  # wall clock of each step (reported; nothing depends on it)
        with progress(cfg.show_progress if self.dist.is_main else False) as bar, self._noting_interrupts():
            task = bar.add_task("training", total=cfg.max_steps, completed=self.step)
            while self.step < end:
                try:
                    started = time.perf_counter()
                    out = self.train_step()
                    step_times.append(time.perf_counter() - started)
                except TrainingError as e:
                    self._log({"step": self.step, "error": str(e)}, history)
                    raise
                losses.append(out["loss"])  # a float, or an unread device tensor (checks_on_device)
                bar.advance(task)
                self.seconds = time.perf_counter() - t0
                if cfg.max_seconds is not None and self.seconds >= cfg.max_seconds and self.step < end:
                    end = self.step  # the clock ran out first: end here (log, evaluate, save)
                    self.stopped_by = "max_seconds"
                if self.step == end and self.stopped_by is None:
                    self.stopped_by = "max_steps" if end == cfg.max_steps else "steps"
                evaluating = (bool(cfg.eval_interval and self.step % cfg.eval_interval == 0)
                              or self.step == end)
                if self.step % cfg.log_interval == 0 or evaluating:
                    losses = self.read_losses(losses, history)  # (a wait for the GPU, at most here)
                if self.step % cfg.log_interval == 0 or self.step == end:
                    elapsed = max(time.perf_counter() - t0, 1e-9)
                    train_loss = sum(losses) / len(losses)
                    rate = (self.tokens_seen - tokens0) / elapsed
                    grad_norm = None if out["grad_norm"] is None else float(out["grad_norm"])
                    self._log({"step": self.step, "tokens": self.tokens_seen, "loss": train_loss,
                               "lr": out["lr"], "grad_norm": grad_norm, "tokens_per_s": rate,
                               "teacher_forcing": out["teacher_forcing"]},
                              history)
                    bar.update(task, description=f"training  loss {train_loss:.3f}  lr {out['lr']:.2e}  "
                                                 f"{rate:,.0f} tok/s")
                    losses = []
                if evaluating:
                    val, stopped = self._evaluate_and_save(history)
                    if stopped:
                        break
        self.seconds = time.perf_counter() - t0
        return TrainSummary(self.step, self.tokens_seen, train_loss, val, self.best_val_loss, stopped,
                            history, self.stopped_by or "max_steps", self.seconds,
                            step_times[0] if step_times else None,
                            float(np.median(step_times[1:])) if len(step_times) > 1 else None,
                            self.compiled)
