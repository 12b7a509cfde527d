"""Prometheus metrics of one gateway replica: requests, latency, batch sizes (``GET /metrics``).

Each app instance owns its registry, so several apps in one process never collide. Batch sizes are
measured where the batch ran (a model replica) and reported back with every answer, so the gateway
exports them too. With several gateway replicas, scrape each (Prometheus sums them).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """The service's counters and histograms, in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("signclip_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("signclip_http_request_duration_seconds", "Time to answer a request",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("signclip_http_requests_in_flight", "Requests being answered",
                               registry=self.registry)
        self.batch_items = Histogram("signclip_batch_items", "Items in the model batch a request was computed in",
                                     ["tower"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.items = Counter("signclip_embedded_items", "Items embedded", ["tower", "model"],
                             registry=self.registry)

        # each metric's labelled series, looked up once: ``labels()`` validates and locks on every call (40 us of a
        # request's ~1 ms in a replica, four calls). Every label takes few values (routes are bounded by the caller).
        self._series: dict[tuple[Any, ...], Any] = {}

    def _of(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = metric.labels(*labels)
        return series

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._of(self.requests, method, route, str(status)).inc()
        self._of(self.latency, route).observe(seconds)

    def observe_batch(self, tower: str, model: str, items: int, batch_items: int) -> None:
        self._of(self.items, tower, model).inc(items)
        self._of(self.batch_items, tower).observe(batch_items)

    def render(self) -> bytes:
        return generate_latest(self.registry)
