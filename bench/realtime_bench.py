"""Benchmark of batchyard's real-time path against the simulator (no network).

Prints, in one run:
  1. At the limit: N chat requests at RPM 600 / TPM 60,000 (simulator clock scaled, our
     admission clock scaled the same, so every ratio is as in real time). Utilisation of the
     binding limit, 429s as a share of requests, requests lost, for batchyard and for a plain
     `asyncio.gather` + semaphore loop over the SDK with the SDK's own retries.
  2. Overhead: no limits, no latency: batchyard's end-to-end requests/s (claims and result
     writes in the store included; ingest excluded) as a fraction of a bare SDK loop at the
     same concurrency.
  1b. Beside a second client: the same run while another client on the same key uses 30% of
     its limit (`--other-client`): the key's utilisation (ours plus theirs), our 429s as a
     share of our calls (targets >= 0.95 and <= 1%), requests lost.
  3. Latency: p50 / p95 of the time batchyard adds to one request beyond the SDK call
     (claim, admission, body preparation, result and its store write), one request at a time.

Utilisation ("sustained"): the provider's bucket starts full (one minute's budget) and
refills at the limit per minute. Replaying it over the simulator's ledger, from the moment
it first runs dry to the end, utilisation is what was consumed over what the bucket
allowed (at most 1). The whole-run figure, consumed / (limit x (1 + minutes)), is printed
too; it is lower when the simulator process cannot absorb the first minute's burst at once.
The simulator runs in its own process (uvicorn).

    python bench/realtime_bench.py            # 3,000 requests, clock x10 (about 1 minute)
    python bench/realtime_bench.py --quick    # 1,500 requests
    python bench/realtime_bench.py --only shared --other-client 0.3
    python bench/realtime_bench.py --scale 1  # real time (about 6 minutes for part 1)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import openai
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchyard.config import Settings, model_table
from batchyard.models import Route
from batchyard.orchestrator._calls.client import make_client
from batchyard.orchestrator._calls.timing import scaled
from batchyard.orchestrator.realtime import request as realtime_request
from batchyard.orchestrator.realtime.call import Answer, send
from batchyard.orchestrator.realtime.runner import RealtimeRunner
from batchyard.orchestrator.realtime.types import RealtimeOptions
from batchyard.store import NewRequest, Store
from batchyard.tokens import count_request

MODEL = "gpt-4o-mini"
CHAT = "/v1/chat/completions"
MAX_TOKENS = 60
RPM, TPM = 600, 60_000
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
]

SERVE = r"""
import json, sys, uvicorn
from batchyard.simulator import create_app
from batchyard.simulator.config import load_config
config = load_config(None, **json.loads(sys.argv[1]))
uvicorn.run(create_app(config), host="127.0.0.1", port=int(sys.argv[2]), log_level="error",
            lifespan="off")
"""


@contextmanager
def simulator(config: dict[str, Any]) -> Iterator[str]:
    """The simulator in its own process; yields its root URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", SERVE, json.dumps(config), str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx2.get(f"{url}/_sim/clock", timeout=1).raise_for_status()
                break
            except httpx2.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def admin(url: str, path: str, payload: dict[str, Any] | None = None) -> Any:
    if payload is None:
        return httpx2.get(f"{url}/_sim/{path}", timeout=30).json()
    return httpx2.post(f"{url}/_sim/{path}", json=payload, timeout=30).json()


def bodies(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 70)))
        out.append(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"Item {i}: {text}"}],
                "max_tokens": MAX_TOKENS,
            }
        )
    return out


def seed_run(store: Store, items: list[dict[str, Any]]) -> str:
    run_id = store.create_run(
        source_path="bench.jsonl", source_sha256="0" * 64, endpoint=CHAT, models=[MODEL]
    )
    new = []
    for i, body in enumerate(items):
        count = count_request(CHAT, body)
        new.append(
            NewRequest(f"r{i}", i + 1, CHAT, MODEL, body, count.prompt, MAX_TOKENS, 0.0, 0.0, 0.0)
        )
    store.add_requests(run_id, new)
    store.set_routes(run_id, [(f"r{i}", Route.STANDARD, "bench") for i in range(len(items))])
    return run_id


def sustained(times: list[float], charges: list[float], limit: float, started: float) -> float:
    """Utilisation of one limit once its start-up burst is spent.

    Replays the provider's bucket (full at `started`, refilling at limit/min) over the billed
    requests; from the moment it first runs (nearly) dry, divides what was consumed by what the
    bucket held then plus what it refilled until the end. At most 1 by construction.
    """
    rate = limit / 60
    level, last = float(limit), started
    # "Dry": under 5% of the bucket. Billing times trail admission by the latency, so the
    # replayed bucket never quite reaches zero; what is left is counted as allowed below.
    for i, (t, c) in enumerate(zip(times, charges, strict=True)):
        level = min(float(limit), level + (t - last) * rate) - c
        last = t
        if level < 0.05 * limit:
            after = sum(charges[i + 1 :])
            window = times[-1] - t
            return after / max(1e-9, max(0.0, level) + window * rate) if window > 0 else 0.0
    return 0.0  # never ran the bucket dry: the limit was not reached


def utilisation(url: str, started: float, n: int) -> dict[str, float]:
    """Consumption against the limits, from the simulator's own ledger and counters."""
    ledger = sorted(admin(url, "ledger")["entries"], key=lambda e: e["at"])
    stats = admin(url, "stats")
    ended = ledger[-1]["at"] if ledger else started
    minutes = max(1e-9, (ended - started) / 60)
    times = [e["at"] for e in ledger]
    toks = [float(e["input_tokens"] + MAX_TOKENS) for e in ledger]
    status = stats["requests"].get(CHAT, {})
    return {
        "minutes": minutes,
        "rpm": len(ledger) / minutes,
        "tpm": sum(toks) / minutes,
        "req_all": len(ledger) / (RPM * (1 + minutes)),
        "tok_all": sum(toks) / (TPM * (1 + minutes)),
        "req_util": sustained(times, [1.0] * len(times), RPM, started),
        "tok_util": sustained(times, toks, TPM, started),
        "429": int(status.get("429", 0)),
        "calls": sum(int(v) for v in status.values()),
        "lost": n - len({e["custom_id"] for e in ledger}),
    }


async def batchyard_at_limit(url: str, items: list[dict[str, Any]], scale: float) -> None:
    clock, sleep = scaled(scale, start=admin(url, "clock")["now"])
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "bench.db", now=clock)
        run_id = seed_run(store, items)
        settings = Settings(api_key=SecretStr("sk-bench"), base_url=f"{url}/v1", concurrency=64)
        runner = RealtimeRunner(
            store,
            make_client(settings),
            model_table(),
            settings,
            clock=clock,
            sleep=sleep,
            owner="bench",
            options=RealtimeOptions(provider_time_scale=scale),
        )
        report = await runner.run(run_id)
        store.close()
    if report.succeeded != len(items):
        print(f"  (batchyard: {report.failed} failed)")


async def baseline_at_limit(url: str, items: list[dict[str, Any]]) -> None:
    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=f"{url}/v1")  # SDK retries on
    gate = asyncio.Semaphore(64)

    async def one(i: int, body: dict[str, Any]) -> None:
        async with gate:
            await client.chat.completions.create(
                **body, extra_headers={"X-Batchyard-Custom-Id": f"r{i}"}
            )

    await asyncio.gather(*(one(i, b) for i, b in enumerate(items)), return_exceptions=True)
    await client.close()


def show(name: str, u: dict[str, float]) -> None:
    binding = "TPM" if u["tok_util"] >= u["req_util"] else "RPM"
    best = max(u["tok_util"], u["req_util"])

    def fmt(x: float) -> str:
        return f"{x:.3f}" if x else "not reached"

    print(
        f"  {name:<28} {u['rpm']:6.1f} req/min {u['tpm']:8.0f} tok/min | sustained "
        f"utilisation RPM {fmt(u['req_util'])} TPM {fmt(u['tok_util'])} -> binding {binding} "
        f"{best:.3f} (target >= 0.97) | 429s {int(u['429'])} = "
        f"{100 * u['429'] / max(1, u['calls']):.2f}% of calls (target <= 0.5%) | "
        f"lost {int(u['lost'])}"
    )
    print(
        f"  {'':<28} whole run incl. the start-up burst: RPM {u['req_all']:.3f} "
        f"TPM {u['tok_all']:.3f} of limit x (1 + minutes)"
    )


def _at_limit_config(scale: float, headers: str, **extra: Any) -> dict[str, Any]:
    """The simulator of part 1 and 1b: the bench's limits, a 50-100 ms latency, rate limits
    on, `headers` as `--headers` says, plus `extra` top-level settings."""
    return {
        "models": {MODEL: {"rpm": RPM, "tpm": TPM}},
        "clock": {"time_scale": scale},
        "latency": {"fixed_ms": 50.0, "jitter_ms": 50.0},
        "rate_limits": True,
        "faults": {"rate_limit_headers": headers},
        **extra,
    }


async def part_limit(n: int, scale: float, headers: str = "all") -> None:
    print(
        f"1. At the limit: {n} chat requests, RPM {RPM} / TPM {TPM}, max_tokens {MAX_TOKENS}, "
        f"concurrency 64, simulator latency 50-100 ms real."
    )
    print(
        f"   Clock scale x{scale:g}: simulator and batchyard's admission clock both run "
        f"{scale:g}x real time (ratios are as at --scale 1). Seeded limits: the shipped "
        f"table's {model_table()[MODEL].rpm} RPM / {model_table()[MODEL].tpm} TPM; "
        "the headers correct them."
    )
    items = bodies(n)
    config = _at_limit_config(scale, headers)
    if headers != "all":
        print(f"   Rate-limit headers: {headers} (retry-after and x-ratelimit-* left out).")
    with simulator(config) as url:
        runs: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("batchyard", lambda: batchyard_at_limit(url, items, scale)),
            ("gather+semaphore, SDK retry", lambda: baseline_at_limit(url, items)),
        ]
        for name, run in runs:
            admin(url, "reset", {})
            started = admin(url, "clock")["now"]
            real = time.perf_counter()
            await run()
            u = utilisation(url, started, n)
            show(name, u)
            print(
                f"  {'':<28} ({time.perf_counter() - real:.1f} s real, "
                f"{u['minutes']:.2f} simulated minutes)"
            )


async def part_shared(n: int, scale: float, share: float, headers: str = "all") -> None:
    print(
        f"1b. Beside a second client: the same {n} requests while another client on the same "
        f"simulator key uses {share:.0%} of its RPM and TPM all the time."
    )
    items = bodies(n)
    config = _at_limit_config(scale, headers, limits={"other_client_share": share})
    with simulator(config) as url:
        admin(url, "reset", {})
        admin(url, "limits", {"other_client_share": share})
        started = admin(url, "clock")["now"]
        real = time.perf_counter()
        await batchyard_at_limit(url, items, scale)
        ledger = sorted(admin(url, "ledger")["entries"], key=lambda e: e["at"])
        stats = admin(url, "stats")["requests"].get(CHAT, {})
    times = [e["at"] for e in ledger]
    toks = [float(e["input_tokens"] + MAX_TOKENS) for e in ledger]
    # The simulator gives us what the other client leaves: a bucket of (1 - share) x the
    # limit. Our sustained use of that, plus the other client's share, is the key's.
    left = 1.0 - share
    ours_req = sustained(times, [1.0] * len(times), RPM * left, started)
    ours_tok = sustained(times, toks, TPM * left, started)
    binding = "TPM" if ours_tok >= ours_req else "RPM"
    key = share + left * max(ours_req, ours_tok)
    limited = int(stats.get("429", 0))
    calls = sum(int(v) for v in stats.values())
    lost = n - len({e["custom_id"] for e in ledger})
    print(
        f"  {'batchyard':<28} key utilisation ({binding}, ours + the other client's) "
        f"{key:.3f} (target >= 0.95) | our 429s {limited} = {100 * limited / max(1, calls):.2f}% "
        f"of our calls (target <= 1%) | lost {lost}"
    )
    print(
        f"  {'':<28} ours alone: RPM {ours_req:.3f} TPM {ours_tok:.3f} of what the other "
        f"client leaves ({time.perf_counter() - real:.1f} s real)"
    )


async def bare_loop(url: str, items: list[dict[str, Any]], concurrency: int) -> float:
    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=f"{url}/v1", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, body: dict[str, Any]) -> None:
        async with gate:
            await client.chat.completions.create(
                **body, extra_headers={"X-Batchyard-Custom-Id": f"r{i}"}
            )

    start = time.perf_counter()
    await asyncio.gather(*(one(i, b) for i, b in enumerate(items)))
    elapsed = time.perf_counter() - start
    await client.close()
    return len(items) / elapsed


async def ours(
    url: str, items: list[dict[str, Any]], concurrency: int, *, max_claimed: int | None = None
) -> tuple[float, Store, str, str]:
    tmp = tempfile.mkdtemp()
    store = Store.open(Path(tmp) / "bench.db")
    run_id = seed_run(store, items)
    settings = Settings(
        api_key=SecretStr("sk-bench"), base_url=f"{url}/v1", concurrency=concurrency
    )
    runner = RealtimeRunner(
        store,
        make_client(settings),
        model_table(),
        settings,
        owner="bench",
        options=RealtimeOptions(max_claimed=max_claimed),
    )
    start = time.perf_counter()
    report = await runner.run(run_id)
    elapsed = time.perf_counter() - start
    assert report.succeeded == len(items), report
    return len(items) / elapsed, store, run_id, tmp


async def part_overhead(n: int) -> None:
    print(
        f"2. Overhead: {n} chat requests, no limits, no latency, concurrency 64, simulator "
        "in its own process."
    )
    items = bodies(n, seed=11)
    config = {"rate_limits": False, "models": {MODEL: {"rpm": 10**7, "tpm": 10**10}}}
    with simulator(config) as url:
        await bare_loop(url, items[: n // 5], 64)  # warm-up (connections, tokenizer)
        bare: list[tuple[float, float]] = []
        mine: list[tuple[float, float]] = []
        for _ in range(2):
            cpu = time.process_time()
            rate = await bare_loop(url, items, 64)
            bare.append((rate, (time.process_time() - cpu) / n))
            cpu = time.process_time()
            rate = (await ours(url, items, 64))[0]
            mine.append((rate, (time.process_time() - cpu) / n))
    b, m = max(bare), max(mine)
    print(
        f"  bare SDK loop   {b[0]:8.1f} req/s (best of 2), {1e3 * b[1]:.2f} ms CPU/request "
        "in the client process"
    )
    print(
        f"  batchyard       {m[0]:8.1f} req/s incl. claims + result writes (best of 2), "
        f"{1e3 * m[1]:.2f} ms CPU/request"
    )
    print(
        f"  ratio           {m[0] / b[0]:.3f}  (target >= 0.8); CPU per request "
        f"{m[1] / b[1]:.2f}x the bare loop's (the simulator's own speed caps both rates)"
    )


async def part_latency(n: int) -> None:
    print(
        f"3. Latency added beyond the SDK call: {n} requests one at a time (concurrency 1), "
        "from claim to result committed, minus the SDK call."
    )
    sdk_time: dict[str, float] = {}
    original = send

    async def timed(
        client: openai.AsyncOpenAI, endpoint: str, body: dict[str, Any], custom_id: str
    ) -> Answer:
        t0 = time.time()
        try:
            answer: Answer = await original(client, endpoint, body, custom_id)
            return answer
        finally:
            sdk_time[custom_id] = time.time() - t0

    setattr(realtime_request, "send", timed)  # noqa: B010 - time each SDK call
    try:
        items = bodies(n, seed=13)
        config = {"rate_limits": False}
        with simulator(config) as url:
            await ours(url, items[:20], 1, max_claimed=1)  # warm-up
            sdk_time.clear()
            _, store, run_id, _ = await ours(url, items, 1, max_claimed=1)
    finally:
        setattr(realtime_request, "send", original)  # noqa: B010
    added = []
    for attempt in store.list_attempts(run_id):
        if attempt.finished_at is not None:
            added.append(attempt.finished_at - attempt.started_at - sdk_time[attempt.custom_id])
    added.sort()
    sdk = sorted(sdk_time.values())
    q = statistics.quantiles(added, n=20)
    qs = statistics.quantiles(sdk, n=20)
    print(
        f"  added by batchyard  p50 {1000 * statistics.median(added):6.2f} ms   "
        f"p95 {1000 * q[18]:6.2f} ms"
    )
    print(
        f"  the SDK call itself p50 {1000 * statistics.median(sdk):6.2f} ms   "
        f"p95 {1000 * qs[18]:6.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,500 requests instead of 3,000")
    parser.add_argument("--scale", type=float, default=10.0, help="clock scale for part 1")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--only", choices=["limit", "shared", "overhead", "latency"], default=None)
    parser.add_argument(
        "--other-client",
        type=float,
        default=0.3,
        help="share of the key's limit a second client uses in part 1b",
    )
    parser.add_argument(
        "--headers",
        choices=["all", "not_on_429", "none"],
        default="all",
        help="which simulator answers carry retry-after and x-ratelimit-* headers (part 1)",
    )
    args = parser.parse_args()
    n = args.requests or (1500 if args.quick else 3000)
    if args.only in (None, "limit"):
        await part_limit(n, args.scale, args.headers)
    if args.only in (None, "shared"):
        await part_shared(n, args.scale, args.other_client, args.headers)
    if args.only in (None, "overhead"):
        await part_overhead(n)
    if args.only in (None, "latency"):
        await part_latency(min(n, 500))


if __name__ == "__main__":
    asyncio.run(main())
