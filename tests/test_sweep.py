"""Tuning sweeps: grid and random search, choosing on validation, local and Dask runners."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest

from jamrec.operations import sweep


def test_configurations_grid_and_seeded_random_subset():
    grid = {"b": [1, 2], "a": ["x", "y", "z"]}
    full = sweep.configurations(grid)
    assert len(full) == 6 and full[0] == {"a": "x", "b": 1}
    picked = sweep.configurations(grid, n_random=3, seed=4)
    assert len(picked) == 3 and all(p in full for p in picked)
    assert picked == sweep.configurations(grid, n_random=3, seed=4)
    assert sweep.configurations(grid, n_random=10) == full


def test_choose_by_validation_only():
    trials = [
        sweep.Trial({"f": 1}, 0.1, 1.0),
        sweep.Trial({"f": 2}, 0.3, 1.0),
        sweep.Trial({"f": 3}, 0.3, 1.0),
    ]
    assert sweep.choose(trials).config == {"f": 2}


@pytest.fixture
def warehouse(tiny_warehouse, tmp_path):
    path = tmp_path / "jamrec.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    return path


def _sweeps(path):
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute(
        "select config, val_ndcg_at_10, chosen, run_id from sweeps order by config"
    ).fetchall()
    metrics = con.execute(
        "select count(*) from metrics m join sweeps s using (run_id) where m.split = 'test'"
    ).fetchone()[0]
    con.close()
    return [(json.loads(c), v, ch, r) for c, v, ch, r in rows], metrics


@pytest.mark.slow
def test_sweep_flow_local_and_dask_agree(prefect_harness, warehouse, tmp_path):
    from distributed import LocalCluster

    from flows.sweep import sweep_flow

    grid = {"factors": [2, 16], "iterations": [3]}
    local = sweep_flow(model="als", grid=grid, warehouse=warehouse, user_sample=500)
    rows, test_metrics = _sweeps(warehouse)
    assert len(rows) == 2 and sum(ch for *_, ch, _ in rows) == 1
    best = max(rows, key=lambda r: r[1])
    assert best[2] and best[3] == local["run_id"] and best[0] == local["chosen"]
    assert test_metrics > 0  # test reported for the chosen settings only

    other = tmp_path / "dask.duckdb"
    shutil.copyfile(warehouse.parent / "jamrec.duckdb", other)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", processes=True
    ) as cluster:
        remote = sweep_flow(
            model="als",
            grid=grid,
            warehouse=other,
            user_sample=500,
            runner="dask",
            dask_address=cluster.scheduler_address,
        )
    assert remote["chosen"] == local["chosen"]
    assert remote["val_ndcg_at_10"] == pytest.approx(local["val_ndcg_at_10"])


@pytest.mark.slow
def test_jamrec_sweep_and_python_m_flows_sweep(warehouse, capsys):
    import subprocess
    import sys

    from jamrec.cli import main

    grid = {"factors": [2, 16], "iterations": [3]}
    args = ["sweep", "--model", "als", "--grid", json.dumps(grid), "--user-sample", "500"]
    assert main([*args, "--warehouse", str(warehouse)]) == 0
    out = capsys.readouterr().out
    rows, test_metrics = _sweeps(warehouse)
    assert len(rows) == 2 and test_metrics > 0
    (chosen,) = [r for r in rows if r[2]]
    assert f"tested and recorded as run {chosen[3]}" in out and "* val NDCG@10" in out
    assert main(["sweep", "--model", "popularity", "--warehouse", str(warehouse)]) == 1
    assert "no default grid for 'popularity'" in capsys.readouterr().err
    helped = subprocess.run(
        [sys.executable, "-m", "flows.sweep", "--help"], capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0 and "--n-random" in helped.stdout
