"""docs/simulator.md documents every setting of the simulator's configuration."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from batchyard.simulator import SimConfig
from batchyard.simulator.config import ModelSpec

DOC = Path(__file__).resolve().parents[1] / "docs" / "simulator.md"


def _toml_block() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## Configuration (TOML)")
    block = re.search(r"```toml\n(.*?)```", text[start:], re.S)
    assert block, "docs/simulator.md has no TOML block under Configuration"
    return block.group(1)


def _sections() -> list[tuple[str, type[BaseModel]]]:
    found = []
    for name, info in SimConfig.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found.append((name, kind))
    return found


def test_the_documented_toml_is_a_valid_config() -> None:
    data = tomllib.loads(_toml_block())
    config = SimConfig.model_validate(
        {**data, "models": {k: ModelSpec(**v) for k, v in data.get("models", {}).items()}}
    )
    assert config.batch.max_creates_per_hour == SimConfig().batch.max_creates_per_hour


@pytest.mark.parametrize(("section", "model"), _sections(), ids=[s for s, _ in _sections()])
def test_every_setting_is_documented_with_its_default(section: str, model: type[BaseModel]) -> None:
    data = tomllib.loads(_toml_block())
    documented = data.get(section, {})
    assert set(documented) == set(model.model_fields), section
    defaults = getattr(SimConfig(), section).model_dump()
    for key, value in documented.items():
        if key in ("start",):  # the example start time is not the default (the real time)
            continue
        assert defaults[key] == value, f"[{section}] {key}: documented {value!r}"


def test_top_level_settings_are_documented() -> None:
    data = tomllib.loads(_toml_block())
    sections = {name for name, _ in _sections()} | {"models"}
    top = {name for name in SimConfig.model_fields if name not in sections}
    assert top <= set(data)
