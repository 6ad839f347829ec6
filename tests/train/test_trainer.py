"""The training loop: exact gradient accumulation, loss goes down for every family, mixed precision,
non-finite losses, early stopping, metrics, config errors. Tiny models, one thread, a few seconds."""

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arlm.errors import ConfigError
from arlm.models.rnn import RNNLM, RNNConfig
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.models.window import WindowConfig, WindowLM
from arlm.streams import PAD_ID, SOS_ID
from arlm.train import TrainConfig, Trainer, TrainingError, read_state
from arlm.train.batches import loss_targets
from arlm.train.trainer import FUSED_ADAMW_ON_CPU, clip_grad_norm, param_groups
from extras import require
from train_helpers import counting_corpus, only_the_poisoned_step_was_skipped, poison_one_step

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


TRAIN, VAL = counting_corpus(3000, 0), counting_corpus(400, 1)


def make(family: str, dropout: float = 0.0):
    torch.manual_seed(0)
    if family == "transformer":
        return TransformerLM(TransformerConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, d_model=16,
                                               dropout=dropout))
    if family == "rnn":
        return RNNLM(RNNConfig(vocab_size=20, d_embed=16, d_hidden=16, dropout=dropout))
    return WindowLM(WindowConfig(vocab_size=20, context=3, d_embed=8, d_hidden=16, dropout=dropout))


def config(**kw) -> TrainConfig:
    base = {"batch_tokens": 128, "micro_batch_size": 8, "block_size": 16, "lr": 1e-2, "warmup_steps": 5,
            "max_steps": 60, "eval_interval": 30, "device": "cpu", "show_progress": False}
    return TrainConfig(**{**base, **kw})


# ----- configuration ---------------------------------------------------------------------------


def test_micro_batch_larger_than_batch():
    with pytest.raises(ConfigError, match="micro-batch"):
        TrainConfig(batch_tokens=64, block_size=16, micro_batch_size=8)  # 4 rows < 8


@pytest.mark.parametrize("bad", [{"dtype": "fp8"}, {"schedule": "step"}, {"batch_tokens": 8},
                                 {"lr": 0.0}, {"max_steps": 0}, {"lr": float("nan")}, {"lr": float("inf")},
                                 {"grad_clip": float("nan")}, {"weight_decay": float("inf")},
                                 {"betas": (0.9, 1.0)}, {"eps": 0.0}, {"max_seconds": float("inf")}])
def test_bad_config(bad):
    with pytest.raises(ConfigError):
        config(**bad)


def test_config_from_dict():
    cfg = TrainConfig.from_dict({"lr": 0.01, "betas": [0.9, 0.99], "block_size": 32})
    assert cfg.lr == 0.01 and cfg.betas == (0.9, 0.99)
    assert TrainConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg  # round trip
    with pytest.raises(ConfigError, match="unknown training setting 'lr_max'"):
        TrainConfig.from_dict({"lr_max": 0.1})


def test_distributed_without_torchrun(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="torchrun"):
        Trainer(make("transformer"), config(distributed=True), TRAIN, VAL)


def test_fp16_lstm_on_cpu_is_refused():
    with pytest.raises(ConfigError, match="fp16 LSTM"):
        Trainer(make("rnn"), config(dtype="fp16"), TRAIN, VAL)


def test_param_groups_decay_only_weight_matrices():
    model = make("transformer")
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.dim() == 2 for p in decay["params"])
    assert "transformer.wte.weight" in {names[id(p)] for p in no_decay["params"]}  # (tied) embeddings
    assert "transformer.wpe.weight" in {names[id(p)] for p in no_decay["params"]}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


# ----- gradient accumulation -----------------------------------------------------------------


@pytest.mark.parametrize("family", ["transformer", "rnn", "window"])
def test_accumulated_gradient_equals_big_batch_gradient(family):
    model = make(family)
    window = torch.from_numpy(TRAIN[:8 * 17].astype(np.int64)).view(8, 17)  # has [SOS] targets (unscored)
    window[3, 10:] = PAD_ID  # and padding: micro-batches hold unequal numbers of targets
    grads = []
    for micro in (8, 3, 1):
        m = copy.deepcopy(model)
        trainer = Trainer(m, config(batch_tokens=8 * 16, micro_batch_size=micro), TRAIN, VAL)
        loss = trainer.backward(window)
        grads.append(({n: p.grad.clone() for n, p in m.named_parameters()}, loss))
    # the reference: one forward pass, mean NLL over every scored target of the batch
    m = copy.deepcopy(model)
    inputs, targets = loss_targets(window)
    logits, _ = m(inputs)
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD_ID)
    ref.backward()
    for g, loss in grads:
        assert loss == pytest.approx(ref.item(), abs=1e-6)
        for n, p in m.named_parameters():
            torch.testing.assert_close(g[n], p.grad, atol=1e-6, rtol=0, msg=n)


# ----- training works ------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["transformer", "rnn", "window"])
def test_training_lowers_the_validation_loss(family, tmp_path):
    trainer = Trainer(make(family, dropout=0.1), config(out_dir=str(tmp_path)), TRAIN, VAL)
    before = trainer.evaluate()["val_loss"]
    summary = trainer.train()
    assert summary.step == 60 and summary.tokens_seen == 60 * 128
    assert summary.val_loss < before - 0.5, (before, summary.val_loss)
    assert summary.best_val_loss <= summary.val_loss
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "tokens_per_s", "grad_norm"} <= set(lines[0])
    assert [x["step"] for x in lines if "val_loss" in x] == [30, 60]
    assert read_state(tmp_path / "last")["step"] == 60
    assert (tmp_path / "best" / "model.safetensors").is_file()


def test_eval_batches_scores_the_splits_first_batches_only():
    """eval_batches = n: the loss over the first n validation batches (what n batches of the whole
    evaluation would give), bits per character scaled by the whole split's targets per character."""
    from arlm.data.cache import EncodedSplit

    val = EncodedSplit(tokens=np.asarray(VAL, dtype=np.uint16), num_chars=len(VAL) - 3, num_sequences=1)
    model = make("transformer")
    whole = Trainer(model, config(eval_batch_size=2), TRAIN, val)
    capped = Trainer(model, config(eval_batch_size=2, eval_batches=1), TRAIN, val)
    first_rows = config(eval_batch_size=2).block_size * 2 + 1  # the first batch: 2 rows, their last target
    alone = Trainer(model, config(eval_batch_size=2), TRAIN, EncodedSplit(
        tokens=np.asarray(VAL[:first_rows], dtype=np.uint16), num_chars=len(VAL) - 3, num_sequences=1))
    got, exact = capped.evaluate(), whole.evaluate()
    assert got["val_loss"] == pytest.approx(alone.evaluate()["val_loss"], rel=1e-6)
    assert got["val_loss"] != pytest.approx(exact["val_loss"], rel=1e-4)
    assert got["val_bits_per_char"] == pytest.approx(
        got["val_loss"] / math.log(2) * (len(VAL) - 1) / (len(VAL) - 3), rel=1e-9)
    with pytest.raises(ConfigError, match="eval_batches must not be negative"):
        config(eval_batches=-1)


@pytest.mark.parametrize("family", ["transformer", "rnn"])
def test_bf16_autocast_lowers_loss_and_keeps_fp32_master_weights(family):
    model = make(family)
    trainer = Trainer(model, config(dtype="bf16", max_steps=30), TRAIN, VAL)
    before = trainer.evaluate()["val_loss"]
    with trainer.autocast():
        logits, _ = model(torch.tensor([[SOS_ID, 5]]))
        assert logits.dtype == torch.bfloat16  # autocast is on
    summary = trainer.train()
    assert summary.val_loss < before - 0.5
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for state in trainer.optimizer.state.values():
        assert state["exp_avg"].dtype == torch.float32


def _cpu_fp16_autocast_works() -> bool:
    """Whether this torch build runs an fp16 matmul forward and backward under CPU autocast."""
    try:
        x = torch.ones(2, 2, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.float16):
            y = x @ x
        y.float().sum().backward()
        return y.dtype == torch.float16
    except (RuntimeError, NotImplementedError):
        return False


@pytest.mark.skipif(not _cpu_fp16_autocast_works(), reason="this torch build has no CPU fp16 autocast")
def test_fp16_with_grad_scaler_lowers_loss():
    model = make("transformer")
    trainer = Trainer(model, config(dtype="fp16", max_steps=30), TRAIN, VAL)
    assert trainer.scaler.is_enabled()
    before = trainer.evaluate()["val_loss"]
    summary = trainer.train()
    assert summary.val_loss < before - 0.5
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert trainer.scaler.get_scale() > 0


def test_gru_fp16_runs():
    model = RNNLM(RNNConfig(vocab_size=20, d_embed=16, d_hidden=16, cell="gru"))
    summary = Trainer(model, config(dtype="fp16", max_steps=4, eval_interval=0), TRAIN, VAL).train()
    assert math.isfinite(summary.val_loss)


# ----- failures ------------------------------------------------------------------------------


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = make("transformer")
    trainer = Trainer(model, config(out_dir=str(tmp_path), eval_interval=5, max_steps=20), TRAIN, VAL)

    def poison(module, args, output):  # from step 7 on, the model outputs NaN
        return output * float("nan") if trainer.step >= 7 else output

    model.lm_head.register_forward_hook(poison)
    with pytest.raises(TrainingError, match="lower lr"):
        trainer.train()
    assert trainer.step == 7  # the NaN step was not taken
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert read_state(tmp_path / "last")["step"] == 5
    assert "error" in json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    fresh = Trainer(make("transformer"), config(out_dir=str(tmp_path)), TRAIN, VAL)
    fresh.load(tmp_path / "last")
    assert fresh.step == 5
    assert all(torch.isfinite(p).all() for p in fresh.model.parameters())


@pytest.mark.skipif(not FUSED_ADAMW_ON_CPU, reason="fused AdamW on the CPU needs torch >= 2.4")
def test_checks_on_the_device_take_the_same_steps_and_skip_a_non_finite_one(tmp_path):
    # CUDA's path (nothing waits for the device; forced here on the CPU, where fused AdamW takes
    # found_inf too): the same losses, norms and weights as reading and checking every step
    runs = []
    for on_device in (False, True):
        trainer = Trainer(make("transformer"), config(fused_adamw=True, max_steps=12, log_interval=4,
                                                      eval_interval=6), TRAIN, VAL)
        trainer.checks_on_device = on_device
        runs.append((trainer, trainer.train()))
    (now, now_summary), (later, later_summary) = runs
    def numbers(summary):  # every logged number but the clock's
        return [{k: v for k, v in record.items() if k != "tokens_per_s"} for record in summary.history]

    assert numbers(now_summary) == numbers(later_summary)
    assert any(record.get("grad_norm") is not None for record in numbers(later_summary))
    for p, q in zip(now.model.parameters(), later.model.parameters(), strict=True):
        assert torch.equal(p, q)
    # one poisoned step (7): its update is skipped on the device; the loop raises at its next read (8)
    model = make("transformer")
    trainer = Trainer(model, config(fused_adamw=True, out_dir=str(tmp_path), max_steps=20, log_interval=4,
                                    eval_interval=10), TRAIN, VAL)
    trainer.checks_on_device = True
    weights = poison_one_step(trainer, 7)
    with pytest.raises(TrainingError, match=r"at step 7 .*skipped"):
        trainer.train()
    assert trainer.step == 8
    assert only_the_poisoned_step_was_skipped(weights, model, 7)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 7 and "error" in last


def test_early_stopping(monkeypatch):
    trainer = Trainer(make("transformer"), config(eval_interval=2, patience=2, max_steps=50), TRAIN, VAL)
    losses = iter([3.0, 2.0, 2.5, 2.4, 1.0])
    monkeypatch.setattr(trainer, "evaluate", lambda: {"val_loss": next(losses), "val_ppl": 0.0})
    summary = trainer.train()
    assert summary.stopped_early and summary.step == 8  # evaluations at 2, 4 (best), 6, 8: 2 without gain
    assert summary.best_val_loss == 2.0


def test_step_applies_schedule_and_clips_the_global_norm():
    model = make("transformer")
    trainer = Trainer(model, config(grad_clip=0.01, warmup_steps=4, max_steps=8), TRAIN, VAL)
    seen = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
        seen.append((float(norm), [g["lr"] for g in trainer.optimizer.param_groups]))
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    outs = [trainer.train_step() for _ in range(3)]
    for i, (out, (norm, lrs)) in enumerate(zip(outs, seen, strict=True)):
        assert out["grad_norm"] > 0.01  # the norm before clipping
        assert norm == pytest.approx(0.01, rel=1e-4)  # what the optimizer applied
        assert lrs == [pytest.approx(1e-2 * (i + 1) / 4)] * 2  # warmup, in both groups


def test_a_step_trains_in_training_mode_after_evaluation_or_a_callers_eval():
    trainer = Trainer(make("transformer", dropout=0.5), config(), TRAIN, VAL)
    trainer.evaluate()  # eval() for the validation, then back
    trainer.model.eval()  # a caller's eval() between steps
    trainer.train_step()
    assert trainer.wrapped.training and all(m.training for m in trainer.wrapped.modules())
    seen = []  # the dropout of that step was on: its modules ran in training mode
    hook = trainer.model.transformer.drop.register_forward_hook(lambda m, i, o: seen.append(m.training))
    trainer.train_step()
    hook.remove()
    assert seen == [True]


@pytest.mark.parametrize("max_norm", [0.05, 100.0])  # clipped, and left alone
def test_clip_grad_norm_equals_torchs(max_norm):
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(shape)) for shape in [(8, 4), (4,), (3, 5, 2)]]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for p, q in zip(ours, theirs, strict=True):
        p.grad = torch.randn(p.shape) * 0.1
        q.grad = p.grad.clone()
    norm = clip_grad_norm(ours, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, foreach=False)
    assert float(norm) == float(expected)
    for p, q in zip(ours, theirs, strict=True):
        assert torch.equal(p.grad, q.grad)  # the same numbers, bit for bit
    assert (float(norm) > max_norm) == (max_norm == 0.05)  # the first case did clip


@pytest.mark.skipif(not FUSED_ADAMW_ON_CPU, reason="fused AdamW on the CPU needs torch >= 2.4")
def test_fused_adamw_equals_the_for_loop_adamw():
    # the same gradients (no feedback from the weights) -> the same updates, to rounding
    fused_model, loop_model = make("transformer"), make("transformer")
    fused = torch.optim.AdamW(param_groups(fused_model, 0.1), lr=1e-2, betas=(0.9, 0.95), fused=True)
    loop = torch.optim.AdamW(param_groups(loop_model, 0.1), lr=1e-2, betas=(0.9, 0.95), foreach=False)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        for p, q in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
            p.grad = torch.randn(p.shape, generator=gen) * 0.01
            q.grad = p.grad.clone()
        fused.step()
        loop.step()
    for (name, p), q in zip(fused_model.named_parameters(), loop_model.parameters(), strict=True):
        assert not torch.equal(p, make("transformer").get_parameter(name))  # it moved
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)


@pytest.mark.skipif(not FUSED_ADAMW_ON_CPU, reason="fused AdamW on the CPU needs torch >= 2.4")
def test_fused_adamw_on_the_cpu_is_opt_in_and_resumes_either_way(tmp_path):
    loop = Trainer(make("transformer"), config(), TRAIN, VAL)
    assert not loop.optimizer.defaults["fused"]  # the default on a CPU: torch's for-loop kernel
    fused = Trainer(make("transformer"), config(fused_adamw=True), TRAIN, VAL)
    assert fused.optimizer.defaults["fused"] is True
    a, b = fused.train_step(), loop.train_step()  # one step: same gradients, same update to rounding
    assert a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"]
    for (name, p), q in zip(fused.model.named_parameters(), loop.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)
    # checkpoints cross between the two: the fused optimizer resumes the for-loop one's and back, and
    # the next step uses the loaded moments (a reset state would take a different first step)
    fused.save(tmp_path / "fused")
    loop.save(tmp_path / "loop")
    loop_from_fused = Trainer(make("transformer"), config(), TRAIN, VAL)
    loop_from_fused.load(tmp_path / "fused")
    fused_from_loop = Trainer(make("transformer"), config(fused_adamw=True), TRAIN, VAL)
    fused_from_loop.load(tmp_path / "loop")
    assert all(group["fused"] for group in fused_from_loop.optimizer.param_groups)
    assert not any(group["fused"] for group in loop_from_fused.optimizer.param_groups)
    steps = [t.train_step() for t in (loop, fused_from_loop, loop_from_fused)]
    assert steps[1]["loss"] == pytest.approx(steps[0]["loss"], rel=1e-6) == steps[2]["loss"]
    for resumed in (fused_from_loop, loop_from_fused):
        for (name, p), q in zip(resumed.model.named_parameters(), loop.model.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)


# ----- TensorBoard ---------------------------------------------------------------------------


def test_tensorboard_scalars_equal_the_metrics_file(tmp_path):
    event_accumulator = require(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="tensorboard is not installed (pip install tensorboard)")
    trainer = Trainer(make("transformer"), config(out_dir=str(tmp_path), max_steps=20, eval_interval=10,
                                                  tensorboard=True), TRAIN, VAL)
    trainer.train()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    expected = [(r["step"], r["val_loss"]) for r in lines if "val_loss" in r]
    assert len(expected) == 2
    events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    got = [(e.step, e.value) for e in events.Scalars("val_loss")]
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6)


def test_tensorboard_without_an_output_folder_is_a_config_error():
    with pytest.raises(ConfigError, match="out_dir"):
        Trainer(make("transformer"), config(tensorboard=True), TRAIN, VAL)


def test_max_seconds_ends_training_early_and_says_so(tmp_path):
    """A clock budget stops at the first step past it; the summary and the checkpoint record why."""
    model = make("transformer")
    trainer = Trainer(model, config(max_steps=500, max_seconds=1e-9, out_dir=str(tmp_path)), TRAIN, VAL)
    summary = trainer.train()
    assert summary.step == 1 and summary.stopped_by == "max_seconds"
    assert read_state(tmp_path / "last")["stopped_by"] == "max_seconds"
    assert summary.val_loss is not None  # it still evaluated and saved at the end
    full = Trainer(make("transformer"), config(max_steps=3, max_seconds=1e9), TRAIN, VAL).train()
    assert full.step == 3 and full.stopped_by == "max_steps"
    with pytest.raises(ConfigError, match="max_seconds"):
        config(max_seconds=0)
