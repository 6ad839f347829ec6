"""The whole training step on the CPU: the forward and backward pass as one compiled graph, then
clipping and torch's fused AdamW.

``compile=true`` (:func:`~arlm.train.trainer.compile_model`) compiles the forward pass and its loss;
the backward pass then runs as a second generated graph, called by autograd's engine. On a GPU, whose
queue hides the host's work, that is enough. On a CPU, for a small model, about a fifth of a step went
to what runs *between* the generated kernels: autograd's engine and the wrapper code that calls each
kernel. Here the gradient is one traced function,

    g = ∇_θ L(θ; batch)                          (torch.func: the backward is traced, not run by autograd)

that ``torch.compile`` turns into one graph, with Inductor's wrapper code in C++ (``cpp_wrapper``): no
Python runs between the first kernel of the forward pass and the last of the backward. Then the
trainer updates as on its other paths (``Trainer._update``), eagerly:

    g ← g · min(1, c / (‖g‖₂ + 1e-6))            (clipping to global norm c: one foreach call)
    θ ← AdamW(θ, g)                              (the trainer's torch.optim.AdamW: its fused kernel)

**Why the update is not in the graph.** Until 2026-12-05 clipping and AdamW were written out inside the
graph. On nanoGPT's baby config at 2 threads that half of the graph cost half of a compile from empty
caches (41.8 s against 20.9 s for the forward and backward alone) and ran slower than torch's fused CPU
AdamW, one C++ call over every tensor (~2 ms a step inside the graph, under the profiler; fused AdamW
0.44 ms, the foreach clipping 0.25 ms): the step is as fast (37.7 against 37.8 ms median) and starts
training in half the time (docs/training.md, "Compiled training"). The trainer makes its AdamW fused
where this step applies (unless ``fused_adamw=false`` asks for the for-loop kernel).

**A non-finite loss changes nothing**: the update runs only after the loss is read and found finite
(reading it costs nothing on a CPU), so the trainer raises its error with the weights and moments as
they were before the step, as the eager path does.

It applies where the step is one forward and one backward pass: the CPU, fp32, teacher forcing, one
micro-batch per step, no carried state (the stateless families) and one process; the trainer uses the
compiled model otherwise (:meth:`~arlm.train.trainer.Trainer.whole_step_reason`).
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from arlm.models.neural import NeuralLM

# what the whole step asks of torch.compile: the guard_filter_fn option (it came with these helpers) and
# isolate_recompiles; with an older torch the trainer compiles the model instead
WHOLE_STEP_SUPPORTED = (hasattr(torch.compiler, "keep_tensor_guards_unsafe")
                        and "isolate_recompiles" in inspect.signature(torch.compile).parameters)


class CompiledGradients:
    """``gradients(inputs (B, T), targets (B, T), scale) -> (Σ NLL of the batch, [∇ of scale · Σ NLL for
    each trained parameter])``, the parameters in ``named_parameters`` order (tied ones once: ``params``).

    ``nll_sum(logits, targets)`` is the loss, Σ −log p over the scored targets; ``scale`` (a 0-dim
    tensor) multiplies it before differentiating (1/N for the mean over the batch's N scored targets):
    as a tensor, a new value does not compile the graph again. The trainer puts the gradients in
    ``.grad`` and updates as its other paths do (clipping, the optimizer's step).
    """

    def __init__(self, model: NeuralLM, nll_sum: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.model, self.nll_sum = model, nll_sum
        trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]  # tied ones once
        self.names, self.params = [name for name, _ in trained], [p for _, p in trained]
        # cpp_wrapper: Inductor's code that calls the kernels in C++ (5% of a baby-config step; and a
        # compile from empty caches 20.9 s against 24.9 s with the Python wrapper);
        # guard_filter_fn: see _only_the_batch; dynamic=False: a run's shapes are fixed, so a new shape
        # compiles a graph for it, not a symbolic one; isolate_recompiles: every CompiledGradients has
        # its own graphs and its own limit of 8, otherwise all the trainers of a process share them and
        # the 9th model fails (fullgraph=True cannot fall back to eager)
        self.compiled = torch.compile(self._gradients, fullgraph=True, dynamic=False, isolate_recompiles=True,
                                      options={"cpp_wrapper": True, "guard_filter_fn": _only_the_batch})

    def __call__(self, inputs: Tensor, targets: Tensor, scale: Tensor) -> tuple[Tensor, list[Tensor]]:
        with _deterministic_algorithms():
            return self.compiled([p.detach() for p in self.params], inputs, targets, scale)

    def _gradients(self, params: list[Tensor], inputs: Tensor, targets: Tensor,
                   scale: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The traced function: (Σ NLL of the batch, ∇ of scale · Σ NLL for each of ``params``)."""

        def scaled_loss(named: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
            logits, _ = torch.func.functional_call(self.model, named, (inputs, None))  # (B, T, V)
            loss_sum = self.nll_sum(logits, targets)
            return loss_sum * scale, loss_sum

        named = dict(zip(self.names, params, strict=True))
        grads, loss_sum = torch.func.grad(scaled_loss, has_aux=True)(named)
        return loss_sum, [grads[name] for name in self.names]


@contextlib.contextmanager
def _deterministic_algorithms() -> Iterator[None]:
    """torch's deterministic algorithms on for the block, as they were after it. Under them Inductor
    leaves the embeddings' gradient (a scatter-add, ``index_put`` with accumulation) to ATen's
    deterministic kernel; its own kernel adds with atomics, so that with 2 threads the same seed gave
    weights that differed in the last bits from run to run. Set around every call, not only the one
    that compiles: Dynamo guards on the setting, so the graph is compiled once and always reused."""
    was = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)


# the guards the compiled step keeps: Dynamo's checks of the global state (grad mode, default device, …:
# their name is empty) and of the call's batch and its scale. torch 2.13 names them `inputs`; older
# versions wrote `L['inputs']`: both match, so another naming keeps these guards rather than dropping them
_CHECKED = re.compile(r"(L\[')?(inputs|targets|scale)\b")


def _only_the_batch(guards: list[Any]) -> list[bool]:
    """Which of Dynamo's guards the compiled step keeps: those named by ``_CHECKED`` and the global
    state's. Dropped are the checks of what cannot change during a run and would cost ~1% of a baby-config
    step before every call: the dtype, shape and strides of the 27 parameter tensors, that none of them
    aliases another, and the model's module tree (its ~1000 attribute checks: the step was traced through
    this model, which the trainer owns and puts in training mode before every step; a module swapped or
    a dropout rate changed in the middle of a run is not seen)."""
    return [not g.name or _CHECKED.match(g.name) is not None for g in guards]
