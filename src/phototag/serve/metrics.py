"""Prometheus metrics of one server: requests, latency, batch sizes, queue depth, model load times.

Each app has its own registry (several servers in one process, as in tests, do not collide); ``/metrics``
renders it in the text exposition format. Routes are labelled by their template (``/v1/analyze``), never by the
raw path, so a client cannot grow the label set.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The service's metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "phototag_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "phototag_request_seconds",
            "Seconds from the request's arrival to its answer, by route template.",
            ("route",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "phototag_batch_size",
            "Images per analyzer call (dynamic batching gathers concurrent requests).",
            ("analyzer",),
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "phototag_queue_depth",
            "Requests waiting for an analyzer.",
            ("analyzer",),
            registry=self.registry,
        )
        self.rejected = Counter(
            "phototag_rejected",
            "Requests refused because an analyzer's queue was full (503).",
            ("analyzer",),
            registry=self.registry,
        )
        self.load_seconds = Gauge(
            "phototag_model_load_seconds",
            "Seconds the analyzer's model took to load.",
            ("analyzer",),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
