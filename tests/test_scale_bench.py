"""The scale benchmark runs: it generates a file, measures the floor and batchyard's steps
in child processes (peak RSS, `ru_maxrss`, is a per-process figure) and prints its table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "scale_bench.py"


def _env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}


def test_bench_prints_its_table(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--lines", "300", "--steps", "plan"],
        capture_output=True, text=True, check=True, cwd=ROOT, env=_env(tmp_path), timeout=600,
    )  # fmt: skip
    table = out.stdout
    assert "300 lines" in table
    assert "| floor |" in table and "| plan |" in table
    assert "peak RSS of batchyard" in table
