"""Comparisons a team can act on: evaluation randomness of its own, per-user results, and
the paired statistics (checked against scipy.stats on fixed arrays)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from jamrec.evaluation import metrics, protocols
from jamrec.evaluation.protocols import evaluate
from jamrec.evaluation.significance import (
    bootstrap_intervals,
    compare_paired,
    holm,
    paired_interval,
    permutation_p,
    wilcoxon_p,
)
from jamrec.models.base import TrainData
from jamrec.models.baselines import Popularity, Random
from jamrec.operations import runs
from jamrec.operations.runs import USER_METRIC_COLUMNS
from tests.test_evaluate import make_dataset


@pytest.fixture(scope="module")
def data():
    return make_dataset(n_users=400, n_tracks=150, seed=3)


def _spy(monkeypatch) -> dict[str, list]:
    """Record every sampled-100 candidate draw and every bootstrap's seed and size."""
    seen: dict[str, list] = {"negatives": [], "bootstrap": []}
    draw, boot = protocols.sample_negatives, protocols.bootstrap_ci

    def negatives(positives, users, n, seed):
        out = draw(positives, users, n, seed)
        seen["negatives"].append((users.copy(), out.copy()))
        return out

    def bootstrap(values, n_boot=1000, seed=0, alpha=0.05):
        # The resamples are a function of the seed and the number of users: record both,
        # and the first resample itself.
        first = np.random.default_rng(seed).integers(0, len(values), size=len(values))
        seen["bootstrap"].append((list(seed), len(values), first))
        return boot(values, n_boot=n_boot, seed=seed, alpha=alpha)

    monkeypatch.setattr(protocols, "sample_negatives", negatives)
    monkeypatch.setattr(protocols, "bootstrap_ci", bootstrap)
    return seen


def _evaluate_run(model_seed: int, data, evaluation_seed: int, monkeypatch, memo=False):
    """A Random model trained with ``model_seed``, evaluated like ``jamrec train`` does;
    the sampled lists drawn afresh unless ``memo`` (what an earlier model kept)."""
    if not memo:
        data.memo.clear()
    seen = _spy(monkeypatch)
    run = runs.TrainedRun("r", Random(Random.Config(seed=model_seed)), "b", model_seed, None)
    run.model.fit(TrainData.from_dataset(data))
    settings = protocols.EvaluationSettings(evaluation_seed, user_sample=60, n_boot=50)
    result = protocols.evaluate(
        run.model,
        data,
        seed=settings.seed,
        user_sample=60,
        n_boot=settings.n_boot,
        full_splits=("val", "test"),
    )
    monkeypatch.undo()
    return result, seen


def test_two_training_seeds_get_the_same_users_negatives_and_resamples(data, monkeypatch):
    first, seen_first = _evaluate_run(0, data, evaluation_seed=7, monkeypatch=monkeypatch)
    second, seen_second = _evaluate_run(1, data, evaluation_seed=7, monkeypatch=monkeypatch)
    # The models differ (different training seeds) ...
    assert first.rows != second.rows
    # ... but they were measured on the same users, negatives and resamples.
    users = {(b.protocol, b.split): b.users for b in first.per_user}
    assert set(users) == {(b.protocol, b.split) for b in second.per_user}
    for block in second.per_user:
        np.testing.assert_array_equal(block.users, users[(block.protocol, block.split)])
    assert len(seen_first["negatives"]) == len(seen_second["negatives"]) > 0
    for (u1, n1), (u2, n2) in zip(seen_first["negatives"], seen_second["negatives"]):
        np.testing.assert_array_equal(u1, u2)
        np.testing.assert_array_equal(n1, n2)
    assert len(seen_first["bootstrap"]) == len(seen_second["bootstrap"]) == 6
    for (s1, n1, f1), (s2, n2, f2) in zip(seen_first["bootstrap"], seen_second["bootstrap"]):
        assert s1 == s2 and n1 == n2
        np.testing.assert_array_equal(f1, f2)
    # Another evaluation seed draws another sample, other negatives, other resamples.
    other, seen_other = _evaluate_run(0, data, evaluation_seed=8, monkeypatch=monkeypatch)
    sample = {b.protocol: b.users for b in other.per_user if b.split == "test"}
    first_sample = {b.protocol: b.users for b in first.per_user if b.split == "test"}
    assert not np.array_equal(sample["full_sample"], first_sample["full_sample"])
    np.testing.assert_array_equal(sample["full"], first_sample["full"])
    assert not np.array_equal(seen_other["negatives"][0][1], seen_first["negatives"][0][1])
    assert seen_other["bootstrap"][0][0] != seen_first["bootstrap"][0][0]
    # A later model on the same Dataset reads the lists the first one drew: no new draw,
    # the same results as drawing them again.
    kept, seen_kept = _evaluate_run(0, data, evaluation_seed=8, monkeypatch=monkeypatch, memo=True)
    assert seen_kept["negatives"] == [] and kept.rows == other.rows


def test_the_training_seed_never_reaches_the_evaluation(data):
    settings = protocols.EvaluationSettings(seed=5, user_sample=50, n_boot=30)
    results = []
    for seed in (0, 1, 2):
        run = runs.train("popularity", data, seed=seed, evaluation=settings)
        assert run.seed == seed
        results.append(runs.evaluate(run, data, settings))
    # Popularity does not depend on its seed: identical results whatever the training seed.
    assert results[0].rows == results[1].rows == results[2].rows
    assert all(r.settings == settings for r in results)


def test_per_user_results_average_to_the_metrics_rows(data):
    model = Popularity().fit(TrainData.from_dataset(data))
    result = evaluate(model, data, user_sample=80, n_boot=20, full_splits=("val", "test"))
    assert {(b.protocol, b.split) for b in result.per_user} == {
        (p, s) for p in ("full", "full_sample", "sampled_100") for s in ("val", "test")
    }
    table = runs.user_metrics_table("run", result.per_user).to_pydict()
    for row in result.rows:
        mine = [
            i
            for i, (p, s) in enumerate(zip(table["protocol"], table["split"]))
            if (p, s) == (row.protocol, row.split)
        ]
        column = next(c for c, key in USER_METRIC_COLUMNS.items() if key == (row.metric, row.k))
        values = np.array(table[column])[mine]
        assert len(values) == row.n_users
        assert abs(values.mean() - row.value) <= 1e-12
    for block in result.per_user:
        rr = block.metrics.values[:, -1]
        if block.protocol != "sampled_100":  # one list per user: rr is 1 / the best rank
            np.testing.assert_allclose(rr, 1.0 / block.best_rank)
        assert (block.best_rank >= 1).all() and (block.n_relevant >= 1).all()
        assert len(set(block.user_ids)) == len(block.user_ids)


# Fixed arrays: the per-user NDCG@10 of two models over 14 users (half of them tied).
A = np.array([0.0, 0.5, 1.0, 0.0, 0.63, 0.0, 0.43, 1.0, 0.0, 0.0, 0.39, 0.5, 0.0, 0.33])
B = np.array([0.0, 0.0, 1.0, 0.0, 0.5, 0.0, 0.0, 0.63, 0.0, 0.33, 0.0, 0.5, 0.0, 0.0])


def _mean_difference(x, y, axis):
    return np.mean(x - y, axis=axis)


def test_permutation_test_equals_scipys_exact_and_monte_carlo():
    exact = scipy.stats.permutation_test(
        (A, B), _mean_difference, permutation_type="samples", vectorized=True, n_resamples=10**6
    )
    assert permutation_p(A - B, n_permutations=10**6) == pytest.approx(exact.pvalue, abs=1e-12)
    rng = np.random.default_rng(0)
    x = rng.random(200)
    y = np.clip(x + rng.normal(0.04, 0.2, 200), 0, 1)
    reference = scipy.stats.permutation_test(
        (x, y), _mean_difference, permutation_type="samples", vectorized=True, n_resamples=10**5,
        rng=1,
    )  # fmt: skip
    ours = permutation_p(x - y, n_permutations=20_000, seed=[1, 2])
    assert ours == pytest.approx(reference.pvalue, abs=0.01)  # two Monte Carlo estimates
    assert 0.001 < ours < 0.5
    assert permutation_p(np.zeros(10)) == 1.0
    assert np.isnan(permutation_p(np.zeros(0)))


def test_wilcoxon_equals_scipys():
    assert wilcoxon_p(A - B) == pytest.approx(scipy.stats.wilcoxon(A, B).pvalue, abs=1e-12)
    rng = np.random.default_rng(5)
    x, y = rng.random(300), rng.random(300)
    assert wilcoxon_p(x - y) == pytest.approx(scipy.stats.wilcoxon(x, y).pvalue, abs=1e-12)
    assert wilcoxon_p(np.zeros(5)) == 1.0


def test_holm_on_fixed_arrays():
    # Holm (1979): sorted p_(i) -> max over j <= i of min(1, (m - j + 1) p_(j)).
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.2, 0.9]), [1.0, 0.6, 1.0])
    np.testing.assert_allclose(holm([0.02, np.nan, 0.04]), [0.04, np.nan, 0.04])
    # Against a direct step-down implementation, and as a family-wise bound: every
    # adjusted value is at least the raw one, at most m times it (Bonferroni).
    rng = np.random.default_rng(9)
    for _ in range(20):
        raw = rng.random(rng.integers(1, 12)) ** 3
        order = np.argsort(raw)
        step = np.empty(len(raw))
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (len(raw) - rank) * raw[i]))
            step[i] = running
        np.testing.assert_allclose(holm(raw), step)
        assert (holm(raw) >= raw).all() and (holm(raw) <= np.minimum(1, len(raw) * raw)).all()


def test_paired_interval_resamples_users_like_the_metrics_intervals():
    d = A - B
    low, high = paired_interval(d, n_boot=500, seed=[0, 1, 2])
    want = metrics.bootstrap_ci(d, n_boot=500, seed=[0, 1, 2])
    assert (low, high) == (float(want[0][0]), float(want[1][0]))
    result = compare_paired(A, B, n_boot=500, n_permutations=10**6, seed=[0, 1, 2])
    assert result.n_users == 14 and result.difference == pytest.approx(d.mean())
    assert result.ci_low <= result.difference <= result.ci_high
    assert result.mean_a - result.mean_b == pytest.approx(result.difference)
    with pytest.raises(ValueError, match="differ in length"):
        compare_paired(A, B[:-1])


def test_intervals_bootstrapped_together_equal_each_bootstrapped_alone():
    """Several vectors in one bootstrap (a comparison's pairs and models): each gets the
    interval it gets alone, vectors of other lengths included."""
    rng = np.random.default_rng(5)
    vectors = [rng.random(3000), rng.random(3000) - 0.5, rng.random(40), np.zeros(3000), []]
    together = bootstrap_intervals(vectors, n_boot=300, seed=[1, 2])
    alone = [paired_interval(np.asarray(v, float), n_boot=300, seed=[1, 2]) for v in vectors]
    np.testing.assert_allclose(together[:4], alone[:4], rtol=1e-12, atol=1e-15)
    assert np.isnan(together[4]).all() and np.isnan(alone[4]).all()


def test_migration_2_brings_a_version_1_warehouse_to_paired_results(tiny_warehouse, tmp_path):
    """A warehouse written before per-user results gains user_metrics, comparisons and the
    new columns (empty for old rows); applying the step again changes nothing."""
    import shutil

    import duckdb

    from jamrec.warehouse import history
    from jamrec.warehouse.store import Warehouse

    path = tmp_path / "v1.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    con = duckdb.connect(str(path))
    try:
        con.execute("drop table user_metrics")
        con.execute("drop table comparisons")
        for table, columns in (
            ("metrics", history.EVALUATION_COLUMNS),
            ("model_runs", history.EVALUATION_COLUMNS),
            ("promotions", history.PROMOTION_PAIRED),
        ):
            for column in columns:
                con.execute(f"alter table {table} drop column {column.name}")
        con.execute("delete from schema_migrations where version >= 2")
    finally:
        con.close()
    con = Warehouse(path).connect_readonly()
    try:
        assert history.version(con) == history.CURRENT >= 2
        names = {
            (t, c)
            for t, c in con.execute(
                "select table_name, column_name from duckdb_columns() "
                "where database_name = current_database()"
            ).fetchall()
        }
        for table in ("user_metrics", "comparisons"):
            assert {(table, c) for c in history.TABLES[table].column_names()} <= names
        assert ("metrics", "evaluation_seed") in names and ("promotions", "p_value") in names
    finally:
        con.close()
    with Warehouse(path).update("test: apply migration 2 again") as con:
        step = next(m for m in history.MIGRATIONS if m.version == 2)
        step.apply(con)  # idempotent
        assert con.execute("select count(*) from user_metrics").fetchone() == (0,)


def test_compare_command_errors_are_one_line(tiny_warehouse, tmp_path, capsys):
    import shutil

    from jamrec.cli import main

    path = tmp_path / "w.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    assert main(["compare", "--warehouse", str(path)]) == 0
    assert "nothing to compare" in capsys.readouterr().out
    assert main(["compare", "--protocol", "beyond", "--warehouse", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("jamrec: error: cannot compare under 'beyond'") and err.count("\n") == 1
    assert main(["train", "--seeds", "0,x", "--models", "random", "--warehouse", str(path)]) == 1
    assert "--seeds '0,x': expected integers" in capsys.readouterr().err
    args = ["etl", "--timj", str(tmp_path), "--spotify", str(tmp_path / "t.csv")]
    assert main([*args, "--temporal-cut", "2014-13"]) == 1
    assert "--temporal-cut:" in capsys.readouterr().err
