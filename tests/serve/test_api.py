"""The /v1 API in process (FastAPI's TestClient): every endpoint against the library it wraps, the
stream's event sequence, and the same tokens as `arlm generate` for the same seed."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from arlm import cli
from arlm.decode.config import DecodingConfig
from arlm.evaluate.likelihood import evaluate_likelihood
from arlm.usecases.decoding import decode, encode_prompt


def sse_events(text: str) -> list[tuple[str, dict]]:
    """Parse a text/event-stream body into (event, data) pairs."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def arlm_generate(monkeypatch, capsys, *args: str) -> str:
    """`arlm generate ARGS` run through cli.main in this process; its standard output."""
    monkeypatch.setattr(sys, "argv", ["arlm", "generate", *args])
    try:
        cli.main()
    except SystemExit as e:
        assert not e.code, capsys.readouterr().err
    return capsys.readouterr().out


def test_models_lists_every_checkpoint(client):
    r = client.get("/v1/models")
    assert r.status_code == 200
    listing = r.json()
    assert listing["object"] == "list"  # OpenAI's shape, arlm's details alongside
    by_name = {m["id"]: m for m in listing["data"]}
    assert set(by_name) == {"tf", "tri"}
    assert all(m["object"] == "model" and m["name"] == m["id"] for m in by_name.values())
    assert by_name["tf"]["family"] == "transformer" and by_name["tf"]["attention"] is True
    assert by_name["tf"]["block_size"] == 32
    assert by_name["tri"]["family"] == "ngram" and by_name["tri"]["attention"] is False


@pytest.mark.parametrize("model", ["tf", "tri"])
@pytest.mark.parametrize("settings", [
    {"strategy": "sample", "seed": 3},
    {"strategy": "top-k", "top_k": 3, "seed": 7, "temperature": 1.5},
    {"strategy": "greedy"},
])
def test_generate_gives_the_tokens_of_arlm_generate(client, models, folders, model, settings,
                                                    monkeypatch, capsys):
    body = {"model": model, "prompt": "the cat", "max_new_tokens": 12, **settings}
    r = client.post("/v1/generate", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    # the library: the same DecodingConfig through arlm.usecases.decoding.decode
    lm = models[model]
    config = DecodingConfig.from_dict({k: v for k, v in body.items() if k not in ("model", "prompt")})
    ids = encode_prompt(lm.model, lm.tokenizer, "the cat", 12)
    samples = decode(lm.model, lm.tokenizer, ids, config)
    assert [t["id"] for t in got["tokens"]] == samples.rows()[0]
    expected = samples.log_probs[0, : got["num_tokens"]].tolist()
    assert [t["logprob"] for t in got["tokens"]] == pytest.approx(expected, abs=1e-5)
    assert got["stop_reason"] == samples.stop_reason[0]
    # the command line prints the same text
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    out = arlm_generate(monkeypatch, capsys, str(folders[model]), "--prompt", "the cat",
                        "--max-new-tokens", "12", *flags)
    assert out.rstrip("\n") == got["text"]
    assert got["text"] == got["prompt"] + got["completion"]
    assert "".join(t["text"] for t in got["tokens"]) == got["completion"]


def test_stream_sends_start_tokens_done(client):
    body = {"model": "tf", "prompt": "a dog", "max_new_tokens": 10, "seed": 5}
    whole = client.post("/v1/generate", json=body).json()
    r = client.post("/v1/generate", json={**body, "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "done"
    assert set(names[1:-1]) == {"token"} and len(names) == whole["num_tokens"] + 2
    tokens = [data for name, data in events if name == "token"]
    assert [t["index"] for t in tokens] == list(range(len(tokens)))
    assert tokens == whole["tokens"]
    done = events[-1][1]
    assert done["stop_reason"] == whole["stop_reason"] and done["text"] == whole["text"]
    assert events[0][1]["config"]["seed"] == 5


def test_stream_stops_at_eos_with_its_reason(client):
    # greedy on the trigram model ends the sentence: the last token event is [EOS], reason "eos"
    r = client.post("/v1/generate", json={"model": "tri", "prompt": "the dog", "strategy": "greedy",
                                          "max_new_tokens": 40, "stream": True})
    events = sse_events(r.text)
    assert events[-1] == ("done", {**events[-1][1], "stop_reason": "eos"})
    assert events[-2][1]["special"] is True and events[-2][1]["id"] == 2


def test_score_matches_evaluate_likelihood(client, models):
    text = "the cat sat on the log ."
    r = client.post("/v1/score", json={"model": "tri", "text": text})
    assert r.status_code == 200
    got = r.json()
    lm = models["tri"]
    ids = [1, *lm.tokenizer.encode(text), 2]
    report = evaluate_likelihood(lm.model, [np.array(ids)], num_chars=len(text) + 1, show_progress=False)
    assert got["nll"] == pytest.approx(report.nll, rel=1e-6)
    assert got["perplexity"] == pytest.approx(report.perplexity, rel=1e-6)
    assert got["bits_per_char"] == pytest.approx(report.nll / math.log(2) / (len(text) + 1), rel=1e-6)
    assert got["num_tokens"] == len(ids) - 1
    assert -sum(t["logprob"] for t in got["tokens"]) == pytest.approx(report.nll, rel=1e-5)
    assert [t["id"] for t in got["tokens"]] == ids[1:]


def test_next_distribution_before_and_after_processors(client, models):
    lm = models["tf"]
    V = lm.model.vocab_size
    prefix = "the cat"
    ids = encode_prompt(lm.model, lm.tokenizer, prefix, 1)
    with torch.no_grad():
        ref = lm.model.step(torch.tensor([ids]), lm.model.start(1))[0][0].exp()  # (V,)

    plain = client.post("/v1/next", json={"model": "tf", "prompt": prefix, "top_n": V}).json()
    assert plain["kept"] == V - 2 == len(plain["candidates"])  # [PAD] and [SOS] are never predicted
    assert sum(c["p"] for c in plain["candidates"]) == pytest.approx(1.0, abs=1e-4)
    for c in plain["candidates"]:
        assert c["p"] == pytest.approx(float(ref[c["id"]]), abs=1e-6)
    probs = [c["p"] for c in plain["candidates"]]
    assert probs == sorted(probs, reverse=True)

    cut = client.post("/v1/next", json={"model": "tf", "prompt": prefix, "top_n": V, "top_k": 3,
                                        "temperature": 0.5}).json()
    kept = [c for c in cut["candidates"] if c["removed_by"] is None]
    assert len(kept) == 3 == cut["kept"]
    assert {c["id"] for c in kept} == {c["id"] for c in plain["candidates"][:3]}
    assert {c["removed_by"] for c in cut["candidates"] if c["removed_by"]} == {"top_k"}
    assert sum(c["p_final"] for c in kept) == pytest.approx(1.0, abs=1e-5)
    squared = {c["id"]: c["p"] ** 2 for c in plain["candidates"]}  # τ = 0.5: p_τ ∝ p²
    for c in kept:
        assert c["p_final"] == pytest.approx(squared[c["id"]] / sum(squared[k["id"]] for k in kept), rel=1e-3)
    assert cut["stages"] == ["temperature", "top_k"]

    greedy = client.post("/v1/next", json={"model": "tf", "prompt": prefix, "strategy": "greedy"}).json()
    finals = [c["p_final"] for c in greedy["candidates"]]
    assert finals[0] == 1.0 and sum(finals) == 1.0 and greedy["kept"] == 1
    # the one kept is the model's most probable token; every other is removed by greedy
    assert greedy["candidates"][0]["id"] == plain["candidates"][0]["id"]
    assert all(c["removed_by"] == "greedy" for c in greedy["candidates"][1:])


def test_next_after_generated_tokens(client, models):
    # the distribution at position i of a generation is the one token i was drawn from
    body = {"model": "tf", "prompt": "a"}
    gen = client.post("/v1/generate", json={**body, "max_new_tokens": 6, "seed": 1}).json()
    toks = [t["id"] for t in gen["tokens"]]
    for i in (0, 3):
        d = client.post("/v1/next", json={**body, "tokens": toks[:i], "top_n": 50}).json()
        probs = {c["id"]: c["p"] for c in d["candidates"]}
        assert probs[toks[i]] == pytest.approx(gen["tokens"][i]["prob"], abs=1e-5)


def test_beam_tree_and_nbest(client, models):
    body = {"model": "tf", "prompt": "the", "num_beams": 3, "max_new_tokens": 6}
    r = client.post("/v1/beam", json=body)
    assert r.status_code == 200, r.text
    tree = r.json()
    lm = models["tf"]
    ids = encode_prompt(lm.model, lm.tokenizer, "the", 6)
    beams = decode(lm.model, lm.tokenizer, ids, DecodingConfig(strategy="beam", num_beams=3,
                                                                         max_new_tokens=6))
    n = int(beams.lengths[0, 0])
    assert [t["id"] for t in tree["best"][0]["tokens"]] == beams.tokens[0, 0, :n].tolist()
    assert tree["best"][0]["score"] == pytest.approx(float(beams.scores[0, 0]), abs=1e-5)
    nodes = {node["id"]: node for node in tree["nodes"]}
    for node in tree["nodes"][1:]:
        parent = nodes[node["parent"]]
        assert parent["step"] == node["step"] - 1 and parent["status"] == "kept"
        assert node["status"] in ("kept", "finished", "pruned")
    for step in range(tree["steps"]):
        assert sum(1 for x in tree["nodes"] if x["step"] == step and x["status"] == "kept") <= 3
    best = max((x for x in tree["nodes"] if x["status"] == "finished"), key=lambda x: x["norm"])
    path = []
    while best["parent"] is not None:
        path.append(best["token"])
        best = nodes[best["parent"]]
    assert path[::-1] == beams.tokens[0, 0, :n].tolist()
    # /v1/generate with strategy beam answers with the best hypothesis
    gen = client.post("/v1/generate", json={**body, "strategy": "beam"}).json()
    assert gen["text"] == tree["best"][0]["text"] and len(gen["nbest"]) == 3


def test_attention_mask_and_weights(client, models):
    r = client.post("/v1/attention", json={"model": "tf", "prompt": "the cat sat"})
    assert r.status_code == 200
    got = r.json()
    T = len(got["tokens"])
    assert got["tokens"][0] == "[SOS]" and T == 4
    assert got["mask"] == [[int(j <= i) for j in range(T)] for i in range(T)]
    w = torch.tensor(got["weights"])
    assert w.shape == (2, 2, T, T)
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, T), atol=1e-3)
    assert (w.triu(1) == 0).all()
    r = client.post("/v1/attention", json={"model": "tri", "prompt": "the"})
    assert r.status_code == 422 and "Transformer" in r.json()["detail"]


def test_playground_and_docs_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "arlm playground" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.text) > 500
    assert "http" not in "".join(line for line in page.text.splitlines() if "src=" in line or "href=" in line)
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    paths = {"/v1/models", "/v1/completions", "/metrics", "/v1/generate", "/v1/score", "/v1/next",
             "/v1/beam", "/v1/attention"}
    assert paths <= set(schema["paths"])
