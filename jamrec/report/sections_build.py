"""The report's overview (which build, from what data) and data-quality sections."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from jamrec.report import data
from jamrec.report import html as h
from jamrec.report.data import Builds
from jamrec.warehouse.store import table_names

ETL = "`jamrec etl --timj DUMP --spotify FILE.csv`"
STATES = {"running": "is still running", "abandoned": "was abandoned (its process died)"}


def outcome(build: dict) -> str:
    """``failed: <error>``, ``is still running``, ...: what became of a build."""
    state = STATES.get(build["status"], build["status"])
    return state + (f": {build['error']}" if build.get("error") else "")


def overview_section(con: duckdb.DuckDBPyConnection, warehouse: Path, builds: Builds) -> str:
    """Which build the report shows, where its data came from, and the recent builds."""
    out = [h.heading(2, "overview", "Build and data source")]
    pub, last = builds.published, builds.last
    if last is None:
        out.append(h.note(f"No builds recorded in this warehouse: build it with {ETL}.", "missing"))
    elif pub is None:
        text = (
            f"No build has been published yet: the last build {last['build_id']} {outcome(last)}."
        )
        out.append(h.note(f"{text} Fix it and rerun {ETL}.", "bad"))
    elif last["build_id"] != pub["build_id"]:
        text = (
            f"The last build {last['build_id']} {outcome(last)}. This report shows the published "
            f"build {pub['build_id']}, whose tables that build left untouched."
        )
        out.append(h.note(text, "bad"))
    pairs = [("warehouse", f"`{warehouse}`")]
    if pub is not None:
        params = pub.get("parameters") or {}
        variant = ((pub.get("inputs") or {}).get("spotify") or {}).get("variant")
        generated = any(t.startswith("truth_") for t in table_names(con))
        share = (data.planted(con) or {}).get("audio_share", 0)
        kind = (
            "generated (synthetic, with planted preferences in `truth_` tables; "
            f"audio share {share:g})"
            if generated
            else "real (no `truth_` tables)"
        )
        knobs = ("seed", "n_negatives", "k_test", "k_val")
        pairs += [
            ("published build", f"{pub['build_id']} (finished {pub['finished']})"),
            ("TIMJ dump", f"`{params.get('timj', '?')}`"),
            (
                "Spotify features",
                f"`{params.get('spotify', '?')}`" + (f" ({variant})" if variant else ""),
            ),
            ("kind of data", kind),
            ("build parameters", ", ".join(f"{k} {params[k]}" for k in knobs if k in params)),
            ("inputs fingerprint", f"`{str(pub.get('inputs_fingerprint') or '–')[:16]}`"),
            ("code version", str(pub.get("code_version") or "–")),
        ]
    out.append(h.meta(pairs))
    if builds.recent:
        body = [
            [
                b["build_id"],
                b["status"],
                b["started"],
                h.seconds(b["seconds"]),
                (b.get("error") or "")[:200],
            ]
            for b in builds.recent
        ]
        out.append(h.para("Recent builds, newest first:"))
        out.append(h.table(["build", "status", "started", "seconds", "error"], body, numeric={3}))
    return "".join(out)


def quality_section(warehouse: Path, out_dir: Path, builds: Builds) -> str:
    """A relative link to the Great Expectations Data Docs and the last validation result."""
    out = [h.heading(2, "quality", "Data quality")]
    pages = _quality_pages(warehouse, builds)
    if pages is not None:
        href = os.path.relpath(pages, out_dir.resolve()).replace(os.sep, "/")
        text = "Data-quality pages (open offline; every suite and validation run, pass or fail): "
        out.append(f"<p>{h.esc(text)}{h.link(href, href)}</p>\n")
    docs = _data_docs(warehouse, builds)
    if docs is not None:
        href = os.path.relpath(docs, out_dir.resolve()).replace(os.sep, "/")
        text = "Great Expectations Data Docs (every suite, every expectation, every run): "
        out.append(f"<p>{h.esc(text)}{h.link(href, href)}</p>\n")
    else:
        text = (
            "No Data Docs found: every `jamrec etl` and `jamrec validate` writes them to "
            "`reports/data_docs/` beside the warehouse."
        )
        out.append(h.note(text, "missing"))
    build = next((b for b in builds.recent if b.get("validation")), None)
    if build is None:
        text = (
            f"No validation result recorded: a build records one at its quality gate ({ETL}); "
            "`jamrec validate` re-checks the published tables."
        )
        out.append(h.note(text, "missing"))
        return "".join(out)
    result = build["validation"]
    ok = result.get("success")
    status = f'<span class="{"ok" if ok else "fail"}">{"passed" if ok else "failed"}</span>'
    which = "the last build" if build is builds.last else "the latest build with a result"
    seconds = h.seconds(result.get("seconds"))
    out.append(
        f"<p>Validation of {which} {h.esc(build['build_id'])} ({h.esc(build['status'])}): "
        f"{status} in {h.esc(seconds)} s.</p>\n"
    )
    tables = result.get("tables") or {}
    body = [
        [t, v.get("rows"), v.get("expectations"), v.get("failed"), h.seconds(v.get("seconds"))]
        for t, v in sorted(tables.items())
    ]
    if body:
        headers = ["table", "rows", "expectations", "failed", "seconds"]
        out.append(h.table(headers, body, numeric={1, 2, 3, 4}))
    failures = result.get("failures") or []
    if failures:
        items = "".join(f"<li><code>{h.esc(f)}</code></li>" for f in failures)
        out.append(
            f'<div class="bad" id="validation-failures"><p>{len(failures)} failed '
            f"expectation(s):</p><ul>{items}</ul></div>\n"
        )
    else:
        out.append(h.para("No expectation failed."))
    return "".join(out)


def _data_docs(warehouse: Path, builds: Builds) -> Path | None:
    """The Data Docs index beside the warehouse, else the one a validation result names."""
    candidates = [warehouse.parent / "reports" / "data_docs" / "index.html"]
    for b in builds.recent:
        report = (b.get("validation") or {}).get("report")
        if report:
            candidates.append(Path(report))
    for path in candidates:
        if path.is_file():
            return path.resolve()
    return None


def _quality_pages(warehouse: Path, builds: Builds) -> Path | None:
    """jamrec's offline data-quality index beside the warehouse, else the one a
    validation result names."""
    candidates = [warehouse.parent / "reports" / "quality" / "index.html"]
    candidates += [
        Path(b["validation"]["pages"])
        for b in builds.recent
        if (b.get("validation") or {}).get("pages")
    ]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    return None
