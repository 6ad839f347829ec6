"""Checkpoints: exact resume (bit-identical), atomic folders that the model loader also reads,
corrupt and mismatched checkpoints refused."""

import json
import shutil

import pytest
import torch

from arlm.errors import FormatError, MismatchError
from arlm.models.registry import load_family_model
from arlm.models.rnn import RNNLM, RNNConfig
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.train import TrainConfig, Trainer, read_state
from train_helpers import counting_corpus

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


TRAIN, VAL = counting_corpus(2000, 0), counting_corpus(300, 1)


def make(family: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    if family == "transformer":
        return TransformerLM(TransformerConfig(**{"vocab_size": 20, "block_size": 16, "n_layer": 1,
                                                  "n_head": 2, "d_model": 16, "dropout": 0.1, **kw}))
    return RNNLM(RNNConfig(vocab_size=20, d_embed=16, d_hidden=16, **{"dropout": 0.1, **kw}))


def config(out_dir, **kw) -> TrainConfig:
    base = {"batch_tokens": 64, "micro_batch_size": 2, "block_size": 16, "lr": 1e-2, "warmup_steps": 3,
            "max_steps": 12, "eval_interval": 4, "device": "cpu", "out_dir": str(out_dir),
            "show_progress": False}
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("family", ["transformer", "rnn"])
def test_resume_is_bit_identical(family, tmp_path):
    # 12 steps in one go (dropout on, so the RNG state matters; the RNN carries its hidden state and
    # wraps around its 7-window epoch)
    straight = make(family)
    Trainer(straight, config(tmp_path / "a"), TRAIN, VAL).train()
    # 6 steps, stop, then a new process-like start: another model init, resumed from last/
    Trainer(make(family), config(tmp_path / "b"), TRAIN, VAL).train(steps=6)
    assert read_state(tmp_path / "b" / "last")["step"] == 6
    resumed = make(family, seed=123)
    summary = Trainer(resumed, config(tmp_path / "b"), TRAIN, VAL).train(resume_from=tmp_path / "b" / "last")
    assert summary.step == 12
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_resume_with_fp16_scaler_state(tmp_path):
    straight = make("transformer")
    Trainer(straight, config(tmp_path / "a", dtype="fp16", max_steps=6), TRAIN, VAL).train()
    Trainer(make("transformer"), config(tmp_path / "b", dtype="fp16", max_steps=6), TRAIN, VAL).train(steps=3)
    resumed = make("transformer", seed=5)
    trainer = Trainer(resumed, config(tmp_path / "b", dtype="fp16", max_steps=6), TRAIN, VAL)
    trainer.train(resume_from=tmp_path / "b" / "last")
    pairs = zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_a_bf16_run_on_the_cpu_resumes_bit_identically_with_its_fused_adamw(tmp_path):
    straight = make("transformer")
    trainer = Trainer(straight, config(tmp_path / "a", dtype="bf16", max_steps=6), TRAIN, VAL)
    assert trainer.fused  # bf16 on the CPU: torch's fused AdamW by default
    trainer.train()
    Trainer(make("transformer"), config(tmp_path / "b", dtype="bf16", max_steps=6), TRAIN, VAL).train(steps=3)
    resumed = make("transformer", seed=5)
    Trainer(resumed, config(tmp_path / "b", dtype="bf16", max_steps=6), TRAIN, VAL).train(
        resume_from=tmp_path / "b" / "last")
    pairs = zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    start = make("transformer").state_dict()
    assert not any(torch.equal(a, start[k]) for k, a in straight.state_dict().items() if k.endswith("weight"))


def test_grad_scaler_state_is_restored(tmp_path):
    trainer = Trainer(make("transformer"), config(tmp_path, dtype="fp16", max_steps=2), TRAIN, VAL)
    trainer.train()
    trainer.scaler.update(new_scale=1024.0)  # as after overflows
    trainer.save(tmp_path / "last")
    fresh = Trainer(make("transformer"), config(tmp_path, dtype="fp16", max_steps=2), TRAIN, VAL)
    assert fresh.scaler.get_scale() == 65536.0
    fresh.load(tmp_path / "last")
    assert fresh.scaler.get_scale() == 1024.0


@pytest.fixture
def checkpoint(tmp_path):
    Trainer(make("transformer"), config(tmp_path, max_steps=2, eval_interval=0), TRAIN, VAL).train()
    return tmp_path / "last"


def test_checkpoint_folder_is_a_model_folder(checkpoint):
    assert {p.name for p in checkpoint.iterdir()} == {"config.json", "model.safetensors", "optimizer.pt",
                                                      "trainer_state.json"}
    model = load_family_model(checkpoint)
    assert isinstance(model, TransformerLM)
    assert not any(p.name.endswith(".tmp") for p in checkpoint.parent.iterdir())  # atomic: no leftovers


def test_a_checkpoint_whose_swap_a_crash_cut_is_found_and_resumed(checkpoint):
    """A crash between the swap's two renames leaves no last/, only .last.old (and a temp folder):
    resuming and loading find the previous checkpoint and put it back."""
    before = read_state(checkpoint)
    checkpoint.rename(checkpoint.with_name(".last.old"))
    (checkpoint.parent / ".last.k2j4x9q1.tmp").mkdir()
    trainer = Trainer(make("transformer"), config(checkpoint.parent), TRAIN, VAL)
    trainer.load(checkpoint)
    assert trainer.step == before["step"]
    assert isinstance(load_family_model(checkpoint), TransformerLM)
    assert not any(p.name.startswith(".last") for p in checkpoint.parent.iterdir())


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt", "config.json"])
def test_corrupted_file_is_detected(checkpoint, name):
    path = checkpoint / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    trainer = Trainer(make("transformer"), config(checkpoint.parent), TRAIN, VAL)
    with pytest.raises(FormatError, match="corrupt"):
        trainer.load(checkpoint)


def test_truncated_and_missing_files_are_detected(checkpoint):
    trainer = Trainer(make("transformer"), config(checkpoint.parent), TRAIN, VAL)
    opt = checkpoint / "optimizer.pt"
    opt.write_bytes(opt.read_bytes()[:100])
    with pytest.raises(FormatError, match="truncated"):
        trainer.load(checkpoint)
    (checkpoint / "trainer_state.json").write_text('{"step": 2, ')
    with pytest.raises(FormatError, match="not valid JSON"):
        trainer.load(checkpoint)
    (checkpoint / "trainer_state.json").unlink()
    with pytest.raises(FormatError, match="missing"):
        trainer.load(checkpoint)
    with pytest.raises(FormatError, match="does not exist"):
        trainer.load(checkpoint.parent / "nowhere")


def test_checkpoint_of_another_model_is_refused(checkpoint):
    with pytest.raises(MismatchError, match="'transformer' model, not a 'rnn'"):
        Trainer(make("rnn"), config(checkpoint.parent), TRAIN, VAL).load(checkpoint)
    with pytest.raises(MismatchError, match="n_layer"):
        Trainer(make("transformer", n_layer=2), config(checkpoint.parent), TRAIN, VAL).load(checkpoint)


def test_checkpoint_of_another_batch_shape_is_refused(checkpoint):
    with pytest.raises(MismatchError, match="block_size=16, not 8"):
        Trainer(make("transformer"), config(checkpoint.parent, block_size=8), TRAIN, VAL).load(checkpoint)
    with pytest.raises(MismatchError, match="batch_tokens"):
        Trainer(make("transformer"), config(checkpoint.parent, batch_tokens=128), TRAIN, VAL).load(checkpoint)
    trainer = Trainer(make("transformer"), config(checkpoint.parent, lr=1e-3, max_steps=20), TRAIN, VAL)
    trainer.load(checkpoint)  # other settings (lr, max_steps, …) may change on resume
    assert trainer.step == 2


def _steps(metrics_file) -> list[tuple[int, tuple[str, ...]]]:
    """(step, which fields) of each metrics.jsonl record: the run's shape, without its timings."""
    records = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    return [(r["step"], tuple(sorted(k for k in r if k not in ("tokens_per_s",)))) for r in records]


def test_metrics_hold_one_run_without_repeated_steps_after_a_resume(tmp_path):
    """A run killed after logging steps past its last checkpoint, then resumed from that checkpoint,
    leaves the metrics of one uninterrupted run: every step once, in order."""
    whole = tmp_path / "whole"
    Trainer(make("transformer"), config(whole, max_steps=8, log_interval=1), TRAIN, VAL).train()
    cut = tmp_path / "cut"
    first = Trainer(make("transformer"), config(cut, max_steps=8, log_interval=1), TRAIN, VAL)
    first.train(steps=4)  # checkpoint at step 4
    shutil.copytree(cut / "last", tmp_path / "at4")
    first.train(steps=2)  # steps 5 and 6 logged; "killed" here, before the checkpoint at 8
    Trainer(make("transformer"), config(cut, max_steps=8, log_interval=1), TRAIN, VAL).train(
        resume_from=tmp_path / "at4")
    steps = [s for s, _ in _steps(cut / "metrics.jsonl")]
    assert steps == sorted(steps)
    assert _steps(cut / "metrics.jsonl") == _steps(whole / "metrics.jsonl")


def test_the_interrupt_note_names_the_checkpoint_on_disk(tmp_path):
    """An interrupt can land after a checkpoint's swap but before the trainer notes it: the note reads
    the step from the checkpoint on disk, not from the trainer's bookkeeping."""
    trainer = Trainer(make("transformer"), config(tmp_path, max_steps=8), TRAIN, VAL)
    trainer.train(steps=4)  # last/ at step 4
    trainer.last_saved_step = None  # as if interrupted between the swap and the bookkeeping
    assert f"the last checkpoint is {tmp_path / 'last'} (step 4)" in trainer.saved_note()
    fresh = Trainer(make("transformer"), config(tmp_path / "empty", max_steps=8), TRAIN, VAL)
    assert "before its first checkpoint; nothing was saved" in fresh.saved_note()
