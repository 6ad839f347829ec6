"""int8 weights for CPU inference: dynamic quantization of every Linear layer.

Decoding one token reads every weight once and does 2 FLOPs with it, so on a CPU a batch-1 step is
bound by moving weights, not by arithmetic. Storing a Linear's weight W (out × in, fp32) as int8
with one scale per output row r (per-channel, symmetric),

    s_r = max_j |W_rj| / 127,        Ŵ_rj = round(W_rj / s_r) ∈ [-127, 127],       W ≈ s ⊙ Ŵ,

reads a quarter of the bytes. *Dynamic* quantization also quantizes each input x on the fly (one
scale per call, from its range), multiplies in int8 with int32 accumulation (fbgemm / oneDNN
kernels), and rescales the result to fp32: y ≈ (s_x s_r) Σ_j x̂_j Ŵ_rj + b_r. Embeddings, LayerNorms,
attention and the softmax stay fp32.

The rounding error |W − s ⊙ Ŵ| ≤ s_r / 2 per weight changes the model a little: the perplexity
changes (report it next to the speed: ``arlm eval --quantize int8`` prints both), and greedy text can
part from the fp32 model's where two tokens were nearly tied. Training is not affected.

PyTorch's eager ``torch.ao.quantization.quantize_dynamic`` does the work (deprecated in favour of
torchao's ``quantize_``, which is not a dependency here; it still works in torch 2.13). Its kernels
exist for CPUs only: a model on another device is refused with a one-line error.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from arlm.errors import ConfigError

QUANTIZE_MODES = ("int8",)


def check_quantize(mode: str | None, device: torch.device | str = "cpu") -> None:
    """Raise a ConfigError unless ``mode`` (None: off) can run on ``device``."""
    if mode is None:
        return
    if mode not in QUANTIZE_MODES:
        raise ConfigError(f"unknown quantization {mode!r}; choose one of {', '.join(QUANTIZE_MODES)} "
                          "(or leave it off)")
    device = torch.device(device)
    if device.type != "cpu":
        raise ConfigError(f"int8 dynamic quantization has CPU kernels only, but the model is on "
                          f"{device.type}; quantize on the CPU, or use bf16/fp16 weights on {device.type}")
    engines = torch.backends.quantized.supported_engines
    if not any(e in engines for e in ("x86", "fbgemm", "onednn", "qnnpack")):
        raise ConfigError(f"this PyTorch build has no int8 CPU engine ({', '.join(engines)}); "
                          "drop --quantize")


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (a neural LM on the CPU) whose ``nn.Linear`` layers hold int8 weights with
    per-output-channel scales (dynamic quantization); the original is left as it is. In eval mode."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"int8 quantization applies to neural models, not to a {type(model).__name__}; "
                          "drop --quantize for count-based models")
    device = next(model.parameters()).device
    check_quantize("int8", device)
    if next(model.parameters()).dtype != torch.float32:
        raise ConfigError("int8 quantization starts from fp32 weights; load the model in fp32")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    quantized = copy.deepcopy(model).eval()
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices
        warnings.simplefilter("ignore")
        quantize_dynamic(quantized, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                         inplace=True)
    return quantized


def quantize_model(model, mode: str | None):
    """``model`` quantized with ``mode`` ("int8"), or unchanged when ``mode`` is None."""
    if mode is None:
        return model
    check_quantize(mode, getattr(model, "device", "cpu"))
    return quantize_int8(model)
