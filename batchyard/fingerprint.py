"""When two requests are the same request: the fingerprint that reuse and twins key on.

Owns `fingerprint`: a digest of the endpoint, the body normalised (keys sorted, fields that
do not change the answer left out) and the model as the catalog resolves it (an alias and
its target are one model; a dated snapshot is not its family, whose answers may change).
Pure: no I/O. Whether a line may be reused at all (samples, `--no-reuse`) is the caller's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from batchyard.jsontext import agrees, compact

__all__ = ["IGNORED_FIELDS", "fingerprint"]

# Fields that say who asked, how to bill or where to keep the answer, not what to answer.
IGNORED_FIELDS = frozenset(
    {
        "metadata",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "service_tier",
        "store",
        "stream_options",
        "user",
    }
)


def fingerprint(
    endpoint: str, body: Mapping[str, Any], model: str, body_text: bytes | None = None
) -> str:
    """32 hex digits that are equal exactly when the requests are the same request.

    `body_text`: the body's `compact` text where the caller has it; the digest is the same,
    made faster where the text shows that orjson writes the body's values as json does."""
    kept = {k: v for k, v in body.items() if k not in IGNORED_FIELDS and k != "model"}
    agreed = body_text is not None and agrees(body, body_text)
    text = compact([endpoint, model, kept], sort_keys=True, agreed=agreed)
    return hashlib.sha256(text).hexdigest()[:32]
