"""Typed settings, declared once and read lazily from ``JAMREC_*`` environment variables.

Nothing here is evaluated at import time: call :func:`get_settings` where a value is
needed, so tests and flows can point jamrec somewhere else by setting the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Where jamrec reads and writes, and how long it waits for others."""

    model_config = SettingsConfigDict(env_prefix="JAMREC_", extra="ignore")

    warehouse: Path = Field(
        Path("warehouse/jamrec.duckdb"),
        description="The published DuckDB file; reports and models live beside it.",
    )
    sql_dir: Path = Field(PROJECT_ROOT / "sql", description="The SQL transforms, one table a file.")
    lock_timeout_s: float = Field(
        60.0, description="How long a writer waits for the warehouse before giving up."
    )
    duckdb_threads: int | None = Field(None, description="DuckDB threads; None = all cores.")
    duckdb_memory_limit: str | None = Field(
        None, description="e.g. '6GB'; None = DuckDB's default."
    )
    quality_runs_kept: int = Field(
        20, ge=1, description="Validation runs kept in the data-quality pages (newest first)."
    )

    @property
    def reports_dir(self) -> Path:
        """Data Docs and the model report: ``warehouse/reports/`` beside the file."""
        return self.warehouse.parent / "reports"

    @property
    def models_dir(self) -> Path:
        """Saved models: ``warehouse/models/<run_id>/`` beside the file."""
        return self.warehouse.parent / "models"


class BuildParams(BaseModel):
    """Parameters of one warehouse build; stored in ``builds.parameters``."""

    seed: int = Field(0, description="Seeds negative sampling and the splits.")
    n_negatives: int = Field(
        10, ge=0, description="At most this many negatives per user (study: 10)."
    )
    k_test: int = Field(
        1, ge=0, description="Positives held out per user for test (leave-one-out)."
    )
    k_val: int = Field(1, ge=0, description="Positives held out per user for validation.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
