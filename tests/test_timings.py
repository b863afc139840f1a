"""Where the time went: the ``timings`` rows of builds and model runs (keyed by build and
run, positive seconds, peak RSS), the migration that adds the table, the demo's
arguments and its timing table."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from jamrec import timing
from jamrec.timing import Timing
from jamrec.warehouse import history
from jamrec.warehouse.store import Warehouse

BUILD_STAGES = [
    "check inputs",
    "start",
    "load jams.tsv",
    "load likes.tsv",
    "load followers.tsv",
    "load tracks.csv",
    "load truth",
    "sql transforms",
    "validate",
    "publish",
]
RUN_STAGES = ["train", "save", "evaluate", "record"]


def _query(path: Path, sql: str, params: dict | None = None) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params or {}).fetchall()
    finally:
        con.close()


def _stages(path: Path, where: str, params: dict) -> list[tuple]:
    """(stage, run_id, flow, model, seconds, peak_rss_gb, rows) in the order they ended."""
    return _query(
        path,
        "select stage, run_id, flow, model, seconds, peak_rss_gb, rows from timings "
        f"where {where} order by recorded_at",
        params,
    )


def test_a_build_records_every_stage_under_its_id(tiny_warehouse):
    ((build_id, counts),) = _query(
        tiny_warehouse, "select build_id, stage_counts from builds where status = 'published'"
    )
    rows = _stages(tiny_warehouse, "build_id = $b", {"b": build_id})
    assert [r[0] for r in rows] == BUILD_STAGES
    assert all(r[1] is None and r[2] == "jamrec etl" and r[3] is None for r in rows)
    assert all(r[4] > 0 and r[5] > 0 for r in rows)
    assert [r[5] for r in rows] == sorted(r[5] for r in rows)  # a high-water mark
    by_stage = {r[0]: r[6] for r in rows}
    files = json.loads(counts)["files"]
    assert by_stage["load jams.tsv"] == files["jams.tsv"]["lines"]
    assert by_stage["load tracks.csv"] == files["tracks.csv"]["records"]
    assert by_stage["sql transforms"] > 0 and by_stage["validate"] > 0


def test_training_records_each_run_s_stages_with_its_row(tiny_warehouse, tmp_path):
    from jamrec.operations.pipeline import run_models

    path = tmp_path / "w.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    outcome = run_models(["popularity", "random"], warehouse=path, user_sample=200, n_boot=20)
    ((build_id,),) = _query(path, "select build_id from published_build")
    for run_id, model in zip(outcome.runs, ["popularity", "random"]):
        rows = _stages(path, "run_id = $r and build_id = $b", {"r": run_id, "b": build_id})
        assert [r[0] for r in rows] == [*RUN_STAGES, "promote"]
        assert all(r[2] == "jamrec train" and r[3] == model and r[4] > 0 for r in rows)
        by_stage = {r[0]: r[6] for r in rows}
        ((train_rows, per_user),) = _query(
            path,
            "select (data_snapshot->>'train_rows')::int, "
            "(select count(*) from user_metrics where run_id = $r) "
            "from model_runs where run_id = $r",
            {"r": run_id},
        )
        assert by_stage["train"] == train_rows and by_stage["evaluate"] == per_user
    compare = _stages(path, "build_id = $b and stage = 'compare'", {"b": build_id})
    assert [(r[1], r[2]) for r in compare] == [(None, "jamrec train")] and compare[0][6] > 0


def test_a_failed_run_keeps_the_stages_it_finished(tiny_warehouse, tmp_path, monkeypatch):
    from jamrec.operations import runs
    from jamrec.operations.pipeline import run_models

    path = tmp_path / "w.duckdb"
    shutil.copyfile(tiny_warehouse, path)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(runs, "evaluate", broken)
    with pytest.raises(RuntimeError, match="evaluation broke"):
        run_models(["popularity"], warehouse=path)
    ((run_id,),) = _query(path, "select run_id from model_runs where status = 'failed'")
    rows = _stages(path, "run_id = $r", {"r": run_id})
    assert [r[0] for r in rows] == ["train", "save"]


def test_a_failed_build_and_a_skipped_one_keep_their_timings(dump, tmp_path, monkeypatch):
    from jamrec.build import pipeline
    from jamrec.errors import JamrecError

    timj, spotify = dump
    path = tmp_path / "w.duckdb"
    published = pipeline.run_build(timj, spotify, path)

    # the same inputs again: skipped, its input check recorded under the skipped row's id
    skipped = pipeline.run_build(timj, spotify, path)
    assert skipped["skipped"] and skipped["build_id"] == published["build_id"]
    rows = _stages(path, "build_id = $b", {"b": skipped["recorded_as"]})
    assert [(r[0], r[2]) for r in rows] == [("check inputs", "jamrec etl")]

    def fails(*args: object, **kwargs: object) -> None:
        raise JamrecError("validation could not run")

    monkeypatch.setattr(pipeline, "validate_build", fails)
    with pytest.raises(JamrecError):
        pipeline.run_build(timj, spotify, path, force=True)
    ((failed,),) = _query(path, "select build_id from builds where status = 'failed'")
    rows = _stages(path, "build_id = $b", {"b": failed})
    assert [r[0] for r in rows] == ["start", *BUILD_STAGES[2:6], "sql transforms"]
    # the published build's rows are untouched
    assert [r[0] for r in _stages(path, "build_id = $b", {"b": published["build_id"]})] == [
        s for s in BUILD_STAGES if s != "load truth"
    ]


def test_migration_5_adds_timings_to_an_older_warehouse(tiny_warehouse, tmp_path):
    path = tmp_path / "w.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    con = duckdb.connect(str(path))
    try:
        # as written before version 5, by a jamrec that had (another branch's) version 6
        con.execute("drop table timings")
        con.execute("delete from schema_migrations where version = 5")
        con.execute("insert into schema_migrations values (6, 'elsewhere', now())")
        assert not history.is_current(con)
    finally:
        con.close()
    con = Warehouse(path).connect_readonly()  # migrates first
    try:
        assert {5, 6} <= history.applied_versions(con)
        columns = con.execute(
            "select column_name, comment from duckdb_columns() "
            "where database_name = current_database() and table_name = 'timings'"
        ).fetchall()
        assert [c for c, _ in columns] == history.TIMINGS.column_names()
        assert all(comment for _, comment in columns)
        assert con.execute("select count(*) from timings").fetchone() == (0,)
    finally:
        con.close()
    with Warehouse(path).update("test: apply migration 5 again") as con:
        next(m for m in history.MIGRATIONS if m.version == 5).apply(con)  # idempotent


def test_jobs_label_the_stages_measured_inside():
    assert timing.current_job() is None
    with timing.default_job("jamrec etl"):
        assert Timing.since("a", 0.0).flow == "jamrec etl"
    with timing.job("demo"), timing.default_job("jamrec etl"):
        assert timing.current_job() == "demo"  # a caller's label is kept
    assert timing.current_job() is None
    t = Timing.since("train", 0.0, rows=3, model="als")
    assert t.seconds > 0 and t.peak_rss_gb > 0 and (t.rows, t.model, t.flow) == (3, "als", None)
    assert Timing.from_json(json.loads(json.dumps(t.as_json()))) == t


def test_the_timing_table_is_aligned_and_accounts_for_the_rest():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        Timing("generate", 2.0, 0.25, at, 2917, None, "demo"),
        Timing("train", 1234.5, 1.5, at, 1_000_000, "als", "train-and-evaluate"),
        Timing("total", 1240.0, 1.5, at, None, None, "demo"),
    ]
    lines = timing.table_text(rows).splitlines()
    assert lines[0].split() == ["flow", "stage", "model", "seconds", "peak", "RSS", "GB*", "rows"]
    assert "1,234.50" in lines[3] and "1,000,000" in lines[3]
    assert "(outside the stages)" in lines[4] and lines[4].rstrip().endswith("3.50")
    assert lines[5].startswith("demo") and lines[-1].startswith("* peak RSS")
    # right-aligned numbers end in the same column
    seconds_end = lines[0].index("seconds") + len("seconds")
    assert all(line[seconds_end - 4 : seconds_end].strip() for line in lines[2:6])


def test_demo_arguments(tmp_path, capsys):
    from flows.demo import parse_args

    assert parse_args([]).scale == "small" and parse_args([]).timj is None
    assert parse_args(["--scale", "tiny"]).scale == "tiny"
    (tmp_path / "tracks.csv").write_text("id\n")
    given = parse_args(["--timj", str(tmp_path), "--spotify", str(tmp_path / "tracks.csv")])
    assert (given.timj, given.spotify) == (tmp_path, tmp_path / "tracks.csv")
    for argv, expected in [
        (["--scale", "huge"], "demo: error: argument --scale: invalid choice: 'huge'"),
        (["--timj", str(tmp_path)], "demo: error: --timj needs --spotify"),
        (["--spotify", str(tmp_path / "tracks.csv")], "demo: error: --spotify needs --timj"),
        (
            ["--timj", str(tmp_path / "nope"), "--spotify", str(tmp_path / "tracks.csv")],
            f"demo: error: --timj {tmp_path / 'nope'}: no such file or folder",
        ),
    ]:
        with pytest.raises(SystemExit) as exit_:
            parse_args(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2
        assert err.startswith(expected) and err.count("\n") == 1, err


def test_make_demo_passes_the_scale_and_the_dump():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parents[1]

    def dry_run(*assignments: str) -> str:
        args = [make, "-n", "-o", "install", "-o", ".venv/.installed", "demo", *assignments]
        return subprocess.run(args, cwd=root, capture_output=True, text=True, check=True).stdout

    assert "-m flows.demo --scale small" in dry_run()
    assert "-m flows.demo --scale tiny" in dry_run("SCALE=tiny")
    assert "-m flows.demo --scale small --no-study" in dry_run("NO_STUDY=1")
    both = dry_run("TIMJ=dump/x", "SPOTIFY=dump/t.csv")
    assert '--timj "dump/x"' in both and '--spotify "dump/t.csv"' in both
