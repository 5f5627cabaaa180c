"""How the CLI shows things: rich tables for people, one JSON document for `--json`.

Owns the shared formatting (`jsonable`, `emit_json`, `percent`, `when`) and turning a Plan,
a SubmitResult and a RunStatus into renderables and plain progress lines, one batch row
builder for both the status view and the live view included; runs, costs, fetch, verify
and config are `render_runs.py`. It never calls the orchestrator, never decides anything,
and never writes the API key.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from batchyard.jsontext import quoted
from batchyard.router.parse import format_duration, format_time, format_usd

if TYPE_CHECKING:
    from batchyard.orchestrator._reporting.reports import (
        BatchInfo,
        RunStatus,
        SubmitResult,
    )
    from batchyard.router import Plan

__all__ = [
    "batch_columns",
    "batch_row",
    "emit_json",
    "emit_plan_json",
    "estimate_text",
    "fallback_lines",
    "jsonable",
    "open_work_hint",
    "percent",
    "plan_view",
    "status_line",
    "status_view",
    "submit_lines",
    "when",
]

# Batch statuses with no finish ahead: their "expected" column shows "-".
ENDED_BATCH = ("applied", "completed", "cancelled", "failed", "expired")


def jsonable(value: Any) -> Any:
    """Plain JSON types for dataclasses, enums, paths and tuples."""
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def emit_json(data: Any) -> None:
    """Exactly one JSON document on stdout (no colour, no wrapping)."""
    sys.stdout.write(json.dumps(jsonable(data), indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def emit_plan_json(plan: Plan, out: TextIO | None = None) -> None:
    """`emit_json(plan.to_dict())`, the same text, with the per-line assignments written as
    they stream from the plan rather than built into one document first."""
    out = out or sys.stdout
    head = json.dumps(jsonable(plan.to_dict(assignments=False)), indent=2)
    out.write(head[: -len("\n}")] + ',\n  "assignments": [')
    encoded: dict[str, str] = {}  # a run has few distinct reasons: encode each once
    sep = "\n"
    for a in plan.decision.assignments:
        reason = encoded.get(a.reason)
        if reason is None:
            reason = json.dumps(a.reason)
            if len(encoded) < 10_000:
                encoded[a.reason] = reason
        out.write(
            f'{sep}    {{\n      "custom_id": {quoted(a.custom_id)},\n      "route": '
            f'"{a.route.value}",\n      "reason": {reason},\n      "deferred": '
            f"{'true' if a.deferred else 'false'}\n    }}"
        )
        sep = ",\n"
    out.write("]\n}\n" if sep == "\n" else "\n  ]\n}\n")
    out.flush()


def percent(done: int, total: int) -> int:
    """Whole percent, rounded down: 2,990/3,000 is 99%, and 100% means all of it."""
    if total <= 0:
        return 100
    return min(100, done * 100 // total)


def when(ts: float | None, now: float | None = None) -> str:
    """An absolute time, and (with `now`) how far away it is: computed when shown."""
    if ts is None:
        return "-"
    text = format_time(ts)
    if now is not None:
        delta = ts - now
        ago = f" ({format_duration(-delta)} ago)"
        text += f" (in {format_duration(delta)})" if delta >= 0 else ago
    return text


# ---- plan and submit -------------------------------------------------------------------------
def plan_view(plan: Plan) -> RenderableType:
    table = Table(title=f"Plan for {plan.requests:,} request(s)", title_justify="left")
    for name, justify in (
        ("model", "left"),
        ("route", "left"),
        ("requests", "right"),
        ("input tok", "right"),
        ("output tok", "right"),
        ("expected", "right"),
        ("all-standard", "right"),
        ("escalate at", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=name in ("model", "route"))  # type: ignore[arg-type]
    for r in plan.rows:
        table.add_row(
            r.model,
            r.route.value,
            f"{r.requests:,}",
            f"{r.input_tokens:,}",
            f"{r.output_tokens:,}",
            format_usd(r.expected),
            format_usd(r.all_standard),
            format_time(r.escalation_at) if r.escalation_at is not None else "-",
        )
    lines = [
        f"cost: expected {format_usd(plan.expected)} (best {format_usd(plan.best)}, worst "
        f"{format_usd(plan.worst)}); all-standard {format_usd(plan.all_standard)}; "
        f"saving {format_usd(plan.saving)}",
    ]
    if plan.reused or plan.twins:
        lines.append(
            f"reuse: {plan.reused:,} line(s) answered from earlier runs, {plan.twins:,} "
            f"identical to an earlier line (sent once); saving {format_usd(plan.reuse_saving)}"
        )
    if plan.budget_usd is not None:
        lines.append(
            f"budget {format_usd(plan.budget_usd)}: worst case {format_usd(plan.worst)} "
            f"({100 * plan.worst / plan.budget_usd:.0f}%)"
        )
    if plan.deadline is not None:
        lines.append(f"deadline: {when(plan.deadline, plan.now)}")
    if plan.expected_finish is not None:
        lines.append(f"expected finish: {when(plan.expected_finish, plan.now)}")
    if plan.late:
        shown = ", ".join(plan.cannot_meet[:5]) + (", ..." if plan.late > 5 else "")
        lines.append(f"{plan.late} request(s) cannot make the deadline: {shown}")
    if plan.reasons:
        lines.append("why:")
        lines.extend(f"  {model}: {why}" for model, why in plan.reasons.items())
    else:
        lines.append(f"why: {plan.reason}")
    return Group(table, Text("\n".join(lines)))


def open_work_hint(status: RunStatus, realtime_open: int) -> str:
    """What is still open when `submit` returns (done, detached or stopped), and how to
    carry on: real-time work only when there is some."""
    if realtime_open:
        what = "Real-time work is waiting"
    elif status.batches:
        what = "Batches are running"
    else:
        what = "Batch work is waiting to be submitted"
    run = status.run_id
    return (
        f"{what}. Follow the run with `batchyard watch {run}` (or `batchyard poll {run} "
        f"--wait`), then `batchyard fetch {run} -o results.jsonl`."
    )


def submit_lines(result: SubmitResult) -> list[str]:
    lines = [f"run {result.run_id}: {result.accepted:,} request(s) recorded"]
    if result.rejected:
        lines.append(f"{result.rejected} invalid line(s) skipped, written to {result.rejects_path}")
    lines.append(
        f"{result.shards_submitted} batch(es) submitted"
        + (
            f", {result.waiting_requests:,} request(s) waiting for queue room"
            if result.waiting_requests
            else ""
        )
    )
    return lines


# ---- status ------------------------------------------------------------------------------------
def _routes(status: RunStatus) -> Table:
    routes: dict[str, dict[str, int]] = {}
    columns: list[str] = []
    for key, n in status.counts.items():
        state = key.status.value
        routes.setdefault(key.route.value if key.route else "-", {})[state] = n
        if state not in columns:
            columns.append(state)
    table = Table(title="requests by route and status", title_justify="left")
    table.add_column("route", no_wrap=True)
    for c in columns:
        table.add_column(c, justify="right")
    table.add_column("total", justify="right")
    for route, states in routes.items():
        table.add_row(
            route, *(f"{states.get(c, 0):,}" for c in columns), f"{sum(states.values()):,}"
        )
    return table


def batch_columns(status: RunStatus) -> tuple[str, ...]:
    """A batch row's line counts, in the words every count uses (`status`, the live view,
    `fetch`): cancelled and re-routed only when some shard has such lines."""
    moved = any(b.cancelled or b.rerouted for b in status.batches)
    return ("succeeded", "failed", *(("cancelled", "re-routed") if moved else ()))


def batch_counts(b: BatchInfo, columns: Sequence[str]) -> list[str]:
    values = {
        "succeeded": b.completed,
        "failed": b.failed,
        "cancelled": b.cancelled,
        "re-routed": b.rerouted,
    }
    return [f"{values[c]:,}" for c in columns]


def _batches(status: RunStatus, now: float | None) -> Table:
    table = Table(title="batches", title_justify="left")
    counts = batch_columns(status)
    for name in ("shard", "batch id", "model", "status", *counts, "total", "expected"):
        table.add_column(name, no_wrap=name in ("batch id", "model"))
    for b in status.batches:
        table.add_row(*batch_row(b, now, counts))
    return table


def batch_row(
    b: BatchInfo, now: float | None, columns: Sequence[str] = ("succeeded", "failed")
) -> tuple[str, ...]:
    """One batch as a table row: shard, batch id, model, status, its line counts
    (`batch_columns`), total and when it is expected to finish (status and live view)."""
    return (
        str(b.shard),
        b.provider_batch_id or "-",
        b.model,
        b.status,
        *batch_counts(b, columns),
        f"{b.total:,}",
        when(b.expected_finish, now) if b.status not in ENDED_BATCH else "-",
    )


def status_view(status: RunStatus, now: float | None = None) -> RenderableType:
    head = [
        f"run {status.run_id}: {status.state}"
        + (" (done)" if status.done else "")
        + f", {status.finished:,}/{status.requests:,} finished "
        f"({status.succeeded:,} succeeded, {status.failed:,} failed"
        + (f", {status.invalid:,} of them invalid" if status.invalid else "")
        + (f", {status.cancelled:,} cancelled" if status.cancelled else "")
        + ")",
        f"source: {status.source_path}",
        f"cost so far {format_usd(status.actual_cost)} of {estimate_text(status)}",
    ]
    if status.budget is not None:
        share = (status.budget_spent + status.budget_reserved) / status.budget
        head.append(
            f"budget {format_usd(status.budget)}: spent {format_usd(status.budget_spent)}, "
            f"reserved {format_usd(status.budget_reserved)} ({share:.0%})"
            + (f"; WARNING: {status.budget_warning}" if status.budget_warning else "")
        )
    if status.reused:
        head.append(
            f"reused answers: {status.reused:,} line(s), saving {format_usd(status.reuse_saving)}"
        )
    if status.requeues:
        head.append(
            f"re-sent after a failed check: {status.requeues:,} time(s), "
            f"{format_usd(status.requeue_cost)} (included in cost so far)"
        )
    if status.paid_twice:
        head.append(
            f"paid twice to hold the deadline: {status.paid_twice:,} line(s), "
            f"{format_usd(status.paid_twice_cost)} (included in the cost so far)"
        )
    head.extend(fallback_lines(status.fallbacks))
    if status.deadline_at is not None:
        verdict = {True: "will be met", False: "AT RISK", None: "-"}[status.deadline_ok]
        if status.deadline_ok is False and status.realtime_needed_s is not None:
            verdict += (
                f" (real time needs {format_duration(status.realtime_needed_s)} for the open work)"
            )
        head.append(f"deadline {when(status.deadline_at, now)}: {verdict}")
    if status.expected_finish is not None and not status.done:
        head.append(f"expected finish {when(status.expected_finish, now)}")
    for model, at in status.escalation_at.items():
        head.append(f"escalation point for {model}: {when(at, now)}")
    if status.retried:
        head.append(retried_text(status))
    if status.send_stall:
        head.append(status.send_stall)
    for reason, n, due in status.waiting[:5]:
        head.append(f"waiting: {n:,} request(s), next {when(due, now)}: {reason}")
    parts: list[RenderableType] = [Text("\n".join(head)), _routes(status)]
    if status.batches:
        parts.append(_batches(status, now))
    if status.queue_wait:
        parts.append(Text(f"waiting for queue room: {status.queue_wait}"))
    if status.last_errors:
        parts.append(
            Text(
                "last errors:\n"
                + "\n".join(f"  {kind}: {message}" for kind, message in status.last_errors.items())
            )
        )
    if status.reasons:
        parts.append(Text("routing:\n" + "\n".join(f"  {r}" for r in status.reasons[-5:])))
    return Group(*parts)


def retried_text(status: RunStatus) -> str:
    """ "sends tried again: 559 (rate_limit 423, server 136)": 429s and faults by kind."""
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in status.retried.items())
    return f"sends tried again: {sum(status.retried.values()):,} ({kinds})"


def estimate_text(status: RunStatus) -> str:
    """The plan's one estimate, labelled: expected, and worst case where recorded."""
    shown = f"{format_usd(status.estimated_cost)} expected"
    if status.estimated_worst is not None and status.estimated_worst > status.estimated_cost:
        shown += f" (worst case {format_usd(status.estimated_worst)})"
    return shown


def status_line(status: RunStatus) -> str:
    """One plain progress line (poll, non-interactive watch, demo without a terminal)."""
    ended = ("applied", "cancelled", "failed", "expired")
    active = sum(1 for b in status.batches if b.status not in ended)
    pct = percent(status.finished, status.requests)
    line = (
        f"{status.run_id} {status.state}: {status.finished:,}/{status.requests:,} finished "
        f"({pct}%), {status.succeeded:,} succeeded, {status.failed:,} failed"
        + (f" ({status.invalid:,} invalid)" if status.invalid else "")
        + (f", {status.cancelled:,} cancelled" if status.cancelled else "")
        + "; "
        f"{active} batch(es) active; cost {format_usd(status.actual_cost)} of "
        f"{format_usd(status.estimated_cost)} expected"
    )
    if status.queue_wait:
        line += f"; {status.queue_wait}"
    if status.deadline_ok is False:
        line += "; deadline at risk"
    if status.send_stall and not status.done:
        line += f"; {status.send_stall}"
    if status.budget_warning:
        line += f"; budget: {status.budget_warning}"
    return line


def fallback_lines(fallbacks: list[dict[str, Any]]) -> list[str]:
    """One line per (model, fallback model, reason) of `status`/`costs`."""
    return [
        f"fallback model: {f['lines']:,} line(s) of {f['from']} sent to {f['to']} "
        f"({f['reason']}): {f['succeeded']:,} answered, {f['failed']:,} failed, "
        f"{format_usd(f['cost'])}"
        for f in fallbacks
    ]
