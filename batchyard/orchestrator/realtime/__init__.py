"""The real-time path: send a run's standard and flex requests at the provider's limit.

`RealtimeRunner` (`runner.py`) claims work from the store and dispatches it; `request.py`
handles one claimed request (admission, the call, retries, breaker, flex, its outcome);
`call.py` is the one SDK call and reading its answer; `admission.py` the RPM/TPM budgets per
(model, tier), corrected from what `headers.py` reads in the rate-limit headers;
`breaker.py` the circuit breaker per model; `types.py` the plain records (options, report,
progress events). It must not route, write SQL or print.
"""
