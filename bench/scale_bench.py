"""What a user runs on a large file, against the floor of reading it: plan, submit, fetch.

Usage: python bench/scale_bench.py [--lines 1000000] [--file PATH] [--keep] [--json]

Generates a deterministic file of ~1.2 KB chat requests for two models (or uses --file),
then runs each step as its own process, so that its wall time and peak RSS (`ru_maxrss`
from `wait4`) are its own; the simulator runs in a separate process and is not counted.
Each step starts with what it reads dropped from the page cache (Linux), as its baseline
does, so that a database larger than memory is not compared with a file still in memory:

- floor: stream the file, `json.loads` each line, count its message tokens with tiktoken;
- plan: `batchyard plan FILE --route batch --json`;
- executemany: a bare chunked `executemany` of the same rows (custom_id, line, the raw
  line as body) into a one-table database with the store's pragmas;
- submit: `batchyard submit FILE --route batch --detach --json` against the simulator;
- answer: every line of the run answered through `Store.apply_results`, as a finished
  batch's output is applied, and its output line made (`Store.store_answer_lines`, as the
  run's driver does after applying); the lines are marked submitted first by one SQL
  UPDATE (the simulator would need about an hour to take a million lines through Tier-1
  queue limits);
- bare read+write: read the merged results file line by line and write each line out;
- fetch: `batchyard fetch RUN -o results.jsonl`.

Targets (issue 17): plan <= 1.5x floor; submit <= 2x floor + executemany; fetch <= 2x
bare read+write; peak RSS < 300 MB; database bytes per input byte after submit <= 1.2.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchyard.store import Result

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("gpt-4o-mini", "gpt-4.1-mini")
_TEXT = (
    "the batch queue holds requests until a model is free to answer them while real time calls "
    "cost more but return at once so the router weighs deadline budget and capacity before it "
    "splits work into shards of fifty thousand lines each under two hundred megabytes with "
    "tokens counted offline using the vocabulary shipped in the package"
)
WORDS = tuple(_TEXT.split(" "))
CHUNK = 5_000
TARGET_RSS_MB = 300.0


def generate(path: Path, lines: int, words: int = 165) -> None:
    """`lines` chat requests of ~1.2 KB, alternating two models, deterministic."""
    rng = random.Random(20251115)
    with path.open("w", encoding="utf-8") as f:
        for i in range(lines):
            body = {
                "model": MODELS[i % 2],
                "messages": [
                    {"role": "system", "content": "You are a careful assistant."},
                    {"role": "user", "content": " ".join(rng.choices(WORDS, k=words))},
                ],
                "max_completion_tokens": 200 + i % 100,
            }
            line = {"custom_id": f"req-{i:08d}", "method": "POST", "url": "/v1/chat/completions"}
            f.write(json.dumps({**line, "body": body}) + "\n")


# ---- steps that run inside a child process -------------------------------------------------
def step_floor(path: Path) -> dict[str, Any]:
    from batchyard.tokens import prompt_tokens

    count = tokens = 0
    with path.open("rb") as f:
        for raw in f:
            obj = json.loads(raw)
            tokens += prompt_tokens(obj["url"], obj["body"])
            count += 1
    return {"lines": count, "tokens": tokens}


def step_executemany(path: Path, db_path: Path) -> dict[str, Any]:
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute(
        "CREATE TABLE requests (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, "
        "custom_id TEXT NOT NULL, line INTEGER NOT NULL, body BLOB NOT NULL, "
        "UNIQUE (run_id, custom_id))"
    )
    sql = "INSERT INTO requests (run_id, custom_id, line, body) VALUES (?, ?, ?, ?)"
    rows: list[tuple[str, str, int, bytes]] = []
    count = 0
    with path.open("rb") as f:
        for count, raw in enumerate(f, 1):
            rows.append(("run_bench", f"req-{count:08d}", count, raw))
            if len(rows) >= CHUNK:
                db.execute("BEGIN")
                db.executemany(sql, rows)
                db.execute("COMMIT")
                rows.clear()
    if rows:
        db.execute("BEGIN")
        db.executemany(sql, rows)
        db.execute("COMMIT")
    db.close()
    return {"rows": count}


_ANSWER = (
    "The queue holds the request until a model is free; the answer comes back within the "
    "day, at half the price, and the router weighs the deadline before it splits the work. "
) * 3


def _answers(db_path: Path, run_id: str) -> Iterator[Result]:
    """A succeeded result for each line of the run, in id order, read a page at a time
    (by rowid range: through the run's index, each page would read the whole run)."""
    from batchyard.models import RequestStatus
    from batchyard.store import Result

    db = sqlite3.connect(db_path)
    after = 0
    while True:
        page = db.execute(
            "SELECT id, custom_id, model, est_input_tokens, est_cost_batch FROM requests "
            "NOT INDEXED WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?",
            (run_id, after, CHUNK),
        ).fetchall()
        for row_id, custom_id, model, tokens, cost in page:
            body = {
                "id": f"chatcmpl-{row_id}",
                "object": "chat.completion",
                "created": 1_800_000_000,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"{custom_id}: {_ANSWER}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": tokens,
                    "completion_tokens": 90,
                    "total_tokens": tokens + 90,
                },
            }
            yield Result(
                custom_id,
                RequestStatus.SUCCEEDED,
                200,
                body,
                input_tokens=tokens,
                output_tokens=90,
                cost=cost,
                request_id=f"req_{row_id}",
            )
        if len(page) < CHUNK:
            db.close()
            return
        after = page[-1][0]


def step_answer(db_path: Path, run_id: str) -> dict[str, Any]:
    """Every line of the run answered, through `Store.apply_results` as a finished batch's
    output file is (status succeeded, a chat.completion body of ~700 B, usage and cost),
    then the output lines `fetch` reads made as the run's driver makes them. The lines are
    first marked submitted by one SQL UPDATE: the simulator would need about an hour to
    take a million lines through Tier-1 queue limits, and sending them is not what this
    benchmark measures."""
    from batchyard.store import Store

    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute(
        "UPDATE requests SET status = 'submitted', attempts = 1 "
        "WHERE run_id = ? AND status = 'routed'",
        (run_id,),
    )
    db.close()
    with Store.open(db_path) as store:
        report = store.apply_results(run_id, _answers(db_path, run_id))
        store.store_answer_lines(run_id)  # as the run's driver does after applying
    return {"rows": report.applied}


def step_copy(src: Path, dst: Path) -> dict[str, Any]:
    count = 0
    with src.open("rb") as f, dst.open("wb") as out:
        for line in f:
            out.write(line)
            count += 1
    return {"lines": count}


# ---- the parent ------------------------------------------------------------------------------
def _evict(*paths: Path) -> None:
    """Flush `paths` and drop them from the page cache (Linux), so that every step reads its
    input from disk as its baseline does: otherwise `fetch` reads a database larger than
    memory from disk while its baseline reads the file `fetch` has just written from
    memory (at 10M lines: 3.2x against 1.8x with both read from disk)."""
    if not hasattr(os, "posix_fadvise"):
        return
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _measure(
    argv: list[str], env: dict[str, str], reads: Path, stdout: Path | None = None
) -> dict[str, Any]:
    """Run `argv`, which reads `reads` (a file, or a database with its WAL), to the end from
    a cold page cache; its wall seconds, peak RSS (MB) and exit code."""
    _evict(*_files_of(reads))
    out = stdout.open("wb") if stdout else subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if stdout:
        out.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} ... failed ({proc.returncode}):\n{err.decode()}")
    result = {
        "wall": wall,
        "rss_mb": usage.ru_maxrss / 1024,
        "cpu": usage.ru_utime + usage.ru_stime,
    }
    print(f"{' '.join(argv[2:5])}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def _child(step: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--step", step, *args]


def _batchyard(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "batchyard", "--db", str(db), *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _remove(tmp: Path, pattern: str) -> None:
    """Delete what a measured step left that no later step reads: a 10M run needs the disk."""
    for path in tmp.glob(pattern):
        path.unlink()


def _files_of(path: Path) -> list[Path]:
    """`path` and what SQLite keeps beside it (`-wal`, `-shm`) where it is a database."""
    return [p for p in path.parent.glob(path.name + "*") if p.is_file()]


def _db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in _files_of(db))


def _start_simulator(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "batchyard", "sim", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*argv, "--time-scale", "3000"],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the simulator did not start:\n{log.read_text()}") from None
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the simulator did not open its port within 60 s")


def run(lines: int, file: Path | None, tmp: Path, steps: set[str]) -> dict[str, Any]:
    path = file or tmp / "requests.jsonl"
    if file is None:
        generate(path, lines)
    size = path.stat().st_size
    count = sum(1 for _ in path.open("rb"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp),
        "BATCHYARD_POLL_MIN_SECONDS": "0.5",
        "BATCHYARD_POLL_MAX_SECONDS": "2",
    }
    results: dict[str, Any] = {"lines": count, "bytes": size, "steps": {}}
    rows = results["steps"]
    rows["floor"] = _measure(_child("floor", str(path)), env, path)
    if "plan" in steps:
        rows["plan"] = _measure(
            _batchyard(tmp / "plan.db", "plan", str(path), "--route", "batch", "--json"), env, path
        )
        _remove(tmp, "plan.db*")
    if "submit" not in steps:
        return results
    bare = _child("executemany", str(path), str(tmp / "bare.db"))
    rows["executemany"] = _measure(bare, env, path)
    _remove(tmp, "bare.db*")  # measured; at 10M it is 14 GB of the disk fetch needs
    port = _free_port()
    sim = _start_simulator(env, port, tmp / "sim.log")
    try:
        api = {**env, "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": "sk-sim"}
        db = tmp / "jobs.db"
        out = tmp / "submit.json"
        submit = _batchyard(db, "submit", str(path), "--route", "batch", "--detach", "--json")
        rows["submit"] = _measure(submit, api, path, out)
        results["db_bytes_submitted"] = _db_bytes(db)
        run_id = json.loads(out.read_text())["run_id"]
        if "fetch" in steps:
            rows["answer"] = _measure(_child("answer", str(db), run_id), env, db)
            results["db_bytes_with_results"] = _db_bytes(db)
            merged = tmp / "results.jsonl"
            rows["fetch"] = _measure(_batchyard(db, "fetch", run_id, "-o", str(merged)), api, db)
            copy = _child("copy", str(merged), str(tmp / "copy.jsonl"))
            rows["read+write"] = _measure(copy, env, merged)
            _remove(tmp, "copy.jsonl")
            results["results_lines"] = sum(1 for _ in merged.open("rb"))
    finally:
        sim.terminate()
        sim.wait(timeout=30)
    return results


def report(results: dict[str, Any]) -> list[str]:
    steps = results["steps"]
    floor = steps["floor"]["wall"]
    lines = [
        f"{results['lines']:,} lines, {results['bytes'] / 1e6:,.0f} MB "
        f"({results['bytes'] / results['lines']:,.0f} B/line)",
        "",
        "| step | wall | ratio (wall) | target | CPU | ratio (CPU) | peak RSS |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    cpu_floor = steps["floor"]["cpu"]

    def row(name: str, ratio: str, target: str, base: float | None = None) -> None:
        s = steps[name]
        cpu = f"{s['cpu'] / base:.2f}x" if base else ""
        lines.append(
            f"| {name} | {s['wall']:.1f} s | {ratio} | {target} | {s['cpu']:.1f} s | {cpu} "
            f"| {s['rss_mb']:.0f} MB |"
        )

    row("floor", "1.00x", "", cpu_floor)
    if "plan" in steps:
        r = steps["plan"]["wall"] / floor
        row("plan", f"{r:.2f}x floor", "<= 1.5x" + (" met" if r <= 1.5 else " NOT met"), cpu_floor)
    if "submit" in steps:
        bare = floor + steps["executemany"]["wall"]
        row("executemany", f"{steps['executemany']['wall'] / floor:.2f}x floor", "")
        r = steps["submit"]["wall"] / bare
        met = "<= 2x" + (" met" if r <= 2 else " NOT met")
        row("submit", f"{r:.2f}x (floor+executemany)", met, cpu_floor + steps["executemany"]["cpu"])
    if "fetch" in steps:
        row("answer", f"{steps['answer']['wall'] / floor:.2f}x floor", "(apply_results)")
        row("read+write", f"{steps['read+write']['wall'] / floor:.2f}x floor", "")
        r = steps["fetch"]["wall"] / steps["read+write"]["wall"]
        met = "<= 2x" + (" met" if r <= 2 else " NOT met")
        row("fetch", f"{r:.2f}x read+write", met, steps["read+write"]["cpu"])
    peak = max(s["rss_mb"] for name, s in steps.items() if name in ("plan", "submit", "fetch"))
    lines.append("")
    lines.append(
        "ratio (CPU): user+system seconds over the same baseline (steady on a busy machine)"
    )
    lines.append(
        f"peak RSS of batchyard: {peak:.0f} MB (target < {TARGET_RSS_MB:.0f} MB: "
        + ("met)" if peak < TARGET_RSS_MB else "NOT met)")
    )
    if "db_bytes_submitted" in results:
        ratio = results["db_bytes_submitted"] / results["bytes"]
        lines.append(
            f"database after submit: {results['db_bytes_submitted'] / 1e6:,.0f} MB, "
            f"{ratio:.2f} bytes per input byte "
            f"(target <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'})"
        )
    if "db_bytes_with_results" in results:
        lines.append(
            f"database with results: {results['db_bytes_with_results'] / 1e6:,.0f} MB; "
            f"fetch wrote {results['results_lines']:,} lines"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--file", type=Path, help="use this request file instead of generating")
    parser.add_argument("--steps", default="plan,submit,fetch", help="which steps beyond floor")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.step == "answer":
        print(json.dumps(step_answer(Path(args.args[0]), args.args[1])))
        return
    if args.step:
        paths = [Path(a) for a in args.args]
        steps: dict[str, Callable[..., dict[str, Any]]] = {
            "floor": step_floor,
            "executemany": step_executemany,
            "copy": step_copy,
        }
        fn = steps[args.step]
        print(json.dumps(fn(*paths)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="batchyard-scale-"))
    try:
        results = run(args.lines, args.file, tmp, set(args.steps.split(",")))
        if args.json:
            print(json.dumps(results))
        else:
            print("\n".join(report(results)))
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
