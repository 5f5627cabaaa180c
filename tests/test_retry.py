"""The retry layer: what is retried, how long it waits, and what is never retried.

Errors come from the real openai SDK, fed scripted HTTP responses by an httpx2
MockTransport, so classification is checked against the exceptions the SDK really raises.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion
from pydantic import SecretStr

from batchyard.config import Settings
from batchyard.errors import QuotaExhausted
from batchyard.orchestrator._calls.client import verify
from batchyard.orchestrator._calls.failures import FailureKind, classify, retry_after
from batchyard.orchestrator._calls.retry import (
    Retries,
    RetryPolicy,
    Verdict,
    backoff,
    call_with_retry,
)
from batchyard.orchestrator._calls.timing import ManualClock

OK = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}


def error(
    status: int, message: str, code: str | None, type_: str, **headers: str
) -> httpx2.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return httpx2.Response(status, json=body, headers=headers)


RATE = error(429, "Rate limit reached for gpt-4o-mini", "rate_limit_exceeded", "requests")
QUOTA = error(
    429,
    "You exceeded your current quota, please check your plan.",
    "insufficient_quota",
    "insufficient_quota",
)


class Script:
    """A transport answering from a list; an exception entry is raised (a dropped socket)."""

    def __init__(self, answers: list[httpx2.Response | Exception]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def sdk(script: Script) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://sim/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(script)),
    )


def call(client: openai.AsyncOpenAI) -> Callable[[], Awaitable[ChatCompletion]]:
    async def go() -> ChatCompletion:
        return await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )

    return go


async def failure_of(response: httpx2.Response | Exception) -> BaseException:
    client = sdk(Script([response]))
    with pytest.raises(openai.OpenAIError) as info:
        await call(client)()
    return info.value


@pytest.mark.parametrize(
    ("answer", "kind", "retryable"),
    [
        (RATE, FailureKind.RATE_LIMIT, True),
        (QUOTA, FailureKind.QUOTA, False),
        (error(500, "The server had an error", None, "server_error"), FailureKind.SERVER, True),
        (error(503, "Overloaded", None, "server_error"), FailureKind.SERVER, True),
        (error(408, "Request timeout", None, "timeout"), FailureKind.TIMEOUT, True),
        (error(409, "Conflict", None, "invalid_request_error"), FailureKind.CONFLICT, True),
        (
            error(400, "Invalid 'messages'", "empty_array", "invalid_request_error"),
            FailureKind.CLIENT,
            False,
        ),
        # The key or the URL is wrong: every call would fail alike, so dispatch stops.
        (
            error(401, "Incorrect API key", "invalid_api_key", "invalid_request_error"),
            FailureKind.SETUP,
            False,
        ),
        (error(403, "Forbidden", None, "invalid_request_error"), FailureKind.SETUP, False),
        (
            error(404, "Invalid URL (POST /v2/chat/completions)", None, "invalid_request_error"),
            FailureKind.SETUP,
            False,
        ),
        (
            error(404, "The model `x` does not exist", "model_not_found", "invalid_request_error"),
            FailureKind.CLIENT,
            False,
        ),
        (error(422, "Unprocessable", None, "invalid_request_error"), FailureKind.CLIENT, False),
        (
            error(429, "Resource unavailable", "resource_unavailable", "service_unavailable"),
            FailureKind.FLEX_UNAVAILABLE,
            True,
        ),
        (httpx2.ConnectError("refused"), FailureKind.CONNECTION, True),
        (httpx2.RemoteProtocolError("Server disconnected"), FailureKind.CONNECTION, True),
        (httpx2.ReadTimeout("timed out"), FailureKind.TIMEOUT, True),
    ],
)
async def test_classify_sdk_errors(
    answer: httpx2.Response | Exception, kind: FailureKind, retryable: bool
) -> None:
    failure = classify(await failure_of(answer))
    assert failure.kind is kind
    assert failure.retryable is retryable


async def test_provider_message_is_kept_verbatim() -> None:
    failure = classify(
        await failure_of(
            error(400, "Invalid 'messages': empty array.", "empty_array", "invalid_request_error")
        )
    )
    assert failure.message == "Invalid 'messages': empty array."
    assert failure.code == "empty_array"
    assert failure.status_code == 400


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Thu, 01 Jan 1970 00:01:40 GMT"}, 40.0),  # now = 60
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_headers(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after(headers, now=60.0) == seconds


def test_backoff_grows_is_capped_and_jittered() -> None:
    # tenacity's wait_exponential_jitter: jitter is added (up to 0.25 x base), where the
    # hand-written backoff took up to a quarter off; the cap is unchanged.
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0, jitter=0.25)
    firsts = [backoff(1, policy) for _ in range(200)]
    assert all(0.5 <= d <= 0.625 for d in firsts)
    assert len(set(firsts)) > 1  # jittered: not everyone retries at the same instant
    assert all(3.0 <= backoff(n, policy) <= 4.0 for n in (4, 5, 10))


def test_each_wait_without_retry_after_is_longer_than_the_one_before() -> None:
    # A client that retries at a constant interval hammers a struggling server; each wait
    # must grow (by more than 10%, LLMock's test for backing off) until the cap.
    policy = RetryPolicy()
    for _ in range(100):
        waits = [backoff(n, policy) for n in range(1, 8)]
        assert all(later > 1.1 * earlier for earlier, later in itertools.pairwise(waits))
        assert waits[-1] <= policy.max_delay


async def test_rate_limits_never_end_a_request_but_faults_have_a_budget() -> None:
    policy = RetryPolicy(max_attempts=4, max_delay=20.0)
    failure = classify(
        await failure_of(error(429, "Rate limit", "rate_limit_exceeded", "requests"))
    )
    retries = Retries(policy, defer_after=30.0)
    verdicts = {retries.decide(failure).verdict for _ in range(500)}
    assert verdicts == {Verdict.RETRY}  # waits capped below defer_after: always again
    deferring = Retries(RetryPolicy(max_delay=60.0), defer_after=30.0)
    seen = [deferring.decide(failure).verdict for _ in range(12)]
    assert Verdict.GIVE_UP not in seen and seen[-1] is Verdict.DEFER  # long: to the queue
    server = classify(await failure_of(error(500, "boom", None, "server_error")))
    faulty = Retries(policy, faults=1)  # one fault in an earlier claim counts
    assert [faulty.decide(server).verdict for _ in range(3)] == [
        Verdict.RETRY,
        Verdict.RETRY,
        Verdict.GIVE_UP,
    ]
    one_off = Retries(RetryPolicy(rate_limit_budget=10.0))  # verify, Batch-API calls
    outcomes = [one_off.decide(failure) for _ in range(30)]
    assert outcomes[-1].verdict is Verdict.GIVE_UP
    assert sum(d.wait for d in outcomes if d.verdict is Verdict.RETRY) <= 10.0 + 60.0


async def test_retry_after_is_honoured_then_succeeds() -> None:
    clock = ManualClock()
    script = Script(
        [
            error(429, "slow down", "rate_limit_exceeded", "tokens", **{"retry-after-ms": "2500"}),
            httpx2.Response(200, json=OK),
        ]
    )
    result = await call_with_retry(call(sdk(script)), RetryPolicy(), sleep=clock.sleep)
    assert result.choices[0].message.content == "hi"
    assert clock.sleeps == [2.5]
    assert script.calls == 2


async def test_transient_faults_are_retried_with_backoff_and_reported() -> None:
    clock = ManualClock()
    script = Script(
        [
            httpx2.RemoteProtocolError("Server disconnected without sending a response."),
            error(502, "Bad gateway", None, "server_error"),
            httpx2.ReadTimeout("timed out"),
            httpx2.Response(200, json=OK),
        ]
    )
    seen: list[tuple[FailureKind, int]] = []
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, jitter=0.0)
    await call_with_retry(
        call(sdk(script)),
        policy,
        sleep=clock.sleep,
        on_retry=lambda f, n, d: seen.append((f.kind, n)),
    )
    assert seen == [(FailureKind.CONNECTION, 1), (FailureKind.SERVER, 2), (FailureKind.TIMEOUT, 3)]
    assert clock.sleeps == [1.0, 2.0, 4.0]


async def test_attempts_are_bounded() -> None:
    clock = ManualClock()
    script = Script([error(500, "boom", None, "server_error")] * 3)
    with pytest.raises(openai.InternalServerError):
        await call_with_retry(call(sdk(script)), RetryPolicy(max_attempts=3), sleep=clock.sleep)
    assert script.calls == 3


async def test_client_errors_are_never_retried() -> None:
    clock = ManualClock()
    script = Script([error(400, "bad", "invalid_value", "invalid_request_error")])
    with pytest.raises(openai.BadRequestError):
        await call_with_retry(call(sdk(script)), RetryPolicy(), sleep=clock.sleep)
    assert script.calls == 1
    assert clock.sleeps == []


async def test_quota_is_never_retried_and_says_what_to_do() -> None:
    script = Script([QUOTA])
    with pytest.raises(QuotaExhausted) as info:
        await call_with_retry(call(sdk(script)), RetryPolicy(), sleep=ManualClock().sleep)
    assert script.calls == 1
    assert "batchyard resume" in str(info.value)
    assert "exceeded your current quota" in str(info.value)


async def test_retry_after_beyond_the_cap_is_left_to_the_caller() -> None:
    script = Script(
        [error(429, "later", "rate_limit_exceeded", "requests", **{"retry-after": "600"})]
    )
    with pytest.raises(openai.RateLimitError) as info:
        await call_with_retry(
            call(sdk(script)), RetryPolicy(max_retry_after=120), sleep=ManualClock().sleep
        )
    assert script.calls == 1
    assert classify(info.value).retry_after == 600.0


async def test_verify_waits_out_a_busy_key_instead_of_failing() -> None:
    # A 429 without retry-after and a 500, then the models list: a busy key is not a
    # wrong one. The waits grow.
    clock = ManualClock()
    models = {
        "object": "list",
        "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "openai"}],
    }
    script = Script(
        [
            error(429, "Rate limit reached", "rate_limit_exceeded", "requests"),
            error(500, "The server had an error", None, "server_error"),
            httpx2.Response(200, json=models),
        ]
    )
    settings = Settings(api_key=SecretStr("sk-test-verify-key"))
    report = await verify(sdk(script), settings, clock.sleep)
    assert report.ok and report.models == ["gpt-4o-mini"]
    assert script.calls == 3
    assert len(clock.sleeps) == 2 and clock.sleeps[1] > clock.sleeps[0]
