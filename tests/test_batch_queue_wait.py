"""A full batch queue: the lines behind the first shard that does not fit are counted, not
read one by one, and the numbers a user sees are those of planning every line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batch_path_env import CHAT, MODEL, Bench, chat_body, make_bench

from batchyard.models import RequestStatus
from batchyard.shards import TOKEN_MARGIN, ShardItem, ShardLimits, admit, plan_shards, shard_line
from batchyard.tokens import prompt_tokens

LINE_TOKENS = prompt_tokens(CHAT, chat_body(0, words=10))
QUEUE = int(LINE_TOKENS * 10 / TOKEN_MARGIN) + 1  # about ten lines' tokens at once


def _bench(tmp_path: Path, bodies: list[dict[str, Any]]) -> Bench:
    bench = make_bench(tmp_path)
    bench.models[MODEL] = bench.models[MODEL].model_copy(update={"enqueued_token_limit": QUEUE})
    bench.add_run(bodies)
    return bench


def _as_planned_in_full(bench: Bench, limits: ShardLimits) -> tuple[int, int, int, list[str]]:
    """What planning every line and admitting the shards in order says: shards that go,
    requests and tokens held back, lines that never fit (the numbers before this change)."""
    cap = int(QUEUE * TOKEN_MARGIN)
    limits = ShardLimits(
        max_requests=limits.max_requests, max_bytes=limits.max_bytes, max_input_tokens=cap
    )
    items: list[ShardItem] = []
    never: list[ShardItem] = []
    rows = list(bench.store.iter_requests(bench.run_id))
    bodies = bench.store.get_bodies(bench.run_id, [r.custom_id for r in rows])
    for r in rows:
        size = len(shard_line(r.custom_id, CHAT, bodies[r.custom_id]))
        item = ShardItem(r.custom_id, size, r.est_input_tokens)
        (items if limits.why_never_fits(item) is None else never).append(item)
    result = admit(list(plan_shards(items, limits)), 0, cap, MODEL)
    held = result.waiting
    requests, tokens = sum(s.requests for s in held), sum(s.input_tokens for s in held)
    return len(result.submit), requests, tokens, [i.custom_id for i in never]


def _counting(bench: Bench, name: str) -> list[str]:
    """Spy on a store method that yields rows: the custom_ids it handed out."""
    seen: list[str] = []
    method: Callable[..., Iterator[Any]] = getattr(bench.store, name)

    def spy(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for row in method(*args, **kwargs):
            seen.append(row.custom_id)
            yield row

    setattr(bench.store, name, spy)
    return seen


def _waiting_event(bench: Bench) -> tuple[str, dict[str, Any]]:
    said = bench.store.list_events(bench.run_id, kinds=["batch.waiting"])
    return said[-1].message, said[-1].data


async def test_a_blocked_group_reports_what_planning_every_line_would(tmp_path: Path) -> None:
    # Lines of uneven size; shards close by request count and by the queue's tokens.
    bench = _bench(tmp_path, [chat_body(i, words=4 + i % 9) for i in range(60)])
    limits = ShardLimits(max_requests=4)
    shards, requests, tokens, never = _as_planned_in_full(bench, limits)
    assert shards >= 1 and requests > 30 and never == []
    report = await bench.runner(limits=limits).submit(bench.run_id)
    assert report.submitted == shards
    assert report.waiting_requests == requests and report.unbatchable == []
    message, data = _waiting_event(bench)
    assert f"{requests:,} request(s) ({tokens:,} tokens) wait for earlier batches" in message
    assert (data["requests"], data["tokens"]) == (requests, tokens)
    # the store agrees: the held lines are the routed lines no shard holds
    unsharded = [r for r in bench.store.iter_requests(bench.run_id) if r.shard is None]
    assert (len(unsharded), sum(r.est_input_tokens for r in unsharded)) == (requests, tokens)
    # a later round while the queue is still full says the same
    again = await bench.runner(limits=limits).submit(bench.run_id)
    assert (again.submitted, again.waiting_requests) == (0, requests)
    assert _waiting_event(bench)[1]["tokens"] == tokens


async def test_lines_that_never_fit_after_the_block_go_in_the_first_round(
    tmp_path: Path,
) -> None:
    bodies = [chat_body(i, words=10) for i in range(40)]
    bodies[33] = chat_body(33, words=LINE_TOKENS * 12)  # more tokens than the whole queue
    bodies[36] = {**chat_body(36, words=2), "user": "x" * 3000}  # more bytes than a shard
    bench = _bench(tmp_path, bodies)
    normal = len(shard_line("r0", CHAT, bodies[0]))
    limits = ShardLimits(max_bytes=normal * 8)
    shards, requests, tokens, never = _as_planned_in_full(bench, limits)
    assert never == ["r33", "r36"]
    report = await bench.runner(limits=limits).submit(bench.run_id)
    assert report.unbatchable == ["r33", "r36"]
    assert (report.submitted, report.waiting_requests) == (shards, requests)
    assert _waiting_event(bench)[1]["tokens"] == tokens


async def test_the_lines_behind_a_full_queue_are_not_read(tmp_path: Path) -> None:
    bodies = [chat_body(i, words=10) for i in range(200)]
    bodies[180] = chat_body(180, words=LINE_TOKENS * 12)  # never fits: must still be found
    bench = _bench(tmp_path, bodies)
    read = _counting(bench, "batch_candidates")
    doubtful = _counting(bench, "batch_candidates_over")
    report = await bench.runner().submit(bench.run_id)
    assert report.submitted == 1 and report.unbatchable == ["r180"]
    (shard,) = bench.store.list_batches(bench.run_id)
    assert report.waiting_requests == 200 - shard.request_count - 1
    # read one by one: the shard that went, the one that does not fit and the line that
    # closed it (about ten lines each); of the other lines, only the one in doubt
    assert len(read) <= 2 * 12 + 1
    assert doubtful == ["r180"]
    # the lines that waited are batched once the queue has room; the one that never fits
    # is left for the driver to send in real time
    await bench.runner().run(bench.run_id)
    assert bench.statuses() == {RequestStatus.SUCCEEDED: 199, RequestStatus.ROUTED: 1}


async def test_a_round_over_waiting_lines_reads_no_run_wide_rows(tmp_path: Path) -> None:
    # A round over a run whose lines wait for queue room counts them, checks the ones in
    # doubt and looks for lines to re-queue or weigh for resending. Over a million lines,
    # each of those that walks the run's rows (bodies and all) costs seconds, every round:
    # they must be answered from indexes (`m019`), and rows read only where yielded.
    bodies = [chat_body(i, words=10) for i in range(60)]
    bench = _bench(tmp_path, bodies)
    plans: list[str] = []

    def explain(sql: str) -> None:
        if sql.lstrip().upper().startswith("SELECT") and " requests" in sql:
            plan = bench.store.db.conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            plans.extend(f"{row[-1]}  <-  {sql}" for row in plan if "requests" in row[-1])

    bench.store.db.conn.set_trace_callback(explain)
    try:
        report = await bench.runner().submit(bench.run_id)
    finally:
        bench.store.db.conn.set_trace_callback(None)
    assert report.submitted == 1 and report.waiting_requests > 40
    assert plans, "the round read nothing of the run"
    # no full scans, and no walk of the run in line order (the one index that reads every
    # row of the run to find the few it wants)
    assert not [p for p in plans if p.startswith("SCAN") or "requests_run_line" in p]
    counted = [p for p in plans if "count(" in p or "sum(" in p]
    assert counted and all("COVERING INDEX" in p for p in counted)
