"""GPT-2 folders that are damaged are refused in one line (no transformers needed)."""

from __future__ import annotations

import json

import pytest

from arlm.errors import FormatError
from arlm.interop.gpt2 import load_gpt2, save_gpt2
from arlm.models.transformer import TransformerConfig, TransformerLM


@pytest.fixture
def hf_folder(tmp_path):
    model = TransformerLM(TransformerConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, d_model=8,
                                            dropout=0.0, bias=True))
    return save_gpt2(model, tmp_path / "hf", eos_token_id=2, bos_token_id=1, pad_token_id=0)


def test_a_saved_folder_loads(hf_folder):
    assert load_gpt2(hf_folder).config.n_layer == 1


def test_a_truncated_safetensors_file_is_one_format_error(hf_folder):
    weights = hf_folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(FormatError, match="truncated or not a safetensors file"):
        load_gpt2(hf_folder)


@pytest.mark.parametrize("value", ["two", 0, 2.5, None, True])
def test_a_config_value_of_the_wrong_type_is_one_format_error(hf_folder, value):
    path = hf_folder / "config.json"
    config = json.loads(path.read_text())
    config["n_layer"] = value
    path.write_text(json.dumps(config))
    with pytest.raises(FormatError, match="n_layer"):
        load_gpt2(hf_folder)
