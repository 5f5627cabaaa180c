"""The rule for batch lines sent again (`router.resubmission`), table-driven: join new
lines, fill a worthwhile shard, real time when cheaper in time and money, the deadline
first, wait while more may come, never a tiny batch when something else can be done."""

from __future__ import annotations

import pytest

from batchyard.errors import ConfigError
from batchyard.router import Leftovers, ResubmitAction, ResubmitRule, resubmission

A = ResubmitAction
NOW = 1_000_000.0
RULE = ResubmitRule(min_lines=100)
BATCH_ONLY = ResubmitRule(min_lines=100, realtime_allowed=False)


def left(
    lines: int,
    *,
    batch: float = 0.5,
    realtime: float = 1.0,
    standard: float = 1.0,
    joinable: int = 0,
    running: int = 0,
) -> Leftovers:
    return Leftovers(lines, batch, realtime, standard, joinable=joinable, running=running)


@pytest.mark.parametrize(
    ("case", "rule", "escalation_at", "expected", "words"),
    [
        (left(5, joinable=400), RULE, None, A.BATCH, "join 400 new"),
        (left(150, running=900), RULE, None, A.BATCH, "a shard of their own"),
        (left(50, realtime=0.5, running=900), RULE, None, A.REALTIME, "costs what batch costs"),
        (left(5, running=900), RULE, None, A.WAIT, "worthwhile shard (100"),
        (left(50, running=900), RULE, None, A.WAIT, "worthwhile shard (100"),
        (left(50), RULE, None, A.BATCH, "nothing else will join"),
        (left(50), RULE, NOW + 8 * 3600.0, A.BATCH, "the deadline leaves time"),
        (left(50, running=9), ResubmitRule(min_lines=1), None, A.BATCH, "of their own"),
        # The deadline rules: waiting would leave no time for a batch to come back.
        (left(50, running=900), RULE, NOW + 600.0, A.BATCH, "no time to wait"),
        (left(50, running=900), RULE, NOW + 30.0, A.REALTIME, "no room for a new batch"),
        (left(50, running=900), RULE, NOW + 10 * 3600.0, A.WAIT, "worthwhile"),
        # --route batch: never real time.
        (left(5, realtime=0.5, running=900), BATCH_ONLY, None, A.WAIT, "worthwhile"),
        (left(5, running=900), BATCH_ONLY, NOW + 30.0, A.BATCH, "no time to wait"),
        (left(5), BATCH_ONLY, None, A.BATCH, "nothing else"),
    ],
)
def test_resubmission_rule(
    case: Leftovers,
    rule: ResubmitRule,
    escalation_at: float | None,
    expected: ResubmitAction,
    words: str,
) -> None:
    action, reason = resubmission(
        case, rule, NOW, escalation_at=escalation_at, setup_s=60.0, turnaround_s=3600.0
    )
    assert (action, words in reason) == (expected, True), reason


def test_a_shard_needs_at_least_one_line() -> None:
    with pytest.raises(ConfigError):
        ResubmitRule(min_lines=0)
