"""Orders, digits and σ-GPT training through the Python API: order files and specs, pixel orders
that must fit the data, the pixel tokenizer, infilling keeps known positions, the order mixture,
and σ-GPT trained by the Trainer (one sequence per row, exact resume)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arlm.data.corpora import load_corpus
from arlm.data.images import digits, image_to_tokens
from arlm.data.orders import (
    OrderSpec,
    PixelOrder,
    read_order_file,
    to_model_order,
    to_reading_order,
    write_order_file,
)
from arlm.data.tokenizers import PixelTokenizer, load_tokenizer
from arlm.decode.infill import infill_tokens, parse_template
from arlm.errors import ConfigError, FormatError
from arlm.evaluate.orders import mixture_nll, sequence_nlls
from arlm.models.sigma_gpt import SigmaGPT, SigmaGPTConfig
from arlm.streams import EOS_ID, PAD_ID, SOS_ID, split_sequences
from arlm.train.batches import random_sequences, validation_sequences
from arlm.train.trainer import TrainConfig, Trainer


@pytest.mark.parametrize("name", ["l2r", "r2l", "fixed-random", "raster", "snake", "zorder", "hilbert"])
def test_reading_order_undoes_the_model_order(name, tmp_path):
    spec = OrderSpec(name, 3, (8, 8))
    images = digits("test").images[:5]
    stream = np.concatenate([[SOS_ID, *image_to_tokens(im), EOS_ID] for im in images])
    ordered = to_model_order(stream, spec)
    for raw, seq in zip(split_sequences(stream), split_sequences(ordered), strict=True):
        assert np.array_equal(to_reading_order(seq[1:-1], spec), raw[1:-1])
    write_order_file(tmp_path, spec)
    assert read_order_file(tmp_path) == spec
    assert read_order_file(tmp_path / "nothing") == OrderSpec()  # no order.json: left to right


def test_orders_that_do_not_fit_the_data_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="power of two"):
        OrderSpec("hilbert", 0, (8, 6))
    with pytest.raises(ConfigError, match="power of two"):
        OrderSpec("zorder", 0, (6, 6))
    with pytest.raises(ConfigError, match="text has no 2-D layout"):
        OrderSpec("snake")
    with pytest.raises(ConfigError, match="64 pixels"):
        PixelOrder("raster", 8, 8).permutation(37)
    with pytest.raises(ConfigError, match="unknown order"):
        OrderSpec("spiral", 0, (8, 8))
    with pytest.raises(ConfigError, match="random order"):
        to_reading_order(np.arange(4), OrderSpec("random"))
    with pytest.raises(ConfigError, match="seed must be an integer ≥ 0"):
        OrderSpec("fixed-random", -1, (8, 8))
    with pytest.raises(ConfigError, match="seed must be an integer ≥ 0"):
        to_model_order(np.array([1, 5, 6, 2]), OrderSpec("random"), seed=-1)
    (tmp_path / "order.json").write_text('{"order": 3}')
    with pytest.raises(FormatError):
        read_order_file(tmp_path)


def test_pixel_tokenizer_is_the_digits_vocabulary(tmp_path):
    corpus = load_corpus("digits")
    tok = corpus.tokenizer()
    assert isinstance(tok, PixelTokenizer) and tok.vocab_size == 21 and tok.image_shape == (8, 8)
    line = corpus.lines("test")[0]
    assert np.array_equal(tok.encode(line), image_to_tokens(digits("test").images[0]))
    assert tok.decode(tok.encode(line)) == line
    tok.save(tmp_path / "tokenizer.json")
    assert load_tokenizer(tmp_path / "tokenizer.json").fingerprint == tok.fingerprint
    assert len(corpus.lines("train")) == len(digits("train"))


def _sigma(seed=0, block_size=16, vocab_size=11):
    torch.manual_seed(seed)
    return SigmaGPT(SigmaGPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=2,
                                   d_model=16)).eval()


class _Chars:
    """A tiny char tokenizer: 'a'..'g' are ids 4..10."""

    def encode(self, text):
        return [4 + ord(c) - ord("a") for c in text]

    def decode(self, ids):
        return "".join(chr(ord("a") + i - 4) for i in ids)


def test_infill_keeps_known_positions_and_follows_the_seed():
    model = _sigma()
    ids, known = parse_template(_Chars(), "ab__c_d")
    assert ids.tolist() == [SOS_ID, 4, 5, PAD_ID, PAD_ID, 6, PAD_ID, 7, EOS_ID]
    assert known.tolist() == [True, True, True, False, False, True, False, True, True]
    out = infill_tokens(model, ids, known, num_samples=5, seed=1)
    assert out.shape == (5, len(ids))
    assert (out[:, known] == torch.as_tensor(ids)[known]).all()
    unknown = out[:, ~known]
    assert ((unknown >= 3) & (unknown != EOS_ID)).all()  # content ids only
    assert torch.equal(out, infill_tokens(model, ids, known, num_samples=5, seed=1))
    with pytest.raises(ConfigError, match="no blank"):
        parse_template(_Chars(), "abc")
    with pytest.raises(ConfigError, match="only blanks"):
        parse_template(_Chars(), "___")


def test_mixture_of_orders_is_never_worse_than_the_mean_and_exact_when_they_agree():
    nlls = np.array([[1.0, 5.0, 2.0], [3.0, 1.0, 2.0]])
    mix = mixture_nll(nlls)
    assert np.all(mix <= nlls.mean(axis=0) + 1e-12) and np.all(mix >= nlls.min(axis=0) - 1e-12)
    assert mix[2] == pytest.approx(2.0)
    assert mix[0] == pytest.approx(-math.log((math.exp(-1) + math.exp(-3)) / 2))


def test_sequence_nlls_sum_the_scores():
    model = _sigma()
    stream = np.array([SOS_ID, 4, 5, EOS_ID, SOS_ID, 6, EOS_ID, SOS_ID, 7, 8, EOS_ID])
    nlls = sequence_nlls(model, stream)
    for nll, seq in zip(nlls, split_sequences(stream), strict=True):
        with torch.no_grad():
            score = model.score(torch.from_numpy(seq[None].astype(np.int64)))
        assert nll == pytest.approx(-float(score.sum()), rel=1e-5)


def test_sequence_rows_hold_whole_sequences():
    stream = np.array([SOS_ID, 4, 5, EOS_ID, SOS_ID, 6, 7, 8, 9, 10, EOS_ID], dtype=np.uint16)
    rows = random_sequences(stream, 4, 8, torch.Generator().manual_seed(0))
    assert rows.shape == (8, 5) and (rows[:, 0] == SOS_ID).all()
    for row in rows.tolist():
        assert row in ([SOS_ID, 4, 5, EOS_ID, PAD_ID], [SOS_ID, 6, 7, 8, 9])  # padded, or cut to the row
    batches = list(validation_sequences(stream, 8, 1))
    assert [b.tolist() for b in batches] == [[[SOS_ID, 4, 5, EOS_ID] + [PAD_ID] * 5],
                                             [[SOS_ID, 6, 7, 8, 9, 10, EOS_ID, PAD_ID, PAD_ID]]]


@pytest.mark.usefixtures("one_thread")
def test_trainer_trains_sigma_gpt_on_random_orders_and_resumes_exactly(tmp_path):
    rng = np.random.default_rng(0)
    seqs = [[SOS_ID, *rng.integers(4, 11, rng.integers(2, 9)).tolist(), EOS_ID] for _ in range(60)]
    stream = np.array([t for s in seqs for t in s], dtype=np.uint16)
    config = dict(batch_tokens=64, micro_batch_size=2, block_size=16, max_steps=6, warmup_steps=1,
                  eval_interval=3, log_interval=1, lr=1e-2)
    whole = Trainer(_sigma(), TrainConfig(**config), stream, stream)
    first_loss = whole.evaluate()["val_loss"]
    whole.train()
    assert whole.evaluate()["val_loss"] < first_loss  # it learns
    part = Trainer(_sigma(), TrainConfig(**config, out_dir=str(tmp_path)), stream, stream,
                   json_files={"order.json": OrderSpec().to_json()})
    part.train(steps=3)
    assert read_order_file(tmp_path / "last") == OrderSpec()
    resumed = Trainer(_sigma(seed=5), TrainConfig(**config, out_dir=str(tmp_path)), stream, stream)
    resumed.train(resume_from=tmp_path / "last")
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="scheduled sampling"):
        Trainer(_sigma(), TrainConfig(**config, scheduled_sampling="linear", ss_c=0.1), stream)


def test_l2r_fraction_reads_some_training_rows_left_to_right():
    window = torch.tensor([[SOS_ID, 4, 5, 6, 7, EOS_ID, PAD_ID],
                           [SOS_ID, 8, 9, EOS_ID, PAD_ID, PAD_ID, PAD_ID]])
    torch.manual_seed(0)
    model = SigmaGPT(SigmaGPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, d_model=16,
                                    l2r_fraction=1.0))
    inputs, targets = model.training_inputs(window, torch.Generator().manual_seed(0))
    assert torch.equal(inputs[..., 0], window[:, :-1]) and torch.equal(targets, window[:, 1:])
    assert torch.equal(inputs[..., 2], inputs[..., 1] + 1)
    model.config.l2r_fraction = 0.0
    inputs, targets = model.training_inputs(window, torch.Generator().manual_seed(0))
    assert sorted(targets[0].tolist()) == sorted(window[0, 1:].tolist())  # the same targets, reordered
    with pytest.raises(ConfigError, match="l2r_fraction"):
        SigmaGPTConfig(vocab_size=11, l2r_fraction=1.5)


def test_the_curriculum_decays_the_share_of_left_to_right_rows():
    """l2r_start = 1 → l2r_fraction = 0: every row left to right at the first step, none at the last, about
    half half-way; the share is linear in the training progress."""
    torch.manual_seed(0)
    model = SigmaGPT(SigmaGPTConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, d_model=16,
                                    l2r_fraction=0.0, l2r_start=1.0))
    window = torch.cat([torch.full((2000, 1), SOS_ID), torch.randint(4, 40, (2000, 12)),
                        torch.full((2000, 1), EOS_ID)], 1)

    def l2r_rows(progress: float) -> float:
        inputs, _ = model.training_inputs(window, torch.Generator().manual_seed(1), progress)
        return (inputs[..., 1] == torch.arange(13)).all(1).float().mean().item()  # positions in order

    assert l2r_rows(0.0) == 1.0 and l2r_rows(1.0) == 0.0
    assert abs(l2r_rows(0.5) - 0.5) < 0.05 and abs(l2r_rows(0.25) - 0.75) < 0.05
    assert model.config.l2r_share(0.3) == pytest.approx(0.7)
    assert SigmaGPTConfig(vocab_size=11, l2r_fraction=0.25).l2r_share(0.0) == 0.25  # no curriculum
    with pytest.raises(ConfigError, match="l2r_start"):
        SigmaGPTConfig(vocab_size=11, l2r_start=-0.1)


ORDER_SET = [[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [1, 3, 5, 0, 2, 4]]


def test_train_orders_read_every_row_in_one_of_the_given_orders():
    model = SigmaGPT(SigmaGPTConfig(vocab_size=11, block_size=10, n_layer=1, n_head=2, d_model=16,
                                    train_orders=ORDER_SET))
    rows = torch.tensor([[SOS_ID, 4, 5, 6, 7, 8, 9, EOS_ID, PAD_ID]] * 300)  # one length, then padding
    inputs, targets = model.training_inputs(rows, torch.Generator().manual_seed(0))
    assert inputs.shape == (300, 7, 3) and targets.shape == (300, 7)
    seen = set()
    for step in inputs:
        order = (step[1:, 1] - 1).tolist()  # the content slots read after [SOS]
        assert order in ORDER_SET
        seen.add(tuple(order))
        assert step[0, 0] == SOS_ID and step[0, 1] == 0
        # each step feeds the token at its position and announces the next one's position
        assert torch.equal(step[:, 0], rows[0].gather(0, step[:, 1]))
        assert torch.equal(step[1:, 1], step[:-1, 2])
    assert len(seen) == len(ORDER_SET)  # all drawn
    assert (targets[:, -1] == EOS_ID).all()
    with pytest.raises(ConfigError, match="permutations"):
        SigmaGPTConfig(vocab_size=11, block_size=10, train_orders=[[0, 1, 1]])
    with pytest.raises(ConfigError, match="block_size"):
        SigmaGPTConfig(vocab_size=11, block_size=4, train_orders=ORDER_SET)


def test_the_mixture_over_orders_is_logsumexp_and_beats_the_mean_order():
    model = _sigma(block_size=10)
    tokens = torch.tensor([[SOS_ID, 4, 5, 6, 7, 8, 9, EOS_ID], [SOS_ID, 9, 9, 4, 4, 5, 6, EOS_ID]])
    orders = torch.tensor(ORDER_SET)
    with torch.no_grad():
        each = torch.stack([model.log_prob(tokens, order) for order in orders])  # (K, B)
        mixed = model.log_prob_mixture(tokens, orders)
    expected = torch.log(each.exp().mean(0))
    torch.testing.assert_close(mixed, expected, rtol=1e-6, atol=1e-6)
    assert (mixed >= each.mean(0) - 1e-6).all()  # Jensen


def test_train_orders_from_the_command_line_and_a_data_mismatch_before_anything_is_written(tmp_path):
    from cli_helpers import arlm, ok, only_an_error

    ok(arlm("train", "sigma_gpt", "--corpus", "digits", "--out", str(tmp_path / "ok"), "--set", "max_steps=2",
            "--set", f"train_orders=[{list(range(64))}, {list(range(63, -1, -1))}]",
            "--set", "eval_interval=0",
            cwd=tmp_path))
    from arlm.usecases.checkpoints import load_model

    loaded = load_model(tmp_path / "ok" / "last")
    model = loaded[0] if isinstance(loaded, tuple) else loaded.model
    assert model.config.train_orders[1][:3] == [63, 62, 61]  # saved with the model, read back
    out = tmp_path / "bad"
    bad = arlm("train", "sigma_gpt", "--corpus", "digits", "--out", str(out), "--set", "max_steps=2",
               "--set", "train_orders=[[0, 1, 2], [2, 1, 0]]", cwd=tmp_path)
    only_an_error(bad, "orders of 3 tokens")
    assert not out.exists()
