"""`batchyard prune` (finished runs only, learned facts kept, space reclaimed, `--dry-run`,
human and `--json`) and the log file (rotation at a bounded size, the documented keys)."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import fast_config, invoke, json_out, point_at, sample
from simfixtures import RunningServer, running_server

from batchyard import logs
from batchyard.store import Store


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningServer]:
    with running_server(fast_config()) as server:
        yield server


@pytest.fixture
def env(sim: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    point_at(monkeypatch, sim.base_url)
    return sim


def _finished_run(tmp_path: Path, n: int, name: str) -> str:
    done = invoke("submit", str(sample(tmp_path, n, name)), "--route", "batch", "--wait", "--json")
    assert done.exit_code == 0, done.stderr
    run_id: str = json_out(done)["run_id"]
    return run_id


def _open_run(db: Path) -> str:
    with Store.open(db) as store:
        return store.create_run(
            source_path="open.jsonl", source_sha256="0" * 64, endpoint="/v1/chat/completions",
            models=["gpt-4o-mini"],
        )  # fmt: skip


def test_prune_removes_finished_runs_and_keeps_what_was_learned(
    env: RunningServer, tmp_path: Path
) -> None:
    db = tmp_path / "batchyard.db"
    old = _finished_run(tmp_path, 30, "a.jsonl")
    kept = _finished_run(tmp_path, 6, "b.jsonl")
    open_run = _open_run(db)
    with Store.open(db) as store:
        learned_before = store.output_evidence(min_samples=1)
        batches_before = len(store.list_batches(old))
    assert batches_before >= 1

    dry = invoke("prune", old, open_run, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert f"{old} (completed" in dry.stdout and "would remove 30 request(s)" in dry.stdout
    assert f"{open_run} stays: it is pending" in dry.stdout
    assert "Dry run: nothing removed" in dry.stdout
    assert json_out(invoke("status", old, "--json"))["requests"] == 30
    fetched = invoke("fetch", old, "-o", str(tmp_path / "o.jsonl"))
    assert fetched.exit_code == 0  # still there after a dry run

    result = invoke("prune", old, open_run, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json_out(result)
    assert [r["run_id"] for r in doc["runs"]] == [old]
    assert doc["runs"][0]["requests"] == 30 and doc["vacuumed"] is True
    assert open_run in doc["skipped"]

    with Store.open(db) as store:
        # What the router learned survives: batches (turnaround, cancel latency), output
        # lengths, the run's totals.
        assert len(store.list_batches(old)) == batches_before
        learned_after = store.output_evidence(min_samples=1)
        assert learned_after.keys() == learned_before.keys()
        for key, before in learned_before.items():
            assert learned_after[key].mean == pytest.approx(before.mean)
            assert learned_after[key].high >= before.high
        assert store.get_run(old).pruned_at is not None
        assert store.count_requests(kept)  # the other finished run is untouched
    with sqlite3.connect(db) as conn:
        assert (
            conn.execute("SELECT count(*) FROM requests WHERE run_id = ?", (old,)).fetchone()[0]
            == 0
        )
        assert (
            conn.execute("SELECT count(*) FROM events WHERE run_id = ?", (old,)).fetchone()[0] == 0
        )

    gone = invoke("fetch", old, "-o", str(tmp_path / "o.jsonl"), "--json")
    assert gone.exit_code == 1 and "was pruned" in gone.stderr
    assert json.loads(gone.stdout)["error"]["type"] == "NotFound"
    again = invoke("prune", old)
    assert again.exit_code == 0 and "it was pruned already" in again.stdout


def test_open_runs_keep_their_history_even_against_raw_sql(tmp_path: Path) -> None:
    db = tmp_path / "batchyard.db"
    run_id = _open_run(db)
    with sqlite3.connect(db) as conn, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))


def test_prune_without_runs_takes_only_old_finished_runs(
    env: RunningServer, tmp_path: Path
) -> None:
    run_id = _finished_run(tmp_path, 4, "c.jsonl")
    recent = invoke("prune", "--dry-run")
    assert recent.exit_code == 0 and "Nothing to prune." in recent.stdout  # default 30d
    everything = json_out(invoke("prune", "--older-than", "0s", "--dry-run", "--json"))
    assert [r["run_id"] for r in everything["runs"]] == [run_id]
    bad = invoke("prune", "--older-than", "a while", "--json")
    assert bad.exit_code == 2
    assert json.loads(bad.stdout)["error"]["details"] == {"param": "--older-than"}


def test_forget_learned_removes_the_runs_entirely(env: RunningServer, tmp_path: Path) -> None:
    run_id = _finished_run(tmp_path, 4, "d.jsonl")
    result = invoke("prune", run_id, "--forget-learned")
    assert result.exit_code == 0, result.stderr
    assert "are gone too" in result.stdout
    assert invoke("status", run_id).exit_code == 1


# ---- logs -------------------------------------------------------------------------------------
def test_logs_rotate_at_a_bounded_size_and_have_the_documented_keys(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "batchyard.jsonl"
    assert logs.setup(path, max_bytes=4_000, backups=2) == path
    log = logging.getLogger("batchyard.test")
    try:
        for i in range(200):
            log.info("realtime", extra={"event": "realtime", "data": {"i": i, "run_id": "r"}})
        log.warning("plain message", extra={"run_id": "r"})
    finally:
        logs.setup(tmp_path / "elsewhere.jsonl")  # release the file
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["batchyard.jsonl", "batchyard.jsonl.1", "batchyard.jsonl.2"]
    assert all((path.parent / f).stat().st_size <= 4_000 + 400 for f in files)
    assert all((path.parent / f).stat().st_mode & 0o077 == 0 for f in files)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        assert set(logs.KEYS) <= set(record) <= {*logs.KEYS, "error"}
    assert records[-1]["event"] == "plain message" and records[-1]["data"] == {"run_id": "r"}
    assert records[0]["event"] == "realtime" and records[0]["data"]["run_id"] == "r"


def test_the_readme_documents_the_log_keys_and_rotation() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for key in logs.KEYS:
        assert f"`{key}`" in readme
    assert f"{logs.MAX_BYTES // 1_048_576} MiB" in readme and f"{logs.BACKUPS} older" in readme
