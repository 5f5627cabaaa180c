"""Many drivers, many runs, one host: real `batchyard` processes against a simulator process.

Several `watch` / `poll --wait` / `resume` processes drive one run (queued batch shards, real
time and a deadline) while one of them is killed with -9: the others exit 0, every line is
answered, and no line is sent twice except the ones the killed process had on the wire.
Two runs share a model's tiny enqueued-token limit and the first is never driven again: the
second still starts (it refreshes the first run's batches) or names the run that holds the
room and the commands that free it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
from cli_support import API_KEY, ROOT, run_cli, sim_process

from batchyard.models import BatchStatus, RequestStatus
from batchyard.samples import sample_lines, write_sample
from batchyard.store import Store

LIMITS = """
[models."gpt-4o-mini"]
enqueued_token_limit = 8000
"""


def _env(tmp_path: Path, base_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": API_KEY,
        "BATCHYARD_DB": str(tmp_path / "shared.db"),
        "BATCHYARD_POLL_MIN_SECONDS": "0.05",
        "BATCHYARD_POLL_MAX_SECONDS": "0.3",
        "BATCHYARD_SMALL_RUN_REQUESTS": "0",
        "BATCHYARD_SMALL_RUN_USD": "0",
        **extra,
    }


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchyard", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _owner_of(store: Store, run_id: str, pid: int) -> str | None:
    """The claim owner name of process `pid` once it holds in-flight claims or a shard."""
    for owner in store.in_flight_owners(run_id):
        if owner.split(":")[1] == str(pid):
            return owner
    return None


def _submit(tmp_path: Path, env: dict[str, str], file: Path, *args: str) -> str:
    done = run_cli(["submit", str(file), "--detach", "--json", *args], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["submit"]["run_id"])


SLOW_REALTIME = """
rate_limits = false
[clock]
time_scale = 3600.0
[latency]
fixed_ms = 250.0
"""


def test_four_drivers_on_one_run_one_killed_the_rest_finish_it_once(tmp_path: Path) -> None:
    # Half the lines batch (gpt-4o-mini, three waves through an 8,000-token queue), half
    # flex (gpt-5-mini, real time), under a deadline.
    (tmp_path / "batchyard.toml").write_text(LIMITS)
    file = write_sample(tmp_path / "requests.jsonl", 300)
    with sim_process(tmp_path, SLOW_REALTIME) as root:
        env = _env(tmp_path, f"{root}/v1", BATCHYARD_CONCURRENCY="4")
        run_id = _submit(tmp_path, env, file, "--deadline", "24h")
        with Store.open(tmp_path / "shared.db") as store:
            routes = {r.route for r in store.iter_requests(run_id)}
            waiting = store.list_events(run_id, kinds=["batch.waiting"])
        assert {r.value for r in routes if r} == {"batch", "flex"} and waiting

        drivers = [
            _start(["watch", run_id], env, tmp_path),
            _start(["poll", run_id, "--wait"], env, tmp_path),
            _start(["resume", run_id], env, tmp_path),
        ]
        victim = _start(["watch", run_id], env, tmp_path)
        # Kill the victim while it has real-time calls on the wire (its claims are in the
        # store under its pid), so the others must take its lines back.
        killed_owner = None
        deadline = time.monotonic() + 90
        with Store.open(tmp_path / "shared.db") as store:
            while killed_owner is None and victim.poll() is None:
                assert time.monotonic() < deadline, "the victim never claimed a line"
                killed_owner = _owner_of(store, run_id, victim.pid)
                time.sleep(0.01)
        assert killed_owner is not None, "the victim finished before it could be killed"
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)

        outputs = [d.communicate(timeout=240) for d in drivers]
        for proc, (out, err) in zip(drivers, outputs, strict=True):
            assert proc.returncode == 0, (proc.args, out[-2000:], err[-2000:])
        ledger = httpx2.get(f"{root}/_sim/ledger").json()
        remote = httpx2.get(
            f"{root}/v1/batches",
            params={"limit": 100},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ).json()["data"]

        out_file = tmp_path / "results.jsonl"
        fetched = run_cli(["fetch", run_id, "-o", str(out_file), "--json"], env, cwd=tmp_path)
        assert fetched.returncode == 0, fetched.stderr

    assert json.loads(fetched.stdout)["succeeded"] == 300
    ids = [json.loads(line)["custom_id"] for line in out_file.read_text().splitlines()]
    assert ids == [line["custom_id"] for line in sample_lines(300)]  # each once, in order
    with Store.open(tmp_path / "shared.db") as store:
        abandoned = {
            a.custom_id
            for a in store.list_attempts(run_id)
            if a.owner == killed_owner and a.outcome == "abandoned"
        }
        shards = store.list_batches(run_id)
    assert abandoned  # the killed process's calls were taken back and sent again
    billed: dict[str, int] = ledger["billed_custom_ids"]
    assert set(billed) == set(ids)
    # Only a line that was on the wire when its process died may have been billed twice.
    assert set(ledger["duplicates"]) <= abandoned
    tags = [b["metadata"].get("batchyard_shard") for b in remote]
    assert len(tags) == len(set(tags)) == len(shards) >= 3  # one provider batch per shard


def _status(env: dict[str, str], cwd: Path, run_id: str) -> dict[str, Any]:
    done = run_cli(["status", run_id, "--json"], env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _two_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Two batch files of 150 lines on one model (other custom_ids), with the queue limit
    that holds one shard at a time."""
    (tmp_path / "batchyard.toml").write_text(LIMITS)
    a = write_sample(tmp_path / "a.jsonl", 150, models=("gpt-4o-mini",))
    b = tmp_path / "b.jsonl"
    b.write_text(a.read_text().replace('"req-', '"b-'))
    return a, b


def test_a_run_left_alone_does_not_starve_the_next_one(tmp_path: Path) -> None:
    # Both runs are batch-only on one model whose queue holds one shard at a time. Run A is
    # submitted and never driven again; its first batch finishes remotely unobserved.
    a, b = _two_runs(tmp_path)
    fast = "rate_limits = false\n[clock]\ntime_scale = 3600.0\n"
    with sim_process(tmp_path, fast) as root:
        env = _env(tmp_path, f"{root}/v1")
        first = _submit(tmp_path, env, a, "--route", "batch")
        time.sleep(1.0)  # A's batch completes at the simulator; A's books still say running
        second = _submit(tmp_path, env, b, "--route", "batch")
        waited = run_cli(["poll", second, "--wait"], env, cwd=tmp_path, timeout=180)
        assert waited.returncode == 0, waited.stderr
        assert "150/150 finished" in waited.stdout
        left = _status(env, tmp_path, first)
    # B refreshed A's batch (state only): it is completed in the store, not applied, and
    # A's lines and results wait for A's own drivers.
    with Store.open(tmp_path / "shared.db") as store:
        (a_shard,) = store.list_batches(first)
        a_open = store.count_requests(first)
    assert a_shard.status is BatchStatus.COMPLETED and a_shard.applied_at is None
    assert not any(s is RequestStatus.SUCCEEDED for (_, s) in a_open)
    assert left["done"] is False


def test_a_waiting_run_names_the_run_that_holds_the_queue(tmp_path: Path) -> None:
    # Simulated time runs at real speed: A's batch holds the queue for hours.
    a, b = _two_runs(tmp_path)
    slow = "rate_limits = false\n[clock]\ntime_scale = 1.0\n"
    with sim_process(tmp_path, slow) as root:
        env = _env(tmp_path, f"{root}/v1")
        first = _submit(tmp_path, env, a, "--route", "batch")
        second = _submit(tmp_path, env, b, "--route", "batch")
        polled = run_cli(["poll", second], env, cwd=tmp_path)
        status = _status(env, tmp_path, second)
        human = run_cli(["status", second], env, cwd=tmp_path)
    assert polled.returncode == 0, polled.stderr
    for text in (polled.stdout, status["queue_wait"], human.stdout):
        assert f"run {first} holds" in text
        assert f"`batchyard watch {first}` or `batchyard cancel {first}`" in text
    assert status["batches"] == []  # nothing of B was sent
