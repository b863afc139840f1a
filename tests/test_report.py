"""The HTML report: sections and figures, offline, opened by a real browser, partial warehouses."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from jamrec.config import get_settings
from jamrec.errors import JamrecError
from jamrec.generate import AUDIO_SHARE
from jamrec.report import build_report, report_markdown_summary
from tests.browser import Browser, find_chromium

pytestmark = pytest.mark.slow

DATA_FIGURES = ["fig-stages", "fig-rejects", "fig-distributions", "fig-features"]
DATA_FIGURES += ["fig-features-standardised"]
DATA_FIGURES += ["fig-correlations", "fig-months"]
MODEL_FIGURES = ["fig-hr-at-k", "fig-ndcg-at-k", "fig-training-curves", "fig-beyond-popularity"]
STUDY_FIGURES = ["fig-study-headline", "fig-study-negatives", "fig-study-batch-size"]
STUDY_FIGURES += ["fig-study-learning-rate", "fig-study-als", "fig-study-per-user"]
MODELS = ("popularity", "random", "item_knn", "oracle", "als", "mbcf", "hybrid", "hybrid_study")
PAIRWISE = ("hybrid", "hybrid_study")  # never fully ranked: compared under full_sample only
# jamrec study with small budgets (as tests/test_study.py runs it)
STUDY = ["--probe-users", "200", "--epochs", "negatives=2", "--epochs", "audio_ablation=2"]
STUDY += ["--epochs", "als_curves=3", "--steps", "batch_size=4", "--steps", "learning_rate=3"]
TRACKS_HEADER = "id,name,popularity,duration_ms,explicit,artists,id_artists,release_date,"
TRACKS_HEADER += "danceability,energy,key,loudness,mode,speechiness,acousticness,"
TRACKS_HEADER += "instrumentalness,liveness,valence,tempo,time_signature"


@pytest.fixture(scope="module")
def trained(tiny_warehouse, tmp_path_factory) -> Path:
    """A copy of the tiny warehouse with every default model trained (few epochs; training
    compares them under ``sampled_100`` too) and the study's experiments (``jamrec study``,
    small budgets)."""
    path = tmp_path_factory.mktemp("report_trained") / "jamrec.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    data_docs = tiny_warehouse.parent / "reports" / "data_docs"
    shutil.copytree(data_docs, path.parent / "reports" / "data_docs")
    from jamrec.cli import main

    # Saved models go beside this copy, not into the default warehouse folder.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JAMREC_WAREHOUSE", str(path))
        get_settings.cache_clear()
        args = ["train", "--warehouse", str(path), "--set", "mbcf.epochs=3"]
        args += ["--set", "hybrid.epochs=2", "--set", "hybrid_study.epochs=2"]
        assert main([*args, "--set", "als.iterations=5"]) == 0
        assert main(["study", "--warehouse", str(path), *STUDY]) == 0
    get_settings.cache_clear()
    return path


@pytest.fixture(scope="module")
def report(trained) -> Path:
    """The report of the trained warehouse, at its default place."""
    return build_report(trained)


def ids(html: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html))


def test_report_has_every_section_and_figure(report, trained):
    assert report == trained.parent / "reports" / "index.html"
    html = report.read_text()
    for section in ("overview", "data", "study", "models", "quality", "stages", "rejects"):
        assert section in ids(html)
    for section in ("distributions", "features", "correlations", "dates", "comparison"):
        assert section in ids(html)
    assert {"metrics-at-k", "training-curves", "champions", "comparison-test"} <= ids(html)
    assert "comparison-val" in ids(html)
    assert {"paired", "seeds", "temporal", "paired-full-sample-test-ndcg10"} <= ids(html)
    paired = html[html.index('id="paired"') : html.index('id="seeds"')]
    n_models = len(MODELS) + 1  # and the two-tower
    # full_sample: every pair; full: every pair without the pairwise models
    sample_rows = 1 + n_models * (n_models - 1) // 2
    full = n_models - len(PAIRWISE)
    full_rows = 1 + full * (full - 1) // 2
    assert paired.count("<tr") >= sample_rows + full_rows
    assert "<td>item_knn</td>" in paired and "Holm" in paired
    figures = DATA_FIGURES + STUDY_FIGURES + MODEL_FIGURES
    con = duckdb.connect(str(trained), read_only=True)
    tracked = con.execute(
        "select count(*) from duckdb_columns() "
        "where table_name = 'model_runs' and column_name = 'is_champion'"
    ).fetchone()[0]
    con.close()
    if tracked:
        figures.append("fig-champions")
    assert set(figures) <= ids(html)
    assert html.count("<img ") == len(figures)
    assert html.count('src="data:image/png;base64,') == len(figures)
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html, re.S)
    assert len(captions) == len(figures)
    assert all(len(re.sub(r"<[^>]+>", "", c)) > 60 for c in captions)
    comparison = html[html.index('id="comparison-test"') : html.index('id="metrics-at-k"')]
    for model in MODELS:
        assert f"<td>{model}" in comparison
    for header in ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR"):
        assert f">{header}</th>" in comparison
    for protocol in ("<td>full</td>", "<td>full_sample</td>", "<td>sampled_100</td>"):
        assert protocol in comparison
    assert 'class="ci"' in comparison
    assert 'href="data_docs/index.html"' in html
    assert "passed" in html and "No model runs yet" not in html
    assert f"audio share {AUDIO_SHARE:g})" in html and "Generated data: each user picks" in html
    assert report.stat().st_size < 3_000_000


def section(html: str, start: str, end: str) -> str:
    return html[html.index(f'id="{start}"') : html.index(f'id="{end}"')]


def text(html: str) -> str:
    """The visible text of an HTML fragment, entities decoded."""
    import html as html_module

    return html_module.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def test_the_study_rerun_section(report):
    """The study's numbers quoted beside jamrec's, the headline figure, a verdict on each
    conclusion (every one measured on this warehouse), the audio answer, the figures."""
    html = report.read_text()
    assert '<a href="#study">The study, re-run</a>' in html
    assert html.index('id="study"') < html.index('id="models"')
    study = section(html, "study", "models")
    for ident in ("study-table", "study-headline", "study-verdicts", "study-audio"):
        assert f'id="{ident}"' in study
    for ident in ("study-negatives", "study-batch-size", "study-learning-rate", "study-als"):
        assert f'id="{ident}"' in study
    assert set(STUDY_FIGURES) <= ids(study)
    assert "study-per-user" in ids(study)
    table = text(section(html, "study-table", "study-headline"))
    for name, model, value in (("ALS", "als", "0.020"), ("MBCF", "mbcf", "0.280")):
        assert f"{model} {name} {value} " in table
    assert "hybrid_study NN 0.230 " in table
    for model in ("hybrid", "popularity (baseline)", "item_knn (baseline)", "two_tower"):
        assert f" {model} – – 0." in table
    assert "Not trained on this build" not in table
    assert "its NN hybrid_study (the study's exact set-up); hybrid is jamrec's" in text(study)
    verdicts = section(html, "study-verdicts", "study-audio")
    verdicts = text(verdicts[verdicts.index("<table") : verdicts.index("</table>")])
    for claim in (
        "(1) MBCF > NN > ALS",
        "(2) negative samples help MBCF",
        "(3) batch size 4096 and learning rate 1e-3 are best",
        "(4) the NN generalises poorly",
    ):
        assert claim in verdicts
    found = re.findall(r"(holds|does not hold|not measured)", verdicts)
    assert len(found) >= 7 and "not measured" not in found  # every verdict measured here
    for where in ("full_sample", "sampled_100", "batch_size", "learning_rate"):
        assert where in verdicts
    audio = text(section(html, "study-audio", "study-experiments"))
    assert "What the audio features add, with a planted audio share of" in audio
    assert "hybrid" in audio and "two_tower" in audio and "warm" in audio and "cold" in audio
    assert "jamrec study" not in text(section(html, "study-experiments", "models"))


def test_runs_show_their_settings_and_figures_their_axes(report):
    """Fixes elsewhere in the report: settings per run, every protocol in words, each loss
    named, the target in the correlations, the negatives among the stages."""
    html = report.read_text()
    comparison = section(html, "comparison", "comparison-test")
    assert "settings</th>" in comparison and "factors=40" in comparison
    assert "patience=5" in comparison  # early stopping is on: its settings are shown
    legend = text(comparison)
    assert "fold_in: fold_in" not in legend and "beyond: beyond" not in legend
    assert "every candidate track ranked" in legend and "Beyond the study" in legend
    curves = text(section(html, "training-curves", "temporal"))
    assert "als: implicit's confidence-weighted squared error" in curves
    assert "mbcf: binary cross-entropy" in curves
    assert "interactions per track" in text(section(html, "correlations", "dates"))
    assert "negatives (published)" in text(section(html, "stages", "rejects"))


def test_report_is_offline_and_deterministic(report, trained):
    html = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.I)
    for pattern in (r"<script", r"<link\b", r"@import", r"url\(", r"<iframe", r"<object"):
        assert not re.search(pattern, html, re.I), pattern
    again = build_report(trained, report.parent / "again.html")
    assert again.read_bytes() == report.read_bytes()


def test_report_opens_in_a_real_browser(report, tmp_path):
    binary = find_chromium()
    if binary is None:
        if os.environ.get("JAMREC_REQUIRE_BROWSER") == "1":
            pytest.fail("JAMREC_REQUIRE_BROWSER=1 but no chromium (apt-get install -y chromium)")
        pytest.skip("no chromium on this machine (apt-get install -y chromium)")
    browser = Browser(binary, tmp_path / "profile")
    try:
        browser.open(report.as_uri())
        assert browser.evaluate("document.readyState") == "complete"
        n_images = browser.evaluate("document.images.length")
        assert n_images == report.read_text().count("<img ")
        assert n_images > 0
        assert browser.evaluate(
            "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
        )
        widest = browser.evaluate("Math.max(...Array.from(document.images, i => i.width))")
        assert widest <= 1100  # the page's max-width: images shrink to fit
        assert browser.evaluate("document.querySelectorAll('h2').length") == 6
        loaded = browser.evaluate(
            "Array.from(document.querySelectorAll('figure')).filter(f => "
            "f.querySelector('img').complete && f.querySelector('img').naturalWidth > 0)"
            ".map(f => f.id)"
        )
        assert set(DATA_FIGURES + STUDY_FIGURES + MODEL_FIGURES) <= set(loaded)
        assert browser.errors() == []
        outside = [u for u in browser.requests() if not u.startswith(("file:", "data:"))]
        assert outside == []
    finally:
        browser.close()
    assert browser.process.poll() is not None


def test_markdown_summary_lists_every_model(trained, report):
    text = report_markdown_summary(trained, report=report)
    assert text.startswith("## jamrec report")
    for model in MODELS:
        assert f"| {model} |" in text
    assert "[" in text and str(report) in text


def test_report_without_runs_after_a_failed_build(tiny_warehouse, tiny_dump, tmp_path):
    """No model runs yet, and the last build failed: the published data is still shown."""
    from jamrec.build.pipeline import run_build

    path = tmp_path / "jamrec.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    with pytest.raises(JamrecError, match="file not found"):
        run_build(tiny_dump, tmp_path / "missing.csv", path)
    html = build_report(path).read_text()
    assert "No model runs yet: run <code>jamrec train</code>" in html
    study = section(html, "study", "models")  # what it can show, and what fills the rest
    assert "0.280" in study and "No <code>jamrec study</code> on the published build" in study
    assert "run <code>jamrec study</code>" in study
    assert "missing.csv: file not found" in html and "This report shows the published" in html
    assert set(DATA_FIGURES) <= ids(html)
    assert html.count("<img ") == len(DATA_FIGURES)
    assert "comparison" not in ids(html)
    # None beside the copy: the link goes to the Data Docs its build's validation names.
    docs = re.search(r'href="([^"]*data_docs/index.html)"', html).group(1)
    assert not docs.startswith("/") and (path.parent / "reports" / docs).resolve().is_file()
    assert "No evaluated model runs" in report_markdown_summary(path)


def test_report_when_the_only_build_failed_validation(tiny_dump, tmp_path):
    from jamrec.build.pipeline import run_build

    spotify = tmp_path / "tracks.csv"
    spotify.write_text(TRACKS_HEADER + "\n")
    path = tmp_path / "wh" / "jamrec.duckdb"
    with pytest.raises(JamrecError, match=r"validation of build .* failed"):
        run_build(tiny_dump, spotify, path)
    html = build_report(path).read_text()
    assert "No build has been published yet" in html
    assert "No published data" in html and "jamrec etl" in html
    assert "No model runs yet" in html
    assert "validation-failures" in ids(html) and "interactions: expect_table_row_count" in html
    assert '<span class="fail">failed</span>' in html
    assert "<img " not in html
    summary = report_markdown_summary(path)
    assert "No published build" in summary and "failed" in summary and "|" not in summary


def test_no_warehouse_is_a_clear_error(tmp_path):
    with pytest.raises(JamrecError, match=r"no warehouse here.*jamrec etl"):
        build_report(tmp_path / "nothing.duckdb")
    assert not (tmp_path / "reports").exists()


def test_older_warehouses_and_runs_of_other_builds(trained, tmp_path):
    """A warehouse from before champions (no champion columns, no migrations) is migrated
    when opened; runs only on another build: the report says which command brings them to
    this one."""
    from jamrec.report.data import Builds
    from jamrec.report.sections_champions import champions_section
    from jamrec.report.sections_models import models_section
    from jamrec.warehouse import history
    from jamrec.warehouse.store import Warehouse

    path = tmp_path / "old.duckdb"
    shutil.copyfile(trained, path)
    con = duckdb.connect(str(path))
    try:
        for column in ("is_champion", "promotion_note", "promoted_at"):
            con.execute(f"alter table model_runs drop column if exists {column}")
        con.execute("drop table promotions")
        con.execute("drop table schema_migrations")
    finally:
        con.close()
    con = Warehouse(path).connect_readonly()
    try:
        found = con.execute("select max(version) from schema_migrations").fetchall()
        assert found == [(history.CURRENT,)]
        assert con.execute("select count(*) from champions").fetchall() == [(0,)]
        assert "No run has been promoted to champion yet." in champions_section(con)
        html = models_section(con, Builds(None, {"build_id": "b-newer"}, []))
    finally:
        con.close()
    assert "No evaluated run on the published build b-newer" in html
    assert re.search(r"[1-9]\d* on other builds\): run <code>jamrec train</code>", html)


def test_standardised_histograms_are_what_the_networks_see(tiny_warehouse):
    """The SQL z-scores equal the models' own standardisation (jamrec.models.dataset)."""
    import numpy as np

    from jamrec.models.dataset import open_dataset, standardise
    from jamrec.report import data as report_data

    con = duckdb.connect(str(tiny_warehouse), read_only=True)
    try:
        hists = {h.label: h for h in report_data.standardised_histograms(con)}
    finally:
        con.close()
    ds = open_dataset(tiny_warehouse)
    z, _, _ = standardise(ds.features, ds.candidates)
    r, bins = report_data.Z_RANGE, report_data.Z_BINS
    for j, name in enumerate(ds.feature_names):
        at = np.clip(np.floor((z[:, j] + r) / (2 * r) * bins), 0, bins - 1).astype(int)
        candidates = np.bincount(at[ds.candidates], minlength=bins)
        assert hists[name].played == candidates.tolist(), name
