"""Batch output/error lines become the right outcome, and polling backs off sensibly."""

from __future__ import annotations

import pytest

from batchyard.config import model_table
from batchyard.models import BatchStatus, RequestStatus, Route
from batchyard.orchestrator.batch.lines import line_errors, result_from_line
from batchyard.orchestrator.batch.schedule import PollSchedule

MINI = model_table()["gpt-4o-mini"]


def _ok(custom_id: str, usage: dict[str, int]) -> dict[str, object]:
    body = {"id": "x", "object": "chat.completion", "usage": usage}
    return {
        "id": "batch_req_1",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": "req_1", "body": body},
        "error": None,
    }


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 22, "completion_tokens": 2, "total_tokens": 24}, (22, 2)),
        ({"input_tokens": 30, "output_tokens": 7, "total_tokens": 37}, (30, 7)),
        ({"prompt_tokens": 12, "total_tokens": 12}, (12, 0)),
    ],
)
def test_success_is_priced_at_batch_rates(usage: dict[str, int], expected: tuple[int, int]) -> None:
    result = result_from_line(_ok("a", usage), shard=3, model=MINI)
    assert result.status == RequestStatus.SUCCEEDED
    assert (result.input_tokens, result.output_tokens) == expected
    assert result.cost == pytest.approx(MINI.estimate(Route.BATCH, *expected))
    assert result.cost < MINI.estimate(Route.STANDARD, *expected)
    assert result.shard == 3


def test_http_4xx_line_is_terminal_with_the_provider_message() -> None:
    message = "Unsupported parameter: 'max_tokens' is not supported with this model."
    line = {
        "custom_id": "b",
        "response": {
            "status_code": 400,
            "body": {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": "max_tokens",
                    "code": "unsupported_parameter",
                }
            },
        },
        "error": None,
    }
    result = result_from_line(line, shard=1, model=MINI)
    assert result.status == RequestStatus.FAILED
    assert result.error_message == message
    assert result.error_code == "unsupported_parameter"
    assert result.status_code == 400


@pytest.mark.parametrize(
    "line",
    [
        {
            "custom_id": "c",
            "response": {"status_code": 500, "body": {"error": {"message": "boom"}}},
            "error": None,
        },
        {
            "custom_id": "c",
            "response": None,
            "error": {"code": "request_timeout", "message": "The underlying call timed out."},
        },
        {
            "custom_id": "c",
            "response": None,
            "error": {"code": "batch_expired", "message": "This request could not be executed."},
        },
        {
            "custom_id": "c",
            "response": None,
            "error": {"code": "batch_cancelled", "message": "The batch was cancelled."},
        },
    ],
)
def test_transient_failures_are_retryable(line: dict[str, object]) -> None:
    result = result_from_line(line, shard=1, model=MINI)
    assert result.status == RequestStatus.RETRYABLE
    assert result.error_message
    assert result.cost == 0.0


def test_a_line_without_custom_id_is_refused() -> None:
    with pytest.raises(ValueError, match="custom_id"):
        result_from_line({"response": None, "error": None}, shard=1, model=MINI)


def test_validation_errors_split_by_line() -> None:
    errors = {
        "object": "list",
        "data": [
            {"code": "invalid_url", "message": "no", "param": "url", "line": 2},
            {"code": "token_limit_exceeded", "message": "full", "param": None, "line": None},
        ],
    }
    by_line, general = line_errors(errors)
    assert list(by_line) == [2] and by_line[2][0]["code"] == "invalid_url"
    assert [g["code"] for g in general] == ["token_limit_exceeded"]


def test_poll_backoff_fast_while_validating_then_grows_to_the_cap() -> None:
    schedule = PollSchedule(low=5, high=60)
    assert schedule.polled(1, BatchStatus.VALIDATING, 0) == 5
    gaps = []
    now = 5.0
    for _ in range(10):
        nxt = schedule.polled(1, BatchStatus.IN_PROGRESS, now)
        gaps.append(nxt - now)
        now = nxt
    assert gaps[0] == 10 and gaps == sorted(gaps) and gaps[-1] == 60
    assert not schedule.due(1, now - 1) and schedule.due(1, now)
    # finalizing is not done: it keeps being polled, briefly
    assert schedule.polled(1, BatchStatus.FINALIZING, now) - now == 15
    assert schedule.failed(1, now, retry_after=30) - now == 30
