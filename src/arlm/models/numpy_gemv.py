"""A Linear layer's rows times its weight through numpy: the CPU decoding step's GEMV.

At batch size 1 a Transformer's decoding step is ~4 · n_layer + 1 matrix–vector products (GEMV), and
each reads its whole weight matrix to do 2 FLOPs per weight: the step runs at the pace at which the
GEMV kernel streams weights from memory, not at the CPU's arithmetic pace. Three kernels are at hand in
every install: torch's BLAS (MKL, statically linked in its x86 wheels), numpy's BLAS (OpenBLAS, in
numpy's wheels) and numpy's own ``einsum`` loop. On this project's CPUs (AMD EPYCs, where MKL does not
pick its best kernels) MKL's GEMV streamed a 6 × 384 step's weights at 11–18 GB/s and OpenBLAS's
``sgemv`` at 17–28 GB/s, while ``sum`` reads the same bytes at 27–52 GB/s (docs/fast_decoding.md,
"CPU batch 1"). numpy's ``einsum`` is a plain loop, y += x_k · Wᵀ[k] over the rows k of a row-major
Wᵀ (C_in, C_out), with no blocking, no packing and no thread to start: on the 2026-12-06 AVX-512 EPYC
it read the step's weights at ~24 GB/s from memory where OpenBLAS's ``sgemv`` read them at ~18 (the
step's 25 products 1.5–1.8 against 2.0–2.5 ms), whatever kernel either library dispatched to. So the
lean step of :mod:`arlm.decode.fast` multiplies through numpy on a CPU:

    y = x Wᵀ + b        x (N, C_in), Wᵀ (C_in, C_out) row-major, as numpy arrays over the same memory

one row (N = 1, a decoding step) by ``einsum``; several rows (a prefill, a speculative verification:
a matrix product, where BLAS's blocking pays) by ``numpy.dot``. No copy either way: ``Tensor.numpy()``
and ``torch.from_numpy`` share the buffers. The sums run in another order than MKL's, so log-probs
differ from torch's in the last bits (~1e-6), which changes a greedy token only at a near-tie.

**Threads.** numpy's BLAS has its own thread pool (one thread per core by default), apart from torch's.
:func:`follow_torch_threads` gives it torch's count (``torch.set_num_threads``), so a run at one torch
thread is a run at one thread; the decoder calls it before every forward (a comparison of two integers
unless torch's count changed). ``einsum`` runs on the calling thread only.
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


def one_row_product(w: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """x (C_in,) -> x Wᵀ (C_out,) by numpy's ``einsum`` loop over ``w`` = Wᵀ (C_in, C_out): row-major,
    y = Σ_k x_k · Wᵀ[k] (a scaled row added per input); the transposed view of a row-major W, y_n = W[n] · x
    (a dot product per output); any other layout, numpy's BLAS."""
    if w.flags.c_contiguous:
        return lambda x: np.einsum("k,kn->n", x, w)
    if w.T.flags.c_contiguous:
        w_rows = w.T  # (C_out, C_in), row-major
        return lambda x: np.einsum("nk,k->n", w_rows, x)
    return lambda x: np.dot(x, w)


def numpy_rows_linear(weight_t: Tensor, bias: Tensor | None) -> Callable[[Tensor], Tensor]:
    """x (N, C_in) -> x Wᵀ (+ b) (N, C_out) over ``weight_t`` = Wᵀ (C_in, C_out), a CPU fp32 tensor kept by
    the caller (the array is a view of its memory): one row by :func:`one_row_product`, more rows by
    numpy's ``dot`` (BLAS). Any layout numpy reads: a row-major Wᵀ, or the transposed view of a row-major
    W (an untied head's Eᵀ)."""
    w = weight_t.detach().numpy()  # (C_in, C_out)
    one_row = one_row_product(w)
    b = None if bias is None else bias.detach()  # (C_out,)

    def linear(x: Tensor) -> Tensor:
        rows = x.detach().numpy()  # (N, C_in)
        y = torch.from_numpy(one_row(rows[0])[None] if rows.shape[0] == 1 else np.dot(rows, w))  # (N, C_out)
        return y if b is None else y.add_(b)

    return linear
