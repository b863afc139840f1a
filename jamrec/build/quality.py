"""The data-quality gate: Great Expectations suites for every published table.

``expectations/<table>.json`` is a Great Expectations 1.x suite (suite name = table
name). ``expectations/<table>.sql`` is the frame that suite validates: the table's
columns plus ``check_*`` columns for the set-level checks (uniqueness, references
between tables, disjointness, per-user limits). pandas is slow at those over millions of
rows, so DuckDB computes them beside the suite, and ordinary expectations on the check
columns (``check_x`` in ``[true]``) report them in the same result, the same message and
the same Data Docs, with the number of rows that broke each.

Suites take parameters (``{"$PARAMETER": name}``) from :func:`expectation_parameters`:
the build's line counts and settings, so that, for example, ``jams`` must hold exactly
the lines of ``jams.tsv`` that were not rejected.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from jamrec import files
from jamrec.build import quality_pages
from jamrec.config import PROJECT_ROOT, get_settings
from jamrec.errors import JamrecError, StorageError
from jamrec.log import log, progress
from jamrec.warehouse import sqltext
from jamrec.warehouse.store import one_row, warehouse_at

if TYPE_CHECKING:  # Great Expectations is imported when a validation runs
    import pandas as pd
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.datasource.fluent import PandasDatasource

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
# Validation results (one JSON file per validation run) under the reports folder.
RESULTS_DIR = "validations"
# Tables every build must publish; the rest (builds, truth_*) are validated when present.
REQUIRED = (
    "jams",
    "likes",
    "followers",
    "tracks",
    "interactions",
    "int_positives_without_features",
    "negatives",
    "splits",
    "splits_temporal",
    "negatives_temporal",
    "rejects",
)


@dataclass
class Failure:
    """One failed expectation: where, what, and how many rows broke it."""

    table: str
    expectation: str
    column: str | None
    description: str
    unexpected_count: int | None
    element_count: int | None
    observed: object = None
    examples: list = field(default_factory=list)

    def line(self) -> str:
        """``table: expectation(column) - description: N of M rows broke it``."""
        target = f"({self.column})" if self.column else ""
        if self.unexpected_count is not None:
            total = f" of {self.element_count:,}" if self.element_count is not None else ""
            broke = f"{self.unexpected_count:,}{total} rows broke it"
            if self.examples:
                broke += f", e.g. {', '.join(map(str, self.examples[:3]))}"
        else:
            broke = f"observed {self.observed}"
        note = f" - {self.description}" if self.description else ""
        return f"{self.table}: {self.expectation}{target}{note}: {broke}"


@dataclass
class ValidationReport:
    """The outcome of validating every suite against one DuckDB file."""

    success: bool
    tables: dict[str, dict]
    failures: list[Failure]
    docs_path: Path | None
    seconds: float
    results_path: Path | None = None
    # Every expectation's outcome (quality_pages.expectation_rows), and jamrec's own
    # offline pages of this run (reports/quality/, see jamrec.build.quality_pages).
    expectations: list[dict] = field(default_factory=list)
    pages_path: Path | None = None

    def message(self, what: str = "validation") -> str:
        """Multi-line: each failed expectation with its table and row count, then the report."""
        if self.success:
            n = sum(t["expectations"] for t in self.tables.values())
            return (
                f"{what} passed: {n} expectations on {len(self.tables)} tables "
                f"({self.seconds:.1f} s)"
            )
        lines = [
            f"{what} failed: {len(self.failures)} expectation(s) on "
            f"{len({f.table for f in self.failures})} table(s)"
        ]
        lines += [f"  {failure.line()}" for failure in self.failures]
        if self.pages_path and self.docs_path:
            lines.append(f"  report: {self.pages_path} (Great Expectations: {self.docs_path})")
        elif self.pages_path or self.docs_path:
            lines.append(f"  report: {self.pages_path or self.docs_path}")
        return "\n".join(lines)

    def summary(self) -> dict:
        """What ``builds.validation`` stores."""
        return {
            "success": self.success,
            "seconds": round(self.seconds, 2),
            "tables": self.tables,
            "failures": [f.line() for f in self.failures],
            "report": str(self.docs_path) if self.docs_path else None,
            "results": str(self.results_path) if self.results_path else None,
            "pages": str(self.pages_path) if self.pages_path else None,
        }


class ValidationFailed(JamrecError):
    """A suite failed: nothing was published. ``report`` holds the details."""

    def __init__(self, report: ValidationReport, what: str = "validation"):
        self.report = report
        super().__init__(report.message(what))


def suite_names(folder: Path = EXPECTATIONS_DIR) -> list[str]:
    """Tables that have a suite in ``folder``."""
    return sorted(p.stem for p in folder.glob("*.json"))


def load_suite(table: str, folder: Path = EXPECTATIONS_DIR) -> dict:
    """A suite's JSON (``name``, ``expectations``, ``meta``) and its frame SQL."""
    suite = json.loads((folder / f"{table}.json").read_text())
    if suite.get("name") != table:
        raise JamrecError(f"{folder / f'{table}.json'}: suite name must be {table!r}")
    sql_path = folder / f"{table}.sql"
    suite["frame_sql"] = (
        sql_path.read_text()
        if sql_path.exists()
        else f"select * from {sqltext.identifier(table, what='suite table')}"
    )
    return suite


def expectation_parameters(
    con: duckdb.DuckDBPyConnection, stage_counts: dict, params: dict
) -> dict:
    """Values for the suites' ``$PARAMETER`` placeholders.

    ``<file>_rows``: lines of an input file that were not rejected (``jams_tsv_rows`` ...;
    for the Spotify file, ``spotify_records``: records not rejected, repeats included);
    ``n_negatives``, ``k_test``, ``k_val``: the build's parameters.
    """
    rejected = dict(con.execute("select source_file, count(*) from rejects group by 1").fetchall())
    values = {
        "n_negatives": int(params.get("n_negatives", 10)),
        "k_test": int(params.get("k_test", 1)),
        "k_val": int(params.get("k_val", 1)),
    }
    values["interactions_rows"] = one_row(con, "select count(*) from interactions")[0]
    for name, counts in stage_counts.get("files", {}).items():
        if name.endswith(".tsv"):
            values[name.replace(".", "_") + "_rows"] = counts["lines"] - rejected.get(name, 0)
        else:
            values["spotify_records"] = counts["records"] - rejected.get(name, 0)
    return values


def _context(staging: Path) -> AbstractDataContext:
    """A fresh, in-memory Great Expectations context for one validation run.

    Nothing of GX's own is kept between runs: suites come from ``expectations/`` (the
    source of truth) every time, so no file GX rewrites in place (a suite, a checkpoint,
    a result) can be left truncated by a kill or a full disk and break later runs. Data
    Docs are written into ``staging`` and swapped in whole (:func:`_publish_docs`).
    """
    import great_expectations as gx
    import great_expectations.execution_engine.pandas_execution_engine as pandas_engine
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX hashes every frame under 1 GB for a batch "fingerprint" that is only metadata;
    # at TIMJ scale that costs seconds per table. jamrec fingerprints its inputs itself.
    pandas_engine.HASH_THRESHOLD = 0

    for noisy in ("great_expectations", "great_expectations.core", "tzlocal"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    for name in list(context.list_data_docs_sites()):
        context.delete_data_docs_site(name)
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(staging.resolve()),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    # GX's DataDocsSiteConfigTypedDict is incomplete (no show_how_to_buttons)
    context.add_data_docs_site(site_name="jamrec", site_config=site)  # type: ignore[arg-type]
    return context


def heal_store(reports_dir: Path) -> list[str]:
    """Find and clear what a killed or starved validation can leave under ``reports_dir``:
    empty or truncated result files (removed, with a warning), the on-disk GX store of
    older jamrec versions (``reports/gx``, no longer used: removed, with a warning when
    damaged), and temporary files and folders of writers that died. Returns the warnings."""
    warnings = []
    legacy = reports_dir / "gx"
    if legacy.is_dir():
        damaged = [p for p in legacy.rglob("*.json") if _damaged_json(p)]
        if damaged:
            warnings.append(
                f"{legacy}: damaged Great Expectations store ({len(damaged)} empty or "
                f"truncated file(s), e.g. {damaged[0].relative_to(legacy)}); removed - "
                "suites are read from expectations/ on every run"
            )
        shutil.rmtree(legacy, ignore_errors=True)
    results = reports_dir / RESULTS_DIR
    if results.is_dir():
        for path in sorted(results.glob("*.json")):
            if _damaged_json(path):
                warnings.append(f"{path}: damaged validation result (empty or truncated); removed")
                path.unlink(missing_ok=True)
    files.remove_dead_leftovers(results, ".*.tmp")
    files.remove_dead_leftovers(reports_dir, ".data_docs*")
    for warning in warnings:
        log.warning("%s", warning)
    return warnings


def _damaged_json(path: Path) -> bool:
    try:
        json.loads(path.read_bytes() or b"")
    except (ValueError, UnicodeDecodeError):
        return True
    except OSError:
        return False
    return False


def save_results(reports_dir: Path, run_name: str, summary: dict, results: dict) -> Path:
    """Write one validation's results (the summary and GX's result per table) to
    ``reports/validations/<UTC time>-<run_name>.json``, atomically, and keep only the
    newest ``keep_validations`` files (:class:`jamrec.config.Settings`)."""
    from jamrec.config import get_settings
    from jamrec.provenance import now

    folder = reports_dir / RESULTS_DIR
    stamp = now().strftime("%Y%m%dT%H%M%S%fZ")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in run_name)[:80]
    path = folder / f"{stamp}-{safe}.json"
    payload = {"run_name": run_name, "summary": summary, "results": results}
    files.write_atomic(path, json.dumps(payload, default=str, sort_keys=True).encode())
    prune_results(folder, get_settings().keep_validations)
    return path


def prune_results(folder: Path, keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest result files of ``folder`` (names sort by time)."""
    found = sorted(folder.glob("*.json"))
    stale = found[: max(0, len(found) - keep)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def validate(
    con: duckdb.DuckDBPyConnection,
    reports_dir: Path,
    parameters: dict,
    variables: dict | None = None,
    folder: Path = EXPECTATIONS_DIR,
    tables: list[str] | None = None,
    run_name: str | None = None,
) -> ValidationReport:
    """Run every suite against the tables of ``con``; write Data Docs under ``reports_dir``.

    ``run_name`` names the validation run in the Data Docs and in jamrec's offline pages
    (:mod:`jamrec.build.quality_pages`): the build id, or ``validate-...`` for a re-check.

    A required table that is missing fails validation; a suite whose table is absent and
    not required (``truth_*`` on real data) is skipped. An expectation that raises is a
    broken suite: :class:`JamrecError`, not bad data. ``tables`` limits the run to some
    suites (default: all). The results go to ``reports/validations/`` (:func:`save_results`,
    named after ``run_name``), the Data Docs to ``reports/data_docs/``, each written whole
    or not at all.
    """
    start = time.perf_counter()
    run_name = run_name or f"validate-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    for key, value in (variables or {}).items():
        con.execute(f"set variable {sqltext.identifier(key)} = $v", {"v": value})
    present = {
        t
        for (t,) in con.execute(
            "select table_name from duckdb_tables() "
            "where database_name = current_database() and schema_name = 'main'"
        ).fetchall()
    }
    reports_dir.mkdir(parents=True, exist_ok=True)
    heal_store(reports_dir)
    staging = reports_dir / f".data_docs.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        report, raw = _validate_into(con, staging, parameters, folder, tables, present, run_name)
        docs = reports_dir / "data_docs"
        if (staging / "index.html").exists():
            files.replace_dir(staging, docs)
            report.docs_path = _relative(docs / "index.html")
        report.seconds = time.perf_counter() - start
        report.results_path = _relative(save_results(reports_dir, run_name, report.summary(), raw))
        pages = quality_pages.write(
            report, reports_dir, run_name, folder, get_settings().quality_runs_kept
        )
        report.pages_path = _relative(pages)
    except OSError as exc:
        raise StorageError(files.describe_os_error(exc)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.perf_counter() - start
    return report


def _validate_into(
    con: duckdb.DuckDBPyConnection,
    staging: Path,
    parameters: dict,
    folder: Path,
    tables: list[str] | None,
    present: set[str],
    run_name: str,
) -> tuple[ValidationReport, dict[str, dict]]:
    """Validate every suite with a fresh context whose Data Docs go to ``staging``:
    the report (no paths yet) and GX's result per table as JSON."""
    context = _context(staging)
    source = context.data_sources.add_or_update_pandas("warehouse")
    names = tables or suite_names(folder)
    failures = [_missing(table) for table in names if table not in present and table in REQUIRED]
    results: dict[str, dict] = {}
    raw: dict[str, dict] = {}
    expectations: list[dict] = []
    todo = [(t, load_suite(t, folder)) for t in names if t in present]
    with ThreadPoolExecutor(max_workers=1) as pool, closing(con.cursor()) as cursor:
        prefetched = _prefetched(pool, cursor, folder, todo)
        for table, spec, frame, table_start in progress(
            prefetched, "validate", total=len(todo), name=lambda item: item[0]
        ):
            validation = _run_suite(context, source, table, spec, frame, parameters, run_name)
            expectations += quality_pages.expectation_rows(validation, table)
            found = _failures(validation, table, folder)
            failures += found
            raw[table] = validation.to_json_dict()
            results[table] = {
                "rows": len(frame),
                "expectations": len(validation.results),
                "failed": len(found),
                "seconds": round(time.perf_counter() - table_start, 2),
            }
            log.info(
                "validate %s: %.1f s  rows=%s expectations=%d failed=%d",
                table,
                results[table]["seconds"],
                f"{len(frame):,}",
                len(validation.results),
                len(found),
            )
            del frame
    with_docs_start = time.perf_counter()
    context.build_data_docs(site_names=["jamrec"])
    log.debug("data docs built in %.1f s", time.perf_counter() - with_docs_start)
    report = ValidationReport(
        success=not failures,
        tables=results,
        failures=failures,
        docs_path=None,
        seconds=0.0,
        expectations=expectations,
    )
    return report, raw


def _missing(table: str) -> Failure:
    """The failure of a required table the build did not produce."""
    return Failure(
        table, "table exists", None, "the build did not produce it", None, None, "missing"
    )


def _run_suite(
    context: AbstractDataContext,
    source: PandasDatasource,
    table: str,
    spec: dict,
    frame: pd.DataFrame,
    parameters: dict,
    run_name: str | None = None,
) -> ExpectationSuiteValidationResult:
    """Validate ``frame`` with the suite ``spec`` of ``table``: GX's validation result."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    suite = context.suites.add_or_update(
        gx.ExpectationSuite(
            name=table, expectations=spec["expectations"], meta=spec.get("meta", {})
        )
    )
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=table, data=_asset(source, table), suite=suite)
    )
    # BASIC: counts and up to 20 examples per expectation, all a Failure and the pages show.
    # SUMMARY also builds every map expectation's index list and pandas query, each a
    # pass over the whole frame that nothing reads.
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=table, validation_definitions=[definition], actions=[], result_format="BASIC"
        )
    )
    result = checkpoint.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        run_id=RunIdentifier(run_name=run_name) if run_name else None,
    )
    (validation,) = result.run_results.values()
    _forget_batches(source)
    return validation


def _forget_batches(source: PandasDatasource) -> None:
    """Drop the frames GX's execution engine keeps of every batch it validated: it caches
    each batch's data for the context's life (the published tables' frames, 3 GB at TIMJ
    scale, would otherwise stay resident in the process that trains afterwards)."""
    batches = source.get_execution_engine().batch_manager
    batches.reset_batch_cache()
    batches.batch_data_cache.clear()


def _failures(
    validation: ExpectationSuiteValidationResult, table: str, folder: Path
) -> list[Failure]:
    """The failed expectations of one suite's result; an expectation that raised is a
    broken suite (:class:`JamrecError`), not bad data."""
    out = []
    for item in validation.results:
        config = item.expectation_config
        assert config is not None, "a suite's results carry their expectation"
        problem = _exception(item.exception_info)
        if problem:
            raise JamrecError(
                f"{folder / (table + '.json')}: {config.type}"
                f"({config.kwargs.get('column', '')}) could not be evaluated: {problem}"
            )
        if item.success:
            continue
        res = item.result or {}
        out.append(
            Failure(
                table,
                config.type,
                config.kwargs.get("column"),
                (config.meta or {}).get("notes", ""),
                res.get("unexpected_count"),
                res.get("element_count"),
                res.get("observed_value"),
                list(res.get("partial_unexpected_list") or []),
            )
        )
    return out


def _prefetched(
    pool: ThreadPoolExecutor,
    cursor: duckdb.DuckDBPyConnection,
    folder: Path,
    todo: list[tuple[str, dict]],
) -> Iterator[tuple[str, dict, pd.DataFrame, float]]:
    """Yield (table, suite, frame, start time): DuckDB builds the next table's frame in
    a thread while Great Expectations checks the current one."""
    if not todo:
        return
    pending = pool.submit(_frame, cursor, folder, *todo[0])
    for position, (table, spec) in enumerate(todo):
        start = time.perf_counter()
        frame = pending.result()
        if position + 1 < len(todo):
            pending = pool.submit(_frame, cursor, folder, *todo[position + 1])
        yield table, spec, frame, start


def _frame(cursor: duckdb.DuckDBPyConnection, folder: Path, table: str, spec: dict) -> pd.DataFrame:
    """The frame a suite validates: its SQL's result as pandas over Arrow memory."""
    try:
        arrow = cursor.sql(spec["frame_sql"]).to_arrow_table()
    except duckdb.Error as exc:
        raise JamrecError(f"{folder / (table + '.sql')}: {str(exc).splitlines()[0]}") from exc
    # Low-cardinality text as categories: GX filters the whole frame once per expectation.
    few = [c for c in ("uri_status", "split", "source_file", "reason") if c in arrow.column_names]
    return arrow.to_pandas(categories=few)


def _exception(info: object) -> str | None:
    """The message of an exception an expectation raised, however GX nests it."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        found = _exception(value)
        if found:
            return found
    return None


def _asset(source: PandasDatasource, table: str) -> BatchDefinition:
    try:
        asset = source.get_asset(table)
    except LookupError:
        asset = source.add_dataframe_asset(table)
    try:
        return asset.get_batch_definition(table)
    except (KeyError, LookupError):
        return asset.add_batch_definition_whole_dataframe(table)


def _relative(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def validate_published(warehouse: Path | None = None) -> ValidationReport:
    """Re-validate the published warehouse (read-only) against the suites.

    Parameters come from the last published build's row in ``builds`` (its line
    counts and settings). Data Docs go to ``warehouse/reports/``.
    """
    store = warehouse_at(warehouse)
    files.check_writable(store.path.parent / "reports", "jamrec validate (its report)")
    con = store.connect_readonly()
    try:
        row = con.execute("select stage_counts, parameters from published_build").fetchone()
        if row is None:
            raise JamrecError(f"{store.path}: no published build to validate")
        stage_counts, params = (json.loads(x) if x else {} for x in row)
        parameters = expectation_parameters(con, stage_counts, params)
        build_id = one_row(con, "select build_id from published_build")[0]
        run_name = f"validate-{build_id}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
        return validate(con, store.path.parent / "reports", parameters, run_name=run_name)
    finally:
        con.close()


def artifact_markdown(summary: dict) -> str:
    """A short per-table summary of a validation (for the Prefect flow run's artifact)."""
    verdict = "passed" if summary["success"] else "FAILED"
    lines = [
        f"### Data quality: {verdict}",
        "",
        "| table | rows | expectations | failed | seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    for table, t in sorted(summary["tables"].items()):
        lines.append(
            f"| {table} | {t['rows']:,} | {t['expectations']} | {t['failed']} | {t['seconds']} |"
        )
    if summary["failures"]:
        lines += ["", "Failed expectations:", ""]
        lines += [f"- {line}" for line in summary["failures"]]
    if summary.get("pages"):
        lines += ["", f"Data-quality pages (offline): `{summary['pages']}`"]
    if summary.get("report"):
        lines += ["", f"Data Docs: `{summary['report']}`"]
    return "\n".join(lines)
