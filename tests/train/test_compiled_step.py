"""The whole training step on the CPU (``compile=true``): the forward and backward pass one compiled
graph, then clipping and torch's fused AdamW. Its steps are the eager trainer's, a resumed run is the
uninterrupted one, a non-finite loss changes nothing, and it is used exactly where it applies."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from arlm.models.rnn import RNNLM, RNNConfig
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.train import TrainConfig, Trainer, TrainingError
from arlm.train.compiled_step import WHOLE_STEP_SUPPORTED, _only_the_batch
from arlm.train.trainer import nll_sum
from train_helpers import steps_agree

# slow: torch.compile builds graphs: minutes on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

STREAM = np.random.default_rng(0).integers(3, 16, size=4000)


whole_step = pytest.mark.skipif(not WHOLE_STEP_SUPPORTED, reason="this torch compiles the model instead")


def _trainer(compile: bool = True, out_dir=None, dropout: float = 0.0, **settings) -> Trainer:
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=16, block_size=16, n_layer=2, n_head=2, d_model=32,
                                            dropout=dropout))
    values = dict(batch_tokens=4 * 16, micro_batch_size=4, block_size=16, max_steps=6, warmup_steps=1,
                  eval_interval=0, show_progress=False, device="cpu", compile=compile, out_dir=out_dir)
    return Trainer(model, TrainConfig(**(values | settings)), STREAM)


@whole_step
def test_whole_steps_equal_eager_steps():
    eager, whole = _trainer(compile=False), _trainer()
    assert eager.whole_step is None and whole.whole_step is not None
    assert whole.fused and not eager.fused  # torch's fused AdamW after the graph; the for-loop one eagerly
    steps_agree(eager, whole, 3)
    for (name, p), q in zip(eager.model.named_parameters(), whole.model.parameters(), strict=True):
        moments, expected = whole.optimizer.state[q], eager.optimizer.state[p]
        torch.testing.assert_close(moments["exp_avg"], expected["exp_avg"], rtol=1e-3, atol=1e-7, msg=name)
        torch.testing.assert_close(moments["exp_avg_sq"], expected["exp_avg_sq"], rtol=1e-3, atol=1e-9,
                                   msg=name)
        assert float(whole.optimizer.state[q]["step"]) == 3
    assert not torch.equal(whole.model.lm_head.weight, _trainer().model.lm_head.weight)  # it trained


@whole_step
def test_the_whole_step_runs_the_adamw_asked_for():
    """fused_adamw=false: the for-loop AdamW after the graph, the same steps as the eager trainer's."""
    loop = _trainer(fused_adamw=False)
    assert loop.whole_step is not None and not loop.fused
    steps_agree(_trainer(compile=False), loop, 2)


@whole_step
def test_the_same_seed_gives_the_same_weights_with_two_threads():
    """Two threads: the embeddings' gradient is a scatter-add, which Inductor's own kernel does with
    atomics (the order of the sums changed from run to run); the compiled step leaves it to ATen's
    deterministic kernel."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = []
        for _ in range(2):
            trainer = _trainer(max_steps=8, batch_tokens=16 * 16, micro_batch_size=16)
            trainer.train(steps=8)
            runs.append([p.detach().clone() for p in trainer.model.parameters()])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


@whole_step
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):  # with dropout: the graph's random numbers too
    straight = _trainer(dropout=0.1)
    straight.train(steps=4)
    first = _trainer(out_dir=str(tmp_path / "run"), dropout=0.1)
    first.train(steps=2)
    resumed = _trainer(out_dir=str(tmp_path / "run"), dropout=0.1)
    resumed.train(steps=2, resume_from=tmp_path / "run" / "last")
    assert resumed.step == straight.step == 4
    for p, q in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)


@whole_step
def test_a_non_finite_loss_changes_nothing():
    trainer = _trainer()
    trainer.train_step()
    with torch.no_grad():
        trainer.model.transformer.ln_f.weight[0] = float("nan")  # the loss of the next step is NaN
    before = [t.clone() for p in trainer.model.parameters()
              for t in (p, *trainer.optimizer.state[p].values())]
    with pytest.raises(TrainingError, match="loss became nan at step 1"):
        trainer.train_step()
    after = [t for p in trainer.model.parameters() for t in (p, *trainer.optimizer.state[p].values())]
    for b, a in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    assert trainer.step == 1


@pytest.mark.parametrize(("settings", "why"), [
    (dict(compile=False), "compile is off"),
    (dict(micro_batch_size=2), "a step has 2 micro-batches"),
    (dict(scheduled_sampling="linear", ss_c=0.1), "scheduled sampling"),
    (dict(dtype="bf16"), "dtype is bf16"),
])
def test_where_the_whole_step_does_not_apply_the_trainer_says_why(settings, why):
    trainer = _trainer(**settings)
    assert why in trainer.whole_step_reason()
    assert trainer.whole_step is None


def test_a_recurrent_family_keeps_the_compiled_model():
    model = RNNLM(RNNConfig(vocab_size=16, cell="gru", d_embed=8, d_hidden=8))
    config = TrainConfig(batch_tokens=4 * 16, micro_batch_size=4, block_size=16, max_steps=1,
                         eval_interval=0, show_progress=False, device="cpu", compile=True)
    trainer = Trainer(model, config, STREAM)
    assert "carries its state" in trainer.whole_step_reason()


@whole_step
def test_trainers_in_one_process_do_not_share_the_limit_on_recompiles():
    """Each trainer's whole step has its own compiled graphs: with a limit of one graph, a second trainer
    with another model still compiles its own (shared, it would fail: fullgraph cannot fall back)."""
    with torch._dynamo.config.patch(recompile_limit=1):
        for dropout in (0.0, 0.1):
            trainer = _trainer(dropout=dropout)
            assert trainer.whole_step is not None
            assert np.isfinite(trainer.train_step()["loss"])


@whole_step
def test_what_may_change_between_steps_compiles_a_new_graph():
    """A changed weight decay (AdamW's, outside the graph) gives the eager trainer's steps, and a batch of
    another shape is scored as the eager model scores it (not run through the old graph: the guards
    the whole step keeps)."""
    eager, whole = _trainer(compile=False), _trainer()
    steps_agree(eager, whole, 1)
    for trainer in (eager, whole):
        trainer.optimizer.param_groups[0]["weight_decay"] = 0.5
    steps_agree(eager, whole, 2)
    window = torch.tensor(STREAM[:2 * 10].reshape(2, 10))
    inputs, targets = window[:, :-1], window[:, 1:]  # (2, 9): the trainer's batches are (4, 16)
    with torch.no_grad():
        expected = float(nll_sum(whole.model(inputs)[0], targets))
    loss_sum, _ = whole.whole_step(inputs, targets, torch.tensor(1 / 18))
    assert float(loss_sum) == pytest.approx(expected, rel=1e-5)


def test_the_guard_filter_keeps_the_batch_in_either_naming():
    """torch 2.13 names guards ``inputs``; older versions ``L['inputs']``: both are kept, and the
    parameters' and the module tree's are dropped in both."""
    names = {"": True, "inputs": True, "L['targets']": True, "scale": True, "scale_x": False,
             "params[0]": False, "L['params'][3]": False, "self.model._modules['lm_head']": False,
             "self.names[0]": False}
    guards = [SimpleNamespace(name=name) for name in names]
    assert _only_the_batch(guards) == list(names.values())
