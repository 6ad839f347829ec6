"""Atomic writes: a failure midway leaves the old file (or folder) exactly as it was."""

import os
import signal

import pytest

from arlm.errors import ArlmError
from arlm.io import atomic_dir, atomic_write, interrupts_held


def test_atomic_write_replaces_on_success(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with atomic_write(p) as f:
        f.write("new")
    assert p.read_text() == "new"
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(p) as f:
        f.write("half")
        raise RuntimeError("crash")
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_keeps_old_folder_on_failure(tmp_path):
    d = tmp_path / "model"
    with atomic_dir(d) as tmp:
        (tmp / "config.json").write_text("{1}")
    with pytest.raises(RuntimeError), atomic_dir(d) as tmp:
        (tmp / "config.json").write_text("{2}")
        raise RuntimeError("crash")
    assert (d / "config.json").read_text() == "{1}"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["model"]
    with atomic_dir(d) as tmp:
        (tmp / "config.json").write_text("{3}")
    assert (d / "config.json").read_text() == "{3}"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize("writer", [atomic_write, atomic_dir])
def test_an_unwritable_target_is_one_clear_error_naming_it(tmp_path, writer):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    target = blocker / "out"
    with pytest.raises(ArlmError, match=r"cannot write .*file\.txt/out"), writer(target):
        pass
    assert blocker.read_text() == "a file, not a folder"


# ---------------------------------------------------------------------------------------------
# The folder swap, cut by a crash at every step
# ---------------------------------------------------------------------------------------------


class Crash(BaseException):
    """The process dies here: no later file operation (no clean-up) runs."""


class CrashAfter:
    """Patch the file operations of arlm.io so that the ``n``-th of them kills the "process": it and
    every later one raise :class:`Crash` without touching the disk."""

    OPERATIONS = (("os", "replace"), ("os", "fsync"), ("shutil", "rmtree"))

    def __init__(self, monkeypatch, n: int) -> None:
        import arlm.io

        self.n, self.calls, self.dead = n, [], False
        for module_name, name in self.OPERATIONS:
            module = getattr(arlm.io, module_name)
            monkeypatch.setattr(module, name, self._wrap(name, getattr(module, name)))

    def _wrap(self, name, real):
        def operation(*args, **kwargs):
            if self.dead or len(self.calls) == self.n:
                self.dead = True
                raise Crash(name)
            self.calls.append(name)
            return real(*args, **kwargs)

        return operation


def _write_folder(path, text: str) -> None:
    with atomic_dir(path) as tmp:
        (tmp / "config.json").write_text(text)
        (tmp / "weights.bin").write_bytes(text.encode() * 100)


def _folder_is(path, text: str) -> bool:
    return ((path / "config.json").read_text() == text
            and (path / "weights.bin").read_bytes() == text.encode() * 100)


def _count_operations(tmp_path, monkeypatch) -> int:
    target = tmp_path / "count" / "last"
    _write_folder(target, "old")
    with monkeypatch.context() as mp:
        counter = CrashAfter(mp, 10**9)
        _write_folder(target, "new")
    return len(counter.calls)


def test_a_crash_at_any_step_of_the_swap_leaves_the_old_or_the_new_folder(tmp_path, monkeypatch):
    from arlm.io import recover_dir

    steps = _count_operations(tmp_path, monkeypatch)
    assert steps >= 6  # fsyncs of the files and folders, two renames, the removal: a crash point each
    outcomes = set()
    for crash_at in range(steps):
        target = tmp_path / f"run{crash_at}" / "last"
        _write_folder(target, "old")
        with monkeypatch.context() as mp:
            CrashAfter(mp, crash_at)
            with pytest.raises(Crash):
                _write_folder(target, "new")
        recover_dir(target)  # the next start: a resume, an eval, or the next save
        outcomes.add("old" if _folder_is(target, "old") else "new" if _folder_is(target, "new") else "lost")
        assert sorted(p.name for p in target.parent.iterdir()) == ["last"], crash_at
        _write_folder(target, "newer")  # and the folder takes the next checkpoint
        assert _folder_is(target, "newer")
    assert outcomes == {"old", "new"}  # crashes before the second rename keep the old, after it the new


def test_a_crash_between_the_two_renames_brings_the_previous_folder_back(tmp_path):
    from arlm.io import recover_dir

    target = tmp_path / "last"
    _write_folder(target, "old")
    target.rename(tmp_path / ".last.old")  # the first rename happened, the second did not
    (tmp_path / ".last.abcd1234.tmp").mkdir()  # an unfinished build
    (tmp_path / ".last.abcd1234.tmp" / "config.json").write_text("half")
    (tmp_path / ".lastly.abcd1234.tmp").mkdir()  # another folder's: left alone
    recover_dir(target)
    assert _folder_is(target, "old")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lastly.abcd1234.tmp", "last"]


class _Stop(BaseException):
    pass


def test_an_interrupt_waits_for_the_held_block_and_then_reaches_the_old_handler():
    """A SIGTERM sent inside ``interrupts_held`` lets the block finish, then raises where it ends; the old
    handler is back afterwards."""
    def stop(signum, frame):
        raise _Stop(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    done = []
    try:
        with pytest.raises(_Stop), interrupts_held():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("after the signal")
        assert done == ["after the signal"]
        assert signal.getsignal(signal.SIGTERM) is stop
        with interrupts_held():  # nothing sent: nothing raised
            done.append("quiet")
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_checkpoint_save_finishes_before_an_interrupt(tmp_path, monkeypatch):
    """SIGTERM arriving while torch.save writes the optimizer's state: the checkpoint is whole and the
    interrupt comes after it (it used to surface as torch's RuntimeError "unexpected pos")."""
    import torch

    from arlm.models.transformer import TransformerConfig, TransformerLM
    from arlm.train.checkpoint import read_state, save_checkpoint

    def stop(signum, frame):
        raise _Stop(signum)

    real_save = torch.save

    def save_and_get_signalled(obj, f, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # in the middle of the checkpoint
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_and_get_signalled)
    model = TransformerLM(TransformerConfig(vocab_size=8, block_size=4, n_layer=1, n_head=1, d_model=8))
    optimizer = torch.optim.AdamW(model.parameters())
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(_Stop):
            save_checkpoint(tmp_path / "last", model, optimizer, {"step": 1})
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert read_state(tmp_path / "last")["step"] == 1  # whole: every file matches its checksum
