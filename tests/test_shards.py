"""Shard planning within every batch limit at once, admission to the queue, and learned limits."""

from __future__ import annotations

import pytest

from batchyard.config import model_table
from batchyard.errors import InputError
from batchyard.jsontext import compact
from batchyard.shards import (
    ID_CHARS,
    MAX_SHARD_BYTES,
    TOKEN_MARGIN,
    Shard,
    ShardItem,
    ShardLimits,
    admit,
    learn_limit,
    plan_groups,
    plan_shards,
    shard_line_size,
    waves,
)


def items(n: int, *, size: int = 100, tokens: int = 10, inputs: int = 0) -> list[ShardItem]:
    return [ShardItem(f"r{i}", size + i % 7, tokens + i % 5, inputs) for i in range(n)]


def check_plan(given: list[ShardItem], shards: list[Shard], limits: ShardLimits) -> None:
    """Each shard within every limit, every custom_id exactly once and in input order."""
    assert [cid for s in shards for cid in s.custom_ids] == [i.custom_id for i in given]
    by_id = {i.custom_id: i for i in given}
    for shard in shards:
        members = [by_id[c] for c in shard.custom_ids]
        assert 0 < shard.requests <= limits.max_requests
        assert shard.bytes == sum(m.raw_bytes for m in members) <= limits.max_bytes
        assert shard.input_tokens == sum(m.input_tokens for m in members)
        assert shard.embedding_inputs == sum(m.embedding_inputs for m in members)
        assert shard.embedding_inputs <= limits.max_embedding_inputs
        if limits.max_input_tokens is not None:
            assert shard.input_tokens <= limits.max_input_tokens
    assert [s.index for s in shards] == list(range(len(shards)))


@pytest.mark.parametrize(
    ("limits", "closed_by", "expected_shards"),
    [
        (ShardLimits(max_requests=4), "requests", 3),
        (ShardLimits(max_bytes=350), "bytes", 4),
        (ShardLimits(max_embedding_inputs=9), "embedding inputs", 4),
        (ShardLimits(max_input_tokens=40), "tokens", 4),
    ],
    ids=["requests", "bytes", "embedding inputs", "enqueued tokens"],
)
def test_each_limit_closes_shards(
    limits: ShardLimits, closed_by: str, expected_shards: int
) -> None:
    given = items(10, inputs=3)
    shards = list(plan_shards(given, limits))
    check_plan(given, shards, limits)
    assert len(shards) == expected_shards
    assert {s.closed_by for s in shards[:-1]} == {closed_by}
    assert shards[-1].closed_by == "end"


def test_all_limits_at_once_on_uneven_items() -> None:
    given = [
        ShardItem(f"r{i}", 50 + (i * 37) % 400, 1 + (i * 11) % 60, (i * 3) % 8) for i in range(500)
    ]
    limits = ShardLimits(
        max_requests=20, max_bytes=5_000, max_embedding_inputs=70, max_input_tokens=600
    )
    shards = list(plan_shards(given, limits))
    check_plan(given, shards, limits)
    # Limits this close to each other take turns: every one of them closes some shard.
    assert {s.closed_by for s in shards[:-1]} == {"requests", "bytes", "embedding inputs", "tokens"}


def test_exactly_full_shard_is_not_split() -> None:
    given = items(4, size=100, tokens=10)
    limits = ShardLimits(max_requests=4, max_bytes=sum(i.raw_bytes for i in given))
    assert [s.requests for s in plan_shards(given, limits)] == [4]


def test_no_items_no_shards() -> None:
    assert list(plan_shards([], ShardLimits())) == []


def test_item_bigger_than_queue_is_reported_by_custom_id() -> None:
    limits = ShardLimits(max_input_tokens=50, model="gpt-4o-mini")
    big = ShardItem("huge-one", 100, 51)
    assert "huge-one" in (limits.why_never_fits(big) or "")
    with pytest.raises(InputError, match=r"'huge-one' has 51 input tokens.*gpt-4o-mini"):
        list(plan_shards([ShardItem("ok", 100, 10), big], limits))
    too_wide = ShardItem("wide", MAX_SHARD_BYTES + 1, 1)
    assert "bytes" in (ShardLimits().why_never_fits(too_wide) or "")
    assert ShardLimits().why_never_fits(ShardItem("fine", 100, 10**9)) is None  # no queue limit


def test_limits_for_model_use_configured_or_learned_queue() -> None:
    info = model_table()["gpt-4o-mini"]
    configured = ShardLimits.for_model(info)
    assert configured.max_input_tokens == int(info.enqueued_token_limit * TOKEN_MARGIN)
    assert configured.max_requests == 50_000 and configured.max_embedding_inputs == 50_000
    assert configured.max_bytes == 190_000_000
    assert ShardLimits.for_model(info, learned_limit=1_000_000).max_input_tokens == 950_000


def test_a_body_within_fitting_body_bytes_always_fits() -> None:
    # The store looks only at lines above this bound for ones that can never be batched,
    # so below it every line must fit, whatever its custom_id (up to ID_CHARS) escapes to.
    limits = ShardLimits(max_bytes=10_000, max_embedding_inputs=50)
    for url in ("/v1/chat/completions", "/v1/embeddings"):
        bound = limits.fitting_body_bytes(url)
        worst = "\x00" * ID_CHARS  # each character written as a six-byte \u0000
        size = shard_line_size(worst, url, bound)
        assert size == len(compact(worst)) + shard_line_size("", url, bound) - 2
        assert limits.why_never_fits(ShardItem(worst, size, 1)) is None
    # one input more than a batch holds, each as small as JSON allows, is above the bound
    tiny: list[str | list[int]] = ["", []]
    for each in tiny:
        body = compact({"input": [each] * 51})
        assert len(body) > limits.fitting_body_bytes("/v1/embeddings")


def test_groups_are_planned_separately_in_one_pass() -> None:
    stream = [(("chat", "a" if i % 3 else "b"), item) for i, item in enumerate(items(30))]
    limits = {"a": ShardLimits(max_requests=5), "b": ShardLimits(max_requests=100)}
    planned = list(plan_groups(stream, lambda key: limits[key[1]]))
    for model in "ab":
        given = [item for key, item in stream if key[1] == model]
        check_plan(given, [s for key, s in planned if key[1] == model], limits[model])
    assert sum(1 for key, _ in planned if key[1] == "a") == 4  # 20 items in fives


def shard(index: int, tokens: int) -> Shard:
    return Shard(index, (f"s{index}",), 100, tokens, 0, "tokens")


def test_admit_fills_the_queue_in_order_and_says_why_the_rest_wait() -> None:
    waiting = [shard(0, 500_000), shard(1, 400_000), shard(2, 100_000)]
    result = admit(waiting, 1_200_000, 2_000_000, "gpt-4o-mini")
    assert [s.index for s in result.submit] == [0]
    assert [s.index for s in result.waiting] == [1, 2]  # 2 would fit, but does not jump ahead
    assert result.too_big == ()
    assert result.reason.startswith(
        "waiting: 1,700,000 of 2,000,000 enqueued tokens in flight for gpt-4o-mini"
    )
    assert "2 request(s) (500,000 tokens) wait for earlier batches" in result.reason


def test_admit_everything_when_it_fits_and_nothing_when_full() -> None:
    waiting = [shard(0, 10), shard(1, 20)]
    assert admit(waiting, 0, 30, "m").submit == tuple(waiting)
    assert admit(waiting, 0, 30, "m").reason == ""
    full = admit(waiting, 30, 30, "m")
    assert full.submit == () and full.waiting == tuple(waiting)
    assert admit(waiting, 10**12, None, "m").submit == tuple(waiting)  # no queue limit


def test_admit_sets_aside_a_shard_bigger_than_the_whole_queue() -> None:
    result = admit([shard(0, 50), shard(1, 10)], 0, 40, "m")
    assert [s.index for s in result.too_big] == [0]
    assert [s.index for s in result.submit] == [1]
    assert "re-planned" in result.reason


def test_waves_count_rounds_of_the_queue() -> None:
    assert waves([], 10) == 0
    assert waves([5, 5], 10) == 1
    assert waves([6, 5, 4, 10], 10) == 3
    assert waves([6, 5, 4], None) == 1


def test_learn_limit_from_provider_message() -> None:
    message = (
        "Enqueued token limit reached for gpt-4o-mini in organization org-abc. "
        "Limit: 2,000,000 enqueued tokens. Please try again once some in_progress batches "
        "have been completed."
    )
    assert learn_limit(5_000_000, 3_000_000, message) == 2_000_000


def test_learn_limit_without_a_number_shrinks_below_the_failed_shard() -> None:
    assert learn_limit(5_000_000, 1_000_000, "Enqueued token limit reached.") == 800_000
    assert learn_limit(500_000, 1_000_000, None) == 500_000  # never grows past the current one


@pytest.mark.parametrize(
    "custom_id", ["req-1", 'a"b', "caf\u00e9 \U0001f600", "tab\tx", "back\\s", "\x7f"]
)
def test_a_line_is_sized_without_its_body_as_it_is_written(custom_id: str) -> None:
    from batchyard.jsontext import compact
    from batchyard.shards import shard_line, shard_line_size

    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 'h\u00e9 "q"'}]}
    url = "/v1/chat/completions"
    assert shard_line_size(custom_id, url, len(compact(body))) == len(
        shard_line(custom_id, url, body)
    )
