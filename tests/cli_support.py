"""Helpers for the CLI tests: invoke the real app, point it at a simulator on a loopback port.

The CLI builds its Orchestrator from the environment exactly as it does for a user, so a
test only sets `OPENAI_BASE_URL` / `OPENAI_API_KEY` (and fast polling) and runs commands.
The simulator's clock runs 3600x, so a 30-minute batch returns in half a real second.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from typer.testing import CliRunner, Result

from batchyard.cli import app
from batchyard.models import RequestStatus, Route
from batchyard.orchestrator import RouteStatus
from batchyard.samples import write_sample
from batchyard.simulator import SimConfig, load_config

__all__ = [
    "API_KEY",
    "ROOT",
    "counts",
    "fast_config",
    "free_port",
    "invoke",
    "json_out",
    "point_at",
    "run_cli",
    "sample",
    "sim_env",
    "sim_process",
]

API_KEY = "sk-test-cli-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent


def fast_config(**overrides: Any) -> SimConfig:
    """Simulator: clock x3600, no rate limits (the CLI tests are about the CLI)."""
    overrides.setdefault("clock", {"time_scale": 3600.0})
    overrides.setdefault("rate_limits", False)
    return load_config(None, **overrides)


def sim_env(base_url: str) -> dict[str, str]:
    """What a user would export to use batchyard against the simulator, plus fast polling
    and no small-run shortcut (so small test files still go through the Batch API)."""
    return {
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": API_KEY,
        "BATCHYARD_POLL_MIN_SECONDS": "0.05",
        "BATCHYARD_POLL_MAX_SECONDS": "0.3",
        "BATCHYARD_SMALL_RUN_REQUESTS": "0",
        "BATCHYARD_SMALL_RUN_USD": "0",
    }


def point_at(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    for name, value in sim_env(base_url).items():
        monkeypatch.setenv(name, value)


def sample(tmp_path: Path, count: int = 24, name: str = "requests.jsonl") -> Path:
    return write_sample(tmp_path / name, count)


def invoke(*args: str) -> Result:
    """Run `batchyard ARGS` in-process; stdout and stderr kept apart."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def json_out(result: Result) -> Any:
    """The one JSON document a `--json` command printed on stdout."""
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def run_cli(
    args: Sequence[str],
    env: dict[str, str],
    *,
    cwd: Path,
    timeout: float = 60.0,
    python: Sequence[str] = ("-m", "batchyard"),
) -> subprocess.CompletedProcess[str]:
    """`python -m batchyard ARGS` in a separate process, as a user (or cron) would run it
    (`python` replaces `-m batchyard`, e.g. with a script path)."""
    full = {**os.environ, **env}
    # The batchyard under test, whatever is installed (an old editable install may predate
    # the package's __init__).
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *python, *args],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def counts(short: dict[str, int]) -> dict[RouteStatus, int]:
    """`RunStatus.counts` from a test's shorthand {"batch/succeeded": 3, "-/pending": 1}."""
    out: dict[RouteStatus, int] = {}
    for key, n in short.items():
        route, _, status = key.partition("/")
        out[RouteStatus(None if route == "-" else Route(route), RequestStatus(status))] = n
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def sim_process(tmp_path: Path, config: str = "") -> Iterator[str]:
    """`batchyard sim serve` in its own process; yields its root URL (without /v1)."""
    cfg = tmp_path / "sim.toml"
    cfg.write_text(config)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchyard", "sim", "serve", "--port", str(port), "--config", cfg],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # a loaded machine imports slowly
        while True:
            assert proc.poll() is None, "the simulator exited"
            assert time.monotonic() < deadline, "the simulator did not start in 240 s"
            try:
                if httpx2.get(f"{root}/_sim/clock", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.1)
        yield root
    finally:
        proc.terminate()
        proc.wait(timeout=30)
