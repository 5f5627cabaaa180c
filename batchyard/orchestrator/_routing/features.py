"""What the router is told about each request, from a stored row or one about to be stored.

Owns `RequestFeatures` from store rows (`feature`, `features`) and from new requests
(`from_new`, with the worst-case output), the per-path costs as stored, whether a body asks
for fast mode, and the output estimate for requests that give no maximum
(`expected_output`, `worst_output`). It decides nothing itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from batchyard.models import Endpoint, Route
from batchyard.router import PathCosts, RequestFeatures
from batchyard.store.rows import NewRequest, OutputEvidence, RequestRow

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "asks_fast",
    "expected_output",
    "feature",
    "features",
    "from_new",
    "worst_output",
]

# Used when a request sets no maximum output and nothing has been learned yet.
DEFAULT_OUTPUT_TOKENS = 256


def expected_output(
    endpoint: str, max_output: int | None, evidence: OutputEvidence | None = None
) -> int:
    """The expected output tokens: the billed mean for the model and endpoint, capped by
    the request's own maximum; before there is evidence, that maximum; else 256."""
    if endpoint.endswith(("/embeddings", "/moderations")):
        return 0
    if evidence is not None:
        mean = round(evidence.mean)
        return mean if max_output is None else min(mean, max_output)
    return max_output if max_output is not None else DEFAULT_OUTPUT_TOKENS


def worst_output(
    endpoint: str, max_output: int | None, evidence: OutputEvidence | None = None
) -> int:
    """The worst-case output tokens the plan and budget count on: the billed p95 for the
    model and endpoint, capped by the request's maximum; before there is evidence, that
    maximum. With neither, the expected figure (256): set a maximum to bound it."""
    if endpoint.endswith(("/embeddings", "/moderations")):
        return 0
    if evidence is not None:
        return evidence.high if max_output is None else min(evidence.high, max_output)
    return max_output if max_output is not None else DEFAULT_OUTPUT_TOKENS


def asks_fast(body: Mapping[str, object] | None) -> bool:
    """The body asks for fast mode ("priority" is its former name, still accepted)."""
    return body is not None and body.get("service_tier") in ("fast", "priority")


def _path_costs(
    standard: float, flex: float | None, batch: float | None, fast: float | None
) -> PathCosts:
    """Per-path costs as stored; a model without a batch price is priced as standard."""
    return PathCosts(
        standard=standard, batch=batch if batch is not None else standard, flex=flex, fast=fast
    )


def _feature(
    custom_id: str,
    endpoint: str,
    model: str,
    tokens: tuple[int, int],
    costs: tuple[float, float | None, float | None],
    priority: int,
    shard: str | None = None,
    *,
    fast: bool = False,
    cost_fast: float | None = None,
    max_output: int | None = None,
) -> RequestFeatures:
    return RequestFeatures(
        custom_id=custom_id,
        endpoint=Endpoint(endpoint),
        model=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost=_path_costs(*costs, cost_fast),
        priority=priority,
        max_output_tokens=max_output,
        shard=shard,
        fast=fast,
    )


def feature(r: RequestRow, live_shards: frozenset[int] = frozenset()) -> RequestFeatures:
    """Router features of one stored request (`shard` set when it is in a live shard)."""
    return _feature(
        r.custom_id,
        r.endpoint,
        r.model,
        (r.est_input_tokens, r.est_output_tokens),
        (r.est_cost_standard, r.est_cost_flex, r.est_cost_batch),
        r.priority,
        str(r.shard) if r.shard is not None and r.shard in live_shards else None,
        # a line routed fast was pinned there (its body, or --route fast): it stays
        fast=r.route is Route.FAST or asks_fast(r.body),
        # TPM is charged at the cap; rows recorded before caps were kept had it as output
        max_output=r.max_output_tokens,
    )


def features(
    rows: Iterable[RequestRow], live_shards: frozenset[int] = frozenset()
) -> list[RequestFeatures]:
    """Router features of stored requests."""
    return [feature(r, live_shards) for r in rows]


def from_new(n: NewRequest, worst: NewRequest | None = None) -> RequestFeatures:
    """Router features of a request about to be stored; `worst` is the same request costed
    at its worst-case output (default: the expected one)."""
    f = _feature(
        n.custom_id,
        n.endpoint,
        n.model,
        (n.input_tokens, n.output_tokens),
        (n.cost_standard, n.cost_flex, n.cost_batch),
        n.priority,
        fast=asks_fast(n.body),
        cost_fast=n.cost_fast,
        max_output=n.max_output_tokens,
    )
    if worst is None or worst.output_tokens == n.output_tokens:
        return f
    cost = _path_costs(worst.cost_standard, worst.cost_flex, worst.cost_batch, worst.cost_fast)
    return replace(f, output_worst=worst.output_tokens, cost_worst=cost)
