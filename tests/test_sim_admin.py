"""The simulator's /_sim/ admin surface: ledger, stats, clock, reset."""

from __future__ import annotations

import math

import openai
import pytest
from simfixtures import admin_client, chat_body, quiet_config, sim_client

from batchyard.simulator.execute import price


async def test_ledger_totals_per_path_and_billed_custom_ids() -> None:
    client, state = sim_client()
    admin = admin_client(state)
    for custom_id in ("a", "b", "a"):
        await client.chat.completions.create(
            **chat_body(f"question {custom_id}"),
            extra_headers={"X-Client-Request-Id": custom_id},
        )
    await client.chat.completions.create(
        **chat_body(model="gpt-5", service_tier="flex"),
        extra_headers={"X-Batchyard-Custom-Id": "flex-1"},
    )
    await client.embeddings.create(model="text-embedding-3-small", input="no id")
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(**chat_body(max_completion_tokens=0))

    ledger = (await admin.get("/_sim/ledger")).json()
    assert len(ledger["entries"]) == 5
    standard = [e for e in ledger["entries"] if e["path"] == "standard"]
    assert ledger["totals"]["standard"]["requests"] == 4
    assert ledger["totals"]["standard"]["input_tokens"] == sum(e["input_tokens"] for e in standard)
    assert ledger["totals"]["flex"]["requests"] == 1
    assert ledger["billed_custom_ids"] == {"a": 2, "b": 1, "flex-1": 1}
    assert ledger["duplicates"] == ["a"]
    for entry in ledger["entries"]:
        expected = price(
            state, entry["model"], entry["input_tokens"], entry["output_tokens"], entry["path"]
        )
        assert math.isclose(entry["cost"], expected)
        assert entry["request_id"].startswith("req_")
    assert math.isclose(ledger["total_cost"], sum(e["cost"] for e in ledger["entries"]))


def test_price_discounts_flex_and_batch() -> None:
    _, state = sim_client()
    standard = price(state, "gpt-4o-mini", 1_000_000, 1_000_000, "standard")
    assert math.isclose(standard, 0.15 + 0.60)
    assert math.isclose(price(state, "gpt-4o-mini", 1_000_000, 1_000_000, "batch"), 0.375)
    assert math.isclose(price(state, "gpt-5", 2_000_000, 0, "flex"), 1.25)
    with pytest.raises(KeyError):
        price(state, "gpt-nope", 1, 1, "standard")


async def test_stats_count_requests_statuses_and_429s() -> None:
    client, state = sim_client(quiet_config(models={"gpt-4o-mini": {"rpm": 2}}))
    admin = admin_client(state)
    await client.chat.completions.create(**chat_body())
    await client.chat.completions.create(**chat_body())
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(**chat_body())
    stats = (await admin.get("/_sim/stats")).json()
    assert stats["requests"]["/v1/chat/completions"] == {"200": 2, "429": 1}
    assert stats["rate_limited"] == {"requests": 1}
    assert stats["billed"] == {"standard": 2}
    assert stats["batches"] == {}


async def test_clock_reads_and_advances() -> None:
    config = quiet_config(clock={"start": 1_700_000_000, "time_scale": 1.0})
    _, state = sim_client(config)
    admin = admin_client(state)
    before = (await admin.get("/_sim/clock")).json()
    assert before["now"] == pytest.approx(1_700_000_000, abs=5)
    after = (await admin.post("/_sim/clock/advance", json={"seconds": 3600})).json()
    assert after["now"] - before["now"] == pytest.approx(3600, abs=1)
    assert after["advanced"] == 3600
    assert state.now() == pytest.approx(after["now"], abs=1)
    backwards = await admin.post("/_sim/clock/advance", json={"seconds": -1})
    assert backwards.status_code == 400


async def test_reset_clears_ledger_stats_and_buckets() -> None:
    client, state = sim_client(quiet_config(models={"gpt-4o-mini": {"rpm": 1}}))
    admin = admin_client(state)
    await client.chat.completions.create(**chat_body())
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(**chat_body())
    assert (await admin.post("/_sim/reset")).status_code == 200
    assert (await admin.get("/_sim/ledger")).json()["entries"] == []
    await client.chat.completions.create(**chat_body())
    assert len(state.ledger) == 1
