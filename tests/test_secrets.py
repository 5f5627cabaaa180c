"""The API key never reaches the store, the logs, the results or an error message."""

from __future__ import annotations

import os
from pathlib import Path

from cli_support import fast_config, run_cli, sample, sim_env

from batchyard.simulator.server import running_server

KEY = "sk-leakcheck-7f3a9c1e5b2d4680aa11"


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_key_is_nowhere_after_a_full_run(tmp_path: Path) -> None:
    requests = sample(tmp_path, 16)
    home = Path(os.environ["HOME"])
    with running_server(fast_config()) as server:
        env = {**sim_env(server.base_url), "OPENAI_API_KEY": KEY}
        env["BATCHYARD_DB"] = str(tmp_path / "secret-check.db")
        submitted = run_cli(
            ["submit", str(requests), "--route", "auto", "--wait", "-o", str(tmp_path / "o.jsonl")],
            env,
            cwd=tmp_path,
        )
        shown = run_cli(["config", "show"], env, cwd=tmp_path)
        verified = run_cli(["verify"], env, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    assert shown.returncode == 0 and verified.returncode == 0
    for proc in (submitted, shown, verified):
        assert KEY not in proc.stdout and KEY not in proc.stderr
    written = _files_under(tmp_path) + _files_under(home)
    assert any(p.name == "secret-check.db" for p in written)
    assert any(p.suffix == ".jsonl" and "log" in str(p) for p in written), "a log was written"
    for path in written:
        assert KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"


def test_key_is_not_in_an_error_message(tmp_path: Path) -> None:
    requests = sample(tmp_path, 3)
    env = {**sim_env("http://127.0.0.1:9/v1"), "OPENAI_API_KEY": KEY}
    env["BATCHYARD_DB"] = str(tmp_path / "e.db")
    failed = run_cli(["submit", str(requests), "--route", "batch"], env, cwd=tmp_path)
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr and failed.stderr.strip()
    assert KEY not in failed.stdout + failed.stderr
