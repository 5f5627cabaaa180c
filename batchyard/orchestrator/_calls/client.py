"""The one way batchyard builds its OpenAI client, and checking the key and base URL with it.

Owns `make_client`: one `AsyncOpenAI` per base URL and run, shared by every task, with the
SDK's own retries off (`max_retries=0`: tenacity in `_retry.py` is the only retry layer),
deliberate timeouts (connect 5 s, read `settings.request_timeout`; flex calls use
`flex_options`, which raises the read timeout to `settings.flex_timeout`, 15 minutes by
default, as OpenAI advises) and a connection pool sized to the concurrency. It must not
read the environment: the key comes from `Settings`.

Also owns `preflight` (one models call that raises an actionable error before anything is
recorded) and `verify` (report what the API says, for `batchyard verify`). The key is never
shown: only a hint (`key_hint`).
"""

from __future__ import annotations

import httpx2
import openai

from batchyard.config import Settings
from batchyard.errors import ConfigError, ProviderError, QuotaExhausted
from batchyard.orchestrator._calls.retry import RetryPolicy, call_with_retry
from batchyard.orchestrator._calls.timing import Sleep, real_sleep
from batchyard.orchestrator._reporting.reports import VerifyReport

__all__ = [
    "CONNECT_TIMEOUT",
    "flex_options",
    "key_hint",
    "make_client",
    "preflight",
    "timeout_for",
    "verify",
]

CONNECT_TIMEOUT = 5.0


def timeout_for(settings: Settings, *, flex: bool = False) -> httpx2.Timeout:
    """Connect 5 s; read/write/pool the tier's timeout (flex is slower by design)."""
    seconds = settings.flex_timeout if flex else settings.request_timeout
    return httpx2.Timeout(seconds, connect=CONNECT_TIMEOUT)


def make_client(
    settings: Settings,
    *,
    http_client: httpx2.AsyncClient | None = None,
    timeout: float | None = None,
    connections: int | None = None,
) -> openai.AsyncOpenAI:
    """A client for `settings.base_url` (or OpenAI's), to be shared by a whole run.

    `http_client` replaces the transport (tests hand in an `httpx2.ASGITransport` to the
    simulator); `timeout` overrides the read timeout; `connections` sizes the pool (default:
    four times `settings.concurrency`, since concurrency is per model). Raises `ConfigError`
    when no API key is configured; callers of the embedded simulator pass a dummy key.
    """
    if settings.api_key is None or not settings.api_key.get_secret_value().strip():
        raise ConfigError(
            "No OpenAI API key is configured. Set OPENAI_API_KEY (or api_key in batchyard.toml)."
        )
    limit = connections or max(16, settings.concurrency * 4)
    if http_client is None:
        http_client = openai.DefaultAsyncHttpxClient(
            limits=httpx2.Limits(max_connections=limit, max_keepalive_connections=limit),
        )
    read = (
        timeout_for(settings)
        if timeout is None
        else httpx2.Timeout(timeout, connect=CONNECT_TIMEOUT)
    )
    return openai.AsyncOpenAI(
        api_key=settings.api_key.get_secret_value(),
        base_url=settings.base_url,
        organization=settings.organization,
        project=settings.project,
        max_retries=0,
        timeout=read,
        http_client=http_client,
    )


def flex_options(client: openai.AsyncOpenAI, settings: Settings) -> openai.AsyncOpenAI:
    """The same client (same pool) with the flex tier's longer read timeout."""
    return client.with_options(timeout=timeout_for(settings, flex=True))


def key_hint(settings: Settings) -> str:
    """`sk-...abcd`: enough to tell keys apart, never enough to use one."""
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    return f"{key[:3]}...{key[-4:]}" if len(key) > 12 else "(set)" if key else "(not set)"


async def preflight(client: openai.AsyncOpenAI, sleep: Sleep) -> None:
    """One models call before anything is recorded, so a wrong key or URL fails fast."""
    base = str(client.base_url)
    try:
        await call_with_retry(client.models.list, RetryPolicy(max_attempts=4), sleep=sleep)
    except openai.AuthenticationError as exc:
        raise ConfigError(
            f"The API at {base} refused the key (401); check OPENAI_API_KEY. Nothing was recorded."
        ) from exc
    except openai.NotFoundError as exc:
        raise ConfigError(
            f"The API at {base} has no /models (404): check OPENAI_BASE_URL, which usually "
            "ends in /v1. Nothing was recorded."
        ) from exc
    except openai.APIConnectionError as exc:
        raise ProviderError(
            f"Cannot reach the API at {base}; check OPENAI_BASE_URL and the network. "
            "Nothing was recorded."
        ) from exc
    except openai.APIStatusError as exc:
        raise ProviderError(
            f"The API at {base} answered {exc.status_code} to a models call; check "
            "OPENAI_API_KEY and OPENAI_BASE_URL. Nothing was recorded."
        ) from exc


async def verify(
    client: openai.AsyncOpenAI, settings: Settings, sleep: Sleep = real_sleep
) -> VerifyReport:
    """What a models call with this key and base URL says. Rate limits, 5xx, timeouts and
    dropped connections are retried like every call (`call_with_retry`): a busy key is not
    a wrong one."""
    base, hint = str(client.base_url), key_hint(settings)
    try:
        page = await call_with_retry(client.models.list, RetryPolicy(max_attempts=4), sleep=sleep)
    except QuotaExhausted as exc:
        return VerifyReport(base, False, [], str(exc), hint)
    except openai.AuthenticationError:
        return VerifyReport(base, False, [], "The API key was refused (401).", hint)
    except openai.APIConnectionError:
        return VerifyReport(base, False, [], f"Cannot connect to {base}.", hint)
    except openai.APIStatusError as exc:
        return VerifyReport(base, False, [], f"The API answered {exc.status_code}.", hint)
    names = sorted(m.id for m in page.data)
    return VerifyReport(base, True, names, f"{len(names)} model(s) available.", hint)
