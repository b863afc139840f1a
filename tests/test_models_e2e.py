"""Models end to end on a small generated dump: train, evaluate, record, recommend."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from jamrec.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(small_warehouse, tmp_path_factory):
    """A copy of the small warehouse with every default model trained and evaluated."""
    folder = tmp_path_factory.mktemp("trained")
    path = folder / "jamrec.duckdb"
    shutil.copyfile(small_warehouse, path)
    assert main(["train", "--warehouse", str(path)]) == 0
    return path


def _ndcg10(path, protocol: str) -> dict[str, float]:
    """Test NDCG@10 of each model's latest run."""
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute(
        "select r.model, arg_max(m.value, r.started_at) from metrics m join model_runs r "
        "using (run_id) where m.split = 'test' and m.metric = 'ndcg' and m.k = 10 "
        "and m.protocol = $p group by 1",
        {"p": protocol},
    ).fetchall()
    con.close()
    return dict(rows)


def test_models_beat_the_baselines_and_the_oracle_beats_them(trained):
    full = _ndcg10(trained, "full")
    sample = _ndcg10(trained, "full_sample")
    assert "hybrid" not in full  # the MLP is full-ranked on the user sample only
    for model in ("als", "mbcf", "two_tower"):
        assert full[model] > full["popularity"] > full["random"], full
        assert full["oracle"] > full[model], full
    # The study's set-up (the published negatives, 68% of them tracks nobody played)
    # leaves its NN (hybrid_study) below popularity on this dump; jamrec's hybrid (fresh
    # negatives, a dot-product path) beats popularity and MBCF.
    assert sample["hybrid"] > sample["mbcf"] > sample["hybrid_study"], sample
    for model in ("als", "mbcf", "hybrid"):
        assert sample[model] > sample["popularity"], sample
        assert sample[model] > sample["random"], sample
        assert sample["oracle"] > sample[model], sample


def test_runs_metrics_and_curves_are_recorded(trained):
    con = duckdb.connect(str(trained), read_only=True)
    runs = con.execute("select model, status, config->>'negatives_per_positive' from model_runs")
    runs = sorted(runs.fetchall())
    assert [(m, s) for m, s, _ in runs] == [
        (m, "evaluated")
        for m in [
            "als", "hybrid", "hybrid_study", "item_knn", "mbcf", "oracle", "popularity",
            "random", "two_tower",
        ]
    ]  # fmt: skip
    negatives = {m: n for m, _, n in runs if m.startswith("hybrid")}
    assert negatives == {"hybrid": "4", "hybrid_study": "0"}
    protocols = {
        (m, p)
        for m, p in con.execute(
            "select r.model, m.protocol from metrics m join model_runs r using (run_id)"
        ).fetchall()
    }
    assert ("hybrid", "full") not in protocols
    assert {("als", p) for p in ("full", "full_sample", "sampled_100")} <= protocols
    curves = dict(
        con.execute(
            "select r.model, count(*) from training_curves c join model_runs r using (run_id) "
            "group by 1"
        ).fetchall()
    )
    assert curves["als"] >= 2 and curves["mbcf"] >= 2 and curves["hybrid"] >= 2
    # one curve row per step trained; the step kept is one of them (early stopping)
    stops = con.execute(
        "select r.model, r.best_step, r.stopped_step, r.stop_reason, count(c.step), "
        "max(c.step) from model_runs r join training_curves c using (run_id) "
        "where r.model in ('als', 'mbcf', 'hybrid', 'two_tower') group by all"
    ).fetchall()
    assert {m for m, *_ in stops} == {"als", "mbcf", "hybrid", "two_tower"}
    for _, best, stopped, reason, n_steps, last in stops:
        assert 1 <= best <= stopped == n_steps == last
        assert reason in ("no_improvement", "max_steps", "disabled")
    assert (
        con.execute(
            "select count(*) from metrics where not (ci_low <= value and value <= ci_high)"
        ).fetchone()[0]
        == 0
    )
    con.close()


def test_item_knn_beats_popularity_on_the_planted_dump(trained):
    full, sample = _ndcg10(trained, "full"), _ndcg10(trained, "full_sample")
    assert full["item_knn"] > full["popularity"] and sample["item_knn"] > sample["popularity"]
    con = duckdb.connect(str(trained), read_only=True)
    found = con.execute(
        "select difference, ci_low, p_holm, significant from comparisons "
        "where protocol = $p and split = 'test' and metric = 'ndcg' and k = 10 "
        "and model_a = 'item_knn' and model_b = 'popularity' "
        "order by compared_at desc limit 1",
        {"p": "full"},
    ).fetchone()
    con.close()
    difference, ci_low, p_holm, significant = found
    assert difference > 0 and ci_low > 0 and p_holm < 0.05 and significant


def test_user_metrics_average_to_the_metrics_rows(trained):
    con = duckdb.connect(str(trained), read_only=True)
    rows = con.execute(
        """
        with means as (
            unpivot (
                select run_id, protocol, split, avg(hr_at_5) as hr_5, avg(hr_at_10) as hr_10,
                    avg(hr_at_20) as hr_20, avg(ndcg_at_5) as ndcg_5, avg(ndcg_at_10) as ndcg_10,
                    avg(ndcg_at_20) as ndcg_20, avg(rr) as mrr_0, count(*) as n
                from user_metrics group by all
            ) on hr_5, hr_10, hr_20, ndcg_5, ndcg_10, ndcg_20, mrr_0 into name key value mean
        )
        select m.protocol, m.value, means.mean, m.n_users, means.n
        from metrics m join means on m.run_id = means.run_id and m.protocol = means.protocol
            and m.split = means.split
            and m.metric || '_' || coalesce(m.k, 0) = means.key
        """
    ).fetchall()
    n_rows = con.execute(
        "select count(*) from metrics where protocol in ('full', 'full_sample', 'sampled_100')"
    ).fetchone()[0]
    con.close()
    assert len(rows) == n_rows > 0
    for protocol, value, mean, n_users, n in rows:
        assert abs(value - mean) <= 1e-12 and n_users == n, (protocol, value, mean)


def test_temporal_protocol_end_to_end(trained, tmp_path):
    path = tmp_path / "temporal.duckdb"
    shutil.copyfile(trained, path)
    args = ["train", "--protocol", "temporal", "--models", "popularity,item_knn"]
    assert main([*args, "--warehouse", str(path)]) == 0
    con = duckdb.connect(str(path), read_only=True)
    runs = con.execute(
        "select model, purpose, is_champion from model_runs where purpose = 'temporal'"
    ).fetchall()
    assert sorted(runs) == [("item_knn", "temporal", False), ("popularity", "temporal", False)]
    protocols = {
        p
        for (p,) in con.execute(
            "select distinct m.protocol from metrics m join model_runs r using (run_id) "
            "where r.purpose = 'temporal'"
        ).fetchall()
    }
    assert protocols == {"temporal", "temporal_sample"}
    # every evaluated user had a positive before the cut; every ranked track was a candidate
    bad = con.execute(
        "select count(*) from user_metrics u join model_runs r using (run_id) "
        "where r.purpose = 'temporal' and not exists (select 1 from splits_temporal s "
        "where s.user_id = u.user_id and s.split = 'train')"
    ).fetchone()[0]
    assert bad == 0
    values = dict(
        con.execute(
            "select r.model, m.value from metrics m join model_runs r using (run_id) "
            "where r.purpose = 'temporal' and m.protocol = 'temporal' and m.metric = 'ndcg' "
            "and m.k = 10"
        ).fetchall()
    )
    assert values["item_knn"] > values["popularity"] > 0
    assert (
        con.execute("select count(*) from comparisons where protocol like 'temporal%'").fetchone()[
            0
        ]
        == 2
    )
    con.close()


def test_recommend_for_known_and_unknown_users(trained, capsys):
    con = duckdb.connect(str(trained), read_only=True)
    user = con.execute("select user_id from splits where split = 'test' limit 1").fetchone()[0]
    seen = con.execute(
        "select track_id from splits where user_id = $u and split = 'train'", {"u": user}
    ).fetchall()
    seen = {t for (t,) in seen}
    con.close()
    args = ["recommend", "--user", user, "-k", "10", "--model", "als", "--warehouse", str(trained)]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("als (run als-")
    rows = out[2:]
    assert len(rows) == 10
    assert not {r.split()[1] for r in rows} & seen
    assert main(["recommend", "--user", "0" * 32, "--warehouse", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "no interactions the model knows" in out and "most popular" in out


def test_validate_covers_the_model_tables(trained, capsys):
    assert main(["validate", "--warehouse", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "passed" in out
