"""Prometheus metrics of an orchestrator (`batchyard --metrics-port N ...` serves them).

Owns `Metrics`: the series batchyard reports, kept in a `prometheus_client` registry of its
own (one per `Metrics`, so several orchestrators or tests in one process never clash on the
library's global registry), and `serving`, the loopback endpoint that exposes that registry
on `/metrics` from a daemon thread. What is measured: requests by route and status, tokens,
cost (estimated and actual), budgets, batches by status, progress events by kind, 429s,
retries, circuit-breaker state, real-time request latency, errors by kind and the remaining
rate limits the provider's headers report. It reads nothing from the store: the
orchestrator feeds it what it does, the CLI what the orchestrator reports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, generate_latest

if TYPE_CHECKING:
    from batchyard.orchestrator._reporting.reports import CostReport, RunStatus

__all__ = ["LATENCY_BUCKETS", "Metrics", "serving"]

M = TypeVar("M", Gauge, Counter)

# Seconds: real-time calls take from a fraction of a second (embeddings) to minutes (flex).
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Metrics:
    """batchyard's series in their own `CollectorRegistry` (thread-safe, as the library is).

    Series that describe the run's latest status (requests, batches, tokens) are replaced
    each round rather than added to. Label names are declared in sorted order, so the
    exposition reads `{route="batch",run="...",status="submitted"}`.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()  # a replaced series is cleared and refilled as one
        gauge, counter = self._series(Gauge), self._series(Counter)
        self.requests = gauge("requests", "Requests of the watched run by route and status.",
                              "route", "run", "status")  # fmt: skip
        self.batches = gauge("batches", "Batches of the watched run by status.", "run", "status")
        self.cost = gauge("cost_usd", "Cost of the watched run in USD (estimated, actual).",
                          "kind", "run")  # fmt: skip
        self.tokens = gauge("tokens", "Tokens of finished requests by model and direction.",
                            "direction", "model", "route")  # fmt: skip
        self.budget = gauge("budget_usd", "Budget of the watched run: limit, spent, reserved.",
                            "kind", "run")  # fmt: skip
        self.budget_warning = gauge("budget_warning", "1 once the run has spent its warning "
                                    "share.", "run")  # fmt: skip
        self.events = counter("events", "Progress events reported by the orchestrator.", "kind")
        self.rate_limited = counter("rate_limited", "HTTP 429 answers seen.")
        self.retries = counter("retries", "Retries scheduled.")
        self.breaker_open = gauge("breaker_open", "1 while a model's circuit breaker is open.",
                                  "model")  # fmt: skip
        self.latency = Histogram(
            "batchyard_request_seconds",
            "Real-time calls: seconds from sending a request to its answer or error.",
            ["model", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = counter("errors", "Failed real-time calls by kind (rate_limit, server, "
                              "timeout, quota, ...).", "kind", "model")  # fmt: skip
        self.remaining = gauge("ratelimit_remaining", "Requests and tokens left in the current "
                               "rate-limit window, as the provider's x-ratelimit-remaining-* "
                               "headers last said.", "kind", "model", "tier")  # fmt: skip

    def _series(self, kind: type[M]) -> Callable[..., M]:
        """A maker of `kind` series named `batchyard_<name>` in this registry."""

        def make(name: str, text: str, *labels: str) -> M:
            return kind(f"batchyard_{name}", text, list(labels), registry=self.registry)

        return make

    # ---- reading -----------------------------------------------------------------------
    def value(self, name: str, **labels: str) -> float | None:
        """The current value of one sample, e.g. `value("batchyard_retries_total")`."""
        return self.registry.get_sample_value(name, labels)

    def render(self) -> str:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry).decode()

    # ---- feeding -----------------------------------------------------------------------
    def _replace(self, gauge: Gauge, series: Iterable[tuple[Mapping[str, str], float]]) -> None:
        with self._lock:
            gauge.clear()
            for labels, value in series:
                gauge.labels(**labels).set(value)

    def observe_status(self, status: RunStatus) -> None:
        """Requests by route/status, batches by status and cost, from one round's status."""
        run = status.run_id
        self._replace(
            self.requests,
            (
                ({"route": key.route or "-", "run": run, "status": key.status}, n)
                for key, n in status.counts.items()
            ),
        )
        batches: dict[str, float] = {}
        for b in status.batches:
            batches[b.status] = batches.get(b.status, 0.0) + 1
        self._replace(self.batches, (({"run": run, "status": s}, n) for s, n in batches.items()))
        self.cost.labels(kind="estimated", run=run).set(status.estimated_cost)
        self.cost.labels(kind="actual", run=run).set(status.actual_cost)
        if status.budget is not None:
            for kind, value in (
                ("limit", status.budget),
                ("spent", status.budget_spent),
                ("reserved", status.budget_reserved),
            ):
                self.budget.labels(kind=kind, run=run).set(value)
            self.budget_warning.labels(run=run).set(1.0 if status.budget_warning else 0.0)

    def observe_costs(self, report: CostReport) -> None:
        tokens: dict[tuple[str, str, str], float] = {}
        for row in report.rows:
            for direction, n in (("input", row.input_tokens), ("output", row.output_tokens)):
                key = (direction, row.model, row.route)
                tokens[key] = tokens.get(key, 0.0) + n
        self._replace(
            self.tokens,
            (({"direction": d, "model": m, "route": r}, n) for (d, m, r), n in tokens.items()),
        )

    def observe_event(self, kind: str, data: Mapping[str, Any]) -> None:
        """Count an orchestrator progress event; 429s, retries and breakers by their kind."""
        self.events.labels(kind=kind).inc()
        lowered = kind.lower()
        status_code = data.get("status_code")
        if "429" in lowered or "rate_limit" in lowered or status_code == 429:
            self.rate_limited.inc()
        if "retry" in lowered:
            self.retries.inc()
        if "breaker" in lowered and isinstance(data.get("model"), str):
            is_open = bool(data.get("open", "open" in lowered and "close" not in lowered))
            self.breaker_open.labels(model=str(data["model"])).set(1.0 if is_open else 0.0)

    def observe_call(self, model: str, route: str, seconds: float, error: str | None) -> None:
        """One real-time call: its latency, and its failure kind when it failed."""
        self.latency.labels(model=model, route=route).observe(max(0.0, seconds))
        if error is not None:
            self.errors.labels(kind=error, model=model).inc()

    def observe_limits(
        self, model: str, tier: str, requests: int | None, tokens: int | None
    ) -> None:
        """The remaining requests and tokens a response's headers reported (None: not said)."""
        for kind, left in (("requests", requests), ("tokens", tokens)):
            if left is not None:
                self.remaining.labels(kind=kind, model=model, tier=tier).set(left)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def _only_metrics(app: Callable[..., Any]) -> Callable[..., Any]:
    """The exposition app on `/metrics`; 404 elsewhere (the library answers any path)."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Only /metrics is served here.\n"]
        return app(environ, start_response)

    return serve


@contextmanager
def serving(metrics: Metrics, port: int, host: str = "127.0.0.1") -> Iterator[int]:
    """Serve `metrics` on http://host:port/metrics until the block ends; yields the port.

    `prometheus_client.start_http_server` has no way to stop it again nor to refuse other
    paths, so the same pieces (its WSGI app and threading server) are put together here."""
    app = _only_metrics(make_wsgi_app(metrics.registry))
    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="batchyard-metrics", daemon=True)
    thread.start()
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
