"""From what the user hands in to a planned, recorded run.

Owns `Planner` (`planner.py`: the run's check options, the intake, fallback models, the
reuse preview, the plan and recording the run) and the run's source (`sources.py`: a
request file, a template with a data file, or either multiplied into variants, turned into
the one request file the intake reads), and the intake itself: checking every line,
counting and pricing it (`intake.py`; a large file in worker processes, `parts.py`), the
small record kept of each valid line (`records.py`) in temporary files (`spill.py`), the
reuse preview and recording the run in one insert per line. Makes no API calls and never
writes SQL itself.
"""
