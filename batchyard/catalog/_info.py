"""One model's prices and limits, and what a request's usage costs on it.

Owns `ModelInfo` (a row of the model table), `Usage` (the billable token counts of one
answer) and the billing rules in `ModelInfo.cost`, which follow OpenAI's pricing pages:

- input tokens are split into cache reads (`cached_tokens`, at the cached-input price),
  cache writes (`cache_write_tokens`, at the cache-write price where the model charges
  one) and the rest (at the input price); where a tier lists no cached or cache-write
  price those tokens cost what input costs on that tier;
- reasoning tokens are part of the output tokens and billed as output (never twice);
- batch, flex and fast each have their own prices; flex or fast on a model that does not
  offer it is billed at standard prices (the API serves it at the default tier);
- the long-context band: a request with more than `long_context_threshold` input tokens is
  billed whole at `long_input_factor` x its input, cached and cache-write rates and
  `long_output_factor` x its output rate, on every tier (batch and flex take their 50% off
  whichever rate applies); where fast mode excludes long context such a request is served
  and billed at standard (long-context) rates.

No I/O, no clock. The simulator has its own copy of these rules (it imports nothing of
batchyard); `tests/test_catalog_parity.py` keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from batchyard.models import Endpoint, Route, Tier

__all__ = ["ModelInfo", "Usage", "usage_from_body"]

_MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Usage:
    """The billable tokens of one answer, as the API reports them.

    `cached_tokens` and `cache_write_tokens` are parts of `input_tokens`;
    `reasoning_tokens` is part of `output_tokens`.
    """

    input_tokens: int
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_from_body(endpoint: str, body: Mapping[str, Any] | None) -> Usage:
    """The usage of a response body of `endpoint` (chat, responses, embeddings...)."""
    usage = body.get("usage") if isinstance(body, Mapping) else None
    if not isinstance(usage, Mapping):
        return Usage(0, 0)
    if "input_tokens" in usage or endpoint == Endpoint.RESPONSES:
        used_in, used_out = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
        details_in = usage.get("input_tokens_details")
        details_out = usage.get("output_tokens_details")
    else:
        used_in, used_out = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        details_in = usage.get("prompt_tokens_details")
        details_out = usage.get("completion_tokens_details")
    details_in = details_in if isinstance(details_in, Mapping) else {}
    details_out = details_out if isinstance(details_out, Mapping) else {}
    cached = min(_int(details_in.get("cached_tokens")), used_in)
    written = min(_int(details_in.get("cache_write_tokens")), used_in - cached)
    return Usage(
        input_tokens=used_in,
        output_tokens=used_out,
        cached_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=_int(details_out.get("reasoning_tokens")),
    )


class ModelInfo(BaseModel):
    """What batchyard knows about one model. Prices are USD per 1M tokens.

    `batch_*`, `flex_*` and `fast_*` are that tier's prices (flex/fast None: not offered);
    a tier without a cached price bills cached tokens as input on that tier.
    `sources` says where each group of values came from; `overridden` names the fields
    batchyard.toml changed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    family: str = ""
    aliases: tuple[str, ...] = ()
    encoding: str = "o200k_base"
    context_window: int = 128_000
    max_output: int | None = None
    input: float
    cached_input: float | None = None
    cache_write: float | None = None  # None: cache writes are not charged separately
    output: float
    batch_input: float
    batch_cached_input: float | None = None
    batch_output: float
    flex_input: float | None = None  # None: the model has no flex tier
    flex_cached_input: float | None = None
    flex_output: float | None = None
    fast_input: float | None = None  # None: the model has no fast mode
    fast_cached_input: float | None = None
    fast_output: float | None = None
    fast_long_context: bool = True  # False: fast mode excludes the long-context band
    long_context_threshold: int | None = None  # input tokens above which the band applies
    long_input_factor: float = 2.0
    long_output_factor: float = 1.5
    rpm: int = 500
    tpm: int = 200_000
    enqueued_token_limit: int = 2_000_000
    endpoints: tuple[str, ...] = ()  # () : not stated, every endpoint allowed
    rejects: tuple[str, ...] = ()
    reasoning: bool = False
    embedding: bool = False
    moderation: bool = False
    date: str = ""
    sources: dict[str, str] = {}
    overridden: tuple[str, ...] = ()

    @property
    def flex(self) -> bool:
        return self.flex_input is not None and self.flex_output is not None

    @property
    def fast(self) -> bool:
        return self.fast_input is not None and self.fast_output is not None

    def serves(self, endpoint: str) -> bool:
        return not self.endpoints or endpoint in self.endpoints

    def rates(self, path: Route | Tier) -> tuple[float, float, float, float]:
        """(input, cached input, cache write, output) USD per 1M on a path, before the band."""
        route = path.route if isinstance(path, Tier) else Route(path)
        if route is Route.BATCH:
            cached = self.batch_cached_input
            return (self.batch_input, _or(cached, self.batch_input), self.batch_input,
                    self.batch_output)  # fmt: skip
        if route is Route.FLEX and self.flex_input is not None and self.flex_output is not None:
            return (self.flex_input, _or(self.flex_cached_input, self.flex_input),
                    self.flex_input, self.flex_output)  # fmt: skip
        if route is Route.FAST and self.fast_input is not None and self.fast_output is not None:
            return (self.fast_input, _or(self.fast_cached_input, self.fast_input),
                    self.fast_input, self.fast_output)  # fmt: skip
        return (self.input, _or(self.cached_input, self.input), _or(self.cache_write, self.input),
                self.output)  # fmt: skip

    def long_context(self, input_tokens: int) -> bool:
        limit = self.long_context_threshold
        return limit is not None and input_tokens > limit

    def cost(self, path: Route | Tier, usage: Usage) -> float:
        """USD OpenAI bills for `usage` on `path` (see the module docstring for the rules)."""
        if not isinstance(path, Route | Tier):
            raise TypeError(f"cost() takes a Route or Tier, not {type(path).__name__}.")
        long = self.long_context(usage.input_tokens)
        route = path.route if isinstance(path, Tier) else path
        if route is Route.FAST and long and not self.fast_long_context:
            route = Route.STANDARD  # served and billed at standard, as OpenAI downgrades it
        inp, cached, written, out = self.rates(route)
        if long:
            f_in, f_out = self.long_input_factor, self.long_output_factor
            inp, cached, written, out = inp * f_in, cached * f_in, written * f_in, out * f_out
        plain = max(usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
        usd = (
            plain * inp
            + usage.cached_tokens * cached
            + usage.cache_write_tokens * written
            + usage.output_tokens * out
        )
        return usd / _MILLION

    def estimate(self, path: Route | Tier, input_tokens: int, output_tokens: int) -> float:
        """USD for a request not yet sent: no cache hits assumed."""
        return self.cost(path, Usage(input_tokens, output_tokens))

    def estimator(self, path: Route) -> Callable[[int, int], float]:
        """`estimate` on `path` as a function of (input, output) tokens, the rates looked up
        once: the same figure to the last bit, for pricing every line of a large file."""
        inp, _, _, out = self.rates(path)
        f_in, f_out = self.long_input_factor, self.long_output_factor
        fast_long = path is not Route.FAST or self.fast_long_context
        long_rates = self.rates(path if fast_long else Route.STANDARD)
        long_in, long_out = long_rates[0] * f_in, long_rates[3] * f_out
        limit = self.long_context_threshold

        def price(input_tokens: int, output_tokens: int) -> float:
            plain = max(input_tokens, 0)
            if limit is not None and input_tokens > limit:
                return (plain * long_in + output_tokens * long_out) / _MILLION
            return (plain * inp + output_tokens * out) / _MILLION

        return price


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
