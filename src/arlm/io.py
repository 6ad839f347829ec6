"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Write to a temporary file in the same folder, flush and fsync it, then ``os.replace`` it over the
target. If anything fails on the way, the temporary file is removed and the old target is untouched.
Folders are swapped in two renames; :func:`recover_dir` mends a swap that a crash interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from arlm.errors import FormatError, UnwritableError


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
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM while the block runs, and deliver the first one that came when it
    ends: for writers that a signal must not cut in the middle, such as ``torch.save``'s C++ zip writer
    (an exception raised from its Python callback leaves it with a bad position, and it then fails with
    a RuntimeError of its own instead of the interrupt). Only the main thread receives signals: in any
    other thread the block just runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: held.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if held:
            signal.raise_signal(held[0])  # to the handler that was there before: raised here, now


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on clean exit it replaces ``path``.

    >>> with atomic_write("out.txt") as f:
    ...     f.write("all or nothing")
    """
    path = Path(path)
    if path.is_dir():
        raise UnwritableError(f"{path} is a folder; name a file to write (e.g. {path / 'model.arpa'})")
    binary = "b" in mode
    fd, tmp = _temp_beside(path, tempfile.mkstemp)
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a folder's entries (a rename into or out of it) durable, as fsync does for a file's bytes."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _old_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _leftover_temps(path: Path) -> list[Path]:
    """Temporary files and folders that a killed writer of ``path`` left beside it (``.NAME.XXXXXXXX.tmp``,
    the names :func:`tempfile.mkstemp` and :func:`tempfile.mkdtemp` gave them)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))


def recover_dir(path: str | os.PathLike) -> Path:
    """Finish what a folder swap interrupted by a crash left behind, so ``path`` is whole again.

    :func:`atomic_dir` swaps in two renames (``path`` -> ``.NAME.old``, then the new folder ->
    ``path``). A crash between them leaves no ``path``: the previous folder comes back from
    ``.NAME.old``. A crash after them leaves ``.NAME.old`` beside the new ``path``: it is removed, as
    are unfinished temporary folders and files. Called before a folder is written or read (a model
    folder, a checkpoint to resume), so a crash at any instant leaves the previous or the new folder.
    """
    path = Path(path)
    old = _old_name(path)
    if old.is_dir():
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, path)
        fsync_dir(path.parent)
    for leftover in _leftover_temps(path):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder under a temporary name; on clean exit it replaces ``path`` as a whole.

    Used for model folders (config + weights + tokenizer) so a crash never leaves a mixed folder: the
    files and the folder are fsynced before the swap, each rename is made durable (the parent folder
    fsynced), and :func:`recover_dir` mends a swap that a crash cut between its two renames.
    """
    path = Path(path)
    recover_dir(path)
    tmp = Path(_temp_beside(path, tempfile.mkdtemp))
    try:
        yield tmp
        for child in tmp.iterdir():
            if child.is_file():
                with open(child, "rb") as f:
                    os.fsync(f.fileno())
        fsync_dir(tmp)
        if path.exists():
            old = _old_name(path)
            os.replace(path, old)
            fsync_dir(path.parent)
            os.replace(tmp, path)
            fsync_dir(path.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
            fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        recover_dir(path)
        raise


def read_json(path: Path, what: str, fix: str):
    """The JSON file ``path`` (``what`` it holds, for the message), or a one-line FormatError ending in
    ``fix`` when it is missing or not valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise FormatError(f"{path} ({what}) is missing; {fix}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{path} ({what}) is not valid JSON ({e}); {fix}") from e
