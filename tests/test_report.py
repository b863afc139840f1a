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
DATA_FIGURES += ["fig-correlations", "fig-months"]
MODEL_FIGURES = ["fig-hr-at-k", "fig-ndcg-at-k", "fig-training-curves", "fig-beyond-popularity"]
MODELS = ("popularity", "random", "item_knn", "oracle", "als", "mbcf", "hybrid")
TRACKS_HEADER = "id,name,popularity,duration_ms,explicit,artists,id_artists,release_date,"
TRACKS_HEADER += "danceability,energy,key,loudness,mode,speechiness,acousticness,"
TRACKS_HEADER += "instrumentalness,liveness,valence,tempo,time_signature"


@pytest.fixture(scope="module")
def trained(tiny_warehouse, tmp_path_factory) -> Path:
    """A copy of the tiny warehouse with every default model trained (few epochs)."""
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
        assert main([*args, "--set", "hybrid.epochs=2", "--set", "als.iterations=5"]) == 0
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
    for section in ("overview", "data", "models", "quality", "stages", "rejects", "distributions"):
        assert section in ids(html)
    for section in ("features", "correlations", "dates", "comparison", "metrics-at-k"):
        assert section in ids(html)
    assert {"training-curves", "champions", "comparison-test", "comparison-val"} <= ids(html)
    assert {"paired", "seeds", "temporal", "paired-full-sample-test-ndcg10"} <= ids(html)
    paired = html[html.index('id="paired"') : html.index('id="seeds"')]
    n_models = len(MODELS) + 1  # and the two-tower
    # full_sample: every pair; full: every pair without the hybrid (never fully ranked)
    sample_rows = 1 + n_models * (n_models - 1) // 2
    full_rows = 1 + (n_models - 1) * (n_models - 2) // 2
    assert paired.count("<tr") >= sample_rows + full_rows
    assert "<td>item_knn</td>" in paired and "Holm" in paired
    figures = DATA_FIGURES + MODEL_FIGURES
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
        assert browser.evaluate("document.querySelectorAll('h2').length") == 5
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
