"""One claimed real-time request while the handler works on it.

Owns `Job` (the claim, its tier and prepared body, its token charge, its calls, its flex
waits, its retry bookkeeping and whether it is settled), `Phase` and `bucket` (the
rate-limit pool a tier draws on). Plain state: no calls, no SQL.
"""

from __future__ import annotations

from enum import StrEnum

from batchyard import tokens
from batchyard.models import Route, Tier
from batchyard.orchestrator._calls.retry import Retries
from batchyard.orchestrator.realtime.call import prepared_body
from batchyard.store import Claim

__all__ = ["Job", "Phase", "bucket"]

_TIERS = {Route.FLEX: Tier.FLEX, Route.FAST: Tier.FAST}


def bucket(tier: Tier) -> Tier:
    """The rate-limit pool a tier draws on: fast shares the standard tier's (OpenAI)."""
    return Tier.DEFAULT if tier is Tier.FAST else tier


class Phase(StrEnum):
    WAITING = "waiting"  # not calling right now: admission, backoff (safe to release)
    CALLING = "calling"  # a call is on the wire


class Job:
    __slots__ = (
        "body",
        "calls",
        "charge",
        "claim",
        "flex_tries",
        "flex_waited",
        "output_cap",
        "phase",
        "prompt",
        "retries",
        "settled",
        "tier",
    )

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.tier = _TIERS.get(claim.route, Tier.DEFAULT)
        self.body = prepared_body(claim.body, self.tier)
        count = tokens.count_request(claim.endpoint, claim.body)
        self.prompt = count.prompt
        self.output_cap = count.output or 0
        self.charge = self.prompt + self.output_cap
        self.calls = 0
        self.flex_tries = 0
        self.flex_waited = 0.0
        self.phase = Phase.WAITING
        self.settled = False
        self.retries: Retries | None = None  # set by the handler (its policy and clock)
