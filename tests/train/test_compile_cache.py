"""Compiled training's artifacts kept across runs: the key follows what shapes the graph, a second run
in a new process (its Inductor cache empty) loads the first run's artifacts and compiles nothing anew
(torch's cache counters, not timing), and trains the same weights; a damaged file costs a compile,
never the run."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.train import TrainConfig, compile_cache
from arlm.train.compiled_step import WHOLE_STEP_SUPPORTED

pytestmark = pytest.mark.usefixtures("one_thread")

SRC = Path(__file__).resolve().parents[2] / "src"


def _model(d_model: int = 32) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(vocab_size=16, block_size=16, n_layer=2, n_head=2,
                                           d_model=d_model))


def _config(**settings) -> TrainConfig:
    values = dict(batch_tokens=4 * 16, micro_batch_size=4, block_size=16, max_steps=3, warmup_steps=1,
                  eval_interval=0, show_progress=False, device="cpu")
    return TrainConfig(**(values | settings))


def test_the_key_follows_what_shapes_the_graph():
    key = compile_cache.artifact_key(_model(), _config(), "cpu", True)
    # the learning rate, the seed, clipping and AdamW's settings are not in the graph
    outside = _config(lr=5e-3, seed=3, grad_clip=0.5, weight_decay=0.3, betas=(0.8, 0.9))
    assert key == compile_cache.artifact_key(_model(), outside, "cpu", True)
    for other in (compile_cache.artifact_key(_model(64), _config(), "cpu", True),
                  compile_cache.artifact_key(_model(), _config(block_size=8, batch_tokens=32), "cpu", True),
                  compile_cache.artifact_key(_model(), _config(dtype="bf16"), "cpu", True),
                  compile_cache.artifact_key(_model(), _config(), "cpu", False),
                  compile_cache.artifact_key(_model(), _config(), "cuda", True)):
        assert other != key


def test_a_damaged_artifact_file_is_warned_about_and_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("ARLM_CACHE", str(tmp_path))
    path = compile_cache.artifact_path("k" * 32)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not torch's artifacts")
    with pytest.warns(UserWarning, match="could not be loaded"):
        assert not compile_cache.load_artifacts("k" * 32)
    assert not compile_cache.load_artifacts("m" * 32)  # none saved: nothing loaded, no warning


# one run in a process of its own: 3 compiled steps of a tiny Transformer from the same seed
RUN = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from arlm.models.transformer import TransformerConfig, TransformerLM
    from arlm.train import TrainConfig, Trainer
    from arlm.train import compile_cache
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=16, block_size=16, n_layer=2, n_head=2, d_model=32))
    config = TrainConfig(batch_tokens=64, micro_batch_size=4, block_size=16, max_steps=3, warmup_steps=1,
                         eval_interval=0, show_progress=False, device="cpu",
                         compile=sys.argv[1] == "compiled")
    trainer = Trainer(model, config, np.random.default_rng(0).integers(3, 16, size=4000))
    trainer.train()
    print(json.dumps({"loaded": trainer.artifacts_loaded, "counters": compile_cache.cache_counters(),
                      "weights": [p.detach().flatten().tolist() for p in model.parameters()],
                      "saved": sorted(p.name for p in compile_cache.artifact_folder().glob("*.bin"))}))
""")


def _run(kind: str, arlm_cache: Path, inductor_cache: Path) -> dict:
    env = {**os.environ, "ARLM_CACHE": str(arlm_cache), "TORCHINDUCTOR_CACHE_DIR": str(inductor_cache),
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", RUN, kind], env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # two compiles in processes of their own: minutes on 2 cores
@pytest.mark.skipif(not (WHOLE_STEP_SUPPORTED and compile_cache.ARTIFACTS_SUPPORTED),
                    reason="this torch has no cache artifacts")
def test_a_second_run_loads_the_first_runs_artifacts_and_trains_the_same_weights(tmp_path):
    first = _run("compiled", tmp_path / "arlm", tmp_path / "inductor-1")
    assert not first["loaded"] and first["counters"]["graph_misses"] >= 1 and len(first["saved"]) == 1
    # a new process, Inductor's cache empty (a wiped /tmp): only arlm's artifacts carry the compile over
    second = _run("compiled", tmp_path / "arlm", tmp_path / "inductor-2")
    assert second["loaded"] and second["saved"] == first["saved"]
    assert second["counters"]["graph_misses"] == 0 and second["counters"]["graph_hits"] >= 1
    assert second["counters"]["autograd_misses"] == 0 and second["counters"]["autograd_hits"] >= 1
    assert second["weights"] == first["weights"]  # the same generated code: the same bits
    eager = _run("eager", tmp_path / "arlm", tmp_path / "inductor-3")
    for compiled, reference in zip(second["weights"], eager["weights"], strict=True):
        np.testing.assert_allclose(compiled, reference, rtol=1e-4, atol=1e-5)
