"""Injected time for the orchestrator: the `Clock` and `Sleep` types and their defaults.

Owns the two type aliases every orchestrator module takes (so tests can drive time instead
of sleeping), the real defaults, a `scaled` pair for running against a simulator whose clock
runs faster than real time, and `ManualClock`, a fake clock whose `sleep` advances it. It
must not read the clock anywhere else or import the store or the SDK.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["Clock", "ManualClock", "Sleep", "real_clock", "real_sleep", "scaled", "sleep_unless"]

Clock = Callable[[], float]
"""Unix seconds now (float)."""

Sleep = Callable[[float], Awaitable[None]]
"""Wait this many seconds (as measured by the matching clock)."""

real_clock: Clock = time.time


async def real_sleep(seconds: float) -> None:
    await asyncio.sleep(max(0.0, seconds))


async def sleep_unless(sleep: Sleep, seconds: float, event: asyncio.Event) -> None:
    """`sleep(seconds)`, cut short when `event` is set (a graceful stop)."""
    pause = asyncio.ensure_future(sleep(seconds))
    woken = asyncio.ensure_future(event.wait())
    await asyncio.wait({pause, woken}, return_when=asyncio.FIRST_COMPLETED)
    for task in (pause, woken):
        task.cancel()


def scaled(time_scale: float, *, start: float | None = None) -> tuple[Clock, Sleep]:
    """A clock that runs `time_scale` times faster than real time, and its sleep.

    Pairs with a simulator started with the same `clock.time_scale`: one real second is
    `time_scale` seconds for both, so limits per simulated minute hold per scaled minute.
    """
    if time_scale <= 0:
        raise ValueError("time_scale must be positive.")
    origin_real = time.monotonic()
    origin = time.time() if start is None else start

    def clock() -> float:
        return origin + (time.monotonic() - origin_real) * time_scale

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / time_scale)

    return clock, sleep


class ManualClock:
    """A fake clock for tests: `now()` reads it, `await sleep(s)` advances it by `s`.

    Sleeping yields to the event loop once, so other tasks run, but no real time passes.
    `sleeps` records every requested wait, for assertions.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now_value = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.now_value

    def __call__(self) -> float:
        return self.now_value

    def advance(self, seconds: float) -> None:
        self.now_value += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)
