"""What an outside prober found, closed: settings that overflow, text that is not Unicode, cross-site
POSTs, unbounded lists, requests that run without end or after their client left, checkpoint paths
shown to clients, and a docs page that needed a CDN."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from test_live import EOS, read_events, wait_for

from arlm.errors import ConfigError
from arlm.serve import ServeSettings, create_app
from arlm.serve.server import serve_in_thread
from conftest import slow_app

GOOD = {"model": "tf", "prompt": "the cat", "max_new_tokens": 3}


def refused(r, status: int, *words: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    for w in words:
        assert w.lower() in body["detail"].lower(), body
    return body


@pytest.mark.parametrize("stream", [False, True])
def test_a_vanishing_repetition_penalty_is_refused(client, stream):
    r = client.post("/v1/generate", json={**GOOD, "repetition_penalty": 1e-320, "stream": stream})
    assert refused(r, 422, "repetition_penalty")["field"] == "repetition_penalty"
    r = client.post("/v1/next", json={"model": "tf", "repetition_penalty": 1e-320})
    refused(r, 422, "repetition_penalty")


@pytest.mark.parametrize(("path", "field"), [("/v1/score", "text"), ("/v1/generate", "prompt"),
                                             ("/v1/next", "prompt")])
def test_a_lone_surrogate_is_a_422_not_a_500(client, path, field):
    body = f'{{"model": "tf", "{field}": "a\\ud800b"}}'.encode()  # valid JSON, not valid Unicode
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert refused(r, 422, "surrogate")["field"] == field
    r = client.post("/v1/generate", content=b'{"stop_strings": ["\\udfff"]}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"].startswith("stop_strings")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_a_post_must_be_json(client, content_type):
    """A web page elsewhere can send these without asking (no CORS preflight): they do no work."""
    tokens = client.app.state.stats["tokens"]
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/v1/generate", content=b'{"prompt": "the", "max_new_tokens": 3}', headers=headers)
    refused(r, 415, "application/json")
    assert client.app.state.stats["tokens"] == tokens
    r = client.post("/v1/generate", content=b'{"max_new_tokens": 3}',
                    headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200


def test_cors_is_off_unless_origins_are_named(models):
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    with TestClient(create_app(models)) as c:
        r = c.options("/v1/generate", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = c.post("/v1/generate", json=GOOD, headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in r.headers
    app = create_app(models, ServeSettings(cors_origins=("https://ok.example",)))
    with TestClient(app) as c:
        r = c.options("/v1/generate", headers={**preflight, "Origin": "https://ok.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://ok.example"
        r = c.options("/v1/generate", headers=preflight)
        assert r.headers.get("access-control-allow-origin") != "https://elsewhere.example"


@pytest.mark.parametrize(("field", "value", "words"), [
    ("banned", [3] * 1001, ["banned", "1,000 entries"]),
    ("banned", [3] * 1_000_000, ["banned", "1,000 entries"]),
    ("stop_strings", ["x"] * 1001, ["stop_strings", "1,000 entries"]),
    ("stop_strings", ["x" * 1001], ["stop_strings", "1,000 characters"]),
])
def test_lists_have_caps(client, field, value, words):
    body = refused(client.post("/v1/generate", json={**GOOD, field: value}), 422, *words)
    assert body["field"].startswith(field)
    within = [v[:1000] if isinstance(v, str) else v for v in value[:2]]
    assert client.post("/v1/generate", json={**GOOD, field: within}).status_code == 200


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/beam", {"num_beams": 4, "max_new_tokens": 250}),
    ("/v1/generate", {"strategy": "beam", "num_beams": 4, "max_new_tokens": 250}),
    ("/v1/generate", {"max_new_tokens": 250}),
])
def test_a_request_over_its_time_limit_is_cancelled(models, path, body):
    app, slow = slow_app(models, request_timeout=0.3)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post(path, json={"prompt": "the", "banned": [EOS], **body})
        refused(r, 504, "time limit", "--request-timeout")
        # the work stopped at its next step: a request queued behind it on the one worker finds it done
        assert c.post("/v1/next", json={"model": "tri", "prompt": "the"}).status_code == 200
        steps = slow.steps
        time.sleep(0.1)
        assert slow.steps == steps < 250


def test_a_stream_over_its_time_limit_ends_with_an_error_event(models):
    app, _ = slow_app(models, request_timeout=0.3)
    with TestClient(app) as c:
        r = c.post("/v1/generate", json={"prompt": "the", "banned": [EOS], "max_new_tokens": 250,
                                         "stream": True})
        assert r.status_code == 200
        blocks = r.text.strip().split("\n\n")
        assert blocks[0].startswith("event: start") and blocks[-1].startswith("event: error")
        assert "time limit" in blocks[-1] and len(blocks) < 250
        assert not any(b.startswith("event: done") for b in blocks)
        wait_for(lambda: app.state.admission.active == 0, "the slot to be released")


def test_an_abandoned_beam_is_cancelled_and_does_not_hold_the_worker(models):
    """A client that leaves a long beam search: the search stops at its next step, and the next request
    is answered without waiting for the whole search."""
    app, slow = slow_app(models)  # one worker; the default time limit (60 s) is not what stops it
    body = {"prompt": "the", "banned": [EOS], "num_beams": 4, "max_new_tokens": 250}
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        def leave_early() -> None:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(url + "/v1/beam", json=body, timeout=0.5)

        gone = threading.Thread(target=leave_early)
        gone.start()
        wait_for(lambda: slow.steps > 3, "the beam search to start")
        gone.join(timeout=30)
        r = client.post("/v1/next", json={"model": "tri", "prompt": "the"})
        assert r.status_code == 200
        steps = slow.steps
        assert steps < 100  # 250 steps at 20 ms would hold the worker for 5 s
        time.sleep(0.1)
        assert slow.steps == steps  # and it has stopped
        assert client.post("/v1/beam", json={**body, "max_new_tokens": 3}).status_code == 200


def test_models_shows_names_not_paths(client, folders):
    r = client.get("/v1/models")
    assert r.status_code == 200
    assert str(folders["root"]) not in r.text and "path" not in r.text
    assert [m["id"] for m in r.json()["data"]] == ["tf", "tri"]


def test_docs_load_nothing_from_elsewhere(client):
    r = client.get("/docs")
    assert r.status_code == 200 and "/openapi.json" in r.text
    assert "http://" not in r.text and "https://" not in r.text  # no CDN, no remote script or font
    for path in ("/v1/generate", "/v1/score", "/v1/next", "/v1/beam", "/v1/attention"):
        assert path in r.text


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="request_timeout"):
        ServeSettings(request_timeout=0)
    with pytest.raises(ConfigError, match="cors-origin"):
        ServeSettings(cors_origins=("example.org",))


def test_a_stream_streams_within_its_time_limit(models):
    app, _ = slow_app(models, request_timeout=30)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client, client.stream(
            "POST", "/v1/generate", json={"prompt": "the", "max_new_tokens": 5, "stream": True}) as r:
        assert [name for name, _ in read_events(r)][-1] == "done"
