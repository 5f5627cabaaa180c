"""What a run looks like from outside, and who is told about it.

Owns `Reporter` (`reporter.py`: `runs`, `status`, `refresh`, `costs`, `fetch`, `results`
over one store), the typed reports it returns (`reports.py`), reading the store into them
(`status.py`, `costs.py`, `fetch.py`), the progress callback both paths report through
(`progress.py`) and the `--notify` call once a run has finished (`notify.py`). Reads the
store (the notify call records its attempts); never prints.
"""
