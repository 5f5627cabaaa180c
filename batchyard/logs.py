"""Structured logs: one JSON object per line in a file under the data directory, no secrets.

Owns the log file's location (`log_path()`: `logs/batchyard.jsonl` in the user data
directory), its format (ts, level, logger, message and any `extra` fields) and redaction:
anything shaped like an API key or a bearer token is replaced before it is written, whatever
the caller passed. It configures only the `batchyard` logger and never prints to the
terminal; the CLI calls `setup()` once. Library code logs through `logging.getLogger(__name__)`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import platformdirs

__all__ = ["LOGGER", "JsonFormatter", "log_path", "redact", "setup"]

LOGGER = "batchyard"
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
    """One JSON object per record: ts, level, logger, message, and every `extra` field."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            data["error"] = f"{type(exc).__name__}: {exc}"
        return json.dumps(redact(data), separators=(",", ":"), default=str)


def setup(path: Path | None = None, *, level: int = logging.INFO) -> Path | None:
    """Send the `batchyard` logger to `path` (default `log_path()`); returns the path used.

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
        handler = logging.FileHandler(target, encoding="utf-8", delay=True)
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
