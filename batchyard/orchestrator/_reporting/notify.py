"""The `--notify URL` of a run: one signed call once the run has finished.

Owns deciding when (the run is completed or cancelled and its notification not yet sent;
a failed call is tried again on later rounds, at most `MAX_ATTEMPTS` times in all) and
what (`batchyard.run.finished` with the run's id, state and counts). The call itself and
its signature are `batchyard.webhooks`'; the store records every attempt.
"""

from __future__ import annotations

import time

from batchyard.config import Settings
from batchyard.errors import ConfigError
from batchyard.models import RequestStatus, RunState
from batchyard.orchestrator._calls.timing import Clock
from batchyard.orchestrator._reporting.reports import RunStatus
from batchyard.store import Store
from batchyard.webhooks import finished_event, send

__all__ = ["MAX_ATTEMPTS", "notify_if_finished", "notify_secret"]

MAX_ATTEMPTS = 5
_FINISHED = (RunState.COMPLETED.value, RunState.CANCELLED.value)


def notify_secret(settings: Settings) -> str:
    """The signing secret for `--notify`, or a ConfigError saying how to set one."""
    if settings.notify_secret is None:
        raise ConfigError(
            "--notify signs its call, so it needs a secret: set BATCHYARD_NOTIFY_SECRET "
            "(or notify_secret in batchyard.toml) to a whsec_... value shared with the "
            "receiver."
        )
    return settings.notify_secret.get_secret_value()


async def notify_if_finished(
    store: Store, settings: Settings, status: RunStatus, clock: Clock
) -> bool:
    """Send the run's notification if it is due; True when a call was made."""
    if status.state not in _FINISHED:
        return False
    note = store.get_notification(status.run_id)
    if note is None or note.state == "sent" or note.attempts >= MAX_ATTEMPTS:
        return False
    failed = status.count(RequestStatus.FAILED)
    body = finished_event(
        "evt_" + note.webhook_id.removeprefix("wh_"),
        int(clock()),
        {
            "run_id": status.run_id,
            "state": status.state,
            "requests": status.requests,
            "succeeded": status.succeeded,
            "failed": failed,
            "actual_cost": status.actual_cost,
        },
    )
    error = await send(
        note.url,
        body,
        secret=notify_secret(settings),
        webhook_id=note.webhook_id,
        # wall time, not the injected clock: receivers check it against their own
        timestamp=int(time.time()),
    )
    store.record_notification(status.run_id, sent=error is None, error=error)
    return True
