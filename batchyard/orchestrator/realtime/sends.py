"""Every failed real-time send: when it goes again, its attempt row, and stalls.

Owns `SendLog`, which the request handler calls for each send that failed: `failed` asks
`_retry.Retries` when the request goes again (and waits out the model's 429 pause too),
`record` queues the send's attempt row (closed as `retry` with its error kind, status and
request id, the request's `not_before` and reason) for the next group commit, `retried`
notes it in the run's history, and `stalling` / `answered` feed the run's `StallWatch` and
write `realtime.stall` / `realtime.flowing` events. No SQL of its own.
"""

from __future__ import annotations

from batchyard.orchestrator._calls.failures import FAULT_KINDS, Failure
from batchyard.orchestrator._calls.retry import Decision, Retries, Verdict
from batchyard.orchestrator.realtime.context import RealtimeContext
from batchyard.orchestrator.realtime.job import Job, bucket
from batchyard.store import FailedSend

__all__ = ["SendLog"]


class SendLog:
    """What happens to a failed send, on one `RealtimeContext`."""

    def __init__(self, ctx: RealtimeContext) -> None:
        self.ctx = ctx

    def retries(self, job: Job) -> Retries:
        if job.retries is None:
            job.retries = Retries(
                self.ctx.policy,
                faults=job.claim.faults,
                scale=self.ctx.options.provider_time_scale,
                defer_after=self.ctx.options.defer_after,
            )
        return job.retries

    def failed(self, job: Job, failure: Failure) -> None:
        """Decide when a failed send goes again (`Retries`, then the model's 429 pause),
        and record that send: an attempt row with the request's `not_before` and reason."""
        decision = self.retries(job).decide(failure)
        if decision.verdict is Verdict.RETRY:
            # The model's admission is paused after a 429: the request cannot go sooner.
            admission = self.ctx.admission[job.claim.model, bucket(job.tier)]
            pause = admission.paused_until - self.ctx.clock()
            if pause > decision.wait:
                decision = Decision(
                    Verdict.RETRY, pause, f"{failure.kind}: {job.claim.model} paused after a 429"
                )
                job.retries.last = decision  # type: ignore[union-attr]
        if decision.verdict is Verdict.RETRY:
            self.record(job, failure, decision)

    def record(self, job: Job, failure: Failure, decision: Decision) -> None:
        now = self.ctx.clock()
        self.ctx.run.sends.append(
            FailedSend(
                job.claim.custom_id,
                now,
                str(failure.kind),
                failure.status_code,
                failure.code,
                failure.request_id,
                now + decision.wait,
                decision.reason,
                failure.kind in FAULT_KINDS,
            )
        )
        self.ctx.run.flush_wanted.set()

    def retried(self, job: Job, failure: Failure, number: int, delay: float) -> None:
        """A failed send goes again: an event in the run's history and a progress note."""
        # Each failed send is an attempt row (written with the next group commit)
        # and an event in the run's history.
        self.ctx.run.report.retries += 1
        message = f"{failure.kind}: {failure.message} (retry in {delay:.2f}s)"
        self.ctx.store.add_event(
            self.ctx.run.run_id,
            "realtime.retry",
            message,
            {
                "call": number,
                "kind": str(failure.kind),
                "status_code": failure.status_code,
                "error_code": failure.code,
                "delay": delay,
                "tier": job.tier.value,
            },
            custom_id=job.claim.custom_id,
        )
        self.ctx.emit("retry", message, job.claim.custom_id, job.claim.model)

    def stalling(self, job: Job, failure: Failure) -> None:
        message = self.ctx.run.stall.failed(str(failure.kind), self.ctx.clock())
        if message is None:
            return
        self.ctx.run.report.stalls += 1
        kinds = dict(self.ctx.run.stall.kinds)
        self.ctx.store.add_event(self.ctx.run.run_id, "realtime.stall", message, {"kinds": kinds})
        self.ctx.emit("stall", message, None, job.claim.model)

    def answered(self) -> None:
        if self.ctx.run.stall.answered():
            message = "Answers flow again after a stall."
            self.ctx.store.add_event(self.ctx.run.run_id, "realtime.flowing", message)
            self.ctx.emit("flowing", message, None, None)
