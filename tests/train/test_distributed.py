"""Data parallel (F16): two gloo processes under torchrun give the update of one process."""

import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # two training processes under torchrun

SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    import torch
    import torch.distributed as dist
    from arlm.streams import EOS_ID, SOS_ID
    from arlm.models.rnn import RNNLM, RNNConfig
    from arlm.models.transformer import TransformerConfig, TransformerLM
    from arlm.train import TrainConfig, Trainer

    torch.set_num_threads(1)
    out, distributed = sys.argv[1], sys.argv[2] == "1"
    rng = np.random.default_rng(0)
    ids = []
    while len(ids) < 2000:
        s, n = rng.integers(4, 12), rng.integers(2, 8)
        ids += [SOS_ID, *range(s, s + n), EOS_ID]
    train, val = np.array(ids[:1700]), np.array(ids[1700:2000])
    for family in ("transformer", "rnn"):
        torch.manual_seed(0)
        if family == "transformer":
            model = TransformerLM(TransformerConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2,
                                                    d_model=16))
        else:
            model = RNNLM(RNNConfig(vocab_size=20, d_embed=16, d_hidden=16))
        cfg = TrainConfig(batch_tokens=64, micro_batch_size=1, block_size=16, lr=1e-2, warmup_steps=2,
                          max_steps=6, eval_interval=3, device="cpu", out_dir=f"{out}/{family}",
                          distributed=distributed, show_progress=False)
        Trainer(model, cfg, train, val).train()
    if distributed:
        dist.destroy_process_group()
''')


def test_two_processes_match_one(tmp_path):
    """Each family trained 6 steps (with a checkpoint at 3) by 1 process and by 2 under torchrun."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    # processes of their own: torchrun starts the two ranks, and the one-process run must see the same
    # fresh interpreter (no process group, default threads) as each of them
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "0"],
                            capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                          "2", str(script), str(tmp_path / "two"), "1"],
                         capture_output=True, text=True, timeout=120)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    for family in ("transformer", "rnn"):
        one = load_file(str(tmp_path / "one" / family / "last" / "model.safetensors"))
        two = load_file(str(tmp_path / "two" / family / "last" / "model.safetensors"))
        assert one.keys() == two.keys()
        for name in one:  # the same updates up to float summation order
            torch.testing.assert_close(two[name], one[name], atol=1e-5, rtol=1e-4, msg=f"{family} {name}")
