"""A Linear layer's rows times its weight through numpy: the CPU decoding step's GEMV.

At batch size 1 a Transformer's decoding step is ~4 · n_layer + 1 matrix–vector products (GEMV), and
each reads its whole weight matrix to do 2 FLOPs per weight. Two BLAS libraries are at hand in every
install, torch's (MKL, statically linked in its x86 wheels) and numpy's (OpenBLAS, in numpy's wheels),
and numpy has a third kernel of its own, ``einsum``'s plain loop. On this project's CPUs (AMD EPYCs,
where MKL does not pick its best kernels) OpenBLAS's one-row ``sgemv`` over a row-major Wᵀ (C_in, C_out)
beat MKL's over either layout (docs/fast_decoding.md, "CPU batch 1"), so the lean step of
:mod:`arlm.decode.fast` multiplies through numpy on a CPU:

    y = x Wᵀ + b        x (N, C_in), Wᵀ (C_in, C_out) row-major, as numpy arrays over the same memory

**Which kernel for one row depends on where the weights are.** While a model's weights fit the CPU's
last-level cache, each step reads them from the cache, and OpenBLAS's ``sgemv``, blocked and
vectorised, is the fastest. Once they do not, each step streams them from memory, and ``sgemv``
streams them well below the memory's pace: on the 2026-12-06 AVX-512 EPYC (32 MiB L3) at ~18 GB/s
where ``sum`` reads the same bytes at 24–38. ``einsum("k,kn->n")`` — y += x_k · Wᵀ[k] over the rows k
of Wᵀ, unblocked, on the calling thread — is slower on hot weights but keeps up with the memory:
~24 GB/s there, whichever kernel either library dispatched to. Whole decodes of random-weight
Transformers by size (``benchmarks/gemv_kernel_bench.py``; 1 thread, 121 + 128 tokens; per-round
ratio sgemv's time / einsum's, median of 15 alternating rounds, in two runs; the share of a 32 MiB L3 in
brackets): 2 × 128 (0.06) 0.79–0.81, 4 × 256 (0.39) 0.81–0.87, 6 × 256 (0.58) 0.95–0.96, 3 × 384
(0.66) 1.06–1.08, 7 × 256 (0.68) 0.99–1.03, 8 × 256 (0.77) 1.02–1.07, 4 × 384 (0.87) 1.13–1.18,
6 × 384 (1.30) 1.10–1.16, 8 × 512 (3.04) 1.12–1.19. So one row
goes to ``einsum`` when the weights are at least ``STREAMING_FRACTION`` of the last-level cache
(:func:`weights_stream`; the cache is shared with the KV cache and everything else), and to
``numpy.dot`` (``sgemv``) otherwise; several rows (a prefill, a speculative verification: a matrix
product, where BLAS's blocking pays) always to ``numpy.dot``. No copy either way:
``Tensor.numpy()`` and ``torch.from_numpy`` share the buffers. The sums run in another order than
MKL's, so log-probs differ from torch's in the last bits (~1e-6), which changes a greedy token only at
a near-tie. The choice depends on the machine's cache size, read once, never on a timing.

**Threads.** numpy's BLAS has its own thread pool (one thread per core by default), apart from torch's.
:func:`one_blas_thread` gives it one thread, whatever torch's count; the decoder calls it before every
forward (a comparison of two integers after the first). The products here are small (one row, a
verifying pass's few rows, a prefill), and two pools of threads that wait by spinning, OpenBLAS's and
torch's OpenMP, stalled each other on the same cores. At 2 torch threads on the 2-core 2026-12-06
AVX-512 EPYC, when numpy's BLAS had torch's count too (as it did before), greedy decoding of 121 + 128
tokens of a random char Transformer took 0.258 s against 0.048 s with one BLAS thread (4 × 128, batch
1), 0.554 s against 0.333 s (6 × 384, batch 1), and 19.4 s against 0.71 s (4 × 128, 64 rows of
32 + 128; ``benchmarks/blas_threads_bench.py``). At 1 torch thread the two are the same thing.
``einsum`` runs on the calling thread only.
Limiting numpy's BLAS holds for the whole process (as threadpoolctl's limits do).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from arlm.errors import ConfigError

_blas_threads: list[int] = [0]  # the count last given to numpy's BLAS (0: not yet)
ONE_ROW_KERNELS = ("blas", "einsum")  # how numpy_rows_linear multiplies one row
# one row by einsum from weights of this fraction of the last-level cache (the crossover lies between
# 0.58, where sgemv was faster, and 0.66, where einsum was: see the module docstring)
STREAMING_FRACTION = 0.6
DEFAULT_CACHE_BYTES = 32 * 2**20  # the last-level cache assumed where the system does not say
CPU_CACHES = Path("/sys/devices/system/cpu/cpu0/cache")  # Linux: index*/level, index*/size


def one_blas_thread() -> None:
    """Give numpy's BLAS one thread (the first call; later ones compare two integers): see the module
    docstring, "Threads"."""
    if _blas_threads[0] != 1:
        threadpool_limits(limits=1, user_api="blas")
        _blas_threads[0] = 1


@cache
def last_level_cache_bytes(caches: Path = CPU_CACHES) -> int:
    """The size of the CPU's largest cache level, in bytes, as Linux describes cpu0's caches
    (``index*/level``, ``index*/size`` such as "32768K"); DEFAULT_CACHE_BYTES elsewhere."""
    sizes: dict[int, int] = {}
    for index in caches.glob("index*"):
        try:
            level, size = int((index / "level").read_text()), (index / "size").read_text().strip()
            scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(size[-1:].upper(), 1)
            sizes[level] = max(sizes.get(level, 0), int(size.rstrip("KMGkmg")) * scale)
        except (OSError, ValueError):
            continue
    return sizes[max(sizes)] if sizes else DEFAULT_CACHE_BYTES


def parameter_bytes(module: torch.nn.Module) -> int:
    """The bytes of a module's parameters: what one decoding step of a network reads, near enough (of a
    position table a step reads one row; the head reads the whole of a tied embedding)."""
    return sum(p.numel() * p.element_size() for p in module.parameters())


def weights_stream(weight_bytes: int) -> bool:
    """Whether a decoding step that reads ``weight_bytes`` of weights streams them from memory (they
    fill STREAMING_FRACTION of the last-level cache or more) rather than from the cache."""
    return weight_bytes >= STREAMING_FRACTION * last_level_cache_bytes()


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


def numpy_rows_linear(weight_t: Tensor, bias: Tensor | None,
                      one_row: str = "blas") -> Callable[[Tensor], Tensor]:
    """x (N, C_in) -> x Wᵀ (+ b) (N, C_out) over ``weight_t`` = Wᵀ (C_in, C_out), a CPU fp32 tensor kept by
    the caller (the array is a view of its memory), by numpy's ``dot`` (BLAS); one row by
    :func:`one_row_product` instead when ``one_row`` is "einsum" (weights that stream from memory: see
    the module docstring). Any layout numpy reads: a row-major Wᵀ, or the transposed view of a row-major
    W (an untied head's Eᵀ)."""
    if one_row not in ONE_ROW_KERNELS:
        raise ConfigError(f"one_row must be one of {', '.join(ONE_ROW_KERNELS)}, not {one_row!r}")
    w = weight_t.detach().numpy()  # (C_in, C_out)
    b = None if bias is None else bias.detach()  # (C_out,)
    if one_row == "blas":
        if b is None:
            return lambda x: torch.from_numpy(np.dot(x.detach().numpy(), w))
        return lambda x: torch.from_numpy(np.dot(x.detach().numpy(), w)).add_(b)
    by_einsum = one_row_product(w)

    def linear(x: Tensor) -> Tensor:
        rows = x.detach().numpy()  # (N, C_in)
        y = by_einsum(rows[0])[None] if rows.shape[0] == 1 else np.dot(rows, w)  # (N, C_out)
        y = torch.from_numpy(y)
        return y if b is None else y.add_(b)

    return linear
