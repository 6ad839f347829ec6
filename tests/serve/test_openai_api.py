"""POST /v1/completions and GET /v1/models in OpenAI's shapes, through the app in process: a choice is
what /v1/generate gives with its seed (choice i: seed + i), a stream joins to the whole answer, the
log-probs are the model's (teacher forcing), stop strings cut the text, and every bad request is an
OpenAI-shaped 4xx."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient

from arlm.serve import ServeSettings, create_app
from conftest import slow_app

EOS = 2


def chunks(text: str) -> list[dict | str]:
    """The `data:` payloads of an OpenAI stream (JSON, or the final "[DONE]")."""
    out = []
    for line in text.splitlines():
        if line.startswith("data: "):
            out.append("[DONE]" if line == "data: [DONE]" else json.loads(line[6:]))
        else:
            assert line == "", line  # no `event:` lines: OpenAI's streams are data only
    return out


def joined(stream: list[dict | str]) -> dict[int, dict]:
    """Each choice of a stream, its chunks joined: text, logprobs lists, finish reason."""
    out: dict[int, dict] = {}
    for chunk in stream[:-1]:
        for c in chunk["choices"]:
            got = out.setdefault(c["index"], {"text": "", "logprobs": None, "finish_reason": None})
            got["text"] += c["text"]
            if c["logprobs"] is not None:
                lp = got["logprobs"] = got["logprobs"] or {k: [] for k in c["logprobs"]}
                for k, v in c["logprobs"].items():
                    lp[k] += v
            got["finish_reason"] = got["finish_reason"] or c["finish_reason"]
    return out


def generate(client, **body) -> dict:
    r = client.post("/v1/generate", json=body)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("model", ["tf", "tri"])
def test_each_choice_is_v1_generate_with_seed_plus_i(client, model):
    body = {"model": model, "prompt": "the dog", "max_tokens": 12, "n": 3, "seed": 40, "temperature": 1.3,
            "top_p": 0.95}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["object"] == "text_completion" and got["model"] == model and got["id"].startswith("cmpl-")
    assert [c["index"] for c in got["choices"]] == [0, 1, 2]
    new_tokens = 0
    for i, choice in enumerate(got["choices"]):
        ref = generate(client, model=model, prompt="the dog", max_new_tokens=12, seed=40 + i,
                       temperature=1.3, top_p=0.95)
        assert choice["text"] == ref["completion"] and choice["logprobs"] is None
        assert choice["finish_reason"] == {"eos": "stop", "length": "length"}[ref["stop_reason"]]
        new_tokens += ref["num_tokens"]
    prompt_tokens = len(client.app.state.models[model].tokenizer.encode("the dog"))
    assert got["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": new_tokens,
                            "total_tokens": prompt_tokens + new_tokens}
    assert client.post("/v1/completions", json=body).json()["choices"] == got["choices"]  # seeds reproduce


def test_a_list_of_prompts_and_token_ids(client, models):
    tok = models["tf"].tokenizer
    body = {"model": "tf", "max_tokens": 5, "n": 2, "seed": 1}
    by_text = client.post("/v1/completions", json={**body, "prompt": ["the dog", "a cat"]}).json()
    ids = [tok.encode("the dog"), tok.encode("a cat")]
    by_ids = client.post("/v1/completions", json={**body, "prompt": ids}).json()
    assert [c["index"] for c in by_text["choices"]] == [0, 1, 2, 3]  # prompt-major, n each
    assert [c["text"] for c in by_ids["choices"]] == [c["text"] for c in by_text["choices"]]
    empty = [client.post("/v1/completions", json={**body, "prompt": p}).json()["choices"] for p in ("", [])]
    assert empty[0] == empty[1]  # no ids: from [SOS], as the empty text
    one = client.post("/v1/completions", json={**body, "prompt": ids[1]}).json()
    assert [c["text"] for c in one["choices"]] == [c["text"] for c in by_text["choices"][2:]]
    assert by_text["usage"]["prompt_tokens"] == len(ids[0]) + len(ids[1])


def test_greedy_and_the_default_length(client):
    got = client.post("/v1/completions", json={"model": "tri", "prompt": "the", "temperature": 0,
                                               "n": 2}).json()
    ref = generate(client, model="tri", prompt="the", strategy="greedy", max_new_tokens=16)
    assert [c["text"] for c in got["choices"]] == [ref["completion"]] * 2  # max_tokens: OpenAI's 16


@pytest.mark.parametrize("model", ["tf", "tri"])
def test_logprobs_are_the_models_with_echo(client, models, model):
    lm = models[model]
    body = {"model": model, "prompt": "the dog", "max_tokens": 8, "seed": 2, "logprobs": 3, "echo": True,
            "logit_bias": {str(EOS): -100}}
    got = client.post("/v1/completions", json=body).json()["choices"][0]
    lp = got["logprobs"]
    ref = generate(client, model=model, prompt="the dog", max_new_tokens=8, seed=2, banned=[EOS])
    assert got["text"] == ref["prompt"] + ref["completion"] and got["finish_reason"] == "length"
    prompt_ids = lm.tokenizer.encode("the dog")
    ids = [1, *prompt_ids, *(t["id"] for t in ref["tokens"])]
    expected = lm.model.score(torch.tensor([ids]))[0].tolist()  # teacher forcing: log p(x_t | x_<t)
    assert lp["token_logprobs"] == pytest.approx(expected, abs=1e-4)
    assert len(lp["tokens"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == len(ids) - 1
    assert "".join(lp["tokens"]) == got["text"]
    for token, offset, chosen, top in zip(lp["tokens"], lp["text_offset"], lp["token_logprobs"],
                                          lp["top_logprobs"], strict=True):
        assert got["text"][offset:offset + len(token)] == token
        assert top[token] == chosen  # the chosen token is always among them
        assert 3 <= len(top) <= 4 and list(top.values()) == sorted(top.values(), reverse=True)
        assert sum(torch.tensor(list(top.values())).exp()) <= 1 + 1e-6


def test_max_tokens_0_with_echo_scores_the_prompt(client, models):
    lm = models["tri"]
    got = client.post("/v1/completions", json={"model": "tri", "prompt": "the cat sat", "max_tokens": 0,
                                               "echo": True, "logprobs": 0}).json()
    choice = got["choices"][0]
    assert choice["text"] == "the cat sat" and choice["finish_reason"] == "length"
    ids = [1, *lm.tokenizer.encode("the cat sat")]
    expected = lm.model.score(torch.tensor([ids]))[0].tolist()
    assert choice["logprobs"]["token_logprobs"] == pytest.approx(expected, abs=1e-6)
    assert [len(top) for top in choice["logprobs"]["top_logprobs"]] == [1, 1, 1]  # logprobs 0: the chosen
    assert got["usage"] == {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}


def test_stop_cuts_the_text_before_the_first_stop_string(client):
    base = {"model": "tri", "prompt": "the", "max_tokens": 40, "seed": 11, "logit_bias": {str(EOS): -100}}
    full = client.post("/v1/completions", json=base).json()["choices"][0]["text"]
    words = full.split()
    stop = f" {words[3]}"  # a word that occurs: the text stops before its first occurrence
    got = client.post("/v1/completions", json={**base, "stop": [stop, "zzz"]}).json()["choices"][0]
    assert got["text"] == full[:full.index(stop)] and got["finish_reason"] == "stop"
    ref = generate(client, model="tri", prompt="the", max_new_tokens=40, seed=11, banned=[EOS],
                   stop_strings=[stop])
    assert ref["stop_reason"] == "stop_string" and ref["completion"].startswith(got["text"] + stop)


@pytest.mark.parametrize("body", [
    {"n": 2, "max_tokens": 10, "seed": 3, "logprobs": 2, "echo": True},
    {"n": 3, "max_tokens": 30, "seed": 4, "stop": " the", "logprobs": 1},
    {"prompt": ["the dog", "a"], "max_tokens": 6, "temperature": 0},
])
def test_a_stream_joins_to_the_whole_answer(client, body):
    body = {"model": "tri", "prompt": "the dog", **body}
    whole = client.post("/v1/completions", json=body).json()
    r = client.post("/v1/completions", json={**body, "stream": True,
                                              "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    stream = chunks(r.text)
    assert stream[-1] == "[DONE]" and stream[-2]["choices"] == [] and stream[-2]["usage"] == whole["usage"]
    assert all(len(c["choices"]) == 1 for c in stream[:-2])  # one choice a chunk
    assert {c["id"] for c in stream[:-1]} == {stream[0]["id"]}
    got = joined([*stream[:-2], "[DONE]"])
    assert [got[i] for i in sorted(got)] == [{k: c[k] for k in ("text", "logprobs", "finish_reason")}
                                              for c in whole["choices"]]
    without = chunks(client.post("/v1/completions", json={**body, "stream": True}).text)
    assert "usage" not in without[-2]  # only asked for


def test_models_in_openais_shape(client):
    listing = client.get("/v1/models").json()
    assert listing["object"] == "list" and [m["id"] for m in listing["data"]] == ["tf", "tri"]
    card = client.get("/v1/models/tf").json()
    assert card == listing["data"][0]
    assert {"object": "model", "owned_by": "arlm", "family": "transformer"}.items() <= card.items()
    assert isinstance(card["created"], int) and card["created"] > 0  # the checkpoint's time


def openai_error(r, status: int, *words: str, param: str | None = None, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    assert error["message"] and "\n" not in error["message"]
    for w in words:
        assert w.lower() in error["message"].lower(), error["message"]
    assert error["param"] == param and error["code"] == code
    return error


@pytest.mark.parametrize(("body", "words", "param"), [
    ({"temperature": -1}, ["temperature"], "temperature"),
    ({"top_p": 1.5}, ["top_p"], "top_p"),
    ({"n": 0}, ["n"], "n"),
    ({"n": 17}, ["n"], "n"),
    ({"prompt": ["a"] * 5, "n": 4}, ["choices"], "n"),
    ({"max_tokens": 300}, ["max_tokens", "256"], "max_tokens"),
    ({"max_tokens": -1}, ["max_tokens"], "max_tokens"),
    ({"logprobs": 21}, ["logprobs"], "logprobs"),
    ({"stop": ""}, ["stop"], "stop"),
    ({"stop": ["x"] * 1001}, ["stop"], "stop"),
    ({"seed": 2**64}, ["seed"], "seed"),
    ({"prompt": [[3, 99]]}, ["99", "vocabulary"], "prompt"),
    ({"prompt": [-1]}, ["-1", "vocabulary"], "prompt"),
    ({"prompt": "the " * 40, "max_tokens": 10}, ["context"], None),
    ({"prompt": "x" * 5000}, ["prompt", "4,000"], None),
    ({"logit_bias": {"3": 5}}, ["-100"], "logit_bias"),
    ({"logit_bias": {"x": -100}}, ["token id"], "logit_bias"),
    ({"logit_bias": {str(i): -100 for i in range(1001)}}, ["logit_bias", "entries"], "logit_bias"),
    ({"suffix": "end"}, ["suffix", "left-to-right"], "suffix"),
    ({"best_of": 3}, ["best_of"], "best_of"),
    ({"presence_penalty": 0.5}, ["repetition_penalty"], "presence_penalty"),
    ({"frequency_penalty": 1}, ["repetition_penalty"], "frequency_penalty"),
    ({"tempreature": 1}, ["unknown field"], "tempreature"),
    ({"repetition_penalty": 1e-320}, ["repetition_penalty"], "repetition_penalty"),
])
def test_a_bad_parameter_is_400_in_openais_shape(client, body, words, param):
    openai_error(client.post("/v1/completions", json={"model": "tf", **body}), 400, *words, param=param)
    assert client.post("/v1/completions", json={"model": "tf", "max_tokens": 2}).status_code == 200


def test_every_field_null_is_unset(client):
    nulls = {k: None for k in ("max_tokens", "temperature", "top_p", "stop", "seed", "logprobs", "suffix",
                               "logit_bias", "best_of", "stream_options", "user", "top_k")}
    r = client.post("/v1/completions", json={"model": "tf", "prompt": "the", **nulls})
    assert r.status_code == 200, r.text


def test_other_errors_in_openais_shape(client, models):
    openai_error(client.post("/v1/completions", json={"model": "nope"}), 404, "nope", code="model_not_found")
    openai_error(client.get("/v1/models/nope"), 404, "nope", code="model_not_found")
    openai_error(client.post("/v1/completions", content=b"{", headers={"content-type": "application/json"}),
                 400, "malformed JSON")
    openai_error(client.post("/v1/completions", content=b'{"prompt": "a"}',
                             headers={"content-type": "text/plain"}), 415, "application/json")
    openai_error(client.post("/v1/chat/completions", json={"messages": []}), 404, "chat template",
                 "/v1/completions")
    with TestClient(create_app(models, ServeSettings(api_key="s3cret"))) as c:
        r = c.post("/v1/completions", json={"model": "tf"}, headers={"Authorization": "Bearer wrong"})
        openai_error(r, 401, "API key", code="invalid_api_key")
        assert r.headers["www-authenticate"] == "Bearer"
        openai_error(c.get("/v1/models"), 401, code="invalid_api_key")
        ok = c.post("/v1/completions", json={"model": "tf", "max_tokens": 1},
                    headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
    # arlm's own endpoints keep their shape
    r = client.post("/v1/generate", json={"model": "nope"})
    assert r.status_code == 404 and "detail" in r.json()


def test_a_full_queue_is_503(models):
    with TestClient(create_app(models, ServeSettings(queue=2))) as c:
        openai_error(c.post("/v1/completions", json={"model": "tf", "n": 3}), 503, "busy")
        assert c.app.state.admission.active == 0  # the slots taken before the refusal are given back
        assert c.post("/v1/completions", json={"model": "tf", "n": 2, "max_tokens": 2}).status_code == 200


def test_out_of_time_is_504_or_an_error_event(models):
    app, _ = slow_app(models, request_timeout=0.3)  # each step of "slow" takes 20 ms
    body = {"prompt": "the", "max_tokens": 200, "logit_bias": {str(EOS): -100}}
    with TestClient(app) as c:
        openai_error(c.post("/v1/completions", json=body), 504, "time limit")
        stream = chunks(c.post("/v1/completions", json={**body, "stream": True}).text)
        assert stream[-1] == "[DONE]" and "time limit" in stream[-2]["error"]["message"]
        assert stream[-2]["error"]["type"] == "server_error"
        assert all(chunk["choices"][0]["finish_reason"] is None for chunk in stream[:-2])
        assert c.app.state.admission.active == 0
