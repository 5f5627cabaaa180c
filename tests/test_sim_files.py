"""The simulator's Files API through the real openai SDK: upload, list, retrieve, delete,
download, expiry, and the errors OpenAI gives for wrong uploads."""

from __future__ import annotations

import json

import openai
import pytest
from openapi_check import validate
from sim_batch_helpers import START, client_for, config, jsonl

DAY = 86_400
BODY = jsonl([{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}])


async def test_upload_batch_file_returns_processed_file_expiring_in_30_days() -> None:
    client, _ = client_for(config())
    raw = await client.files.with_raw_response.create(file=("mine.jsonl", BODY), purpose="batch")
    data = json.loads(raw.text)
    validate("OpenAIFile", data, strict_keys=True)
    uploaded = raw.parse()
    assert uploaded.id.startswith("file-") and len(uploaded.id) == 27
    assert (uploaded.filename, uploaded.purpose, uploaded.status) == (
        "mine.jsonl",
        "batch",
        "processed",
    )
    assert uploaded.bytes == len(BODY)
    assert uploaded.created_at == int(START)
    assert uploaded.expires_at == uploaded.created_at + 30 * DAY
    assert "status_details" not in data  # the spec types it string-only: omitted, not null


async def test_other_purposes_never_expire_unless_asked() -> None:
    client, _ = client_for(config())
    kept = await client.files.create(file=("notes.txt", b"x"), purpose="user_data")
    assert kept.expires_at is None
    short = await client.files.create(
        file=("in.jsonl", BODY),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3_600},
    )
    assert short.expires_at == short.created_at + 3_600


async def test_expired_file_is_gone() -> None:
    client, state = client_for(config())
    short = await client.files.create(
        file=("in.jsonl", BODY),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3_600},
    )
    state.clock.advance(3_599)
    assert (await client.files.retrieve(short.id)).id == short.id
    state.clock.advance(1)
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(short.id)
    assert [f.id async for f in client.files.list()] == []


@pytest.mark.parametrize("seconds", [3_599, 2_592_001])
async def test_expiry_outside_one_hour_to_thirty_days_is_rejected(seconds: int) -> None:
    client, _ = client_for(config())
    with pytest.raises(openai.BadRequestError) as caught:
        await client.files.create(
            file=("in.jsonl", BODY),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": seconds},
        )
    assert caught.value.param == "expires_after.seconds"
    assert str(seconds) in caught.value.message


async def test_batch_upload_must_be_jsonl() -> None:
    client, _ = client_for(config())
    with pytest.raises(openai.BadRequestError) as caught:
        await client.files.create(file=("requests.json", BODY), purpose="batch")
    error = caught.value.response.json()
    validate("ErrorResponse", error)
    assert error == {
        "error": {
            "message": "Invalid file format for Batch API. Must be .jsonl",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


async def test_batch_upload_over_the_size_cap_is_rejected() -> None:
    client, state = client_for(config(max_file_bytes=len(BODY)))
    await client.files.create(file=("ok.jsonl", BODY), purpose="batch")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.files.create(file=("big.jsonl", BODY + b"\n"), purpose="batch")
    assert caught.value.param == "file"
    assert "big.jsonl" in caught.value.message
    assert len(state.files) == 1
    # The cap is for batch input only.
    other = await client.files.create(file=("big.jsonl", BODY * 3), purpose="user_data")
    assert other.bytes == 3 * len(BODY)


def test_default_batch_cap_is_200_mb() -> None:
    assert config().batch.max_file_bytes == 200 * 1024 * 1024


async def test_unknown_purpose_is_rejected_naming_the_param() -> None:
    client, _ = client_for(config())
    with pytest.raises(openai.BadRequestError) as caught:
        await client.files.create(file=("in.jsonl", BODY), purpose="batches")  # type: ignore[arg-type]
    assert (caught.value.param, caught.value.code) == ("purpose", "invalid_value")
    assert "'batches'" in caught.value.message and "'batch'" in caught.value.message


async def test_list_is_newest_first_and_pages_with_after() -> None:
    client, state = client_for(config())
    ids = []
    for i in range(5):
        ids.append((await client.files.create(file=(f"f{i}.jsonl", BODY), purpose="batch")).id)
        if i % 2:
            state.clock.advance(10)  # some share a created_at: ties keep upload order
    other = await client.files.create(file=("x.txt", b"x"), purpose="user_data")

    raw = await client.files.with_raw_response.list(purpose="batch", limit=2)
    data = json.loads(raw.text)
    validate("ListFilesResponse", data, strict_keys=True)
    assert [f["id"] for f in data["data"]] == ids[::-1][:2]
    assert (data["first_id"], data["last_id"], data["has_more"]) == (ids[4], ids[3], True)

    second = await client.files.list(purpose="batch", limit=2, after=ids[3])
    assert [f.id for f in second.data] == [ids[2], ids[1]]
    assert second.has_more is True
    last = await client.files.list(purpose="batch", limit=2, after=ids[1])
    assert [f.id for f in last.data] == [ids[0]] and last.has_more is False

    paged = [f.id async for f in client.files.list(purpose="batch", limit=2)]
    assert paged == ids[::-1]
    oldest_first = [f.id async for f in client.files.list(order="asc")]
    assert oldest_first == [*ids, other.id]
    everything = await client.files.list()
    assert [f.id for f in everything.data] == [other.id, *ids[::-1]]


@pytest.mark.parametrize("limit", [0, 10_001])
async def test_list_limit_must_be_between_1_and_10000(limit: int) -> None:
    client, _ = client_for(config())
    with pytest.raises(openai.BadRequestError) as caught:
        await client.files.list(limit=limit)
    assert caught.value.param == "limit"


async def test_retrieve_content_and_delete() -> None:
    client, _ = client_for(config())
    uploaded = await client.files.create(file=("in.jsonl", BODY), purpose="batch")
    assert (await client.files.retrieve(uploaded.id)) == uploaded
    content = await client.files.content(uploaded.id)
    assert content.content == BODY

    raw = await client.files.with_raw_response.delete(uploaded.id)
    validate("DeleteFileResponse", json.loads(raw.text), strict_keys=True)
    deleted = raw.parse()
    assert (deleted.id, deleted.object, deleted.deleted) == (uploaded.id, "file", True)

    for call in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError) as caught:
            await call(uploaded.id)
        error = caught.value.response.json()
        validate("ErrorResponse", error)
        assert error["error"] == {
            "message": f"No such File object: {uploaded.id}",
            "type": "invalid_request_error",
            "param": "id",
            "code": None,
        }
    assert (await client.files.list()).data == []
