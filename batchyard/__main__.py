"""`python -m batchyard` runs the CLI."""

from batchyard.cli import main

main()
