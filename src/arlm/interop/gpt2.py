"""GPT-2 weights in Hugging Face ``transformers`` format <-> arlm's :class:`TransformerLM` (F27).

arlm's Transformer is GPT-2 shaped (pre-LN blocks, learned positions, tanh-GELU, LayerNorm ε = 1e-5,
tied head) and uses GPT-2's parameter names, so the mapping is one to one except for one detail:
GPT-2 stores ``attn.c_attn``, ``attn.c_proj``, ``mlp.c_fc`` and ``mlp.c_proj`` as ``Conv1D``
layers, whose weight is (in, out) — the transpose of ``nn.Linear``'s (out, in):

    Conv1D:  y = x W + b,  W (in, out)          nn.Linear:  y = x Wᵀ + b,  W (out, in)

so W_arlm = W_hfᵀ on import and W_hf = W_arlmᵀ on export. HF's non-persistent attention buffers
(``attn.bias``, ``attn.masked_bias`` in old checkpoints) are dropped.

**Special tokens.** arlm's own vocabularies reserve ids 0 and 1 for [PAD] and [SOS] and its models
give them probability 0. In GPT-2's vocabulary ids 0 and 1 are ordinary tokens ("!" and '"') and
``<|endoftext|>`` (50256) is both BOS and EOS. An imported model is therefore a :class:`GPT2LM`:
the same network, but its head masks no token, so its log-probs equal HF's (:mod:`arlm.models.gpt2`).
Decode it with ``eos_id=<|endoftext|>`` and an explicit prompt (see :func:`arlm.decode.search.generate`).

Public API: :func:`config_from_hf`, :func:`state_dict_from_hf`, :func:`state_dict_to_hf`,
:func:`from_hf` (a ``GPT2LMHeadModel``, a state dict or a folder), :func:`load_gpt2` /
:func:`save_gpt2` (an HF folder: ``config.json`` + ``model.safetensors``) and :func:`to_hf`
(a live ``GPT2LMHeadModel``, needs ``transformers``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from arlm.errors import ConfigError, FormatError, MismatchError
from arlm.io import atomic_dir
from arlm.models.gpt2 import GPT2LM
from arlm.models.transformer import TransformerConfig, TransformerLM

# GPT-2's Conv1D layers: their weights are stored transposed relative to nn.Linear.
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
GPT2_EOS = 50256  # <|endoftext|> in the original GPT-2 vocabulary


# ---------------------------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------------------------


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    return cfg.get(key, default) if isinstance(cfg, Mapping) else getattr(cfg, key, default)


# HF's names of GPT-2's tanh GELU ("gelu", HF's exact erf form, is arlm's gelu="exact")
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")


def config_from_hf(hf_config: Any) -> TransformerConfig:
    """A ``GPT2Config`` (or its ``config.json`` dict) -> :class:`TransformerConfig` (dropout 0: inference).

    Raises ConfigError for GPT-2 variants arlm's blocks do not compute (another activation,
    LayerNorm ε, inner size, attention scaling).
    """
    model_type = _get(hf_config, "model_type", "gpt2")
    if model_type != "gpt2":
        raise ConfigError(f"the configuration is for a {model_type!r} model, not GPT-2; "
                          "only GPT-2 checkpoints can be imported")
    required = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
    missing = [k for k in required if _get(hf_config, k) is None]
    if missing:
        raise FormatError(f"the GPT-2 configuration lacks {', '.join(missing)}; pass the "
                          "checkpoint's own config.json")
    for key in required:
        value = _get(hf_config, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FormatError(f"the GPT-2 configuration's {key} must be a positive integer, not {value!r}; "
                              "pass the checkpoint's own config.json")
    d = int(_get(hf_config, "n_embd"))
    checks = {
        "activation_function": ("gelu_new", (*TANH_GELUS, "gelu")),
        "layer_norm_epsilon": (1e-5, (1e-5,)),
        "n_inner": (None, (None, 4 * d)),
        "scale_attn_weights": (True, (True,)),
        "scale_attn_by_inverse_layer_idx": (False, (False,)),
    }
    for key, (default, allowed) in checks.items():
        value = _get(hf_config, key, default)
        if value not in allowed:
            raise ConfigError(f"GPT-2 setting {key}={value!r} is not supported (arlm computes "
                              f"{allowed[0]!r}); import a standard GPT-2 checkpoint")
    if not _get(hf_config, "tie_word_embeddings", True):
        raise ConfigError("the checkpoint unties lm_head from wte, which arlm's GPT-2 import "
                          "does not support; import a checkpoint with tied embeddings")
    return TransformerConfig(
        vocab_size=int(_get(hf_config, "vocab_size")),
        block_size=int(_get(hf_config, "n_positions")),
        n_layer=int(_get(hf_config, "n_layer")),
        n_head=int(_get(hf_config, "n_head")),
        d_model=d,
        dropout=0.0,
        bias=True,
        tie_weights=True,
        gelu="tanh" if _get(hf_config, "activation_function", "gelu_new") in TANH_GELUS else "exact",
    )


def config_to_hf(config: TransformerConfig, eos_token_id: int = GPT2_EOS,
                 bos_token_id: int | None = None, pad_token_id: int | None = None) -> dict[str, Any]:
    """:class:`TransformerConfig` -> a GPT-2 ``config.json`` dict (what ``GPT2Config(**d)`` accepts)."""
    if not (config.tie_weights and config.causal):
        raise ConfigError("only a causal Transformer with tied embeddings has a GPT-2 equivalent; "
                          "train with tie_weights=True, causal=True")
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.d_model,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new" if config.gelu == "tanh" else "gelu",  # HF's "gelu": erf
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": 1e-5,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "bos_token_id": eos_token_id if bos_token_id is None else bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
    }


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def state_dict_from_hf(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """An HF ``GPT2LMHeadModel`` / ``GPT2Model`` state dict -> arlm TransformerLM names and layouts."""
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # HF's causal-mask buffers, not parameters
        name = key if key.startswith(("transformer.", "lm_head.")) else f"transformer.{key}"
        if name.endswith(CONV1D):
            value = value.t()  # Conv1D (in, out) -> nn.Linear (out, in)
        out[name] = value.contiguous()
    out.setdefault("lm_head.weight", out.get("transformer.wte.weight"))  # tied
    return out


def state_dict_to_hf(model: TransformerLM) -> dict[str, Tensor]:
    """arlm's weights -> an HF ``GPT2LMHeadModel`` state dict (Conv1D layout, tied head included).

    A model without biases (``bias=False``, nanoGPT's default) is GPT-2 with every bias 0: its
    LayerNorm and Linear biases are written as zeros."""
    out: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach()
        out[key] = (value.t() if key.endswith(CONV1D) else value).contiguous()
        if not model.config.bias and key.endswith((*CONV1D, "ln_1.weight", "ln_2.weight", "ln_f.weight")):
            out[key.removesuffix("weight") + "bias"] = value.new_zeros(value.shape[0])  # (out,)
    return out


def _load_into(model: TransformerLM, sd: Mapping[str, Tensor]) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise MismatchError(f"the GPT-2 weights do not fit the configuration (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]}); pass the checkpoint's own config.json")
    for key, value in sd.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise MismatchError(f"GPT-2 weight {key} has shape {tuple(value.shape)} but the "
                                f"configuration needs {tuple(expected[key].shape)}; pass the "
                                "checkpoint's own config.json")
    model.load_state_dict(dict(sd), strict=True)


def from_hf(source: Any, config: Any = None) -> GPT2LM:
    """Import GPT-2 weights into a :class:`GPT2LM` (eval mode).

    ``source``: a ``GPT2LMHeadModel`` (its config is used), a state dict (then ``config`` — a
    ``GPT2Config`` or its dict — is required), or a folder / ``model.safetensors`` path.
    """
    if isinstance(source, (str, Path)):
        return load_gpt2(source)
    if hasattr(source, "state_dict") and hasattr(source, "config"):  # a transformers model
        config = source.config if config is None else config
        sd = source.state_dict()
    elif isinstance(source, Mapping):
        sd = source
        if config is None:
            raise ConfigError("a GPT-2 state dict needs its configuration; pass config= "
                              "(a GPT2Config or the checkpoint's config.json as a dict)")
    else:
        raise ConfigError(f"cannot import GPT-2 weights from a {type(source).__name__}; pass a "
                          "GPT2LMHeadModel, a state dict with config=, or a folder")
    cfg = config if isinstance(config, TransformerConfig) else config_from_hf(config)
    if not sd:
        raise FormatError("the GPT-2 checkpoint holds no weights; pass the folder that save_pretrained wrote")
    first = next(iter(sd.values()))
    model = GPT2LM(cfg).to(first.dtype)
    _load_into(model, state_dict_from_hf(sd))
    return model.eval()


def load_gpt2(path: str | Path) -> GPT2LM:
    """Read an HF GPT-2 folder (``config.json`` + ``model.safetensors``) into a :class:`GPT2LM`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    folder = path.parent if path.is_file() else path
    weights = path if path.is_file() else folder / "model.safetensors"
    cfg_path = folder / "config.json"
    if not weights.is_file():
        raise FormatError(f"{weights} is missing; save the GPT-2 model with safetensors "
                          "(save_pretrained does by default)")
    try:
        hf_config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise FormatError(f"{cfg_path} is missing or not valid JSON ({e}); "
                          "put the checkpoint's config.json next to its weights") from e
    try:
        state_dict = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise FormatError(f"{weights} is truncated or not a safetensors file ({e}); save the GPT-2 "
                          "model again") from None
    return from_hf(state_dict, hf_config)


def save_gpt2(model: TransformerLM, folder: str | Path, eos_token_id: int = GPT2_EOS,
              bos_token_id: int | None = None, pad_token_id: int | None = None) -> Path:
    """Write ``model`` as an HF GPT-2 folder that ``GPT2LMHeadModel.from_pretrained`` reads.

    For a model trained with arlm's own vocabulary pass ``eos_token_id=2, bos_token_id=1,
    pad_token_id=0``. The tied ``lm_head.weight`` is stored once (as ``transformer.wte.weight``).
    """
    from safetensors.torch import save_file

    hf_config = config_to_hf(model.config, eos_token_id, bos_token_id, pad_token_id)
    sd = state_dict_to_hf(model)
    sd.pop("lm_head.weight", None)  # tied to transformer.wte.weight
    with atomic_dir(folder) as tmp:
        save_file(sd, str(Path(tmp) / "model.safetensors"), metadata={"format": "pt"})
        (Path(tmp) / "config.json").write_text(json.dumps(hf_config, indent=2), encoding="utf-8")
    return Path(folder)


def to_hf(model: TransformerLM, eos_token_id: int = GPT2_EOS, bos_token_id: int | None = None,
          pad_token_id: int | None = None):
    """A live ``transformers.GPT2LMHeadModel`` (eval mode) with ``model``'s weights."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError as e:
        raise ConfigError("to_hf needs the transformers package; pip install transformers") from e
    hf_config = config_to_hf(model.config, eos_token_id, bos_token_id, pad_token_id)
    hf_config.pop("model_type")
    hf = GPT2LMHeadModel(GPT2Config(**hf_config)).to(next(model.parameters()).dtype)
    hf.load_state_dict(state_dict_to_hf(model), strict=False)  # HF may hold extra mask buffers
    return hf.eval()
