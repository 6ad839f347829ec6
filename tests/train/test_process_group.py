"""A distributed run ends its process group on every way out (PyTorch warns that resources may leak
otherwise): a finished run, a failing one and an interrupted one. One gloo process (world size 1)."""

from __future__ import annotations

import socket

import pytest
import torch.distributed as dist

from arlm.errors import Interrupted
from arlm.train.trainer import Trainer
from arlm.usecases.train import TrainRequest, train_neural
from cli_helpers import word_lines


@pytest.fixture
def torchrun_env(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(name, value)
    yield
    if dist.is_initialized():  # a failing test must not leave it for the next one
        dist.destroy_process_group()


def _request(tmp_path) -> TrainRequest:
    (tmp_path / "text.txt").write_text(word_lines(100, seed=2))
    return TrainRequest("transformer", corpus=str(tmp_path / "text.txt"), split="all", val_split="",
                        overrides=["distributed=true", "device=cpu", "max_steps=2", "eval_interval=2"],
                        out_dir=tmp_path / "run", threads=1)


def test_a_finished_run_ends_its_process_group(tmp_path, torchrun_env):
    result = train_neural(_request(tmp_path), log=lambda *_: None)
    assert result.summary.step == 2
    assert not dist.is_initialized()


@pytest.mark.parametrize("stop", [RuntimeError("a failure inside the loop"), Interrupted(2)])
def test_a_run_that_fails_or_is_interrupted_ends_its_process_group(tmp_path, torchrun_env, monkeypatch,
                                                                   stop):
    def train(self, *args, **kwargs):
        assert dist.is_initialized()  # the group was running when the run stopped
        raise stop

    monkeypatch.setattr(Trainer, "train", train)
    with pytest.raises(type(stop)):
        train_neural(_request(tmp_path), log=lambda *_: None)
    assert not dist.is_initialized()
