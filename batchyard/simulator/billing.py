"""What the simulator's ledger bills for one answer, by OpenAI's pricing rules.

Owns `spec_for` (the price row of a model name: exact, a dated snapshot's family, or a
fine-tuned model's `ft:FAMILY` row) and `bill` (USD for the tokens on a path: "standard",
"flex", "batch" or "fast", with cached input, cache writes and the long-context band; the
rules are in `ModelSpec`'s docstring). It is written independently of batchyard's own
pricing code on purpose (the simulator imports nothing of batchyard); a test compares the
two on the same usage. No HTTP, no state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from batchyard.simulator.config import ModelSpec

__all__ = ["PATHS", "bill", "spec_for"]

PATHS = ("standard", "flex", "batch", "fast")
_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")


def spec_for(models: Mapping[str, ModelSpec], name: str) -> ModelSpec | None:
    """The row that prices `name`, or None."""
    if name in models:
        return models[name]
    if name.startswith("ft:"):
        base = name.split(":")[1]
        family = _DATED.sub("", base)
        return models.get(f"ft:{base}") or models.get(f"ft:{family}")
    return models.get(_DATED.sub("", name))


def bill(
    spec: ModelSpec,
    path: str,
    input_tokens: int,
    output_tokens: int,
    *,
    cached: int = 0,
    written: int = 0,
) -> float:
    """USD for one answer on `path`."""
    if path not in PATHS:
        raise ValueError(f"Unknown billing path {path!r}; use one of {', '.join(PATHS)}.")
    long = spec.long_context_threshold is not None and input_tokens > spec.long_context_threshold
    if path == "fast" and (spec.fast_prices is None or (long and not spec.fast_long_context)):
        path = "standard"  # served (and billed) at the default tier
    if path == "flex" and not spec.flex:
        path = "standard"
    inp, out = spec.input_price, spec.output_price
    hit = inp if spec.cached_input_price is None else spec.cached_input_price
    write = inp if spec.cache_write_price is None else spec.cache_write_price
    if path in ("batch", "flex"):
        d = spec.batch_discount
        hit = hit * d if spec.batch_cache_discount or path == "flex" else inp * d
        inp, out = inp * d, out * d
        write = inp
    elif path == "fast" and spec.fast_prices is not None:
        inp, hit, out = spec.fast_prices
        write = inp
    if long:
        inp, hit, write, out = inp * 2.0, hit * 2.0, write * 2.0, out * 1.5
    plain = max(input_tokens - cached - written, 0)
    return (plain * inp + cached * hit + written * write + output_tokens * out) / 1_000_000
