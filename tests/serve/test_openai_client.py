"""The official `openai` Python client against a live server (uvicorn on 127.0.0.1): completions,
streaming, n > 1, logprobs, stop, the model list, and its exceptions for a wrong key, bad parameters
and an unknown model."""

from __future__ import annotations

import httpx
import pytest

from arlm.serve import ServeSettings, create_app
from arlm.serve.server import serve_in_thread
from extras import require

pytestmark = pytest.mark.slow  # a live server on a real socket
KEY = "test-key"


@pytest.fixture(scope="module")
def live(models):
    """(an `openai.OpenAI` client of a live server, an httpx client of the same server)."""
    openai = require("openai", "the OpenAI-compatible tests use the official client (the test extra)")
    with serve_in_thread(create_app(models, ServeSettings(api_key=KEY))) as url, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as plain:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=60), plain, url


def arlm_completion(plain: httpx.Client, **body) -> str:
    r = plain.post("/v1/generate", json=body)
    assert r.status_code == 200, r.text
    return r.json()["completion"]


def test_completion_is_arlms_generation(live):
    client, plain, _ = live
    got = client.completions.create(model="tf", prompt="the dog", max_tokens=8, seed=5, temperature=0.8)
    assert got.object == "text_completion" and got.model == "tf" and len(got.choices) == 1
    text = arlm_completion(plain, model="tf", prompt="the dog", max_new_tokens=8, seed=5, temperature=0.8)
    assert got.choices[0].text == text and got.choices[0].finish_reason in ("stop", "length")
    assert got.usage.prompt_tokens == 2 and got.usage.total_tokens == 2 + got.usage.completion_tokens


def test_n_choices_are_seeds_in_a_row(live):
    client, plain, _ = live
    got = client.completions.create(model="tri", prompt="a cat", max_tokens=6, n=3, seed=10,
                                    extra_body={"top_k": 5})  # arlm's knobs beyond OpenAI's
    assert [c.index for c in got.choices] == [0, 1, 2]
    for i, choice in enumerate(got.choices):
        assert choice.text == arlm_completion(plain, model="tri", prompt="a cat", max_new_tokens=6,
                                              seed=10 + i, top_k=5)


def test_streaming_joins_to_the_completion(live):
    client, _, _ = live
    body = {"model": "tri", "prompt": "the", "max_tokens": 12, "seed": 3, "n": 2}
    whole = client.completions.create(**body)
    texts, finish = {0: "", 1: ""}, {}
    for chunk in client.completions.create(**body, stream=True):  # ends at `data: [DONE]`
        for c in chunk.choices:
            texts[c.index] += c.text
            if c.finish_reason is not None:
                finish[c.index] = c.finish_reason
    assert texts == {c.index: c.text for c in whole.choices}
    assert finish == {c.index: c.finish_reason for c in whole.choices}


def test_logprobs(live):
    client, _, _ = live
    got = client.completions.create(model="tf", prompt="the dog", max_tokens=5, seed=1, logprobs=2,
                                    logit_bias={"2": -100})
    lp = got.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    assert "".join(lp.tokens) == got.choices[0].text
    for token, logp, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert logp < 0 and top[token] == logp and len(top) in (2, 3)


def test_stop(live):
    client, _, _ = live
    body = {"model": "tri", "prompt": "the", "max_tokens": 40, "seed": 7, "logit_bias": {"2": -100}}
    full = client.completions.create(**body).choices[0].text
    stop = " " + full.split()[2]
    got = client.completions.create(**body, stop=[stop]).choices[0]
    assert got.text == full[:full.index(stop)] and got.finish_reason == "stop"


def test_models(live):
    client, _, _ = live
    assert [m.id for m in client.models.list()] == ["tf", "tri"]
    assert client.models.retrieve("tri").owned_by == "arlm"


def test_errors_are_the_clients_exceptions(live):
    openai = require("openai", "the OpenAI-compatible tests use the official client (the test extra)")
    client, _, url = live
    wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        wrong.completions.create(model="tf", prompt="the")
    assert e.value.code == "invalid_api_key"
    for bad, param in [({"temperature": -1}, "temperature"), ({"top_p": 2}, "top_p"),
                       ({"max_tokens": 100_000}, "max_tokens"), ({"suffix": "x"}, "suffix"),
                       ({"logprobs": 50}, "logprobs")]:
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model="tf", prompt="the", **bad)
        assert e.value.param == param and e.value.type == "invalid_request_error"
        assert "\n" not in e.value.message
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="nope", prompt="the")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError, match="chat template"):
        client.chat.completions.create(model="tf", messages=[{"role": "user", "content": "hi"}])
    assert client.completions.create(model="tf", prompt="the", max_tokens=1).choices  # still serving
