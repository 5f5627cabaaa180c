"""The live view: what it shows (bars, done/total, rate, ETA, batches, cost, deadline and
escalation point, times relative to when it is drawn), that it moves during `submit` with
real-time work on a real pseudo-terminal, and plain lines when output is not a terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import ROOT, fast_config, invoke, json_out, point_at, sample, sim_env
from cli_support import counts as route_counts
from rich.console import Console
from simfixtures import RunningServer, running_server

from batchyard.cli.live import Rates, live_view, path_counts
from batchyard.cli.render import percent, status_line
from batchyard.models import Route
from batchyard.orchestrator._reporting.reports import BatchInfo, RunStatus

_NOW = 1_800_000_000.0


def _status(counts: dict[str, int], **extra: object) -> RunStatus:
    fields: dict[str, object] = {
        "run_id": "run_x",
        "state": "running",
        "source_path": "r.jsonl",
        "created_at": _NOW - 60,
        "deadline_at": None,
        "budget": None,
        "route_override": "auto",
        "requests": sum(counts.values()),
        "counts": route_counts(counts),
        "batches": [],
        "estimated_cost": 1.0,
        "actual_cost": 0.25,
        "expected_finish": None,
        "deadline_ok": None,
        "escalation_at": {},
        "last_errors": {},
        "reasons": [],
        "done": False,
    }
    fields.update(extra)
    return RunStatus(**fields)  # type: ignore[arg-type]


def _text(renderable: object, width: int = 160) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


def test_percent_never_rounds_up_to_done() -> None:
    assert percent(2_990, 3_000) == 99
    assert percent(3_000, 3_000) == 100
    assert percent(0, 0) == 100
    line = status_line(_status({"standard/succeeded": 2_990, "standard/routed": 10}))
    assert "2,990/3,000 finished (99%)" in line


def test_rates_come_from_observed_throughput() -> None:
    rates = Rates()
    assert rates.rate(Route.STANDARD) is None
    for i, done in enumerate((0, 10, 30, 60)):
        rates.observe(
            _NOW + i * 2, _status({"standard/succeeded": done, "standard/routed": 100 - done})
        )
    assert rates.rate(Route.STANDARD) == pytest.approx(60 / 6)
    assert rates.rate(Route.BATCH) is None


def test_the_view_shows_every_path_batch_cost_deadline_and_escalation() -> None:
    batch = BatchInfo(7, "batch_abc", "gpt-4o-mini", "in_progress", 500, 120, 3, _NOW, _NOW + 1800)
    status = _status(
        {
            "standard/succeeded": 2_990,
            "standard/in_flight": 10,
            "batch/submitted": 500,
            "flex/succeeded": 20,
        },
        batches=[batch],
        deadline_at=_NOW + 3 * 3600,
        deadline_ok=True,
        escalation_at={"gpt-4o-mini": _NOW + 2 * 3600},
        budget=5.0,
    )
    rates = Rates()
    rates.observe(_NOW - 10, _status({"standard/succeeded": 2_890, "standard/in_flight": 110}))
    rates.observe(_NOW, status)
    text = _text(live_view(status, rates, _NOW))
    assert "3,010/3,520 finished (85%)" in text  # the run counts lines it holds
    assert re.search(r"standard\s+\S+\s+99%\s+2,990/3,000\s+10\.0/s\s+in 1s", text), text
    assert re.search(r"flex\s+\S+\s+100%\s+20/20\s+-\s+done", text), text
    # the batch path counts what its running batch reports done (request_counts)
    assert re.search(r"batch .*\s24%\s+123/500\s+-\s+expected .*\(in 30m\)", text), text
    assert "batch_abc" in text and "in_progress" in text
    assert re.search(r"in_progress\s+120\s+3\s+500", text)  # the batch's request_counts
    assert "cost so far $0.2500 of $1.00 expected; budget $5.00" in text
    assert "(in 3h00m): will be met" in text
    assert "escalation point for gpt-4o-mini" in text and "(in 2h00m)" in text
    # Relative times are computed when drawn: ten minutes later they say so.
    later = _text(live_view(status, rates, _NOW + 600))
    assert "(in 2h50m): will be met" in later and "(in 1h50m)" in later


def test_path_counts_group_by_route() -> None:
    counts = path_counts(_status({"batch/succeeded": 3, "batch/failed": 1, "standard/routed": 4}))
    assert counts == {"standard": (0, 4), "batch": (4, 4)}


# ---- end to end -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_realtime() -> Iterator[RunningServer]:
    """Real-time answers take ~150 ms each: 60 requests two at a time take a few seconds."""
    with running_server(fast_config(latency={"fixed_ms": 150.0})) as server:
        yield server


def _env(server: RunningServer, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, **sim_env(server.base_url)}
    env.update(
        BATCHYARD_CONCURRENCY="2",
        BATCHYARD_DB=str(tmp_path / "live.db"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        TERM="xterm-256color",
        COLUMNS="140",
        LINES="50",
    )
    return env


def _read_pty(fd: int, proc: subprocess.Popen[bytes], limit: float) -> bytes:
    """Everything the program writes to the terminal until it exits (at most `limit` s)."""
    out = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def _in_terminal(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run `batchyard ARGS` on a pseudo-terminal, as a person would; its exit code and all
    it drew."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchyard", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=cwd,
        close_fds=True,
    )
    os.close(slave)
    try:
        screen = _read_pty(master, proc, limit=90).decode("utf-8", "replace")
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, screen


def _assert_moving_to_60(screen: str) -> None:
    """The view of a 60-line real-time run moved, never went back, ended at 60, and drew the
    standard path's bar with its rate and ETA."""
    frames = [int(n) for n in re.findall(r"(\d+)/60 finished", screen)]
    moving = sorted({n for n in frames if 0 < n < 60})
    assert len(moving) >= 2, f"the view did not move: {frames}"
    assert frames == sorted(frames), frames  # never goes back
    assert frames[-1] == 60
    assert re.search(r"standard\s+\S+\s+\d+%\s+\d+/60\s+[\d.]+/s\s+in \d", screen), screen[-3000:]


def test_the_live_view_moves_during_submit_with_real_time_work(
    slow_realtime: RunningServer, tmp_path: Path
) -> None:
    file = sample(tmp_path, 60)
    code, screen = _in_terminal(
        ["submit", str(file), "--route", "realtime"], _env(slow_realtime, tmp_path), tmp_path
    )
    assert code == 0, screen[-2000:]
    _assert_moving_to_60(screen)
    assert "cost so far" in screen


def test_without_a_terminal_the_view_is_plain_lines(
    slow_realtime: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(monkeypatch, slow_realtime.base_url)
    monkeypatch.setenv("BATCHYARD_CONCURRENCY", "4")
    result = invoke("submit", str(sample(tmp_path, 12)), "--route", "realtime")
    assert result.exit_code == 0, result.stderr
    assert "\x1b[" not in result.stderr  # no cursor movement, no colour
    assert result.stderr.count("12/12 finished (100%)") == 1
    done = json_out(invoke("status", "--json"))
    assert done["done"] is True


def test_stored_reasons_hold_no_relative_times(
    slow_realtime: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchyard.store import Store

    point_at(monkeypatch, slow_realtime.base_url)
    submitted = invoke("submit", str(sample(tmp_path, 30)), "--deadline", "2h", "--detach")
    assert submitted.exit_code == 0, submitted.stderr
    store = Store.open(tmp_path / "batchyard.db")
    try:
        (run,) = store.list_runs()
        messages = [e.message for e in store.list_events(run.id)]
        reasons = [r.route_reason for r in store.iter_requests(run.id) if r.route_reason]
    finally:
        store.close()
    assert messages and reasons
    for text in messages + reasons:
        assert not re.search(r"\(in \d|\bago\)", text), text


def test_the_live_view_moves_during_resume(
    slow_realtime: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(slow_realtime, tmp_path)
    monkeypatch.setenv("BATCHYARD_DB", env["BATCHYARD_DB"])
    point_at(monkeypatch, slow_realtime.base_url)
    file = sample(tmp_path, 60)
    submitted = invoke("submit", str(file), "--route", "realtime", "--detach", "--json")
    assert submitted.exit_code == 0, submitted.stderr
    run_id = json_out(submitted)["run_id"]
    code, screen = _in_terminal(["resume", run_id], env, tmp_path)
    assert code == 0, screen[-2000:]
    _assert_moving_to_60(screen)
    assert run_id in screen
