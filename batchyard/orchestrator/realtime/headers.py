"""What the provider's rate-limit headers say: limits, what is left, and when it resets.

Owns `RateView` (the `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers of one
response, read leniently: a missing or unreadable value is None) and `parse_duration` for
the Go-style durations in `x-ratelimit-reset-*` headers (`1s`, `6m0s`, `114ms`,
`23m16.298s`). It must not act on them: `admission.py` corrects its budgets from them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RateView", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|h|m|s)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float | None:
    """Seconds in a Go duration (`6m0s`, `114ms`, `23m16.298s`), a bare number of seconds,
    or None when the value is missing or unreadable."""
    if text is None:
        return None
    value = text.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    return total if pos == len(value) and pos > 0 else None


@dataclass(frozen=True, slots=True)
class RateView:
    """What the provider's headers said, for reports."""

    limit_requests: int | None
    limit_tokens: int | None
    remaining_requests: int | None
    remaining_tokens: int | None
    reset_requests: float | None
    reset_tokens: float | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateView:
        def number(name: str) -> int | None:
            raw = headers.get(name)
            try:
                value = int(float(raw)) if raw is not None else None
            except ValueError:
                return None
            return value if value is not None and value >= 0 else None

        return cls(
            number("x-ratelimit-limit-requests"),
            number("x-ratelimit-limit-tokens"),
            number("x-ratelimit-remaining-requests"),
            number("x-ratelimit-remaining-tokens"),
            parse_duration(headers.get("x-ratelimit-reset-requests")),
            parse_duration(headers.get("x-ratelimit-reset-tokens")),
        )
