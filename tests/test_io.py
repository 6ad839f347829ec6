"""Atomic writes: a failure midway leaves the old file (or folder) exactly as it was."""

import pytest

from arlm.errors import ArlmError
from arlm.io import atomic_dir, atomic_write


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
