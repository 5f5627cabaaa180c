"""The one way batchyard builds its OpenAI client.

Owns `make_client`: one `AsyncOpenAI` per base URL and run, shared by every task, with the
SDK's own retries off (`max_retries=0`: tenacity in `retry.py` is the only retry layer),
deliberate timeouts (connect 5 s, read `settings.request_timeout`; flex calls use
`flex_options`, which raises the read timeout to `settings.flex_timeout`, 15 minutes by
default, as OpenAI advises) and a connection pool sized to the concurrency. It must not
call the API or read the environment: the key comes from `Settings`.
"""

from __future__ import annotations

import httpx2
import openai

from batchyard.config import Settings
from batchyard.errors import ConfigError

__all__ = ["CONNECT_TIMEOUT", "flex_options", "make_client", "timeout_for"]

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
