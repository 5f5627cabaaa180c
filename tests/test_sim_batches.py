"""The simulator's Batches API through the real openai SDK: create-time checks, the
lifecycle with every `*_at` stamp and live counts, cancel, expiry, 404/409, listing and
the lost-create fault."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openapi_check import validate
from sim_batch_helpers import CHAT, at, chat_lines, client_for, config, read_lines, submit, upload

DAY = 86_400


async def test_create_returns_validating_batch() -> None:
    client, state = client_for(config())
    uploaded = await upload(client, chat_lines(3))
    raw = await client.batches.with_raw_response.create(
        input_file_id=uploaded.id,
        endpoint=CHAT,
        completion_window="24h",
        metadata={"job": "j1"},
    )
    data = json.loads(raw.text)
    validate("Batch", data, strict_keys=True)
    batch = raw.parse()
    assert batch.id.startswith("batch_") and len(batch.id) == 38
    assert batch.status == "validating"
    assert (batch.input_file_id, batch.endpoint, batch.completion_window) == (
        uploaded.id,
        CHAT,
        "24h",
    )
    assert batch.expires_at == batch.created_at + DAY
    assert batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 0, "completed": 0, "failed": 0}
    assert batch.metadata == {"job": "j1"}
    unset = ("in_progress_at", "completed_at", "failed_at", "output_file_id", "errors", "usage")
    assert all(getattr(batch, name) is None for name in unset)
    assert state.stats["batches_created"] == 1


BAD_CREATES: list[tuple[dict[str, Any], str | None, str | None, str | None]] = [
    (
        {"endpoint": "/v1/invalid/endpoint"},
        "Invalid value: '/v1/invalid/endpoint'. Supported values are: '/v1/chat/completions', "
        "'/v1/completions', '/v1/embeddings', and '/v1/responses'.",
        "endpoint",
        "invalid_value",
    ),
    ({"completion_window": "48h"}, None, "completion_window", "invalid_value"),
    ({"completion_window": ""}, None, "completion_window", "invalid_value"),
    (
        {"metadata": {"tags": ["a", "b"]}},
        "Invalid type for 'metadata.tags': expected a string, but got an array instead.",
        "metadata.tags",
        "invalid_type",
    ),
    ({"metadata": {"n": 3}}, None, "metadata.n", "invalid_type"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, None, "metadata", None),
    ({"metadata": {"k" * 65: "v"}}, None, "metadata", None),
    ({"metadata": {"k": "v" * 513}}, None, "metadata.k", None),
    (
        {"input_file_id": None},
        "Missing required parameter: 'input_file_id'.",
        "input_file_id",
        None,
    ),
]


@pytest.mark.parametrize(("change", "message", "param", "code"), BAD_CREATES)
async def test_create_rejects_what_the_api_rejects_synchronously(
    change: dict[str, Any], message: str | None, param: str | None, code: str | None
) -> None:
    client, state = client_for(config())
    uploaded = await upload(client, chat_lines(1))
    args: dict[str, Any] = {
        "input_file_id": uploaded.id,
        "endpoint": CHAT,
        "completion_window": "24h",
        **change,
    }
    with pytest.raises(openai.BadRequestError) as caught:
        await client.batches.create(**args)
    validate("ErrorResponse", caught.value.response.json())
    assert caught.value.param == param
    if message is not None:
        assert caught.value.response.json()["error"]["message"] == message
    if code is not None:
        assert caught.value.code == code
    assert state.batches == {}


async def test_metadata_at_the_limits_is_accepted() -> None:
    client, _ = client_for(config())
    metadata = {f"{i:02d}".ljust(64, "k"): "v" * 512 for i in range(16)}
    batch = await submit(client, chat_lines(1), metadata=metadata)
    assert batch.metadata == metadata


async def test_lifecycle_stamps_and_live_counts() -> None:
    client, state = client_for(config(turnaround_seconds=1_000))
    batch = await submit(client, chat_lines(10))
    created = batch.created_at

    still = await at(client, state, batch, 29)
    assert still.status == "validating" and still.in_progress_at is None

    running = await at(client, state, batch, 30)
    assert running.status == "in_progress"
    assert running.in_progress_at == created + 30
    assert running.model == "gpt-4o-mini"
    assert running.request_counts is not None
    assert running.request_counts.model_dump() == {"total": 10, "completed": 0, "failed": 0}

    halfway = await at(client, state, batch, 30 + 500)
    assert halfway.request_counts is not None
    assert (halfway.request_counts.completed, halfway.request_counts.total) == (5, 10)
    assert halfway.output_file_id is None

    finalizing = await at(client, state, batch, 30 + 1_000)
    assert finalizing.status == "finalizing"
    assert finalizing.finalizing_at == created + 1_030
    # Every request is done, but results are not ready until `completed`.
    assert finalizing.request_counts is not None
    assert finalizing.request_counts.completed == finalizing.request_counts.total == 10
    assert finalizing.output_file_id is None and finalizing.completed_at is None

    assert (await at(client, state, batch, 1_089)).status == "finalizing"
    raw = await client.batches.with_raw_response.retrieve(batch.id)
    assert raw.parse().status == "finalizing"
    state.clock.advance(1)
    raw = await client.batches.with_raw_response.retrieve(batch.id)
    validate("Batch", json.loads(raw.text), strict_keys=True)
    done = raw.parse()
    assert done.status == "completed"
    assert done.completed_at == created + 1_090
    assert done.error_file_id is None and done.output_file_id is not None
    assert done.failed_at is done.expired_at is done.cancelling_at is done.cancelled_at is None
    output = await client.files.retrieve(done.output_file_id)
    assert output.purpose == "batch_output"
    assert output.filename == f"{batch.id}_output.jsonl"
    assert output.created_at == done.completed_at
    assert len(await read_lines(client, done.output_file_id)) == 10
    assert state.stats["batches_completed"] == 1


async def test_missing_input_file_fails_after_create() -> None:
    client, _ = client_for(config())
    batch = await client.batches.create(
        input_file_id="file-doesnotexist", endpoint=CHAT, completion_window="24h"
    )
    assert batch.status == "validating"
    failed = await at(client, _, batch, 30)
    assert failed.status == "failed"
    assert failed.failed_at == batch.created_at + 30
    assert failed.errors is not None and failed.errors.object == "list"
    [error] = failed.errors.data or []
    assert (error.code, error.param, error.line) == ("invalid_request", "file_id", None)
    assert error.message is not None and "file-doesnotexist" in error.message
    assert failed.output_file_id is None and failed.error_file_id is None
    assert failed.in_progress_at is None


def _limit_config(limit: int) -> Any:
    cfg = config(turnaround_seconds=1_000)
    cfg.models["gpt-4o-mini"] = cfg.models["gpt-4o-mini"].model_copy(
        update={"enqueued_token_limit": limit}
    )
    return cfg


async def test_enqueued_token_limit_fails_the_batch_that_overflows_it() -> None:
    client, state = client_for(_limit_config(2_000))
    long_text = "word " * 100
    lines = chat_lines(12, text=long_text)  # about 1,300 prompt tokens
    first = await submit(client, lines)
    second = await submit(client, chat_lines(12, prefix="b-", text=long_text))
    first_now = await at(client, state, first, 30)
    second_now = await client.batches.retrieve(second.id)
    assert first_now.status == "in_progress"
    assert second_now.status == "failed"
    assert second_now.errors is not None
    [error] = second_now.errors.data or []
    assert (error.code, error.line, error.param) == ("token_limit_exceeded", None, None)
    assert error.message == (
        "Enqueued token limit reached for gpt-4o-mini in organization org-simulated. "
        "Limit: 2,000 enqueued tokens. Please try again once some in_progress batches have "
        "been completed."
    )
    # Once the first batch is done its tokens no longer count.
    await at(client, state, first, 30 + 1_000 + 60)
    third = await submit(client, chat_lines(12, prefix="c-", text=long_text))
    assert (await at(client, state, third, 30)).status == "in_progress"


async def test_a_batch_alone_over_the_limit_fails() -> None:
    client, state = client_for(_limit_config(10))
    batch = await submit(client, chat_lines(3))
    failed = await at(client, state, batch, 30)
    assert failed.status == "failed"
    assert failed.errors is not None and failed.errors.data
    assert failed.errors.data[0].code == "token_limit_exceeded"


async def test_expiry_keeps_partial_output_and_marks_the_rest_expired() -> None:
    client, state = client_for(config(turnaround_seconds=4 * DAY))
    batch = await submit(client, chat_lines(8))
    still = await at(client, state, batch, DAY - 1)
    assert still.status == "in_progress"
    assert still.request_counts is not None and still.request_counts.completed == 1
    expired = await at(client, state, batch, DAY)
    assert expired.status == "expired"
    assert expired.expired_at == expired.expires_at == batch.created_at + DAY
    assert expired.finalizing_at is None and expired.completed_at is None
    output = await read_lines(client, expired.output_file_id)
    errors = await read_lines(client, expired.error_file_id)
    assert len(output) == 1  # 8 lines over 4 days: 1 finished by hour 24 (after validation)
    assert len(errors) == 7
    for line in errors:
        validate("BatchRequestOutput", line, strict_keys=True)
        assert line["response"] is None
        assert line["error"] == {
            "code": "batch_expired",
            "message": "This request could not be executed before the completion window expired.",
        }
    ids = sorted(line["custom_id"] for line in output + errors)
    assert ids == sorted(f"req-{i}" for i in range(8))
    assert expired.request_counts is not None
    assert expired.request_counts.model_dump() == {"total": 8, "completed": 1, "failed": 7}
    assert [e.custom_id for e in state.ledger] == [output[0]["custom_id"]]


async def test_cancel_keeps_what_finished_and_cancels_the_rest() -> None:
    client, state = client_for(config(turnaround_seconds=1_000, cancelling_seconds=30))
    batch = await submit(client, chat_lines(10))
    await at(client, state, batch, 30 + 300)  # 3 of 10 done
    cancelling = await client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at == batch.created_at + 330
    assert cancelling.request_counts is not None and cancelling.request_counts.completed == 3

    frozen = await at(client, state, batch, 330 + 29)
    assert frozen.status == "cancelling"
    assert frozen.request_counts is not None and frozen.request_counts.completed == 3
    again = await client.batches.cancel(batch.id)  # cancelling a cancelling batch is allowed
    assert again.status == "cancelling"

    cancelled = await at(client, state, batch, 330 + 30)
    assert cancelled.status == "cancelled"
    assert cancelled.cancelled_at == batch.created_at + 360
    output = await read_lines(client, cancelled.output_file_id)
    errors = await read_lines(client, cancelled.error_file_id)
    assert len(output) == 3 and len(errors) == 7
    assert all(line["response"]["status_code"] == 200 for line in output)
    assert {json.dumps(line["error"]) for line in errors} == {
        json.dumps(
            {
                "code": "batch_cancelled",
                "message": "The batch was cancelled before this request executed.",
            }
        )
    }
    assert sorted(e.custom_id or "" for e in state.ledger) == sorted(
        line["custom_id"] for line in output
    )
    assert (await client.batches.cancel(batch.id)).status == "cancelled"


async def test_cancel_while_validating_runs_nothing() -> None:
    client, state = client_for(config())
    batch = await submit(client, chat_lines(4))
    cancelling = await client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    cancelled = await at(client, state, batch, 30)
    assert cancelled.status == "cancelled"
    assert cancelled.in_progress_at is None
    assert cancelled.output_file_id is None and cancelled.error_file_id is None
    assert state.ledger == []


@pytest.mark.parametrize("status", ["completed", "failed"])
async def test_cancelling_a_finished_batch_is_a_409(status: str) -> None:
    client, state = client_for(config())
    if status == "completed":
        batch = await submit(client, chat_lines(2))
    else:
        batch = await client.batches.create(
            input_file_id="file-missing", endpoint=CHAT, completion_window="24h"
        )
    assert (await at(client, state, batch, 2_000)).status == status
    with pytest.raises(openai.ConflictError) as caught:
        await client.batches.cancel(batch.id)
    assert caught.value.response.json() == {
        "error": {
            "message": f"Cannot cancel a batch with status '{status}'.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


async def test_unknown_batch_is_a_404() -> None:
    client, _ = client_for(config())
    for call in (client.batches.retrieve, client.batches.cancel):
        with pytest.raises(openai.NotFoundError) as caught:
            await call("batch_nope")
        validate("ErrorResponse", caught.value.response.json())
        assert "batch_nope" in caught.value.message


async def test_list_is_newest_first_with_after_limit_and_has_more() -> None:
    client, state = client_for(config())
    uploaded = await upload(client, chat_lines(1))
    ids = []
    for _ in range(25):
        created = await client.batches.create(
            input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h"
        )
        ids.append(created.id)
    newest = ids[::-1]

    raw = await client.batches.with_raw_response.list()
    data = json.loads(raw.text)
    validate("ListBatchesResponse", data, strict_keys=True)
    assert [b["id"] for b in data["data"]] == newest[:20]  # default limit 20
    assert (data["first_id"], data["last_id"], data["has_more"]) == (newest[0], newest[19], True)

    page = await client.batches.list(limit=3, after=newest[19])
    assert [b.id for b in page.data] == newest[20:23] and page.has_more is True
    last = await client.batches.list(limit=3, after=newest[22])
    assert [b.id for b in last.data] == newest[23:] and last.has_more is False
    assert [b.id async for b in client.batches.list(limit=7)] == newest
    with pytest.raises(openai.BadRequestError):
        await client.batches.list(limit=101)
    # Listing moves batches on like any read.
    state.clock.advance(30)
    assert {b.status async for b in client.batches.list(limit=100)} == {"in_progress"}


async def test_lost_create_response_still_creates_the_batch() -> None:
    client, state = client_for(config())
    uploaded = await upload(client, chat_lines(2))
    state.faults.lost_create_rate = 1.0
    with pytest.raises(openai.APIConnectionError):
        await client.batches.create(
            input_file_id=uploaded.id,
            endpoint=CHAT,
            completion_window="24h",
            metadata={"batchyard_job": "job-7", "shard": "3"},
        )
    state.faults.lost_create_rate = 0.0
    found = [b async for b in client.batches.list() if (b.metadata or {}).get("shard") == "3"]
    assert len(found) == 1
    assert found[0].metadata == {"batchyard_job": "job-7", "shard": "3"}
    assert found[0].status == "validating"
    assert (await at(client, state, found[0], 2_000)).status == "completed"
