"""What an operator watches: ``GET /metrics`` in Prometheus' text format, and an access log line per
request.

Each app has its own :class:`Metrics` over its own ``prometheus_client.CollectorRegistry`` (not the
process-wide default), so several apps in one process (tests, an app mounted elsewhere) count apart.

=========================================  =============================================================
``arlm_http_requests_total``               requests answered, by ``endpoint`` (the route's path, e.g.
                                           ``/v1/completions``; ``other`` for unknown paths), ``method``
                                           and ``status``
``arlm_http_request_duration_seconds``     histogram by ``endpoint``: until the answer's last byte (a
                                           stream: its end)
``arlm_http_time_to_first_byte_seconds``   histogram by ``endpoint``: until the answer starts (a stream
                                           starts once its first token is ready: time to first token)
``arlm_active_streams``                    server-sent event streams open now
``arlm_tokens_generated_total``            new tokens generated (every endpoint that generates)
``arlm_streams_total``                     streams ended, by ``outcome``: done or cancelled
``arlm_requests_in_flight``                requests holding one of the ``--queue`` slots
``arlm_queue_capacity``                    ``--queue``
``arlm_queue_depth``                       generations waiting to join a model's continuous batch
                                           (with ``--no-batching``: model-work jobs waiting for a
                                           worker thread)
``arlm_batch_rows``                        generations decoding in a continuous batch now, by ``model``
``arlm_batch_waiting``                     generations waiting to join that batch, by ``model``
=========================================  =============================================================

The access log is the logger ``arlm.serve.access``, one line per request once its answer has ended
(a stream: when it closes): client, request line, status, bytes sent, seconds; ``arlm serve`` prints
it beside uvicorn's own lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arlm.serve.schemas import ErrorBody
from arlm.serve.service import Service, check_key, get_service

ACCESS_LOG = logging.getLogger("arlm.serve.access")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServiceCollector:
    """The counters the service keeps, read when Prometheus scrapes."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        svc = self.service
        tokens = CounterMetricFamily("arlm_tokens_generated", "New tokens generated.")
        tokens.add_metric([], svc.stats["tokens"])
        streams = CounterMetricFamily("arlm_streams", "Streams ended, by outcome.", labels=["outcome"])
        streams.add_metric(["done"], svc.stats["streams_done"])
        streams.add_metric(["cancelled"], svc.stats["streams_cancelled"])
        yield from (tokens, streams)
        for name, doc, value in (
                ("arlm_requests_in_flight", "Requests holding a --queue slot.", svc.admission.active),
                ("arlm_queue_capacity", "Requests admitted at once at most (--queue).", svc.settings.queue),
                ("arlm_queue_depth", "Generations waiting to join a batch (--no-batching: model-work "
                                     "jobs waiting for a worker thread).", queue_depth(svc))):
            yield GaugeMetricFamily(name, doc, value=value)
        rows = GaugeMetricFamily("arlm_batch_rows", "Generations decoding in a continuous batch now.",
                                 labels=["model"])
        waiting = GaugeMetricFamily("arlm_batch_waiting", "Generations waiting to join a continuous batch.",
                                    labels=["model"])
        for name, batcher in list(svc.batchers.items()):
            if batcher is not None:
                rows.add_metric([name], batcher.active)
                waiting.add_metric([name], batcher.waiting)
        yield from (rows, waiting)


def queue_depth(svc: Service) -> int:
    """Generations waiting to join a continuous batch; with batching off, the jobs submitted to the
    worker pool that no worker has started yet."""
    if svc.settings.batching:
        return sum(b.waiting for b in list(svc.batchers.values()) if b is not None)
    waiting = getattr(svc.admission.executor, "_work_queue", None)  # the pool's queue of pending jobs
    return waiting.qsize() if waiting is not None else 0


class Metrics:
    """One app's metrics, in a registry of its own."""

    def __init__(self, service: Service) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("arlm_http_requests", "Requests answered.", ["endpoint", "method", "status"],
                                registry=self.registry)
        self.duration = Histogram("arlm_http_request_duration_seconds", "Seconds until the answer ended.",
                                  ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.first_byte = Histogram("arlm_http_time_to_first_byte_seconds",
                                    "Seconds until the answer started (a stream: its first token).",
                                    ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.active_streams = Gauge("arlm_active_streams", "Server-sent event streams open now.",
                                    registry=self.registry)
        self.registry.register(ServiceCollector(service))

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format ``accept`` asks for (Prometheus text by default) and its type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def endpoint_of(scope: Scope) -> str:
    """The route a request matched (its path template, so the label's values stay few), or "other"."""
    route = scope.get("route")
    return getattr(route, "path", None) or "other"


class Observe:
    """ASGI middleware: count, time and log every HTTP request (``metrics``), streams included."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        answer: dict[str, Any] = {"status": 500, "bytes": 0, "stream": False}

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                self.metrics.first_byte.labels(endpoint_of(scope)).observe(time.perf_counter() - t0)
                headers = dict(message.get("headers", ()))
                if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
                    answer["stream"] = True
                    self.metrics.active_streams.inc()
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            seconds = time.perf_counter() - t0
            endpoint = endpoint_of(scope)
            if answer["stream"]:
                self.metrics.active_streams.dec()
            self.metrics.requests.labels(endpoint, scope["method"], str(answer["status"])).inc()
            self.metrics.duration.labels(endpoint).observe(seconds)
            client = scope.get("client") or ("-", 0)
            query = f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else ""
            ACCESS_LOG.info('%s:%s - "%s %s%s HTTP/%s" %d %dB %.3fs', client[0], client[1], scope["method"],
                            scope["path"], query, scope.get("http_version", "1.1"), answer["status"],
                            answer["bytes"], seconds)


router = APIRouter(dependencies=[Depends(check_key)])


@router.get("/metrics", summary="Prometheus metrics: requests, latencies, tokens, streams, queue",
            response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}},
                                         "application/openmetrics-text": {"schema": {"type": "string"}}},
                             "description": "Prometheus' text format (OpenMetrics when Accept asks)."},
                       401: {"model": ErrorBody, "description": "Missing or wrong API key (when the "
                                                                "server has one)."}})
async def metrics(request: Request, svc: Service = Depends(get_service)) -> Response:
    body, content_type = request.app.state.metrics.render(request.headers.get("accept"))
    return Response(body, media_type=content_type)
