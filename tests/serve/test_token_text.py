"""Token texts of a byte-level model, whose characters span several tokens: each token carries what it
adds in context, and the tokens' texts join to the completion (streamed or not)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from arlm.data.tokenizers import ByteTokenizer
from arlm.serve import LoadedModel, create_app

TEXT = "日本語の文章です。 café naïve € ½ 😀 — «quotes»\n" * 20


@pytest.fixture(scope="module")
def client():
    from arlm.models.ngram import NGramModel

    tok = ByteTokenizer()
    data = [i for line in TEXT.splitlines() for i in [tok.sos_id, *tok.encode(line), tok.eos_id]]
    model = NGramModel.fit(np.array(data), order=3, vocab=tok.vocab, smoothing="kn",
                           discount_fallback=True)
    with TestClient(create_app({"bytes": LoadedModel("bytes", model, tok)})) as c:
        yield c


def _events(body: str) -> list[dict]:
    return [json.loads(block.split("data: ", 1)[1]) for block in body.strip().split("\n\n")
            if block.startswith("event: token")]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_token_texts_join_to_the_completion(client, seed):
    body = {"prompt": "日本", "max_new_tokens": 30, "seed": seed}
    got = client.post("/v1/generate", json=body).json()
    assert got["text"] == got["prompt"] + got["completion"] and got["prompt"] == "日本"
    assert "".join(t["text"] for t in got["tokens"]) == got["completion"]
    assert any(t["text"] == "" for t in got["tokens"])  # a byte held back: the character's end has it
    streamed = client.post("/v1/generate", json={**body, "stream": True})
    assert _events(streamed.text) == got["tokens"]


def test_nbest_token_texts_join_to_the_text(client):
    got = client.post("/v1/generate", json={"prompt": "日", "strategy": "beam", "num_beams": 3,
                                            "max_new_tokens": 12}).json()
    for hyp in got["nbest"]:
        assert "日" + "".join(t["text"] for t in hyp["tokens"]) == hyp["text"]
