"""A saved configuration is input: a value of the wrong type is one FormatError naming the field."""

from __future__ import annotations

import json

import pytest

from arlm.errors import FormatError
from arlm.models.configs import config_from_dict, fits
from arlm.models.registry import load_family_model
from arlm.models.rnn import RNNConfig
from arlm.models.transformer import TransformerConfig, TransformerLM


@pytest.mark.parametrize(("value", "annotation", "ok"), [
    (2, int, True), ("two", int, False), (True, int, False), (2.0, int, False),
    (0.5, float, True), (1, float, True), (float("nan"), float, False), ("0.5", float, False),
    (True, bool, True), (1, bool, False), (None, int | None, True), ("x", int | None, False),
    ([0.9, 0.95], tuple[float, float], True), ("ab", str, True), (3, str, False),
])
def test_fits_checks_the_json_value_against_the_field_type(value, annotation, ok):
    assert fits(value, annotation) is ok


def test_a_good_configuration_builds_the_config():
    config = config_from_dict(RNNConfig, {"vocab_size": 10, "cell": "gru"}, "config.json")
    assert config == RNNConfig(vocab_size=10, cell="gru")


@pytest.mark.parametrize(("values", "words"), [
    ({"vocab_size": 10, "n_layer": "two"}, r"config\.json: n_layer must be of type int, not 'two'"),
    ({"vocab_size": 10, "dropout": None}, "dropout must be of type float"),
    ({"vocab_size": 10, "layers": 2}, "unknown settings 'layers'"),
    ({"vocab_size": 10, "n_head": 3, "d_model": 32}, "multiple of n_head"),
    (["not", "a", "dict"], "no configuration object"),
])
def test_a_bad_configuration_is_one_format_error_naming_it(values, words):
    with pytest.raises(FormatError, match=words):
        config_from_dict(TransformerConfig, values, "config.json")


def test_a_model_folder_with_a_hand_edited_config_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "model"
    TransformerLM(TransformerConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, d_model=8)).save(folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["n_layer"] = "two"
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(FormatError, match="n_layer must be of type int, not 'two'") as info:
        load_family_model(folder)
    assert "\n" not in str(info.value)
