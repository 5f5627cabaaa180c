"""Fallback models: which model answers a line whose own model is refused, or whose
real-time breaker stays open past its escalation point.

Owns resolving a run's fallbacks at submit (`--fallback MODEL`, a mapping from the Python
API, or the `[fallback]` table of batchyard.toml; each checked: a model the table knows that
serves every endpoint its lines use), recognising a refused model in an API error, and
building the moves the store applies (`Store.fall_back`): the body naming the fallback
model, its estimates at the fallback's prices, the record `fetch` shows. A line moves once:
when its fallback model is refused too, it fails with both errors named. Without fallbacks
nothing here changes a run. No SQL, no printing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from batchyard.catalog import ModelInfo, as_catalog
from batchyard.errors import ConfigError, NotFound, OptionError
from batchyard.models import RequestStatus, Route
from batchyard.router import format_time
from batchyard.store import FallbackMove, RequestRow, Result, Store
from batchyard.store.rows import RunRow

__all__ = [
    "ANY_MODEL",
    "OPTION",
    "Refusals",
    "batch_refusals",
    "both_errors",
    "breaker_fallback",
    "breaker_due",
    "fall_back_refused",
    "fallbacks_of",
    "is_refused",
    "resolve_fallbacks",
]

OPTION = "fallback"  # the run option holding {model: fallback model}
ANY_MODEL = "*"  # a [fallback] key that applies to every model without its own
REFUSED = "model_not_found"  # the error code and the record's reason for a refused model
BREAKER = "circuit_open"  # the record's reason for a breaker open past the escalation point
_REALTIME = (Route.STANDARD, Route.FLEX, Route.FAST)


def resolve_fallbacks(
    given: str | Mapping[str, str] | None,
    configured: Mapping[str, str],
    models: Mapping[str, ModelInfo],
    groups: Iterable[tuple[str, str]],
) -> dict[str, str]:
    """{model: fallback model} for the (endpoint, model) `groups` of a file.

    `given` (a model for every model, or a mapping) replaces `configured` (the settings'
    `fallback` table) whole. Raises `OptionError` naming `--fallback` for a given value
    that cannot serve, `ConfigError` naming the table for a configured one.
    """
    catalog = as_catalog(models)
    if given is None:
        table, where = dict(configured), "The [fallback] table of batchyard.toml"
        error: type[ConfigError] = ConfigError
    elif isinstance(given, str):
        table, where, error = {ANY_MODEL: given}, f"--fallback {given}", OptionError
    else:
        table, where, error = dict(given), "--fallback", OptionError
    if given is not None:
        for target in sorted(set(table.values())):
            if catalog.find(target) is None:
                raise error(
                    f"{where}: {target!r} is not in batchyard's model table, so it cannot "
                    "answer refused lines. `batchyard models` lists the table; add a model "
                    f'to batchyard.toml under [models."{target}"].'
                )
    endpoints: dict[str, set[str]] = {}
    for endpoint, model in groups:
        endpoints.setdefault(model, set()).add(str(endpoint))
    out: dict[str, str] = {}
    for model, used in sorted(endpoints.items()):
        wanted = table.get(model, table.get(ANY_MODEL))
        if wanted is None or wanted == model:
            continue
        info = catalog.find(wanted)
        if info is None:
            raise error(
                f"{where}: the fallback for {model} is {wanted!r}, which is not in "
                "batchyard's model table. `batchyard models` lists the table."
            )
        for endpoint in sorted(used):
            embedding = endpoint == "/v1/embeddings"
            if not info.serves(endpoint) or info.embedding != embedding:
                raise error(
                    f"{where}: the fallback model {wanted} does not serve {endpoint}, which "
                    f"the file's {model} lines use. Name a model that serves it."
                )
        out[model] = wanted
    return out


def fallbacks_of(run: RunRow) -> dict[str, str]:
    """The run's {model: fallback model}, as recorded at submit (empty: none)."""
    found = run.options.get(OPTION)
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def is_refused(status_code: int | None, code: str | None, message: str) -> bool:
    """Does this error say the model itself is refused (unknown, removed, deprecated)?"""
    if code == REFUSED:
        return True
    text = message.lower()
    return status_code == 404 and "model" in text and ("deprecated" in text or "removed" in text)


def _route_for(route: Route | None, info: ModelInfo, batch: bool) -> Route:
    """The route a moved line keeps: batch stays batch (the router re-decides it each
    round); a real-time route the fallback model offers stays, else standard."""
    if batch or route is Route.BATCH:
        return Route.BATCH
    if (route is Route.FLEX and info.flex) or (route is Route.FAST and info.fast):
        return route
    return Route.STANDARD


def _move(
    row: RequestRow, target: str, info: ModelInfo, reason: str, error: str, *, batch: bool
) -> FallbackMove:
    assert row.body is not None
    route = _route_for(row.route, info, batch)
    tokens_in, tokens_out = row.est_input_tokens, row.est_output_tokens
    return FallbackMove(
        custom_id=row.custom_id,
        model=target,
        body={**row.body, "model": target},
        route=route,
        reason=f"fallback model for {row.model} ({reason})",
        record={"from": row.model, "to": target, "reason": reason, "error": error},
        est_cost_standard=info.estimate(Route.STANDARD, tokens_in, tokens_out),
        est_cost_flex=info.estimate(Route.FLEX, tokens_in, tokens_out) if info.flex else None,
        est_cost_batch=info.estimate(Route.BATCH, tokens_in, tokens_out),
    )


@dataclass
class Refusals:
    """What became of refused lines: moved to their fallback, or failed naming both errors
    (their fallback model was refused too). Lines in neither: no fallback, fail as ever."""

    moved: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # custom_id -> message


def both_errors(row: RequestRow, message: str) -> str:
    """The message of a line whose fallback model was refused as well."""
    first = row.fallback or {}
    return (
        f"Both models were refused. The line's own model {first.get('from')}: "
        f"{first.get('error')} Its fallback model {row.model}: {message}"
    )


def fall_back_refused(
    store: Store,
    models: Mapping[str, ModelInfo],
    run: RunRow,
    refused: Sequence[tuple[RequestRow, str]],
    *,
    owner: str | None = None,
    batch: bool = False,
) -> Refusals:
    """Move the lines whose model the API refused (row with its body, the API's message) to
    the run's fallback for that model. `owner`: the real-time claim holding them; `batch`:
    they were refused by the Batch API and stay on batch for the router to re-decide."""
    out = Refusals()
    table = fallbacks_of(run)
    if not table:
        return out
    catalog = as_catalog(models)
    moves = []
    for row, message in refused:
        if row.fallback is not None:
            out.failed[row.custom_id] = both_errors(row, message)
            continue
        target = table.get(row.model)
        info = catalog.find(target) if target else None
        if target is None or info is None:
            continue
        moves.append(_move(row, target, info, REFUSED, message, batch=batch))
    out.moved = set(store.fall_back(run.id, moves, owner=owner))
    return out


def batch_refusals(
    store: Store, run_id: str, shard: int, results: list[Result]
) -> tuple[list[Result], list[tuple[RequestRow, str]]]:
    """Batch results (a failed shard's validation errors, or a chunk of its output and
    error files), with the lines refused for their model made retryable where the run has a
    fallback for it, and returned beside them to move once applied; a line on its fallback
    already fails naming both errors. Without refusals or fallbacks, `results` unchanged."""
    refused_ids = {
        r.custom_id
        for r in results
        if r.status is RequestStatus.FAILED
        and is_refused(r.status_code, r.error_code, r.error_message or "")
    }
    if not refused_ids:
        return results, []
    table = fallbacks_of(store.get_run(run_id))
    if not table:
        return results, []
    rows: dict[str, RequestRow] = {}
    for cid in sorted(refused_ids):
        try:
            found = store.get_request(run_id, cid)
        except NotFound:
            continue  # a line naming no request of the run: the store counts it unknown
        if found.shard == shard:  # a line that left the shard is the store's to settle
            rows[cid] = found
    out, refused = [], []
    for res in results:
        row = rows.get(res.custom_id)
        if row is not None and res.status is RequestStatus.FAILED:
            message = res.error_message or ""
            if row.fallback is not None:
                res = replace(res, error_message=both_errors(row, message))
            elif row.model in table:
                res = replace(res, status=RequestStatus.RETRYABLE)
                refused.append((row, message))
        out.append(res)
    return out, refused


def breaker_due(
    points: Mapping[str, float],
    open_models: Iterable[str],
    table: Mapping[str, str],
    now: float,
) -> dict[str, str]:
    """{model: fallback} for models whose breaker is open at or past their escalation
    point (the last moment real time could still meet the deadline) and that have one."""
    return {
        model: table[model]
        for model in sorted(set(open_models))
        if model in table and model in points and now >= points[model]
    }


def breaker_fallback(
    store: Store,
    models: Mapping[str, ModelInfo],
    run: RunRow,
    points: Mapping[str, float],
    open_models: Iterable[str],
    now: float,
) -> int:
    """Move the waiting lines of models whose real-time breaker stays open past their
    escalation point to the run's fallback models; returns how many moved."""
    due = breaker_due(points, open_models, fallbacks_of(run), now)
    if not due:
        return 0
    catalog = as_catalog(models)
    moves = []
    for row in store.iter_requests(
        run.id, statuses=(RequestStatus.ROUTED, RequestStatus.RETRYABLE), with_body=True
    ):
        target = due.get(row.model)
        info = catalog.find(target) if target else None
        if target is None or info is None or row.fallback is not None:
            continue
        if row.route is not None and row.route not in _REALTIME:
            continue  # batch work is the router's to move (it escalates it to real time)
        error = (
            f"{row.model}'s real-time breaker was still open at its escalation point "
            f"{format_time(points[row.model])}"
        )
        moves.append(_move(row, target, info, BREAKER, error, batch=False))
    return len(store.fall_back(run.id, moves))
