"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Write to a temporary file in the same folder, flush and fsync it, then ``os.replace`` it over the
target. If anything fails on the way, the temporary file is removed and the old target is untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from arlm.errors import UnwritableError


def _temp_beside(path: Path, make):
    """Create ``path``'s folder and a temporary file or folder in it with ``make(prefix, suffix, dir)``;
    if that is impossible, say in one sentence which target cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return make(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise UnwritableError(f"cannot write {path} ({e.strerror or e}); choose an output path in a folder "
                        "you can write to") from e


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on clean exit it replaces ``path``.

    >>> with atomic_write("out.txt") as f:
    ...     f.write("all or nothing")
    """
    path = Path(path)
    binary = "b" in mode
    fd, tmp = _temp_beside(path, tempfile.mkstemp)
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder under a temporary name; on clean exit it replaces ``path`` as a whole.

    Used for model folders (config + weights + tokenizer) so a crash never leaves a mixed folder.
    """
    path = Path(path)
    tmp = Path(_temp_beside(path, tempfile.mkdtemp))
    try:
        yield tmp
        for child in tmp.iterdir():
            if child.is_file():
                with open(child, "rb") as f:
                    os.fsync(f.fileno())
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
