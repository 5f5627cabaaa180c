"""The allowed status transitions for runs, requests and batch shards.

Owns three explicit tables (dicts from a status to the statuses it may move to) and the
one function that checks a change against them. It must not touch the database: the store's
write methods call `check_*` before every status update, so an illegal change raises
`IllegalTransition` instead of corrupting state.

A status that maps to an empty set is terminal. A status never moves to itself unless the
table says so (only `routed -> routed`, a re-route); callers that want idempotence (applying
the same result twice, a poll that reports the same status) detect "no change" themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from batchyard.errors import IllegalTransition
from batchyard.models import BatchStatus, RequestStatus, RunState

__all__ = [
    "BATCH_TRANSITIONS",
    "PROVIDER_TERMINAL",
    "REQUEST_TERMINAL",
    "REQUEST_TRANSITIONS",
    "RUN_TRANSITIONS",
    "check_batch",
    "check_request",
    "check_run",
]

R = RequestStatus
B = BatchStatus
S = RunState

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    S.PENDING: frozenset({S.RUNNING, S.COMPLETED, S.CANCELLING, S.CANCELLED}),
    S.RUNNING: frozenset({S.COMPLETED, S.CANCELLING, S.CANCELLED}),
    # Work that finishes while a cancel is being processed still completes the run.
    S.CANCELLING: frozenset({S.CANCELLED, S.COMPLETED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}

REQUEST_TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    # FAILED straight from pending: the line was refused before routing (e.g. skipped).
    # TWIN: identical to an earlier line of the run, or to an answer in the store that
    # passed its checks (then settled in the same transaction); never sent itself.
    R.PENDING: frozenset({R.ROUTED, R.FAILED, R.CANCELLED, R.TWIN}),
    # routed -> routed is a re-route (the router changed its mind before dispatch).
    R.ROUTED: frozenset({R.ROUTED, R.SUBMITTED, R.IN_FLIGHT, R.FAILED, R.CANCELLED}),
    # Not submitted -> routed: a line inside a live batch must not be sent again. The one
    # exception is deliberate and has its own method, `Store.release_shard` (a shard whose
    # cancel has not finished by the last moment real time can start); its late answers
    # are settled against the shard's still-open attempt, never blindly applied.
    # INVALID: the answer failed a check and no re-queue is left.
    R.SUBMITTED: frozenset({R.SUCCEEDED, R.FAILED, R.RETRYABLE, R.CANCELLED, R.INVALID}),
    # in_flight -> routed is a release: the claim was given back before the call was made.
    R.IN_FLIGHT: frozenset({R.SUCCEEDED, R.FAILED, R.RETRYABLE, R.ROUTED, R.CANCELLED, R.INVALID}),
    # A retryable request is claimed again (real time), re-routed, or given up on.
    R.RETRYABLE: frozenset({R.IN_FLIGHT, R.ROUTED, R.FAILED, R.CANCELLED}),
    # A twin ends with the outcome of the line it is identical to.
    R.TWIN: frozenset({R.SUCCEEDED, R.FAILED, R.INVALID, R.CANCELLED}),
    R.SUCCEEDED: frozenset(),
    R.INVALID: frozenset(),
    R.FAILED: frozenset(),
    R.CANCELLED: frozenset(),
}

_PROVIDER_LIVE = frozenset({B.VALIDATING, B.IN_PROGRESS, B.FINALIZING, B.CANCELLING})
_PROVIDER_DONE = frozenset({B.COMPLETED, B.FAILED, B.EXPIRED, B.CANCELLED})

BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    # Local intent states. Going back one step is how reconcile undoes an intent whose
    # remote call never happened (no remote id exists for it).
    B.PLANNED: frozenset({B.UPLOADING, B.CANCELLED}),
    B.UPLOADING: frozenset({B.UPLOADED, B.PLANNED, B.CANCELLED}),
    B.UPLOADED: frozenset({B.CREATING, B.CANCELLED}),
    # After batches.create the provider may already report any status.
    B.CREATING: frozenset({B.UPLOADED} | _PROVIDER_LIVE | _PROVIDER_DONE),
    # Provider statuses only move forward; polls may skip intermediate ones.
    B.VALIDATING: frozenset({B.IN_PROGRESS, B.FINALIZING, B.CANCELLING} | _PROVIDER_DONE),
    B.IN_PROGRESS: frozenset({B.FINALIZING, B.CANCELLING} | _PROVIDER_DONE),
    B.FINALIZING: frozenset({B.CANCELLING} | _PROVIDER_DONE),
    B.CANCELLING: _PROVIDER_DONE,
    B.COMPLETED: frozenset({B.APPLIED}),
    B.FAILED: frozenset({B.APPLIED}),
    B.EXPIRED: frozenset({B.APPLIED}),
    B.CANCELLED: frozenset({B.APPLIED}),
    B.APPLIED: frozenset(),
}

# Provider-terminal: nothing more will happen remotely; the files can be applied.
PROVIDER_TERMINAL = _PROVIDER_DONE
REQUEST_TERMINAL = frozenset(s for s, nxt in REQUEST_TRANSITIONS.items() if not nxt)

E = TypeVar("E", bound=StrEnum)


def _check(table: Mapping[E, frozenset[E]], what: str, old: E, new: E) -> None:
    allowed = table[old]
    if new in allowed:
        return
    shown = ", ".join(sorted(str(s) for s in allowed)) or "nothing (terminal)"
    raise IllegalTransition(
        f"{what} cannot go from '{old}' to '{new}'; from '{old}' it may only go to {shown}."
    )


def check_run(run_id: str, old: RunState, new: RunState) -> None:
    """Raise `IllegalTransition` unless the run may move from `old` to `new`."""
    _check(RUN_TRANSITIONS, f"Run {run_id}", old, new)


def check_request(run_id: str, custom_id: str, old: RequestStatus, new: RequestStatus) -> None:
    """Raise `IllegalTransition` unless the request may move from `old` to `new`."""
    _check(REQUEST_TRANSITIONS, f"Request '{custom_id}' of run {run_id}", old, new)


def check_batch(shard: int, old: BatchStatus, new: BatchStatus) -> None:
    """Raise `IllegalTransition` unless the shard may move from `old` to `new`."""
    _check(BATCH_TRANSITIONS, f"Batch shard {shard}", old, new)
