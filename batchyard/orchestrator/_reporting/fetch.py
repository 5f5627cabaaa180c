"""Writing a run's answers out: `fetch`, one line per input line, in input order.

Owns `fetch` (the output file, and errors apart when asked; grouped by original request
for fan-out). A finished line's text is the one the store made once after it finished
(`store/answers.py`); a line without one is made here the same way (`store/outlines.py`,
which also has `output_line`, re-exported here). Reads the store only; makes no API calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from batchyard.errors import NotFound
from batchyard.models import RequestStatus
from batchyard.orchestrator._answers.variants import Grouper
from batchyard.orchestrator._reporting.reports import FetchReport
from batchyard.store import Store, chunked
from batchyard.store.answers import AnswerLine, answer_line
from batchyard.store.outlines import PlainLines, Splice, output_line

__all__ = ["fetch", "output_line"]

_PAGE = 2000  # lines made or read at a time


# Output is written as bytes through a 1 MiB buffer: in text mode with the default 8 KiB
# buffer, writing 200k lines of 1.2 KB took twice as long (most of it in system time).
_BUFFER = 1 << 20


def _lines(store: Store, run_id: str) -> Iterator[list[AnswerLine]]:
    """Every line of the run in input order, a page at a time.

    A finished run's lines are all stored (`Store.answer_lines`): they are read as they
    are. Otherwise the stored lines are merged, in line order, with lines made here from
    the rows that have none (still running, or finished before lines were stored)."""
    stored, total = store.count_answer_lines(run_id)
    if stored == total:
        for stored_page in store.answer_lines(run_id):
            yield [(text, status, by_fallback) for _, _, text, status, by_fallback in stored_page]
        return
    batch_ids = {b.id: b.provider_batch_id for b in store.list_batches(run_id)}
    plain, splice = PlainLines(run_id, batch_ids), Splice()
    answers = (row for page in store.answer_lines(run_id) for row in page)
    head = next(answers, None)
    for keys in chunked(store.request_keys(run_id), _PAGE):
        page: list[AnswerLine | int] = []  # a stored line, or the row id to make one from
        for key in keys:
            while head is not None and head[:2] < key:  # its request is gone since
                head = next(answers, None)
            if head is not None and head[:2] == key:
                page.append((head[2], head[3], head[4]))
                head = next(answers, None)
            else:
                page.append(key[1])
        rows = store.request_rows([item for item in page if isinstance(item, int)])
        made: list[AnswerLine] = []
        for item in page:
            if not isinstance(item, int):
                made.append(item)
            elif (row := rows.get(item)) is not None:  # else it is gone since
                made.append(answer_line(run_id, row, plain, splice, batch_ids))
        yield made


def fetch(
    store: Store, run_id: str, output: Path, errors: Path | None = None, *, group: bool = False
) -> FetchReport:
    """Write every input line's outcome to `output` in input order; failures also to `errors`.

    With `group`, `output` has one line per original request of a fan-out run, its variants
    side by side (`variants.Grouper`); `errors` still has one line per failed variant."""
    if store.get_run(run_id).pruned_at is not None:
        raise NotFound(
            f"Run {run_id} was pruned: its requests and answers are no longer in {store.path}."
        )
    succeeded = failed = unfinished = lines = invalid = fallback = cancelled = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".partial")
    err_tmp = errors.with_name(errors.name + ".partial") if errors else None
    # Each line is encoded once; "\n" is written as is, as text mode does on POSIX.
    with tmp.open("wb", buffering=_BUFFER) as out, ExitStack() as stack:
        err = stack.enter_context(err_tmp.open("wb", buffering=_BUFFER)) if err_tmp else None
        write = out.write
        grouper = Grouper() if group else None
        for page in _lines(store, run_id):
            if grouper is None:
                write(b"".join([text for text, _, _ in page]))
                lines += len(page)
            else:
                for text, _, _ in page:
                    for grouped in grouper.add(json.loads(text)):
                        write((json.dumps(grouped, separators=(",", ":")) + "\n").encode())
                        lines += 1
            for text, status, by_fallback in page:
                if status == RequestStatus.SUCCEEDED:
                    succeeded += 1
                    fallback += by_fallback
                    continue
                if status == RequestStatus.CANCELLED:
                    cancelled += 1
                elif status in (RequestStatus.FAILED, RequestStatus.INVALID):
                    failed += 1
                    invalid += status == RequestStatus.INVALID
                else:
                    unfinished += 1
                if err is not None:
                    err.write(text)
        for grouped in grouper.flush() if grouper is not None else []:
            write((json.dumps(grouped, separators=(",", ":")) + "\n").encode())
            lines += 1
    tmp.replace(output)
    if errors and err_tmp:
        err_tmp.replace(errors)
    return FetchReport(
        run_id,
        output,
        errors,
        lines,
        succeeded,
        failed,
        unfinished,
        invalid,
        cancelled=cancelled,
        fallback=fallback,
    )
