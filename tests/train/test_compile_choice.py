"""``compile=auto``: it compiles exactly from the threshold on, says what it chose and why, decides from
the configuration alone, and a bad ``compile`` value is one line naming the fix."""

import numpy as np
import pytest
import torch

from arlm.errors import ConfigError
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.train import TrainConfig, Trainer
from arlm.train.compile_choice import AUTO_COMPILE_STEPS, AUTO_COMPILE_STEPS_CPU_MIXED, choose_compile
from arlm.train.presets import resolve
from arlm.usecases.train import make_train_config
from cli_helpers import arlm, ok, only_an_error

pytestmark = pytest.mark.usefixtures("one_thread")


def test_auto_compiles_from_the_threshold_on_and_says_why():
    below, note_below = choose_compile("auto", AUTO_COMPILE_STEPS - 1)
    at, note_at = choose_compile("auto", AUTO_COMPILE_STEPS)
    assert (below, at) == (False, True)
    assert note_below.startswith("compile=auto: not compiling") and f"{AUTO_COMPILE_STEPS:,}" in note_below
    assert note_at.startswith("compile=auto: compiling") and f"{AUTO_COMPILE_STEPS:,}" in note_at
    assert choose_compile(True, 1) == (True, None) and choose_compile(False, 10**9) == (False, None)


def test_in_bf16_on_the_cpu_auto_waits_for_longer_runs():
    # the eager bf16 step is fast and its compile slower: S* is AUTO_COMPILE_STEPS_CPU_MIXED there
    assert AUTO_COMPILE_STEPS_CPU_MIXED > AUTO_COMPILE_STEPS
    steps = (AUTO_COMPILE_STEPS, AUTO_COMPILE_STEPS_CPU_MIXED - 1, AUTO_COMPILE_STEPS_CPU_MIXED)
    assert [choose_compile("auto", s, "bf16", "cpu")[0] for s in steps] == [False, False, True]
    note = choose_compile("auto", AUTO_COMPILE_STEPS, "bf16", "cpu")[1]
    assert f"fewer than the {AUTO_COMPILE_STEPS_CPU_MIXED:,}" in note and "bf16 step" in note
    assert choose_compile("auto", AUTO_COMPILE_STEPS, "bf16", "cuda")[0]  # measured on the CPU only
    assert choose_compile("auto", AUTO_COMPILE_STEPS, "fp32", "cpu")[0]


def test_a_bf16_trainer_on_the_cpu_chooses_by_its_threshold():
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, d_model=16))
    config = TrainConfig(batch_tokens=32, micro_batch_size=4, block_size=8, max_steps=AUTO_COMPILE_STEPS,
                         eval_interval=0, show_progress=False, device="cpu", compile="auto", dtype="bf16")
    trainer = Trainer(model, config, np.random.default_rng(0).integers(3, 16, 500))
    assert not trainer.compiled and "bf16 step" in trainer.compile_note


@pytest.mark.parametrize("value", ["yes", 1, "true", None])
def test_a_bad_compile_value_is_refused(value):
    with pytest.raises(ConfigError, match="compile must be true, false or auto"):
        TrainConfig(compile=value)


def test_the_preset_override_reads_auto():
    settings = resolve("transformer", "tiny", ["compile=auto"])
    assert make_train_config(settings).compile == "auto"


def test_a_short_auto_run_trains_eagerly():
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, d_model=16))
    config = TrainConfig(batch_tokens=32, micro_batch_size=4, block_size=8, max_steps=3, eval_interval=0,
                         show_progress=False, device="cpu", compile="auto")
    trainer = Trainer(model, config, np.random.default_rng(0).integers(3, 16, 500))
    assert not trainer.compiled and trainer.whole_step is None and trainer.artifact_key is None
    assert trainer.whole_step_reason() == "compile is off"
    assert trainer.compile_note.startswith("compile=auto: not compiling, 3 steps")
    summary = trainer.train()
    assert summary.first_step_seconds > 0 and summary.step_seconds > 0 and not summary.compiled
    assert summary.step_times().startswith("the first step took")


@pytest.fixture
def work(tmp_path):
    (tmp_path / "text.txt").write_text("to be or not to be\nthat is the question\n" * 40, encoding="utf-8")
    return tmp_path


def test_the_command_says_what_auto_chose_and_reports_the_step_times(work):
    r = arlm("train", "transformer", "--corpus", "text.txt", "--split", "all", "--val-split", "all",
             "--threads", "1", "--preset", "tiny", "--set", "max_steps=4", "--set", "compile=auto",
             "--out", "run", cwd=work)
    ok(r)
    assert "compile=auto: not compiling, 4 steps are fewer than" in r.stderr
    assert "the first step took" in r.stderr and "ms each (median)" in r.stderr


def test_a_bad_compile_value_on_the_command_line_is_one_line(work):
    only_an_error(arlm("train", "transformer", "--corpus", "text.txt", "--split", "all", "--val-split", "all",
                       "--preset", "tiny", "--set", "compile=maybe", "--out", "run", cwd=work),
                  "compile must be true, false or auto")
