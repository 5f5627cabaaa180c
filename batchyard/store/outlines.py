"""An answered line as `fetch` writes it: the OpenAI batch output shape plus batchyard's facts.

Owns `output_line` (one request's record), `PlainLines` (the common line's text made from its
stored fields, without a record) and `Splice` (any other line's text, its stored answer
written in as text). The store makes each finished line's text with these once
(`answers.py`), and `fetch` with them for the lines that have none yet. Pure: no SQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from batchyard.jsontext import plain, quoted
from batchyard.models import RequestStatus

from .codec import body_text, decode_body
from .rows import RequestRow

__all__ = ["PlainLines", "Splice", "output_line"]


def output_line(run_id: str, r: RequestRow, batch_ids: Mapping[int, str | None]) -> dict[str, Any]:
    """One request in the OpenAI batch output shape, plus batchyard's own facts."""
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    if r.status_code is not None and r.response_body is not None:
        response = {
            "status_code": r.status_code,
            "request_id": r.request_id,
            "body": r.response_body,
        }
    elif r.status is RequestStatus.SUCCEEDED:
        response = {"status_code": 200, "request_id": r.request_id, "body": r.response_body}
    if r.status is RequestStatus.INVALID:
        # The last answer is kept in `response`; `error` says which check it failed.
        error = {
            "code": "invalid",
            "message": f"{r.error_message or 'The answer failed a check.'} "
            f"({r.error_code or 'check'}; {r.requeues} re-send(s))",
            "check": (r.error_code or "").removeprefix("check:") or None,
        }
    elif r.status is RequestStatus.FAILED and r.fallback is not None:
        # Its fallback model was refused too: the message names both refusals.
        error = {"code": r.error_code or "failed", "message": r.error_message or ""}
    elif r.status is not RequestStatus.SUCCEEDED and response is None:
        if r.status in (RequestStatus.FAILED, RequestStatus.CANCELLED):
            code = r.error_code or r.status.value
            message = r.error_message or f"The request was {r.status.value}."
        else:
            code = "not_finished"
            message = f"The request is still {r.status.value}; fetch again when the run is done."
        error = {"code": code, "message": message}
    return {
        "id": f"batchyard_{run_id}_{r.line}",
        "custom_id": r.custom_id,
        "response": response,
        "error": error,
        "batchyard": {
            "line": r.line,
            "status": r.status.value,
            "route": r.route.value if r.route else None,
            "batch_id": batch_ids.get(r.shard) if r.shard is not None else None,
            "attempts": r.attempts,
            "cost": r.cost,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "requeues": r.requeues,
            "requeue_cost": r.requeue_cost,
            # Where a reused answer came from: {"run", "custom_id", "at"}; None if bought here.
            "reused_from": r.reused_from,
            # The model the line was sent to last: its own, or its fallback model.
            "model": r.model,
            # {"from", "to", "reason", "error", "at"} when a fallback model answers it.
            "fallback": r.fallback,
        },
    }


_MEMO = 1 << 16  # most texts kept by each memo of `PlainLines`


class PlainLines:
    """`output_line` of a request's full row as the text json writes of it, newline
    included, for the common line: succeeded with an ASCII answer, bought here by the model
    it named. Built from the row's fields and the answer's stored text, without a
    record or an encoder; None for any other line (it takes `output_line`).

    What is the same on every line of a run is made once: the start of the line id, each
    shard's quoted batch id. Routes and models (few) are quoted once each, and a cost's
    `repr` is kept by value: a run has few distinct costs, and `repr` of a float took a
    quarter of the time of making a line. Only floats, and not 0.0, are kept (a value
    cannot tell 1 from 1.0, nor 0.0 from -0.0)."""

    def __init__(self, run_id: str, batch_ids: Mapping[int, str | None]) -> None:
        # The id is `batchyard_{run_id}_{line}`; a line number is digits, never escaped.
        self._head = '{"id":' + quoted(f"batchyard_{run_id}_").removesuffix('"')
        self._batch = {shard: quoted(batch_id) for shard, batch_id in batch_ids.items()}
        self._quoted: dict[str | None, str] = {None: "null"}
        self._floats: dict[float, str] = {}

    def _quote(self, text: str | None) -> str:
        """`quoted(text)`, kept for the next line with the same text."""
        known = quoted(text)
        if len(self._quoted) < _MEMO:
            self._quoted[text] = known
        return known

    def _cost(self, value: int | float | None) -> str:
        """The cost as json writes it (its `repr`; None is `null`), kept by value."""
        known = "null" if value is None else repr(value)
        if type(value) is float and value and len(self._floats) < _MEMO:
            self._floats[value] = known
        return known

    def __call__(self, row: Mapping[str, Any]) -> str | None:
        if row["status"] != "succeeded" or row["fallback"] is not None:
            return None
        text, code = row["response_body"], row["status_code"]
        if row["reused_from"] is not None or text is None or code is None:
            return None
        if type(text) is not str:
            text = body_text(text)
        if not text.isascii():
            return None
        custom_id, request_id = row["custom_id"], row["request_id"]
        if plain(custom_id if request_id is None else custom_id + request_id):
            custom_id = f'"{custom_id}"'
            request_id = "null" if request_id is None else f'"{request_id}"'
        else:
            custom_id, request_id = quoted(custom_id), quoted(request_id)
        known, route, model = self._quoted, row["route"], row["model"]
        route = known.get(route) or self._quote(route)
        model = known.get(model) or self._quote(model)
        shard, cost = row["shard"], row["cost"]
        batch_id = "null" if shard is None else self._batch.get(shard, "null")
        cost_text = self._floats.get(cost) if type(cost) is float else None
        if cost_text is None:
            cost_text = self._cost(cost)
        attempts, tokens_in, tokens_out = row["attempts"], row["input_tokens"], row["output_tokens"]
        requeues, requeue_cost, line = row["requeues"], row["requeue_cost"], row["line"]
        return (
            f'{self._head}{line}","custom_id":{custom_id},'
            f'"response":{{"status_code":{code!r},"request_id":{request_id},'
            f'"body":{text}}},"error":null,"batchyard":{{"line":{line!r},"status":"succeeded",'
            f'"route":{route},"batch_id":{batch_id},'
            f'"attempts":{"null" if attempts is None else repr(attempts)},"cost":{cost_text},'
            f'"input_tokens":{"null" if tokens_in is None else repr(tokens_in)},'
            f'"output_tokens":{"null" if tokens_out is None else repr(tokens_out)},'
            f'"requeues":{"null" if requeues is None else repr(requeues)},'
            f'"requeue_cost":{"null" if requeue_cost is None else repr(requeue_cost)},'
            f'"reused_from":null,"model":{model},"fallback":null}}}}\n'
        )


class Splice:
    """Output lines with each stored answer written into them as its stored text.

    The store keeps a response body as the compact JSON the encoder made of it; the output
    line is `json.dumps(record, separators=(",", ":"))`, which writes such a body back to
    the same text when it is ASCII (only `ensure_ascii` differs between the two). So an
    ASCII body is spliced in as text, in place of a placeholder, without being decoded and
    encoded again; any other body takes the long way. The bytes written are the same."""

    def __init__(self) -> None:
        self._key = f"batchyard-splice-{uuid.uuid4().hex}"
        self._placeholder = {self._key: 0}
        self._text = json.dumps(self._placeholder, separators=(",", ":"))

    def line(self, run_id: str, r: RequestRow, batch_ids: Mapping[int, str | None]) -> str:
        """`output_line` of `r` as the text json writes of it (no newline)."""
        text = r.response_text
        if text is not None and text.isascii():
            record = output_line(run_id, replace(r, response_body=self._placeholder), batch_ids)
            line = json.dumps(record, separators=(",", ":"))
            if line.count(self._text) == 1:
                return line.replace(self._text, text)
        if text is not None:
            r = replace(r, response_body=decode_body(text))
        return json.dumps(output_line(run_id, r, batch_ids), separators=(",", ":"))
