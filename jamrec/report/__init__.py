"""The jamrec report: one self-contained HTML page about a warehouse's data and models.

:func:`build_report` writes ``<warehouse folder>/reports/index.html``: the build and its
data source, rows through each stage, rejects, distributions of interactions and audio
features, the study jamrec grew out of re-run (its numbers beside jamrec's, a verdict on
each of its conclusions, its experiments), the model comparison under every protocol with
95% intervals, metrics against K, training curves, champions, and the data-quality result
with a link to the Great Expectations Data Docs. Images are embedded PNGs and the CSS is
inline: the page needs no network. The warehouse is opened read-only and every aggregate
is computed in DuckDB.
A partial warehouse (no runs, no published build, no truth) still gives a page that says
what is missing and which command produces it.

:func:`report_markdown_summary` gives a short markdown version (build, headline metrics,
champions) for a Prefect artifact or a terminal.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb

from jamrec.config import get_settings
from jamrec.errors import JamrecError
from jamrec.files import check_writable, write_atomic
from jamrec.log import log
from jamrec.report import data, models
from jamrec.report import html as h
from jamrec.report.sections_beyond import beyond_section
from jamrec.report.sections_build import overview_section, quality_section
from jamrec.report.sections_data import data_section
from jamrec.report.sections_models import models_section
from jamrec.report.sections_study import study_section
from jamrec.warehouse.store import Warehouse

TOC = [
    ("overview", "Build and data source"),
    ("data", "Data"),
    ("study", "The study, re-run"),
    ("models", "Models"),
    ("beyond", "Beyond the study"),
    ("quality", "Data quality"),
]


def _open(warehouse: Path | None) -> tuple[Path, duckdb.DuckDBPyConnection]:
    settings = get_settings()
    path = Path(warehouse or settings.warehouse)
    if not path.is_file():
        raise JamrecError(
            f"{path}: no warehouse here, so no report; build one with "
            "`jamrec etl --timj DUMP --spotify FILE.csv` (or `make demo`)"
        )
    return path, Warehouse(path, settings.lock_timeout_s).connect_readonly()


def default_report_path(warehouse: Path) -> Path:
    """``<warehouse folder>/reports/index.html``."""
    return Path(warehouse).parent / "reports" / "index.html"


def build_report(warehouse: Path | None = None, out: Path | None = None) -> Path:
    """Write the report of ``warehouse`` (default: the configured one) and return its path.

    ``out``: the HTML file to write (default ``<warehouse folder>/reports/index.html``; an
    existing folder gets ``index.html`` inside). The file is replaced atomically. Raises
    :class:`JamrecError` when there is no warehouse file. The same warehouse always gives
    the same bytes (no clock time is printed; figures carry no timestamps).
    """
    start = time.perf_counter()
    path, con = _open(warehouse)
    try:
        builds = data.builds(con)
        target = Path(out) if out is not None else default_report_path(path)
        if target.is_dir():
            target = target / "index.html"
        check_writable(target.parent, "jamrec report")
        body = "".join(
            [
                overview_section(con, path, builds),
                data_section(con, builds),
                study_section(con, builds),
                models_section(con, builds),
                beyond_section(con, builds),
                quality_section(path, target.parent, builds),
            ]
        )
    finally:
        con.close()
    pub = builds.published
    subtitle = (
        f"Build {pub['build_id']}, published {pub['finished']}, warehouse `{path.name}`."
        if pub
        else f"Warehouse `{path.name}`: no published build."
    )
    footer = "Written by `jamrec report` from the warehouse alone (opened read-only)."
    document = h.page("jamrec: data and model report", subtitle, TOC, body, footer)
    write_atomic(target, document.encode("utf-8"))
    log.info(
        "report %s: %.0f kB in %.1f s",
        target,
        target.stat().st_size / 1024,
        time.perf_counter() - start,
    )
    return target


def _markdown_cell(m: dict | None) -> str:
    if m is None or m["value"] is None:
        return "–"
    if m["ci_low"] is None or m["ci_high"] is None:
        return f"{m['value']:.4f}"
    return f"{m['value']:.4f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


HEADLINE = (
    ("full", "hr", 10, "full HR@10"),
    ("full", "ndcg", 10, "full NDCG@10"),
    ("full_sample", "ndcg", 10, "sample NDCG@10"),
    ("sampled_100", "hr", 10, "sampled-100 HR@10"),
    ("full", "mrr", None, "full MRR"),
)


def report_markdown_summary(
    warehouse: Path | None = None, split: str = "test", report: Path | None = None
) -> str:
    """A short markdown summary: the published build and, per model (latest evaluated run),
    the headline metrics on ``split`` with 95% intervals, and the champions when tracked.

    ``report``: the HTML report's path, mentioned at the end when given. Raises
    :class:`JamrecError` when there is no warehouse file.
    """
    path, con = _open(warehouse)
    try:
        builds = data.builds(con)
        lines = ["## jamrec report", ""]
        pub = builds.published
        last = builds.last
        if pub is None:
            lines.append(f"No published build in `{path}`: run `jamrec etl`.")
        else:
            lines.append(f"Build `{pub['build_id']}` (published {pub['finished']}).")
        if last is not None and (pub is None or last["build_id"] != pub["build_id"]):
            lines.append(f"**Last build `{last['build_id']}`: {last['status']}.**")
        runs = models.compared_runs(con, pub["build_id"]) if pub else []
        if pub is not None and not runs:
            lines += ["", "No evaluated model runs on this build yet: run `jamrec train`."]
        elif runs:
            metrics = models.metric_table(con, [r["run_id"] for r in runs])
            order = models.model_order(metrics, runs)
            model_of = {r["run_id"]: r["model"] for r in runs}
            by_key = {
                (model_of[m["run_id"]], m["protocol"], m["split"], m["metric"], m["k"]): m
                for m in metrics
            }
            lines += ["", f"{split} split, mean [95% interval]:", ""]
            lines.append("| model | " + " | ".join(label for *_, label in HEADLINE) + " |")
            lines.append("|---|" + "---:|" * len(HEADLINE))
            heads = [(protocol, split, metric, k) for protocol, metric, k, _ in HEADLINE]
            for model in order:
                cells = [_markdown_cell(by_key.get((model, *key))) for key in heads]
                lines.append(f"| {model} | " + " | ".join(cells) + " |")
        champs = models.champions(con)
        if champs.current:
            lines += [
                "",
                "Champions: " + ", ".join(f"{c['model']} `{c['run_id']}`" for c in champs.current),
            ]
    finally:
        con.close()
    if report is not None:
        lines += ["", f"Full report: `{report}`"]
    return "\n".join(lines) + "\n"


__all__ = ["build_report", "default_report_path", "report_markdown_summary"]
