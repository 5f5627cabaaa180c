"""batchyard's model table and the simulator's own table say the same thing, and bill alike.

The simulator imports nothing of batchyard, so its prices are a second, independent copy;
these tests fail as soon as the two drift apart. The end-to-end test runs requests that
share a long prompt prefix through the simulator (which answers with cached tokens, as
OpenAI does) and checks that what batchyard records is what the simulator's ledger bills,
to the cent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from batchyard.catalog import Usage
from batchyard.config import load_settings, model_table
from batchyard.models import RequestStatus, Route
from batchyard.orchestrator import Orchestrator
from batchyard.simulator import create_app
from batchyard.simulator.billing import bill, spec_for
from batchyard.simulator.config import default_models, load_config
from batchyard.simulator.prompt_cache import INCREMENT, MINIMUM

TABLE = model_table()
SIM = default_models()
PATHS = {Route.STANDARD: "standard", Route.BATCH: "batch", Route.FLEX: "flex", Route.FAST: "fast"}


def test_both_tables_list_the_same_models() -> None:
    aliases = {a for name in TABLE for a in TABLE[name].aliases}
    assert set(SIM) == set(TABLE) | aliases


@pytest.mark.parametrize("name", sorted(model_table()))
def test_the_simulator_knows_the_same_facts(name: str) -> None:
    info, spec = TABLE[name], SIM[name]
    assert (spec.encoding, spec.context_window) == (info.encoding, info.context_window)
    assert (spec.input_price, spec.output_price) == (info.input, info.output)
    assert spec.cached_input_price == info.cached_input
    assert spec.cache_write_price == info.cache_write
    assert spec.input_price * spec.batch_discount == info.batch_input
    assert spec.output_price * spec.batch_discount == info.batch_output
    if info.cached_input is not None:  # else there is no cached rate to discount in batch
        assert spec.batch_cache_discount == (info.batch_cached_input is not None)
    assert spec.flex == info.flex
    fast = (info.fast_input, info.fast_cached_input, info.fast_output) if info.fast else None
    assert spec.fast_prices == fast and spec.fast_long_context == info.fast_long_context
    assert spec.long_context_threshold == info.long_context_threshold
    assert (spec.reasoning, spec.embedding) == (info.reasoning, info.embedding)
    # the simulator's default enqueued-token limit is the table's tier, not a generous 20M
    assert spec.enqueued_token_limit == info.enqueued_token_limit


USAGES = [
    Usage(1_500, 300),
    Usage(3_000, 200, cached_tokens=2_048),
    Usage(3_000, 200, cached_tokens=1_024, cache_write_tokens=1_920),
    Usage(272_000, 1_000, cached_tokens=10_240),
    Usage(300_000, 5_000, cached_tokens=150_016, cache_write_tokens=128, reasoning_tokens=900),
]


@pytest.mark.parametrize("name", sorted(model_table()))
def test_both_bill_the_same_usage_the_same(name: str) -> None:
    info, spec = TABLE[name], SIM[name]
    for usage in USAGES:
        for route, path in PATHS.items():
            ours = info.cost(route, usage)
            theirs = bill(
                spec,
                path,
                usage.input_tokens,
                usage.output_tokens,
                cached=usage.cached_tokens,
                written=usage.cache_write_tokens,
            )
            assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15), (route, usage)


def test_the_simulator_prices_snapshot_and_fine_tuned_names_like_the_resolver() -> None:
    for sent in ("gpt-4o-mini-2024-07-18", "ft:gpt-4o-mini-2024-07-18:acme:x:abc", "gpt-5.6"):
        spec = spec_for(SIM, sent)
        assert spec is not None and spec.input_price == TABLE[sent].input, sent


# ---- end to end: cached prompts, batchyard's recorded costs against the ledger -------------
SYSTEM = " ".join(f"Rule {i}: answer briefly and cite the policy section." for i in range(160))


def _lines(model: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{model}-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": model,
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Question {i}: what applies here?"},
                ],
                "max_completion_tokens": 200,  # room for the whole answer: none re-sent
            },
        }
        for i in range(n)
    ]


async def test_costs_of_cached_prompt_runs_match_the_ledger_to_the_cent(tmp_path: Path) -> None:
    app = create_app(load_config(None, rate_limits=False, clock={"start": 1_796_083_200.0}))
    state = app.state.sim
    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://sim/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)),
    )
    settings = load_settings(api_key="sk-test", db=tmp_path / "by.db", concurrency=1)
    orch = Orchestrator(settings, client=client, workdir=tmp_path / "work")
    source = tmp_path / "cached.jsonl"
    lines = _lines("gpt-4o-mini", 12) + _lines("gpt-6-sol", 12)
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    try:
        result = await orch.submit(source, route="realtime")
        status = await orch.wait(result.run_id, max_rounds=50)
        rows = list(orch.store.iter_requests(result.run_id, with_response=True))
        recorded = orch.store.get_run(result.run_id).options["model_entries"]
    finally:
        await orch.aclose()
    assert status.done
    assert recorded == {"gpt-4o-mini": "gpt-4o-mini", "gpt-6-sol": "gpt-6-sol"}
    assert [r.status for r in rows] == [RequestStatus.SUCCEEDED] * len(lines)
    cached = [
        r.response_body["usage"]["prompt_tokens_details"]["cached_tokens"]
        for r in rows
        if r.response_body is not None
    ]
    assert sum(c > 0 for c in cached) >= len(lines) - 2  # every model's first call writes
    assert all(c == 0 or (c >= MINIMUM and c % INCREMENT == 0) for c in cached)
    by_id = {e.custom_id: e.cost for e in state.ledger}
    assert len(by_id) == len(lines) == len(state.ledger)
    for r in rows:
        assert r.cost is not None and round(r.cost, 2) == round(by_id[r.custom_id], 2)
        assert r.cost == pytest.approx(by_id[r.custom_id], rel=1e-9)
    assert round(sum(r.cost or 0.0 for r in rows), 2) == round(sum(by_id.values()), 2)
    writes = [
        r.response_body["usage"]["prompt_tokens_details"].get("cache_write_tokens", 0)
        for r in rows
        if r.response_body is not None and r.model == "gpt-6-sol"
    ]
    assert writes[0] > 0  # gpt-6-sol charges cache writes, and reports them
