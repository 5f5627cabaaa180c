"""Configuration: one settings model, resolved in one place, and the shipped model table.

Owns precedence (explicit argument > environment > `batchyard.toml` in the current
directory, then in the user config directory > defaults) and the model table
(`batchyard/data/models.toml`: prices per 1M tokens for standard, batch and flex,
limits, encodings, rejected parameters), each value overridable under
`[models."<name>"]`. Secrets are `SecretStr` and never printed. No network, no SQL.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from batchyard.errors import ConfigError

__all__ = [
    "APP_NAME",
    "ModelInfo",
    "Settings",
    "config_files",
    "default_db_path",
    "load_settings",
    "model_table",
    "prices_date",
]

APP_NAME = "batchyard"
_TABLE = Path(__file__).parent / "data" / "models.toml"


class ModelInfo(BaseModel):
    """What batchyard knows about one model. Prices are USD per 1M tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    encoding: str = "o200k_base"
    context_window: int = 128_000
    input: float
    cached_input: float | None = None
    output: float
    batch_input: float
    batch_output: float
    flex_input: float | None = None  # None: the model has no flex tier
    flex_output: float | None = None
    rpm: int = 500
    tpm: int = 200_000
    enqueued_token_limit: int = 2_000_000
    rejects: tuple[str, ...] = ()
    reasoning: bool = False
    embedding: bool = False

    @property
    def flex(self) -> bool:
        return self.flex_input is not None and self.flex_output is not None

    def cost(self, path: str, input_tokens: int, output_tokens: int) -> float:
        """USD for the given tokens on a path: "standard", "flex" or "batch"."""
        if path == "batch":
            rates = (self.batch_input, self.batch_output)
        elif path == "flex" and self.flex_input is not None and self.flex_output is not None:
            rates = (self.flex_input, self.flex_output)
        elif path in ("standard", "flex"):
            rates = (self.input, self.output)
        else:
            raise ValueError(f"Unknown path {path!r}.")
        return (input_tokens * rates[0] + output_tokens * rates[1]) / 1_000_000


@cache
def _shipped_table() -> dict[str, Any]:
    with _TABLE.open("rb") as f:
        return tomllib.load(f)


def prices_date() -> str:
    return str(_shipped_table()["prices_date"])


def model_table(overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, ModelInfo]:
    """The shipped table with per-model overrides merged in (new models allowed)."""
    merged: dict[str, dict[str, Any]] = {
        name: dict(values) for name, values in _shipped_table()["models"].items()
    }
    for name, values in (overrides or {}).items():
        merged[name] = {**merged.get(name, {}), **values}
    try:
        return {name: ModelInfo(name=name, **values) for name, values in merged.items()}
    except ValueError as exc:
        raise ConfigError(f"The model table is invalid: {exc}") from exc


def default_db_path() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME)) / "batchyard.db"


def config_files() -> list[Path]:
    """Config files in order of precedence: current directory first."""
    return [
        Path.cwd() / "batchyard.toml",
        Path(platformdirs.user_config_dir(APP_NAME)) / "batchyard.toml",
    ]


class Settings(BaseSettings):
    """Everything a run can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="BATCHYARD_",
        extra="forbid",
        populate_by_name=True,
    )

    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_API_KEY", "BATCHYARD_API_KEY"),
    )
    base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_BASE_URL", "BATCHYARD_BASE_URL"),
    )
    organization: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_ORG_ID", "BATCHYARD_ORGANIZATION")
    )
    project: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_PROJECT_ID", "BATCHYARD_PROJECT")
    )
    db: Path | None = None  # None: default_db_path()
    deadline: str | None = None  # default deadline for submit, e.g. "24h"
    margin_seconds: float = 60.0  # floor kept free before the deadline (see README: routing)
    realtime_spread: float = 0.05  # real time may run this share slower than its limits say
    cancel_quantile: float = 0.9  # cancel latency allowed for where batch progress counts
    batch_setup_seconds: float = 60.0  # upload, create and validation of a new shard
    cancel_latency_median_seconds: float = 60.0  # prior for how long a cancel takes ...
    cancel_latency_p95_seconds: float = 600.0  # ... updated from the store's cancels
    small_run_requests: int = 20  # runs at most this big go straight to real time
    small_run_usd: float = 0.01  # ... or costing at most this at standard prices
    max_attempts: int = 5  # per request, across both paths
    request_timeout: float = 120.0  # seconds, standard tier
    flex_timeout: float = 900.0  # seconds, flex tier (OpenAI advises 15 minutes)
    concurrency: int = 64  # real-time calls in flight per model
    batch_turnaround_median_seconds: float = 3600.0  # prior for a batch's turnaround ...
    batch_turnaround_p95_seconds: float = 43200.0  # ... updated from finished batches
    batch_api_rpm: int = 300  # Files/Batches API calls per minute (polls, uploads, lists)
    poll_min_seconds: float = 5.0
    poll_max_seconds: float = 300.0
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_sources = [
            TomlConfigSettingsSource(settings_cls, toml_file=path)
            for path in config_files()
            if path.is_file()
        ]
        return (init_settings, env_settings, *toml_sources)

    def db_path(self) -> Path:
        return self.db or default_db_path()

    def model_table(self) -> dict[str, ModelInfo]:
        return model_table(self.models)


def load_settings(**explicit: Any) -> Settings:
    """Settings with explicit (non-None) arguments on top of everything else."""
    given = {key: value for key, value in explicit.items() if value is not None}
    try:
        return Settings(**given)
    except ValueError as exc:
        raise ConfigError(f"The configuration is invalid: {exc}") from exc
