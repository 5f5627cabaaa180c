"""How the orchestrator calls the API, for both paths.

Owns the configured SDK client (`client.py`), what went wrong with a call (`failures.py`:
its kind, the provider's retry-after, what stops dispatch), when a call or a request is
tried again (`retry.py`, on tenacity's wait strategies), the pacing both paths share
(`bucket.py`, the leaky bucket on the injected clock) and that injected clock and sleep
(`timing.py`), through which every wait goes.
"""
