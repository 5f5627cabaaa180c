"""One shard's way out: write its JSONL, upload it, create its batch; and recovering an
intent a crash left behind.

Owns `submit_shard`, each step committed to the store before the remote call it announces:

    create_shard (planned) -> write batchyard-<run>-s<shard>.jsonl -> record_file_intent
    (uploading) -> files.create -> set_file_remote_id (uploaded; local file deleted) ->
    set_batch_status(creating) -> batches.create(metadata tag) -> record_batch_remote

A crash between any two steps leaves a state `reconcile.py` repairs without a second
upload or a second batch (`recover_upload`, `recover_create`). It must not plan or admit
shards (`submit.py` does) nor poll or apply results (`apply.py` does).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable
from pathlib import Path

import openai

from batchyard.models import BatchStatus
from batchyard.orchestrator.batch.remote import BatchContext, shard_filename
from batchyard.shards import shard_line
from batchyard.store import FileKind

__all__ = ["recover_create", "recover_upload", "submit_shard"]

B = BatchStatus


def _write_shard(ctx: BatchContext, run_id: str, shard: int) -> tuple[Path, int, str]:
    """Write the shard's JSONL (requests in line order) to the workdir, each stored body
    pasted in as its text."""
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    path = ctx.workdir / shard_filename(run_id, shard)
    digest = hashlib.sha256()
    size = 0
    with path.open("wb") as out:
        for custom_id, endpoint, text in ctx.store.shard_lines(run_id, shard):
            line = shard_line(custom_id, endpoint, None, text)
            out.write(line)
            digest.update(line)
            size += len(line)
    return path, size, digest.hexdigest()


async def recover_upload(ctx: BatchContext, run_id: str, file_row: int) -> bool:
    """An upload intent without a remote id: record the file if it reached the API (True),
    else abandon the intent so the shard is uploaded again. The caller holds the lease."""
    store = ctx.store
    f = next(x for x in store.pending_uploads(run_id) if x.id == file_row)
    assert f.shard is not None
    found = await ctx.find_files(shard_filename(run_id, f.shard), f.bytes)
    if not found:
        store.abandon_upload(file_row)
        return False
    store.set_file_remote_id(file_row, found[0].id)
    for extra in found[1:]:  # never leave a duplicate upload behind
        await ctx.delete_file(extra.id)
    return True


async def recover_create(ctx: BatchContext, run_id: str, shard: int) -> bool:
    """A create intent without a provider id: record the batch if it exists (True), else
    go back to uploaded so it is created (once) later. The caller holds the lease."""
    store = ctx.store
    b = store.get_batch(shard)
    batch = await ctx.find_batch(run_id, shard, b.created_at)
    if batch is None:
        store.set_batch_status(shard, B.UPLOADED, expect=B.CREATING)
        return False
    store.record_batch_remote(shard, batch.id, batch.model_dump(mode="json"))
    return True


async def _settle_quietly(recovery: Awaitable[bool]) -> None:
    """Try to settle an intent right away; if the API is still failing, reconcile will."""
    with contextlib.suppress(openai.APIError):
        await recovery


async def submit_shard(ctx: BatchContext, run_id: str, shard: int) -> bool:
    """Take a planned or uploaded shard through upload and create; True once created.

    Returns False (doing nothing) when another process holds the shard's lease or the
    shard is not in a state this step continues from (reconcile handles the others).
    """
    store = ctx.store
    if not store.claim_batch_for_submit(shard, ctx.owner):
        return False
    b = store.get_batch(shard)
    try:
        if b.status == B.PLANNED:
            path, size, sha = _write_shard(ctx, run_id, shard)
            row = store.record_file_intent(
                run_id, FileKind.INPUT, local_path=str(path), bytes=size, sha256=sha, shard=shard
            )
            ctx.step("upload_intent", shard)
            try:
                uploaded = await ctx.upload(path, shard_filename(run_id, shard))
            except openai.APIError:
                await _settle_quietly(recover_upload(ctx, run_id, row))
                raise
            ctx.step("uploaded", shard)
            store.set_file_remote_id(row, uploaded.id)
            path.unlink(missing_ok=True)
            ctx.event(
                run_id,
                "batch.uploaded",
                f"Shard {shard} uploaded as {uploaded.id}",
                {"file_id": uploaded.id, "bytes": size},
                shard=shard,
                store=False,
            )
            b = store.get_batch(shard)
        if b.status == B.UPLOADED and b.input_file_id:
            store.set_batch_status(shard, B.CREATING, expect=B.UPLOADED, owner=ctx.owner)
            ctx.step("create_intent", shard)
            try:
                batch = await ctx.create_batch(
                    run_id, shard, b.input_file_id, b.endpoint, b.created_at
                )
            except openai.APIError:
                await _settle_quietly(recover_create(ctx, run_id, shard))
                raise
            ctx.step("created", shard)
            store.record_batch_remote(shard, batch.id, batch.model_dump(mode="json"))
            ctx.event(
                run_id,
                "batch.submitted",
                f"Shard {shard}: {b.request_count} {b.model} request(s) submitted as {batch.id}",
                {"provider_batch_id": batch.id, "requests": b.request_count},
                shard=shard,
                store=False,
            )
            return True
        return False
    finally:
        store.release_batch_claim(shard, ctx.owner)
