"""Routing evaluation: batchyard's cost and deadline hits against three baselines, end to end.

For each scenario (file size, models, deadline, rate limits, a fixed batch turnaround from
minutes to past the 24 h window, cancel latency, faults, a fresh store or one with history)
the same request file runs through the real Orchestrator against the in-process simulator,
on virtual time (see `_eval_support`), three times, each on a fresh simulator and job store:

  batchyard    --route auto (the default policy)
  all-standard --route realtime
  all-batch    --route batch (no escalation)

and an oracle is computed per line: it knows when each line's answer could first be had
from a batch (the simulator's schedule in the all-batch run: a line finishes at its place
in the batch's completion order, and is had no sooner than a cancel right after it would
deliver it), and how long real time needs for any number of lines under the same rate
limits (the all-standard run's finish times). It sends each line the cheapest way that
still meets the deadline: batch where the batch delivers it in time, else flex where the
model has it, else standard; it meets the deadline when real time can finish the lines it
sends there in time. It prices every line with the tokens the simulator billed for it, at
the simulator's prices (what batchyard's ledger is checked against). It is a lower bound:
a scenario where batchyard costs less than the oracle is a bug in the oracle.

Printed per scenario: each run's cost (the simulator's ledger) and whether every request
finished by the deadline, batchyard's cost over the oracle's, and batchyard's lines paid
twice (a cancel slower than planned: the price of the deadline) with what they added.

Targets (from the issue): every deadline the oracle meets, batchyard meets; no scenario
costs more than all-standard (lines paid twice shown apart); worst ratio to the oracle
<= 1.25; mean of max(ratio, 1) <= 1.08 (a win in one scenario never offsets a loss).

    python bench/routing_eval.py              # all scenarios (several minutes)
    python bench/routing_eval.py --quick      # a smaller, faster subset
    python bench/routing_eval.py --scenarios 5
    python bench/routing_eval.py --only cancel
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchyard.simulator.config import default_models
from bench._eval_support import Harness, RunOutcome, Scenario, batch_line_times

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
    # Deadlines shorter than the fresh store's turnaround prior (1 h), batches back in minutes.
    Scenario("20m-3m", 600, (MINI,), 20 * M, 3 * M, rpm=500, tpm=200_000),
    Scenario("10m-2m-2m", 400, BOTH, 10 * M, 2 * M, rpm=500, tpm=200_000),
    # A batch no faster than real time: escalated part way, its finished part kept.
    Scenario("40m-40m-partial", 1000, (MINI,), 40 * M, 40 * M, rpm=50, tpm=40_000),
    # Slow cancels on a fresh store (prior: median 1 min), then with history.
    Scenario("1h-2h-cancel2m", 600, (MINI,), 1 * H, 2 * H, batch={"cancelling_seconds": 120}),
    Scenario("1h-2h-cancel10m", 600, (MINI,), 1 * H, 2 * H, batch={"cancelling_seconds": 600}),
    Scenario(
        "hist-1h-2h-cancel10m",
        600,
        (MINI,),
        1 * H,
        2 * H,
        batch={"cancelling_seconds": 600},
        history=2,
    ),
    Scenario("hist-15m-10m", 200, (MINI,), 15 * M, 10 * M, history=2),
    Scenario("hist-1h-20m-tinyrpm", 1500, (MINI,), 1 * H, 20 * M, rpm=30, tpm=20_000, history=1),
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
    "20m-3m",
    "40m-40m-partial",
    "1h-2h-cancel10m",
)


@dataclass(frozen=True)
class Oracle:
    cost: float
    met: bool | None
    paths: dict[str, int]  # path -> lines sent that way


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


def oracle(
    sc: Scenario,
    auto: RunOutcome,
    standard: RunOutcome,
    batch: RunOutcome,
    batch_times: dict[str, float],
) -> Oracle:
    """Per line: batch where the batch delivers it by the deadline, else real time."""
    specs = default_models()
    tokens, models = _billed(batch, auto, standard)
    paths: dict[str, int] = defaultdict(int)
    cost = 0.0
    met = True
    for model in sc.models:
        lines = sorted(cid for cid in tokens if models[cid] == model)
        realtime: list[str] = []
        for cid in lines:
            at = batch_times.get(cid)
            in_time = sc.deadline_s is None or (
                at is not None and at - batch.started_at <= sc.deadline_s
            )
            if in_time:
                paths["batch"] += 1
                cost += _price(model, tokens[cid], "batch")
            else:
                realtime.append(cid)
        path = "flex" if specs[model].flex else "standard"
        paths[path] += len(realtime)
        cost += sum(_price(model, tokens[cid], path) for cid in realtime)
        if realtime and sc.deadline_s is not None:
            offsets = sorted(
                t - standard.started_at
                for cid, t in standard.finished.items()
                if models.get(cid) == model
            )
            enough = len(offsets) >= len(realtime)
            met = met and enough and offsets[len(realtime) - 1] <= sc.deadline_s
    return Oracle(cost, None if sc.deadline_s is None else met, dict(paths))


@dataclass(frozen=True)
class Row:
    scenario: Scenario
    auto: RunOutcome
    standard: RunOutcome
    batch: RunOutcome
    oracle: Oracle
    seconds: float

    @property
    def ratio(self) -> float:
        return self.auto.cost / self.oracle.cost


def batch_cost(batch: RunOutcome, standard: RunOutcome) -> float:
    """All-batch cost: the ledger, plus any request still unfinished when the run was cut
    off, at batch price with the tokens the all-standard run billed for it."""
    tokens, models = _billed(standard)
    rest = set(tokens) - set(batch.tokens)
    return batch.cost + sum(_price(models[c], tokens[c], "batch") for c in rest)


def run_scenario(sc: Scenario, root: Path) -> Row:
    started = time.perf_counter()
    auto = Harness(sc, root / f"{sc.name}-auto").run("auto")
    # The baselines do not route, so history would teach them nothing.
    fresh = replace(sc, history=0)
    standard = Harness(fresh, root / f"{sc.name}-realtime").run("realtime")
    # Past the deadline, the all-batch baseline has missed it: stop watching an expiring
    # batch go round for days (its remaining lines are priced at batch rates).
    h = Harness(fresh, root / f"{sc.name}-batch")
    stop = None if sc.deadline_s is None else h.vt.now() + sc.deadline_s + 2 * H
    batch = h.run("batch", stop_at=stop)
    batch.cost = batch_cost(batch, standard)
    times = batch_line_times(h.state)
    best = oracle(sc, auto, standard, batch, times)
    return Row(sc, auto, standard, batch, best, time.perf_counter() - started)


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
    f"{'scenario':<21}{'n':>5} {'models':<7}{'dl':>5}{'turn':>5} {'rpm':>5} "
    f"{'batchyard':>13} {'all-standard':>13} {'all-batch':>13} {'oracle':>13} {'ratio':>6}"
    f" {'twice':>5} {'twice $':>8} {'real s':>6}"
)


def line(r: Row) -> str:
    sc = r.scenario
    models = "+".join("5m" if m == FIVE else "4om" for m in sc.models)
    return (
        f"{sc.name:<21}{sc.requests:>5} {models:<7}{_dur(sc.deadline_s):>5}"
        f"{_dur(sc.turnaround_s):>5} {sc.rpm:>5} "
        f"{_cost(r.auto.cost, r.auto.deadline_met):>13} "
        f"{_cost(r.standard.cost, r.standard.deadline_met):>13} "
        f"{_cost(r.batch.cost, r.batch.deadline_met):>13} "
        f"{_cost(r.oracle.cost, r.oracle.met):>13} {r.ratio:>6.3f}"
        f" {r.auto.billed_twice:>5} {r.auto.paid_twice_usd:>8.4f} {r.seconds:>6.1f}"
    )


def checks(rows: list[Row]) -> list[tuple[str, bool, str]]:
    missed = [r.scenario.name for r in rows if r.oracle.met and not r.auto.deadline_met]
    dearer = [
        f"{r.scenario.name} (${r.auto.cost - r.auto.paid_twice_usd:.4f} > ${r.standard.cost:.4f})"
        for r in rows
        if r.auto.cost - r.auto.paid_twice_usd > r.standard.cost + 1e-9
    ]
    below = [f"{r.scenario.name} ({r.ratio:.3f})" for r in rows if r.ratio < 1.0 - 1e-6]
    worst = max(rows, key=lambda r: r.ratio)
    mean_over = sum(max(r.ratio, 1.0) for r in rows) / len(rows)
    mean = sum(r.ratio for r in rows) / len(rows)
    oracle_met = sum(1 for r in rows if r.oracle.met)
    return [
        (
            "every deadline the oracle meets is met",
            not missed,
            f"{oracle_met - len(missed)}/{oracle_met} met"
            + (f"; missed: {missed}" if missed else ""),
        ),
        (
            "no scenario above all-standard (lines paid twice apart)",
            not dearer,
            "; ".join(dearer) or f"{len(rows)}/{len(rows)} at or below",
        ),
        (
            "the oracle is a lower bound",
            not below,
            "; ".join(below) or "batchyard never below it",
        ),
        (
            "worst ratio to the oracle <= 1.25",
            worst.ratio <= 1.25,
            f"worst {worst.ratio:.3f} ({worst.scenario.name})",
        ),
        (
            "mean of max(ratio, 1) <= 1.08",
            mean_over <= 1.08,
            f"mean of max(ratio, 1) {mean_over:.3f}; plain mean {mean:.3f}",
        ),
    ]


def integrity(rows: list[Row]) -> tuple[list[str], list[str]]:
    """Batchyard problems that must never happen (double billing, requests left failed or
    unfinished), and notes on the baselines (e.g. all-standard giving up on a request)."""
    problems, notes = [], []
    for r in rows:
        for run in (r.standard, r.batch):
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
    clean = "no baseline billed twice; batchyard finished every request"
    print(f"{'PASS' if not problems else 'FAIL'}  integrity: " + ("; ".join(problems) or clean))
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
