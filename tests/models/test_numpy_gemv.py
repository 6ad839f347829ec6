"""The CPU decoding step's products through numpy's BLAS: the numbers of torch's Linear, no copy of the
weight, and numpy's BLAS threads following torch's."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info
from torch import nn

from arlm.errors import ConfigError
from arlm.models.numpy_gemv import follow_torch_threads, numpy_rows_linear
from arlm.models.transformer import row_major_t, rows_linear


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows", [1, 5])
def test_numpy_rows_linear_equals_torch_linear(bias: bool, rows: int):
    torch.manual_seed(0)
    layer = nn.Linear(48, 80, bias=bias)
    x = torch.randn(rows, 48)  # (N, C_in)
    with torch.inference_mode():
        expected = layer(x)  # (N, C_out)
        for gemv in ("view", "row_major", "numpy"):
            torch.testing.assert_close(rows_linear(layer, gemv)(x), expected, rtol=1e-5, atol=1e-5)
        # the transposed view of a row-major W (an untied head's Eᵀ) is read in place too
        torch.testing.assert_close(numpy_rows_linear(layer.weight.detach().t(), layer.bias)(x), expected,
                                   rtol=1e-5, atol=1e-5)


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


def test_numpy_blas_threads_follow_torch():
    before = torch.get_num_threads()
    # numpy's wheels carry OpenBLAS: without a BLAS threadpoolctl sees, the threads could not follow
    assert any(lib["user_api"] == "blas" for lib in threadpool_info())
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            follow_torch_threads()
            assert {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"} == {threads}
    finally:
        torch.set_num_threads(before)
        follow_torch_threads()
