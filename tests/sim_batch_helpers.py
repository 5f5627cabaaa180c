"""Helpers for the simulator's Files/Batches tests: configs, input lines, upload and submit.

Everything goes through the real openai SDK against an in-process simulator; the clock is
frozen (time_scale 0) and moved only by `state.clock.advance()`, so tests never sleep.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import openai
from openai.types import Batch, FileObject
from simfixtures import sim_client

from batchyard.simulator import SimConfig, SimState
from batchyard.simulator.config import BatchSettings, ClockSettings, FaultSettings

START = 1_750_000_000.0
CHAT: Final = "/v1/chat/completions"


def config(**batch: Any) -> SimConfig:
    """A frozen-clock config; keyword arguments override BatchSettings."""
    settings = {
        "validation_seconds": 30.0,
        "turnaround_seconds": 1_000.0,
        "finalizing_seconds": 60.0,
        "cancelling_seconds": 30.0,
        **batch,
    }
    return SimConfig(
        batch=BatchSettings(**settings),
        clock=ClockSettings(start=START, time_scale=0.0),
        faults=FaultSettings(),
        rate_limits=False,
    )


def client_for(cfg: SimConfig) -> tuple[openai.AsyncOpenAI, SimState]:
    """An in-process AsyncOpenAI client on a fresh simulator (tests/simfixtures.py)."""
    return sim_client(cfg)


def chat_line(
    custom_id: str, text: str = "hello", model: str = "gpt-4o-mini", **body: Any
) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": model, "messages": [{"role": "user", "content": text}], **body},
    }


def chat_lines(
    n: int, prefix: str = "req-", text: str = "question number", **body: Any
) -> list[dict[str, Any]]:
    return [chat_line(f"{prefix}{i}", f"{text} {i}", **body) for i in range(n)]


def jsonl(lines: Sequence[dict[str, Any] | str]) -> bytes:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()


async def upload(
    client: openai.AsyncOpenAI, lines: Sequence[dict[str, Any] | str], name: str = "in.jsonl"
) -> FileObject:
    return await client.files.create(file=(name, jsonl(lines)), purpose="batch")


async def submit(
    client: openai.AsyncOpenAI,
    lines: Sequence[dict[str, Any] | str],
    endpoint: str = CHAT,
    metadata: dict[str, str] | None = None,
) -> Batch:
    uploaded = await upload(client, lines)
    return await client.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        metadata=metadata,
    )


async def read_lines(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    content = await client.files.content(file_id)
    return [json.loads(line) for line in content.text.splitlines()]


async def at(client: openai.AsyncOpenAI, state: SimState, batch: Batch, seconds: float) -> Batch:
    """The batch as read `seconds` after it was created (the clock only moves forward)."""
    state.clock.advance(batch.created_at + seconds - state.now())
    return await client.batches.retrieve(batch.id)
