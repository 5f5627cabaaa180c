"""The errors batchyard raises, each with a message a user can act on.

Owns the exception hierarchy and nothing else. The CLI catches `BatchyardError` once,
prints its message and exits non-zero; nothing below it prints.

    BatchyardError
    ├── ConfigError            bad settings, missing key, unknown model override
    │   └── OptionError        an option's value cannot serve this run (names the option)
    ├── InputError             a request file line is invalid (file, line, field)
    │   ├── ValidationFailed   several invalid lines; nothing was submitted
    │   └── BuildFailed        template rows that make no valid request (row, field)
    ├── StoreError             the job database cannot be used as asked
    │   ├── SchemaTooNew       the database was written by a newer batchyard
    │   └── IllegalTransition  a status change the transition table forbids
    ├── NotFound               no such run, batch or request in the store
    ├── PlanRefused            the deadline or budget cannot be met (with the numbers)
    └── ProviderError          the API refused in a way retrying cannot fix
        └── DispatchStopped    real-time dispatch stopped (key or URL refused)
            └── QuotaExhausted insufficient_quota: real-time dispatch stops
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BatchyardError",
    "BuildFailed",
    "ConfigError",
    "DispatchStopped",
    "IllegalTransition",
    "InputError",
    "LineProblem",
    "NotFound",
    "OptionError",
    "PlanRefused",
    "ProviderError",
    "QuotaExhausted",
    "SchemaTooNew",
    "StoreError",
    "ValidationFailed",
]


class BatchyardError(Exception):
    """Base class: every error batchyard raises on purpose."""


class ConfigError(BatchyardError):
    """The configuration cannot be used (missing key, bad value, unknown model)."""


class OptionError(ConfigError):
    """An option given to a command (or call) cannot serve this run, e.g. `--fallback`
    naming a model that does not serve the file's endpoint; the CLI exits 2 for it."""


@dataclass(frozen=True)
class LineProblem:
    """One problem with one line of a request file."""

    path: str
    line: int
    field: str | None
    message: str
    custom_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        if self.field:
            where += f" ({self.field})"
        return f"{where}: {self.message}"


class InputError(BatchyardError):
    """A request file cannot be used as given."""


class ValidationFailed(InputError):
    """One or more lines are invalid; nothing was submitted."""

    def __init__(self, problems: Sequence[LineProblem], *, shown: int = 20) -> None:
        self.problems = list(problems)
        lines = [str(p) for p in self.problems[:shown]]
        more = len(self.problems) - len(lines)
        if more > 0:
            lines.append(f"... and {more} more")
        bad_lines = len({(p.path, p.line) for p in self.problems})
        found = f"{len(self.problems)} problem(s) on {bad_lines} line(s)"
        if len(self.problems) == bad_lines:
            found = f"{bad_lines} invalid line(s)"
        head = (
            f"{found}; nothing was submitted. Fix them, or pass --skip-invalid to submit the rest."
        )
        super().__init__("\n".join([head, *lines]))


class BuildFailed(InputError):
    """Data rows that a template (or fan-out) cannot turn into valid requests; each problem
    names the data row and the field. Nothing was written or submitted."""

    def __init__(self, problems: Sequence[str], count: int, rows: int) -> None:
        self.problems = list(problems)
        more = count - len(self.problems)
        head = (
            f"{count} problem(s) on {rows} data row(s); nothing was written. Fix the data or "
            "the template and build again."
        )
        super().__init__(
            "\n".join([head, *self.problems, *([f"... and {more} more"] * (more > 0))])
        )


class StoreError(BatchyardError):
    """The job database cannot be used as asked."""


class SchemaTooNew(StoreError):
    """The database was written by a newer batchyard than this one."""


class IllegalTransition(StoreError):
    """A status change that the store's transition table forbids."""


class NotFound(BatchyardError):
    """No such run, batch or request."""


class PlanRefused(BatchyardError):
    """The deadline or budget cannot be met; the message carries the numbers."""


class ProviderError(BatchyardError):
    """The API refused in a way that retrying cannot fix."""


class DispatchStopped(ProviderError):
    """Real-time calls cannot succeed until the user fixes something (key, URL, quota);
    the requests stay pending for `resume`."""


class QuotaExhausted(DispatchStopped):
    """The account's quota is used up (insufficient_quota)."""
