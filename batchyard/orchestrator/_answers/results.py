"""A run's results as typed objects, in input order, without writing a file.

Owns `Result` and `iter_results` (what `Orchestrator.results` yields): one per input line,
built from the same facts as `fetch`'s lines (`output_line` in `_reporting/fetch.py`),
read from the store a page at a time. Reads only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from batchyard.build import split_variant
from batchyard.orchestrator._reporting.fetch import output_line
from batchyard.store import Store

__all__ = ["Result", "iter_results"]


@dataclass(frozen=True)
class Result:
    """The outcome of one request. `response` is the API's response body when it answered
    (status_code 200, or the error body it sent), `error` is `{"code", "message"}` when
    there is no answer (failed, cancelled or not finished yet)."""

    custom_id: str
    line: int
    status: str  # succeeded, failed, cancelled, or an unfinished status
    status_code: int | None
    response: dict[str, Any] | None
    error: dict[str, Any] | None
    route: str | None
    batch_id: str | None
    attempts: int
    cost: float | None
    input_tokens: int | None
    output_tokens: int | None
    original_id: str  # the custom_id before fan-out (the same when not a variant)
    variant: str | None  # e.g. "temperature=0.7,sample=2"
    model: str = ""  # the model the line was sent to: its own, or its fallback model
    # {"from", "to", "reason", "error", "at"} when a fallback model answered (or was tried)
    fallback: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @property
    def text(self) -> str | None:
        """The answer's text: a chat completion's first message, a response's output text,
        a completion's first choice; None for other endpoints or without an answer."""
        body = self.response if self.ok else None
        if not body:
            return None
        choices = body.get("choices")
        if isinstance(choices, list) and choices:
            first = choices[0]
            message = first.get("message") if isinstance(first, dict) else None
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                return str(message["content"])
            if isinstance(first, dict) and isinstance(first.get("text"), str):
                return str(first["text"])
        parts = [
            c.get("text")
            for item in body.get("output") or []
            if isinstance(item, dict)
            for c in item.get("content") or []
            if isinstance(c, dict) and c.get("type") == "output_text"
        ]
        texts = [p for p in parts if isinstance(p, str)]
        return "".join(texts) if texts else None


def iter_results(store: Store, run_id: str) -> Iterator[Result]:
    """Every request of the run, in input order."""
    store.get_run(run_id)
    batch_ids = {b.id: b.provider_batch_id for b in store.list_batches(run_id)}
    for r in store.iter_requests(run_id, with_response=True):
        line = output_line(run_id, r, batch_ids)
        response = line["response"]
        facts = line["batchyard"]
        original, variant = split_variant(r.custom_id)
        yield Result(
            custom_id=r.custom_id,
            line=r.line,
            status=r.status.value,
            status_code=response["status_code"] if response else None,
            response=response["body"] if response else None,
            error=line["error"],
            route=facts["route"],
            batch_id=facts["batch_id"],
            attempts=r.attempts,
            cost=r.cost,
            input_tokens=r.input_tokens,
            output_tokens=r.output_tokens,
            original_id=original,
            variant=variant,
            model=r.model,
            fallback=r.fallback,
        )
