"""DecodingConfig: one value for a strategy and its knobs, validated once, taken by every decoder."""

from __future__ import annotations

import pytest
import torch

from arlm.decode.config import DecodingConfig, DecodingError
from arlm.decode.search import beam_search, generate
from arlm.errors import ConfigError
from toy_models import BigramTable


@pytest.mark.parametrize("fields, field", [
    ({"strategy": "nucleus"}, "strategy"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": 2.5}, "max_new_tokens"),
    ({"temperature": -0.5}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_k": -1}, "top_k"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"min_p": 2.0}, "min_p"),
    ({"repetition_penalty": 0.0}, "repetition_penalty"),
    ({"no_repeat_ngram_size": -2}, "no_repeat_ngram_size"),
    ({"banned": [-1]}, "banned"),
    ({"num_beams": 0}, "num_beams"),
    ({"length_penalty": float("inf")}, "length_penalty"),
    ({"early_stopping": "sometimes"}, "early_stopping"),
    ({"num_samples": 0}, "num_samples"),
    ({"stop_strings": [""]}, "stop_strings"),
    ({"seed": "x"}, "seed"),
    ({"seed": 2**64}, "seed"),
    ({"strategy": "beam", "length_penalty": 2000.0}, "length_penalty"),
    ({"strategy": "top-k", "top_k": 0}, "top_k"),
    ({"strategy": "beam", "num_beams": 2, "num_samples": 3}, "num_samples"),
    ({"strategy": "beam", "stop_strings": ["."]}, "stop_strings"),
    ({"strategy": "beam", "top_p": 0.9}, "top_p"),
    ({"strategy": "beam", "temperature": 0.7}, "temperature"),
])
def test_bad_settings_name_their_field_in_one_sentence(fields, field):
    with pytest.raises(DecodingError) as info:
        DecodingConfig(**fields)
    assert info.value.field == field
    assert field in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ConfigError)  # the CLI's one line, exit 2


def test_unknown_keys_from_json_are_refused():
    with pytest.raises(DecodingError, match="unknown decoding setting 'topp'") as info:
        DecodingConfig.from_dict({"topp": 0.9})
    assert info.value.field == "topp"
    config = DecodingConfig.from_dict({"strategy": "top-p", "stop_strings": ["\n"], "banned": [5]})
    assert config.stop_strings == ("\n",) and config.banned == (5,)
    assert DecodingConfig.from_dict(config.to_dict()) == config


def test_strategy_defaults():
    assert DecodingConfig(strategy="top-k").effective_top_k == 50
    assert DecodingConfig(strategy="top-p").effective_top_p == 0.9
    assert DecodingConfig(strategy="greedy", temperature=0.7).greedy
    assert DecodingConfig().effective_temperature == 1.0
    assert DecodingConfig(strategy="beam", num_beams=3).sequences_per_prompt == 3
    assert len(DecodingConfig().processors()) == 0  # plain sampling: nothing reshapes p


def test_decoders_take_the_config_or_its_fields_alike():
    model = BigramTable(7)
    config = DecodingConfig(strategy="top-k", top_k=3, num_samples=4, max_new_tokens=6, seed=5)
    a = generate(model, None, config)
    b = generate(model, None, strategy="top-k", top_k=3, num_samples=4, max_new_tokens=6, seed=5)
    assert torch.equal(a.tokens, b.tokens)
    beams = beam_search(model, None, DecodingConfig(strategy="beam", num_beams=3, max_new_tokens=5))
    assert torch.equal(beams.tokens, beam_search(model, None, num_beams=3, max_new_tokens=5).tokens)
    with pytest.raises(DecodingError, match="beam_search"):
        generate(model, None, DecodingConfig(strategy="beam"))
    with pytest.raises(DecodingError, match="strategy='beam'"):
        beam_search(model, None, DecodingConfig(strategy="greedy"))
