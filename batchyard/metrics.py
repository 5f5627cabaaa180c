"""Optional Prometheus metrics for a running command (`batchyard --metrics-port N ...`).

Owns a tiny in-memory registry (gauges and counters with labels), its text exposition
format (Prometheus 0.0.4) and a loopback HTTP endpoint serving `/metrics` from a daemon
thread. No dependency: the format is a few lines of text. What is measured: requests by
route and status, tokens, cost (estimated and actual), batches by status, progress events
by kind, 429s, retries and circuit-breaker state (from the orchestrator's progress events).
It reads nothing from the store itself; the CLI feeds it what the orchestrator reports.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from batchyard.orchestrator._reports import CostReport, RunStatus

__all__ = ["Metrics", "serving"]

Labels = tuple[tuple[str, str], ...]

_HELP = {
    "batchyard_requests": ("gauge", "Requests of the watched run by route and status."),
    "batchyard_batches": ("gauge", "Batches of the watched run by status."),
    "batchyard_cost_usd": ("gauge", "Cost of the watched run in USD (estimated, actual)."),
    "batchyard_tokens": ("gauge", "Tokens of finished requests by model and direction."),
    "batchyard_events_total": ("counter", "Progress events reported by the orchestrator."),
    "batchyard_rate_limited_total": ("counter", "HTTP 429 answers seen."),
    "batchyard_retries_total": ("counter", "Retries scheduled."),
    "batchyard_breaker_open": ("gauge", "1 while a model's circuit breaker is open."),
    "batchyard_budget_usd": ("gauge", "Budget of the watched run: limit, spent, reserved."),
    "batchyard_budget_warning": ("gauge", "1 once the run has spent its warning share."),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Thread-safe gauges and counters, rendered in the Prometheus text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[Labels, float]] = {}

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values.setdefault(name, {})[tuple(sorted(labels.items()))] = float(value)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values.setdefault(name, {})
            series[key] = series.get(key, 0.0) + amount

    def value(self, name: str, **labels: str) -> float | None:
        with self._lock:
            return self._values.get(name, {}).get(tuple(sorted(labels.items())))

    def _replace(self, name: str, series: Mapping[Labels, float]) -> None:
        with self._lock:
            self._values[name] = dict(series)

    # ---- feeding -----------------------------------------------------------------------
    def observe_status(self, status: RunStatus) -> None:
        """Requests by route/status, batches by status and cost, from one round's status."""
        requests: dict[Labels, float] = {}
        for key, n in status.counts.items():
            route = key.route.value if key.route else "-"
            requests[(("route", route), ("run", status.run_id), ("status", key.status.value))] = n
        self._replace("batchyard_requests", requests)
        batches: dict[Labels, float] = {}
        for b in status.batches:
            label = (("run", status.run_id), ("status", b.status))
            batches[label] = batches.get(label, 0.0) + 1
        self._replace("batchyard_batches", batches)
        self.set("batchyard_cost_usd", status.estimated_cost, run=status.run_id, kind="estimated")
        self.set("batchyard_cost_usd", status.actual_cost, run=status.run_id, kind="actual")
        if status.budget is not None:
            for kind, value in (
                ("limit", status.budget),
                ("spent", status.budget_spent),
                ("reserved", status.budget_reserved),
            ):
                self.set("batchyard_budget_usd", value, run=status.run_id, kind=kind)
            warned = 1.0 if status.budget_warning else 0.0
            self.set("batchyard_budget_warning", warned, run=status.run_id)

    def observe_costs(self, report: CostReport) -> None:
        tokens: dict[Labels, float] = {}
        for row in report.rows:
            for direction, n in (("input", row.input_tokens), ("output", row.output_tokens)):
                label = (("direction", direction), ("model", row.model), ("route", row.route))
                tokens[label] = tokens.get(label, 0.0) + n
        self._replace("batchyard_tokens", tokens)

    def observe_event(self, kind: str, data: Mapping[str, Any]) -> None:
        """Count an orchestrator progress event; 429s, retries and breakers by their kind."""
        self.inc("batchyard_events_total", kind=kind)
        lowered = kind.lower()
        status_code = data.get("status_code")
        if "429" in lowered or "rate_limit" in lowered or status_code == 429:
            self.inc("batchyard_rate_limited_total")
        if "retry" in lowered:
            self.inc("batchyard_retries_total")
        if "breaker" in lowered and isinstance(data.get("model"), str):
            is_open = bool(data.get("open", "open" in lowered and "close" not in lowered))
            self.set("batchyard_breaker_open", 1.0 if is_open else 0.0, model=str(data["model"]))

    # ---- exposition --------------------------------------------------------------------
    def render(self) -> str:
        with self._lock:
            snapshot = {name: dict(series) for name, series in sorted(self._values.items())}
        out: list[str] = []
        for name, series in snapshot.items():
            kind, text = _HELP.get(name, ("untyped", name))
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(series.items()):
                inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                out.append(f"{name}{{{inner}}} {value:g}" if inner else f"{name} {value:g}")
        return "\n".join(out) + "\n"


def _handler(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "Only /metrics is served here.")
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def serving(metrics: Metrics, port: int, host: str = "127.0.0.1") -> Iterator[int]:
    """Serve `metrics` on http://host:port/metrics until the block ends; yields the port."""
    server = ThreadingHTTPServer((host, port), _handler(metrics))
    thread = threading.Thread(target=server.serve_forever, name="batchyard-metrics", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
