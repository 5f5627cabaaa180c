"""Requests held in memory: the typed `Request` and spooling an iterable of them (or of
plain dicts in the batch format) into a request file that intake reads like any other.

Owns `Request` and `spool_requests`. Writes only the file it is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchyard.errors import InputError
from batchyard.models import Endpoint

__all__ = ["Request", "RequestLike", "spool_requests"]


@dataclass(frozen=True)
class Request:
    """One request: `Request("q-1", {"model": "gpt-4o-mini", "messages": [...]})`."""

    custom_id: str
    body: dict[str, Any]
    url: Endpoint | str = Endpoint.CHAT
    priority: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level fields, kept as given

    def to_line(self) -> dict[str, Any]:
        url = self.url.value if isinstance(self.url, Endpoint) else self.url
        line: dict[str, Any] = {
            "custom_id": self.custom_id,
            "method": "POST",
            "url": url,
            "body": self.body,
        }
        if self.priority is not None:
            line["priority"] = self.priority
        return {**self.extra, **line}


RequestLike = Request | Mapping[str, Any]


def spool_requests(items: Iterable[RequestLike], path: Path) -> int:
    """Write `items` (Request objects or batch-format dicts) as JSONL to `path`, in order;
    returns how many. Validation is intake's, so problems name the item by its line
    (item 1 is line 1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for item in items:
            line = item.to_line() if isinstance(item, Request) else dict(item)
            try:
                text = json.dumps(line, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise InputError(f"Request {count + 1} cannot be written as JSON: {exc}.") from None
            out.write(text + "\n")
            count += 1
    if count == 0:
        raise InputError("No requests were given; nothing to submit.")
    return count
