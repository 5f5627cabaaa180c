"""Batch timing: slow cancels with a spread, real-time speed, and per-batch admin overrides."""

from __future__ import annotations

from typing import Any

import pytest
from sim_batch_helpers import at, chat_lines, client_for, config, read_lines, submit
from simfixtures import admin_client

from batchyard import tokens as independent

CREATE_TO_RUN = 30  # validation_seconds in the helpers' config


async def _cancel_at(seconds_running: float, **batch: Any) -> tuple[Any, Any, Any, Any]:
    """A 100-line batch (turnaround 1,000 s) cancelled `seconds_running` after it started."""
    client, state = client_for(config(**batch))
    batch_obj = await submit(client, chat_lines(100))
    await at(client, state, batch_obj, CREATE_TO_RUN + seconds_running)
    cancelling = await client.batches.cancel(batch_obj.id)
    return client, state, batch_obj, cancelling


@pytest.mark.parametrize("cancel_seconds", [120, 600])
async def test_a_slow_cancel_keeps_the_lines_finished_before_it(cancel_seconds: int) -> None:
    client, state, batch, cancelling = await _cancel_at(300, cancelling_seconds=cancel_seconds)
    assert cancelling.status == "cancelling"
    assert cancelling.request_counts is not None
    assert cancelling.request_counts.completed == 30
    # Nothing more finishes while the cancel takes its time, and nothing is billed yet.
    almost = await at(client, state, batch, CREATE_TO_RUN + 300 + cancel_seconds - 1)
    assert almost.status == "cancelling"
    assert almost.request_counts is not None and almost.request_counts.completed == 30
    assert almost.output_file_id is None and state.ledger == []

    cancelled = await at(client, state, batch, CREATE_TO_RUN + 300 + cancel_seconds)
    assert cancelled.status == "cancelled"
    assert cancelled.cancelling_at is not None
    assert cancelled.cancelled_at == cancelled.cancelling_at + cancel_seconds
    output = await read_lines(client, cancelled.output_file_id)
    errors = await read_lines(client, cancelled.error_file_id)
    assert len(output) == 30 and len(errors) == 70
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert {o["custom_id"] for o in output} | {e["custom_id"] for e in errors} == {
        f"req-{i}" for i in range(100)
    }
    assert sorted(entry.custom_id or "" for entry in state.ledger) == sorted(
        o["custom_id"] for o in output
    )
    assert cancelled.request_counts is not None
    assert cancelled.request_counts.model_dump() == {"total": 100, "completed": 30, "failed": 70}


async def _cancel_durations(seed: int, sigma: float) -> list[float]:
    cfg = config(cancelling_seconds=120, cancelling_sigma=sigma)
    cfg.seed = seed
    client, state = client_for(cfg)
    durations: list[float] = []
    for i in range(5):
        batch = await submit(client, chat_lines(2, prefix=f"b{i}-"))
        await client.batches.cancel(batch.id)
    state.clock.advance(3 * 86_400)
    for rec in state.batches.values():
        done = await client.batches.retrieve(rec.id)
        assert done.status == "cancelled"
        assert done.cancelled_at is not None and done.cancelling_at is not None
        durations.append(done.cancelled_at - done.cancelling_at)
    return durations


async def test_cancel_times_spread_and_repeat_under_the_seed() -> None:
    spread = await _cancel_durations(seed=7, sigma=0.8)
    assert len(set(spread)) == 5  # all different
    assert await _cancel_durations(seed=7, sigma=0.8) == spread
    assert await _cancel_durations(seed=8, sigma=0.8) != spread
    assert set(await _cancel_durations(seed=7, sigma=0.0)) == {120}


async def test_one_batch_can_ask_for_its_own_cancel_time() -> None:
    client, state = client_for(config(cancelling_seconds=30))
    batch = await submit(client, chat_lines(4), metadata={"sim_cancelling_seconds": "600"})
    await at(client, state, batch, CREATE_TO_RUN + 10)
    cancelling = await client.batches.cancel(batch.id)
    assert cancelling.cancelling_at is not None
    still = await at(client, state, batch, CREATE_TO_RUN + 10 + 599)
    assert still.status == "cancelling"
    assert (await at(client, state, batch, CREATE_TO_RUN + 10 + 600)).status == "cancelled"


async def test_realtime_speed_finishes_lines_at_the_models_request_rate() -> None:
    cfg = config(turnaround_seconds=86_000)
    cfg.models["gpt-4o-mini"] = cfg.models["gpt-4o-mini"].model_copy(update={"rpm": 60})
    client, state = client_for(cfg)
    batch = await submit(client, chat_lines(40), metadata={"sim_speed": "realtime"})
    admin = admin_client(state)
    running = await at(client, state, batch, CREATE_TO_RUN)
    view = (await admin.get(f"/_sim/batches/{batch.id}")).json()
    assert view["turnaround_seconds"] == pytest.approx(40.0)  # 40 lines at one a second
    finishes = [line["finishes_at"] for line in view["schedule"]]
    assert running.in_progress_at is not None
    assert finishes == pytest.approx([running.in_progress_at + k for k in range(1, 41)])
    assert {line["custom_id"] for line in view["schedule"]} == {f"req-{i}" for i in range(40)}

    part_way = await at(client, state, batch, CREATE_TO_RUN + 10.5)
    assert part_way.request_counts is not None and part_way.request_counts.completed == 10
    await client.batches.cancel(batch.id)
    cancelled = await at(client, state, batch, CREATE_TO_RUN + 10.5 + 30)
    output = await read_lines(client, cancelled.output_file_id)
    # The lines the schedule said were done by the cancel are exactly the ones kept.
    expected = {line["custom_id"] for line in view["schedule"][:10]}
    assert {line["custom_id"] for line in output} == expected


async def test_realtime_speed_follows_the_token_limit_when_that_binds() -> None:
    cfg = config(realtime_speed=True)
    cfg.models["gpt-4o-mini"] = cfg.models["gpt-4o-mini"].model_copy(
        update={"rpm": 10_000, "tpm": 600}
    )
    client, state = client_for(cfg)
    lines = chat_lines(6, max_completion_tokens=50)
    charge = sum(independent.prompt_tokens(line["url"], line["body"]) + 50 for line in lines)
    batch = await submit(client, lines)
    await at(client, state, batch, CREATE_TO_RUN)
    view = (await admin_client(state).get(f"/_sim/batches/{batch.id}")).json()
    assert view["turnaround_seconds"] == pytest.approx(charge * 60 / 600)


async def test_an_admin_can_retime_a_batch_it_did_not_create() -> None:
    client, state = client_for(config(turnaround_seconds=1_000, cancelling_seconds=30))
    cfg_rpm = state.config.models["gpt-4o-mini"].rpm
    admin = admin_client(state)
    first = await submit(client, chat_lines(20))
    set_speed = await admin.post(f"/_sim/batches/{first.id}", json={"realtime_speed": True})
    assert set_speed.status_code == 200 and set_speed.json()["overrides"] == {
        "realtime_speed": True
    }
    running = await at(client, state, first, CREATE_TO_RUN)
    assert running.status == "in_progress"
    view = (await admin.get(f"/_sim/batches/{first.id}")).json()
    assert view["turnaround_seconds"] == pytest.approx(20 * 60 / cfg_rpm)

    second = await submit(client, chat_lines(10, prefix="s-"))
    await at(client, state, second, CREATE_TO_RUN + 50)  # 0.5 of its 1,000 s
    retimed = await admin.post(f"/_sim/batches/{second.id}", json={"turnaround_seconds": 100})
    assert retimed.json()["turnaround_seconds"] == 100
    done = await at(client, state, second, CREATE_TO_RUN + 100 + 60)
    assert done.status == "completed"
    assert done.in_progress_at is not None
    assert done.finalizing_at == done.in_progress_at + 100

    third = await submit(client, chat_lines(10, prefix="t-"))
    await at(client, state, third, CREATE_TO_RUN + 500)
    await client.batches.cancel(third.id)
    slowed = await admin.post(f"/_sim/batches/{third.id}", json={"cancelling_seconds": 900})
    assert slowed.json()["cancelling_seconds"] == 900
    assert (await at(client, state, third, CREATE_TO_RUN + 500 + 899)).status == "cancelling"
    assert (await at(client, state, third, CREATE_TO_RUN + 500 + 900)).status == "cancelled"


@pytest.mark.parametrize(
    "patch",
    [
        {"turnaround": 5},
        {"turnaround_seconds": -1},
        {"cancelling_seconds": "soon"},
        {"realtime_speed": 1},
    ],
)
async def test_bad_batch_settings_are_refused(patch: dict[str, Any]) -> None:
    client, state = client_for(config())
    batch = await submit(client, chat_lines(1))
    admin = admin_client(state)
    answer = await admin.post(f"/_sim/batches/{batch.id}", json=patch)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"]
    assert (await admin.get(f"/_sim/batches/{batch.id}")).json()["overrides"] == {}
    assert (await admin.get("/_sim/batches/batch_nope")).status_code == 404
