"""A fan-out run end to end: every variant routed, answered, grouped and costed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import fast_config, invoke, point_at
from simfixtures import billed_ids

import batchyard
from batchyard.build import split_variant
from batchyard.simulator.config import SimConfig
from batchyard.simulator.server import running_server

TEMPLATE = """\
model = "gpt-4o-mini"
custom_id = "q-{{ id }}"
[body]
max_tokens = 200
[[body.messages]]
role = "user"
content = "{{ question }}"
"""


@pytest.mark.parametrize("route", ["batch", "realtime"])
def test_a_model_sweep_is_answered_grouped_and_costed_by_variant(
    tmp_path: Path, route: str
) -> None:
    (tmp_path / "prompt.toml").write_text(TEMPLATE)
    (tmp_path / "data.csv").write_text("id,question\n" + "".join(f"{i},Q{i}?\n" for i in range(5)))
    config = SimConfig.model_validate({"batch": {"validation_seconds": 1, "turnaround_seconds": 5}})
    with running_server(config) as server:
        settings = batchyard.load_settings(
            api_key="sk-test",
            base_url=server.base_url,
            db=tmp_path / "by.db",
            poll_min_seconds=0.05,
            poll_max_seconds=0.2,
        )
        with batchyard.Batchyard(settings) as by:
            run = by.submit(
                tmp_path / "data.csv",
                template=tmp_path / "prompt.toml",
                vary=["model=gpt-4o-mini,gpt-4.1-nano"],
                samples=2,
                route=route,
            )
            assert run.accepted == 20  # the router and the budget saw every variant
            status = by.wait(run.run_id)
            by.fetch(run.run_id, tmp_path / "flat.jsonl")
            report = by.fetch(run.run_id, tmp_path / "grouped.jsonl", group=True)
            costs = by.costs(run.run_id)
        billed = sorted(billed_ids(server.state))
    assert status.done and status.succeeded == 20
    flat = [json.loads(x) for x in (tmp_path / "flat.jsonl").read_text().splitlines()]
    ids = [x["custom_id"] for x in flat]
    assert billed == sorted(ids)
    assert [split_variant(i)[0] for i in ids] == [f"q-{i}" for i in range(5) for _ in range(4)]
    grouped = [json.loads(x) for x in (tmp_path / "grouped.jsonl").read_text().splitlines()]
    assert report.lines == 5
    assert [g["custom_id"] for g in grouped] == [f"q-{i}" for i in range(5)]
    assert list(grouped[0]["variants"]) == [
        "model=gpt-4o-mini,sample=1",
        "model=gpt-4o-mini,sample=2",
        "model=gpt-4.1-nano,sample=1",
        "model=gpt-4.1-nano,sample=2",
    ]
    nano = grouped[3]["variants"]["model=gpt-4.1-nano,sample=2"]
    assert nano["custom_id"] == "q-3#model=gpt-4.1-nano,sample=2"
    assert nano["response"]["body"]["model"].startswith("gpt-4.1-nano")
    assert [(v.variant, v.requests, v.succeeded) for v in costs.variants] == [
        ("model=gpt-4o-mini", 10, 10),
        ("model=gpt-4.1-nano", 10, 10),
    ]
    assert sum(v.actual for v in costs.variants) == pytest.approx(costs.actual)
    assert costs.variants[0].actual > costs.variants[1].actual > 0  # nano is cheaper


def test_cli_submit_template_then_fetch_group_and_costs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "prompt.toml").write_text(TEMPLATE)
    (tmp_path / "data.csv").write_text("id,question\n1,A?\n2,B?\n")
    with running_server(fast_config()) as server:
        point_at(monkeypatch, server.base_url)
        done = invoke(
            "submit",
            str(tmp_path / "data.csv"),
            "--template",
            str(tmp_path / "prompt.toml"),
            "--vary",
            "temperature=0,1",
            "--route",
            "batch",
            "--wait",
            "-o",
            str(tmp_path / "r.jsonl"),
            "--json",
        )
        assert done.exit_code == 0, done.stderr
        run_id = json.loads(done.stdout)["run_id"]
        done = invoke("fetch", run_id, "-o", str(tmp_path / "g.jsonl"), "--group", "--json")
        assert done.exit_code == 0, done.stderr
        costs = invoke("costs", run_id, "--json")
        table = invoke("costs", run_id)
    grouped = [json.loads(x) for x in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert [(g["custom_id"], list(g["variants"])) for g in grouped] == [
        ("q-1", ["temperature=0", "temperature=1"]),
        ("q-2", ["temperature=0", "temperature=1"]),
    ]
    assert [v["variant"] for v in json.loads(costs.stdout)["variants"]] == [
        "temperature=0",
        "temperature=1",
    ]
    assert "by variant" in table.stdout and "temperature=1" in table.stdout
