"""``compile=true`` in the trainer: a torch.compile'd training step equals the eager step."""

import numpy as np
import pytest
import torch

from arlm.errors import ConfigError
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.train import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(compile: bool) -> Trainer:
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=16, block_size=16, n_layer=2, n_head=2, d_model=32))
    stream = np.random.default_rng(0).integers(3, 16, size=4000)
    config = TrainConfig(batch_tokens=4 * 16, micro_batch_size=4, block_size=16, max_steps=3, warmup_steps=1,
                         eval_interval=0, show_progress=False, device="cpu", compile=compile)
    return Trainer(model, config, stream)


def test_compile_is_off_by_default():
    assert TrainConfig().compile is False


def test_a_compiled_step_equals_an_eager_step():
    eager, compiled = _trainer(False), _trainer(True)
    assert compiled.wrapped.passes.model is not compiled.model  # the forward runs through torch.compile
    # and so does forward + loss (a bound method: compared with ==, as `is` holds for neither)
    assert eager.wrapped._teacher == eager.wrapped._teacher_loss
    assert compiled.wrapped._teacher != compiled.wrapped._teacher_loss
    for _ in range(2):
        a, b = eager.train_step(), compiled.train_step()
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    for (name, p), q in zip(eager.model.named_parameters(), compiled.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
    # the weights moved (a real step), and the checkpointed model is the plain module
    assert not torch.equal(eager.model.lm_head.weight, _trainer(False).model.lm_head.weight)
    assert type(compiled.model) is TransformerLM


def test_no_cpp_compiler_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match="C\\+\\+ compiler"):
        _trainer(True)
