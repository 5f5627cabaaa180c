"""Settings precedence and the shipped model table."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchyard.config import load_settings, model_table, prices_date
from batchyard.errors import ConfigError
from batchyard.models import Route


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_precedence_argument_env_cwd_file_user_file_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    user_file = Path.home() / ".config" / "batchyard" / "batchyard.toml"
    _write(user_file, "margin_seconds = 11\nconcurrency = 7\nmax_attempts = 9\n")
    assert load_settings().margin_seconds == 11  # user config beats the default
    _write(tmp_path / "batchyard.toml", "margin_seconds = 22\nconcurrency = 8\n")
    settings = load_settings()
    assert (settings.margin_seconds, settings.concurrency, settings.max_attempts) == (22, 8, 9)
    monkeypatch.setenv("BATCHYARD_MARGIN_SECONDS", "33")
    assert load_settings().margin_seconds == 33  # environment beats both files
    assert load_settings(margin_seconds=44).margin_seconds == 44  # argument beats all
    assert load_settings(margin_seconds=None).margin_seconds == 33  # None means "not given"
    assert load_settings().request_timeout == 120.0  # untouched: the default


def test_openai_variables_are_read_and_plain_names_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_KEY", "sk-not-ours")
    monkeypatch.setenv("BASE_URL", "http://not-ours")
    assert load_settings().api_key is None and load_settings().base_url is None
    monkeypatch.setenv("OPENAI_API_KEY", "sk-ours-0123456789")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    settings = load_settings()
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "sk-ours-0123456789"
    assert "sk-ours" not in repr(settings) and "sk-ours" not in str(settings.model_dump())
    assert settings.base_url == "http://127.0.0.1:9/v1"


def test_unknown_setting_is_refused_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "batchyard.toml", "margn_seconds = 5\n")
    with pytest.raises(ConfigError, match="margn_seconds"):
        load_settings()


def test_model_table_prices_and_overrides() -> None:
    table = model_table()
    assert prices_date()
    mini = table["gpt-4o-mini"]
    assert mini.estimate(Route.STANDARD, 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert mini.estimate(Route.BATCH, 1_000_000, 1_000_000) == pytest.approx(0.375)
    assert not mini.flex and mini.estimate(Route.FLEX, 1000, 0) == mini.estimate(
        Route.STANDARD, 1000, 0
    )
    gpt5 = table["gpt-5-mini"]
    assert gpt5.flex and gpt5.estimate(Route.FLEX, 1000, 1000) == gpt5.estimate(
        Route.BATCH, 1000, 1000
    )
    assert "max_tokens" in gpt5.rejects
    custom = model_table(
        {
            "gpt-4o-mini": {"rpm": 7},
            "my-model": {"input": 1.0, "output": 2.0, "batch_input": 0.5, "batch_output": 1.0},
        }
    )
    assert custom["gpt-4o-mini"].rpm == 7 and custom["gpt-4o-mini"].input == mini.input
    assert custom["my-model"].estimate(Route.BATCH, 2_000_000, 0) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="model table"):
        model_table({"broken": {"input": 1.0}})


def test_every_model_the_simulator_serves_is_priced() -> None:
    from batchyard.simulator.config import default_models

    table = model_table()
    for name, spec in default_models().items():
        assert name in table, name
        info = table[name]
        assert info.encoding == spec.encoding
        assert info.flex == spec.flex and info.reasoning == spec.reasoning
        assert info.input == pytest.approx(spec.input_price)
        assert info.batch_input == pytest.approx(spec.input_price * spec.batch_discount)
