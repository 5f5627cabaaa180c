"""What a failed check means for a request: a re-send (perhaps with a larger token cap) or,
once the run's re-queues are spent, the end as `invalid`.

Owns `Judge` (one run's checks, re-queue limit and token-cap policy, read from the run's
options so every process judges a run alike) and `Judges` (one per run, cached; user
checks given to the Python API are found here by name). Both paths pass each succeeded
`Result` through `Judge.judge` before it is stored. No SQL, no I/O beyond reading the run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchyard.catalog import ModelInfo
from batchyard.checks import (
    Answer,
    CheckFn,
    NamedCheck,
    check_names,
    resolve_checks,
    run_checks,
)
from batchyard.models import RequestStatus
from batchyard.store import Result, Store

__all__ = ["CAP_FIELDS", "Judge", "Judges", "check_options", "raised_cap"]

# The body field that caps output, per endpoint (chat also accepts the older max_tokens).
CAP_FIELDS = {
    "/v1/chat/completions": ("max_completion_tokens", "max_tokens"),
    "/v1/responses": ("max_output_tokens",),
    "/v1/completions": ("max_tokens",),
}


def raised_cap(
    endpoint: str, body: Mapping[str, Any], info: ModelInfo | None
) -> dict[str, Any] | None:
    """The body with its output cap doubled, up to the model's maximum output; None when it
    cannot grow (no cap set, the model's maximum unknown or reached)."""
    if info is None or info.max_output is None:
        return None
    for field in CAP_FIELDS.get(endpoint, ()):
        cap = body.get(field)
        if isinstance(cap, int) and not isinstance(cap, bool) and cap < info.max_output:
            return {**body, field: min(info.max_output, max(cap * 2, cap + 16))}
    return None


def check_options(
    checks: Sequence[str | CheckFn] | None, requeues: int, length_raise: bool
) -> dict[str, Any]:
    """The run options that say how its answers are checked (names resolve in any process)."""
    resolved = resolve_checks(checks)
    return {
        "checks": check_names(resolved),
        "check_requeues": requeues,
        "length_raise": length_raise,
    }


@dataclass(frozen=True)
class Judge:
    """One run's checks and what a failure leads to."""

    checks: tuple[NamedCheck, ...]
    requeues: int  # sends after a failed check before the line ends invalid
    length_raise: bool
    models: Mapping[str, ModelInfo]

    def judge(self, result: Result, endpoint: str, body: Mapping[str, Any], model: str) -> Result:
        """`result` as it should be stored: unchanged unless a succeeded answer fails a
        check; then RETRYABLE with `requeue` (the store ends it INVALID once the run's
        re-queues are spent), the answer and its cost kept."""
        if result.status is not RequestStatus.SUCCEEDED or not self.checks:
            return result
        response = result.response_body
        if response is None:
            return result
        failure = run_checks(self.checks, Answer(endpoint, body, response))
        if failure is None:
            return result
        resend = None
        if failure.check == "finish" and self.length_raise and "token limit" in failure.reason:
            resend = raised_cap(endpoint, body, self.models.get(model))
        return dataclasses.replace(
            result,
            status=RequestStatus.RETRYABLE,
            error_code=failure.code,
            error_message=failure.reason,
            requeue=True,
            requeue_limit=self.requeues,
            resend_body=resend,
        )


class Judges:
    """A `Judge` per run, read once from the run's options."""

    def __init__(
        self,
        store: Store,
        models: Mapping[str, ModelInfo],
        registry: Mapping[str, CheckFn] | None = None,
    ) -> None:
        self.store = store
        self.models = models
        self.registry: dict[str, CheckFn] = dict(registry or {})
        self._runs: dict[str, Judge] = {}

    def register(self, checks: Iterable[str | CheckFn] | None) -> None:
        """Remember callables by name, so this process can judge runs that name them."""
        for check in checks or ():
            if callable(check):
                self.registry[getattr(check, "__name__", repr(check))] = check

    def for_run(self, run_id: str) -> Judge:
        judge = self._runs.get(run_id)
        if judge is None:
            options = self.store.get_run(run_id).options
            names = options.get("checks")  # runs recorded before checks: none
            judge = Judge(
                resolve_checks(names if names is not None else [], self.registry),
                int(options.get("check_requeues", 0)),
                bool(options.get("length_raise", False)),
                self.models,
            )
            self._runs[run_id] = judge
        return judge
