"""Routing evaluation: batchyard's cost and deadline hits against three baselines, end to end.

For each scenario (file size, models, deadline, rate limits, a fixed batch turnaround from
minutes to past the 24 h window, faults) the same request file runs through the real
Orchestrator against the in-process simulator, on virtual time (see `_eval_support`), three
times, each on a fresh simulator and job store:

  batchyard    --route auto (the default policy)
  all-standard --route realtime
  all-batch    --route batch (no escalation)

and an oracle is computed that knows each batch's actual turnaround: per model, batch if
the all-batch run delivered that model's lines before the deadline (or there is none), else
flex where the model has it and real time finishes in time, else standard (if nothing
meets the deadline, the fastest, real time). The oracle is costed with the actual tokens
the simulator billed for each request, at the simulator's prices. Every cost in the table
is the simulator's ledger (what OpenAI would bill), never batchyard's own estimate.

Targets (from the issue): every deadline the oracle meets, batchyard meets; batchyard never
costs more than all-standard; batchyard's cost is on average within 10% of the oracle's
(mean of per-scenario ratios; the ratio of totals is printed too).

    python bench/routing_eval.py              # all scenarios (a few minutes)
    python bench/routing_eval.py --quick      # a smaller, faster subset (under a minute)
    python bench/routing_eval.py --scenarios 5
    python bench/routing_eval.py --only expiring
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchyard.simulator.config import default_models
from bench._eval_support import START, Harness, RunOutcome, Scenario

H = 3600.0
M = 60.0
MINI, FIVE = "gpt-4o-mini", "gpt-5-mini"
BOTH = (MINI, FIVE)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("no-deadline", 1000, (MINI,), None, 30 * M),
    Scenario("no-deadline-2m", 2000, BOTH, None, 2 * H, rpm=500, tpm=200_000),
    Scenario("no-deadline-flex", 800, (FIVE,), None, 3 * H),
    Scenario("24h-fast", 3000, BOTH, 24 * H, 10 * M),
    Scenario("24h-6h", 1500, (MINI,), 24 * H, 6 * H, rpm=500, tpm=200_000),
    Scenario("24h-23h", 600, (MINI,), 24 * H, 23 * H),
    Scenario("24h-expiring", 600, (MINI,), 24 * H, 30 * H, rpm=500, tpm=200_000),
    Scenario("24h-expiring-2m", 800, BOTH, 24 * H, 26 * H, rpm=500, tpm=200_000),
    Scenario("12h-2h", 2000, BOTH, 12 * H, 2 * H),
    Scenario("12h-14h", 800, (MINI,), 12 * H, 14 * H),
    Scenario("4h-1h", 600, (MINI,), 4 * H, 1 * H, rpm=500, tpm=200_000),
    Scenario("4h-5h-2m", 500, BOTH, 4 * H, 5 * H, rpm=500, tpm=200_000),
    Scenario("1h-10m", 300, (MINI,), 1 * H, 10 * M),
    Scenario("1h-2h", 300, (MINI,), 1 * H, 2 * H),
    Scenario("30m-flex", 200, (FIVE,), 30 * M, 10 * M),
    Scenario("15m-10m", 200, (MINI,), 15 * M, 10 * M),
    Scenario("2h-3h-lowrpm", 2000, (MINI,), 2 * H, 3 * H, rpm=100, tpm=40_000),
    Scenario("1h-20m-tinyrpm", 1500, (MINI,), 1 * H, 20 * M, rpm=30, tpm=20_000),
    Scenario("6h-30m-enqueued", 3000, (MINI,), 6 * H, 30 * M, enqueued_token_limit=300_000),
    Scenario(
        "6h-1h-5xx", 1000, BOTH, 6 * H, 1 * H, rpm=500, tpm=200_000, faults={"error_5xx_rate": 0.2}
    ),
    Scenario("2h-1h-flexdown", 1000, (FIVE,), 2 * H, 1 * H, faults={"flex_unavailable_rate": 0.5}),
    Scenario("8h-2h-lineerr", 1500, (MINI,), 8 * H, 2 * H, faults={"batch_line_error_rate": 0.05}),
    Scenario("3h-20m-small", 50, BOTH, 3 * H, 20 * M),
    Scenario("24h-20h-2m", 800, BOTH, 24 * H, 20 * H, rpm=500, tpm=200_000),
)

QUICK = (
    "no-deadline",
    "24h-expiring",
    "12h-2h",
    "4h-5h-2m",
    "1h-2h",
    "30m-flex",
    "15m-10m",
    "6h-1h-5xx",
    "3h-20m-small",
)


@dataclass(frozen=True)
class Oracle:
    cost: float
    met: bool | None
    paths: dict[str, str]  # model -> path


def _price(model: str, tokens: tuple[int, int], path: str) -> float:
    spec = default_models()[model]
    usd = (tokens[0] * spec.input_price + tokens[1] * spec.output_price) / 1_000_000
    return usd * (spec.batch_discount if path != "standard" else 1.0)


def _billed(*runs: RunOutcome) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """Tokens and model of every request any of the runs got billed for (later runs win)."""
    tokens: dict[str, tuple[int, int]] = {}
    models: dict[str, str] = {}
    for run in runs:
        tokens.update(run.tokens)
        models.update({e.custom_id: e.model for e in run.ledger if e.custom_id is not None})
    return tokens, models


def oracle(sc: Scenario, auto: RunOutcome, standard: RunOutcome, batch: RunOutcome) -> Oracle:
    """Per model: batch if it is back in time, else flex or standard; actual tokens."""
    deadline = None if sc.deadline_s is None else START + sc.deadline_s
    specs = default_models()
    paths: dict[str, str] = {}
    met = True
    for model in sc.models:
        batch_ok = not batch.not_done_by_model.get(model) and (
            deadline is None or batch.finished_by_model[model] <= deadline
        )
        rt_ok = deadline is None or standard.finished_by_model[model] <= deadline
        if batch_ok:
            paths[model] = "batch"
        else:
            paths[model] = "flex" if specs[model].flex else "standard"
            met = met and rt_ok
    tokens, models = _billed(batch, auto, standard)
    cost = sum(_price(models[cid], tokens[cid], paths[models[cid]]) for cid in tokens)
    return Oracle(cost, None if deadline is None else met, paths)


@dataclass(frozen=True)
class Row:
    scenario: Scenario
    auto: RunOutcome
    standard: RunOutcome
    batch: RunOutcome
    oracle: Oracle
    seconds: float

    @property
    def vs_oracle(self) -> float:
        return self.auto.cost / self.oracle.cost - 1.0


def batch_cost(batch: RunOutcome, standard: RunOutcome) -> float:
    """All-batch cost: the ledger, plus any request still unfinished when the run was cut
    off, at batch price with the tokens the all-standard run billed for it."""
    tokens, models = _billed(standard)
    rest = set(tokens) - set(batch.tokens)
    return batch.cost + sum(_price(models[c], tokens[c], "batch") for c in rest)


def run_scenario(sc: Scenario, root: Path) -> Row:
    started = time.perf_counter()
    auto = Harness(sc, root / f"{sc.name}-auto").run("auto")
    standard = Harness(sc, root / f"{sc.name}-realtime").run("realtime")
    # Past the deadline, the all-batch baseline has missed it: stop watching an expiring
    # batch go round for days (its remaining lines are priced at batch rates).
    stop = None if sc.deadline_s is None else START + sc.deadline_s + 2 * H
    batch = Harness(sc, root / f"{sc.name}-batch").run("batch", stop_at=stop)
    batch.cost = batch_cost(batch, standard)
    return Row(
        sc, auto, standard, batch, oracle(sc, auto, standard, batch), time.perf_counter() - started
    )


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    if seconds >= H:
        return f"{seconds / H:g}h"
    return f"{seconds / M:g}m"


def _met(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "NO"


def _cost(usd: float, met: bool | None) -> str:
    return f"${usd:.4f} {_met(met):>3}"


HEADER = (
    f"{'scenario':<17}{'n':>5} {'models':<7}{'dl':>5}{'turn':>5} {'rpm':>5} "
    f"{'batchyard':>13} {'all-standard':>13} {'all-batch':>13} {'oracle':>13} {'vs orc':>7}"
    f" {'late by':>8} {'real s':>6}"
)


def line(r: Row) -> str:
    sc = r.scenario
    models = "+".join("5m" if m == FIVE else "4om" for m in sc.models)
    late = ""
    if r.auto.deadline_met is False:
        late = _dur(max(0.0, r.auto.finished_at - (START + (sc.deadline_s or 0))))
    return (
        f"{sc.name:<17}{sc.requests:>5} {models:<7}{_dur(sc.deadline_s):>5}"
        f"{_dur(sc.turnaround_s):>5} {sc.rpm:>5} "
        f"{_cost(r.auto.cost, r.auto.deadline_met):>13} "
        f"{_cost(r.standard.cost, r.standard.deadline_met):>13} "
        f"{_cost(r.batch.cost, r.batch.deadline_met):>13} "
        f"{_cost(r.oracle.cost, r.oracle.met):>13} {r.vs_oracle:>+7.1%} {late:>8}"
        f" {r.seconds:>6.1f}"
    )


def checks(rows: list[Row]) -> list[tuple[str, bool, str]]:
    missed = [r.scenario.name for r in rows if r.oracle.met and not r.auto.deadline_met]
    dearer = [
        f"{r.scenario.name} (${r.auto.cost:.4f} > ${r.standard.cost:.4f})"
        for r in rows
        if r.auto.cost > r.standard.cost + 1e-9
    ]
    mean = sum(r.vs_oracle for r in rows) / len(rows)
    over = sum(max(r.vs_oracle, 0.0) for r in rows) / len(rows)  # savings below it count 0
    total = sum(r.auto.cost for r in rows) / sum(r.oracle.cost for r in rows) - 1.0
    oracle_met = sum(1 for r in rows if r.oracle.met)
    return [
        (
            "every deadline the oracle meets is met",
            not missed,
            f"{oracle_met - len(missed)}/{oracle_met} met"
            + (f"; missed: {missed}" if missed else ""),
        ),
        (
            "cost never above all-standard",
            not dearer,
            "; ".join(dearer) or f"{len(rows)}/{len(rows)} at or below",
        ),
        (
            "average cost within 10% of the oracle's",
            mean <= 0.10,
            f"mean per-scenario {mean:+.1%} (overspend only: {over:+.1%}); total "
            f"${sum(r.auto.cost for r in rows):.4f} vs ${sum(r.oracle.cost for r in rows):.4f} "
            f"({total:+.1%})",
        ),
    ]


def integrity(rows: list[Row]) -> tuple[list[str], list[str]]:
    """Batchyard problems that must never happen (double billing, requests left failed or
    unfinished), and notes on the baselines (e.g. all-standard giving up on a request)."""
    problems, notes = [], []
    for r in rows:
        for run in (r.auto, r.standard, r.batch):
            if run.billed_twice:
                problems.append(f"{r.scenario.name}/{run.route}: {run.billed_twice} billed twice")
        if r.auto.failed or r.auto.unfinished:
            problems.append(
                f"{r.scenario.name}: batchyard left {r.auto.failed} failed, "
                f"{r.auto.unfinished} unfinished"
            )
        for run in (r.standard, r.batch):
            if run.failed or run.unfinished:
                notes.append(
                    f"{r.scenario.name}: {run.route} baseline left {run.failed} failed "
                    f"(attempts exhausted), {run.unfinished} unfinished when cut off"
                )
    return problems, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller subset, under a minute")
    parser.add_argument("--scenarios", type=int, default=None, help="run only the first N")
    parser.add_argument("--only", default=None, help="run scenarios whose name contains this")
    args = parser.parse_args()
    chosen = list(SCENARIOS)
    if args.quick:
        chosen = [replace(s, requests=min(s.requests, 600)) for s in chosen if s.name in QUICK]
    if args.only:
        chosen = [s for s in chosen if args.only in s.name]
    if args.scenarios is not None:
        chosen = chosen[: args.scenarios]
    print(
        f"Routing eval: {len(chosen)} scenario(s), each run three times end to end against the "
        "in-process simulator on virtual time.\nCosts are the simulator's ledger; 'yes'/'NO': "
        "every request finished by the deadline. dl: deadline, turn: batch turnaround "
        "(past 24h: expires).\n"
    )
    print(HEADER)
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="batchyard-routing-eval-") as tmp:
        for sc in chosen:
            row = run_scenario(sc, Path(tmp))
            rows.append(row)
            print(line(row), flush=True)
    print(f"\n{len(rows)} scenario(s) in {time.perf_counter() - started:.0f} s real time.")
    for name, ok, detail in checks(rows):
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    problems, notes = integrity(rows)
    clean = "no request billed twice; batchyard finished every request"
    print(f"{'PASS' if not problems else 'FAIL'}  integrity: " + ("; ".join(problems) or clean))
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
