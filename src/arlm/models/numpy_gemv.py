"""A Linear layer's rows times its weight through numpy's BLAS: the CPU decoding step's GEMV.

At batch size 1 a Transformer's decoding step is ~4 · n_layer + 1 matrix–vector products (GEMV), and
each reads its whole weight matrix to do 2 FLOPs per weight: the step runs at the pace at which the
GEMV kernel streams weights from memory, not at the CPU's arithmetic pace. Two BLAS libraries are at
hand in every install: torch's (MKL, statically linked in its x86 wheels) and numpy's (OpenBLAS, in
numpy's wheels). On this project's CPU (an AMD EPYC, where MKL does not pick its best kernels) OpenBLAS's
single-row ``sgemv`` over a row-major Wᵀ (C_in, C_out) streamed the 6 × 384 step's weights ~1.4× faster
than MKL's at one thread and ~2× at two (docs/fast_decoding.md, "CPU batch 1"), so the lean step of
:mod:`arlm.decode.fast` multiplies through numpy on a CPU:

    y = x Wᵀ + b        x (N, C_in), Wᵀ (C_in, C_out) row-major, as numpy arrays over the same memory

No copy either way: ``Tensor.numpy()`` and ``torch.from_numpy`` share the buffers. The sums run in
another order than MKL's, so log-probs differ from torch's in the last bits (~1e-6), which changes a
greedy token only at a near-tie.

**Threads.** numpy's BLAS has its own thread pool (one thread per core by default), apart from torch's.
:func:`follow_torch_threads` gives it torch's count (``torch.set_num_threads``), so a run at one torch
thread is a run at one thread; the decoder calls it before every forward (a comparison of two integers
unless torch's count changed).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

_blas_threads: list[int] = [0]  # the count last given to numpy's BLAS (0: not yet)


def follow_torch_threads() -> None:
    """Give numpy's BLAS as many threads as torch uses (only when torch's count changed since the
    last call)."""
    threads = torch.get_num_threads()
    if threads != _blas_threads[0]:
        threadpool_limits(limits=threads, user_api="blas")
        _blas_threads[0] = threads


def numpy_rows_linear(weight_t: Tensor, bias: Tensor | None) -> Callable[[Tensor], Tensor]:
    """x (N, C_in) -> x Wᵀ (+ b) (N, C_out) by numpy's ``dot`` over ``weight_t`` = Wᵀ (C_in, C_out), a CPU
    fp32 tensor kept by the caller (the array is a view of its memory). Any layout numpy reads: a
    row-major Wᵀ, or the transposed view of a row-major W (numpy hands BLAS the transpose flag)."""
    w = weight_t.detach().numpy()  # (C_in, C_out)
    if bias is None:
        return lambda x: torch.from_numpy(np.dot(x.detach().numpy(), w))
    b = bias.detach()  # (C_out,)
    return lambda x: torch.from_numpy(np.dot(x.detach().numpy(), w)).add_(b)
