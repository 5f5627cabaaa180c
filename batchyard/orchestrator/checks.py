"""Checking the key and the base URL with one models call, before work or on request.

Owns `preflight` (raise an actionable error before anything is recorded) and `verify`
(report what the API says, for `batchyard verify`). The key is never shown: only a hint.
"""

from __future__ import annotations

import openai

from batchyard.config import Settings
from batchyard.errors import ConfigError, ProviderError
from batchyard.orchestrator.reports import VerifyReport
from batchyard.orchestrator.retry import RetryPolicy, call_with_retry
from batchyard.orchestrator.timing import Sleep

__all__ = ["key_hint", "preflight", "verify"]


def key_hint(settings: Settings) -> str:
    """`sk-...abcd`: enough to tell keys apart, never enough to use one."""
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    return f"{key[:3]}...{key[-4:]}" if len(key) > 12 else "(set)" if key else "(not set)"


async def preflight(client: openai.AsyncOpenAI, sleep: Sleep) -> None:
    """One models call before anything is recorded, so a wrong key or URL fails fast."""
    base = str(client.base_url)
    try:
        await call_with_retry(client.models.list, RetryPolicy(max_attempts=3), sleep=sleep)
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


async def verify(client: openai.AsyncOpenAI, settings: Settings) -> VerifyReport:
    """What a models call with this key and base URL says."""
    base, hint = str(client.base_url), key_hint(settings)
    try:
        page = await client.models.list()
    except openai.AuthenticationError:
        return VerifyReport(base, False, [], "The API key was refused (401).", hint)
    except openai.APIConnectionError:
        return VerifyReport(base, False, [], f"Cannot connect to {base}.", hint)
    except openai.APIStatusError as exc:
        return VerifyReport(base, False, [], f"The API answered {exc.status_code}.", hint)
    names = sorted(m.id for m in page.data)
    return VerifyReport(base, True, names, f"{len(names)} model(s) available.", hint)
