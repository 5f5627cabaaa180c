"""Reading and validating request files in the OpenAI batch format, streamed line by line.

Owns turning a JSONL file of `{"custom_id", "method", "url", "body"}` lines into valid
`ParsedRequest`s and `LineProblem`s (file, line, field, message), before anything is
uploaded. It must not write to the store, call the API or decide routes; the orchestrator
stores what it yields, plans shards with `batchyard.shards` and uploads.

What is checked, per line (the real API's wording where it is known): JSON (NaN,
Infinity, numbers out of range and unpaired surrogates refused), a JSON object,
`custom_id` present, a non-empty string and unique in the file (naming the line that used
it first), `method` POST, `url` one of `Endpoint`, `body`
an object, `body.stream` not true, `body.model` present and in the model table (dated
snapshots such as `gpt-4o-mini-2024-07-18` fall back to their base entry), an embeddings
model only on `/v1/embeddings` and only there, parameters the model rejects (`rejects` in
the table, e.g. `max_tokens` on reasoning models), the endpoint's input (`messages`,
`input` or `prompt`) present and well formed, embeddings inputs non-empty, at most 2048 per
request and 300,000 tokens in all, and prompt plus requested output within the model's
context window (per input for embeddings).

Files: read in binary; a UTF-8 BOM, CRLF line ends, blank lines and a missing final
newline are accepted; a line that is not UTF-8 is a LineProblem; a file with no request
line raises InputError. Line numbers are 1-based and count blank lines.

Priority: a line may carry a top-level `"priority"` integer (a batchyard extension; batch
files are re-written from custom_id, url and body, so it is never uploaded), or a string
`body.metadata.priority` (valid OpenAI metadata); default 0, higher goes first.

Memory: one line at a time, plus a compact `custom_id → first line` index for duplicates
(digests, 40 to 80 bytes per request; see bench/ingest_bench.py for figures).
"""

from batchyard.ingest._reader import read_requests, reread_lines
from batchyard.ingest._rules import (
    EMBEDDING_MAX_ITEMS,
    EMBEDDING_MAX_REQUEST_TOKENS,
    ParsedRequest,
    find_model,
)
from batchyard.ingest._summary import (
    MAX_PROBLEMS_KEPT,
    GroupSummary,
    Validated,
    validate_file,
    write_rejects,
)

__all__ = [
    "EMBEDDING_MAX_ITEMS",
    "EMBEDDING_MAX_REQUEST_TOKENS",
    "MAX_PROBLEMS_KEPT",
    "GroupSummary",
    "ParsedRequest",
    "Validated",
    "find_model",
    "read_requests",
    "reread_lines",
    "validate_file",
    "write_rejects",
]
