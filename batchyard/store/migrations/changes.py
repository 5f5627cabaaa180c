"""Every change to the schema since the first one (m002 onwards), in number order.

Owns the migrations after `m001_initial`, one function each, defined in number order (the
package applies them in number order in any case). A new migration is one more
`@migration` function `mNNN_...` at the end of this module, with the next free number;
document its columns in docs/store.md. (No `__all__`: the `migration` decorator, not a
list of names, is what makes one part of the set.)
"""

from __future__ import annotations

from sqlite_utils import Database

from batchyard.models import RequestStatus, Route

from .base import in_list, migration, widen_check


@migration
def m002_request_id(db: Database) -> None:
    """The provider's request id of each answer (`x-request-id`, or a batch line's
    `response.request_id`), so results can be traced at OpenAI."""
    db.execute("ALTER TABLE requests ADD COLUMN request_id TEXT")


@migration
def m003_fast_route(db: Database) -> None:
    """Route `fast` (fast mode, `service_tier: "fast"`): allowed in `requests.route` and
    part of the real-time dispatch queue.

    Only the CHECK constraint's list of values grows, which changes nothing stored, so the
    table's recorded SQL is edited in place (SQLite's documented procedure for constraint
    changes that existing rows already satisfy) instead of copying every row to a new table.
    Databases created after this change already have the value and are left as they are.
    """
    old = "route TEXT CHECK (route IN ('standard', 'flex', 'batch'))"
    new = f"route TEXT CHECK (route IN ({in_list(Route)}))"
    widen_check(db, "requests", old, new)
    db.execute("DROP INDEX IF EXISTS requests_realtime_queue")
    db.execute(
        """CREATE INDEX requests_realtime_queue ON requests(run_id, priority DESC, line)
            WHERE status IN ('routed', 'retryable') AND route IN ('standard', 'flex', 'fast')"""
    )


_OLD_STATUSES = (
    "status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'routed', "
    "'submitted', 'in_flight', 'retryable', 'succeeded', 'failed', 'cancelled'))"
)


@migration
def m006_live_view_and_prune(db: Database) -> None:
    """The live view and `prune`.

    A covering index for counting a run's requests by route and status (the live view asks
    every second; without it each count reads every request row, bodies and all).
    `runs.pruned_at`: when `prune` removed the run's requests, attempts and events (the run
    row and its batches stay: totals, turnaround and cancel latency are what the router
    learned). `learned_output`: per model and endpoint, the output tokens of pruned
    succeeded requests (count, sum, and the highest of their runs' p95), so the output
    estimates survive a prune. Events and attempts stay append-only while a
    run is open; once it is completed or cancelled, `prune` may delete them.
    """
    db.execute(
        "CREATE INDEX IF NOT EXISTS requests_run_route_status ON requests(run_id, route, status)"
    )
    db.execute("ALTER TABLE runs ADD COLUMN pruned_at REAL")
    db.execute(
        """CREATE TABLE learned_output (
            model TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            requests INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            high INTEGER NOT NULL,
            PRIMARY KEY (model, endpoint)
        )"""
    )
    finished = "(SELECT state FROM runs WHERE id = OLD.run_id) NOT IN ('completed', 'cancelled')"
    for table, name, message in (
        ("events", "events_no_delete", "events are append-only"),
        ("attempts", "attempts_no_delete", "attempts are append-only"),
    ):
        db.execute(f"DROP TRIGGER IF EXISTS {name}")
        db.execute(
            f"""CREATE TRIGGER {name} BEFORE DELETE ON {table} WHEN {finished}
            BEGIN SELECT RAISE(ABORT, '{message} while their run is open'); END"""
        )


@migration
def m007_webhooks(db: Database) -> None:
    """Webhooks: `webhook_events` (every verified delivery once, by its `webhook-id`, so a
    retried or replayed delivery changes nothing), `poll_marks` (a batch to poll in the
    next round whatever its backoff says; polling stays the truth) and `notifications`
    (a run's `--notify` URL and whether the signed call was made)."""
    db.execute(
        """CREATE TABLE webhook_events (
            webhook_id TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            provider_batch_id TEXT,
            batch_id INTEGER REFERENCES batches(id),
            received_at REAL NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE poll_marks (
            batch_id INTEGER PRIMARY KEY REFERENCES batches(id),
            marked_at REAL NOT NULL,
            reason TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE notifications (
            run_id TEXT PRIMARY KEY REFERENCES runs(id),
            url TEXT NOT NULL,
            webhook_id TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('waiting', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            sent_at REAL,
            last_error TEXT
        )"""
    )


@migration
def m008_checks_and_reuse(db: Database) -> None:
    """Answer checks and reuse: statuses `invalid` and `twin`, re-queue accounting and
    where a reused answer came from.

    - `requests.status` may be `invalid` (the answer failed a check every time) or `twin`
      (identical to an earlier line of the run, waiting for its outcome); as in m003 only
      the CHECK list grows, so the recorded SQL is edited in place.
    - `fingerprint`: digest of endpoint, normalised body and resolved model (NULL: never
      reused nor merged); `reuse_of`: the custom_id of the line a twin waits for;
      `reused_from`: JSON {run, custom_id, at} of the answer a line was given from the
      store; `saved`: what that answer cost when it was bought.
    - `requeues` / `requeue_cost`: sends after a failed check, and what the answers that
      failed a check cost (outside the all-standard comparison, shown apart).
    """
    new = f"status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ({in_list(RequestStatus)}))"
    widen_check(db, "requests", _OLD_STATUSES, new)
    for column in (
        "fingerprint TEXT",
        "reuse_of TEXT",
        "reused_from TEXT",
        "saved REAL",
        "requeues INTEGER NOT NULL DEFAULT 0",
        "requeue_cost REAL NOT NULL DEFAULT 0",
    ):
        db.execute(f"ALTER TABLE requests ADD COLUMN {column}")
    # Earlier answers that passed their checks, newest first, found by key across runs.
    db.execute(
        "CREATE INDEX requests_reuse ON requests(fingerprint, finished_at) "
        "WHERE status = 'succeeded' AND fingerprint IS NOT NULL"
    )
    db.execute(
        "CREATE INDEX requests_fingerprints ON requests(run_id, fingerprint, line) "
        "WHERE fingerprint IS NOT NULL"
    )
    db.execute("CREATE INDEX requests_twins ON requests(run_id, reuse_of) WHERE status = 'twin'")


@migration
def m009_output_cap(db: Database) -> None:
    """Each request's own output cap (`max_tokens` and kin, times `n`; NULL when it sets
    none): OpenAI charges it against TPM, while the estimates use the expected output."""
    db.execute("ALTER TABLE requests ADD COLUMN max_output_tokens INTEGER")


@migration
def m010_sends_and_waits(db: Database) -> None:
    """Every send is an attempt row, and one place says when a request is tried again.

    `attempts.error_kind` (rate_limit, server, timeout, connection, ...) and
    `attempts.request_id` (`x-request-id`) describe each send that failed and was tried
    again (outcome `retry`); `attempts.not_before` is when its next send was due.
    `requests.not_before_reason` says why `requests.not_before` holds the request back
    (whichever mechanism decided: a retry wait, a deferral, an open breaker), and
    `requests.faults` counts its sends that met a 5xx, a timeout or a dropped connection
    (the budget for those; 429s never use it)."""
    db.execute("ALTER TABLE attempts ADD COLUMN error_kind TEXT")
    db.execute("ALTER TABLE attempts ADD COLUMN request_id TEXT")
    db.execute("ALTER TABLE attempts ADD COLUMN not_before REAL")
    db.execute("ALTER TABLE requests ADD COLUMN not_before_reason TEXT")
    db.execute("ALTER TABLE requests ADD COLUMN faults INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "CREATE INDEX attempts_kinds ON attempts(run_id, error_kind) WHERE error_kind IS NOT NULL"
    )


@migration
def m011_drivers(db: Database) -> None:
    """Which processes drive which run, and when each was last seen: the enqueued-token
    queue goes to the most urgent run only while someone drives it."""
    db.execute(
        """CREATE TABLE drivers (
            run_id TEXT NOT NULL,
            owner TEXT NOT NULL,
            seen_at REAL NOT NULL,
            PRIMARY KEY (run_id, owner)
        ) WITHOUT ROWID"""
    )


@migration
def m012_provider_clock(db: Database) -> None:
    """`clock_observations`: (provider time, our time at receipt) pairs per base URL, the
    newest few kept, from which the provider's clock is mapped onto ours (offset and rate)."""
    db.execute(
        """CREATE TABLE clock_observations (
            id INTEGER PRIMARY KEY,
            base_url TEXT NOT NULL,
            provider_at REAL NOT NULL,
            local_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX idx_clock_observations ON clock_observations (base_url, id)")


@migration
def m013_fallback(db: Database) -> None:
    """The fallback model a line was moved to (`--fallback`, `[fallback]` in batchyard.toml):
    `requests.fallback` is JSON {from, to, reason, error, at} (NULL: answered, or to be, by the
    model the file named). The line's `model` and body then name the fallback model, so
    shards, limits and prices follow it; `from` keeps the model the file asked for."""
    db.execute("ALTER TABLE requests ADD COLUMN fallback TEXT")


@migration
def m014_poll_waits(db: Database) -> None:
    """When each live shard is polled next and why (`batches.next_poll_at`,
    `batches.poll_reason`): the poll backoff's decision, written once per shard, so "when
    is this request tried again?" has an answer for a line inside a running batch without
    rewriting every line on every poll. NULL: due at the next round."""
    db.execute("ALTER TABLE batches ADD COLUMN next_poll_at REAL")
    db.execute("ALTER TABLE batches ADD COLUMN poll_reason TEXT")


@migration
def m015_body_bytes(db: Database) -> None:
    """`requests.body_bytes`: the size of the body's compact JSON (as a batch line carries
    it), so that shards are planned without reading, decompressing and encoding every body
    again. NULL for lines recorded before: their size is computed from the body."""
    db.execute("ALTER TABLE requests ADD COLUMN body_bytes INTEGER")


@migration
def m016_pending_fingerprints(db: Database) -> None:
    """`requests_fingerprints` holds only lines still pending: those an earlier answer may
    answer when a run is recorded (its one use). A plan finds the twins of a file itself and
    records them linked to their first line, so the lines it routes (nearly all of them)
    are not indexed by a random key as they are inserted, which made recording a large
    file about twice as slow."""
    db.execute("DROP INDEX requests_fingerprints")
    db.execute(
        "CREATE INDEX requests_fingerprints ON requests(run_id, fingerprint, line) "
        "WHERE fingerprint IS NOT NULL AND status = 'pending'"
    )


@migration
def m017_fallback_index(db: Database) -> None:
    """`requests_fallback`: the lines of a run moved to a fallback model (few, usually
    none), so the fallback totals `status` shows read those lines and not the whole run."""
    db.execute("CREATE INDEX requests_fallback ON requests(run_id) WHERE fallback IS NOT NULL")


@migration
def m018_answers(db: Database) -> None:
    """`answers`: each finished request's output line as `fetch` writes it, so that `fetch`
    reads one narrow table in line order; `answers_due`: the finished requests whose line is
    not made yet (`store/answers.py`). Lines finished before this have none; `fetch` makes
    theirs from their rows."""
    db.execute(
        """CREATE TABLE answers (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            line INTEGER NOT NULL,
            status TEXT NOT NULL,
            fallback INTEGER NOT NULL,
            text BLOB NOT NULL
        )"""
    )
    db.execute("CREATE INDEX answers_run_line ON answers(run_id, line, id)")
    db.execute(
        "CREATE TABLE answers_due (run_id TEXT NOT NULL, id INTEGER NOT NULL, "
        "PRIMARY KEY (run_id, id)) WITHOUT ROWID"
    )


@migration
def m019_waiting_lines(db: Database) -> None:
    """What a submission round reads of the lines that wait for a shard, from indexes
    alone. `requests_run_route_status` goes on past (run_id, route, status) with the shard
    and, for the routed batch lines no shard holds yet, everything a round counts or
    checks: per group (endpoint, model) in line order, their input tokens, body size and
    custom_id length. A round then counts a group's lines and finds those too large for
    any batch without reading a row (a million-line run read every row, bodies and all,
    several times a round). `requests_sent_again`: the routed lines sent before (a failed
    or expired batch's), few or none, which the resend rule weighs each round."""
    db.execute("DROP INDEX requests_run_route_status")
    db.execute(
        "CREATE INDEX requests_run_route_status ON requests(run_id, route, status, shard, "
        "endpoint, model, line, est_input_tokens, body_bytes, length(custom_id))"
    )
    db.execute(
        "CREATE INDEX requests_sent_again ON requests(run_id, line) "
        "WHERE status = 'routed' AND attempts > 0"
    )
