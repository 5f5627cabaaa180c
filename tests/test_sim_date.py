"""The simulator's `date` header: every response carries one, read from the simulated clock."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import httpx2
import openai
import pytest
from sim_batch_helpers import chat_lines, upload
from simfixtures import admin_client, chat_body, quiet_config, running_server, sim_client

START = 1_800_000_000


def _date(headers: httpx2.Headers) -> float:
    assert len(headers.get_list("date")) == 1, headers.get_list("date")
    return parsedate_to_datetime(headers["date"]).timestamp()


async def test_every_response_is_dated_on_the_simulated_clock() -> None:
    client, state = sim_client(quiet_config(clock={"start": START, "time_scale": 0.0}))
    ok = await client.chat.completions.with_raw_response.create(**chat_body())
    assert _date(ok.headers) == START
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(**chat_body(max_completion_tokens=0))
    assert _date(bad.value.response.headers) == START
    with pytest.raises(openai.NotFoundError) as missing:
        await client.batches.retrieve("batch_nope")
    assert _date(missing.value.response.headers) == START

    admin = admin_client(state)
    advanced = await admin.post("/_sim/clock/advance", json={"seconds": 7_200})
    assert _date(advanced.headers) == START + 7_200
    unknown_route = await admin.get("/v1/nothing-here", headers={"authorization": "Bearer k"})
    assert unknown_route.status_code == 404
    assert _date(unknown_route.headers) == START + 7_200
    unauthorised = await admin.get("/v1/models")
    assert unauthorised.status_code == 401
    assert _date(unauthorised.headers) == START + 7_200

    uploaded = await upload(client, chat_lines(1))
    raw = await client.batches.with_raw_response.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = raw.parse()
    # The batch's own timestamps are on the same (simulated) clock as the header.
    assert batch.created_at == _date(raw.headers) == START + 7_200
    assert uploaded.created_at == START + 7_200


def test_a_real_server_sends_only_the_simulated_date() -> None:
    config = quiet_config(clock={"start": START, "time_scale": 3600.0})
    with running_server(config) as server:
        client = openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
        raw = client.models.with_raw_response.list()
        sent = _date(raw.headers)
        # One real second is an hour here: the header follows the fast clock, not the wall.
        assert START <= sent <= server.state.now() + 1
        assert sent < START + 3600 * 30
        server.state.clock.advance(86_400)
        later = _date(client.models.with_raw_response.list().headers)
        assert later >= sent + 86_400
