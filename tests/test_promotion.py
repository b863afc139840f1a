"""Champion/challenger rules, re-scoring on a new build, pruning, and fingerprinting."""

from __future__ import annotations

import shutil

import duckdb
import numpy as np
import pytest
import scipy.sparse as sp

from jamrec.build import incremental
from jamrec.build.pipeline import run_build
from jamrec.cli import main
from jamrec.config import BuildParams
from jamrec.models import default_models
from jamrec.models.base import TrainData
from jamrec.models.baselines import Popularity
from jamrec.models.dataset import Dataset
from jamrec.operations import promotion
from jamrec.operations.remap import Remapped
from jamrec.warehouse.store import Warehouse


@pytest.fixture
def warehouse(tiny_warehouse, tmp_path):
    path = tmp_path / "jamrec.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    return path


def _train(path, model="popularity", *extra):
    assert main(["train", "--models", model, *extra, "--warehouse", str(path)]) == 0


def _q(path, sql, params=None):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params or {}).fetchall()
    finally:
        con.close()


def _set_val(path, run_id, value=None, lose_hits=None):
    """Rewrite a run's validation NDCG@10 (full_sample), per user and on average:
    every user to ``value``, or ``lose_hits`` users with a hit down to 0."""
    with Warehouse(path).update("test: set a validation value") as con:
        where = "run_id = $r and split = 'val' and protocol = 'full_sample'"
        if value is not None:
            con.execute(
                f"update user_metrics set ndcg_at_10 = $v where {where}", {"v": value, "r": run_id}
            )
        else:
            con.execute(
                f"update user_metrics set ndcg_at_10 = 0 where {where} and user_id in ("
                f"select user_id from user_metrics where {where} and ndcg_at_10 > 0 "
                "order by user_id limit $n)",
                {"r": run_id, "n": lose_hits},
            )
        con.execute(
            "update metrics set value = m.v, ci_low = least(ci_low, m.v), "
            "ci_high = greatest(ci_high, m.v) from (select avg(ndcg_at_10) as v from "
            f"user_metrics where {where}) m where run_id = $r and split = 'val' "
            "and protocol = 'full_sample' and metric = 'ndcg' and k = 10",
            {"r": run_id},
        )


def _runs(path, model="popularity"):
    return [
        r
        for (r,) in _q(
            path, "select run_id from model_runs where model = $m order by started_at", {"m": model}
        )
    ]


def _champion(path, model="popularity"):
    rows = _q(path, "select run_id from model_runs where model = $m and is_champion", {"m": model})
    return [r for (r,) in rows]


@pytest.mark.slow
def test_first_run_is_champion_then_better_or_equal_wins_and_worse_loses(warehouse):
    from jamrec.models.dataset import open_dataset

    _train(warehouse)
    first = _runs(warehouse)[0]
    assert _champion(warehouse) == [first]
    data = open_dataset(warehouse)
    # a worse challenger is not promoted
    _train(warehouse)  # trains and promotes: equal value -> promoted
    second = _runs(warehouse)[1]
    assert _champion(warehouse) == [second]
    _train(warehouse)
    third = _runs(warehouse)[2]
    # make the third a little worse than the champion after the fact (one user loses their
    # hit: not significant), then decide again
    with Warehouse(warehouse).update("test: reset") as con:
        con.execute("update model_runs set is_champion = (run_id = $r)", {"r": second})
    _set_val(warehouse, third, lose_hits=1)
    (decision,) = promotion.promote_runs([third], data, warehouse)
    assert not decision.promoted
    assert "not significantly worse but not at least as good within tolerance" in decision.note
    assert decision.paired.difference < 0 and decision.paired.p_value >= 0.05
    assert _champion(warehouse) == [second]
    # within the tolerance it is
    (decision,) = promotion.promote_runs([third], data, warehouse, tolerance=1.0)
    assert decision.promoted and "within tolerance 1.0" in decision.note
    assert _champion(warehouse) == [third]
    notes = dict(_q(warehouse, "select run_id, promotion_note from model_runs"))
    assert "replaced by " + third in notes[second]
    # a significantly worse challenger is never promoted, whatever the tolerance
    _set_val(warehouse, third, value=1.0)
    _train(warehouse)
    fourth = _runs(warehouse)[3]
    _set_val(warehouse, fourth, value=0.0)
    (decision,) = promotion.promote_runs([fourth], data, warehouse, tolerance=1.0)
    assert not decision.promoted and "significantly worse" in decision.note
    assert _champion(warehouse) == [third]
    recorded = _q(
        warehouse,
        "select val_difference, p_value, n_users_paired from promotions "
        "where challenger_run_id = $r order by decided_at desc limit 1",
        {"r": fourth},
    )[0]
    assert recorded[0] == pytest.approx(-1.0) and recorded[1] < 0.05 and recorded[2] > 0


def test_gate_rules():
    from jamrec.evaluation.significance import PairedResult

    def paired(difference, p):
        return PairedResult(100, 0.1, 0.1 - difference, difference, difference - 0.01,
                            difference + 0.01, p, p)  # fmt: skip

    assert promotion.gate(paired(0.002, 0.4))[0]
    assert promotion.gate(paired(0.0, 1.0))[0]
    promoted, why = promotion.gate(paired(-0.001, 0.6))
    assert not promoted and "not significantly worse but not" in why
    assert promotion.gate(paired(-0.001, 0.6), tolerance=0.005)[0]
    promoted, why = promotion.gate(paired(-0.001, 0.01), tolerance=0.005)
    assert not promoted and why.startswith("significantly worse")
    # significantly *better* is promoted, of course
    assert promotion.gate(paired(0.05, 0.0001))[0]


@pytest.mark.slow
def test_several_training_seeds_send_one_challenger(warehouse, capsys):
    _train(warehouse, "popularity,random", "--seeds", "0,1,2")
    runs = _q(warehouse, "select model, seed, run_id, promotion_note from model_runs order by all")
    assert [(m, s) for m, s, _, _ in runs] == [
        ("popularity", 0), ("popularity", 1), ("popularity", 2),
        ("random", 0), ("random", 1), ("random", 2),
    ]  # fmt: skip
    decided = _q(warehouse, "select challenger_run_id, promoted, note from promotions")
    assert sum(p for _, p, _ in decided) == 2  # one champion per model
    assert sum("was not the best of the seeds" in n for _, _, n in decided) == 4
    out = capsys.readouterr().out
    # mean and spread across the three seeds beside the per-user intervals
    lines = out.splitlines()
    header = next(i for i, x in enumerate(lines) if "sd across seeds" in x)
    line = next(x for x in lines[header:] if x.startswith("random "))
    assert line.split()[1] == "3" and "[" in line
    assert "popularity      random" in out
    rows = _q(
        warehouse,
        "select seeds_a, seeds_b, map_from_entries([(model_a, seed_sd_a), (model_b, seed_sd_b)]) "
        "from comparisons",
    )
    assert rows and all(a == b == 3 for a, b, _ in rows)
    # popularity has no seed; random's lists move with it (either may be model_a)
    assert all(sd["popularity"] < 1e-12 and sd["random"] > 0 for _, _, sd in rows), rows


def test_a_run_without_validation_results_is_never_promoted(warehouse):
    _train(warehouse)
    _train(warehouse, "popularity", "--no-evaluate")
    champion, trained_only = _runs(warehouse)
    from jamrec.models.dataset import open_dataset

    (decision,) = promotion.promote_runs([trained_only], open_dataset(warehouse), warehouse)
    assert not decision.promoted and "no validation result" in decision.note
    assert _champion(warehouse) == [champion]


def test_promote_by_hand_rolls_back(warehouse, capsys):
    _train(warehouse)
    _train(warehouse)
    old, new = _runs(warehouse)
    assert _champion(warehouse) == [new]
    assert (
        main(["promote", old, "--note", "rollback after a bad week", "--warehouse", str(warehouse)])
        == 0
    )
    assert _champion(warehouse) == [old]
    assert "rollback after a bad week" in capsys.readouterr().out
    assert main(["runs", "--warehouse", str(warehouse)]) == 0
    listing = capsys.readouterr().out
    assert f"* {old}" in listing
    assert main(["promote", "nope", "--note", "x", "--warehouse", str(warehouse)]) == 1


def test_prune_keeps_the_newest_and_every_champion(warehouse):
    for _ in range(4):
        _train(warehouse)
    runs = _runs(warehouse)
    with Warehouse(warehouse).update("test: oldest is champion") as con:
        con.execute("update model_runs set is_champion = (run_id = $r)", {"r": runs[0]})
    pruned = promotion.prune(keep=2, warehouse=warehouse)
    assert pruned == [runs[1]]
    paths = dict(_q(warehouse, "select run_id, model_path from model_runs"))
    assert paths[runs[1]] is None
    assert all(paths[r] for r in (runs[0], runs[2], runs[3]))


def _dataset(users, tracks, pairs, build="b"):
    rows = [users.index(u) for u, _ in pairs]
    cols = [tracks.index(t) for _, t in pairs]
    train = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(users), len(tracks))
    )
    empty = sp.csr_matrix((len(users), len(tracks)), dtype=np.float32)
    return Dataset(
        build,
        np.array(users, object),
        np.array(tracks, object),
        train,
        empty,
        empty,
        empty,
        np.zeros((len(tracks), 11), np.float32),
    )


def test_a_champion_is_re_scored_in_the_new_builds_id_spaces():
    old = _dataset(["u1", "u2"], ["t1", "t2", "t3"], [("u1", "t1"), ("u2", "t1"), ("u2", "t2")])
    model = Popularity().fit(TrainData.from_dataset(old))
    new = _dataset(
        ["u0", "u2", "u9"],
        ["t0", "t1", "t2", "t3"],
        [("u0", "t0"), ("u9", "t0"), ("u2", "t3")],
        build="c",
    )
    remapped = Remapped(model, old.users, old.tracks, new)
    scores = remapped.score(np.arange(3))
    # u2 is known: its scores are the old model's for t1, t2, t3, and below them for t0
    assert scores[1, 1] == 2 and scores[1, 2] == 1 and scores[1, 3] == 0
    assert scores[1, 0] < scores[1, 1:].min()
    # u0 and u9 are new: they get the fallback, the new build's popularity
    np.testing.assert_array_equal(scores[0], [2, 0, 0, 1])
    np.testing.assert_array_equal(scores[2], [2, 0, 0, 1])


@pytest.mark.slow
def test_fingerprints_decide_when_to_rebuild(dump, tmp_path):
    timj, spotify = dump
    path = tmp_path / "w.duckdb"
    first = incremental.build_decision(timj, spotify, path)
    assert first["rebuild"] and first["reason"] == "no warehouse yet"
    run_build(timj, spotify, path)
    same = incremental.build_decision(timj, spotify, path)
    assert not same["rebuild"] and "match build" in same["reason"]
    recorded = _q(path, "select inputs_fingerprint from builds where status = 'published'")[0][0]
    assert same["inputs_fingerprint"] == recorded
    assert incremental.build_decision(timj, spotify, path, BuildParams(seed=1))["rebuild"]
    likes = timj / "archive" / "likes.tsv"
    likes.write_text(likes.read_text() + f"{'1' * 32}\t{'0' * 32}\n")
    changed = incremental.build_decision(timj, spotify, path)
    assert changed["rebuild"] and "inputs changed" in changed["reason"]
    skipped = incremental.record_skipped(same, path)
    assert _q(path, "select status, note from builds where build_id = $b", {"b": skipped}) == [
        ("skipped", same["reason"])
    ]


def test_default_models_are_every_learner_and_baseline_and_the_oracle_with_truth():
    learners = [
        *("popularity", "random", "item_knn", "als", "mbcf", "hybrid", "hybrid_study"),
        "two_tower",
    ]
    assert default_models(has_truth=True) == [*learners, "oracle"]
    assert default_models(has_truth=False) == learners


@pytest.mark.slow
def test_a_champion_from_an_older_build_is_re_scored_and_paired(warehouse):
    from jamrec.models.dataset import open_dataset

    _train(warehouse, "item_knn")
    _train(warehouse, "item_knn", "--no-evaluate")
    old, new = _runs(warehouse, "item_knn")
    # The champion was trained on an older build: it is re-scored on this one, per user.
    with Warehouse(warehouse).update("test: the champion's build is older") as con:
        con.execute("update model_runs set build_id = 'b-older' where run_id = $r", {"r": old})
    from jamrec.operations.pipeline import evaluate_runs

    evaluate_runs([new], warehouse=warehouse)
    (decision,) = promotion.promote_runs([new], open_dataset(warehouse), warehouse)
    assert decision.rescored and f"re-scored on {decision.build_id}" in decision.note
    # the same model on the same data: no difference, every validation user paired
    assert decision.paired.difference == pytest.approx(0.0, abs=1e-12)
    assert decision.promoted and decision.paired.n_users > 0


def _served(path, model):
    rows = _q(path, "select distinct run_id from recommendations where model = $m", {"m": model})
    return {r for (r,) in rows}


@pytest.mark.slow
def test_the_served_lists_follow_every_promotion(warehouse, capsys):
    _train(warehouse, "als", "--set", "als.iterations=3")
    _train(warehouse, "als", "--set", "als.iterations=3", "--seed", "1")
    champion = _champion(warehouse, "als")[0]
    (other,) = set(_runs(warehouse, "als")) - {champion}
    # the automatic promotion wrote the champion's lists with its decision
    assert _served(warehouse, "als") == {champion}
    capsys.readouterr()
    assert main(["promote", other, "--note", "by hand", "--warehouse", str(warehouse)]) == 0
    out = capsys.readouterr().out
    assert "recommendations:" in out and "rows of the new champion served" in out
    assert "report: " in out  # rewritten: it shows the champions
    assert _served(warehouse, "als") == {other}
    users = _q(warehouse, "select count(distinct user_id) from splits")[0][0]
    per_user = _q(warehouse, "select max(rank), count(distinct user_id) from recommendations")
    assert per_user == [(20, users)]
    # without serving, the old lists stay and the command says what refreshes them
    args = ["promote", champion, "--note", "later", "--no-serve", "--warehouse", str(warehouse)]
    assert main(args) == 0
    assert "jamrec refresh-recommendations" in capsys.readouterr().out
    assert _served(warehouse, "als") == {other}
    assert main(["refresh-recommendations", "--warehouse", str(warehouse)]) == 0
    assert _served(warehouse, "als") == {champion}


def test_evaluating_later_records_what_a_trained_and_evaluated_run_records(warehouse):
    _train(warehouse, "item_knn")
    _train(warehouse, "item_knn", "--no-evaluate")
    evaluated, later = _runs(warehouse, "item_knn")
    assert main(["evaluate", "--run", later, "--warehouse", str(warehouse)]) == 0

    def recorded(run_id):
        sql = "select protocol, split, metric, k, value from metrics where run_id = $r order by all"
        return _q(warehouse, sql, {"r": run_id})

    # every protocol, beyond-accuracy and fold-in rows too; the same model gives the same values
    assert recorded(later) == recorded(evaluated)
    assert {p for p, *_ in recorded(later)} >= {"full", "beyond", "fold_in"}


def test_a_promotion_serves_the_lists_its_evaluation_kept(warehouse, capsys):
    """Training keeps the served lists beside the model (one scoring pass for evaluation
    and serving); a promotion serves them, and they equal the lists computed afresh once
    the file is gone."""
    from jamrec.operations.runs import TOP_LISTS

    _train(warehouse, "als", "--set", "als.iterations=3")
    (run_id,) = _runs(warehouse, "als")
    folder = warehouse.parent / "models" / run_id
    assert (folder / TOP_LISTS).exists()
    assert "kept by its evaluation" in capsys.readouterr().err
    sql = "select user_id, rank, track_id, score from recommendations where model = 'als' "
    sql += "order by all"
    kept = _q(warehouse, sql)
    (folder / TOP_LISTS).unlink()
    assert main(["refresh-recommendations", "--warehouse", str(warehouse)]) == 0
    assert "kept by its evaluation" not in capsys.readouterr().err
    fresh = _q(warehouse, sql)
    assert len(kept) == len(fresh) > 0
    assert [r[:3] for r in kept] == [r[:3] for r in fresh]
    np.testing.assert_allclose([r[3] for r in kept], [r[3] for r in fresh], rtol=1e-6)


def test_a_reference_point_keeps_no_lists(warehouse):
    """random is never served: its evaluation keeps no lists to serve."""
    from jamrec.operations.runs import TOP_LISTS

    _train(warehouse, "random")
    (run_id,) = _runs(warehouse, "random")
    assert (warehouse.parent / "models" / run_id).is_dir()
    assert not (warehouse.parent / "models" / run_id / TOP_LISTS).exists()


def test_a_re_ranker_reads_the_pool_kept_beside_its_pool_champion(warehouse, capsys):
    """The hybrid re-ranks the best dot-product champion's top 200: kept by that
    champion's evaluation (the same full-ranking pass), equal to the pool computed afresh,
    read back by every promotion of a re-ranker on the same build; without the file the
    pool is computed, kept again, and the served rows are the same."""
    from jamrec.models.dataset import open_dataset
    from jamrec.operations.recommendations import POOL, RERANK_DEPTH, top_n_for_all
    from jamrec.operations.remap import saved_model

    _train(warehouse, "als", "--set", "als.iterations=3")
    (als,) = _runs(warehouse, "als")
    kept = warehouse.parent / "models" / als / POOL
    assert kept.exists() and np.load(kept).shape[1] == RERANK_DEPTH
    model = saved_model(str(warehouse.parent / "models" / als))[0]
    fresh, _ = top_n_for_all(model, open_dataset(warehouse), RERANK_DEPTH)
    np.testing.assert_array_equal(np.load(kept), fresh)
    capsys.readouterr()
    _train(warehouse, "hybrid", "--set", "hybrid.epochs=1")
    assert "the re-rankers' pool from als, kept" in capsys.readouterr().err
    (hybrid,) = _runs(warehouse, "hybrid")
    sql = "select user_id, rank, track_id, score from recommendations where model = 'hybrid' "
    sql += "order by all"
    first = _q(warehouse, sql)
    kept.unlink()
    assert main(["promote", hybrid, "--note", "again", "--warehouse", str(warehouse)]) == 0
    assert "the re-rankers' pool from als, kept" not in capsys.readouterr().err
    assert kept.exists() and _q(warehouse, sql) == first and len(first) > 0
    assert main(["promote", hybrid, "--note", "and again", "--warehouse", str(warehouse)]) == 0
    assert "the re-rankers' pool from als, kept" in capsys.readouterr().err
    assert _q(warehouse, sql) == first
