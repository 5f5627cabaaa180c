"""Splitting one (endpoint, model) group of requests into batches, and admitting them to the queue.

Owns the per-batch limits and the pure planning over them: it sees only lightweight
`ShardItem`s (custom_id, bytes, input tokens, embedding inputs), never bodies, and does no
I/O, reads no clock and knows nothing of the store or the SDK. The orchestrator feeds it
items, persists the shards it gets back and asks `admit` before each upload.

Limits, all enforced at once (a shard is closed *before* any would be crossed):

- `MAX_REQUESTS` (50,000) requests per batch file;
- `MAX_SHARD_BYTES`: 200 MB (taken as 200,000,000 bytes, the smaller reading) times
  `BYTES_MARGIN` (0.95), i.e. 190,000,000 bytes of JSONL as `shard_line` writes it;
- `MAX_EMBEDDING_INPUTS` (50,000) embedding inputs per `/v1/embeddings` batch;
- the model's enqueued-token limit times `TOKEN_MARGIN` (0.95), because our input-token
  counts are estimates (images, tools) and a shard larger than the whole queue can never
  run. The limit comes from the model table or, once a batch failed with
  `token_limit_exceeded`, from `learn_limit`.

Admission control: the queue limit counts the input tokens of every unfinished batch of a
model, so `admit` submits planned shards in order while they fit beside the tokens already in
flight; the rest wait (with a reason) for earlier batches to finish instead of failing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from batchyard.config import ModelInfo
from batchyard.errors import InputError
from batchyard.jsontext import compact, plain

__all__ = [
    "BYTES_MARGIN",
    "ID_CHARS",
    "LEARN_SHRINK",
    "MAX_EMBEDDING_INPUTS",
    "MAX_FILE_BYTES",
    "MAX_REQUESTS",
    "MAX_SHARD_BYTES",
    "TOKEN_MARGIN",
    "Admitting",
    "QueueAdmission",
    "Shard",
    "ShardItem",
    "ShardLimits",
    "ShardPlanner",
    "admit",
    "learn_limit",
    "plan_groups",
    "plan_shards",
    "shard_line",
    "shard_line_size",
    "waves",
]

MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200_000_000
BYTES_MARGIN = 0.95
MAX_SHARD_BYTES = int(MAX_FILE_BYTES * BYTES_MARGIN)
MAX_EMBEDDING_INPUTS = 50_000
TOKEN_MARGIN = 0.95
LEARN_SHRINK = 0.8  # without a limit in the provider's message: 80% of the failed shard
ID_CHARS = 100  # custom_ids up to this long are covered by `ShardLimits.fitting_body_bytes`

K = TypeVar("K", bound=Hashable)
_LIMIT_RE = re.compile(r"Limit:\s*([\d,]+)\s+enqueued tokens", re.IGNORECASE)


def shard_line(
    custom_id: str, url: str, body: Mapping[str, Any] | None, text: bytes | None = None
) -> bytes:
    """One line of a batch input file, exactly as batchyard uploads it (newline included).

    Ingest measures `raw_bytes` with this function, so whoever writes shard files must use it
    too, or the byte limit is no longer guaranteed. `text`: the body's compact JSON, where
    the caller has it (`compact(body)`; the line is the same bytes either way).
    """
    if text is None:
        assert body is not None
        text = compact(body)
    head = compact({"custom_id": custom_id, "method": "POST", "url": url})
    return b'%s,"body":%s}\n' % (head[:-1], text)


_FRAME = len(b'{"custom_id":,"method":"POST","url":,"body":}\n')


def _string_bytes(text: str) -> int:
    """The length of `text` as a JSON string in `compact` (UTF-8, json's escapes)."""
    if plain(text):
        return len(text) + 2
    return len(compact(text))


def shard_line_size(custom_id: str, url: str, body_bytes: int) -> int:
    """`len(shard_line(...))` for a body whose compact JSON is `body_bytes` long."""
    return _FRAME + _string_bytes(custom_id) + _string_bytes(url) + body_bytes


@dataclass(frozen=True, slots=True)
class ShardItem:
    """What planning needs to know about one request."""

    custom_id: str
    raw_bytes: int
    input_tokens: int
    embedding_inputs: int = 0


@dataclass(frozen=True)
class Shard:
    """One planned batch: its requests in input order, and its totals."""

    index: int  # 0-based, per planner (that is, per (endpoint, model) group)
    custom_ids: tuple[str, ...]
    bytes: int
    input_tokens: int
    embedding_inputs: int
    # The limit that closed it: "requests", "bytes", "tokens", "embedding inputs" or "end".
    closed_by: str

    @property
    def requests(self) -> int:
        return len(self.custom_ids)


@dataclass(frozen=True)
class ShardLimits:
    """The limits one shard must respect; `max_input_tokens=None` means no queue limit."""

    max_requests: int = MAX_REQUESTS
    max_bytes: int = MAX_SHARD_BYTES
    max_embedding_inputs: int = MAX_EMBEDDING_INPUTS
    max_input_tokens: int | None = None
    model: str = ""

    def __post_init__(self) -> None:
        values = [self.max_requests, self.max_bytes, self.max_embedding_inputs]
        if self.max_input_tokens is not None:
            values.append(self.max_input_tokens)
        if min(values) < 1:
            raise InputError(f"Shard limits must be positive, got {self}.")

    @classmethod
    def for_model(cls, info: ModelInfo, learned_limit: int | None = None) -> ShardLimits:
        """Limits for `info`'s batches; a learned queue limit replaces the configured one."""
        queue = learned_limit if learned_limit is not None else info.enqueued_token_limit
        return cls(max_input_tokens=max(1, int(queue * TOKEN_MARGIN)), model=info.name)

    def fitting_body_bytes(self, url: str) -> int:
        """A body size (bytes of compact JSON) at or below which a line of `url` whose
        custom_id has at most `ID_CHARS` characters fits an empty shard on bytes and
        embedding inputs, whatever it holds: a JSON string takes at most 6 bytes a
        character (a `\\uXXXX` escape), an embedding input at least 3 with its comma (`""`
        or `[]`). So the store can find the few lines that may never fit without the others
        being read; `why_never_fits` decides for those."""
        bound = self.max_bytes - shard_line_size("", url, 0) - 6 * ID_CHARS
        if url.endswith("/embeddings"):
            bound = min(bound, 3 * self.max_embedding_inputs)
        return bound

    def why_never_fits(self, item: ShardItem) -> str | None:
        """Why `item` cannot go in any shard at all, or None when it fits in an empty one."""
        who = f" for {self.model}" if self.model else ""
        if item.raw_bytes > self.max_bytes:
            return (
                f"Request {item.custom_id!r} is {item.raw_bytes:,} bytes, more than the "
                f"{self.max_bytes:,} bytes a batch file may hold; send it in real time."
            )
        if item.embedding_inputs > self.max_embedding_inputs:
            return (
                f"Request {item.custom_id!r} has {item.embedding_inputs:,} embedding inputs, "
                f"more than the {self.max_embedding_inputs:,} a batch may hold."
            )
        if self.max_input_tokens is not None and item.input_tokens > self.max_input_tokens:
            return (
                f"Request {item.custom_id!r} has {item.input_tokens:,} input tokens, more than "
                f"the {self.max_input_tokens:,} the batch queue{who} allows at once; it can "
                "never be batched. Send it in real time (--route realtime), or raise "
                "enqueued_token_limit in batchyard.toml if your account's limit is higher."
            )
        return None


class ShardPlanner:
    """Incremental planning for one (endpoint, model) group: feed items, get closed shards.

    Holds only the open shard's custom_ids, so memory does not grow with the file.
    """

    def __init__(self, limits: ShardLimits) -> None:
        self.limits = limits
        self._index = 0
        self._ids: list[str] = []
        self._bytes = 0
        self._tokens = 0
        self._inputs = 0

    def _crossed(self, item: ShardItem) -> str | None:
        lim = self.limits
        if len(self._ids) + 1 > lim.max_requests:
            return "requests"
        if self._bytes + item.raw_bytes > lim.max_bytes:
            return "bytes"
        if self._inputs + item.embedding_inputs > lim.max_embedding_inputs:
            return "embedding inputs"
        tokens = self._tokens + item.input_tokens
        if lim.max_input_tokens is not None and tokens > lim.max_input_tokens:
            return "tokens"
        return None

    def _close(self, closed_by: str) -> Shard:
        shard = Shard(
            index=self._index,
            custom_ids=tuple(self._ids),
            bytes=self._bytes,
            input_tokens=self._tokens,
            embedding_inputs=self._inputs,
            closed_by=closed_by,
        )
        self._index += 1
        self._ids = []
        self._bytes = self._tokens = self._inputs = 0
        return shard

    def add(self, item: ShardItem) -> Shard | None:
        """Add `item`; returns the shard it closed, if it did not fit in the open one.

        Raises InputError when the item cannot fit even in an empty shard.
        """
        closed = None
        crossed = self._crossed(item)
        if crossed is not None:
            problem = self.limits.why_never_fits(item)
            if problem is not None:
                raise InputError(problem)
            closed = self._close(crossed)
        self._ids.append(item.custom_id)
        self._bytes += item.raw_bytes
        self._tokens += item.input_tokens
        self._inputs += item.embedding_inputs
        return closed

    def finish(self) -> Shard | None:
        """The last, partly filled shard (None when nothing is open)."""
        return self._close("end") if self._ids else None


def plan_shards(items: Iterable[ShardItem], limits: ShardLimits) -> Iterator[Shard]:
    """Shards for one group, in input order, each within every limit."""
    planner = ShardPlanner(limits)
    for item in items:
        shard = planner.add(item)
        if shard is not None:
            yield shard
    last = planner.finish()
    if last is not None:
        yield last


def plan_groups(
    items: Iterable[tuple[K, ShardItem]], limits_for: Callable[[K], ShardLimits]
) -> Iterator[tuple[K, Shard]]:
    """Shards for a stream that mixes groups (a batch holds one endpoint and one model).

    Each group gets its own planner, created on its first item with `limits_for(key)`;
    a shard is yielded as soon as it closes, so only one open shard per group is in memory.
    """
    planners: dict[K, ShardPlanner] = {}
    for key, item in items:
        planner = planners.get(key)
        if planner is None:
            planner = planners[key] = ShardPlanner(limits_for(key))
        shard = planner.add(item)
        if shard is not None:
            yield key, shard
    for key, planner in planners.items():
        last = planner.finish()
        if last is not None:
            yield key, last


@dataclass(frozen=True)
class QueueAdmission:
    """Which waiting shards the Batch API's enqueued-token queue takes now; the rest wait,
    `reason` says why. (Rate limits of real-time calls are `RateLimitAdmission`.)"""

    submit: tuple[Shard, ...]
    waiting: tuple[Shard, ...]
    too_big: tuple[Shard, ...]  # larger than the whole queue: re-plan them with plan_shards
    reason: str


def admit(
    waiting: Sequence[Shard], in_flight_tokens: int, limit: int | None, model: str
) -> QueueAdmission:
    """Submit waiting shards, in order, while they fit beside the tokens already enqueued.

    Order is kept (no smaller shard jumps the queue), so the first shard that does not fit
    holds back the ones after it. A shard bigger than the whole limit is set aside in
    `too_big` rather than blocking the queue forever.
    """
    admitting = Admitting(waiting, in_flight_tokens, limit, model)
    submit = tuple(admitting)
    if limit is None:
        return QueueAdmission(submit, (), (), "")
    going = {id(s) for s in submit}
    too_big = tuple(s for s in waiting if s.input_tokens > limit)
    held = tuple(s for s in waiting if s.input_tokens <= limit and id(s) not in going)
    requests, tokens = sum(s.requests for s in held), sum(s.input_tokens for s in held)
    reason = _held_reason(admitting.used, limit, model, requests, tokens, len(too_big))
    return QueueAdmission(submit, held, too_big, reason)


def _held_reason(
    used: int, limit: int, model: str, held: int, held_tokens: int, too_big: int
) -> str:
    """Why work waits for `model`'s queue: `held` requests of `held_tokens` input tokens
    behind the batches in flight (`used` of `limit` tokens), and `too_big` shards larger
    than the whole queue. Requests, not shards: what waits is planned again once there is
    room, maybe into other shards (a learned limit, lines sent again joining them)."""
    reasons = []
    if held:
        reasons.append(
            f"waiting: {used:,} of {limit:,} enqueued tokens in flight for {model}; "
            f"{held:,} request(s) ({held_tokens:,} tokens) wait for earlier batches to finish"
        )
    if too_big:
        reasons.append(
            f"{too_big} shard(s) exceed {model}'s queue limit of {limit:,} tokens and "
            "must be re-planned"
        )
    return "; ".join(reasons)


class Admitting:
    """`admit` for shards as they stream from a planner: iterating gives the shards that go
    out now, in order, while they fit, and stops at the first that does not (`blocked`).
    No later shard may go ahead of it, so nothing after it is planned or even read: the
    caller counts what waits (from its totals) and `reason` words it. A shard bigger than
    the whole queue is passed over and counted (`too_big`). A group of any size holds one
    shard at a time."""

    def __init__(
        self, shards: Iterable[Shard], in_flight_tokens: int, limit: int | None, model: str
    ) -> None:
        self._shards = shards
        self.used = in_flight_tokens
        self.limit = limit
        self.model = model
        self.blocked = False
        self.too_big = self.too_big_requests = self.too_big_tokens = 0

    def __iter__(self) -> Iterator[Shard]:
        limit = self.limit
        for shard in self._shards:
            if limit is not None and shard.input_tokens > limit:
                self.too_big += 1
                self.too_big_requests += shard.requests
                self.too_big_tokens += shard.input_tokens
            elif limit is not None and self.used + shard.input_tokens > limit:
                self.blocked = True  # order is kept: no later shard jumps the queue
                return
            else:
                self.used += shard.input_tokens
                yield shard

    def reason(self, held: int, held_tokens: int) -> str:
        """`_held_reason` for `held` requests (`held_tokens` tokens) that wait behind the
        shard that blocked, and the shards passed over as too big."""
        if self.limit is None:
            return ""
        return _held_reason(self.used, self.limit, self.model, held, held_tokens, self.too_big)


def waves(shard_tokens: Iterable[int], limit: int | None) -> int:
    """How many rounds the shards need if each round waits for the previous one to finish.

    1 means everything is enqueued at once; more means admission control will hold shards
    back, which a plan should say.
    """
    rounds, used = 0, 0
    for tokens in shard_tokens:
        if rounds == 0 or (limit is not None and used + tokens > limit):
            rounds += 1
            used = 0
        used += tokens
    return rounds


def learn_limit(current: int, failed_shard_tokens: int, message: str | None) -> int:
    """The queue limit to use after a batch failed with `token_limit_exceeded`.

    The provider's message usually states it ("... Limit: 2,000,000 enqueued tokens ...");
    otherwise shrink to `LEARN_SHRINK` of the failed shard, and never grow past `current`.
    """
    found = _LIMIT_RE.search(message or "")
    if found:
        return max(1, int(found.group(1).replace(",", "")))
    return max(1, min(current, int(failed_shard_tokens * LEARN_SHRINK)))
