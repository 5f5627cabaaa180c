"""The simulator's Files API: upload, list, retrieve, delete and download.

Owns the `/v1/files` endpoints, the File object JSON (built from `openai.types.FileObject`),
file expiry, cursor paging (shared with the Batches list) and `store_file()`, which the
batch engine uses to write output and error files. It knows nothing about batches and
must not parse file contents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, get_args

from openai.types import FileObject
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from batchyard.simulator.errors import ApiError
from batchyard.simulator.state import SimState, StoredFile

__all__ = [
    "BATCH_FILE_TTL",
    "UPLOAD_PURPOSES",
    "create_file",
    "delete_file",
    "file_content",
    "file_json",
    "get_file",
    "list_files",
    "page",
    "purge_expired",
    "query_int",
    "retrieve_file",
    "sim_state",
    "store_file",
]

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_FILE_TTL = 30 * 86_400  # purpose=batch files (and batch outputs) expire after 30 days
EXPIRY_MIN, EXPIRY_MAX = 3_600, 2_592_000
FILES_LIMIT_MAX = 10_000

_RESPONSE_PURPOSES: tuple[str, ...] = get_args(FileObject.model_fields["purpose"].annotation)

T = TypeVar("T")


def sim_state(request: Request) -> SimState:
    """The SimState behind the app (app.py's helper, repeated to avoid an import cycle)."""
    state: SimState = request.app.state.sim
    return state


def supported(values: Sequence[str]) -> str:
    """OpenAI's list style: 'a', 'b', and 'c'."""
    quoted = [f"'{v}'" for v in values]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + (", and " if len(quoted) > 2 else " and ") + quoted[-1]


def invalid_value(param: str, value: object, values: Sequence[str]) -> ApiError:
    message = f"Invalid value: '{value}'. Supported values are: {supported(values)}."
    return ApiError(400, message, param=param, code="invalid_value")


def missing(param: str) -> ApiError:
    return ApiError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def check_expiry_seconds(param: str, raw: object) -> int:
    """An `expires_after.seconds` value, or a 400 in OpenAI's integer-range style."""
    try:
        seconds = int(str(raw))
    except ValueError:
        message = f"Invalid type for '{param}': expected an integer, but got {raw!r} instead."
        raise ApiError(400, message, param=param, code="invalid_type") from None
    if seconds < EXPIRY_MIN:
        message = (
            f"Invalid '{param}': integer below minimum value. "
            f"Expected a value >= {EXPIRY_MIN}, but got {seconds} instead."
        )
        raise ApiError(400, message, param=param, code="integer_below_min_value")
    if seconds > EXPIRY_MAX:
        message = (
            f"Invalid '{param}': integer above maximum value. "
            f"Expected a value <= {EXPIRY_MAX}, but got {seconds} instead."
        )
        raise ApiError(400, message, param=param, code="integer_above_max_value")
    return seconds


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high], or a 400 naming it."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        message = f"Invalid type for '{name}': expected an integer, but got '{raw}' instead."
        raise ApiError(400, message, param=name, code="invalid_type") from None
    if not low <= value <= high:
        message = f"Invalid '{name}': expected a value between {low} and {high}, got {value}."
        raise ApiError(400, message, param=name, code="invalid_value")
    return value


def page(
    items: Sequence[T], key: Callable[[T], str], after: str | None, limit: int
) -> tuple[list[T], bool]:
    """The `limit` items following the one whose id is `after` (unknown cursor: empty)."""
    start = 0
    if after:
        ids = [key(item) for item in items]
        if after not in ids:
            return [], False
        start = ids.index(after) + 1
    chosen = list(items[start : start + limit])
    return chosen, start + limit < len(items)


def purge_expired(state: SimState) -> None:
    """Drop files whose `expires_at` has passed on the simulated clock."""
    now = state.now()
    for file_id in [f.id for f in state.files.values() if f.expires_at and f.expires_at <= now]:
        del state.files[file_id]


def store_file(
    state: SimState,
    filename: str,
    purpose: str,
    content: bytes,
    expires_at: int | None = None,
    created_at: int | None = None,
) -> StoredFile:
    """Keep a file and return it; used by uploads and by the batch engine for outputs."""
    stored = StoredFile(
        id=state.new_id("file-"),
        filename=filename,
        purpose=purpose,
        created_at=int(state.now()) if created_at is None else created_at,
        content=content,
        expires_at=expires_at,
    )
    state.files[stored.id] = stored
    state.stats[f"files_created_{purpose}"] += 1
    return stored


def file_json(stored: StoredFile) -> dict[str, Any]:
    """The File object; unset optional fields are omitted (the spec forbids null there)."""
    fields: dict[str, Any] = {
        "id": stored.id,
        "object": "file",
        "bytes": stored.bytes,
        "created_at": stored.created_at,
        "filename": stored.filename,
        "purpose": stored.purpose,
        "status": "processed",
        "expires_at": stored.expires_at,
    }
    # `evals` is an upload purpose the response type does not list yet: skip validation.
    if stored.purpose in _RESPONSE_PURPOSES:
        model = FileObject(**fields)
    else:
        model = FileObject.model_construct(**fields)
    return model.model_dump(mode="json", exclude_none=True)


def get_file(state: SimState, file_id: str) -> StoredFile:
    """The live file with this id, or OpenAI's 404."""
    purge_expired(state)
    stored = state.files.get(file_id)
    if stored is None:
        raise ApiError(404, f"No such File object: {file_id}", param="id")
    return stored


async def create_file(request: Request) -> Response:
    """POST /v1/files (multipart: file, purpose, expires_after[anchor|seconds])."""
    state = sim_state(request)
    async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get("file")
        purpose = form.get("purpose")
        anchor = form.get("expires_after[anchor]")
        seconds_raw = form.get("expires_after[seconds]")
        if not isinstance(upload, UploadFile):
            raise missing("file")
        if not isinstance(purpose, str) or not purpose:
            raise missing("purpose")
        if purpose not in UPLOAD_PURPOSES:
            raise invalid_value("purpose", purpose, UPLOAD_PURPOSES)
        filename = upload.filename or "file"
        if purpose == "batch":
            if not filename.lower().endswith(".jsonl"):
                raise ApiError(400, "Invalid file format for Batch API. Must be .jsonl")
            cap = state.config.batch.max_file_bytes
            size = upload.size if upload.size is not None else len(await upload.read())
            if size > cap:
                message = (
                    f"File '{filename}' is {size:,} bytes; the Batch API only supports "
                    f".jsonl files up to {cap:,} bytes (200 MB)."
                )
                raise ApiError(400, message, param="file")
        await upload.seek(0)
        content = await upload.read()
    now = int(state.now())
    expires_at: int | None = now + BATCH_FILE_TTL if purpose == "batch" else None
    if anchor is not None or seconds_raw is not None:
        if anchor != "created_at":
            raise invalid_value("expires_after.anchor", anchor, ["created_at"])
        if seconds_raw is None:
            raise missing("expires_after.seconds")
        expires_at = now + check_expiry_seconds("expires_after.seconds", seconds_raw)
    stored = store_file(state, filename, purpose, content, expires_at)
    return JSONResponse(file_json(stored))


async def list_files(request: Request) -> Response:
    """GET /v1/files?purpose=&limit=&order=&after= (newest first by default)."""
    state = sim_state(request)
    purge_expired(state)
    limit = query_int(request, "limit", FILES_LIMIT_MAX, 1, FILES_LIMIT_MAX)
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid_value("order", order, ["asc", "desc"])
    purpose = request.query_params.get("purpose")
    files = [f for f in state.files.values() if purpose is None or f.purpose == purpose]
    # Stable sorts keep insertion order among equal created_at, so ties stay deterministic.
    if order == "asc":
        files.sort(key=lambda f: f.created_at)
    else:
        files = sorted(reversed(files), key=lambda f: f.created_at, reverse=True)
    chosen, has_more = page(files, lambda f: f.id, request.query_params.get("after"), limit)
    data = [file_json(f) for f in chosen]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }
    )


async def retrieve_file(request: Request) -> Response:
    """GET /v1/files/{file_id}."""
    stored = get_file(sim_state(request), request.path_params["file_id"])
    return JSONResponse(file_json(stored))


async def delete_file(request: Request) -> Response:
    """DELETE /v1/files/{file_id}."""
    state = sim_state(request)
    stored = get_file(state, request.path_params["file_id"])
    del state.files[stored.id]
    state.stats["files_deleted"] += 1
    return JSONResponse({"id": stored.id, "object": "file", "deleted": True})


async def file_content(request: Request) -> Response:
    """GET /v1/files/{file_id}/content: the raw bytes."""
    stored = get_file(sim_state(request), request.path_params["file_id"])
    return Response(stored.content, media_type="application/octet-stream")
