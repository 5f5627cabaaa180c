"""Time ingest + shard planning of a large request file against a bare parse-and-count pass.

Usage: python bench/ingest_bench.py [--lines 1000000] [--keep] [--file PATH]

Generates a deterministic file of ~1 KB chat requests for two models (or reuses --file),
then runs each phase in a fresh subprocess so that its peak RSS is its own:

- bare: `json.loads` of each line and `tokens.prompt_tokens` of its body, nothing else;
- batchyard: `ingest.read_requests` (every validation rule, duplicate index, raw_bytes)
  feeding `shards.plan_groups` per (endpoint, model); only ShardItems reach the planner,
  and shards are counted, not kept.

The batchyard phase also runs on the first quarter of the file, to show how peak memory
depends on file size. Targets: batchyard ≤ 2x bare time, peak RSS < 400 MB.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("gpt-4o-mini", "gpt-4.1-mini")
WORDS = (
    "the",
    "batch",
    "queue",
    "holds",
    "requests",
    "until",
    "a",
    "model",
    "is",
    "free",
    "to",
    "answer",
    "them",
    "while",
    "real",
    "time",
    "calls",
    "cost",
    "more",
    "but",
    "return",
    "at",
    "once",
    "so",
    "router",
    "weighs",
    "deadline",
    "budget",
    "and",
    "capacity",
    "before",
    "it",
    "splits",
    "work",
    "into",
    "shards",
    "of",
    "fifty",
    "thousand",
    "lines",
    "each",
    "under",
    "two",
    "hundred",
    "megabytes",
    "with",
    "tokens",
    "counted",
    "offline",
    "using",
    "vocabulary",
    "shipped",
    "package",
)


def generate(path: Path, lines: int) -> None:
    rng = random.Random(20251115)
    with path.open("w", encoding="utf-8") as f:
        for i in range(lines):
            text = " ".join(rng.choices(WORDS, k=150))
            body = {
                "model": MODELS[i % 2],
                "messages": [
                    {"role": "system", "content": "You are a careful assistant."},
                    {"role": "user", "content": text},
                ],
                "max_completion_tokens": 200 + i % 100,
            }
            line = {"custom_id": f"req-{i:08d}", "method": "POST", "url": "/v1/chat/completions"}
            f.write(json.dumps({**line, "body": body}) + "\n")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def phase_bare(path: Path) -> dict[str, float]:
    from batchyard.tokens import prompt_tokens

    start, cpu = time.perf_counter(), time.process_time()
    count = tokens = 0
    with path.open("rb") as f:
        for raw in f:
            obj = json.loads(raw)
            tokens += prompt_tokens(obj["url"], obj["body"])
            count += 1
    return {
        "seconds": time.perf_counter() - start,
        "cpu": time.process_time() - cpu,
        "lines": count,
        "tokens": tokens,
    }


def phase_batchyard(path: Path) -> dict[str, float]:
    from batchyard.config import model_table
    from batchyard.errors import LineProblem
    from batchyard.ingest import find_model, read_requests
    from batchyard.models import Endpoint
    from batchyard.shards import ShardItem, ShardLimits, plan_groups

    models = model_table()
    start, cpu = time.perf_counter(), time.process_time()
    counts = {"lines": 0, "problems": 0, "tokens": 0, "shards": 0}

    def items() -> Iterator[tuple[tuple[Endpoint, str], ShardItem]]:
        for req in read_requests(path, models):
            counts["lines"] += 1
            if isinstance(req, LineProblem):
                counts["problems"] += 1
                continue
            counts["tokens"] += req.input_tokens
            yield req.group, req.shard_item()

    def limits_for(key: tuple[Endpoint, str]) -> ShardLimits:
        info = find_model(models, key[1])
        assert info is not None
        return ShardLimits.for_model(info)

    for _key, _shard in plan_groups(items(), limits_for):
        counts["shards"] += 1
    return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu, **counts}


def run_phase(phase: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--file", str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--file", type=Path, help="use this request file instead")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each phase; best kept")
    parser.add_argument("--phase", choices=["bare", "batchyard"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        fn = phase_bare if args.phase == "bare" else phase_batchyard
        result = fn(args.file)
        print(json.dumps({**result, "peak_rss_mb": _peak_rss_mb()}))
        return

    tmp = Path(tempfile.mkdtemp(prefix="batchyard-bench-"))
    try:
        path = args.file
        if path is None:
            path = tmp / "requests.jsonl"
            t0 = time.perf_counter()
            generate(path, args.lines)
            print(f"generated {args.lines:,} lines in {time.perf_counter() - t0:.1f} s", end="")
        size = path.stat().st_size
        lines = sum(1 for _ in path.open("rb"))
        print(f"; {path}: {size / 1e6:,.0f} MB, {lines:,} lines, {size / lines:,.0f} B/line")
        quarter = tmp / "quarter.jsonl"
        with path.open("rb") as src, quarter.open("wb") as dst:
            for i, raw in enumerate(src):
                if i >= lines // 4:
                    break
                dst.write(raw)

        # Alternate the phases and keep each one's best run: other work on the machine
        # then distorts both alike. The ratio uses CPU time, which waiting does not inflate.
        bare_runs, our_runs = [], []
        for _ in range(args.repeat):
            bare_runs.append(run_phase("bare", path))
            our_runs.append(run_phase("batchyard", path))
        bare = min(bare_runs, key=lambda r: r["cpu"])
        ours = min(our_runs, key=lambda r: r["cpu"])
        small = run_phase("batchyard", quarter)
        assert ours["problems"] == 0 and ours["tokens"] == bare["tokens"], (bare, ours)
        print(f"{'phase':<22}{'lines':>11}{'wall s':>8}{'CPU s':>8}{'lines/s':>10}{'peak RSS':>11}")
        for label, r in [
            ("bare (loads+tokens)", bare),
            ("batchyard", ours),
            (f"batchyard {lines // 4:,}", small),
        ]:
            rate = r["lines"] / r["cpu"]
            print(
                f"{label:<22}{int(r['lines']):>11,}{r['seconds']:>8.1f}{r['cpu']:>8.1f}"
                f"{rate:>10,.0f}{r['peak_rss_mb']:>8.0f} MB"
            )
        ratio = ours["cpu"] / bare["cpu"]
        wall = ours["seconds"] / bare["seconds"]
        print(f"ratio batchyard/bare: {ratio:.2f}x CPU, {wall:.2f}x wall (target <= 2x)")
        grown = (ours["peak_rss_mb"] - small["peak_rss_mb"]) * 2**20 / (lines - lines // 4)
        print(
            f"peak RSS: {ours['peak_rss_mb']:.0f} MB at {lines:,} lines, "
            f"{small['peak_rss_mb']:.0f} MB at {lines // 4:,} (target < 400 MB); "
            f"growth {grown:.0f} bytes/line (the custom_id index); shards: {int(ours['shards'])}"
        )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
