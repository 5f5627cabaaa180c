"""Planning shards: routed batch requests put in a new shard, in one transaction.

Owns `create_shard` (a plan the caller knows is its own) and `claim_shard` (the same as a
claim several processes may race for, with the model's enqueued-token queue read in the
same transaction), and the request changes that go with them (each request's `shard` set).
The shard's metadata carries the tag that finds the provider batch again after a crash.
No remote calls here.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchyard.errors import NotFound, StoreError

from .base import by_name, chunked, placeholders
from .codec import dumps
from .queue import QueueMixin
from .rows import SHARD_TOKENS_KEY

__all__ = ["ShardsMixin"]


class ShardsMixin(QueueMixin):
    def create_shard(
        self,
        run_id: str,
        *,
        endpoint: str,
        model: str,
        custom_ids: Sequence[str],
        metadata: dict[str, str] | None = None,
    ) -> int:
        """Plan a shard of routed batch requests (one transaction); returns its id.

        Every request must be routed to batch, have this model and endpoint, and be in
        no other shard. The shard's metadata gets `batchyard_run` and `batchyard_shard`,
        the tag that finds the provider batch again if a crash hides its id.
        """
        shard = self._plan_shard(run_id, endpoint, model, custom_ids, metadata, None, strict=True)
        assert shard is not None
        return shard

    def claim_shard(
        self,
        run_id: str,
        *,
        endpoint: str,
        model: str,
        custom_ids: Sequence[str],
        input_tokens: int,
        queue_limit: int | None,
        metadata: dict[str, str] | None = None,
    ) -> int | None:
        """`create_shard` as a claim several processes may race for: None (nothing
        written) when another process has already put one of the requests in a shard or
        moved it on, or when the model's queue has no room for `input_tokens` beside the
        tokens of every unfinished shard of the model (all runs), read in the same
        transaction. The loser reads the requests again next round."""
        tokens = dict(metadata or {}) | {SHARD_TOKENS_KEY: str(input_tokens)}
        queue = (input_tokens, queue_limit)
        return self._plan_shard(run_id, endpoint, model, custom_ids, tokens, queue, strict=False)

    def _plan_shard(
        self,
        run_id: str,
        endpoint: str,
        model: str,
        custom_ids: Sequence[str],
        metadata: dict[str, str] | None,
        queue: tuple[int, int | None] | None,
        *,
        strict: bool,
    ) -> int | None:
        self._require_run(run_id)
        if not custom_ids:
            raise StoreError("A batch shard needs at least one request.")
        with self._write() as conn:
            ids: list[int] = []
            joinable = {
                "status": "routed",
                "route": "batch",
                "shard": None,
                "model": model,
                "endpoint": endpoint,
            }
            for part in chunked(custom_ids, 500):
                rows = {
                    r["custom_id"]: r
                    for r in by_name(
                        conn.execute(
                            "SELECT custom_id, id, status, route, shard, model, endpoint "
                            "FROM requests WHERE run_id = ? "
                            f"AND custom_id IN ({placeholders(len(part))})",
                            (run_id, *part),
                        )
                    )
                }
                for cid in part:
                    r = rows.get(cid)
                    if r is None:
                        raise NotFound(f"Run {run_id} has no request with custom_id '{cid}'.")
                    if any(r[k] != v for k, v in joinable.items()):
                        if not strict and (r["model"], r["endpoint"]) == (model, endpoint):
                            return None  # another process planned or moved it first
                        raise StoreError(
                            f"Request '{cid}' cannot join a {model} {endpoint} batch shard: it "
                            f"is {r['status']}, route {r['route']}, shard {r['shard']}, "
                            f"model {r['model']}, endpoint {r['endpoint']}."
                        )
                    ids.append(r["id"])
            if queue is not None:
                tokens, limit = queue
                if limit is not None and self._enqueued(conn, model) + tokens > limit:
                    return None  # another run's shard took the room first
            now = self.now()
            cur = conn.execute(
                "INSERT INTO batches (run_id, endpoint, model, status, request_count, "
                "created_at, updated_at) VALUES (?, ?, ?, 'planned', ?, ?, ?)",
                (run_id, endpoint, model, len(custom_ids), now, now),
            )
            shard = int(cur.lastrowid or 0)
            tag = dict(metadata or {}) | {"batchyard_run": run_id, "batchyard_shard": str(shard)}
            conn.execute("UPDATE batches SET metadata = ? WHERE id = ?", (dumps(tag), shard))
            conn.executemany(
                "UPDATE requests SET shard = ?, updated_at = ? WHERE id = ?",
                [(shard, now, i) for i in ids],
            )
            self._event(
                conn,
                run_id,
                "batch.planned",
                f"Planned shard {shard} of {len(custom_ids)} {model} request(s)",
                {"requests": len(custom_ids)},
                shard=shard,
            )
        return shard
