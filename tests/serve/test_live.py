"""A live server on 127.0.0.1 (uvicorn in a thread): a client that disconnects mid-stream stops its
generation, concurrent streams are all served, a full queue answers 503, and shutdown is clean."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from arlm.decode.config import DecodingConfig
from arlm.serve import create_app
from arlm.serve.server import serve_in_thread
from arlm.usecases.decoding import decode, encode_prompt
from conftest import slow_app

pytestmark = pytest.mark.slow  # live servers on real sockets

EOS = 2


def wait_for(predicate, what: str, limit_s: float = 30.0) -> None:
    """Poll until ``predicate()`` holds (a liveness bound, not a timing assertion)."""
    for _ in range(int(limit_s / 0.02)):
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


def read_events(response: httpx.Response, limit: int | None = None):
    """(event, data) pairs of a text/event-stream response, the first ``limit`` of them."""
    name = None
    count = 0
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, json.loads(line[6:])
            count += 1
            if limit is not None and count >= limit:
                return


def test_disconnect_stops_the_generation(models):
    app, slow = slow_app(models)
    body = {"prompt": "the", "max_new_tokens": 200, "banned": [EOS], "stream": True, "seed": 0}
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        with client.stream("POST", "/v1/generate", json=body) as r:
            assert r.status_code == 200
            events = list(read_events(r, limit=4))  # start + 3 tokens, then hang up
        assert [name for name, _ in events] == ["start", "token", "token", "token"]
        stats = app.state.stats
        wait_for(lambda: stats["streams_cancelled"] == 1, "the server to notice the disconnect")
        wait_for(lambda: app.state.admission.active == 0, "the slot to be released")
        steps = slow.steps
        assert app.state.settings.workers == 1
        # A request to the plain model waits in the one worker's queue behind every job queued
        # before it (the generation's close, or a generation still running): once it is answered,
        # a generation that had not stopped would have taken more steps (all 200, run as one job).
        drained = client.post("/v1/generate", json={**body, "model": "tri", "stream": False,
                                                     "max_new_tokens": 3})
        assert drained.status_code == 200
        assert slow.steps == steps < 200  # stopped long before its 200 tokens
        assert stats["streams_done"] == 0
        # and the server still serves the slow model
        again = client.post("/v1/generate", json={**body, "stream": False, "max_new_tokens": 3})
        assert again.status_code == 200 and slow.steps > steps


def test_concurrent_streams_are_all_served(models):
    lm = models["tf"]
    app = create_app(models)
    seeds = list(range(8))
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def client_run(url: str, seed: int) -> None:
        try:
            with httpx.Client(base_url=url, timeout=60) as c, c.stream(
                    "POST", "/v1/generate", json={"model": "tf", "prompt": "the dog", "max_new_tokens": 15,
                                                   "seed": seed, "stream": True}) as r:
                events = list(read_events(r))
            assert events[-1][0] == "done"
            results[seed] = [d["id"] for name, d in events if name == "token"]
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    with serve_in_thread(app) as url:
        threads = [threading.Thread(target=client_run, args=(url, s)) for s in seeds]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not errors, errors
    ids = encode_prompt(lm.model, lm.tokenizer, "the dog", 15)
    for seed in seeds:  # interleaving does not change anyone's tokens
        config = DecodingConfig(max_new_tokens=15, seed=seed)
        assert results[seed] == decode(lm.model, lm.tokenizer, ids, config).rows()[0]


def test_full_queue_answers_503(models):
    app, _ = slow_app(models, queue=1)
    body = {"prompt": "the", "max_new_tokens": 30, "banned": [EOS], "stream": True}
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        with client.stream("POST", "/v1/generate", json=body) as r:
            events = read_events(r)
            assert next(events)[0] == "start"
            busy = client.post("/v1/generate", json={**body, "stream": False})
            assert busy.status_code == 503 and "busy" in busy.json()["detail"]
            assert client.post("/v1/score", json={"text": "the cat"}).status_code == 503
            assert client.get("/v1/models").status_code == 200  # no model work: always answered
            rest = list(events)
        assert rest[-1][0] == "done"
        wait_for(lambda: app.state.admission.active == 0, "the slot to be released")
        assert client.post("/v1/generate", json={**body, "stream": False}).status_code == 200


def test_shutdown_is_clean_with_a_stream_in_flight(models):
    app, slow = slow_app(models)
    body = {"prompt": "the", "max_new_tokens": 250, "banned": [EOS], "stream": True}
    seen: list[str] = []

    def client_run(url: str) -> None:
        try:
            with httpx.Client(base_url=url, timeout=30) as c, \
                    c.stream("POST", "/v1/generate", json=body) as r:
                seen.append(str(r.status_code))
                for name, data in read_events(r):
                    seen.append(name if name != "done" else f"done:{data['stop_reason']}")
        except httpx.HTTPError:
            seen.append("cut")  # the server closed the connection: expected

    with serve_in_thread(app, graceful_s=0.5) as url:
        reader = threading.Thread(target=client_run, args=(url,))
        reader.start()
        wait_for(lambda: "token" in seen, "the first token")
    # serve_in_thread has stopped uvicorn and joined its thread; the app's lifespan closed its workers
    assert app.state.admission.closed
    reader.join(timeout=30)
    assert not reader.is_alive()
    assert seen[0] == "200" and seen[-1] == "done:shutdown"  # cut short, not run to 250 tokens, and
    assert seen.count("token") < 250  # ended with a well-formed final event
    # the workers have been joined: no thread that stepped the model is left to take another step
    assert slow.threads and not any(thread.is_alive() for thread in slow.threads)


@pytest.mark.parametrize("path", ["/v1/generate"])
def test_errors_over_a_real_socket(models, path):
    with serve_in_thread(create_app(models)) as url, httpx.Client(base_url=url, timeout=30) as client:
        r = client.post(path, content=b"{nope", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["detail"].startswith("malformed JSON")
        assert client.post(path, json={"model": "tf", "max_new_tokens": 2}).status_code == 200
