"""The decoding experiment (F22): prompts, every strategy on both models, consistent NLLs, report and plot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from arlm.data.tokenizers import train_tokenizer
from arlm.decode.config import DecodingConfig
from arlm.errors import DataError, MismatchError
from arlm.experiments import ExperimentConfig, decoding
from arlm.models.ngram import NGramModel
from arlm.usecases.checkpoints import save_model
from arlm.usecases.data import TokenizerSpec, prepare_data
from arlm.usecases.train import build_model
from experiment_helpers import quick_run

# slow: runs the quick experiment once for the module
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # tiny models on a shared small CPU


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick run (tiny models, a handful of prompts), rendered from its JSON round trip."""
    return quick_run(decoding, tmp_path_factory.mktemp("decoding"))


def test_prompts_split_test_lines_at_a_word_boundary():
    lines = ["short line", "I learn in this letter that Don Peter of Arragon comes", "x" * 60]
    pairs = decoding.choose_prompts(lines, 10, min_chars=30, prefix_chars=20)
    assert pairs == [("I learn in this letter ", "that Don Peter of Arragon comes")]  # no space: skipped
    assert decoding.split_line("abc def", 3) == ("abc ", "def")
    assert decoding.split_line("abcdef ghi", 8) is None
    with pytest.raises(MismatchError):
        decoding.choose_prompts(["tiny"], 5)


def test_prompts_are_evenly_spread_and_deterministic():
    lines = [f"line number {i:04d} with enough words to be split here" for i in range(1000)]
    pairs = decoding.choose_prompts(lines, 5, min_chars=40)
    assert pairs == decoding.choose_prompts(lines, 5, min_chars=40)
    assert [p + c for p, c in pairs] == [lines[i] for i in (0, 250, 500, 749, 999)]


def test_results_hold_every_strategy_for_both_models(quick):
    results, _, _ = quick
    assert set(results["models"]) == {"Transformer", "LSTM"}
    labels = [label for label, _ in decoding.STRATEGIES]
    assert list(results["strategies"]) == labels
    assert results["prompts"]["count"] == decoding.QUICK_PROMPTS
    for model in results["models"].values():
        rows = model["strategies"]
        assert list(rows) == [*labels, decoding.HUMAN]
        for label, row in rows.items():
            assert set(decoding.METRIC_KEYS) <= set(row)
            assert row["nll"] > 0 and row["mean_length"] > 0
            assert 0 <= row["bleu"] <= 100 + 1e-9 and 0 <= row["rouge1"] <= 100 + 1e-9
            assert all(0 <= row[f"distinct_{n}"] <= 1 for n in (1, 2, 3))
            if label != decoding.HUMAN:
                assert row["tokens_per_s"] > 0
                assert row["mean_length"] <= decoding.MAX_NEW_TOKENS
        human = rows[decoding.HUMAN]
        assert human["bleu"] == pytest.approx(100) and human["rougeL"] == pytest.approx(100)
        assert human["ended_by_eos"] == 1.0
        truth = [e["continuation"] for e in results["prompts"]["examples"]]
        assert model["examples"][decoding.HUMAN] == truth


def test_generation_nll_equals_teacher_forced_nll_of_the_output():
    """The NLL recorded while decoding equals the model's score of the same tokens read back."""
    torch.manual_seed(0)
    tok = train_tokenizer("char", ["the cat sat on the mat", "a dog ran far away"])
    from arlm.models.rnn import RNNLM, RNNConfig

    model = RNNLM(RNNConfig(vocab_size=tok.vocab_size, d_embed=8, d_hidden=16)).eval()
    prompts = [[tok.sos_id, *tok.encode("the ")], [tok.sos_id, *tok.encode("a dog")], [tok.sos_id]]
    for settings in ({"strategy": "greedy"}, {"strategy": "beam", "num_beams": 3, "num_samples": 1},
                     {"strategy": "top-p", "top_p": 0.9}):
        config = DecodingConfig(max_new_tokens=12, seed=3, **settings)
        outputs, nll, _ = decoding.decode_all(model, tok, prompts, config)
        assert all(0 < len(o) <= 12 for o in outputs)
        assert decoding.continuation_nll(model, tok, prompts, outputs) == pytest.approx(nll, rel=1e-5)
        again, nll_again, _ = decoding.decode_all(model, tok, prompts, config)
        assert again == outputs and nll_again == nll  # the same seed, the same continuations


def test_report_holds_the_tables_and_a_real_plot(quick):
    _, body, out = quick
    assert "## Claim" in body and "## Protocol" in body
    for name in ("Transformer", "LSTM"):
        assert f"## {name}:" in body
    for label, _ in decoding.STRATEGIES:
        assert f"| {label} |" in body
    assert "| strategy | NLL (nats/token) | BLEU |" in body
    png = out / "quality_vs_diversity.png"
    assert f"]({png.name})" in body
    image = imread(png)
    assert image.shape[:2] == (460, 1100)
    assert np.ptp(image[..., :3]) > 0.5  # not blank
    assert png.stat().st_size < 200_000


def test_a_checkpoint_is_decoded_alone(tmp_path, quick):
    torch.manual_seed(0)
    data = prepare_data("shakespeare", TokenizerSpec("char"), "train", None)
    from arlm.train.presets import resolve

    model = build_model(resolve("lstm", "tiny", []), data.tokenizer.vocab_size)
    folder = save_model(tmp_path / "lstm", model, data.tokenizer)
    results = decoding.run(ExperimentConfig(out=tmp_path / "out", quick=True, threads=1, checkpoint=folder,
                                            show_progress=False))
    assert list(results["models"]) == ["rnn (lstm)"]
    assert results["models"]["rnn (lstm)"]["model"]["checkpoint"] == str(folder)


def test_an_ngram_checkpoint_or_a_missing_one_is_a_one_line_error(tmp_path):
    tok = train_tokenizer("char", ["abc abc", "cab"])
    stream = np.array([1, *tok.encode("abc abc"), 2, 1, *tok.encode("cab"), 2])
    ngram = NGramModel.fit(stream, order=2, vocab=tok.vocab, smoothing="add-k", k=1.0)
    folder = save_model(tmp_path / "ngram", ngram, tok)
    with pytest.raises(MismatchError, match="n-gram") as e:
        decoding.run(ExperimentConfig(out=tmp_path / "out", quick=True, checkpoint=folder))
    assert "\n" not in str(e.value)
    with pytest.raises(DataError):
        decoding.run(ExperimentConfig(out=tmp_path / "out", quick=True, checkpoint=tmp_path / "missing"))
    assert not (tmp_path / "out").exists()
