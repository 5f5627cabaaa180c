"""Planning holds no record per line: the peak memory of `batchyard plan` on 200,000 lines
stays within a small constant of the same on 20,000 lines.

Each plan runs in its own process and its peak RSS (`ru_maxrss`, from `wait4`) is read by
the parent, so imports and the interpreter are the same fixed cost on both sides. A router
or intake that kept one Python object per line (about 400 bytes each with its costs) would
add some 70 MB between the two; the allowance is a fifth of that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMALL, LARGE = 20_000, 200_000
ALLOWANCE_MB = 15.0


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


def _plan_peak_mb(tmp_path: Path, lines: int) -> tuple[float, dict[str, object]]:
    """Peak RSS (MB) of `batchyard plan FILE --json` on `lines` lines, and its plan."""
    file = tmp_path / f"in{lines}.jsonl"
    _write(file, lines)
    out = tmp_path / f"plan{lines}.json"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    argv = [sys.executable, "-m", "batchyard", "--db", str(tmp_path / f"{lines}.db")]
    with out.open("wb") as stdout:
        proc = subprocess.Popen(
            [*argv, "plan", str(file), "--route", "batch", "--json"],
            cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, err.decode()
    return usage.ru_maxrss / 1024, json.loads(out.read_text())


@pytest.mark.slow
def test_plan_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    small, small_plan = _plan_peak_mb(tmp_path, SMALL)
    large, large_plan = _plan_peak_mb(tmp_path, LARGE)
    # both plans are whole: every line assigned, in input order
    assert small_plan["requests"] == SMALL and large_plan["requests"] == LARGE
    assignments = large_plan["assignments"]
    assert isinstance(assignments, list) and len(assignments) == LARGE
    assert [a["custom_id"] for a in assignments[:3]] == ["q0", "q1", "q2"]
    assert {a["route"] for a in assignments} == {"batch"}
    assert large - small <= ALLOWANCE_MB, (
        f"peak RSS {small:.0f} MB at {SMALL:,} lines, {large:.0f} MB at {LARGE:,} lines"
    )
