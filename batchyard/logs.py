"""Structured logs: one JSON object per line in a file under the data directory, no secrets.

Owns the log file's location (`log_path()`: `logs/batchyard.jsonl` in the user data
directory), its rotation (at `MAX_BYTES`, keeping `BACKUPS` older files `batchyard.jsonl.1`
... `.3`), its format (the keys in `KEYS`: every record has ts, time, level, logger, event,
message and data, plus error when an exception is attached) and redaction:
anything shaped like an API key or a bearer token is replaced before it is written, whatever
the caller passed. It configures only the `batchyard` logger and never prints to the
terminal; the CLI calls `setup()` once. Library code logs through `logging.getLogger(__name__)`.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import time
from pathlib import Path
from typing import Any

import platformdirs

__all__ = ["BACKUPS", "KEYS", "LOGGER", "MAX_BYTES", "JsonFormatter", "log_path", "redact", "setup"]

LOGGER = "batchyard"
MAX_BYTES = 10 * 1024 * 1024  # the file rotates when it would grow past 10 MiB
BACKUPS = 3  # older files kept: at most 40 MiB of logs in all
KEYS = ("ts", "time", "level", "logger", "event", "message", "data")  # and "error" if any
_HANDLER_NAME = "batchyard-jsonl"
# sk-..., sk-proj-..., "Bearer ...": enough of each to be useless if shown.
_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+[A-Za-z0-9_\-\.]{6,})")
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")  # https://user:password@host/
_SECRET_KEYS = ("api_key", "authorization", "password", "secret", "token")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def log_path() -> Path:
    """`<user data dir>/logs/batchyard.jsonl` (under XDG_DATA_HOME on Linux)."""
    return platformdirs.user_data_path("batchyard", appauthor=False) / "logs" / "batchyard.jsonl"


def redact(value: Any) -> Any:
    """`value` with key-shaped strings masked, recursively; secret-named fields dropped."""
    if isinstance(value, str):
        return _URL_USERINFO.sub("[redacted]@", _SECRET.sub("[redacted]", value))
    if isinstance(value, dict):
        return {
            str(k): "[redacted]" if any(s in str(k).lower() for s in _SECRET_KEYS) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record with the keys in `KEYS`: `event` is the `extra` field of
    that name (else the message), `data` holds `extra["data"]` and every other extra field."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        extra = {
            key: value
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        }
        event = extra.pop("event", None) or message
        data = extra.pop("data", None)
        data = {**(data if isinstance(data, dict) else {"value": data} if data else {}), **extra}
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": str(event),
            "message": message,
            "data": data,
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            doc["error"] = f"{type(exc).__name__}: {exc}"
        return json.dumps(redact(doc), separators=(",", ":"), default=str)


class _PrivateRotatingHandler(logging.handlers.RotatingFileHandler):
    """Rotation that creates each new file readable by the owner only, as the first one."""

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding)


def setup(
    path: Path | None = None,
    *,
    level: int = logging.INFO,
    max_bytes: int = MAX_BYTES,
    backups: int = BACKUPS,
) -> Path | None:
    """Send the `batchyard` logger to `path` (default `log_path()`), rotating at
    `max_bytes` and keeping `backups` older files; returns the path used.

    Idempotent: a second call replaces the file handler. When the file cannot be opened
    (read-only home, for example) logging stays off rather than failing the command.
    """
    target = path or log_path()
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
            handler.close()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handler = _PrivateRotatingHandler(
            target, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )
        if not target.exists():
            target.touch(mode=0o600)
        else:
            os.chmod(target, 0o600)
    except OSError:
        return None
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return target
