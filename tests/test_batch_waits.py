"""When a line inside a batch is tried again: its shard's next poll, recorded in the store
once per shard and poll, and read back through the one answer (`Store.next_try`) that
`status` sums too. Against the simulator, on its frozen clock."""

from __future__ import annotations

from pathlib import Path

from batch_path_env import chat_body, make_bench

from batchyard.models import BatchStatus, RequestStatus, Route
from batchyard.orchestrator.batch.schedule import PollSchedule
from batchyard.store import Store
from batchyard.store.rows import NextTry


async def test_a_line_in_a_polled_batch_names_its_next_poll_and_why(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    ids = bench.add_run([chat_body(i) for i in range(6)])
    runner = bench.runner()
    await runner.submit(bench.run_id)
    # Created, never polled: it goes at the next round, and says so.
    assert bench.store.next_try(bench.run_id, ids[0]) == NextTry(
        None, "validating: polled at the next round"
    )
    report = await runner.poll(bench.run_id)
    assert report.polled == 1
    now = bench.now()
    assert bench.store.next_try(bench.run_id, ids[0]) == NextTry(
        now + 5.0, "validating: polled again in 5 s"
    )
    await bench.sleep(40.0)  # validated: in progress
    await runner.poll(bench.run_id)
    now = bench.now()
    due = now + runner.next_poll_in(bench.run_id)  # the schedule's own answer
    answer = NextTry(due, "in_progress: polled again in 10 s")
    assert [bench.store.next_try(bench.run_id, cid) for cid in ids] == [answer] * 6
    # `status` shows the same answer, summed per reason.
    assert bench.store.waiting_reasons(bench.run_id) == [(answer.reason, 6, due)]
    await runner.run(bench.run_id)
    assert bench.statuses() == {RequestStatus.SUCCEEDED: 6}
    assert bench.store.next_try(bench.run_id, ids[0]) is None  # finished: nothing to wait for
    assert bench.store.waiting_reasons(bench.run_id) == []


async def test_after_a_restart_shards_are_polled_at_once_and_the_answer_follows(
    tmp_path: Path,
) -> None:
    bench = make_bench(tmp_path)
    ids = bench.add_run([chat_body(i) for i in range(4)])
    first = bench.runner()
    await first.submit(bench.run_id)
    await first.poll(bench.run_id)
    await bench.sleep(40.0)
    await first.poll(bench.run_id)
    before = bench.store.next_try(bench.run_id, ids[0])
    assert before is not None and before.reason == "in_progress: polled again in 10 s"
    # Another process opens the same file: the recorded answer is there to read ...
    with Store.open(bench.store.path, now=bench.now) as other:
        assert other.next_try(bench.run_id, ids[0]) == before
    # ... and a new runner (a restart) still polls every live shard at once.
    second = bench.runner()
    assert second.next_poll_in(bench.run_id) == 0.0
    await bench.sleep(1.0)
    report = await second.poll(bench.run_id)
    assert report.polled == 1
    after = bench.store.next_try(bench.run_id, ids[0])
    assert after == NextTry(bench.now() + 10.0, "in_progress: polled again in 10 s")
    await second.run(bench.run_id)
    assert bench.statuses() == {RequestStatus.SUCCEEDED: 4}
    assert bench.billed() == {cid: 1 for cid in ids}


def test_every_poll_decision_is_written_through() -> None:
    seen: list[tuple[int, float | None, str | None]] = []
    schedule = PollSchedule(low=5, high=60, record=lambda *d: seen.append(d))
    schedule.polled(1, BatchStatus.VALIDATING, 0.0)
    schedule.polled(1, BatchStatus.IN_PROGRESS, 5.0)
    schedule.failed(1, 15.0)
    schedule.failed(1, 35.0, retry_after=30)
    schedule.polled(1, BatchStatus.COMPLETED, 65.0)  # done: no next poll
    assert seen == [
        (1, 5.0, "validating: polled again in 5 s"),
        (1, 15.0, "in_progress: polled again in 10 s"),
        (1, 35.0, "the poll failed: tried again in 20 s"),
        (1, 65.0, "the poll failed: tried again in 30 s (the provider's retry-after)"),
        (1, None, None),
    ]


def test_a_waiting_batch_line_moved_to_real_time_goes_at_once(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    ids = bench.add_run([chat_body(i) for i in range(3)])
    store, run_id = bench.store, bench.run_id
    why = "3 line(s) to send again wait for a worthwhile shard"
    assert store.hold(run_id, ids[:2], bench.now() + 600.0, why) == 2
    assert store.hold(run_id, ids[:2], bench.now() + 600.0, why) == 0  # already says so
    assert store.next_try(run_id, ids[0]) == NextTry(bench.now() + 600.0, why)
    assert store.next_try(run_id, ids[2]) is None
    # The router moves them to real time: the batch path's wait does not hold them back.
    store.set_routes(run_id, [(cid, Route.STANDARD, "escalated") for cid in ids[:1]])
    claimed = store.claim_realtime(run_id, owner="t", limit=10)
    assert [c.custom_id for c in claimed] == ids[:1]
    assert store.next_try(run_id, ids[1]) == NextTry(bench.now() + 600.0, why)
    assert store.hold(run_id, ids[1:2], None, None) == 1  # they go out: the wait is gone
    assert store.next_try(run_id, ids[1]) is None
