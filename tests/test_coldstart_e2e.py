"""The cold-start study end to end on the small generated dump (preferences partly follow
the audio features): the two-tower beats both baselines; ID-only models sit at chance."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from jamrec.operations import pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(small_warehouse, tmp_path_factory):
    path = tmp_path_factory.mktemp("cold") / "jamrec.duckdb"
    shutil.copyfile(small_warehouse, path)
    models = ["two_tower", "feature_knn", "spotify_popularity", "popularity", "mbcf", "random"]
    pipeline.cold_start_study(models, settings={"mbcf": {"epochs": 5}}, warehouse=path)
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute(
        "select r.model, m.protocol, m.value, m.ci_low, m.ci_high from metrics m "
        "join model_runs r using (run_id) where m.metric = 'ndcg' and m.k = 10"
    ).fetchall()
    withheld = con.execute("select count(*) from coldstart_tracks").fetchone()[0]
    purposes = {p for (p,) in con.execute("select distinct purpose from model_runs").fetchall()}
    con.close()
    return {(m, p): (v, lo, hi) for m, p, v, lo, hi in rows}, withheld, purposes


def test_two_tower_beats_the_baselines_on_cold_tracks(study):
    ndcg, withheld, purposes = study
    assert withheld > 0 and purposes == {"cold_start"}
    two_tower = ndcg[("two_tower", "cold_start")][0]
    assert two_tower > ndcg[("feature_knn", "cold_start")][0]
    assert two_tower > ndcg[("spotify_popularity", "cold_start")][0]
    assert two_tower > ndcg[("popularity", "cold_start")][0]


def test_id_only_models_are_at_chance(study):
    ndcg, _, _ = study
    random_low, random_high = ndcg[("random", "cold_start")][1:]
    for model in ("popularity", "mbcf"):
        value, low, high = ndcg[(model, "cold_start")]
        # their interval overlaps random's, and sits below the feature-based models'
        assert low <= random_high and high >= random_low * 0.5, (model, value)
        assert value < ndcg[("feature_knn", "cold_start")][0]
    assert ndcg[("mbcf", "cold_start_catalogue")][0] < 0.001
