"""Turning the user's `--deadline` and `--budget` text into numbers, and numbers into text.

Owns the accepted formats and the messages for bad values. `now` is always a parameter;
nothing here reads the clock.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, tzinfo

from batchyard.errors import ConfigError

__all__ = ["format_duration", "format_time", "format_usd", "parse_budget", "parse_deadline"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])", re.IGNORECASE)
_DEADLINE_HELP = (
    "use a duration such as 90m, 2h, 1h30m or 1d, or an ISO-8601 time such as "
    "2025-06-01T17:00:00+02:00"
)


def _parse_duration(text: str) -> float | None:
    compact = text.replace(" ", "")
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts).lower() != compact.lower():
        return None
    return sum(float(n) * _UNITS[u.lower()] for n, u in parts)


def parse_deadline(text: str, now: float, tz: tzinfo = UTC) -> float:
    """Unix seconds for `--deadline`: a duration from `now`, or an ISO-8601 time.

    An ISO time without an offset is read in `tz` (UTC unless the caller passes the local zone).
    """
    raw = text.strip()
    seconds = _parse_duration(raw)
    if seconds is not None:
        if seconds <= 0:
            raise ConfigError(f"--deadline {text!r} is zero; {_DEADLINE_HELP}.")
        return now + seconds
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"--deadline {text!r} is not understood; {_DEADLINE_HELP}.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    deadline = when.timestamp()
    if deadline <= now:
        raise ConfigError(
            f"--deadline {text!r} is already past (now is {format_time(now)}); "
            "give a later time or a duration such as 2h."
        )
    return deadline


def parse_budget(text: str) -> float:
    """USD for `--budget`: `5`, `5.00` or `$5`."""
    raw = text.strip().removeprefix("$").replace(",", "")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"--budget {text!r} is not a number; give USD such as 25 or 7.50."
        ) from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"--budget {text!r} must be zero or more USD, such as 25 or 7.50.")
    return value


def format_duration(seconds: float) -> str:
    """`45s`, `12m`, `3h05m`, `1d02h`: short and stable for reasons and plans."""
    if not math.isfinite(seconds):
        return "never"
    s = round(max(seconds, 0.0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def format_time(ts: float) -> str:
    """A unix time as `2025-06-01 14:05 UTC`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_usd(usd: float) -> str:
    """Dollars with enough digits to tell small runs apart."""
    usd = 0.0 if abs(usd) < 5e-5 else usd  # no "$-0.0000"
    return f"${usd:,.2f}" if abs(usd) >= 1 else f"${usd:.4f}"
