"""The batch path end to end against the simulator: shards, results, retries, salvage, cancel."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from batch_path_env import MODEL, Bench, chat_body, make_bench, sim_config

from batchyard.models import BatchStatus, RequestStatus, Route
from batchyard.shards import ShardLimits, shard_line
from batchyard.store import FileKind


def _sizes(bench: Bench) -> list[int]:
    return [b.request_count for b in bench.store.list_batches(bench.run_id)]


async def test_small_run_completes_with_batch_prices_and_shuffled_output(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    ids = bench.add_run([chat_body(i) for i in range(12)])
    report = await bench.runner().run(bench.run_id)
    assert bench.statuses() == {RequestStatus.SUCCEEDED: 12}
    # the simulator's output order is shuffled; every answer landed on its own request
    for cid in ids:
        row = bench.store.get_request(bench.run_id, cid)
        assert row.response_body is not None
        assert row.input_tokens and row.input_tokens > 0
        assert row.output_tokens is not None
        info = bench.models[MODEL]
        assert row.cost == pytest.approx(
            info.estimate(Route.BATCH, row.input_tokens, row.output_tokens)
        )
    entries = {e.custom_id: e for e in bench.state.ledger}
    run = bench.store.get_run(bench.run_id)
    assert run.actual_cost == pytest.approx(sum(e.cost for e in entries.values()))
    assert bench.billed() == {cid: 1 for cid in ids}
    assert [o.status for o in report.applied] == [BatchStatus.COMPLETED]
    # the shard's input file is gone remotely and locally once applied
    assert not any(f.purpose == "batch" for f in bench.state.files.values())
    assert not list(bench.workdir.glob("*.jsonl"))
    # the whole lifecycle is in the store's history
    kinds = [
        (e.data.get("from"), e.data.get("to"))
        for e in bench.store.list_events(bench.run_id, kinds=["batch.status"])
    ]
    assert kinds[:5] == [
        ("planned", "uploading"),
        ("uploading", "uploaded"),
        ("uploaded", "creating"),
        ("creating", "validating"),
        ("validating", "in_progress"),
    ]
    assert kinds[-1] == ("completed", "applied")
    told = [kind for kind, data in bench.events if data["run_id"] == bench.run_id]
    assert "batch.submitted" in told and "batch.polled" in told and "batch.done" in told


async def test_finalizing_is_not_done(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config(turnaround_seconds=100, finalizing_seconds=600))
    bench.add_run([chat_body(i) for i in range(3)])
    runner = bench.runner()
    await runner.submit(bench.run_id)
    await bench.sleep(30 + 100 + 1)
    report = await runner.poll(bench.run_id)
    shard = bench.store.list_batches(bench.run_id)[0]
    assert report.statuses[shard.id] == BatchStatus.FINALIZING and not report.applied
    assert shard.counts_completed == 3  # every line done, yet not applied
    assert bench.statuses() == {RequestStatus.SUBMITTED: 3}
    assert 0 < runner.next_poll_in(bench.run_id) <= 30
    await runner.run(bench.run_id)
    assert bench.statuses() == {RequestStatus.SUCCEEDED: 3}


async def test_shards_split_by_request_count(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    bench.add_run([chat_body(i) for i in range(7)])
    await bench.runner(limits=ShardLimits(max_requests=3)).run(bench.run_id)
    assert _sizes(bench) == [3, 3, 1]
    assert bench.statuses() == {RequestStatus.SUCCEEDED: 7}
    assert len(bench.provider_batches_per_shard()) == 3


async def test_shards_split_by_bytes(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    bodies = [chat_body(i, words=40) for i in range(6)]
    ids = bench.add_run(bodies)
    line = len(shard_line(ids[0], "/v1/chat/completions", bodies[0]))
    await bench.runner(limits=ShardLimits(max_bytes=line * 2 + 10)).run(bench.run_id)
    assert _sizes(bench) == [2, 2, 2]
    files = [f for f in bench.store.list_files(bench.run_id) if f.kind == FileKind.INPUT]
    assert all(f.bytes is not None and f.bytes <= line * 2 + 10 for f in files)
    assert bench.statuses() == {RequestStatus.SUCCEEDED: 6}


async def test_shards_split_by_enqueued_tokens_and_wait_for_the_queue(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    ids = bench.add_run([chat_body(i, words=10) for i in range(6)])
    per = max(r.est_input_tokens for r in bench.store.iter_requests(bench.run_id))
    # the queue holds two requests' tokens (with the 5% margin): shards of 2, one at a time
    bench.models[MODEL] = bench.models[MODEL].model_copy(
        update={"enqueued_token_limit": int(per * 2 / 0.95) + 1}
    )
    runner = bench.runner()
    first = await runner.submit(bench.run_id)
    # the held lines are not planned into shards: they are counted as requests and tokens
    assert (first.submitted, first.waiting, first.waiting_requests) == (1, 0, 4)
    held = sum(r.est_input_tokens for r in bench.store.iter_requests(bench.run_id) if not r.shard)
    (said,) = bench.store.list_events(bench.run_id, kinds=["batch.waiting"])
    assert f"4 request(s) ({held:,} tokens) wait for earlier batches to finish" in said.message
    assert (said.data["requests"], said.data["tokens"]) == (4, held)
    await runner.run(bench.run_id)
    assert _sizes(bench) == [2, 2, 2]
    assert bench.statuses() == {RequestStatus.SUCCEEDED: 6}
    assert bench.billed() == {cid: 1 for cid in ids}


async def test_line_failures_are_resubmitted_until_they_succeed(tmp_path: Path) -> None:
    bench = make_bench(
        tmp_path, sim_config({"batch_line_error_rate": 0.3, "batch_line_timeout_rate": 0.2})
    )
    bench.settings = bench.settings.model_copy(update={"max_attempts": 12})
    ids = bench.add_run([chat_body(i) for i in range(30)])
    await bench.runner().run(bench.run_id)
    assert bench.statuses() == {RequestStatus.SUCCEEDED: 30}
    assert len(bench.store.list_batches(bench.run_id)) > 1  # failures went out again
    assert bench.billed() == {cid: 1 for cid in ids}
    retried = [r for r in bench.store.iter_requests(bench.run_id) if r.attempts > 1]
    assert retried


async def test_line_failures_give_up_at_max_attempts(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config({"batch_line_error_rate": 1.0}))
    bench.settings = bench.settings.model_copy(update={"max_attempts": 2})
    bench.add_run([chat_body(i) for i in range(3)])
    await bench.runner().run(bench.run_id)
    rows = list(bench.store.iter_requests(bench.run_id))
    assert {r.status for r in rows} == {RequestStatus.FAILED}
    assert {r.attempts for r in rows} == {2}
    assert all(
        r.status_code == 500 and "server had an error" in (r.error_message or "") for r in rows
    )
    # a batch whose lines all failed ends completed with no output file: not a success
    assert bench.store.list_events(bench.run_id, kinds=["batch.all_failed"])
    assert not bench.state.ledger


async def test_4xx_lines_fail_with_the_provider_message(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    bodies = [chat_body(0), {**chat_body(1), "max_tokens": 10_000_000}]
    bench.add_run(bodies)
    await bench.runner().run(bench.run_id)
    bad = bench.store.get_request(bench.run_id, "r1")
    assert bad.status == RequestStatus.FAILED and bad.attempts == 1
    assert bad.status_code == 400 and bad.error_code == "context_length_exceeded"
    assert (bad.error_message or "").startswith("This model's maximum context length is")
    assert bench.store.get_request(bench.run_id, "r0").status == RequestStatus.SUCCEEDED


async def test_expired_batch_is_salvaged(tmp_path: Path) -> None:
    # 24 h window, 36 h turnaround: two thirds of the lines finish before expiry
    bench = make_bench(tmp_path, sim_config(turnaround_seconds=36 * 3600))
    ids = bench.add_run([chat_body(i) for i in range(9)])
    runner = bench.runner()
    await runner.submit(bench.run_id)
    first = bench.store.list_batches(bench.run_id)[0]
    for _ in range(1000):  # a bound: the simulated clock makes each round cheap
        if bench.store.get_batch(first.id).status == BatchStatus.APPLIED:
            break
        await runner.poll(bench.run_id)
        await bench.sleep(runner.next_poll_in(bench.run_id))
    raw = bench.store.get_batch(first.id).raw
    assert raw is not None and raw["status"] == "expired"
    done = {cid for cid, n in bench.billed().items() if n}
    assert 0 < len(done) < 9
    statuses = bench.statuses()
    assert statuses[RequestStatus.SUCCEEDED] == len(done)
    assert statuses[RequestStatus.RETRYABLE] == 9 - len(done)
    # the rest go again, in a shard of only the unfinished ones
    bench.state.config.batch.turnaround_seconds = 600.0
    await runner.run(bench.run_id)
    second = bench.store.list_batches(bench.run_id)[1]
    assert second.request_count == 9 - len(done)
    assert bench.statuses() == {RequestStatus.SUCCEEDED: 9}
    assert bench.billed() == {cid: 1 for cid in ids}


async def test_cancelled_run_keeps_finished_lines(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config(turnaround_seconds=1000))
    ids = bench.add_run([chat_body(i) for i in range(10)])
    runner = bench.runner()
    await runner.submit(bench.run_id)
    await bench.sleep(30 + 500)  # validated, then half-way through
    await runner.poll(bench.run_id)
    report = await runner.cancel(bench.run_id)
    assert len(report.cancelling) == 1
    await runner.run(bench.run_id)
    statuses = bench.statuses()
    billed = bench.billed()
    assert 0 < statuses[RequestStatus.SUCCEEDED] < 10
    assert statuses[RequestStatus.SUCCEEDED] + statuses[RequestStatus.CANCELLED] == 10
    for cid in ids:
        row = bench.store.get_request(bench.run_id, cid)
        assert (row.status == RequestStatus.SUCCEEDED) == (billed.get(cid) == 1)
    assert len(bench.store.list_batches(bench.run_id)) == 1  # nothing was re-submitted


async def test_cancel_before_submission_cancels_everything(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    bench.add_run([chat_body(i) for i in range(4)])
    report = await bench.runner().cancel(bench.run_id)
    assert report.requests_cancelled == 4
    assert bench.statuses() == {RequestStatus.CANCELLED: 4}
    assert not bench.state.batches


async def test_validation_failure_attaches_the_provider_message(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    bodies = [chat_body(0), {**chat_body(1), "model": "no-such-model"}, chat_body(2)]
    bench.add_run(bodies)
    await bench.runner().run(bench.run_id)
    bad = bench.store.get_request(bench.run_id, "r1")
    assert bad.status == RequestStatus.FAILED
    assert bad.error_code == "model_not_found" and "no-such-model" in (bad.error_message or "")
    # the other lines never ran in the failed batch and went again in a later one
    for cid in ("r0", "r2"):
        assert bench.store.get_request(bench.run_id, cid).status == RequestStatus.SUCCEEDED
    assert len(bench.store.list_batches(bench.run_id)) == 2
    assert bench.store.list_events(bench.run_id, kinds=["batch.failed"])


async def test_token_limit_exceeded_requeues_and_learns_the_limit(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    ids = bench.add_run([chat_body(i, words=10) for i in range(6)])
    per = max(r.est_input_tokens for r in bench.store.iter_requests(bench.run_id))
    # the simulator's real queue is smaller than our model table believes
    bench.state.config.models[MODEL].enqueued_token_limit = per * 3
    await bench.runner().run(bench.run_id)
    learned = bench.store.list_events(bench.run_id, kinds=["batch.limit_learned"])
    assert learned and learned[0].data["limit"] == per * 3
    assert bench.statuses() == {RequestStatus.SUCCEEDED: 6}
    first = bench.store.list_batches(bench.run_id)[0]
    assert first.request_count == 6 and json.dumps(first.errors).count("token_limit_exceeded")
    assert all(b.request_count <= 3 for b in bench.store.list_batches(bench.run_id)[1:])
    assert bench.billed() == {cid: 1 for cid in ids}


async def test_cancel_shards_for_escalation_hands_unfinished_lines_back(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, sim_config(turnaround_seconds=1000))
    bench.add_run([chat_body(i) for i in range(10)])
    runner = bench.runner()
    await runner.submit(bench.run_id)
    await bench.sleep(30 + 400)
    await runner.poll(bench.run_id)
    shard = bench.store.list_batches(bench.run_id)[0].id
    report = await runner.cancel_shards(bench.run_id, [shard], "deadline close")
    assert report.cancelling == [shard]
    for _ in range(1000):  # a bound: the simulated clock makes each round cheap
        if bench.store.get_batch(shard).status == BatchStatus.APPLIED:
            break
        await bench.sleep(runner.next_poll_in(bench.run_id))
        await runner.poll(bench.run_id)
    rows = list(bench.store.iter_requests(bench.run_id))
    done = [r for r in rows if r.status == RequestStatus.SUCCEEDED]
    back = [r for r in rows if r.status == RequestStatus.RETRYABLE]
    assert done and back and len(done) + len(back) == 10
    assert {r.error_code for r in back} == {"batch_cancelled"}
    # they wait for the caller to re-route them (e.g. to real time), not for another batch
    again = await runner.submit(bench.run_id)
    assert again.requeued == 0 and again.submitted == 0
    assert bench.billed() == {r.custom_id: 1 for r in done}


async def test_batch_creations_are_paced_within_the_hourly_limit(tmp_path: Path) -> None:
    # OpenAI allows an organisation a number of batch creations per hour (2,000 today); the
    # simulator answers 429 past it. batchyard holds shards back instead of hitting it.
    bench = make_bench(tmp_path, sim_config(max_creates_per_hour=2))
    bench.settings = bench.settings.model_copy(update={"batch_creates_per_hour": 2})
    ids = bench.add_run([chat_body(i) for i in range(5)])
    runner = bench.runner(limits=ShardLimits(max_requests=1))
    first = await runner.submit(bench.run_id)
    assert (first.submitted, first.waiting, first.waiting_requests) == (2, 3, 3)
    assert first.errors == []
    (said,) = bench.store.list_events(bench.run_id, kinds=["batch.create_limit"])
    assert "2 batch creations in the last hour" in said.message
    assert (await runner.submit(bench.run_id)).submitted == 0  # still within the hour
    await bench.sleep(3601)
    assert (await runner.submit(bench.run_id)).submitted == 2
    await runner.run(bench.run_id)  # the fifth shard waits for the next hour
    assert bench.statuses()[RequestStatus.SUCCEEDED] == 4
    await bench.sleep(3601)
    await runner.run(bench.run_id)
    assert bench.statuses() == {RequestStatus.SUCCEEDED: 5}
    assert bench.billed() == {cid: 1 for cid in ids}
    # "429" as a word: a batch or file id in a message may hold those digits by chance.
    said_429 = re.compile(r"(?<![\w-])429(?![\w-])")
    assert not [e for e in bench.store.list_events(bench.run_id) if said_429.search(e.message)]
