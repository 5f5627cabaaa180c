"""Noticing a stall: a run whose sends have met nothing but retryable errors for a while.

Owns `StallWatch`: fed every send's outcome, it says when every send of the last
`after` seconds (the injected clock's) failed with a rate limit, a 5xx, a timeout or a
dropped connection, and when answers flow again. The runner records both as events
(`realtime.stall`, `realtime.flowing`), which `status` and the live view show. Nothing is
given up on a stall: requests keep waiting and retrying. No I/O, no clock reads.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["StallWatch", "stall_message"]

_WHY = {
    "rate_limit": (
        "429 rate_limit_exceeded: the key's limit is used up, maybe by another client on "
        "the same organisation"
    ),
    "flex_unavailable": "429 resource unavailable on the flex tier",
    "server": "5xx server errors",
    "timeout": "timeouts",
    "connection": "dropped connections",
    "conflict": "409 conflicts",
}


def stall_message(seconds: float, kinds: Counter[str]) -> str:
    """ "Stalled: no answer for 75 s; every send met 429 rate_limit_exceeded (…) (23)"."""
    parts = [f"{_WHY.get(kind, kind)} ({n})" for kind, n in kinds.most_common()]
    return (
        f"Stalled: no answer for {seconds:.0f} s; every send met "
        + ", ".join(parts)
        + ". Requests keep waiting and retrying (nothing is failed for this)."
    )


class StallWatch:
    """Consecutive failed sends since the last answer, and whether that is a stall."""

    def __init__(self, after: float) -> None:
        self.after = after
        self.since: float | None = None  # first failure since the last answer
        self.kinds: Counter[str] = Counter()
        self.stalled = False

    def failed(self, kind: str, now: float) -> str | None:
        """A send failed; returns the stall message when this makes a stall."""
        if self.since is None:
            self.since = now
        self.kinds[kind] += 1
        if not self.stalled and now - self.since >= self.after:
            self.stalled = True
            return stall_message(now - self.since, self.kinds)
        return None

    def answered(self) -> bool:
        """A send was answered; True when that ends a stall."""
        ended = self.stalled
        self.since, self.stalled = None, False
        self.kinds.clear()
        return ended
