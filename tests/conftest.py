"""Shared fixtures: isolated settings, hand-written dumps, a tiny generated warehouse."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jamrec.config import get_settings
from tests.helpers import write_dump


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Every test gets its own default warehouse path; settings are re-read."""
    monkeypatch.setenv("JAMREC_WAREHOUSE", str(tmp_path_factory.mktemp("wh") / "jamrec.duckdb"))
    monkeypatch.setenv("JAMREC_LOCK_TIMEOUT_S", "5")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def dump(tmp_path):
    """A small valid hand-made dump: (timj folder, tracks.csv)."""
    return write_dump(tmp_path / "dump")


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.gpu`` tests run only where torch sees a CUDA device."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch sees none)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


def pytest_configure(config):
    # Prefect: never phone home, and give its temporary server time on slow machines.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")


@pytest.fixture(scope="session")
def tiny_dump(tmp_path_factory) -> Path:
    """A tiny generated dump (seed 0) with all five Spotify variants."""
    from jamrec.build.spotify import VARIANTS
    from jamrec.generate import generate

    out = tmp_path_factory.mktemp("tiny") / "dump"
    generate(out, scale="tiny", seed=0, spotify_variants=[v.name for v in VARIANTS])
    return out


@pytest.fixture(scope="session")
def tiny_warehouse(tiny_dump, tmp_path_factory) -> Path:
    """A warehouse built from :func:`tiny_dump` (read it, never write it)."""
    from jamrec.build.pipeline import run_build

    path = tmp_path_factory.mktemp("tiny_wh") / "jamrec.duckdb"
    run_build(tiny_dump, tiny_dump / "tracks.csv", path)
    return path


@pytest.fixture(scope="session")
def small_warehouse(tmp_path_factory) -> Path:
    """A warehouse built from a `small` generated dump (the demo's size); read-only use."""
    from jamrec.build.pipeline import run_build
    from jamrec.generate import generate

    root = tmp_path_factory.mktemp("small")
    generate(root / "dump", scale="small", seed=0)
    path = root / "wh" / "jamrec.duckdb"
    run_build(root / "dump", root / "dump" / "tracks.csv", path)
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server for flow tests (one per test session)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
