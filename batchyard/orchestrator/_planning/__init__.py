"""From what the user hands in to a planned, recorded run.

Owns `Planner` (`planner.py`: the run's check options, the intake, fallback models, the
reuse preview, the plan and recording the run) and the run's source (`sources.py`: a
request file, a template with a data file, or either multiplied into variants, turned into
the one request file the intake reads). Makes no API calls and never writes SQL itself.
"""
