"""Requests/s of the simulator's chat completions beside a bare Starlette endpoint.

Both servers run under uvicorn with the same settings, each in its own process on a loopback
port; the same AsyncOpenAI client settings (max_retries=0) drive both with the same
concurrency. The simulator runs with rate limits off and no latency, so the figure is the
cost of its request path (parse, count tokens, build the answer from SDK types, headers,
ledger). Rounds alternate bare/simulator (so load from other processes hits both alike)
and the median round of each is compared. Each server's CPU time per request (from
/proc, Linux only) is printed too: it does not depend on how busy the machine is.

    /work/venv/bin/python bench/sim_bench.py [--requests 1500] [--concurrency 32] [--rounds 5]

Target: simulator >= 0.7 x bare.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import time
from typing import Any

import openai
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batchyard.simulator import SimConfig
from batchyard.simulator.server import serve

FIXED: dict[str, Any] = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    "service_tier": "default",
    "system_fingerprint": "fp_bench",
}


async def _fixed(request: Request) -> Response:
    await request.body()
    return JSONResponse(FIXED)


def _bare(port: int) -> None:
    app = Starlette(routes=[Route("/v1/chat/completions", _fixed, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def _sim(port: int) -> None:
    serve("127.0.0.1", port, SimConfig(rate_limits=False))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc); 0 elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


async def _drive(base_url: str, requests: int, concurrency: int) -> float:
    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=base_url, max_retries=0)
    todo = iter(range(requests))

    async def worker() -> None:
        for i in todo:
            await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"Benchmark question number {i}?"}],
            )

    await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm-up round
    todo = iter(range(requests))
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await client.close()
    return requests / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ports = {"bare": _free_port(), "simulator": _free_port()}
    targets = {"bare": _bare, "simulator": _sim}
    procs = {
        name: multiprocessing.Process(target=targets[name], args=(port,), daemon=True)
        for name, port in ports.items()
    }
    for proc in procs.values():
        proc.start()
    try:
        for port in ports.values():
            _wait_for(port)
        rates: dict[str, list[float]] = {"bare": [], "simulator": []}
        cpu: dict[str, list[float]] = {"bare": [], "simulator": []}
        for round_no in range(1, args.rounds + 1):
            for name, port in ports.items():
                pid = procs[name].pid or 0
                url = f"http://127.0.0.1:{port}/v1"
                before = _cpu_seconds(pid)
                rate = asyncio.run(_drive(url, args.requests, args.concurrency))
                # The warm-up round counts in CPU time too: 2 x requests in all.
                per_request = (_cpu_seconds(pid) - before) / (2 * args.requests) * 1e6
                rates[name].append(rate)
                cpu[name].append(per_request)
                print(
                    f"round {round_no}  {name:<9}  {rate:8.1f} req/s  "
                    f"server CPU {per_request:6.0f} us/request"
                )
        median = {name: statistics.median(values) for name, values in rates.items()}
        cpu_median = {name: statistics.median(values) for name, values in cpu.items()}
        print(
            f"median: bare {median['bare']:.1f} req/s, simulator {median['simulator']:.1f} "
            f"req/s, ratio {median['simulator'] / median['bare']:.2f} (target >= 0.70; "
            f"concurrency {args.concurrency}, {args.requests} requests per round, "
            f"{os.cpu_count()} CPUs)"
        )
        print(
            f"server CPU per request: bare {cpu_median['bare']:.0f} us, simulator "
            f"{cpu_median['simulator']:.0f} us"
        )
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.join(timeout=5)


if __name__ == "__main__":
    main()
