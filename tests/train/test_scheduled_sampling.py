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


# ---------------------------------------------------------------------------------------------
# Bengio et al. (2015) on cases whose answer is known
# ---------------------------------------------------------------------------------------------


class Successor(torch.nn.Module):
    """A recurrent stand-in whose prediction is certain: after input token x it predicts x + 1 (mod V),
    and it counts the steps it was run (its state)."""

    recurrent = True

    def __init__(self, vocab: int = 20) -> None:
        super().__init__()
        self.vocab = vocab
        self.fed: list[torch.Tensor] = []

    def forward(self, inputs, state=None):
        self.fed.append(inputs.clone())
        logits = torch.full((*inputs.shape, self.vocab), -1e9)
        logits.scatter_(-1, ((inputs + 1) % self.vocab)[..., None], 0.0)  # (B, T, V): one-hot at x + 1
        return logits, (0 if state is None else state) + inputs.shape[1]


def test_the_replacement_is_the_models_own_prediction_for_the_previous_position():
    """ε = 0: every input after the first is the model's sample given the *mixed* prefix, so the inputs
    fed are x_0, x_0 + 1, x_0 + 2, …, whatever the gold tokens were (a sampled one-hot is certain)."""
    model = Successor()
    gold = torch.tensor([[SOS_ID, 9, 4, 17, 6, 12], [5, 8, 8, 8, 8, 8]])
    for pick in ("sample", "argmax"):
        model.fed.clear()
        _, steps = TrainingForward(model, pick=pick)(gold, None, 0.0)
        fed = torch.cat(model.fed, dim=1)
        assert steps == gold.shape[1]  # one step at a time
        assert fed.tolist() == [[SOS_ID, 2, 3, 4, 5, 6], [5, 6, 7, 8, 9, 10]]


def test_each_input_token_has_its_own_coin_with_probability_epsilon():
    """ε = 0.3 over many rows: each token is kept with probability 0.3, independently of its neighbours
    (the share of rows keeping two given positions is 0.09)."""
    torch.manual_seed(0)
    model = Successor(vocab=50)
    gold = torch.full((4000, 6), 40)  # the successor chain never predicts 40 from the rows' start 40
    gold[:, 0] = 30
    TrainingForward(model, pick="argmax")(gold, None, 0.3)
    fed = torch.cat(model.fed, dim=1)[:, 1:]  # (N, 5): the inputs after the first
    kept = fed == 40
    assert abs(kept.float().mean().item() - 0.3) < 0.02  # 5 σ of a binomial share over 20,000 coins
    both = (kept[:, 1] & kept[:, 3]).float().mean().item()
    assert abs(both - 0.09) < 0.015


def test_epsilon_decays_per_optimizer_step_by_the_schedule(tmp_path):
    """The Trainer feeds step i (0-based) the schedule's ε_i; the log names a step by the number of
    updates done, so its step s ran with ε_{s-1}."""
    from arlm.train.schedules import teacher_forcing_ratio

    cfg = TrainConfig(batch_tokens=128, micro_batch_size=8, block_size=16, lr=1e-2, warmup_steps=2,
                      max_steps=12, eval_interval=0, log_interval=1, device="cpu", show_progress=False,
                      scheduled_sampling="exponential", ss_k=0.8, out_dir=str(tmp_path))
    summary = Trainer(rnn(), cfg, TRAIN).train()
    logged = {x["step"]: x["teacher_forcing"] for x in summary.history if "teacher_forcing" in x}
    assert len(logged) >= 10
    for step, ratio in logged.items():
        assert ratio == pytest.approx(teacher_forcing_ratio(step - 1, "exponential", 0.8), rel=1e-12)
