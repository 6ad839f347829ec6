"""``compile=true`` in the trainer: a torch.compile'd training step equals the eager step."""

import numpy as np
import pytest
import torch

from arlm.errors import ConfigError
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.train import TrainConfig, Trainer
from train_helpers import steps_agree

# slow: torch.compile builds graphs
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def _trainer(compile: bool) -> Trainer:
    """Two micro-batches a step: compile=true compiles the model (the whole step as one graph, for one
    micro-batch, is tests/train/test_compiled_step.py's)."""
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=16, block_size=16, n_layer=2, n_head=2, d_model=32))
    stream = np.random.default_rng(0).integers(3, 16, size=4000)
    config = TrainConfig(batch_tokens=4 * 16, micro_batch_size=2, block_size=16, max_steps=3, warmup_steps=1,
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
    assert compiled.whole_step is None
    steps_agree(eager, compiled, 2)
    # the weights moved (a real step), and the checkpointed model is the plain module
    assert not torch.equal(eager.model.lm_head.weight, _trainer(False).model.lm_head.weight)
    assert type(compiled.model) is TransformerLM


def test_no_cpp_compiler_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match="C\\+\\+ compiler"):
        _trainer(True)
