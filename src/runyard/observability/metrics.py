"""Prometheus metrics, one registry per app (nothing global, so apps never share counters)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from runyard.runs.states import RunStatus


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Gauge(
            "runyard_runs_total",
            "Runs stored, by status (read from the database at scrape time).",
            ["status"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "runyard_queue_depth", "Runs waiting in `queued`.", registry=self.registry
        )
        self.run_duration = Histogram(
            "runyard_run_duration_seconds",
            "Duration of finished runs, from start (or creation) to completion.",
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600),
            registry=self.registry,
        )
        self.events_appended = Counter(
            "runyard_events_appended",
            "Events committed to streams.",
            registry=self.registry,
        )
        self.sse_subscribers = Gauge(
            "runyard_sse_subscribers", "Open SSE streams.", registry=self.registry
        )
        self.webhook_deliveries = Counter(
            "runyard_webhook_deliveries",
            "Webhook delivery attempts by result: delivered, retrying (failed, will retry), "
            "dead (failed for the last time).",
            ["result"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "runyard_http_request_duration_seconds",
            "HTTP request latency by route template (until the response starts).",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )

    def set_run_counts(self, counts: dict[str, int]) -> None:
        for status in RunStatus:
            self.runs.labels(status=status.value).set(counts.get(status.value, 0))
        self.queue_depth.set(counts.get(RunStatus.QUEUED.value, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
