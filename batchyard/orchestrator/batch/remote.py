"""Every SDK call the batch path makes, each through the one retry layer, and its context.

Owns `BatchContext` (what every batch module shares: store, client, models, settings,
clock, sleep, owner, workdir, retry policy, progress callback and the crash-test hook),
owner ids (`new_owner`, `owner_is_dead`) and the remote operations: upload a shard file,
create a batch, find either again after a crash (by unique filename / by metadata tag),
retrieve, cancel, stream a file to disk, delete a file.

Create and upload are not idempotent at the API, so a retry never repeats them blindly:
before each retry of `files.create` the files list is searched for the shard's unique
filename, and before each retry of `batches.create` the batches list is searched for the
shard's metadata tag. A timed-out or lost response therefore never makes a second file or a
second batch. It must not change any status itself: callers record results in the store.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import openai
from openai.pagination import AsyncCursorPage
from openai.types import Batch, FileObject

from batchyard.config import ModelInfo, Settings
from batchyard.orchestrator._answers.checks import Judge, Judges
from batchyard.orchestrator._calls.bucket import LeakyBucket
from batchyard.orchestrator._calls.failures import classify
from batchyard.orchestrator._calls.retry import RetryPolicy, call_with_retry
from batchyard.orchestrator._calls.timing import Clock, Sleep
from batchyard.orchestrator._reporting.progress import OnProgress
from batchyard.orchestrator._routing.provider_clock import ProviderClock
from batchyard.shards import ShardLimits
from batchyard.store import Store

__all__ = [
    "BatchContext",
    "CrashHook",
    "OnProgress",
    "TAG_RUN",
    "TAG_SHARD",
    "new_owner",
    "owner_is_dead",
    "shard_filename",
]

T = TypeVar("T")
TAG_RUN = "batchyard_run"
TAG_SHARD = "batchyard_shard"
LIST_PAGE = 100  # batches.list maximum page size
FILES_PAGE = 10_000  # files.list maximum page size


CrashHook = Callable[[str, int], None]
"""Called as `hook(step, shard)` right after each lifecycle step; tests raise from it to
simulate a crash there. Steps: upload_intent, uploaded, create_intent, created, applying."""


def new_owner() -> str:
    """An owner id for claims: `host:pid:random`, so a later process can tell it died."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """True when `owner` was made by `new_owner` on this host and its process is gone."""
    if not owner:
        return False
    parts = owner.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def shard_filename(run_id: str, shard: int) -> str:
    """The unique, deterministic name a shard's input file is uploaded under."""
    return f"batchyard-{run_id}-s{shard}.jsonl"


@dataclass
class BatchContext:
    store: Store
    client: openai.AsyncOpenAI
    models: Mapping[str, ModelInfo]
    settings: Settings
    clock: Clock
    sleep: Sleep
    owner: str
    workdir: Path
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    on_progress: OnProgress | None = None
    hook: CrashHook | None = None
    limits: ShardLimits | None = None  # per-shard caps below the API's (tests, tuning)
    apply_chunk: int = 1000  # results per store transaction while applying a file
    lookback_seconds: float = 7 * 86_400  # how far back batches.list is searched for a tag
    pacer: LeakyBucket | None = None  # batch-API calls per minute, created on first call
    judges: Judges | None = None  # checks on answers; created on first use
    provider_clock: ProviderClock | None = None  # reads the provider's clock off responses
    # (run, model) -> (the model's escalation point or None, its median turnaround), on our
    # clock: when lines sent again may still wait for a worthwhile shard.
    deadline_view: Callable[[str, str], tuple[float | None, float]] | None = None

    def observe(self, headers: object, created_at: float | None = None) -> None:
        """A response's `Date` (else a new batch's `created_at`): the provider's clock."""
        if self.provider_clock is not None:
            self.provider_clock.observe_headers(headers, created_at)

    def judge_for(self, run_id: str) -> Judge:
        if self.judges is None:
            self.judges = Judges(self.store, self.models)
        return self.judges.for_run(run_id)

    def event(
        self,
        run_id: str,
        kind: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        *,
        shard: int | None = None,
        store: bool = True,
    ) -> None:
        """Record an event in the store and tell the progress callback."""
        payload = dict(data or {})
        if store:
            self.store.add_event(run_id, kind, message, payload, shard=shard)
        if self.on_progress is not None:
            self.on_progress(
                kind, {"run_id": run_id, "shard": shard, "message": message, **payload}
            )

    def step(self, name: str, shard: int) -> None:
        if self.hook is not None:
            self.hook(name, shard)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """One remote call: paced by the batch-API limiter, retried by the one retry layer."""
        if self.pacer is None:
            # Polls, uploads, downloads and lists share one budget per process, so many
            # shards never hammer the Files and Batches APIs (429s are retried on top).
            # A leaky bucket on the injected clock, so simulated time paces it too.
            self.pacer = LeakyBucket(max(1, self.settings.batch_api_rpm), 60.0, self.clock())
        pacer = self.pacer

        async def paced() -> T:
            while (wait := pacer.wait_for(1, self.clock())) > 0:
                await self.sleep(wait)
            pacer.take(1, self.clock())
            return await fn()

        return await call_with_retry(paced, self.policy, sleep=self.sleep)

    # ---- files ------------------------------------------------------------------------
    async def find_files(self, filename: str, size: int | None = None) -> list[FileObject]:
        """Uploaded batch files named `filename` (and of `size` bytes, when given), oldest first."""
        return await self._list_files(
            lambda f: f.filename == filename and (size is None or f.bytes == size)
        )

    async def find_files_prefix(self, prefix: str) -> list[FileObject]:
        """Uploaded batch files whose name starts with `prefix`, oldest first."""
        return await self._list_files(lambda f: f.filename.startswith(prefix))

    async def _list_files(self, keep: Callable[[FileObject], bool]) -> list[FileObject]:
        found: list[FileObject] = []
        after: str | None = None
        while True:
            page = await self.call(self._files_page(after))
            found.extend(f for f in page.data if keep(f))
            if not page.has_more or not page.data:
                return sorted(found, key=lambda f: (f.created_at, f.id))
            after = page.data[-1].id

    def _files_page(
        self, after: str | None
    ) -> Callable[[], Awaitable[AsyncCursorPage[FileObject]]]:
        async def fetch() -> AsyncCursorPage[FileObject]:
            if after:
                return await self.client.files.list(purpose="batch", limit=FILES_PAGE, after=after)
            return await self.client.files.list(purpose="batch", limit=FILES_PAGE)

        return fetch

    def _batches_page(self, after: str | None) -> Callable[[], Awaitable[AsyncCursorPage[Batch]]]:
        async def fetch() -> AsyncCursorPage[Batch]:
            if after:
                return await self.client.batches.list(limit=LIST_PAGE, after=after)
            return await self.client.batches.list(limit=LIST_PAGE)

        return fetch

    async def upload(self, path: Path, filename: str) -> FileObject:
        """Upload a shard file (purpose=batch); a retry first looks for an earlier upload."""
        size = path.stat().st_size
        tries = 0

        async def attempt() -> FileObject:
            nonlocal tries
            tries += 1
            if tries > 1:
                earlier = await self.find_files(filename, size)
                if earlier:
                    return earlier[0]
            with path.open("rb") as fh:
                return await self.client.files.create(
                    file=(filename, fh, "application/jsonl"), purpose="batch"
                )

        return await self.call(attempt)

    async def delete_file(self, file_id: str) -> bool:
        """Delete a remote file; True if it is gone (already-gone counts)."""
        try:
            await self.call(lambda: self.client.files.delete(file_id))
        except openai.NotFoundError:
            return True
        return True

    async def download(self, file_id: str, dest: Path) -> tuple[int, str]:
        """Stream a remote file to `dest` (never held in memory); returns (bytes, sha256)."""

        async def attempt() -> tuple[int, str]:
            digest = hashlib.sha256()
            size = 0
            async with self.client.files.with_streaming_response.content(file_id) as resp:
                with dest.open("wb") as out:
                    async for chunk in resp.iter_bytes():
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
            return size, digest.hexdigest()

        return await self.call(attempt)

    # ---- batches ----------------------------------------------------------------------
    async def find_batch(self, run_id: str, shard: int, since: float | None) -> Batch | None:
        """The provider batch tagged with this run and shard, newest first, if any.

        `since`: stop paging at batches created `lookback_seconds` before it.
        """
        after: str | None = None
        if since is not None and self.provider_clock is not None:
            since = self.provider_clock.map().to_provider(since)  # compared with created_at
        cutoff = None if since is None else since - self.lookback_seconds
        while True:
            page = await self.call(self._batches_page(after))
            for batch in page.data:
                tag = batch.metadata or {}
                if tag.get(TAG_RUN) == run_id and tag.get(TAG_SHARD) == str(shard):
                    return batch
            if not page.has_more or not page.data:
                return None
            if cutoff is not None and page.data[-1].created_at < cutoff:
                return None
            after = page.data[-1].id

    async def create_batch(
        self, run_id: str, shard: int, input_file_id: str, endpoint: str, since: float
    ) -> Batch:
        """batches.create with the run/shard tag; a retry first looks for the tag."""
        tries = 0

        async def attempt() -> Batch:
            nonlocal tries
            tries += 1
            if tries > 1:
                earlier = await self.find_batch(run_id, shard, since)
                if earlier is not None:
                    return earlier
            raw = await self.client.batches.with_raw_response.create(
                input_file_id=input_file_id,
                endpoint=endpoint,  # type: ignore[arg-type]
                completion_window="24h",
                metadata={TAG_RUN: run_id, TAG_SHARD: str(shard)},
            )
            batch = raw.parse()
            self.observe(raw.headers, batch.created_at)
            return batch

        return await self.call(attempt)

    async def retrieve(self, batch_id: str) -> Batch:
        async def attempt() -> Batch:
            raw = await self.client.batches.with_raw_response.retrieve(batch_id)
            self.observe(raw.headers)
            return raw.parse()

        return await self.call(attempt)

    async def cancel_batch(self, batch_id: str) -> Batch | None:
        """Ask the provider to cancel; None when it is already finished (409)."""

        async def attempt() -> Batch | None:
            try:
                raw = await self.client.batches.with_raw_response.cancel(batch_id)
            except openai.ConflictError:  # not worth retrying: it already finished
                return None
            self.observe(raw.headers)
            return raw.parse()

        return await self.call(attempt)


def failure_text(exc: BaseException) -> str:
    """A short, user-facing description of a failed SDK call."""
    failure = classify(exc)
    code = f" {failure.status_code}" if failure.status_code else ""
    return f"{failure.kind}{code}: {failure.message}"
