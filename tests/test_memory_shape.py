"""No command holds a record per line: the peak memory of `batchyard plan`, of
`batchyard submit --detach`, of `batchyard status` and of `batchyard fetch` on 200,000
lines stays within a small constant of the same on 20,000 lines.

Each command runs in its own process and its peak RSS (`ru_maxrss`, from `wait4`) is read
by the parent, so imports and the interpreter are the same fixed cost on both sides. A
router, intake, recorder or writer that kept one Python object per line (about 400 bytes
each with its costs) would add some 70 MB between the two; the allowance is a fifth of that.
Each test runs twice: with `workers = 1`, where both files are checked in the command's own
process, and with two workers, where the larger file (about 40 MB, over the 32 MB line) is
checked in parts by worker processes and the smaller is not; `ru_maxrss` from `wait4` is the
largest peak of the command and its workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import API_KEY, ROOT, sim_process

from batchyard.models import RequestStatus
from batchyard.store import Result, Store

SMALL, LARGE = 20_000, 200_000
ALLOWANCE_MB = 15.0
WORKERS = pytest.mark.parametrize("workers", ["1", "2"], ids=["one-process", "two-workers"])


def _write(path: Path, lines: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(lines):
            body = {
                "model": ("gpt-4o-mini", "gpt-4.1-mini")[i % 2],
                "messages": [{"role": "user", "content": f"question {i} about the queue"}],
                "max_completion_tokens": 100 + i % 50,
            }
            line = {"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions"}
            f.write(json.dumps({**line, "body": body}) + "\n")


def _peak_mb(
    tmp_path: Path, args: list[str], workers: str, env: dict[str, str] | None = None
) -> tuple[float, str]:
    """Peak RSS (MB) of `batchyard ARGS` in a process of its own, and what it printed."""
    out = tmp_path / "out.txt"
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **(env or {})}
    full.update(PYTHONPATH=str(ROOT), BATCHYARD_WORKERS=workers)
    with out.open("wb") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchyard", *args],
            cwd=ROOT, env=full, stdout=stdout, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, err.decode()
    return usage.ru_maxrss / 1024, out.read_text()


def _plan_peak_mb(tmp_path: Path, lines: int, workers: str) -> tuple[float, dict[str, object]]:
    """Peak RSS (MB) of `batchyard plan FILE --json` on `lines` lines, and its plan."""
    file = tmp_path / f"in{lines}.jsonl"
    _write(file, lines)
    db = str(tmp_path / f"{lines}.db")
    plan = ["--db", db, "plan", str(file), "--route", "batch", "--json"]
    peak, out = _peak_mb(tmp_path, plan, workers)
    return peak, json.loads(out)


def _answer_all(db: Path, run_id: str, lines: int) -> None:
    """Every line of the run answered, as a finished batch's output file is applied (the
    lines are marked sent by one UPDATE: taking them through the simulator's queue limits
    is not what this test is about)."""
    with Store.open(db) as store:
        store.db.execute(
            "UPDATE requests SET status = 'submitted', attempts = 1 "
            "WHERE run_id = ? AND status = 'routed'",
            [run_id],
        )
        body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}
        store.apply_results(
            run_id,
            (
                Result(f"q{i}", RequestStatus.SUCCEEDED, 200, body, input_tokens=9, output_tokens=1)
                for i in range(lines)
            ),
        )
        store.store_answer_lines(run_id)


def _submit_and_fetch_peaks_mb(
    tmp_path: Path, root: str, lines: int, workers: str
) -> tuple[float, float, float]:
    """Peak RSS (MB) of `submit FILE --route batch --detach`, then of `status` and `fetch`
    of the answered run, on `lines` lines; the fetched file holds every line, in order."""
    file = tmp_path / f"in{lines}.jsonl"
    _write(file, lines)
    db = tmp_path / f"{lines}.db"
    api = {"OPENAI_BASE_URL": f"{root}/v1", "OPENAI_API_KEY": API_KEY}
    submit = ["--db", str(db), "submit", str(file), "--route", "batch", "--detach", "--json"]
    submitted, out = _peak_mb(tmp_path, submit, workers, api)
    run_id = json.loads(out)["run_id"]
    _answer_all(db, run_id, lines)
    status = ["--db", str(db), "status", run_id, "--json"]
    summed, out = _peak_mb(tmp_path, status, workers, api)
    assert json.loads(out)["requests"] == lines
    merged = tmp_path / f"results{lines}.jsonl"
    fetch = ["--db", str(db), "fetch", run_id, "-o", str(merged)]
    fetched, _ = _peak_mb(tmp_path, fetch, workers, api)
    with merged.open("rb") as f:
        ids = [json.loads(line)["custom_id"] for line in f]
    assert ids == [f"q{i}" for i in range(lines)]
    return submitted, summed, fetched


@pytest.mark.slow
@WORKERS
def test_plan_memory_does_not_grow_with_the_file(tmp_path: Path, workers: str) -> None:
    small, small_plan = _plan_peak_mb(tmp_path, SMALL, workers)
    large, large_plan = _plan_peak_mb(tmp_path, LARGE, workers)
    # both plans are whole: every line assigned, in input order
    assert small_plan["requests"] == SMALL and large_plan["requests"] == LARGE
    assignments = large_plan["assignments"]
    assert isinstance(assignments, list) and len(assignments) == LARGE
    assert [a["custom_id"] for a in assignments[:3]] == ["q0", "q1", "q2"]
    assert {a["route"] for a in assignments} == {"batch"}
    assert large - small <= ALLOWANCE_MB, (
        f"peak RSS {small:.0f} MB at {SMALL:,} lines, {large:.0f} MB at {LARGE:,} lines"
    )


@pytest.mark.slow
@WORKERS
def test_submit_and_fetch_memory_does_not_grow_with_the_file(tmp_path: Path, workers: str) -> None:
    with sim_process(tmp_path) as root:
        small = _submit_and_fetch_peaks_mb(tmp_path, root, SMALL, workers)
        large = _submit_and_fetch_peaks_mb(tmp_path, root, LARGE, workers)
    for step, before, after in zip(("submit", "status", "fetch"), small, large, strict=True):
        assert after - before <= ALLOWANCE_MB, (
            f"{step}: peak RSS {before:.0f} MB at {SMALL:,} lines, "
            f"{after:.0f} MB at {LARGE:,} lines"
        )
