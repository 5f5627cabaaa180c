"""`batchyard models`, the stale-table notice, and user text printed as text (no markup)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import invoke, json_out
from freezegun import freeze_time


def _line(model: str, i: int = 0) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                       "body": body}) + "\n"  # fmt: skip


def test_models_lists_the_table_its_date_and_where_values_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prices = {"input": 1.0, "output": 2.0, "batch_input": 0.5, "batch_output": 1.0}
    monkeypatch.setenv(
        "BATCHYARD_MODELS", json.dumps({"gpt-[b]mine": prices, "gpt-4o-mini": {"rpm": 7}})
    )
    data = json_out(invoke("models", "--json"))
    assert data["date"] == "2026-12-01" and data["limits_tier"] == "Tier 1"
    rows = {m["name"]: m for m in data["models"]}
    assert rows["gpt-6-sol"]["from"] == "shipped" and rows["gpt-6-sol"]["sources"]["prices"]
    assert rows["gpt-4o-mini"]["from"] == "shipped; batchyard.toml: rpm"
    assert rows["gpt-4o-mini"]["rpm"] == 7
    assert rows["gpt-[b]mine"]["from"] == "batchyard.toml"
    shown = invoke("models")
    assert shown.exit_code == 0 and "dated 2026-12-01" in shown.stdout
    assert "gpt-[b]mine" in shown.stdout  # user text is not markup
    assert "gpt-5.6-sol" in shown.stdout and "ft:gpt-4o-mini" in shown.stdout


def test_plan_prices_snapshots_fine_tuned_and_current_models_offline(tmp_path: Path) -> None:
    names = ["gpt-4o-mini-2024-07-18", "ft:gpt-4o-mini:org:x:abc", "gpt-6.1-terra", "gpt-5.6"]
    file = tmp_path / "in.jsonl"
    file.write_text("".join(_line(name, i) for i, name in enumerate(names)))
    data = json_out(invoke("plan", str(file), "--json"))
    rows = {row["model"]: row for row in data["rows"]}
    assert set(rows) == set(names)
    assert all(row["cost"] > 0 for row in rows.values())


def test_a_refused_name_is_printed_as_sent(tmp_path: Path) -> None:
    file = tmp_path / "in.jsonl"
    file.write_text(_line("ft:gpt-5:org:x:abc"))
    result = invoke("plan", str(file))
    assert result.exit_code == 3
    assert "ft:gpt-5:org:x:abc" in result.stderr and "❌" not in result.stderr
    assert '[models."ft:gpt-5"]' in result.stderr


@pytest.mark.parametrize(("today", "said"), [("2027-02-28", False), ("2027-03-02", True)])
def test_plan_says_once_on_stderr_when_the_table_is_old(
    tmp_path: Path, today: str, said: bool
) -> None:
    file = tmp_path / "in.jsonl"
    file.write_text(_line("gpt-4o-mini"))
    with freeze_time(today):
        result = invoke("plan", str(file))
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "model table is dated" in line]
    assert len(notes) == (1 if said else 0)
    if said:
        assert "2026-12-01" in notes[0] and "batchyard.toml" in notes[0]
