"""Data-quality pages that open offline: static HTML from jamrec's own validation results.

Great Expectations' Data Docs build their lists of suites and runs with JavaScript from a
CDN, so offline their index is empty and their status column blank. These pages are
plain HTML with inline CSS, no script at all, written beside them after every
validation (a build's quality gate or ``jamrec validate``):

- ``reports/quality/index.html``: every suite (with its expectation count and notes) and
  every validation run kept (run name = the build id, or ``validate-...`` for a re-check
  of the published warehouse), passed or failed, with links;
- ``reports/quality/runs/<run>.html``: every expectation of that run, table by table (the
  data asset), passed or failed with the rows that broke it, and links to Great
  Expectations' own pages for that run when they exist;
- ``reports/quality/suites/<table>.html``: a suite's expectations and their latest result.

Each run is also kept as JSON (``runs/<run>.json``) so the index can be rewritten; only
the newest ``quality_runs_kept`` runs are kept (``JAMREC_QUALITY_RUNS_KEPT``, default 20).
"""

from __future__ import annotations

import html
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jamrec.log import log

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )

    from jamrec.build.quality import ValidationReport

# Keys of an expectation's kwargs that say what it checks (the rest is GX plumbing).
_SHOWN_KWARGS = ("value", "min_value", "max_value", "regex", "value_set", "type_", "column_list")

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; margin: .6em 0; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-weight: bold; white-space: nowrap; }
tr.ok .status, .badge.ok { color: #14532d; background: #dcfce7; }
tr.fail .status, .badge.fail { color: #fff; background: #b91c1c; }
tr.fail { background: #fee2e2; }
.badge { padding: .1em .5em; border-radius: .3em; font-weight: bold; }
code { font-size: .92em; }
.muted { color: #666; }
"""


def expectation_rows(validation: ExpectationSuiteValidationResult, table: str) -> list[dict]:
    """Every expectation of one suite's GX validation result, as plain data: the table
    (the data asset), the expectation and its column and settings, whether it passed, and
    how many rows broke it of how many."""
    rows = []
    for item in validation.results:
        config = item.expectation_config
        assert config is not None, "a suite's results carry their expectation"
        result = item.result or {}
        kwargs = config.kwargs or {}
        rows.append(
            {
                "table": table,
                "expectation": config.type,
                "column": kwargs.get("column"),
                "settings": {k: kwargs[k] for k in _SHOWN_KWARGS if k in kwargs},
                "notes": (config.meta or {}).get("notes", ""),
                "success": bool(item.success),
                "unexpected_count": result.get("unexpected_count"),
                "element_count": result.get("element_count"),
                "observed": result.get("observed_value"),
                "examples": list(result.get("partial_unexpected_list") or [])[:3],
            }
        )
    return rows


def write(
    report: ValidationReport,
    reports_dir: Path,
    run_name: str,
    expectations_dir: Path,
    keep: int = 20,
) -> Path:
    """Write the pages of one validation (a :class:`jamrec.build.quality.ValidationReport`
    whose ``expectations`` hold :func:`expectation_rows`), prune runs beyond the newest
    ``keep``, rewrite the index; return the index's path."""
    root = Path(reports_dir) / "quality"
    (root / "runs").mkdir(parents=True, exist_ok=True)
    run = {
        "run_name": run_name,
        "validated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "success": report.success,
        "seconds": round(report.seconds, 2),
        "tables": report.tables,
        "expectations": report.expectations,
        "failures": [f.line() for f in report.failures],
    }
    _atomic_write(root / "runs" / f"{_safe(run_name)}.json", json.dumps(run, default=str))
    runs = _prune(root, keep)
    suites = _suites(expectations_dir)
    docs = Path(reports_dir) / "data_docs"
    _atomic_write(root / "runs" / f"{_safe(run_name)}.html", _run_page(run, docs, root / "runs"))
    latest = runs[0] if runs else run
    (root / "suites").mkdir(exist_ok=True)
    for name, suite in suites.items():
        page = _suite_page(name, suite, latest, docs, root / "suites")
        _atomic_write(root / "suites" / f"{_safe(name)}.html", page)
    index = root / "index.html"
    _atomic_write(index, _index_page(suites, runs, docs, root))
    log.info("data-quality pages: %s (%d runs kept)", index, len(runs))
    return index


def _safe(name: str) -> str:
    """A run or suite name as a file name (build ids and table names already are)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _atomic_write(path: Path, text: str) -> None:
    """Write beside, then rename: a reader (or a crash) never sees half a page."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _prune(root: Path, keep: int) -> list[dict]:
    """The kept runs, newest first; older runs' JSON and pages are deleted."""
    runs = []
    for path in (root / "runs").glob("*.json"):
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            log.warning("%s: unreadable validation record, removed", path)
            path.unlink(missing_ok=True)
    runs.sort(key=lambda r: (r.get("validated_at", ""), r.get("run_name", "")), reverse=True)
    keep = max(keep, 1)
    for old in runs[keep:]:
        for suffix in (".json", ".html"):
            (root / "runs" / f"{_safe(old['run_name'])}{suffix}").unlink(missing_ok=True)
    return runs[:keep]


def _suites(folder: Path) -> dict[str, dict]:
    """Every suite in ``folder`` (``expectations/<table>.json``), by name."""
    suites = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            suites[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            suites[path.stem] = {"expectations": [], "meta": {"notes": f"unreadable: {exc}"}}
    return suites


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}</body></html>\n"
    )


def _badge(success: bool) -> str:
    return (
        '<span class="badge ok">passed</span>'
        if success
        else '<span class="badge fail">FAILED</span>'
    )


def _status_cell(success: bool) -> str:
    return (
        '<td class="status">&#10004; passed</td>'
        if success
        else '<td class="status">&#10008; FAILED</td>'
    )


def _rel(target: Path, start: Path) -> str:
    return os.path.relpath(target, start).replace(os.sep, "/")


def _gx_pages(docs: Path, table: str, run_name: str) -> list[Path]:
    """Great Expectations' own result pages of ``table`` in run ``run_name``, if any."""
    folder = docs / "validations" / table / run_name
    return sorted(folder.glob("**/*.html")) if folder.is_dir() else []


def _index_page(suites: dict[str, dict], runs: list[dict], docs: Path, root: Path) -> str:
    latest = runs[0] if runs else None
    failed_latest = {
        row["table"] for row in (latest or {}).get("expectations", []) if not row["success"]
    }
    suite_rows = []
    for name, suite in suites.items():
        n = len(suite.get("expectations", []))
        notes = (suite.get("meta") or {}).get("notes", "")
        checked = latest is not None and name in (latest.get("tables") or {})
        ok = name not in failed_latest
        status = _status_cell(ok) if checked else '<td class="status muted">not checked</td>'
        cls = ("ok" if ok else "fail") if checked else ""
        suite_rows.append(
            f'<tr class="{cls}" id="suite-{_esc(name)}"><td><a href="suites/{_safe(name)}.html">'
            f'{_esc(name)}</a></td>{status}<td class="num">{n}</td><td>{_esc(notes)}</td></tr>'
        )
    run_rows = []
    for run in runs:
        failed = sum(1 for row in run.get("expectations", []) if not row["success"])
        failed += sum(1 for line in run.get("failures", []) if ": table exists" in line)
        n = len(run.get("expectations", []))
        cls = "ok" if run["success"] else "fail"
        run_rows.append(
            f'<tr class="{cls}"><td><a href="runs/{_safe(run["run_name"])}.html">'
            f"{_esc(run['run_name'])}</a></td>{_status_cell(run['success'])}"
            f'<td>{_esc(run["validated_at"])}</td><td class="num">{len(run["tables"])}</td>'
            f'<td class="num">{n}</td><td class="num">{failed}</td></tr>'
        )
    gx = docs / "index.html"
    gx_link = (
        f'<p class="muted">Great Expectations\' own Data Docs (need a network for their '
        f'styles and lists): <a href="{_rel(gx, root)}">{_esc(_rel(gx, root))}</a></p>'
        if gx.exists()
        else ""
    )
    body = (
        "<h1>jamrec data quality</h1>\n"
        f"<p>{len(suites)} suites (one per published table, <code>expectations/</code>); "
        f"{len(runs)} validation runs kept, newest first. Latest: "
        + (f"{_esc(latest['run_name'])} {_badge(latest['success'])}" if latest else "none")
        + "</p>\n"
        + gx_link
        + '\n<h2 id="suites">Suites</h2>\n<table><tr><th>suite (table)</th><th>latest status'
        "</th><th>expectations</th><th>what it checks</th></tr>\n"
        + "\n".join(suite_rows)
        + '</table>\n<h2 id="runs">Validation runs</h2>\n<table><tr><th>run (build id)</th>'
        "<th>status</th><th>validated at (UTC)</th><th>tables</th><th>expectations</th>"
        "<th>failed</th></tr>\n" + "\n".join(run_rows) + "</table>\n"
    )
    return _page("jamrec data quality", body)


def _broke(row: dict) -> str:
    if row["success"]:
        return ""
    if row.get("unexpected_count") is not None:
        of = f" of {row['element_count']:,}" if row.get("element_count") is not None else ""
        text = f"{row['unexpected_count']:,}{of} rows broke it"
        if row.get("examples"):
            text += ", e.g. " + ", ".join(map(str, row["examples"]))
        return text
    return f"observed {row.get('observed')}"


def _expectation_table(rows: list[dict]) -> str:
    out = [
        "<table><tr><th>status</th><th>expectation</th><th>column</th><th>settings</th>"
        "<th>what it means</th><th>result</th></tr>"
    ]
    for row in rows:
        settings = ", ".join(f"{k}={v}" for k, v in (row.get("settings") or {}).items())
        out.append(
            f'<tr class="{"ok" if row["success"] else "fail"}">{_status_cell(row["success"])}'
            f"<td><code>{_esc(row['expectation'])}</code></td><td>{_esc(row.get('column'))}</td>"
            f"<td><code>{_esc(settings)}</code></td><td>{_esc(row.get('notes'))}</td>"
            f"<td>{_esc(_broke(row))}</td></tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def _run_page(run: dict, docs: Path, here: Path) -> str:
    by_table: dict[str, list[dict]] = {}
    for row in run["expectations"]:
        by_table.setdefault(row["table"], []).append(row)
    parts = [
        f"<h1>Validation run {_esc(run['run_name'])} {_badge(run['success'])}</h1>",
        f'<p><a href="../index.html">all suites and runs</a> &middot; validated at '
        f"{_esc(run['validated_at'])} UTC in {run['seconds']} s</p>",
    ]
    missing = [line for line in run.get("failures", []) if ": table exists" in line]
    if missing:
        items = "".join(f"<li>{_esc(line)}</li>" for line in missing)
        parts.append(f'<div class="fail"><p>Missing tables:</p><ul>{items}</ul></div>')
    for table, rows in sorted(by_table.items()):
        info = run["tables"].get(table, {})
        ok = all(r["success"] for r in rows)
        gx = _gx_pages(docs, table, run["run_name"])
        links = " ".join(f'<a href="{_rel(p, here)}">Great Expectations result</a>' for p in gx[:1])
        parts.append(
            f'<h2 id="table-{_esc(table)}">Data asset: {_esc(table)} {_badge(ok)}</h2>'
            f"<p>{info.get('rows', 0):,} rows, {len(rows)} expectations, "
            f"{sum(not r['success'] for r in rows)} failed. {links}</p>"
        )
        parts.append(_expectation_table(rows))
    return _page(f"validation {run['run_name']}", "\n".join(parts))


def _suite_page(name: str, suite: dict, latest: dict, docs: Path, here: Path) -> str:
    # Results match the suite's expectations by type and column, in order (settings may
    # differ: parameters are filled in at validation time).
    results = [r for r in latest.get("expectations", []) if r["table"] == name]
    rows = []
    for spec in suite.get("expectations", []):
        kwargs = spec.get("kwargs") or {}
        settings = {k: kwargs[k] for k in _SHOWN_KWARGS if k in kwargs}
        found = next(
            (
                r
                for r in results
                if r["expectation"] == spec.get("type") and r.get("column") == kwargs.get("column")
            ),
            None,
        )
        if found is not None:
            results.remove(found)
        status = (
            _status_cell(found["success"])
            if found
            else '<td class="status muted">not in the latest run</td>'
        )
        cls = ("ok" if found["success"] else "fail") if found else ""
        rows.append(
            f'<tr class="{cls}">{status}<td><code>{_esc(spec.get("type"))}</code></td>'
            f"<td>{_esc(kwargs.get('column'))}</td>"
            f"<td><code>{_esc(', '.join(f'{k}={v}' for k, v in settings.items()))}</code></td>"
            f"<td>{_esc((spec.get('meta') or {}).get('notes', ''))}</td>"
            f"<td>{_esc(_broke(found) if found else '')}</td></tr>"
        )
    gx = docs / "expectations" / f"{name}.html"
    gx_link = ""
    if gx.exists():
        gx_link = f' &middot; <a href="{_rel(gx, here)}">Great Expectations page</a>'
    body = (
        f'<h1>Suite {_esc(name)}</h1>\n<p><a href="../index.html">all suites and runs</a>'
        f"{gx_link} &middot; latest run: {_esc(latest.get('run_name'))}</p>\n"
        f"<p>{_esc((suite.get('meta') or {}).get('notes', ''))}</p>\n"
        "<table><tr><th>latest status</th><th>expectation</th><th>column</th><th>settings</th>"
        "<th>what it means</th><th>result</th></tr>\n" + "\n".join(rows) + "</table>\n"
    )
    return _page(f"suite {name}", body)
