"""Model names the simulator serves: dated snapshots, fine-tuned names, aliases, unknowns."""

from __future__ import annotations

import math

import openai
import pytest
from openapi_check import validate
from sim_batch_helpers import at, chat_lines, client_for, config, read_lines, submit
from simfixtures import chat_body, error_message, quiet_config, sim_client

from batchyard.simulator.execute import price

SNAPSHOT = "gpt-4o-mini-2024-07-18"
FINE_TUNED = "ft:gpt-4o-mini-2024-07-18:acme:support:9x8y7z"
FINE_TUNED_SHORT = "ft:gpt-4o-mini:org:x:abc"


@pytest.mark.parametrize("model", [SNAPSHOT, FINE_TUNED, FINE_TUNED_SHORT, "gpt-4o-mini"])
async def test_snapshot_and_fine_tuned_names_are_served_and_echoed(model: str) -> None:
    client, state = sim_client()
    raw = await client.chat.completions.with_raw_response.create(**chat_body(model=model))
    validate("CreateChatCompletionResponse", raw.http_response.json(), strict_keys=True)
    completion = raw.parse()
    assert completion.model == model
    assert raw.headers["openai-model"] == model
    [entry] = state.ledger
    assert entry.model == model
    assert completion.usage is not None
    # A snapshot pays gpt-4o-mini's prices; a fine-tuned model pays the table's
    # ft:gpt-4o-mini row (fine-tuned inference has its own prices).
    rates = (0.30, 1.20) if model.startswith("ft:") else (0.15, 0.60)
    expected = (
        completion.usage.prompt_tokens * rates[0] + completion.usage.completion_tokens * rates[1]
    ) / 1_000_000
    assert math.isclose(entry.cost, expected)


async def test_a_snapshot_shares_its_familys_rate_limit() -> None:
    client, _ = sim_client(quiet_config(models={"gpt-4o-mini": {"rpm": 2}}))
    await client.chat.completions.create(**chat_body(model="gpt-4o-mini"))
    await client.chat.completions.create(**chat_body(model=FINE_TUNED))
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(**chat_body(model=SNAPSHOT))
    assert error_message(info.value).startswith(
        "Rate limit reached for gpt-4o-mini in organization org-simulated on requests per min"
    )


async def test_a_snapshot_keeps_its_familys_rules() -> None:
    client, _ = sim_client()
    response = await client.responses.create(model="gpt-5-2025-08-07", input="hi")
    assert response.model == "gpt-5-2025-08-07"
    assert response.usage is not None and response.usage.output_tokens_details.reasoning_tokens
    with pytest.raises(openai.BadRequestError) as info:  # reasoning: max_tokens is refused
        await client.chat.completions.create(**chat_body(model="gpt-5-2025-08-07", max_tokens=5))
    assert info.value.code == "unsupported_parameter"
    embedded = await client.embeddings.create(
        model="ft:text-embedding-3-small:acme::x1", input="text"
    )
    assert len(embedded.data[0].embedding) == 1536


@pytest.mark.parametrize(
    "model",
    [
        "gpt-9-2024-07-18",  # no such family
        "gpt-4o-mini-2024-07",  # not a date suffix
        "ft:gpt-9:acme:support:id",  # no such base
        "ft:gpt-4o-mini",  # too few parts
        "ft::acme:support:id",  # empty base
        "ft:gpt-4o-mini::support:id",  # empty organisation
    ],
)
async def test_unknown_names_get_the_real_404(model: str) -> None:
    client, state = sim_client()
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(**chat_body(model=model))
    validate("ErrorResponse", info.value.response.json())
    assert info.value.code == "model_not_found"
    assert error_message(info.value) == (
        f"The model `{model}` does not exist or you do not have access to it."
    )
    with pytest.raises(openai.NotFoundError) as retrieved:
        await client.models.retrieve(model)
    assert retrieved.value.code == "model_not_found"
    assert retrieved.value.param == "model"
    assert state.ledger == []


async def test_models_retrieve_and_list_know_snapshots_and_fine_tunes() -> None:
    config = quiet_config(
        names={"listed": [SNAPSHOT, FINE_TUNED, "ft:gpt-9:acme::x"], "aliases": {"mini": SNAPSHOT}}
    )
    client, state = sim_client(config)
    snapshot = await client.models.retrieve(SNAPSHOT)
    assert (snapshot.id, snapshot.owned_by) == (SNAPSHOT, "system")
    tuned = await client.models.retrieve(FINE_TUNED)
    assert (tuned.id, tuned.owned_by) == (FINE_TUNED, "acme")
    validate("Model", tuned.model_dump(exclude_none=True), strict_keys=True)
    listed = [m.id for m in (await client.models.list()).data]
    # The table (less its ft: pricing rows) plus the listed names that resolve; the
    # unknown ft: base is left out.
    table = [name for name in state.config.models if not name.startswith("ft:")]
    assert listed == sorted([*table, SNAPSHOT, FINE_TUNED])
    aliased = await client.chat.completions.create(**chat_body(model="mini"))
    assert aliased.model == "mini"
    assert price(state, "mini", 1_000_000, 0, "standard") == pytest.approx(0.15)


async def test_batches_run_snapshot_and_fine_tuned_lines() -> None:
    client, state = client_for(config())
    batch = await submit(client, chat_lines(3, model=FINE_TUNED))
    done = await at(client, state, batch, 30 + 1_000 + 60)
    assert done.status == "completed"
    assert done.model == FINE_TUNED
    lines = await read_lines(client, done.output_file_id)
    assert {line["response"]["body"]["model"] for line in lines} == {FINE_TUNED}
    assert {entry.model for entry in state.ledger} == {FINE_TUNED}
    assert all(entry.path == "batch" for entry in state.ledger)


async def test_snapshot_batches_draw_on_their_familys_enqueued_pool() -> None:
    cfg = config()
    cfg.models["gpt-4o-mini"] = cfg.models["gpt-4o-mini"].model_copy(
        update={"enqueued_token_limit": 2_000}
    )
    client, state = client_for(cfg)
    text = "word " * 100
    first = await submit(client, chat_lines(12, text=text))
    second = await submit(client, chat_lines(12, prefix="b-", text=text, model=SNAPSHOT))
    assert (await at(client, state, first, 30)).status == "in_progress"
    refused = await client.batches.retrieve(second.id)
    assert refused.status == "failed"
    assert refused.errors is not None
    [error] = refused.errors.data or []
    assert error.code == "token_limit_exceeded"


async def test_batch_lines_with_an_unknown_name_fail_validation() -> None:
    client, state = client_for(config())
    batch = await submit(client, chat_lines(2, model="ft:gpt-9:acme::x"))
    failed = await at(client, state, batch, 30)
    assert failed.status == "failed"
    assert failed.errors is not None
    codes = {(e.code, e.line, e.param) for e in failed.errors.data or []}
    assert codes == {("model_not_found", 1, "body.model"), ("model_not_found", 2, "body.model")}
