"""Running `arlm …` and checking what it printed: one runner, :func:`arlm`, in this process (the
default: no interpreter start, no torch import per call), and :func:`arlm_process`, the installed
console script in a new process, for the few tests of the script itself and the ones that need a
process of their own (a kill, a live server)."""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

# Python's warning filters in a fresh process (`python -W` and PYTHONWARNINGS unset): a command run in
# this process shows on its stderr the warnings a user would see, not those pytest's filters pick.
DEFAULT_WARNING_FILTERS = [("default", DeprecationWarning, "__main__"), ("ignore", DeprecationWarning, ""),
                           ("ignore", PendingDeprecationWarning, ""), ("ignore", ImportWarning, ""),
                           ("ignore", ResourceWarning, "")]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _as_a_new_process(cwd: Path):
    """Working folder ``cwd``, token cache ``cwd/cache`` and fresh warning filters for the block; the
    process state a command may change (working folder, environment, argv, torch threads, random
    generators) is put back afterwards, so the tests that follow see none of it."""
    saved_cwd, saved_argv, saved_env = os.getcwd(), sys.argv, dict(os.environ)
    main = sys.modules["__main__"]  # pytest's, when run as `python -m pytest`
    saved_package = main.__dict__.get("__package__")
    threads = torch.get_num_threads()
    rng = torch.random.get_rng_state(), random.getstate(), np.random.get_state()
    try:
        os.chdir(cwd)
        os.environ["ARLM_CACHE"] = str(Path(cwd) / "cache")
        # as under the console script: click names the program `arlm` in its messages ("see `arlm
        # eval --help`"), not `python -m pytest.arlm`
        main.__package__ = None
        with warnings.catch_warnings():
            warnings.resetwarnings()
            for action, category, module in DEFAULT_WARNING_FILTERS:
                warnings.filterwarnings(action, category=category, module=module, append=True)
            warnings.showwarning = _show_warning
            yield
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        main.__package__ = saved_package
        for name in set(os.environ) | set(saved_env):  # only what changed: other threads may read it
            if name not in saved_env:
                del os.environ[name]
            elif os.environ.get(name) != saved_env[name]:
                os.environ[name] = saved_env[name]
        torch.set_num_threads(threads)
        torch.random.set_rng_state(rng[0])
        random.setstate(rng[1])
        np.random.set_state(rng[2])


def arlm(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """`arlm ARGS` in ``cwd`` (its token cache kept inside ``cwd``), run in this process through
    ``arlm.cli.main``: the exit code, stdout and stderr a user would get from the console script,
    a traceback included (exit code 1) if the command raised."""
    from arlm import cli

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with _as_a_new_process(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        sys.argv = ["arlm", *argv]
        try:
            cli.main()
            code = 0
        except SystemExit as e:  # what the interpreter makes of sys.exit(code)
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int | None):
                print(e.code, file=sys.stderr)
        except Exception:  # uncaught: Python prints the traceback and exits with 1
            traceback.print_exc()
            code = 1
    return subprocess.CompletedProcess(["arlm", *argv], code, out.getvalue(), err.getvalue())


def console_script() -> str:
    """The path of the installed `arlm` console script (next to this Python, else on PATH)."""
    beside = Path(sys.executable).with_name("arlm")
    found = str(beside) if beside.is_file() else shutil.which("arlm")
    if found is None:
        raise AssertionError("the `arlm` console script is not installed: pip install -e .")
    return found


def arlm_process(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`arlm ARGS` as a user runs it: the installed console script in a new process, in ``cwd``, its
    token cache kept inside ``cwd``. Slow (it starts Python and imports torch): only for testing the
    script itself; everything else uses :func:`arlm`."""
    return subprocess.run([console_script(), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "ARLM_CACHE": str(Path(cwd) / "cache")}, timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 2, no traceback, and the last stderr line is the one `error: …` line holding ``words``."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and r.stderr.rstrip().endswith(errors[0]), r.stderr
    for word in words:
        assert word.lower() in errors[0].lower(), errors[0]
    return errors[0]


def only_an_error(r: subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 2 and stderr is exactly one `error:` line holding ``words``: nothing (no summary, no
    warning) printed before it."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def ok(r: subprocess.CompletedProcess) -> str:
    """Exit code 0, no traceback; the standard output."""
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "log", "saw", "and", "met", "was", "."]


def word_lines(n: int, seed: int) -> str:
    """``n`` random lines of 3-9 toy words: a corpus every family learns something from."""
    import random

    rng = random.Random(seed)
    return "".join(" ".join(rng.choices(WORDS, k=rng.randint(3, 9))) + "\n" for _ in range(n))


TOY_LINES = ["the cat sat on the mat .", "the dog sat on the log .", "a cat saw a dog .",
             "the dog saw the cat and the cat ran .", "a dog ran on the mat ."] * 4


def save_toy_word_models(root: Path, block_size: int, n_layer: int):
    """A word tokenizer on TOY_LINES, a KN trigram and a seeded tiny Transformer saved as model folders
    ``root/ngram`` and ``root/tf``; returns (tokenizer, the trigram model)."""
    import torch

    from arlm.data.tokenizers import train_tokenizer
    from arlm.models.ngram import NGramModel
    from arlm.models.transformer import TransformerConfig, TransformerLM
    from arlm.usecases.checkpoints import save_model

    tok = train_tokenizer("word", TOY_LINES)
    data = [i for line in tok.encode_lines(TOY_LINES) for i in [1, *line.tolist(), 2]]
    ngram = NGramModel.fit(torch.tensor(data).numpy(), order=3, vocab=tok.vocab, smoothing="kn",
                           discount_fallback=True)
    save_model(root / "ngram", ngram, tok)
    torch.manual_seed(0)
    tf = TransformerLM(TransformerConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=n_layer,
                                         n_head=2, d_model=16))
    save_model(root / "tf", tf, tok)
    return tok, ngram
