"""Test-wide guards: no real API, no real user files.

Every test runs with the real `OPENAI_*` variables removed, the store and the user's
config and data directories pointed into `tmp_path`, so nothing can reach the real API
or touch a real database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "BATCHYARD_")):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("BATCHYARD_DB", str(tmp_path / "batchyard.db"))
    yield
