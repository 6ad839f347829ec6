"""The whole training step as one compiled graph: forward, loss, backward, clipping and AdamW.

``compile=true`` (:func:`~arlm.train.trainer.compile_model`) compiles the forward pass and its loss;
the backward pass then runs as a second generated graph, called by autograd's engine, and clipping and
the optimizer run as ordinary PyTorch calls. On a GPU, whose queue hides the host's work, that is
enough. On a CPU, for a small model, about a fifth of a step went to what runs *between* the generated
kernels: autograd's engine, the optimizer's Python, the wrapper code that calls each kernel. Here one
function does all of a step,

    g = ∇_θ L(θ; batch)                          (torch.func: the backward is traced, not run by autograd)
    g ← g · min(1, c / (‖g‖₂ + 1e-6))            (clipping to global norm c)
    θ ← AdamW(θ, g)                              (below)

and ``torch.compile`` turns it into one graph, with Inductor's wrapper code in C++ (``cpp_wrapper``):
no Python runs between the first kernel of the forward pass and the last of the update. On the nanoGPT
baby config this step was 1.09× (1 thread) to 1.15× (2 threads) the compiled-model step
(docs/training.md, "Levers tried on the CPU training step").

**AdamW** (Loshchilov & Hutter 2019), as ``torch.optim.AdamW`` computes it, with t the step count:

    m ← β₁ m + (1 − β₁) g                         v ← β₂ v + (1 − β₂) g²
    θ ← θ (1 − η λ) − η/(1 − β₁ᵗ) · m / (√(v / (1 − β₂ᵗ)) + ε)

λ is the decay of the parameter's group (weight matrices only). The moments and step counts live in
the trainer's ``torch.optim.AdamW`` (its ``state``), so checkpoints, resuming and the other training
paths read and write the same tensors.

**A non-finite loss changes nothing**: each new value is ``where(isfinite(L), new, old)``, fused into
the update's kernels, so the trainer can raise its error with the weights and moments as they were
before the step (as the eager path does, which checks the loss before updating).

It applies where the step is one forward and one backward pass: the CPU, fp32, teacher forcing, one
micro-batch per step, no carried state (the stateless families) and one process; the trainer uses the
compiled model otherwise (:meth:`~arlm.train.trainer.Trainer.whole_step_reason`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from arlm.models.neural import NeuralLM

# what the whole step asks of torch.compile: the guard_filter_fn option (it came with these helpers) and
# isolate_recompiles; with an older torch the trainer compiles the model instead
WHOLE_STEP_SUPPORTED = (hasattr(torch.compiler, "keep_tensor_guards_unsafe")
                        and "isolate_recompiles" in inspect.signature(torch.compile).parameters)


def global_norm(grads: list[Tensor]) -> Tensor:
    """‖g‖₂ of all gradients together, ‖(‖g_1‖, …, ‖g_n‖)‖₂. Run eagerly, the per-tensor norms are one
    foreach call; traced by torch.compile, one norm per tensor, which Inductor generates as its own
    reductions (its C++ wrapper has no shim for the foreach norm and would call it through Python: 1% of
    a baby-config step)."""
    if torch.compiler.is_compiling():
        norms = [torch.linalg.vector_norm(g) for g in grads]
    else:
        norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack(norms))


def clip_factor(norm: Tensor, max_norm: float) -> Tensor:
    """min(1, c / (‖g‖₂ + 1e-6)) as a 0-dim tensor (clamped on the device: nothing waits for it)."""
    return (max_norm / (norm + 1e-6)).clamp(max=1.0)


def adamw_update(p: Tensor, g: Tensor, m: Tensor, v: Tensor, t: Tensor, lr: Tensor, beta1: float,
                 beta2: float, eps: float, weight_decay: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One AdamW update of one parameter -> the new (θ, m, v, t); nothing is written in place."""
    t = t + 1
    m = m.lerp(g, 1 - beta1)  # m + (1 − β₁)(g − m), as torch computes it
    v = v * beta2 + (1 - beta2) * g * g
    step_size = lr / (1 - beta1 ** t)
    denom = (v / (1 - beta2 ** t)).sqrt() + eps
    return p * (1 - lr * weight_decay) - step_size * m / denom, m, v, t


class WholeStep:
    """``step(inputs (B, T), targets (B, T), scale, lr) -> (Σ NLL of the batch, ‖g‖₂ before clipping)``,
    having updated the model's parameters and the optimizer's state in place.

    ``nll_sum(logits, targets)`` is the loss, Σ −log p over the scored targets; ``scale`` (a 0-dim
    tensor) multiplies it before differentiating (1/N for the mean over the batch's N scored targets),
    and ``lr`` (a 0-dim tensor) is this step's learning rate: as tensors, neither makes the graph
    compile again when it changes. ``grad_clip`` 0 turns clipping off (the norm returned is then None).
    """

    def __init__(self, model: NeuralLM, optimizer: torch.optim.AdamW,
                 nll_sum: Callable[[Tensor, Tensor], Tensor], grad_clip: float) -> None:
        self.model, self.optimizer, self.nll_sum, self.grad_clip = model, optimizer, nll_sum, grad_clip
        trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]  # tied ones once
        self.names, self.params = [name for name, _ in trained], [p for _, p in trained]
        group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
        self.groups = [group_of[id(p)] for p in self.params]
        # cpp_wrapper: Inductor's code that calls the kernels in C++ (5% of a baby-config step);
        # guard_filter_fn: see _only_the_batch_and_hyperparameters; dynamic=False: a run's shapes are fixed,
        # so a new shape compiles a graph for it, not a symbolic one; isolate_recompiles: every
        # WholeStep has its own graphs and its own limit of 8, otherwise all the trainers of a process
        # share them and the 9th model or setting fails (fullgraph=True cannot fall back to eager)
        self.compiled = torch.compile(self._step, fullgraph=True, dynamic=False, isolate_recompiles=True,
                                      options={"cpp_wrapper": True,
                                               "guard_filter_fn": _only_the_batch_and_hyperparameters})

    def __call__(self, inputs: Tensor, targets: Tensor, scale: Tensor,
                 lr: Tensor) -> tuple[Tensor, Tensor | None]:
        state = [self._state(p) for p in self.params]
        loss, norm = self.compiled([p.detach() for p in self.params], [s["exp_avg"] for s in state],
                                   [s["exp_avg_sq"] for s in state], [s["step"] for s in state],
                                   inputs, targets, scale, lr)
        return loss, norm if self.grad_clip > 0 else None

    def _state(self, p: Tensor) -> dict[str, Tensor]:
        """The optimizer's state of ``p``, created as torch.optim.AdamW creates it on its first step."""
        state = self.optimizer.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _step(self, params: list[Tensor], exp_avg: list[Tensor], exp_avg_sq: list[Tensor],
              steps: list[Tensor], inputs: Tensor, targets: Tensor, scale: Tensor,
              lr: Tensor) -> tuple[Tensor, Tensor]:
        """The traced function: every tensor it changes is changed with ``copy_`` at the end."""

        def scaled_loss(named: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
            logits, _ = torch.func.functional_call(self.model, named, (inputs, None))  # (B, T, V)
            loss_sum = self.nll_sum(logits, targets)
            return loss_sum * scale, loss_sum

        named = dict(zip(self.names, params, strict=True))
        grads, loss_sum = torch.func.grad(scaled_loss, has_aux=True)(named)
        grads = [grads[name] for name in self.names]
        norm = global_norm(grads)
        if self.grad_clip > 0:
            factor = clip_factor(norm, self.grad_clip)
            grads = [g * factor for g in grads]
        finite = torch.isfinite(loss_sum)
        with torch.no_grad():
            for i, group in enumerate(self.groups):
                beta1, beta2 = group["betas"]
                new = adamw_update(params[i], grads[i], exp_avg[i], exp_avg_sq[i], steps[i], lr, beta1,
                                   beta2, group["eps"], group["weight_decay"])
                for old, value in zip((params[i], exp_avg[i], exp_avg_sq[i], steps[i]), new, strict=True):
                    old.copy_(torch.where(finite, value, old))
        return loss_sum, norm


# the guards the compiled step keeps: Dynamo's checks of the global state (grad mode, default device, …:
# their name is empty), of the call's batch and its two scalars, and of the hyperparameters the graph
# holds as constants (clipping, the groups' betas, eps and weight decay: a change compiles a new graph).
# torch 2.13 names them `inputs`, `self.groups[0]`; older versions wrote `L['inputs']`: both match, so
# another naming keeps these guards rather than dropping them
_CHECKED = re.compile(r"(L\[')?(inputs|targets|scale|lr)\b|(L\['self'\]|self)\.(grad_clip|groups)\b")


def _only_the_batch_and_hyperparameters(guards: list[Any]) -> list[bool]:
    """Which of Dynamo's guards the compiled step keeps: those named by ``_CHECKED`` and the global
    state's. Dropped are the checks of what cannot change during a run and would cost ~1% of a baby-config
    step before every call: the dtype, shape and strides of the 4 × 27 parameter, moment and step-count
    tensors, that none of them aliases another, and the model's module tree (its ~1000 attribute
    checks: the step was traced through this model, which the trainer owns and puts in training mode
    before every step; a module swapped or a dropout rate changed in the middle of a run is not seen)."""
    return [not g.name or _CHECKED.match(g.name) is not None for g in guards]
