"""Build the warehouse: load raw files, run the SQL transforms, publish.

A build writes its own DuckDB file in ``warehouse/.work/`` and touches the published
warehouse only twice, copy-on-write (see :mod:`jamrec.warehouse.store`): once to register
its ``builds`` row, once to publish (or to record its failure). Each stage is a plain
function of a :class:`Build`, so the CLI and the Prefect flow run the same code.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.ipc
from duckdb import sqltypes

from jamrec import files
from jamrec.build import ingest, records, sqlrunner
from jamrec.build.spotify import read_spotify
from jamrec.config import BuildParams, get_settings
from jamrec.errors import JamrecError
from jamrec.log import log, stage
from jamrec.provenance import file_sha256, new_build_id, now, relative
from jamrec.textfix import repair_text
from jamrec.timing import Timing
from jamrec.warehouse import sqltext
from jamrec.warehouse.query import REJECT_REASON
from jamrec.warehouse.store import Warehouse, connect_new, one_row

# Tables a build produces but does not publish stay in its file only until publishing.
META_TABLE = "build_meta"


@dataclass(frozen=True)
class Build:
    """One warehouse build in progress: its id, inputs, parameters and working file."""

    build_id: str
    warehouse: Path
    file: Path
    timj: Path
    spotify: Path
    params: BuildParams = field(default_factory=BuildParams)
    lock_timeout_s: float = 60.0

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A read-write connection to the build's own file, with jamrec's SQL functions.

        Settings from the environment (threads, memory limit) go to DuckDB as connection
        options, never as SQL text."""
        settings = get_settings()
        options: dict = {"preserve_insertion_order": True}
        if settings.duckdb_threads:
            options["threads"] = int(settings.duckdb_threads)
        if settings.duckdb_memory_limit:
            options["memory_limit"] = str(settings.duckdb_memory_limit)
        try:
            con = connect_new(self.file, options)
        except duckdb.InvalidInputException as exc:
            raise JamrecError(
                f"JAMREC_DUCKDB_THREADS / JAMREC_DUCKDB_MEMORY_LIMIT: {str(exc).splitlines()[0]}"
            ) from None
        con.create_function(
            "repair_text", repair_text, [sqltypes.VARCHAR], sqltypes.VARCHAR, side_effects=False
        )
        return con

    @property
    def store(self) -> Warehouse:
        """The published warehouse this build will replace."""
        return Warehouse(self.warehouse, self.lock_timeout_s)


_BUILD_LOCKS: dict[str, int] = {}


def start_build(
    timj: Path,
    spotify: Path,
    warehouse: Path | None = None,
    params: BuildParams | None = None,
    fresh: bool = False,
    decision: dict | None = None,
) -> Build:
    """Check the inputs and the warehouse folder, take the build lock, register a
    ``running`` row in ``builds``, create the build file.

    ``decision`` is the incremental check that came first
    (:func:`jamrec.build.incremental.build_decision`): its timing is kept with the build's.

    Only one build runs at a time per warehouse: a second one fails at once, naming the
    process that holds the lock. Nothing starts when an input path cannot be read (a
    symlink loop, ...), the warehouse folder cannot be written, or the published file is
    damaged (unless ``fresh``: it is then set aside under ``.versions/``, where
    ``jamrec rollback`` finds it, and the build starts a new history).
    """
    start = time.perf_counter()
    settings = get_settings()
    warehouse = Path(warehouse or settings.warehouse)
    params = params or BuildParams()
    ingest.check_input_path(timj, "--timj")
    ingest.check_input_path(spotify, "--spotify")
    build_id = new_build_id()
    store = Warehouse(warehouse, settings.lock_timeout_s)
    store.check_writable("jamrec etl")
    files.check_writable(reports_dir(warehouse), "jamrec etl (its validation report)")
    _take_build_lock(store, build_id)
    try:
        if fresh:
            _set_aside(store, build_id)
        elif store.exists():
            store.check_readable()
        with store.update(f"register build {build_id}") as con:
            records.register(
                con,
                build_id,
                now(),
                {
                    **params.model_dump(),
                    "timj": relative(timj),
                    "spotify": relative(spotify),
                },
            )
        build = Build(
            build_id,
            warehouse,
            store.new_file(f"build-{build_id}"),
            Path(timj),
            Path(spotify),
            params,
            settings.lock_timeout_s,
        )
        shutil.rmtree(raw_dir(build), ignore_errors=True)
        checked = (
            [Timing.from_json(decision["timing"])] if decision and "timing" in decision else []
        )
        con = build.connect()
        try:
            add_timings(con, [*checked, Timing.since("start", start)])
        finally:
            con.close()
    except BaseException:
        release_build_lock(build_id)
        raise
    log.info("build %s started: %s + %s -> %s", build_id, timj, spotify, warehouse)
    return build


def _set_aside(store: Warehouse, build_id: str) -> None:
    """``etl --fresh``: keep the published file (damaged or not) under ``.versions/`` and
    take it away, so the build starts from nothing."""
    if not store.exists():
        return
    with store.lock(f"set the warehouse aside for fresh build {build_id}"):
        kept = store.keep_version(f"set-aside-before-{build_id}", force=True)
        store.path.unlink()
        Path(str(store.path) + ".wal").unlink(missing_ok=True)
    log.warning(
        "%s set aside as %s for a fresh build (kept for inspection; to undo, copy it back "
        "over %s while no jamrec command runs)",
        store.path,
        kept,
        store.path,
    )


def _take_build_lock(store: Warehouse, build_id: str) -> None:
    store.path.parent.mkdir(parents=True, exist_ok=True)
    path = store.path.with_name(store.path.name + ".build.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise JamrecError(
            f"{path}: another build is running ({holder}); wait for it to finish"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}, build {build_id}".encode(), 0)
    _BUILD_LOCKS[build_id] = fd


def release_build_lock(build_id: str) -> None:
    fd = _BUILD_LOCKS.pop(build_id, None)
    if fd is not None:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def put_meta(con: duckdb.DuckDBPyConnection, key: str, value: object) -> None:
    _meta_table(con)
    con.execute(
        f"insert or replace into {META_TABLE} values ($k, $v)", {"k": key, "v": json.dumps(value)}
    )


def _meta_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"create table if not exists {META_TABLE} (key varchar primary key, value json)")


def get_meta(con: duckdb.DuckDBPyConnection) -> dict:
    rows = con.execute(f"select key, value from {META_TABLE}").fetchall()
    return {key: json.loads(value) for key, value in rows}


def add_timings(con: duckdb.DuckDBPyConnection, timings: list[Timing]) -> None:
    """Keep measured stages in the build's own file until the build is published or
    fails (:func:`meta_timings` reads them back)."""
    _meta_table(con)
    put_meta(con, "timings", [*get_meta(con).get("timings", []), *(t.as_json() for t in timings)])


def meta_timings(meta: dict) -> list[Timing]:
    """The stages a build measured so far, from its :func:`get_meta`."""
    return [Timing.from_json(t) for t in meta.get("timings", [])]


def load_timj(build: Build) -> dict:
    """Read ``jams.tsv``, ``likes.tsv`` and ``followers.tsv`` as numbered raw lines.

    Writes ``raw_jams``, ``raw_likes``, ``raw_followers`` (``line_number``, ``raw_line``)
    as Arrow files beside the build file, for :func:`transform` to scan without a copy.
    Returns, per file, its fingerprint and line count.
    """
    sources = ingest.locate_timj(build.timj)
    info = {}
    timings = []
    for name, source in sources.items():
        with stage(f"load {name}") as counts:
            data = source.read_bytes()
            raw = ingest.split_lines(source, data)
            ingest.check_header(raw, ingest.TIMJ_HEADERS[name])
            n_invalid, first_invalid = _invalid_utf8_lines(data, raw)
            del data
            ingest.check_utf8_share(raw, n_invalid, first_invalid)
            _save_raw(build, "raw_" + name.removesuffix(".tsv"), raw.table)
            for note in raw.notes:
                log.warning("%s: %s", source.display, note)
            counts.update(lines=raw.n_lines - 1)
            info[name] = {**raw.fingerprint(), "data_lines": raw.n_lines - 1, "notes": raw.notes}
        timings.append(Timing.of_stage(f"load {name}", counts, rows=counts["lines"]))
    _with_meta(build, "timj", info, timings)
    return info


def _invalid_utf8_lines(data: bytes, raw: ingest.RawLines) -> tuple[int, int | None]:
    """How many lines are not UTF-8, and the first of them (a whole-file check first)."""
    try:
        data.decode("utf-8")
        return 0, None
    except UnicodeDecodeError:
        pass
    lines = raw.table  # noqa: F841 - scanned by DuckDB by name
    with duckdb.connect() as con:
        # executed here, not in a helper: DuckDB finds `lines` in the calling frame
        row = con.execute(
            "select count(*), min(line_number) from lines where try(decode(raw_line)) is null"
        ).fetchone()
    assert row is not None  # an aggregate: always one row
    count, first = row
    return count, first


def raw_dir(build: Build) -> Path:
    """Where a build keeps its raw inputs as Arrow files until it is published."""
    return build.file.with_name(build.file.name + ".raw")


def _save_raw(build: Build, name: str, table: pa.Table) -> None:
    folder = raw_dir(build)
    folder.mkdir(parents=True, exist_ok=True)
    with (
        pa.OSFile(str(folder / f"{name}.arrow"), "wb") as sink,
        pa.ipc.new_file(sink, table.schema) as writer,
    ):
        writer.write_table(table, max_chunksize=1 << 20)


def _register_raw(build: Build, con: duckdb.DuckDBPyConnection) -> list[str]:
    """Make every raw Arrow file of the build scannable in ``con`` under its name."""
    names = []
    for path in sorted(raw_dir(build).glob("*.arrow")):
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        con.register(path.stem, table)
        names.append(path.stem)
    return names


def _with_meta(build: Build, key: str, value: object, timings: list[Timing]) -> None:
    con = build.connect()
    try:
        put_meta(con, key, value)
        add_timings(con, timings)
    finally:
        con.close()


def load_spotify(build: Build) -> dict:
    """Load the Spotify features file (any of the five variants) as canonical raw text.

    Creates ``raw_tracks`` (one row per CSV record), ``raw_tracks_lines`` (the file's
    lines, for showing rejects) and ``raw_tracks_unreadable`` (records with the wrong
    field count or bytes that are not UTF-8).
    """
    source = ingest.Source(build.spotify.name, build.spotify)
    if build.spotify.is_dir():
        raise ingest.InputError(build.spotify, "is a folder; --spotify takes one CSV file")
    con = duckdb.connect()
    try:
        with stage(f"load {build.spotify.name}") as counts:
            parsed = read_spotify(con, source)
            rows, bad = parsed.rows, parsed.bad_records
            _save_raw(build, "raw_tracks", rows)
            _save_raw(build, "raw_tracks_lines", parsed.lines.table)
            _save_raw(build, "raw_tracks_unreadable", bad)
            invalid = [r for r in bad.to_pylist() if r["reason"] == "invalid UTF-8"]
            ingest.check_utf8_share(
                parsed.lines, len(invalid), invalid[0]["line_number"] if invalid else None
            )
            for note in parsed.lines.notes:
                log.warning("%s: %s", source.display, note)
            counts.update(variant=parsed.variant.name, records=rows.num_rows + bad.num_rows)
            info = {
                **parsed.lines.fingerprint(),
                "variant": parsed.variant.name,
                "data_lines": parsed.lines.n_lines - 1,
                "records": rows.num_rows + bad.num_rows,
                "notes": parsed.lines.notes,
            }
    finally:
        con.close()
    timing = Timing.of_stage(f"load {build.spotify.name}", counts, rows=counts["records"])
    _with_meta(build, "spotify", info, [timing])
    return info


# The truth files a generated dump may hold, and the table each becomes: no other name
# from a dump's truth/ folder reaches SQL (a file name is data, not an identifier).
TRUTH_FILES = {"users.parquet": "truth_users", "tracks.parquet": "truth_tracks"}


def load_truth(build: Build) -> dict:
    """Load a generated dump's ``truth/`` folder as ``truth_*`` tables (none for real data).

    Only the files in :data:`TRUTH_FILES` are loaded; any other ``*.parquet`` there is
    reported (``ignored`` in the build's inputs, and a warning naming it) and left alone.
    """
    folder = ingest.locate_truth(build.timj)
    info: dict = {}
    if folder is None:
        return info
    con = build.connect()
    try:
        with stage("load truth") as counts:
            for path in sorted(folder.glob("*.parquet")):
                table = TRUTH_FILES.get(path.name)
                if table is None:
                    log.warning(
                        "%s: unknown truth file %r ignored (expected one of %s)",
                        folder,
                        path.name,
                        ", ".join(sorted(TRUTH_FILES)),
                    )
                    info.setdefault("ignored", []).append(path.name)
                    continue
                name = sqltext.identifier(table, TRUTH_FILES.values(), "truth table")
                try:
                    con.execute(
                        f"create or replace table {name} as select * from read_parquet($p)",
                        {"p": str(path)},
                    )
                except duckdb.Error as exc:
                    raise ingest.InputError(path, str(exc).splitlines()[0]) from None
                info[table] = {"file": str(path), "sha256": file_sha256(path)}
                counts[table] = one_row(con, f"select count(*) from {name}")[0]
            params = folder / "params.json"
            if params.is_file():
                values = json.loads(params.read_text())
                con.execute("create or replace table truth_params (name varchar, value json)")
                con.executemany(
                    "insert into truth_params values (?, ?)",
                    [(k, json.dumps(v)) for k, v in sorted(values.items())],
                )
                info["truth_params"] = {"file": str(params), "sha256": file_sha256(params)}
        put_meta(con, "truth", info)
        rows = sum(n for n in counts.values() if isinstance(n, int))
        add_timings(con, [Timing.of_stage("load truth", counts, rows=rows)])
    finally:
        con.close()
    return info


def transform(build: Build) -> dict:
    """Run every SQL model, check that no line was lost, drop what is not published.

    Returns the build's stage counts (also stored for its ``builds`` row): lines,
    loaded and rejected rows per input file, rejects per reason, jams per URI status,
    positives with and without audio features, negatives, and the splits.
    """
    start = time.perf_counter()
    settings = get_settings()
    con = build.connect()
    try:
        meta = get_meta(con)
        variables = {**build.params.model_dump(), "spotify_file": build.spotify.name}
        schema = sqlrunner.load_schema(settings.sql_dir)
        with stage("sql transforms") as info:
            _register_raw(build, con)
            rows = sqlrunner.run_models(con, settings.sql_dir, variables, published=set(schema))
            info.update(tables=len(rows))
        counts = stage_counts(con, meta)
        check_accounting(counts)
        sqlrunner.apply_comments(con, schema)
        put_meta(con, "stage_counts", counts)
        _log_counts(counts)
        # The whole stage: the SQL models, then counting and checking what they built.
        add_timings(con, [Timing.since("sql transforms", start, rows=sum(rows.values()))])
    finally:
        con.close()
    return counts


_TIMJ_TABLES = {"jams.tsv": "jams", "likes.tsv": "likes", "followers.tsv": "followers"}


def stage_counts(con: duckdb.DuckDBPyConnection, meta: dict) -> dict:
    """Counts through every stage, read from the build's tables (see :func:`transform`)."""

    def scalar(sql: str, params: dict | None = None) -> int:
        return one_row(con, sql, params or {})[0]

    rejected = dict(con.execute("select source_file, count(*) from rejects group by 1").fetchall())
    files = {}
    for name, table in _TIMJ_TABLES.items():
        quoted = sqltext.identifier(table, _TIMJ_TABLES.values())
        files[name] = {
            "lines": meta["timj"][name]["data_lines"],
            "loaded": scalar(f"select count(*) from {quoted}"),
            "rejected": rejected.get(name, 0),
        }
    spotify = meta["spotify"]
    files[spotify["file"].rsplit("/", 1)[-1]] = {
        "lines": spotify["data_lines"],
        "records": spotify["records"],
        "loaded": scalar("select coalesce(sum(n_source_lines), 0) from tracks"),
        "merged_repeats": scalar("select coalesce(sum(n_source_lines - 1), 0) from tracks"),
        "rejected": rejected.get(spotify["file"].rsplit("/", 1)[-1], 0),
    }
    by_reason: dict[str, dict[str, int]] = {}
    for source_file, reason, n in con.execute(
        f"select source_file, {REJECT_REASON}, count(*) "
        "from rejects group by all order by 1, 3 desc, 2"
    ).fetchall():
        by_reason.setdefault(source_file, {})[reason] = n
    splits = dict(
        con.execute("select split, count(*) from splits group by 1 order by 1").fetchall()
    )
    ignored = meta.get("truth", {}).get("ignored")
    return {
        "files": files,
        **({"ignored_files": ignored} if ignored else {}),
        "rejects_by_reason": by_reason,
        "jams_by_uri_status": dict(
            con.execute(
                "select uri_status, count(*) from jams group by 1 order by 2 desc"
            ).fetchall()
        ),
        "positives": scalar(
            "select (select count(*) from interactions)"
            " + (select count(*) from int_positives_without_features)"
        ),
        "positives_with_features": scalar("select count(*) from interactions"),
        "positives_without_features": scalar("select count(*) from int_positives_without_features"),
        "users_with_interactions": scalar("select count(distinct user_id) from interactions"),
        "tracks": scalar("select count(*) from tracks"),
        "tracks_with_interactions": scalar("select count(distinct track_id) from interactions"),
        "negatives": scalar("select count(*) from negatives"),
        "splits": splits,
        "users_held_out": scalar(
            "select count(distinct user_id) from splits where split <> 'train'"
        ),
        "temporal": temporal_counts(con),
    }


def temporal_counts(con: duckdb.DuckDBPyConnection) -> dict:
    """The temporal split: its cut, rows per split, evaluated users, users first seen after
    the cut, test positives on tracks new after the cut (not candidates), negatives."""
    cut, *counts = one_row(
        con,
        """
        select max(cut_date)::varchar,
            count(*) filter (where split = 'train'),
            count(*) filter (where split = 'test'),
            count(*) filter (where split = 'new_user'),
            count(distinct user_id) filter (where split = 'test'),
            count(distinct user_id) filter (where split = 'new_user'),
            count(*) filter (where split = 'test' and new_track)
        from splits_temporal
        """,
    )
    names = (
        "train",
        "test",
        "new_user_rows",
        "test_users",
        "new_users",
        "test_positives_on_new_tracks",
    )
    result = {"cut_date": cut, **dict(zip(names, counts))}
    result["negatives"] = one_row(con, "select count(*) from negatives_temporal")[0]
    return result


def check_accounting(counts: dict) -> None:
    """Every input line is loaded or rejected: a mismatch is a bug, and fails the build."""
    for name, c in counts["files"].items():
        expected = c.get("records", c["lines"])
        if c["loaded"] + c["rejected"] != expected:
            raise JamrecError(
                f"{name}: {c['loaded']:,} loaded + {c['rejected']:,} rejected != {expected:,} "
                "records read; a transform lost or duplicated rows"
            )


def _log_counts(counts: dict) -> None:
    for name in counts.get("ignored_files", []):
        log.warning("ignored: unknown file %r in the dump's truth/ folder", name)
    for name, c in counts["files"].items():
        log.info(
            "%s: %s lines, %s loaded, %s rejected",
            name,
            f"{c['lines']:,}",
            f"{c['loaded']:,}",
            f"{c['rejected']:,}",
        )
        for reason, n in counts["rejects_by_reason"].get(name, {}).items():
            log.info("  rejected %s: %s", f"{n:,}", reason)
    statuses = ", ".join(f"{k} {v:,}" for k, v in counts["jams_by_uri_status"].items())
    log.info("jams by Spotify URI: %s", statuses)
    log.info(
        "positives: %s, with audio features %s (interactions), without %s",
        f"{counts['positives']:,}",
        f"{counts['positives_with_features']:,}",
        f"{counts['positives_without_features']:,}",
    )
    log.info(
        "negatives: %s; splits: %s",
        f"{counts['negatives']:,}",
        ", ".join(f"{k} {v:,}" for k, v in counts["splits"].items()),
    )
    temporal = counts["temporal"]
    log.info(
        "temporal split at %s: train %s, test %s (%s users; %s on tracks new after the cut), "
        "%s users first seen after the cut",
        temporal["cut_date"],
        f"{temporal['train']:,}",
        f"{temporal['test']:,}",
        f"{temporal['test_users']:,}",
        f"{temporal['test_positives_on_new_tracks']:,}",
        f"{temporal['new_users']:,}",
    )


def validate_build(build: Build) -> dict:
    """Run every Great Expectations suite on the build's tables (write-audit-publish).

    Writes Data Docs under ``warehouse/reports/``. Raises
    :class:`~jamrec.build.quality.ValidationFailed`, naming each failed expectation, its table,
    how many rows broke it and the report's path, when any suite fails; the build is then
    not published. Returns the validation summary stored in ``builds.validation``.
    """
    from jamrec.build import quality

    con = build.connect()
    try:
        meta = get_meta(con)
        with stage("validate") as info:
            parameters = quality.expectation_parameters(
                con, meta["stage_counts"], build.params.model_dump()
            )
            report = quality.validate(
                con, reports_dir(build.warehouse), parameters, run_name=build.build_id
            )
            info.update(tables=len(report.tables), failed=len(report.failures))
        put_meta(con, "validation", report.summary())
        validated = sum(t["rows"] for t in report.tables.values())
        add_timings(con, [Timing.of_stage("validate", info, rows=validated)])
    finally:
        con.close()
    if not report.success:
        raise quality.ValidationFailed(report, f"validation of build {build.build_id}")
    log.info("%s", report.message())
    if report.pages_path:
        log.info("data-quality pages: %s", report.pages_path)
    if report.docs_path:
        log.info("data docs: %s", report.docs_path)
    return report.summary()


def reports_dir(warehouse: Path) -> Path:
    """Where reports for the warehouse at ``warehouse`` go: ``<its folder>/reports``."""
    return Path(warehouse).parent / "reports"
