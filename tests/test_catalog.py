"""The model catalog: every way a name resolves, and every billing rule, on today's table."""

from __future__ import annotations

from datetime import date

import pytest

from batchyard.catalog import Usage, load_catalog, stale_notice, usage_from_body
from batchyard.config import model_table
from batchyard.errors import ConfigError
from batchyard.models import Route, Tier

TABLE = model_table()
M = 1_000_000
K = 100_000  # below the 272K long-context line


# ---- resolution ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sent", "entry", "how"),
    [
        ("gpt-4o-mini", "gpt-4o-mini", "exact"),
        ("gpt-5.6", "gpt-5.6-sol", "alias"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", "snapshot"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini", "snapshot"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo", "snapshot"),
        ("gpt-6.1-terra", "gpt-6.1-terra", "exact"),
        ("ft:gpt-4o-mini-2024-07-18:acme:support:9x8y7z", "ft:gpt-4o-mini", "fine-tuned"),
        ("ft:gpt-4o-mini:org:x:abc", "ft:gpt-4o-mini", "fine-tuned"),
        ("ft:gpt-4.1-mini-2025-04-14:acme::abc:ckpt-step-90", "ft:gpt-4.1-mini", "fine-tuned"),
    ],
)
def test_names_resolve_to_their_row_and_keep_the_sent_name(sent: str, entry: str, how: str) -> None:
    resolved = TABLE.resolve(sent)
    assert (resolved.sent, resolved.entry, resolved.how) == (sent, entry, how)
    assert TABLE[sent] is resolved.info and sent in TABLE


def test_fine_tuned_models_have_their_own_prices_not_the_base_model_s() -> None:
    base, tuned = TABLE["gpt-4o-mini"], TABLE["ft:gpt-4o-mini:org:x:abc"]
    assert tuned.input == 0.30 and tuned.output == 1.20
    assert tuned.input > base.input and tuned.output > base.output


@pytest.mark.parametrize(
    ("name", "names_toml"),
    [
        ("gpt-nope", '[models."gpt-nope"]'),
        ("gpt-4o-mini-foo", '[models."gpt-4o-mini-foo"]'),  # not a snapshot: no date
        ("ft:gpt-5:acme:x:abc", '[models."ft:gpt-5"]'),  # fine-tuned base without ft prices
        ("ft:unknown-base:acme:x:abc", '[models."ft:unknown-base:acme:x:abc"]'),
    ],
)
def test_unknown_names_are_refused_naming_the_toml_to_add(name: str, names_toml: str) -> None:
    assert TABLE.get(name) is None and name not in TABLE
    with pytest.raises(ConfigError, match=r"batchyard\.toml") as caught:
        TABLE.resolve(name)
    assert names_toml in str(caught.value)


def test_a_row_added_in_batchyard_toml_resolves_and_says_where_it_came_from() -> None:
    custom = load_catalog(
        {
            "my-model": {"input": 1.0, "output": 2.0, "batch_input": 0.5, "batch_output": 1.0},
            "gpt-4o-mini": {"input": 0.2},
        }
    )
    assert custom.resolve("my-model-2026-01-01").entry == "my-model"
    assert custom["my-model"].sources == {"all": "batchyard.toml"}
    assert custom["gpt-4o-mini"].overridden == ("input",)
    assert custom["gpt-4o-mini"].output == TABLE["gpt-4o-mini"].output


def test_every_current_family_is_in_the_table_with_sources_and_a_date() -> None:
    for name in (
        "gpt-6.2-sol", "gpt-6.1-sol", "gpt-6.1-terra", "gpt-6-astra", "gpt-6-sol", "gpt-6-luna",
        "gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-5.5", "gpt-5.4", "gpt-5.4-mini",
        "gpt-5.2", "gpt-5.1", "gpt-5", "gpt-5-mini", "gpt-4.1", "gpt-4o", "gpt-4o-mini", "o3",
        "text-embedding-3-small", "omni-moderation-latest",
    ):  # fmt: skip
        info = TABLE[name]
        assert info.sources.get("prices") and date.fromisoformat(info.date) <= date(2026, 12, 1)
    assert TABLE.date == "2026-12-01" and TABLE.tier == "Tier 1"


# ---- pricing rules ----------------------------------------------------------------------------
def test_uncached_input_and_output_at_list_prices_on_every_tier() -> None:
    sol = TABLE["gpt-6-sol"]  # $2 in / $10 out; batch and flex 50%, fast 2x
    usage = Usage(K, K)
    assert sol.cost(Route.STANDARD, usage) == pytest.approx(1.2)
    assert sol.cost(Tier.DEFAULT, usage) == pytest.approx(1.2)
    assert sol.cost(Route.BATCH, usage) == pytest.approx(0.6)
    assert sol.cost(Route.FLEX, usage) == pytest.approx(0.6)
    assert sol.cost(Route.FAST, usage) == sol.cost(Tier.FAST, usage) == pytest.approx(2.4)
    mini = TABLE["gpt-4o-mini"]  # no band: a million tokens at list price
    assert mini.cost(Route.STANDARD, Usage(M, M)) == pytest.approx(0.75)


def test_cached_input_tokens_at_the_cached_price() -> None:
    sol = TABLE["gpt-6-sol"]  # cached $0.20
    usage = Usage(input_tokens=K, output_tokens=0, cached_tokens=60_000)
    assert sol.cost(Route.STANDARD, usage) == pytest.approx((40_000 * 2.0 + 60_000 * 0.20) / M)
    assert sol.cost(Route.BATCH, usage) == pytest.approx((40_000 * 1.0 + 60_000 * 0.10) / M)
    mini = TABLE["gpt-4o-mini"]  # its batch tier lists no cached price: cached = batch input
    assert mini.cost(Route.BATCH, usage) == pytest.approx(K * 0.075 / M)
    assert mini.cost(Route.STANDARD, usage) == pytest.approx((40_000 * 0.15 + 60_000 * 0.075) / M)


def test_cache_writes_where_charged() -> None:
    sol = TABLE["gpt-6-sol"]  # cache writes $2.50 (1.25x input)
    usage = Usage(input_tokens=K, cache_write_tokens=K)
    assert sol.cost(Route.STANDARD, usage) == pytest.approx(0.25)
    four = TABLE["gpt-4o"]  # no cache-write price: written tokens are plain input
    assert four.cost(Route.STANDARD, usage) == pytest.approx(four.input * K / M)


def test_reasoning_tokens_are_output_and_counted_once() -> None:
    five = TABLE["gpt-5-mini"]
    with_reasoning = Usage(input_tokens=0, output_tokens=M, reasoning_tokens=800_000)
    assert five.cost(Route.STANDARD, with_reasoning) == pytest.approx(five.output)


def test_the_long_context_band_bills_the_whole_request_on_every_tier() -> None:
    sol = TABLE["gpt-6-sol"]
    short = Usage(input_tokens=272_000, output_tokens=10_000, cached_tokens=100_000)
    long = Usage(input_tokens=272_001, output_tokens=10_000, cached_tokens=100_000)
    for path in (Route.STANDARD, Route.BATCH, Route.FLEX, Route.FAST):
        rates = sol.rates(path)
        plain = (short.input_tokens - short.cached_tokens) * rates[0]
        expected_short = (plain + 100_000 * rates[1] + 10_000 * rates[3]) / M
        assert sol.cost(path, short) == pytest.approx(expected_short)
        plain = (long.input_tokens - long.cached_tokens) * rates[0] * 2
        expected_long = (plain + 100_000 * rates[1] * 2 + 10_000 * rates[3] * 1.5) / M
        assert sol.cost(path, long) == pytest.approx(expected_long)
    assert sol.cost(Route.BATCH, long) == pytest.approx(sol.cost(Route.STANDARD, long) / 2)
    assert TABLE["gpt-4o"].long_context_threshold is None  # older models have no band


def test_fast_mode_excluding_long_context_bills_standard_long_rates() -> None:
    five5 = TABLE["gpt-5.5"]
    long = Usage(input_tokens=300_000, output_tokens=1_000)
    assert not five5.fast_long_context
    assert five5.cost(Route.FAST, long) == five5.cost(Route.STANDARD, long)
    short = Usage(input_tokens=1_000, output_tokens=1_000)
    assert five5.cost(Route.FAST, short) == pytest.approx(2.5 * five5.cost(Route.STANDARD, short))


def test_flex_or_fast_where_not_offered_bills_standard() -> None:
    mini, nano = TABLE["gpt-4o-mini"], TABLE["gpt-5-nano"]
    usage = Usage(10_000, 1_000)
    assert not mini.flex and mini.cost(Route.FLEX, usage) == mini.cost(Route.STANDARD, usage)
    assert not nano.fast and nano.cost(Route.FAST, usage) == nano.cost(Route.STANDARD, usage)


def test_cost_refuses_a_string_path() -> None:
    with pytest.raises(TypeError, match="Route or Tier"):
        TABLE["gpt-4o-mini"].cost("standard", Usage(1, 1))  # type: ignore[arg-type]


def test_usage_is_read_from_chat_and_responses_bodies() -> None:
    chat = {
        "usage": {
            "prompt_tokens": 2000,
            "completion_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 1536, "cache_write_tokens": 256},
            "completion_tokens_details": {"reasoning_tokens": 20},
        }
    }
    assert usage_from_body("/v1/chat/completions", chat) == Usage(2000, 50, 1536, 256, 20)
    responses = {
        "usage": {
            "input_tokens": 1200,
            "output_tokens": 7,
            "input_tokens_details": {"cached_tokens": 1024},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
    }
    assert usage_from_body("", responses) == Usage(1200, 7, 1024, 0, 0)
    assert usage_from_body("/v1/embeddings", {"usage": {"prompt_tokens": 9}}) == Usage(9, 0)


def test_a_table_older_than_90_days_says_so_and_how_to_override() -> None:
    assert stale_notice("2026-12-01", date(2027, 3, 1)) is None
    notice = stale_notice("2026-12-01", date(2027, 3, 2))
    assert notice is not None and "91 days" in notice and "batchyard.toml" in notice
