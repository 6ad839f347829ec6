"""Models for the server tests: a tiny word-level Transformer and a trigram model, saved as folders
and loaded the way `arlm serve` loads them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from arlm import pipeline
from arlm.data.tokenizers import train_tokenizer
from arlm.models.ngram import NGramModel
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.serve import LoadedModel, ServeSettings, create_app, load_models

LINES = ["the cat sat on the mat .", "the dog sat on the log .", "a cat saw a dog .",
         "the dog saw the cat and the cat ran .", "a dog ran on the mat ."] * 4


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve_models")
    tok = train_tokenizer("word", LINES)
    data = [i for line in tok.encode_lines(LINES) for i in [1, *line.tolist(), 2]]
    ngram = NGramModel.fit(torch.tensor(data).numpy(), order=3, vocab=tok.vocab, smoothing="kn",
                           discount_fallback=True)
    pipeline.save_model(root / "tri", ngram, tok)
    torch.manual_seed(0)
    tf = TransformerLM(TransformerConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2,
                                         d_model=16))
    pipeline.save_model(root / "tf", tf, tok)
    return {"root": root, "tf": root / "tf", "tri": root / "tri"}


@pytest.fixture(scope="session")
def models(folders) -> dict[str, LoadedModel]:
    return load_models([folders["tf"], folders["tri"]])


@pytest.fixture()
def client(models):
    with TestClient(create_app(models), raise_server_exceptions=False) as c:
        yield c


class SlowModel:
    """A model whose every step takes ``delay`` seconds (so a test can act in the middle of a
    generation); ``steps`` counts the step calls."""

    def __init__(self, inner, delay: float = 0.02) -> None:
        self.inner, self.delay, self.steps = inner, delay, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def step(self, tokens, state):
        self.steps += 1
        time.sleep(self.delay)
        return self.inner.step(tokens, state)


def slow_app(models: dict[str, LoadedModel], **settings):
    """An app serving the trigram model (no context limit) as a slow model named "slow"."""
    tri = models["tri"]
    slow = LoadedModel("slow", SlowModel(tri.model), tri.tokenizer)
    return create_app({"slow": slow}, ServeSettings(**settings)), slow.model
