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
    evaluation_seed: int = Field(
        0,
        description="Seeds the evaluation's user sample, sampled-100 negatives and bootstrap "
        "(never a model's training seed): runs compared must share it.",
    )
    keep_versions: int = Field(
        2,
        ge=0,
        description="Published warehouse files kept under warehouse/.versions/ for "
        "`jamrec rollback` (each build keeps the one it replaced).",
    )
    keep_validations: int = Field(
        10, ge=1, description="Validation result files kept under reports/validations/."
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
    temporal_cut: str | None = Field(
        None,
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="The temporal protocol's time cut (YYYY-MM-DD): positives dated before "
        "it train, on or after it test. None: the date that leaves the last temporal_share "
        "of jams on or after it.",
    )
    temporal_share: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="Share of jams after the default time cut (when temporal_cut is None).",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
