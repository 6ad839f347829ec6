"""GET /metrics (Prometheus' text format, a registry per app) and the access log: the counts agree
with the requests made and the tokens answered."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from arlm.serve import ServeSettings, create_app
from arlm.serve.server import serve_in_thread
from conftest import slow_app


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of GET /metrics."""
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def requests_of(samples, endpoint: str, method: str, status: int) -> float:
    labels = (("endpoint", endpoint), ("method", method), ("status", str(status)))
    return samples.get(("arlm_http_requests_total", labels), 0.0)


def test_metrics_count_requests_tokens_and_latencies(models):
    with TestClient(create_app(models, ServeSettings(queue=7))) as c:
        a = c.post("/v1/completions", json={"model": "tf", "max_tokens": 4, "n": 2}).json()
        b = c.post("/v1/generate", json={"model": "tri", "max_new_tokens": 5}).json()
        stream = c.post("/v1/completions", json={"model": "tri", "max_tokens": 3, "stream": True,
                                                 "stream_options": {"include_usage": True}})
        streamed = json.loads(stream.text.split("data: ")[-2])["usage"]["completion_tokens"]
        assert c.post("/v1/completions", json={"model": "tf", "top_p": 5}).status_code == 400
        assert c.get("/v1/nothing").status_code == 404
        samples = scrape(c)
        other = scrape(TestClient(create_app(models)))  # another app counts apart
    assert requests_of(samples, "/v1/completions", "POST", 200) == 2
    assert requests_of(samples, "/v1/completions", "POST", 400) == 1
    assert requests_of(samples, "/v1/generate", "POST", 200) == 1
    assert requests_of(samples, "other", "GET", 404) == 1  # unknown paths share one label
    tokens = a["usage"]["completion_tokens"] + b["num_tokens"] + streamed
    assert samples[("arlm_tokens_generated_total", ())] == tokens
    completions = (("endpoint", "/v1/completions"),)
    assert samples[("arlm_http_request_duration_seconds_count", completions)] == 3
    assert samples[("arlm_http_time_to_first_byte_seconds_count", completions)] == 3
    assert samples[("arlm_http_request_duration_seconds_bucket", (*completions, ("le", "+Inf")))] == 3
    assert samples[("arlm_streams_total", (("outcome", "done"),))] == 1
    assert samples[("arlm_queue_capacity", ())] == 7
    assert samples[("arlm_requests_in_flight", ())] == 0 == samples[("arlm_active_streams", ())]
    assert samples[("arlm_queue_depth", ())] == 0
    assert requests_of(other, "/v1/completions", "POST", 200) == 0
    assert other[("arlm_tokens_generated_total", ())] == 0


def test_metrics_need_the_key_and_speak_openmetrics(models):
    with TestClient(create_app(models, ServeSettings(api_key="k"))) as c:
        assert c.get("/metrics").status_code == 401
        scrape(c, authorization="Bearer k")
        r = c.get("/metrics", headers={"authorization": "Bearer k",
                                       "accept": "application/openmetrics-text; version=1.0.0"})
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        assert r.text.endswith("# EOF\n")


class Lines(logging.Handler):
    """The messages of the records it handles."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_one_access_log_line_per_request(client):
    log, lines = logging.getLogger("arlm.serve.access"), Lines()
    level = log.level  # its handler on the logger itself: a live server's logging config stops propagation
    log.addHandler(lines)
    log.setLevel(logging.INFO)
    try:
        client.post("/v1/completions", json={"model": "tf", "max_tokens": 2})
        client.post("/v1/completions", json={"model": "tf", "max_tokens": 2, "stream": True})
        client.get("/v1/models?x=1")
    finally:
        log.removeHandler(lines)
        log.setLevel(level)
    lines = lines.lines
    assert len(lines) == 3
    assert '"POST /v1/completions HTTP/1.1" 200' in lines[0] and lines[0].endswith("s")
    assert '"GET /v1/models?x=1 HTTP/1.1" 200' in lines[2]


@pytest.mark.slow  # a live server on a real socket
def test_active_streams_while_a_stream_is_open(models):
    app, _ = slow_app(models)
    body = {"prompt": "the", "max_tokens": 200, "stream": True, "logit_bias": {"2": -100}}
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        with client.stream("POST", "/v1/completions", json=body) as r:
            lines = r.iter_lines()  # kept: a dropped iterator would close the connection
            assert next(lines).startswith("data: {")
            during = scrape(client)
        assert during[("arlm_active_streams", ())] == 1
        assert during[("arlm_requests_in_flight", ())] == 1
        assert during[("arlm_batch_rows", (("model", "slow"),))] == 1  # its row in the model's batch
        assert during[("arlm_batch_waiting", (("model", "slow"),))] == 0 == during[("arlm_queue_depth", ())]
        for _ in range(300):  # liveness bound: the server notices the client has gone
            after = scrape(client)
            if after[("arlm_active_streams", ())] == 0:
                break
        assert after[("arlm_active_streams", ())] == 0
        assert after[("arlm_streams_total", (("outcome", "cancelled"),))] == 1
        for _ in range(300):  # liveness bound: its row leaves at the batch's next step
            if scrape(client)[("arlm_batch_rows", (("model", "slow"),))] == 0:
                break
        assert scrape(client)[("arlm_batch_rows", (("model", "slow"),))] == 0
