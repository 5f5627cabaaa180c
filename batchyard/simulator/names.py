"""Model names as the API accepts them: table entries, dated snapshots and fine-tuned models.

Owns turning the model string a request sends into the table entry that serves it:

1. a name in the model table (`gpt-4o-mini`) is served as itself;
2. a name in `[names] aliases` is served by the entry it names (or by that name's family);
3. a dated snapshot (`gpt-4o-mini-2024-07-18`, or the older `gpt-4-0613`) by its family;
4. a fine-tuned name (`ft:BASE:ORG:SUFFIX:ID`, also `ft:BASE:ORG::ID` and checkpoint names
   with more parts) by BASE, itself resolved by rules 1-3;
5. anything else is unknown (the callers answer 404 `model_not_found`).

The answer always echoes the name as sent; rate limits, the enqueued-token pool and prices
are those of the serving entry. Fine-tuned models are billed at their base entry's prices
until the model table carries fine-tuned prices: `Resolved.fine_tuned` is the hook for that.
It imports nothing from the rest of batchyard and knows nothing of HTTP.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from openai.types import Model

from batchyard.simulator.config import ModelSpec
from batchyard.simulator.state import SimState

__all__ = ["Resolved", "listed_names", "model_object", "resolve"]

_DATED = re.compile(r"^(?P<family>.+?)-(?:\d{4}-\d{2}-\d{2}|\d{4})$")
_CACHE_KEY = "names"


@dataclass(frozen=True)
class Resolved:
    """The table entry that serves a model name."""

    name: str  # as the request sent it; echoed back
    base: str  # the model-table key whose limits, pool and prices apply
    spec: ModelSpec
    fine_tuned: bool = False
    owner: str = "system"  # `owned_by` of its Model object (the org part of an ft: name)


def _entry(models: dict[str, ModelSpec], name: str) -> str | None:
    """The table key for a table name or a dated snapshot of one. Rows named `ft:FAMILY`
    price fine-tuned models; they are not models anyone can call."""
    if name.startswith("ft:"):
        return None
    if name in models:
        return name
    dated = _DATED.match(name)
    return dated.group("family") if dated and dated.group("family") in models else None


def _plain(state: SimState, name: str) -> str | None:
    """The table key for a table name, an alias or a dated snapshot (no ft:)."""
    models = state.config.models
    aliases = state.config.names.aliases
    found = _entry(models, name)
    if found is None and name in aliases:
        found = _entry(models, aliases[name])
    if found is None:
        dated = _DATED.match(name)
        if dated and dated.group("family") in aliases:
            found = _entry(models, aliases[dated.group("family")])
    return found


def _route(state: SimState, name: str) -> tuple[str, bool, str] | None:
    """(table key, fine-tuned, owner) for `name`, or None."""
    if name.startswith("ft:"):
        parts = name.split(":")
        if len(parts) < 4 or not parts[1] or not parts[2]:
            return None
        base = _plain(state, parts[1])
        return None if base is None else (base, True, parts[2])
    base = _plain(state, name)
    return None if base is None else (base, False, "system")


def resolve(state: SimState, name: str) -> Resolved | None:
    """The entry serving `name`, or None when the simulator does not know it.

    Routes are cached per name; the spec is read fresh each time, so a test that edits
    `state.config.models[...]` at run time is seen at once.
    """
    spec = state.config.models.get(name)
    if spec is not None and not name.startswith("ft:"):  # the common case, first and cheap
        return Resolved(name, name, spec)
    cache: dict[str, tuple[str, bool, str] | None] = state.extra.setdefault(_CACHE_KEY, {})
    if name not in cache:
        cache[name] = _route(state, name)
    route = cache[name]
    if route is None or route[0] not in state.config.models:
        return None
    base, fine_tuned, owner = route
    return Resolved(name, base, state.config.models[base], fine_tuned, owner)


def listed_names(state: SimState) -> list[str]:
    """What `GET /v1/models` lists: the table plus `[names] listed` (sorted, unique)."""
    names = {n for n in state.config.models if not n.startswith("ft:")}
    names.update(n for n in state.config.names.listed if resolve(state, n) is not None)
    return sorted(names)


def model_object(resolved: Resolved) -> dict[str, Any]:
    """A Model as `GET /v1/models` shows it; `created` is stable per name."""
    digest = hashlib.sha256(resolved.name.encode()).digest()[:3]
    created = 1_686_000_000 + int.from_bytes(digest, "big")
    model = Model.model_construct(
        id=resolved.name, object="model", created=created, owned_by=resolved.owner
    )
    return model.model_dump(mode="json", exclude_unset=True)
