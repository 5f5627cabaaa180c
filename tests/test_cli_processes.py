"""Separate processes, as a user's shell or cron would run them: submit in one, watch and
poll (side by side) in others, fetch in a last one; and Ctrl-C during watch is safe."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
from cli_support import ROOT, fast_config, run_cli, sample, sim_env
from simfixtures import billed_ids, running_server

from batchyard.samples import sample_lines


def test_submit_watch_and_poll_side_by_side_then_fetch(tmp_path: Path) -> None:
    file = sample(tmp_path, 60)
    with running_server(fast_config()) as server:
        env = {**sim_env(server.base_url), "BATCHYARD_DB": str(tmp_path / "shared.db")}
        submitted = run_cli(["submit", str(file), "--detach", "--json"], env, cwd=tmp_path)
        assert submitted.returncode == 0, submitted.stderr
        run_id = json.loads(submitted.stdout)["submit"]["run_id"]

        full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "batchyard"]
        watcher = subprocess.Popen(
            [*args, "watch", run_id],
            env=full,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        poller = subprocess.Popen(
            [*args, "poll", run_id, "--wait"],
            env=full,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        w_out, w_err = watcher.communicate(timeout=90)
        p_out, p_err = poller.communicate(timeout=90)
        assert watcher.returncode == 0, w_err
        assert poller.returncode == 0, p_err
        assert "(done)" in w_out and "60/60 finished" in p_out

        out = tmp_path / "results.jsonl"
        fetched = run_cli(["fetch", run_id, "-o", str(out), "--json"], env, cwd=tmp_path)
        assert fetched.returncode == 0, fetched.stderr
        assert json.loads(fetched.stdout)["succeeded"] == 60

        ledger = httpx2.get(f"{server.root}/_sim/ledger").json()
        ours = [
            b
            for b in server.state.batches.values()
            if (b.metadata or {}).get("batchyard_run") == run_id
        ]
        shards = {(b.metadata or {}).get("batchyard_shard") for b in ours}
    ids = [json.loads(line)["custom_id"] for line in out.read_text().splitlines()]
    assert ids == [line["custom_id"] for line in sample_lines(60)]  # each once, in order
    assert ledger["duplicates"] == []
    assert len(ours) == len(shards)  # never two batches for one shard


def test_ctrl_c_during_watch_exits_130_and_resume_carries_on(tmp_path: Path) -> None:
    file = sample(tmp_path, 8)
    with running_server(fast_config(clock={"time_scale": 1.0})) as server:
        env = {**sim_env(server.base_url), "BATCHYARD_DB": str(tmp_path / "shared.db")}
        submitted = run_cli(
            ["submit", str(file), "--route", "batch", "--detach", "--json"], env, cwd=tmp_path
        )
        assert submitted.returncode == 0, submitted.stderr
        run_id = json.loads(submitted.stdout)["submit"]["run_id"]
        watcher = subprocess.Popen(
            [sys.executable, "-m", "batchyard", "watch", run_id],
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert watcher.stderr is not None
        first = watcher.stderr.readline()  # the first progress line: it is working
        assert run_id in first
        time.sleep(0.5)
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=30)
        assert watcher.returncode == 130, err
        assert f"batchyard resume {run_id}" in err and "Traceback" not in err

        resumed = run_cli(["resume", run_id, "--detach", "--json"], env, cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["state"] == "running"
        ours = [
            b
            for b in server.state.batches.values()
            if (b.metadata or {}).get("batchyard_run") == run_id
        ]
        shards = {(b.metadata or {}).get("batchyard_shard") for b in ours}
        assert len(ours) == len(shards) == 2  # one per model; resume created none again


def test_sim_serve_answers_like_the_api_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchyard",
            "sim",
            "serve",
            "--port",
            str(port),
            "--time-scale",
            "600",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        banner = server.stderr.readline()
        assert f"http://127.0.0.1:{port}/v1" in banner and "x600" in banner
        env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": "sk-any"}
        for _ in range(100):
            verified = run_cli(["verify", "--json"], env, cwd=tmp_path)
            if verified.returncode == 0:
                break
            time.sleep(0.1)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "gpt-4o-mini" in json.loads(verified.stdout)["models"]
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert server.returncode in (0, 130)


def test_ctrl_c_during_real_time_work_lets_calls_finish_and_loses_nothing(
    tmp_path: Path,
) -> None:
    import re
    import sqlite3

    file = sample(tmp_path, 60)
    # Each call takes ~0.3 s, so several are on the wire when Ctrl-C comes.
    config = fast_config(clock={"time_scale": 1.0}, latency={"fixed_ms": 300.0})
    with running_server(config) as server:
        env = {
            **sim_env(server.base_url),
            "BATCHYARD_DB": str(tmp_path / "rt.db"),
            "BATCHYARD_CONCURRENCY": "4",
        }
        submitter = subprocess.Popen(
            [sys.executable, "-m", "batchyard", "submit", str(file), "--route", "realtime"],
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while len(server.state.ledger) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        submitter.send_signal(signal.SIGINT)
        _, err = submitter.communicate(timeout=30)
        assert submitter.returncode == 130, err
        assert "Stopping" in err and "batchyard resume" in err and "Traceback" not in err
        with sqlite3.connect(tmp_path / "rt.db") as db:
            statuses = dict(db.execute("SELECT status, count(*) FROM requests GROUP BY status"))
        assert "in_flight" not in statuses  # calls on the wire finished within the grace
        assert statuses.get("succeeded", 0) == len(server.state.ledger) < 60
        found = re.search(r"batchyard resume (run_\w+)", err)
        assert found is not None, err
        run_id = found.group(1)
        resumed = run_cli(["resume", run_id, "--json"], env, cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        billed = billed_ids(server.state)
        assert sorted(billed) == sorted(f"req-{i:06d}" for i in range(60))  # each once
