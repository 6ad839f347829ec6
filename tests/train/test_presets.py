"""Presets and `field=value` overrides (arlm.train.presets)."""

from __future__ import annotations

import pytest
import torch

from arlm.errors import ConfigError
from arlm.train import TrainConfig
from arlm.train.presets import list_presets, load_preset, parse_value, resolve
from arlm.usecases.train import build_model


def test_builtin_presets_parse_and_build_every_family() -> None:
    assert {"tiny", "cpu-small", "gpt2-small"} <= set(list_presets())
    for name in ("tiny", "cpu-small"):
        assert set(load_preset(name)) == {"train", "model"}
        for command in ("window", "rnn", "lstm", "gru", "transformer"):
            settings = resolve(command, name, [])
            TrainConfig.from_dict(settings.train)
            model = build_model(settings, vocab_size=50)
            assert model.vocab_size == 50


def test_overrides_reach_the_right_config() -> None:
    s = resolve("transformer", "tiny", ["lr=1e-2", "train.max_steps=7", "model.d_model=48",
                                        "n_head=3", "betas=[0.8, 0.9]", "scheduled_sampling=none"])
    assert s.train["lr"] == 0.01 and s.train["max_steps"] == 7 and s.train["betas"] == (0.8, 0.9)
    assert s.model["d_model"] == 48 and s.model["n_head"] == 3
    assert s.train["scheduled_sampling"] is None
    assert resolve("lstm", "tiny", []).model["cell"] == "lstm"
    assert resolve("gru", "tiny", []).model["cell"] == "gru"
    assert resolve("rnn", "tiny", ["cell=gru"]).model["cell"] == "gru"
    assert resolve("transformer", "tiny", ["lr=1"]).train["lr"] == 1.0  # int -> float
    model = build_model(resolve("transformer", "tiny", ["block_size=40"]), 30)
    assert model.config.block_size == 40  # the Transformer's positions follow the training rows


def test_parse_value() -> None:
    assert parse_value("3") == 3 and parse_value("3e-4") == 3e-4 and parse_value("true") is True
    assert parse_value("bf16") == "bf16" and parse_value('"x"') == "x" and parse_value("None") is None


@pytest.mark.parametrize("command, preset, overrides, words", [
    ("transformer", "nope", [], "unknown preset"),
    ("transformer", "tiny", ["nope=1"], "unknown"),
    ("transformer", "tiny", ["train.d_model=1"], "unknown training setting"),
    ("transformer", "tiny", ["model.lr=1"], "unknown transformer model setting"),
    ("transformer", "tiny", ["lr"], "field=value"),
    ("lstm", "tiny", ["cell=gru"], "fixes cell"),
    ("mamba", "tiny", [], "unknown model family"),
    ("transformer", "tiny", ["lr=abc"], "lr wants a number, got 'abc'"),
    ("transformer", "tiny", ["max_steps=2.5"], "max_steps wants an integer"),
    ("transformer", "tiny", ["n_layer=two"], "n_layer wants an integer"),
    ("transformer", "tiny", ["dropout=true"], "dropout wants a number"),
    ("transformer", "tiny", ["betas=0.9"], "betas wants a list"),
    ("transformer", "tiny", ["max_steps=none"], "max_steps cannot be none"),
])
def test_bad_names_are_config_errors(command, preset, overrides, words) -> None:
    with pytest.raises(ConfigError, match=words):
        resolve(command, preset, overrides)


def test_model_shorter_than_rows_is_refused() -> None:
    with pytest.raises(ConfigError, match="positions"):
        build_model(resolve("transformer", "tiny", ["model.block_size=16"]), 30)


@pytest.mark.parametrize("command", ["window", "lstm", "transformer"])
def test_the_seed_draws_the_initial_weights(command) -> None:
    """Same settings and seed: identical weights, whatever the global RNG did before."""
    def weights(overrides):
        torch.manual_seed(len(overrides) * 1000 + 7)  # disturb the global generator
        model = build_model(resolve(command, "tiny", overrides), 30)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(["seed=3"]), weights(["seed=3", "lr=1e-3"]))
    assert not torch.equal(weights(["seed=3"]), weights(["seed=4"]))
