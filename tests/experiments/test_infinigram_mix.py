"""The infinigram-mix experiment: the quick run's protocol (λ on val, test read once, equal steps), the mix
against the Transformer, the ∞-gram's zeros, and the report rendered from results.json alone."""

from __future__ import annotations

import numpy as np
import pytest
from tests.models.test_infinigram import VOCAB, sequences

from arlm.data.cache import EncodedSplit
from arlm.experiments import infinigram_mix as im
from arlm.models.infinigram import InfiniGramModel
from arlm.streams import SOS_ID
from experiment_helpers import quick_run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # trains tiny Transformers


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return quick_run(im, tmp_path_factory.mktemp("infinigram_mix"))


def test_protocol_lambda_on_val_and_test_read_once(quick):
    results, _, _ = quick
    record = results["protocol"]
    assert record["test_reads"] == 1 and record["chosen_on"] == "val"
    assert [record["choices"][f"λ (seed {r['seed']})"] for r in results["per_seed"]] == \
        [r["lambda"] for r in results["per_seed"]]
    assert len(set(record["budget"]["per_arm"].values())) == 1  # equal steps for every arm


def test_the_mix_is_measured_against_the_transformer(quick):
    results, body, out = quick
    for row, choice in zip(results["per_seed"], results["lambda_choices"], strict=True):
        grid = choice["grid"]
        nll = [np.inf if x is None else x for x in choice["nll_per_token"]]  # None: infinite
        assert row["lambda"] == grid[int(np.argmin(nll))]
        if row["lambda"] == 0:  # the mix is then the Transformer itself
            assert row["mix"] == row["transformer"]
    assert 0 < results["infinigram"]["zero_rate"] < 1  # its perplexity alone is infinite
    assert results["summary"]["verdict"] in ("A lower", "B lower", "not distinguishable")
    assert "Transformer + ∞-gram" in body and (out / "infinigram_mix.png").is_file()


def test_spread_lines_takes_lines_from_the_whole_split():
    stream = np.concatenate(sequences(0, 50, 6))
    split = EncodedSplit(stream, 0, 50)
    picked = im.spread_lines(split, 5)
    assert picked.num_sequences == 5 and picked.tokens[0] == SOS_ID
    assert picked.num_chars == int((picked.tokens != SOS_ID).sum())
    assert im.spread_lines(split, 500).num_sequences == 50


def test_infinigram_scores_match_the_model_score():
    model = InfiniGramModel.fit(np.concatenate(sequences(1, 40, 8)), VOCAB)
    stream = np.concatenate(sequences(2, 10, 8))
    logp, matched = im.infinigram_scores(model, stream, batch=3)
    from arlm.evaluate.token_scores import token_log_probs

    assert np.array_equal(logp, token_log_probs(model, stream))
    assert len(matched) == len(logp) and matched.min() >= 0
