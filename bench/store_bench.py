"""Benchmark the job store's bulk paths against bare `executemany` on the same table.

    python bench/store_bench.py [--rows N] [--body-bytes B] [--dir DIR] [--compress-all]

Prints, in one run:
  1. rows/s recording N requests through `Store.add_requests` vs a bare chunked
     `executemany` INSERT into the same `requests` table (same indexes, pragmas and chunk
     size); target ratio >= 0.5.
  2. the same for applying N results (`Store.apply_results` vs a bare chunked UPDATE).
  3. the database size per 1,000,000 requests of ~B-byte bodies (after recording, and
     after applying results with ~600-byte responses).

Both sides get their input from equally cheap generators inside the timed section; the
store's side includes what the store really does (JSON encoding, optional compression,
transition checks, attempt rows, cost totals). Writes only under --dir (a temp dir by
default), deleted afterwards.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import string
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchyard.models import RequestStatus
from batchyard.store import NewRequest, Result, Store

ENDPOINT = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
CHUNK = 5000


def _text_pool(size: int) -> str:
    rnd = random.Random(7)
    words = ["".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(2, 9))) for _ in range(4000)]
    return " ".join(rnd.choices(words, k=size // 5))


POOL = _text_pool(4_000_000)


def _content(i: int, n: int) -> str:
    start = (i * 7919) % (len(POOL) - n)
    return POOL[start : start + n]


def new_requests(rows: int, body_bytes: int) -> Iterator[NewRequest]:
    n = max(body_bytes - 110, 10)  # the JSON envelope is ~110 bytes
    for i in range(rows):
        body = {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": _content(i, n)},
            ],
            "max_tokens": 200,
        }
        yield NewRequest(f"r{i}", i + 1, ENDPOINT, MODEL, body, 250, 200, 2e-4, 1e-4, 1e-4)


def bare_rows(run_id: str, rows: int, body_bytes: int, now: float) -> Iterator[tuple[Any, ...]]:
    n = max(body_bytes - 110, 10)
    for i in range(rows):
        body = (
            '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},'
            f'{{"role":"user","content":"{_content(i, n)}"}}],"max_tokens":200}}'
        )
        yield (run_id, f"r{i}", i + 1, ENDPOINT, MODEL, 0, body, 250, 200, 2e-4, 1e-4, 1e-4, now)


def _response(i: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{i}",
        "object": "chat.completion",
        "created": 1_800_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": _content(i, 300)},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 250, "completion_tokens": 80, "total_tokens": 330},
    }


def results(rows: int) -> Iterator[Result]:
    for i in range(rows):
        yield Result(
            f"r{i}",
            RequestStatus.SUCCEEDED,
            200,
            _response(i),
            None,
            None,
            250,
            80,
            1.5e-4,
            shard=1,
        )


def bare_updates(run_id: str, rows: int, now: float) -> Iterator[tuple[Any, ...]]:
    import json

    for i in range(rows):
        yield (
            "succeeded",
            200,
            json.dumps(_response(i)),
            250,
            80,
            1.5e-4,
            now,
            now,
            run_id,
            f"r{i}",
        )


def _chunks(it: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in it:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _size(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def _submit_all(conn: sqlite3.Connection, run_id: str) -> None:
    """Put every request in one submitted batch shard, as record_batch_remote would."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO batches (id, run_id, endpoint, model, status, created_at, updated_at) "
        "VALUES (1, ?, ?, ?, 'in_progress', 0, 0)",
        (run_id, ENDPOINT, MODEL),
    )
    conn.execute(
        "UPDATE requests SET status = 'submitted', route = 'batch', shard = 1, attempts = 1"
    )
    conn.execute(
        "INSERT INTO attempts (run_id, custom_id, attempt, route, shard, started_at) "
        "SELECT run_id, custom_id, 1, 'batch', 1, 0 FROM requests"
    )
    conn.execute("COMMIT")


class Timer:
    """Wall-clock and this process's CPU time of a block (CPU ignores other load)."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def _line(what: str, rows: int, store: Timer, bare: Timer) -> str:
    s_rate, b_rate = rows / store.wall, rows / bare.wall
    return (
        f"{what:<16}: store {s_rate:>9,.0f} rows/s | bare executemany {b_rate:>9,.0f} rows/s | "
        f"ratio {s_rate / b_rate:.2f} (target >= 0.50) | CPU-time ratio "
        f"{bare.cpu / store.cpu:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--body-bytes", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument(
        "--compress-all",
        action="store_true",
        help="compress every body (compress_min_bytes=0) to see that trade-off",
    )
    args = ap.parse_args()
    rows: int = args.rows
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        store_path, bare_path = Path(tmp, "store.db"), Path(tmp, "bare.db")
        store = Store.open(store_path, compress_min_bytes=0 if args.compress_all else 2048)
        run_id = store.create_run(
            source_path="bench.jsonl", source_sha256="0" * 64, endpoint=ENDPOINT, models=[MODEL]
        )
        # the bare side: the same schema and pragmas, then plain sqlite3 and executemany
        Store.open(bare_path).close()
        bare = sqlite3.connect(bare_path, isolation_level=None)
        bare.execute("PRAGMA synchronous = FULL")
        bare.execute("PRAGMA foreign_keys = ON")
        bare.execute(
            "INSERT INTO runs (id, source_path, source_sha256, endpoint, models, "
            "route_override, state, created_at, updated_at) "
            "VALUES (?, 'b', 'b', ?, '[]', 'auto', 'pending', 0, 0)",
            (run_id, ENDPOINT),
        )
        print(f"rows: {rows:,}  body: ~{args.body_bytes} B  chunk: {CHUNK:,} rows/transaction")

        with Timer() as store_ins:
            store.add_requests(run_id, new_requests(rows, args.body_bytes), chunk_size=CHUNK)
        insert_sql = (
            "INSERT INTO requests (run_id, custom_id, line, endpoint, model, priority, body, "
            "est_input_tokens, est_output_tokens, est_cost_standard, est_cost_flex, "
            "est_cost_batch, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        with Timer() as bare_ins:
            for chunk in _chunks(bare_rows(run_id, rows, args.body_bytes, time.time())):
                bare.execute("BEGIN IMMEDIATE")
                bare.executemany(insert_sql, chunk)
                bare.execute("COMMIT")
        store.close()
        size_recorded = _size(store_path)
        bare_size = _size(bare_path)

        store_conn = sqlite3.connect(store_path, isolation_level=None)
        _submit_all(store_conn, run_id)
        store_conn.close()
        _submit_all(bare, run_id)
        store = Store.open(store_path, compress_min_bytes=0 if args.compress_all else 2048)
        with Timer() as store_app:
            report = store.apply_results(run_id, results(rows), chunk_size=CHUNK)
        assert report.applied == rows, report
        update_sql = (
            "UPDATE requests SET status = ?, status_code = ?, response_body = ?, "
            "input_tokens = ?, output_tokens = ?, cost = ?, updated_at = ?, finished_at = ? "
            "WHERE run_id = ? AND custom_id = ?"
        )
        with Timer() as bare_app:
            for chunk in _chunks(bare_updates(run_id, rows, time.time())):
                bare.execute("BEGIN IMMEDIATE")
                bare.executemany(update_sql, chunk)
                bare.execute("COMMIT")
        # What a run's driver does next (not part of applying, and not compared with a bare
        # statement): make the output lines `fetch` reads.
        with Timer() as store_lines:
            assert store.store_answer_lines(run_id) == rows
        store.close()
        bare.close()
        size_applied = _size(store_path)

        per_m = 1_000_000 / rows / 1e6
        print(_line("record requests", rows, store_ins, bare_ins))
        print(_line("apply results", rows, store_app, bare_app))
        print(
            f"output lines    : store {rows / store_lines.wall:>9,.0f} rows/s "
            f"(the lines fetch reads, made after applying; CPU {store_lines.cpu:.1f} s)"
        )
        print(
            f"database size per 1M requests: {size_recorded * per_m:,.0f} MB recorded, "
            f"{size_applied * per_m:,.0f} MB with results "
            f"(bare table, recorded: {bare_size * per_m:,.0f} MB)"
        )


if __name__ == "__main__":
    main()
