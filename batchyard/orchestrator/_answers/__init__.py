"""What came back for each request, and whether it will do.

Owns the answers as the user gets them: `Result` and `iter_results` (`results.py`: a run's
results as typed objects, in input order), the run's checks on each answer and what a
failed one means, a re-send or the end as `invalid` (`checks.py`: `Judge`, `Judges`), and
fan-out variants seen whole (`variants.py`: grouped by original request, costs by
variant). Reads the store only; makes no API calls.
"""
