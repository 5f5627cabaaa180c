"""Configuration: one settings model, resolved in one place, and the shipped model table.

Owns precedence (explicit argument > environment > `batchyard.toml` in the current
directory, then in the user config directory > defaults). The model table itself
(`batchyard/data/models.toml`, each value overridable under `[models."<name>"]`) lives in
`batchyard.catalog`; `model_table` here merges the configured overrides into it.
Secrets are `SecretStr` and never printed. No network, no SQL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from batchyard.catalog import Catalog, ModelInfo, load_catalog, shipped_date
from batchyard.errors import ConfigError

__all__ = [
    "APP_NAME",
    "DB_ENV",
    "ModelInfo",
    "Settings",
    "config_files",
    "default_db_path",
    "load_settings",
    "model_table",
    "prices_date",
]

APP_NAME = "batchyard"
DB_ENV = "BATCHYARD_DB"


def prices_date() -> str:
    """The date of the shipped model table (its newest source)."""
    return shipped_date()


def model_table(overrides: dict[str, dict[str, Any]] | None = None) -> Catalog:
    """The shipped table with per-model overrides merged in (new models allowed); lookups
    on it resolve dated snapshots and fine-tuned names (see `batchyard.catalog`)."""
    return load_catalog(overrides)


def default_db_path() -> Path:
    """The job database when none is given: `$BATCHYARD_DB` if set, else batchyard.db in
    the user's data directory. The one definition: the store and the settings use it."""
    env = os.environ.get(DB_ENV)
    if env:
        return Path(env).expanduser()
    return platformdirs.user_data_path(APP_NAME, appauthor=False) / "batchyard.db"


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
    # Webhooks: the receiver verifies OpenAI's deliveries with this (`whsec_...`) ...
    webhook_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_WEBHOOK_SECRET", "BATCHYARD_WEBHOOK_SECRET"),
    )
    # ... and `--notify URL` signs its call with this one (Standard Webhooks, `whsec_...`)
    notify_secret: SecretStr | None = None
    db: Path | None = None  # None: default_db_path()
    deadline: str | None = None  # default deadline for submit, e.g. "24h"
    margin_seconds: float = 60.0  # floor kept free before the deadline (see README: routing)
    realtime_spread: float = 0.05  # real time may run this share slower than its limits say
    cancel_quantile: float = 0.95  # cancel latency allowed for where batch progress counts
    batch_setup_seconds: float = 60.0  # upload, create and validation of a new shard
    cancel_latency_median_seconds: float = 60.0  # prior for how long a cancel takes ...
    cancel_latency_p95_seconds: float = 600.0  # ... updated from the store's cancels
    small_run_requests: int = 20  # runs at most this big go straight to real time
    small_run_usd: float = 0.01  # ... or costing at most this at standard prices
    resubmit_min_lines: int = Field(default=100, ge=1)  # a shard of batch lines sent again
    max_attempts: int = 8  # per request, across both paths: sends that met a fault (not 429s)
    request_timeout: float = 120.0  # seconds, standard tier
    flex_timeout: float = 900.0  # seconds, flex tier (OpenAI advises 15 minutes)
    concurrency: int = 64  # real-time calls in flight per model
    batch_turnaround_median_seconds: float = 3600.0  # prior for a batch's turnaround ...
    batch_turnaround_p95_seconds: float = 43200.0  # ... updated from finished batches
    batch_api_rpm: int = 300  # Files/Batches API calls per minute (polls, uploads, lists)
    batch_creates_per_hour: int = 2000  # OpenAI's batch creations per hour per organisation
    poll_min_seconds: float = 5.0
    poll_max_seconds: float = 300.0
    # Checks on answers (`batchyard.checks`): which run, and how often a line that fails
    # one is sent again before it ends `invalid`.
    checks: list[str] = Field(default_factory=lambda: ["finish", "refusal", "json", "schema"])
    check_requeues: int = Field(default=2, ge=0)
    length_raise: bool = True  # re-send a cut-off answer with a larger token cap
    reuse: bool = True  # answer identical requests from the store (`--no-reuse`)
    # Processes that check a large request file (32 MB or more) at once, one part each;
    # 0: one per core (at most 8); 1: in the command's own process.
    workers: int = Field(default=0, ge=0)
    budget: float | None = Field(default=None, gt=0)  # USD, default for submit
    budget_warn_share: float = Field(default=0.8, gt=0, le=1)  # warn at this share spent
    # Fallback models (`[fallback]` in batchyard.toml, `--fallback`): a line whose model the
    # API refuses, or whose breaker stays open past the escalation point, is sent to the
    # model named for its own ("gpt-4o" = "gpt-4o-mini"; "*" for any model). Empty: none.
    fallback: dict[str, str] = Field(default_factory=dict)
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

    def model_table(self) -> Catalog:
        return model_table(self.models)


def load_settings(**explicit: Any) -> Settings:
    """Settings with explicit (non-None) arguments on top of everything else."""
    given = {key: value for key, value in explicit.items() if value is not None}
    try:
        return Settings(**given)
    except ValueError as exc:
        raise ConfigError(f"The configuration is invalid: {exc}") from exc
