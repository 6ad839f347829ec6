"""Running `arlm …` as a user does (a subprocess) and checking its one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def arlm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`arlm ARGS` in ``cwd``, its token cache kept inside ``cwd``."""
    return subprocess.run([sys.executable, "-m", "arlm.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "ARLM_CACHE": str(cwd / "cache")})


def one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 2, no traceback, and the last stderr line is the one `error: …` line holding ``words``."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and r.stderr.rstrip().endswith(errors[0]), r.stderr
    for word in words:
        assert word.lower() in errors[0].lower(), errors[0]
    return errors[0]


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
