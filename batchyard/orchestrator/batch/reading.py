"""A group's batch lines as shard planning reads them, and what a full queue leaves unread.

Owns `GroupRead`: one (endpoint, model) group's lines in one submission round, streamed
to the planner as `ShardItem`s in line order (`items`) until the queue takes no more. From
there nothing is read line by line (a million-line file would cost seconds every round
while the queue is full): what waits is the group's totals less what went, was left out
or never fits (`waiting`), and the lines that can never be batched are found by the store
among the few large enough to be in doubt (`never_fit_after`), so they still go to real
time in the same round. It must not plan, admit or submit shards (`submit.py` does).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from batchyard.orchestrator.batch.remote import BatchContext
from batchyard.shards import (
    ID_CHARS,
    Admitting,
    Shard,
    ShardItem,
    ShardLimits,
    shard_line,
    shard_line_size,
)
from batchyard.store.rows import BatchCandidate
from batchyard.tokens import embedding_inputs

__all__ = ["GroupRead"]


@dataclass
class GroupRead:
    """One group's lines in one round: how far they were read, the shards that went and
    the lines set aside as never fitting a batch (`unbatchable`, in line order)."""

    run_id: str
    endpoint: str
    model: str
    skip: Mapping[str, object]  # lines left out this round (sent before, waiting)
    line: int = -1  # the last line read
    admitted: int = 0
    admitted_tokens: int = 0
    unbatchable: list[str] = field(default_factory=list)
    unbatchable_tokens: int = 0

    def items(self, ctx: BatchContext, limits: ShardLimits) -> Iterator[ShardItem]:
        """The group's unsharded routed batch lines that can fit a shard, as planning items,
        in line order, streamed; those that never can are set aside."""
        lines = ctx.store.batch_candidates(self.run_id, endpoint=self.endpoint, model=self.model)
        for r in lines:
            self.line = r.line
            if r.custom_id in self.skip:
                continue
            item = _item(ctx, self.run_id, r)
            if limits.why_never_fits(item) is None:
                yield item
            else:
                self._never_fits(item)

    def went(self, shard: Shard) -> None:
        """`shard` was claimed and goes out."""
        self.admitted += shard.requests
        self.admitted_tokens += shard.input_tokens

    def never_fit_after(self, ctx: BatchContext, limits: ShardLimits) -> None:
        """Set aside, as if planning had met them, the lines after the last one read that
        can never be batched: only those the store finds in doubt (a large body or
        custom_id, many tokens) are read."""
        doubtful = ctx.store.batch_candidates_over(
            self.run_id,
            endpoint=self.endpoint,
            model=self.model,
            after_line=self.line,
            body_bytes=limits.fitting_body_bytes(self.endpoint),
            id_chars=ID_CHARS,
            input_tokens=limits.max_input_tokens,
        )
        for r in doubtful:
            if r.custom_id in self.skip:
                continue
            item = _item(ctx, self.run_id, r)
            if limits.why_never_fits(item) is not None:
                self._never_fits(item)

    def waiting(
        self, totals: tuple[int, int], left_out_tokens: int, admitting: Admitting
    ) -> tuple[int, int]:
        """(requests, input tokens) held for queue room once `admitting` has blocked: the
        group's `totals` (lines, tokens) less what went, was left out (`skip`, of
        `left_out_tokens`), never fits, or is reported too big for the queue."""
        if not admitting.blocked:
            return 0, 0
        lines = totals[0] - len(self.skip) - self.admitted - len(self.unbatchable)
        tokens = totals[1] - left_out_tokens - self.admitted_tokens - self.unbatchable_tokens
        lines -= admitting.too_big_requests
        tokens -= admitting.too_big_tokens
        return max(0, lines), max(0, tokens)

    def _never_fits(self, item: ShardItem) -> None:
        self.unbatchable.append(item.custom_id)
        self.unbatchable_tokens += item.input_tokens


def _item(ctx: BatchContext, run_id: str, r: BatchCandidate) -> ShardItem:
    """A line as a planning item. Its size comes from the store: the body is read only where
    its size was not kept, or to count an embeddings line's inputs."""
    endpoint = r.endpoint
    embeddings = endpoint.endswith("/embeddings")
    if r.body_bytes is not None and not embeddings:
        size, inputs = shard_line_size(r.custom_id, endpoint, r.body_bytes), 0
    else:
        body = ctx.store.get_bodies(run_id, [r.custom_id])[r.custom_id]
        size = len(shard_line(r.custom_id, endpoint, body))
        inputs = len(embedding_inputs(body)) if embeddings else 0
    return ShardItem(r.custom_id, size, r.est_input_tokens, inputs)
