"""``jamrec study``: the original study's experiments on the tiny generated dump, with small
budgets (the defaults are the study's; docs/protocols.md, "The study's experiments").

One invocation of every experiment is shared by the tests that read its rows; the trainer's
positives-only mode and step hook, the unknown-experiment error and the migration are
tested on their own.
"""

from __future__ import annotations

import json
import math
import shutil

import duckdb
import numpy as np
import pytest

from jamrec.cli import main
from jamrec.errors import JamrecError
from jamrec.operations import study
from jamrec.warehouse import history

# Small budgets for tiny: a few epochs and steps (the study's own: each model's epochs,
# 50 and 100 optimiser steps).
BUDGET = [
    *("--epochs", "negatives=2", "--epochs", "audio_ablation=2", "--epochs", "als_curves=3"),
    *("--steps", "batch_size=4", "--steps", "learning_rate=3"),
]
STEPS = {"batch_size": 4, "learning_rate": 3}


@pytest.fixture(scope="module")
def studied(tiny_warehouse, tmp_path_factory):
    """A copy of the tiny warehouse after ``jamrec study`` (every experiment), and what it
    printed: ``(path, stdout)``."""
    import contextlib
    import io

    path = tmp_path_factory.mktemp("study") / "jamrec.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["study", "--warehouse", str(path), "--probe-users", "200", *BUDGET]) == 0
    return path, out.getvalue()


def _rows(path, sql: str, params: dict | None = None) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params or {}).fetchall()
    finally:
        con.close()


def test_every_experiment_writes_its_rows(studied):
    path, printed = studied
    found = dict(_rows(path, "select experiment, count(*) from study_results group by all"))
    assert list(study.EXPERIMENTS) == [
        "negatives",
        "batch_size",
        "learning_rate",
        "als_curves",
        "audio_ablation",
        "per_user",
    ]
    assert set(found) == set(study.EXPERIMENTS) and all(found.values())
    (ids,) = _rows(
        path, "select count(distinct study_id), count(distinct build_id) from study_results"
    )
    assert ids == (1, 1)
    # what it printed: a table per experiment, and the query that shows every row
    for name in study.EXPERIMENTS:
        assert f"\n{name} (" in "\n" + printed
    assert 'jamrec sql "select experiment, variant' in printed
    (study_id,) = _rows(path, "select distinct study_id from study_results")[0]
    assert f"where study_id = '{study_id}'" in printed


def test_metric_values_are_rates_and_differences_have_intervals(studied):
    path, _ = studied
    rows = _rows(
        path,
        "select experiment, metric, value, ci_low, ci_high, n_users, settings from study_results",
    )
    for experiment, metric, value, low, high, n_users, settings in rows:
        assert isinstance(json.loads(settings), dict)
        if metric == "loss":
            assert value >= 0 and n_users is None
        elif metric.endswith("_diff_p"):
            assert 0 <= value <= 1, (experiment, metric, value)
        elif metric.endswith("_diff"):
            assert -1 <= low <= value <= high <= 1, (experiment, metric, value)
        else:
            assert metric in ("hr", "ndcg", "mrr"), metric
            assert 0 <= value <= 1, (experiment, metric, value)
            assert n_users > 0
            if low is not None:
                assert 0 <= low <= value <= high <= 1


def test_curves_have_one_row_per_step_and_variant(studied):
    path, _ = studied
    for experiment, grid in study.STUDY_GRIDS.items():
        got = _rows(
            path,
            "select variant, metric, list(step order by step) from study_results "
            "where experiment = $e group by all order by all",
            {"e": experiment},
        )
        steps = list(range(1, STEPS[experiment] + 1))
        variants = sorted(f"{grid.setting}={v:g}" for v in grid.values)
        assert [(v, m) for v, m, _ in got] == [(v, m) for v in variants for m in ("loss", "ndcg")]
        assert all(s == steps for _, _, s in got)
        # the same probe users at every step and variant
        (n,) = _rows(
            path,
            "select distinct n_users from study_results where experiment = $e and metric = 'ndcg'",
            {"e": experiment},
        )
        assert n == (min(200, _val_users(path)),)
    als = _rows(
        path,
        "select metric, k, count(*), min(step), max(step) from study_results "
        "where experiment = 'als_curves' group by all order by all",
    )
    expected = [("hr", k) for k in (5, 10, 20)] + [("loss", None), ("mrr", None)]
    expected += [("ndcg", k) for k in (5, 10, 20)]
    assert [(m, k) for m, k, *_ in als] == sorted(expected, key=lambda x: (x[0], x[1] or 0))
    assert all(tuple(r[2:]) == (3, 1, 3) for r in als)  # 3 iterations, every one


def _val_users(path) -> int:
    (n,) = _rows(path, "select count(distinct user_id) from splits where split = 'val'")[0]
    return n


def test_variants_are_recorded_runs_never_champions(studied):
    path, _ = studied
    runs = _rows(
        path,
        "select r.model, r.purpose, r.status, r.is_champion, r.config->>'positives_only', "
        "r.config->>'use_audio' from model_runs r "
        "where r.run_id in (select run_id from study_results) order by all",
    )
    # negatives: 2 MBCF; audio: 4 warm (hybrid, two_tower x audio on/off), 3 cold (the
    # hybrid without audio sees ids only: skipped on cold tracks)
    assert len(runs) == 2 + 4 + 3
    assert {(p, s, c) for _, p, s, c, _, _ in runs} == {("study", "evaluated", False)}
    assert sorted(r[4] for r in runs if r[0] == "mbcf") == ["false", "true"]
    assert _rows(path, "select count(*) from promotions") == [(0,)]
    cold = _rows(
        path,
        "select model, variant from study_results where split = 'cold' "
        "and metric = 'ndcg' group by all order by all",
    )
    assert cold == [("hybrid", "audio"), ("two_tower", "audio"), ("two_tower", "no_audio")]
    # the dump's planted audio share is on the ablation's rows
    shares = _rows(
        path,
        "select distinct settings->>'audio_share' from study_results "
        "where experiment = 'audio_ablation'",
    )
    assert shares == [("0.3",)]
    # the ablation compares final metrics only: its runs train without the per-epoch probe
    # (the curve keeps the loss), the other experiments' runs keep their curves
    probed = dict(
        _rows(
            path,
            "select c.run_id in (select run_id from study_results "
            "where experiment = 'audio_ablation'), count(c.val_ndcg_at_10) "
            "from training_curves c join model_runs r using (run_id) "
            "where r.purpose = 'study' and r.model in ('hybrid', 'two_tower', 'mbcf') group by all",
        )
    )
    assert probed[True] == 0 and probed[False] > 0


def test_paired_differences_sit_beside_their_variants(studied):
    path, _ = studied
    diffs = _rows(
        path,
        "select experiment, variant, protocol, split, metric from study_results "
        "where metric like '%diff%' group by all order by all",
    )
    negatives = [d for d in diffs if d[0] == "negatives"]
    assert {d[1] for d in negatives} == {"positives_only - published_negatives"}
    assert {(d[2], d[3]) for d in negatives} == {
        (p, s) for p in ("full_sample", "sampled_100") for s in ("test", "val")
    }
    assert {d[4] for d in diffs} == {"hr_diff", "hr_diff_p", "ndcg_diff", "ndcg_diff_p"}
    per_user = _rows(
        path,
        "select variant, model, n_users from study_results where experiment = 'per_user' "
        "and metric = 'hr' order by all",
    )
    assert per_user == [("logistic", "per_user_logistic", 100), ("popularity", "popularity", 100)]
    # the positives-only difference is the two variants' difference on the same users
    (a, b, d) = _rows(
        path,
        "select max(value) filter (variant = 'positives_only'), "
        "max(value) filter (variant = 'published_negatives'), "
        "max(value) filter (metric = 'ndcg_diff') from study_results "
        "where experiment = 'negatives' and protocol = 'full_sample' and split = 'test' "
        "and metric in ('ndcg', 'ndcg_diff')",
    )[0]
    assert math.isclose(a - b, d, abs_tol=1e-9)


def test_positives_only_mbcf_trains_without_a_negative(tiny_warehouse, monkeypatch):
    from jamrec.models import create
    from jamrec.models.base import TrainData
    from jamrec.models.dataset import open_dataset
    from jamrec.models.torch import trainer

    data = open_dataset(tiny_warehouse)
    seen: list[np.ndarray] = []
    original = trainer.epoch_samples

    def recorded(*args, **kwargs):
        users, items, labels = original(*args, **kwargs)
        seen.append(labels.numpy())
        return users, items, labels

    monkeypatch.setattr(trainer, "epoch_samples", recorded)
    create("mbcf", epochs=2, positives_only=True).fit(TrainData.from_dataset(data))
    assert len(seen) == 2
    assert all((labels == 1).all() and len(labels) == data.train.nnz for labels in seen)
    seen.clear()
    create("mbcf", epochs=1).fit(TrainData.from_dataset(data))  # the default has negatives
    assert (seen[0] == 0).sum() == data.negatives.nnz and (seen[0] == 1).sum() == data.train.nnz


def test_the_normal_training_path_is_unchanged(tiny_warehouse):
    import torch

    from jamrec.models import create
    from jamrec.models.base import TrainData
    from jamrec.models.dataset import open_dataset
    from jamrec.models.torch.trainer import TrainConfig, epoch_samples

    data = open_dataset(tiny_warehouse)
    assert TrainConfig().positives_only is False
    train_data = TrainData.from_dataset(data)
    for a, b in zip(epoch_samples(train_data, 0, 3, 1), epoch_samples(train_data, 0, 3, 1, False)):
        assert torch.equal(a, b)
    plain = create("mbcf", epochs=2, batch_size=1024).fit(TrainData.from_dataset(data))
    steps: list[int] = []

    def on_batch(step: int, loss: float) -> bool:
        plain_model.score(np.arange(5))  # a probe in the middle of training
        steps.append(step)
        return False

    plain_model = create("mbcf", epochs=2, batch_size=1024)
    hooked = plain_model.fit(TrainData.from_dataset(data, on_batch=on_batch))
    for (name, x), (_, y) in zip(
        plain.module.state_dict().items(), hooked.module.state_dict().items()
    ):
        assert torch.equal(x, y), name  # the hook watches, it does not change training
    per_epoch = math.ceil((data.train.nnz + data.negatives.nnz) / 1024)
    assert steps == list(range(1, 2 * per_epoch + 1))
    stopped = create("mbcf", epochs=5, batch_size=1024)
    stopped.fit(TrainData.from_dataset(data, on_batch=lambda step, loss: step >= 3))
    assert stopped.stats["samples"] == 3 * 1024


def test_an_unknown_experiment_is_one_clear_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["study", "--experiments", "negatives,nope", "--warehouse", str(tmp_path / "w")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"unknown experiment(s) 'nope'; known: {', '.join(study.EXPERIMENTS)}" in err
    assert "Traceback" not in err
    with pytest.raises(JamrecError, match="known: negatives, batch_size"):
        study.run_study(tmp_path / "w", ["per_users"])
    with pytest.raises(JamrecError, match="only negatives, als_curves, audio_ablation take"):
        study.run_study(tmp_path / "w", epochs={"per_user": 3})
    assert main(["study", "--epochs", "negatives", "--warehouse", str(tmp_path / "w")]) == 2
    assert "expected EXPERIMENT=N" in capsys.readouterr().err


def test_the_help_names_every_experiment_in_order(capsys):
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    assert ", ".join(study.EXPERIMENTS) in " ".join(capsys.readouterr().out.split())


def test_per_user_logistic_regression_learns_the_informative_feature():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 1] + 0.3 * rng.normal(size=200) > 0).astype(float)
    w, b = study.fit_logistic(x, y)
    assert w[1] > 1 and abs(w[0]) < 0.5 and abs(w[2]) < 0.5
    again = study.fit_logistic(x, y)
    assert np.array_equal(w, again[0]) and b == again[1]  # deterministic


def test_migration_7_adds_study_results_to_an_older_warehouse(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        history.migrate(con)
        con.execute("drop table study_results")
        con.execute("delete from schema_migrations where version = 7")
        assert not history.is_current(con)
        assert history.migrate(con) == [7] and history.migrate(con) == []
        columns = con.execute(
            "select column_name, comment from duckdb_columns() "
            "where database_name = current_database() and table_name = 'study_results'"
        ).fetchall()
        assert [c for c, _ in columns] == history.STUDY_RESULTS.column_names()
        assert all(comment for _, comment in columns)
        purpose = con.execute(
            "select comment from duckdb_columns() where table_name = 'model_runs' "
            "and column_name = 'purpose'"
        ).fetchone()
        assert "'study'" in purpose[0]
        next(m for m in history.MIGRATIONS if m.version == 7).apply(con)  # idempotent
        assert history.CURRENT == 7
    finally:
        con.close()


def test_a_whole_study_of_the_published_build_is_found_a_partial_one_is_not(
    studied, tiny_warehouse, tmp_path
):
    path, _ = studied
    (study_id,) = _rows(path, "select distinct study_id from study_results")[0]
    assert study.study_on_published_build(path) == study_id  # what make demo skips
    partial = tmp_path / "partial.duckdb"
    shutil.copyfile(tiny_warehouse, partial)
    assert study.study_on_published_build(partial) is None
    study.run_study(partial, ["per_user"], per_user_users=20)
    assert study.study_on_published_build(partial) is None
