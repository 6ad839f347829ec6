"""Bad requests: the right 4xx with a one-line {"detail"}, never a 500, and the server keeps serving."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from arlm.serve import ServeSettings, create_app

GOOD = {"model": "tf", "prompt": "the cat", "max_new_tokens": 3}


def check(r, status: int, *words: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail
    for w in words:
        assert w.lower() in detail.lower(), detail
    return detail


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("/v1/generate", {"model": "nope"}, 404, ["unknown model", "nope", "tf"]),
    ("/v1/score", {"model": "nope", "text": "x"}, 404, ["nope"]),
    ("/v1/generate", {"strategy": "bogus"}, 422, ["strategy", "greedy"]),
    ("/v1/generate", {"top_p": 0}, 422, ["top_p", "(0, 1]"]),
    ("/v1/generate", {"top_p": 1.5}, 422, ["top_p"]),
    ("/v1/next", {"top_p": -1}, 422, ["top_p"]),
    ("/v1/generate", {"temperature": -1}, 422, ["temperature"]),
    ("/v1/generate", {"temperature": "hot"}, 422, ["temperature"]),
    ("/v1/generate", {"top_k": 2.5}, 422, ["top_k"]),
    ("/v1/generate", {"tempreature": 1}, 422, ["unknown field", "tempreature"]),
    ("/v1/generate", {"max_new_tokens": 10_000}, 422, ["max_new_tokens", "256"]),
    ("/v1/generate", {"max_new_tokens": 0}, 422, ["max_new_tokens"]),
    ("/v1/generate", {"num_samples": 3}, 422, ["num_samples"]),
    ("/v1/generate", {"prompt": "x" * 5000}, 413, ["prompt", "4,000"]),
    ("/v1/score", {"text": "x" * 5000}, 413, ["text"]),
    ("/v1/score", {}, 422, ["text", "required"]),
    ("/v1/generate", {"prompt": "the " * 40, "max_new_tokens": 10}, 422, ["context"]),
    ("/v1/generate", {"strategy": "beam", "stream": True}, 422, ["stream", "beam"]),
    ("/v1/generate", {"strategy": "beam", "temperature": 0.5}, 422, ["temperature"]),
    ("/v1/beam", {"strategy": "greedy"}, 422, ["strategy", "beam"]),
    ("/v1/beam", {"num_beams": 100}, 422, ["num_beams"]),
    ("/v1/next", {"tokens": [999]}, 422, ["999", "vocabulary"]),
    ("/v1/next", {"top_n": 10_000}, 422, ["top_n"]),
    ("/v1/next", {"banned": list(range(16))}, 422, ["every token"]),
    ("/v1/attention", {"model": "tri"}, 422, ["transformer"]),
    ("/v1/generate", {"seed": 2**64}, 422, ["seed"]),
    ("/v1/beam", {"length_penalty": 2000}, 422, ["length_penalty"]),
    ("/v1/beam", {"length_penalty": -1e308}, 422, ["length_penalty"]),
    ("/v1/next", {"tokens": [5] * 5000}, 422, ["tokens"]),
])
def test_bad_request_is_a_4xx_and_the_server_keeps_serving(client, path, body, status, words):
    full = {**GOOD, **body} if path == "/v1/generate" else {"model": "tf", **body}
    if path == "/v1/score" and "text" not in body and body:
        full["text"] = "the cat"
    check(client.post(path, json=full), status, *words)
    assert client.post("/v1/generate", json=GOOD).status_code == 200


def test_decoding_error_names_its_field(client):
    r = client.post("/v1/generate", json={**GOOD, "top_p": 2})
    assert r.json()["field"] == "top_p"


def test_malformed_json_is_400(client):
    r = client.post("/v1/generate", content=b'{"prompt": "the', headers={"content-type": "application/json"})
    check(r, 400, "malformed JSON")
    r = client.post("/v1/generate", content=b"[1, 2]", headers={"content-type": "application/json"})
    check(r, 422, "JSON object")
    check(client.get("/v1/nothing"), 404)
    check(client.delete("/v1/health"), 405)
    assert client.post("/v1/generate", json=GOOD).status_code == 200


def test_api_key(models):
    app = create_app(models, ServeSettings(api_key="s3cret"))
    with TestClient(app, raise_server_exceptions=False) as c:
        check(c.get("/v1/health"), 401, "API key")
        r = c.post("/v1/generate", json=GOOD, headers={"Authorization": "Bearer wrong"})
        check(r, 401, "API key")
        assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/v1/generate", json=GOOD, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/").status_code == 200  # the page itself is public; its requests carry the key


def test_infinite_numbers_are_null_not_a_500(models):
    # a maximum-likelihood trigram gives an unseen trigram probability 0: log p = -inf, perplexity inf
    import torch

    from arlm.models.ngram import NGramModel
    from arlm.serve import LoadedModel

    tok = models["tri"].tokenizer
    data = [1, *tok.encode("the cat sat on the mat ."), 2]
    mle = NGramModel.fit(torch.tensor(data).numpy(), order=3, vocab=tok.vocab, smoothing="mle")
    app = create_app({"mle": LoadedModel("mle", mle, tok)})
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/score", json={"text": "the mat sat"})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["perplexity"] is None and got["nll"] is None
        assert None in [t["logprob"] for t in got["tokens"]]
        r = c.post("/v1/next", json={"prompt": "the cat", "top_n": 50})
        assert r.status_code == 200 and r.json()["candidates"][0]["p"] == 1.0
