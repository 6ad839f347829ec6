"""Scheduled sampling (F11): per step for RNNs, two passes for Transformers; off = teacher forcing."""

import pytest
import torch

from arlm.errors import ConfigError
from arlm.models.rnn import RNNLM, RNNConfig
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.streams import EOS_ID, PAD_ID, SOS_ID
from arlm.train import TrainConfig, Trainer
from arlm.train.trainer import TrainingForward
from train_helpers import counting_corpus

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


TRAIN, VAL = counting_corpus(3000, 0), counting_corpus(400, 1)
INPUTS = torch.tensor([[SOS_ID, 5, 6, 7, EOS_ID, SOS_ID, 9, 10],
                       [SOS_ID, 4, 5, EOS_ID, PAD_ID, PAD_ID, 7, 8]])


def transformer():
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, d_model=16))


def rnn():
    torch.manual_seed(0)
    return RNNLM(RNNConfig(vocab_size=20, d_embed=16, d_hidden=16))


def test_ratio_one_is_teacher_forcing():
    for model in (transformer(), rnn()):
        logits, _ = TrainingForward(model)(INPUTS, None, 1.0)
        expected, _ = model(INPUTS)  # the one step interface: (logits, state)
        assert torch.equal(logits, expected)


def test_rnn_per_step_equals_teacher_forcing_when_nothing_is_replaced():
    model = rnn()
    # ε so close to 1 that no coin says "replace": the step-by-step loop must give the parallel result
    logits, state = TrainingForward(model)(INPUTS, None, 1.0 - 1e-12)
    expected, expected_state = model(INPUTS)
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(state.h, expected_state.h, atol=1e-6, rtol=0)


def fed_inputs(model, module, inputs):
    """Run ``module`` with ratio 0 (always replace) and return the inputs the model's embedding saw."""
    seen = []
    embed = model.transformer.wte if isinstance(model, TransformerLM) else model.embed
    handle = embed.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    logits, _ = module(inputs, None, 0.0)
    handle.remove()
    return logits, torch.cat(seen[1:], dim=1) if isinstance(model, RNNLM) else seen[-1], seen


def test_transformer_two_pass_feeds_its_own_argmax():
    model = transformer()
    _, fed, seen = fed_inputs(model, TrainingForward(model, pick="argmax"), INPUTS)
    assert len(seen) == 2  # two passes
    first = model(INPUTS)[0].argmax(-1)  # pass-1 predictions
    keep = (INPUTS == SOS_ID) | (INPUTS == PAD_ID)
    expected = torch.where(keep[:, 1:], INPUTS[:, 1:], first[:, :-1])
    assert torch.equal(fed[:, 1:], expected)
    assert torch.equal(fed[:, 0], INPUTS[:, 0])


def test_rnn_per_step_feeds_its_own_argmax():
    model = rnn()
    logits, fed, seen = fed_inputs(model, TrainingForward(model, pick="argmax"), INPUTS)
    assert len(seen) == INPUTS.shape[1]  # one step per position
    keep = (INPUTS[:, 1:] == SOS_ID) | (INPUTS[:, 1:] == PAD_ID)
    expected = torch.where(keep, INPUTS[:, 1:], logits[:, :-1].argmax(-1))
    assert torch.equal(fed, expected)


def test_sampled_tokens_are_never_sos_or_pad():
    model = transformer()
    torch.manual_seed(1)
    gold = INPUTS.repeat(20, 1)
    _, fed, _ = fed_inputs(model, TrainingForward(model, pick="sample"), gold)
    special = (gold == SOS_ID) | (gold == PAD_ID)
    assert torch.equal(fed[special], gold[special])  # [SOS] and [PAD] inputs stay
    replaced = fed[~special]
    assert not ((replaced == SOS_ID) | (replaced == PAD_ID)).any()
    assert (replaced != gold[~special]).float().mean() > 0.5  # an untrained model's samples differ


@pytest.mark.parametrize("make", [transformer, rnn])
def test_training_with_scheduled_sampling_lowers_loss(make, tmp_path):
    cfg = TrainConfig(batch_tokens=128, micro_batch_size=8, block_size=16, lr=1e-2, warmup_steps=5,
                      max_steps=40, eval_interval=40, device="cpu", show_progress=False,
                      scheduled_sampling="inverse_sigmoid", ss_k=10.0, out_dir=str(tmp_path))
    trainer = Trainer(make(), cfg, TRAIN, VAL)
    before = trainer.evaluate()["val_loss"]
    summary = trainer.train()
    assert summary.val_loss < before - 0.5
    ratios = [x["teacher_forcing"] for x in summary.history if "teacher_forcing" in x]
    assert ratios == sorted(ratios, reverse=True) and ratios[-1] < 0.5  # ε decays: 10/(10+e^3.9) ≈ 0.17


@pytest.mark.parametrize("bad", [{"scheduled_sampling": "cosine"}, {"scheduled_sampling": "linear"},
                                 {"ss_pick": "beam"}])
def test_bad_scheduled_sampling_config(bad):
    with pytest.raises(ConfigError):
        TrainConfig(batch_tokens=128, block_size=16, micro_batch_size=8, **bad)
