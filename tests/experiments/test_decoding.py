"""The decoding experiment (F22): test windows, decoding NLLs, the quick run's fields, the test-split guard,
the report's sentences following synthetic numbers (flip tests) and its plots."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from arlm.data.tokenizers import train_tokenizer
from arlm.errors import MismatchError
from arlm.experiments import ExperimentConfig, decoding
from arlm.experiments import decoding_report as report
from arlm.experiments.protocol import Protocol, ProtocolError
from experiment_helpers import quick_run

LABELS = [label for label, _ in decoding.DECODERS]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick run (a tiny model, a handful of prompts), rendered from its JSON round trip."""
    torch.set_num_threads(1)
    return quick_run(decoding, tmp_path_factory.mktemp("decoding"))


# ---------------------------------------------------------------------------------------------
# Windows of the test stream
# ---------------------------------------------------------------------------------------------


def _stream(docs: list[list[int]]) -> np.ndarray:
    return np.array([t for d in docs for t in (1, *d, 2)])


def test_windows_start_at_line_starts_inside_one_document():
    from arlm.streams import sequence_spans

    nl = 9
    doc_a = [10, 11, nl, 12, 13, 14, nl, 15, 16, 17, 18]  # line starts at offsets 0, 3, 7
    doc_b = [20, 21, 22]  # too short for any window
    stream = _stream([doc_a, doc_b])
    prompts, truth = decoding.choose_windows(stream, sequence_spans(stream), [nl], 10, 2, 2)
    assert [p + t for p, t in zip(prompts, truth, strict=True)] == [[10, 11, nl, 12], [12, 13, 14, nl],
                                                                    [15, 16, 17, 18]]
    assert decoding.choose_windows(stream, sequence_spans(stream), [nl], 10, 2, 2) == (prompts, truth)
    few, _ = decoding.choose_windows(stream, sequence_spans(stream), [nl], 2, 2, 2)
    assert few == [[10, 11], [15, 16]]  # evenly spaced: the first and the last
    with pytest.raises(MismatchError, match="no test document"):
        decoding.choose_windows(stream, sequence_spans(stream), [nl], 3, 10, 10)


def test_the_test_prompts_are_refused_before_the_final_test():
    protocol = Protocol({"val": "v", "test": decoding.TestPrompts()})
    with pytest.raises(ProtocolError, match="before the final test"):
        protocol.split("test").windows(None, 1, 1, 1)


# ---------------------------------------------------------------------------------------------
# Decoding: the NLL recorded is the model's, untruncated
# ---------------------------------------------------------------------------------------------


def test_decoding_log_probs_equal_the_teacher_forced_scores_of_the_output():
    torch.manual_seed(0)
    tok = train_tokenizer("char", ["the cat sat on the mat", "a dog ran far away"])
    from arlm.models.transformer import TransformerConfig, TransformerLM

    model = TransformerLM(TransformerConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2,
                                          d_model=16)).eval()
    prompts = [[tok.sos_id, *tok.encode("the ")], [tok.sos_id, *tok.encode("a do")]]
    for settings in ({"strategy": "greedy"}, {"strategy": "beam", "num_beams": 3, "num_samples": 1},
                     {"strategy": "top-p", "top_p": 0.5}, {"strategy": "sample", "temperature": 0.5}):
        outputs, log_probs = decoding.decode(model, prompts, settings, 3, 12, 1)
        assert [len(o) for o in outputs] == [12, 12] and log_probs.shape == (2, 12)
        teacher = decoding.token_log_probs(model, prompts, outputs)
        assert np.allclose(teacher, log_probs, atol=1e-5)
        again, _ = decoding.decode(model, prompts, settings, 3, 12, 1)
        assert again == outputs  # the same seed, the same continuations


# ---------------------------------------------------------------------------------------------
# Synthetic results: the sentences follow the numbers
# ---------------------------------------------------------------------------------------------


def synthetic(loops: float = 0.6, nucleus_nll: float = 4.5, beam_prob: float = 0.6) -> dict:
    """A results.json of made-up numbers: human NLL 4.3, greedy and beam ending in loops ``loops`` of the
    time, top-p 0.95's NLL ``nucleus_nll`` ± 0.01, beam text's per-token probability ``beam_prob``."""
    size = {"new_tokens": 64, "bin": 16, "prompt_tokens": 8, "model": ["n_layer=1"],
            "train": ["batch_tokens=64"]}

    def row(nll: float, loop: float, prob: float, seed: int = 0) -> dict:
        return {"seed": seed, "nll": nll + 0.01 * seed, "ends_in_loop": loop, "loop_share": loop / 2,
                "self_bleu": 30.0 + 10 * loop, "zipf": 1.0 + loop, "distinct_1": 0.5 - loop / 4,
                "distinct_2": 0.8 - loop / 2, "distinct_3": 0.9 - loop / 2, "non_word_rate": 0.02,
                "mean_token_prob": prob, "loop_by_position": [loop * i / 3 for i in range(4)],
                "repeat_by_position": [None, loop / 2, loop, loop], "prob_by_position": [prob] * 4,
                "example": "the text\nof a line", "example_probs": [prob] * 64}

    runs = {}
    for label in LABELS:
        if label in decoding.DETERMINISTIC:
            prob = beam_prob if label == "beam 16" else 0.5
            runs[label] = [row(2.0 if label == "greedy" else 1.9, loops, prob)]
        else:
            nll = nucleus_nll if label == "top-p 0.95" else 4.6
            runs[label] = [row(nll, 0.0, 0.2, s) for s in (0, 1, 2)]
    human = row(4.3, 0.0, 0.25)
    human["prob_by_position"] = [0.25, 0.22, 0.27, 0.24]
    return {"quick": True, "seeds": [0, 1, 2], "workers": 1, "size": size,
            "model": {"parameters": 1000, "tokenizer": "BPE, 300 tokens", "vocab_size": 300,
                      "batch_tokens": 64, "steps": 10, "train_loss": 5.0, "curve": [[10, 5.1]]},
            "prompts": {"count": 4, "prompt_text": "a prompt"}, "known_words": 100,
            "human": human, "runs": runs, "summary": decoding.summaries(runs)}


def test_the_loop_sentence_follows_the_numbers():
    assert "Maximisation degenerates into repetition" in report.loop_sentence(synthetic(loops=0.6))
    text = report.loop_sentence(synthetic(loops=0.0))
    assert "does not reproduce here" in text and "degenerates" not in text


def test_the_nucleus_sentence_follows_the_numbers():
    above = report.nucleus_sentence(synthetic(nucleus_nll=4.5))
    assert "less probable than human text, as in Holtzman" in above
    assert "the opposite of Holtzman" in report.nucleus_sentence(synthetic(nucleus_nll=4.0))
    flat = synthetic(nucleus_nll=4.29)  # seeds 4.29, 4.30, 4.31 around the human 4.3
    assert "not distinguishable" in report.nucleus_sentence(flat)


def test_the_figure2_sentence_follows_the_numbers():
    flat = report.figure2_sentence(synthetic(beam_prob=0.6))
    assert "more probable than human text at every position" in flat and "does not climb" in flat
    rising = synthetic(beam_prob=0.6)
    rising["runs"]["beam 16"][0]["prob_by_position"] = [0.4, 0.5, 0.6, 0.7]
    assert "climbs along the text" in report.figure2_sentence(rising)
    assert "does not reproduce" in report.figure2_sentence(synthetic(beam_prob=0.1))


def test_the_holtzman_rows_follow_the_numbers():
    def greedy(results: dict) -> dict:
        row = next(r for r in report.holtzman_rows(results) if r["label"] == "greedy")
        return {c["column"]: c for c in row["cells"]}

    assert greedy(synthetic(loops=0.6))["Repetition %"]["agrees"]
    cell = greedy(synthetic(loops=0.0))["Repetition %"]
    assert not cell["agrees"] and cell["ours_dir"] == report.SAME
    assert greedy(synthetic())["perplexity"]["agrees"]  # 2.0 nats below the human 4.3, as theirs
    results = synthetic()
    results["runs"]["greedy"][0]["nll"] = 5.0
    assert not greedy(results)["perplexity"]["agrees"]
    assert "Greedy: 3 of 4 directions" in report.row_sentence(
        next(r for r in report.holtzman_rows(results) if r["label"] == "greedy"))


def test_a_synthetic_report_renders(tmp_path):
    body = decoding.render(json.loads(json.dumps(synthetic())), tmp_path)
    assert "## Holtzman et al. 2020, Table 1, row by row" in body
    assert (tmp_path / "frontier.png").exists()


# ---------------------------------------------------------------------------------------------
# The quick run
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_results_hold_every_decoder_and_the_human_text(quick):
    results, _, _ = quick
    size = decoding.QUICK
    assert list(results["runs"]) == LABELS
    for label, rows in results["runs"].items():
        assert len(rows) == (1 if label in decoding.DETERMINISTIC else size["seeds"])
        for r in rows:
            assert r["nll"] > 0 and 0 <= r["ends_in_loop"] <= 1 and 0 < r["mean_token_prob"] < 1
            assert len(r["loop_by_position"]) == size["new_tokens"] // size["bin"]
    human = results["human"]
    assert len(human["example_probs"]) == size["new_tokens"]
    assert results["prompts"]["count"] == size["prompts"]
    assert results["protocol"]["test_reads"] == 1
    assert results["protocol"]["budget"] == {"unit": "steps", "per_arm": {"Transformer": size["steps"]}}
    assert results["model"]["curve"][-1][0] == size["steps"]


@pytest.mark.slow
def test_the_same_seed_gives_the_same_numbers_in_any_number_of_workers(quick, tmp_path, monkeypatch):
    """The decoders × seeds in two worker processes give what they give inline (training keeps its one
    thread: ``--threads`` also sets the training's torch threads, whose float sums may differ)."""
    results, _, _ = quick
    monkeypatch.setattr(decoding, "worker_count", lambda threads, jobs, cpus: 2)
    again = decoding.run(ExperimentConfig(out=tmp_path, quick=True, threads=1, show_progress=False))
    assert again["workers"] == 2 and results["workers"] == 1
    assert again["runs"] == results["runs"] and again["human"] == results["human"]


@pytest.mark.slow
def test_the_quick_report_and_its_plots(quick, tmp_path):
    results, body, out = quick
    for label in [*LABELS, report.HUMAN]:
        assert f"| {label} |" in body
    for png in ("frontier.png", "repetition.png", "token_prob.png"):
        assert f"]({png})" in body
        image = imread(out / png)
        assert image.shape[:2] == ((480, 1500) if png == "frontier.png" else (420, 1100))
        assert np.ptp(image[..., :3]) > 0.5  # not blank
        assert (out / png).stat().st_size < 250_000
    again = decoding.render(copy.deepcopy(json.loads(json.dumps(results))), tmp_path)
    assert again == body  # a pure function of results.json


def test_a_checkpoint_is_refused_in_one_line(tmp_path):
    from cli_helpers import arlm, one_line_error

    result = arlm("experiment", "decoding", "--quick", "--out", "out", "--checkpoint", str(tmp_path),
                  cwd=tmp_path)
    one_line_error(result, "takes no --checkpoint")
    assert not (tmp_path / "out").exists()
