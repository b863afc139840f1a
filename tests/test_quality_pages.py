"""jamrec's data-quality pages: static HTML that works offline, opened in a real headless
Chromium; every suite and run listed, a failed expectation visibly marked, old runs
pruned."""

from __future__ import annotations

import json
import os
import shutil

import duckdb
import pytest

from jamrec.build import quality
from jamrec.config import get_settings
from tests.browser import Browser, find_chromium

pytestmark = pytest.mark.slow


def _validate(path, run_name, tables, break_jams=False):
    """Validate some tables of the warehouse at ``path`` as run ``run_name``; with
    ``break_jams`` the expected row count of jams is off by one (a failed expectation)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        stage_counts, params = (
            json.loads(x) for x in con.execute(
                "select stage_counts, parameters from published_build"
            ).fetchone()
        )  # fmt: skip
        parameters = quality.expectation_parameters(con, stage_counts, params)
        if break_jams:
            parameters["jams_tsv_rows"] += 1
        return quality.validate(
            con, path.parent / "reports", parameters, tables=tables, run_name=run_name
        )
    finally:
        con.close()


@pytest.fixture
def pages(tiny_warehouse, tmp_path, monkeypatch):
    """A copy of the tiny warehouse validated three times (the second run fails), with
    two runs kept: (index page, the failed run's page, the reports folder)."""
    path = tmp_path / "jamrec.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    monkeypatch.setenv("JAMREC_QUALITY_RUNS_KEPT", "2")
    get_settings.cache_clear()
    first = _validate(path, "b-first", ["likes"])
    assert first.success
    failed = _validate(path, "b-second-fails", ["jams", "likes"], break_jams=True)
    assert not failed.success and failed.pages_path is not None
    last = _validate(path, "b-third", ["jams", "likes"])
    assert last.success
    root = tmp_path / "reports" / "quality"
    return root / "index.html", root / "runs" / "b-second-fails.html", root


def test_pages_list_every_suite_and_kept_run_and_prune_the_rest(pages):
    index, failed_page, root = pages
    html = index.read_text()
    for suite in quality.suite_names():
        assert f'id="suite-{suite}"' in html and f"suites/{suite}.html" in html
    assert "runs/b-third.html" in html and "runs/b-second-fails.html" in html
    assert "b-first" not in html  # pruned: two runs kept
    assert not (root / "runs" / "b-first.json").exists()
    assert sorted(p.name for p in (root / "runs").glob("*.json")) == [
        "b-second-fails.json",
        "b-third.json",
    ]
    assert "<script" not in html and "<script" not in failed_page.read_text()
    run = failed_page.read_text()
    assert "Data asset: jams" in run and "Validation run b-second-fails" in run
    assert "expect_table_row_count_to_equal" in run
    # Great Expectations' own result pages carry the run name too, and are linked; they
    # hold the latest validation only (each run's Data Docs replace the last, whole)
    assert (root.parent / "data_docs" / "validations" / "jams" / "b-third").is_dir()
    assert "Great Expectations result" in run


def test_pages_work_offline_in_a_browser_and_mark_the_failure(pages, tmp_path):
    index, failed_page, _ = pages
    binary = find_chromium()
    if binary is None:
        if os.environ.get("JAMREC_REQUIRE_BROWSER") == "1":
            pytest.fail("JAMREC_REQUIRE_BROWSER=1 but no chromium (apt-get install -y chromium)")
        pytest.skip("no chromium on this machine (apt-get install -y chromium)")
    browser = Browser(binary, tmp_path / "profile")
    try:
        browser.open(index.as_uri())
        # the index lists the suites (static rows, no script), with a visible status
        suites = browser.evaluate(
            "Array.from(document.querySelectorAll('tr[id^=suite-]'), r => r.id.slice(6))"
        )
        assert sorted(suites) == quality.suite_names()
        status = browser.evaluate("document.querySelector('#suite-likes .status').innerText.trim()")
        assert status.endswith("passed")
        assert browser.evaluate("document.querySelectorAll('tr.fail').length") >= 1
        # the failed run's page: the failed expectation is marked, in red, visibly
        browser.open(failed_page.as_uri())
        marked = browser.evaluate(
            """Array.from(document.querySelectorAll('tr.fail')).map(r => {
                const cell = r.querySelector('.status'); const box = cell.getBoundingClientRect();
                return {text: cell.innerText.trim(), row: r.innerText,
                        background: getComputedStyle(cell).backgroundColor,
                        visible: box.width > 0 && box.height > 0};
            })"""
        )
        assert len(marked) == 1
        (row,) = marked
        assert row["visible"] and row["text"].endswith("FAILED")
        assert "expect_table_row_count_to_equal" in row["row"] and "observed" in row["row"]
        assert row["background"] == "rgb(185, 28, 28)"
        assert browser.errors() == []
        outside = [u for u in browser.requests() if not u.startswith(("file:", "data:"))]
        assert outside == []
    finally:
        browser.close()
    assert browser.process.poll() is not None
