"""The batch path: one run's OpenAI Batch API lifecycle, recorded in the store.

`BatchRunner` (`runner.py`) is its face; the work lives beside it: `submit.py` (re-queue,
plan, admit), `reading.py` (a group's lines as planning reads them, and what waits),
`upload.py` (one shard's upload and create), `apply.py` (files and failures to
results), `reconcile.py` (crash repair, cancel), `remote.py` (every SDK call via the one
retry layer, and `BatchContext`), `lines.py` (what each output/error line means),
`schedule.py` (poll backoff). It must not route requests nor decide a run's final state;
it never writes SQL.
"""
