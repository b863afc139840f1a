"""The report's "Beyond the study" section: cold start, beyond accuracy, fold-in, sweeps."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import pytest

from jamrec.config import get_settings
from jamrec.report import build_report, report_markdown_summary

pytestmark = pytest.mark.slow

SUBSECTIONS = ("beyond", "cold-start", "beyond-accuracy", "fold-in", "sweeps")
FIGURES = ("fig-cold-start", "fig-beyond-popularity", "fig-sweep-1")


@pytest.fixture(scope="module")
def studied(tiny_warehouse, tmp_path_factory) -> Path:
    """A copy of the tiny warehouse with three standard runs, a cold-start study, and one
    ALS sweep of two configurations whose chosen one is trained, tested (with fold-in) and
    recorded as a run, as the sweep flow does, without Prefect."""
    from jamrec.cli import main
    from jamrec.evaluation.foldin import fold_in_agreement
    from jamrec.evaluation.protocols import EvaluationSettings
    from jamrec.models.dataset import open_dataset
    from jamrec.operations import runs, sweep

    path = tmp_path_factory.mktemp("report_beyond") / "jamrec.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JAMREC_WAREHOUSE", str(path))
        get_settings.cache_clear()
        w = str(path)
        assert main(["train", "--models", "popularity,random,als", "--warehouse", w]) == 0
        assert (
            main(["coldstart", "--models", "feature_knn,popularity,random", "--warehouse", w]) == 0
        )
        data = open_dataset(path)
        configs = [{"factors": 8, "iterations": 2}, {"factors": 16, "iterations": 2}]
        trials = [sweep.try_config("als", c, data, user_sample=200) for c in configs]
        chosen = sweep.choose(trials)
        run = runs.train("als", data, 0, chosen.config)
        runs.save(run, data, path)
        result = runs.evaluate(run, data, EvaluationSettings(user_sample=200))
        result.rows += list(fold_in_agreement(run.model, data, n_users=100).values())
        run_id = runs.record(run, result, path)
        sweep.record("sweep-als-test", "als", data.build_id, trials, chosen, run_id, path)
    get_settings.cache_clear()
    return path


@pytest.fixture(scope="module")
def page(studied) -> str:
    return build_report(studied, studied.parent / "report.html").read_text()


def ids(html: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html))


def section(html: str, start: str, end: str) -> str:
    return html[html.index(f'id="{start}"') : html.index(f'id="{end}"')]


def query(path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_beyond_section_its_subsections_and_figures(page, studied):
    assert set(SUBSECTIONS) | set(FIGURES) <= ids(page)
    assert '<a href="#beyond">Beyond the study</a>' in page
    beyond = section(page, "beyond", "quality")
    assert beyond.count("<img ") == len(FIGURES) and 'class="missing"' not in beyond
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", beyond, re.S)
    assert len(captions) == len(FIGURES) and all(len(c) > 100 for c in captions)
    cold = section(page, "cold-start", "beyond-accuracy")
    (withheld,) = query(studied, "select count(*) from coldstart_tracks")[0]
    assert f"Withheld: {withheld:,} tracks" in cold and "sit at chance" in cold
    for model in ("feature_knn", "popularity", "random", "oracle"):
        assert f"<td>{model}" in cold
    assert ">settings</th>" in cold and "neighbours" not in cold  # the runs' own settings
    accuracy = section(page, "beyond-accuracy", "fold-in")
    for header in ("coverage@10", "novelty (bits)", "popularity pct: jammed"):
        assert f">{header}</th>" in accuracy
    assert "<td>feature_knn" not in accuracy
    fold = section(page, "fold-in", "sweeps")
    assert ">NDCG@10 folded in</th>" in fold and ">overlap@10</th>" in fold
    sweeps = beyond[beyond.index('id="sweeps"') :]
    ((run_id, test),) = query(
        studied,
        "select s.run_id, m.value from sweeps s join metrics m using (run_id) where s.chosen "
        "and m.protocol = 'full_sample' and m.split = 'test' and m.metric = 'ndcg' and m.k = 10",
    )
    assert f"<td>{run_id}</td>" in sweeps and f"{test:.4f}" in sweeps
    assert "<code>factors=" in sweeps and "Set in every configuration: iterations=2" in sweeps


def test_cold_start_runs_stay_out_of_the_comparison(page, studied):
    cold_runs = [
        r for (r,) in query(studied, "select run_id from model_runs where purpose <> 'standard'")
    ]
    assert len(cold_runs) == 4
    models_part = section(page, "models", "beyond")
    assert not any(r in models_part for r in cold_runs)
    assert "feature_knn" not in models_part
    assert "feature_knn" not in report_markdown_summary(studied)


def test_without_the_study_tables_every_part_says_what_is_missing(studied, tmp_path):
    """An older warehouse: no cold-start, sweep or purpose column, no beyond metrics. It
    is migrated when the report opens it, and the report says what is missing."""
    path = tmp_path / "old.duckdb"
    shutil.copyfile(studied, path)
    con = duckdb.connect(str(path))
    try:
        con.execute(
            "delete from metrics where protocol in ('beyond', 'fold_in') or run_id in "
            "(select run_id from model_runs where purpose <> 'standard')"
        )
        con.execute("delete from model_runs where purpose <> 'standard'")
        con.execute("alter table model_runs drop column purpose")
        con.execute("drop table coldstart_tracks")
        con.execute("drop table sweeps")
        con.execute("drop table schema_migrations")  # as written before migrations existed
    finally:
        con.close()
    html = build_report(path, tmp_path / "old.html").read_text()
    beyond = section(html, "beyond", "quality")
    assert set(SUBSECTIONS) <= ids(beyond)
    assert "<img " not in beyond
    assert "No cold-start study yet: run <code>jamrec coldstart</code>" in beyond
    assert "<code>jamrec train</code> records them" in beyond
    assert "No fold-in measurements" in beyond
    assert "No sweeps yet: run the <code>sweep</code> flow" in beyond
    assert "<code>python -m flows.sweep</code>" in beyond
    assert 'id="comparison-test"' in html and "<td>als" in section(html, "models", "beyond")


def test_without_runs_the_section_is_all_notes(tiny_warehouse, tmp_path):
    path = tmp_path / "jamrec.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    beyond = section(build_report(path).read_text(), "beyond", "quality")
    assert beyond.count('class="missing"') == 3 and "<img " not in beyond


def test_study_section_without_a_study(page):
    """No ``jamrec study`` on this warehouse: the section shows the table, the headline and
    the verdicts it can, and names the command that fills in the rest."""
    study = section(page, "study", "models")
    assert "0.020" in study and "0.280" in study and "0.230" in study
    assert 'id="fig-study-headline"' in study and 'id="fig-study-negatives"' not in study
    assert "No <code>jamrec study</code> on the published build" in study
    assert "not measured" in study and "<code>jamrec train --models " in study
    assert "No audio ablation on this build: <code>jamrec study</code>" in study
