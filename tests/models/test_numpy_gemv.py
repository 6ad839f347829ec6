"""The CPU decoding step's products through numpy (BLAS, or einsum for one row of weights that stream
from memory): the numbers of torch's Linear, no copy of the weight, the kernel chosen from the CPU's
cache size, and numpy's BLAS kept at one thread."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits
from torch import nn

import arlm.models.numpy_gemv as numpy_gemv
from arlm.errors import ConfigError
from arlm.models.numpy_gemv import (
    DEFAULT_CACHE_BYTES,
    last_level_cache_bytes,
    numpy_rows_linear,
    one_blas_thread,
    weights_stream,
)
from arlm.models.transformer import row_major_t, rows_linear


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows", [1, 5])
def test_numpy_rows_linear_equals_torch_linear(bias: bool, rows: int):
    torch.manual_seed(0)
    layer = nn.Linear(48, 80, bias=bias)
    x = torch.randn(rows, 48)  # (N, C_in)
    with torch.inference_mode():
        expected = layer(x)  # (N, C_out)
        for gemv in ("view", "row_major", "numpy", "einsum"):
            torch.testing.assert_close(rows_linear(layer, gemv)(x), expected, rtol=1e-5, atol=1e-5)
        weight = layer.weight.detach()  # (C_out, C_in)
        strided = weight.repeat_interleave(2, dim=1)[:, ::2]  # W again, every other column of a wider one
        layouts = {"the transposed view of a row-major W (an untied head's Eᵀ)": weight.t(),
                   "a strided view (neither layout einsum reads row by row)": strided.t()}
        for one_row in ("blas", "einsum"):
            for layout, weight_t in layouts.items():
                torch.testing.assert_close(numpy_rows_linear(weight_t, layer.bias, one_row)(x), expected,
                                           rtol=1e-5, atol=1e-5, msg=f"{one_row}, {layout}")


def test_one_row_by_einsum_is_not_blas():
    """The einsum kernel is really another kernel (its sums differ from sgemv's in the last bits for a
    long input), and gives the float64 product to fp32 rounding."""
    rng = torch.Generator().manual_seed(0)
    weight_t = torch.randn(1536, 384, generator=rng)  # (C_in, C_out), row-major
    x = torch.randn(1, 1536, generator=rng)
    blas, einsum = (numpy_rows_linear(weight_t, None, k)(x) for k in ("blas", "einsum"))
    exact = (x.double() @ weight_t.double()).float()
    torch.testing.assert_close(einsum, exact, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(blas, exact, rtol=1e-4, atol=1e-4)
    assert not torch.equal(blas, einsum)


def test_an_unknown_one_row_kernel_is_a_config_error():
    with pytest.raises(ConfigError, match="one_row must be one of"):
        numpy_rows_linear(torch.zeros(4, 4), None, "fast")


def _cache(root, level: int, index: int, size: str) -> None:
    folder = root / f"index{index}"
    folder.mkdir()
    (folder / "level").write_text(f"{level}\n")
    (folder / "size").write_text(f"{size}\n")


def test_the_last_level_cache_is_read_from_linux_cache_descriptions(tmp_path):
    _cache(tmp_path, 1, 0, "32K")
    _cache(tmp_path, 1, 1, "32K")
    _cache(tmp_path, 2, 2, "1024K")
    _cache(tmp_path, 3, 3, "32768K")
    assert last_level_cache_bytes(tmp_path) == 32 * 2**20
    other = tmp_path / "other"
    other.mkdir()
    _cache(other, 2, 0, "2M")
    (other / "index1").mkdir()  # unreadable entries are skipped
    assert last_level_cache_bytes(other) == 2 * 2**20
    assert last_level_cache_bytes(tmp_path / "missing") == DEFAULT_CACHE_BYTES


def test_weights_stream_from_six_tenths_of_the_last_level_cache(monkeypatch):
    monkeypatch.setattr(numpy_gemv, "last_level_cache_bytes", lambda: 30_000_000)
    assert weights_stream(18_000_000) and weights_stream(43_000_000)
    assert not weights_stream(17_999_999) and not weights_stream(2_000_000)


def test_numpy_rows_linear_reads_the_weight_in_place():
    """No copy: a change to the row-major Wᵀ shows in the next product (the decoder keeps the copy)."""
    layer = nn.Linear(8, 4, bias=False)
    weight_t = row_major_t(layer.weight)  # (C_in, C_out)
    linear = numpy_rows_linear(weight_t, None)
    x = torch.ones(1, 8)
    with torch.no_grad():
        weight_t.zero_()
    assert torch.equal(linear(x), torch.zeros(1, 4))


def test_unknown_gemv_is_a_config_error():
    with pytest.raises(ConfigError, match="gemv must be one of"):
        rows_linear(nn.Linear(4, 4), "fast")


def test_numpy_blas_keeps_one_thread_whatever_torch_uses():
    before = torch.get_num_threads()
    # numpy's wheels carry OpenBLAS: without a BLAS threadpoolctl sees, the limit could not be set
    assert any(lib["user_api"] == "blas" for lib in threadpool_info())
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            numpy_gemv._blas_threads[0] = 0  # as in a fresh process
            threadpool_limits(limits=2, user_api="blas")
            one_blas_thread()
            assert {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"} == {1}
    finally:
        torch.set_num_threads(before)
