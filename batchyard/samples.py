"""Sample request files in the OpenAI batch format, for the demo, benchmarks and tests.

Owns deterministic generation of JSONL request lines of mixed sizes over several models.
No I/O beyond writing the file it is asked to write.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["sample_lines", "write_sample"]

_TOPICS = (
    "the history of the printing press",
    "how SQLite stores a table on disk",
    "why the sky is blue",
    "the rules of chess openings",
    "making sourdough bread",
    "the water cycle",
    "how vaccines train the immune system",
    "the basics of double-entry bookkeeping",
    "what a hash table is",
    "the causes of the French Revolution",
)
_FILLER = (
    "Please be precise and give one concrete example. Avoid jargon where a plain word will do. "
    "The reader is curious but busy, so keep the structure clear. "
)


def sample_lines(
    count: int,
    models: Sequence[str] = ("gpt-4o-mini", "gpt-5-mini"),
    *,
    seed: int = 7,
    endpoint: str = "/v1/chat/completions",
) -> Iterator[dict[str, Any]]:
    """`count` distinct request lines, round-robin over `models`, prompts of mixed sizes."""
    rng = random.Random(seed)
    for i in range(count):
        model = models[i % len(models)]
        topic = _TOPICS[rng.randrange(len(_TOPICS))]
        padding = _FILLER * rng.choice((0, 1, 2, 4, 8))
        # Numbered: every line is a distinct request (identical ones would be sent once).
        prompt = f"Question {i + 1}: explain {topic} in a short paragraph. {padding}".strip()
        limit = rng.choice((160, 192, 256))  # room for every simulated answer: none cut off
        body: dict[str, Any] = {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a concise teacher."},
                {"role": "user", "content": prompt},
            ],
        }
        body["max_completion_tokens"] = limit
        yield {"custom_id": f"req-{i:06d}", "method": "POST", "url": endpoint, "body": body}


def write_sample(
    path: Path, count: int, models: Sequence[str] = ("gpt-4o-mini", "gpt-5-mini")
) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for line in sample_lines(count, models):
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
    return path
