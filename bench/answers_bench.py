"""Benchmark: the share of bad answers a run delivers without answer checks and with them.

The embedded simulator (in-process, simulated clock, no network) answers a file of chat
requests, half of them asking for JSON against a schema, with bad answers at fixed rates:
truncated, content-filtered, refused and malformed JSON (`[answers]`, docs/simulator.md).
The same file runs twice on one route, once with `--check none` (batchyard before checks:
every 200 is a success) and once with the default checks and re-queues. Each delivered
answer (a line fetched as succeeded) is then judged by every shipped check; "bad delivered"
is the share of lines whose delivered answer is bad. Lines that stay bad after their
re-queues are not delivered as answers: they end `invalid` (exit code 5, in --errors).

    python bench/answers_bench.py                # 400 lines, 5% of each fault, real time
    python bench/answers_bench.py --lines 1000 --rate 0.1 --route batch
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx2
import openai

from batchyard.checks import Answer, resolve_checks, run_checks
from batchyard.config import load_settings
from batchyard.orchestrator import Orchestrator
from batchyard.simulator import create_app, load_config

SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "verdict",
        "schema": {
            "type": "object",
            "properties": {"label": {"enum": ["spam", "ham"]}, "score": {"type": "integer"}},
            "required": ["label", "score"],
            "additionalProperties": False,
        },
    },
}


def lines(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        body: dict[str, Any] = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Message {i}: is this spam?"}],
            "max_completion_tokens": 400,
        }
        if i % 2:
            body["response_format"] = SCHEMA
        out.append(
            {"custom_id": f"m-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        )
    return out


async def one_run(
    path: Path, workdir: Path, rate: float, route: str, checks: list[str] | None
) -> dict[str, Any]:
    rates = {
        "truncated_rate": rate,
        "content_filter_rate": rate,
        "refusal_rate": rate,
        "malformed_json_rate": rate,
    }
    app = create_app(load_config(None, clock={"time_scale": 0.0}, rate_limits=False, answers=rates))
    state = app.state.sim
    client = openai.AsyncOpenAI(
        api_key="sk-bench",
        base_url="http://sim/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)),
    )
    settings = load_settings(
        api_key="sk-bench", db=workdir / "by.db", small_run_requests=0, small_run_usd=0
    )

    async def sleep(seconds: float) -> None:
        state.clock.advance(seconds)

    async with Orchestrator(
        settings, client=client, clock=state.clock.now, sleep=sleep, workdir=workdir / "w"
    ) as orch:
        run = await orch.submit(path, route=route, checks=checks, reuse=False)
        status = await orch.wait(run.run_id)
        out = workdir / "out.jsonl"
        orch.fetch(run.run_id, out)
        costs = orch.costs(run.run_id)
    judge = resolve_checks()
    requests = {x["custom_id"]: x["body"] for x in map(json.loads, path.read_text().splitlines())}
    delivered = bad = 0
    for line in map(json.loads, out.read_text().splitlines()):
        if line["batchyard"]["status"] != "succeeded":
            continue
        delivered += 1
        answer = Answer(
            "/v1/chat/completions", requests[line["custom_id"]], line["response"]["body"]
        )
        bad += run_checks(judge, answer) is not None
    return {
        "lines": status.requests,
        "delivered": delivered,
        "bad": bad,
        "invalid": status.invalid,
        "resends": status.requeues,
        "cost": costs.actual + costs.requeue_cost,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=400)
    parser.add_argument("--rate", type=float, default=0.05, help="rate of each kind of fault")
    parser.add_argument("--route", default="realtime", choices=("realtime", "batch"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.jsonl"
        source.write_text("".join(json.dumps(x) + "\n" for x in lines(args.lines)))
        for name, checks in (("without checks", ["none"]), ("with checks", None)):
            work = Path(tmp) / name.replace(" ", "_")
            work.mkdir()
            rows.append((name, asyncio.run(one_run(source, work, args.rate, args.route, checks))))
    print(
        f"{args.lines} chat lines (half ask for a JSON schema), route {args.route}, each fault "
        f"at {args.rate:.0%} (truncated, content_filter, refusal, malformed_json)"
    )
    print(
        f"{'mode':<16} {'delivered':>9} {'bad delivered':>14} {'share bad':>9} "
        f"{'invalid':>7} {'re-sends':>8} {'cost USD':>9}"
    )
    for name, r in rows:
        share = r["bad"] / r["lines"] if r["lines"] else 0.0
        print(
            f"{name:<16} {r['delivered']:>9} {r['bad']:>14} {share:>9.1%} "
            f"{r['invalid']:>7} {r['resends']:>8} {r['cost']:>9.4f}"
        )


if __name__ == "__main__":
    main()
