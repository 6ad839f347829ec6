"""Models for the server tests: a tiny word-level Transformer and a trigram model, saved as folders
and loaded the way `arlm serve` loads them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from arlm.serve import LoadedModel, ServeSettings, create_app, load_models
from cli_helpers import save_toy_word_models


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve_models")
    save_toy_word_models(root, block_size=32, n_layer=2)
    (root / "ngram").rename(root / "tri")
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
    generation); ``steps`` counts the step calls and ``threads`` holds the threads that made them."""

    def __init__(self, inner, delay: float = 0.02) -> None:
        self.inner, self.delay, self.steps = inner, delay, 0
        self.threads: set[threading.Thread] = set()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def step(self, tokens, state):
        self.steps += 1
        self.threads.add(threading.current_thread())
        time.sleep(self.delay)
        return self.inner.step(tokens, state)


def slow_app(models: dict[str, LoadedModel], **settings):
    """An app serving the trigram model (no context limit) as a slow model named "slow" (the default),
    and as itself, "tri": a request to "tri" passes through the same worker queue without a slow step."""
    tri = models["tri"]
    slow = LoadedModel("slow", SlowModel(tri.model), tri.tokenizer)
    return create_app({"slow": slow, "tri": tri}, ServeSettings(**settings)), slow.model
