"""The exit codes of every command, and which error ends with which.

Owns `EXIT_CODES` (the table the README's "Exit codes" lists; a test keeps the two in
step) and `exit_code`, the code a `BatchyardError` ends a command with. Nothing else: printing the
failure is `edge.py`'s.
"""

from __future__ import annotations

from batchyard.errors import BatchyardError, InputError, OptionError, PlanRefused

__all__ = [
    "EXIT_CODES",
    "EXIT_ERROR",
    "EXIT_FAILED_REQUESTS",
    "EXIT_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PLAN_REFUSED",
    "EXIT_USAGE",
    "exit_code",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_PLAN_REFUSED = 4
EXIT_FAILED_REQUESTS = 5
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_ERROR: "an error with a message: configuration, store, API, no such run",
    EXIT_USAGE: "the command line is wrong (unknown option, bad value, missing argument or file)",
    EXIT_INPUT: "the request file is invalid; nothing was submitted",
    EXIT_PLAN_REFUSED: "the deadline or budget cannot be met (--strict or --budget)",
    EXIT_FAILED_REQUESTS: "the run finished, but some requests failed (waiting commands only)",
    EXIT_INTERRUPTED: "stopped with Ctrl-C; nothing is lost, `batchyard resume RUN` carries on",
}


def exit_code(exc: BatchyardError) -> int:
    if isinstance(exc, OptionError):
        return EXIT_USAGE
    if isinstance(exc, InputError):
        return EXIT_INPUT
    if isinstance(exc, PlanRefused):
        return EXIT_PLAN_REFUSED
    return EXIT_ERROR
