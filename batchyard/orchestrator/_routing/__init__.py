"""The routing glue: feeding the pure router from what the store and the executors know.

Owns the translation from store rows, the model table and live executor state into the
router's inputs: the run's policy (`policy.py`), each request's features and output
estimate (`features.py`), the models' limits and the live shards (`live.py`) and what past
batches teach about turnaround (`history.py`); the names of those four are importable from
here. Beside them, the two decisions that move work between models and clocks: fallback
models (`fallback.py`) and the provider's clock mapped onto ours (`provider_clock.py`).
Nothing here decides a route; the router does.
"""

from batchyard.orchestrator._routing.features import (
    DEFAULT_OUTPUT_TOKENS,
    asks_fast,
    expected_output,
    feature,
    features,
    from_new,
    worst_output,
)
from batchyard.orchestrator._routing.history import cancel_latency, turnarounds
from batchyard.orchestrator._routing.live import (
    OPEN_STATUSES,
    capacities,
    current_routes,
    in_flight_tokens,
    live_capacities,
    live_shard_ids,
    shard_states,
)
from batchyard.orchestrator._routing.policy import priors, run_policy, user_policy

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "OPEN_STATUSES",
    "asks_fast",
    "cancel_latency",
    "capacities",
    "current_routes",
    "expected_output",
    "feature",
    "features",
    "from_new",
    "in_flight_tokens",
    "live_capacities",
    "live_shard_ids",
    "priors",
    "run_policy",
    "shard_states",
    "turnarounds",
    "user_policy",
    "worst_output",
]
