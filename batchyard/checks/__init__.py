"""Checks on answers: is a 200 the answer the request asked for?

Owns the named checks (`finish`: cut off at the token limit or by the content filter;
`refusal`: the model refused; `json`: the text parses when the request asked for JSON;
`schema`: it validates against the request's own `json_schema`), user checks (any callable
from an `Answer` to None or a reason; on the command line `module:function`), the default
set and `run_checks`, which returns the first failure. Pure: no I/O, no SDK, no store; the
orchestrator decides what a failure means (re-queue or `invalid`).

    from batchyard.checks import Answer, resolve_checks, run_checks
    checks = resolve_checks(["finish", "json", my_check])
    failure = run_checks(checks, Answer(endpoint, request_body, response_body))
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from batchyard.errors import ConfigError

from ._answer import Answer, Choice, wanted_json
from ._builtin import check_finish, check_json, check_refusal, check_schema

__all__ = [
    "BUILTIN_CHECKS",
    "DEFAULT_CHECKS",
    "Answer",
    "CheckFailure",
    "CheckFn",
    "Choice",
    "NamedCheck",
    "check_names",
    "resolve_checks",
    "run_checks",
    "wanted_json",
]

CheckFn = Callable[[Answer], "str | None"]


@dataclass(frozen=True, slots=True)
class NamedCheck:
    """A check and the name a failure is reported under (`check:<name>`)."""

    name: str
    fn: CheckFn


@dataclass(frozen=True, slots=True)
class CheckFailure:
    """The first check an answer failed, and why (a sentence)."""

    check: str
    reason: str

    @property
    def code(self) -> str:
        """The error code a failed check is recorded with: `check:<name>`."""
        return f"check:{self.check}"


BUILTIN_CHECKS: dict[str, CheckFn] = {
    "finish": check_finish,
    "refusal": check_refusal,
    "json": check_json,
    "schema": check_schema,
}
# Every shipped check runs unless the run names its own list (`--check`, `checks=`).
DEFAULT_CHECKS: tuple[str, ...] = ("finish", "refusal", "json", "schema")
NONE = "none"


def _import(spec: str) -> CheckFn:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        fn = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"Cannot load the check {spec!r} ({exc}). A user check is MODULE:FUNCTION, "
            f"importable from here; the shipped ones are {', '.join(BUILTIN_CHECKS)}."
        ) from exc
    if not callable(fn):
        raise ConfigError(f"The check {spec!r} is not callable.")
    return fn  # type: ignore[no-any-return]


def _one(spec: str | CheckFn | NamedCheck, registry: Mapping[str, CheckFn]) -> NamedCheck:
    if isinstance(spec, NamedCheck):
        return spec
    if callable(spec):
        return NamedCheck(getattr(spec, "__name__", None) or repr(spec), spec)
    if spec in BUILTIN_CHECKS:
        return NamedCheck(spec, BUILTIN_CHECKS[spec])
    if spec in registry:
        return NamedCheck(spec, registry[spec])
    if ":" in spec:
        return NamedCheck(spec, _import(spec))
    raise ConfigError(
        f"Unknown check {spec!r}: use {', '.join(BUILTIN_CHECKS)}, {NONE!r} for no checks, "
        "or MODULE:FUNCTION for your own."
    )


def resolve_checks(
    specs: Iterable[str | CheckFn | NamedCheck] | None = None,
    registry: Mapping[str, CheckFn] | None = None,
) -> tuple[NamedCheck, ...]:
    """Names (shipped, `registry` keys, `module:function`) and callables to checks.

    None is the default set; `["none"]` (or an empty list) is no checks. Raises
    `ConfigError` naming an unknown or unloadable check.
    """
    if specs is None:
        specs = DEFAULT_CHECKS
    found: dict[str, NamedCheck] = {}
    for spec in specs:
        if spec == NONE:
            continue
        check = _one(spec, registry or {})
        found.setdefault(check.name, check)
    return tuple(found.values())


def check_names(checks: Iterable[NamedCheck]) -> list[str]:
    """The names to record for a run, so another process can resolve the same checks."""
    return [c.name for c in checks]


def run_checks(checks: Iterable[NamedCheck], answer: Answer) -> CheckFailure | None:
    """The first failed check (in the given order), or None when every check passes.

    A user check that raises fails the answer with the exception as its reason, so a bug
    in a check shows up as invalid lines rather than a crashed run.
    """
    for check in checks:
        try:
            reason = check.fn(answer)
        except Exception as exc:  # a user's check must not stop the run
            reason = f"the check raised {type(exc).__name__}: {exc}"
        if reason:
            return CheckFailure(check.name, str(reason))
    return None
