"""The quality gate: every suite catches what it is for; nothing unvalidated is published."""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from jamrec.build import quality
from jamrec.build.pipeline import run_build
from jamrec.cli import main
from jamrec.warehouse.store import Warehouse
from tests.helpers import TRACKS_HEADER

UNKNOWN = "f" * 32


def _params(con) -> dict:
    counts, params = con.execute(
        "select stage_counts, parameters from builds where status = 'published'"
    ).fetchone()
    return quality.expectation_parameters(con, json.loads(counts), json.loads(params))


def test_the_tiny_warehouse_passes_every_suite(tiny_warehouse, tmp_path):
    con = duckdb.connect(str(tiny_warehouse), read_only=True)
    report = quality.validate(con, tmp_path / "reports", _params(con))
    con.close()
    assert report.success, report.message()
    # every suite runs: the history tables exist (empty) from the first build on
    assert set(report.tables) == set(quality.suite_names())
    assert (tmp_path / "reports" / "data_docs" / "index.html").exists()
    # GX's execution engine caches every batch's frame for the context's life; the gate
    # drops them, so the process that trains afterwards does not carry the tables.
    from great_expectations.execution_engine.pandas_batch_data import PandasBatchData

    gc.collect()
    assert not [o for o in gc.get_objects() if type(o) is PandasBatchData]


BREAKAGES = [
    (
        "timings",
        "insert into timings values (now(), 'b1', 'r1', null, 'fit', null, -1.0, 0.5, 3)",
        [
            ("expect_column_values_to_match_regex", "stage", 1),
            ("expect_column_values_to_be_between", "seconds", 1),
            ("expect_column_values_to_be_in_set", "check_run_stage_names_its_model", 1),
        ],
    ),
    (
        "jams",
        "insert into jams select * from jams limit 1",
        [
            ("expect_column_values_to_be_unique", "jam_key", 2),
            ("expect_table_row_count_to_equal", None, None),
        ],
    ),
    (
        "jams",
        "update jams set creation_date = date '2010-01-01' where jam_id in "
        "(select jam_id from jams order by jam_id limit 3)",
        [("expect_column_values_to_be_between", "creation_yyyymmdd", 3)],
    ),
    (
        "jams",
        "update jams set artist = 'Jerry GonzÃ¡lez' where jam_id in "
        "(select jam_id from jams order by jam_id limit 2)",
        [("expect_column_values_to_not_match_regex", "artist", 2)],
    ),
    (
        "jams",
        "update jams set jam_id = upper(jam_id) where jam_id in "
        "(select jam_id from jams order by jam_id limit 1)",
        [("expect_column_values_to_match_regex", "jam_id", 1)],
    ),
    (
        "jams",
        "update jams set track_id = null where jam_id in "
        "(select jam_id from jams where uri_status = 'track' order by jam_id limit 4)",
        [("expect_column_values_to_be_in_set", "check_track_id_from_uri", 4)],
    ),
    (
        "likes",
        f"update likes set jam_id = '{UNKNOWN}' where jam_id in "
        "(select jam_id from likes order by all limit 1)",
        [("expect_column_values_to_be_in_set", "check_jam_exists", None)],
    ),
    (
        "likes",
        "delete from likes where jam_id in (select jam_id from likes order by all limit 1)",
        [("expect_table_row_count_to_equal", None, None)],
    ),
    (
        "followers",
        "insert into followers select * from followers limit 1",
        [
            ("expect_column_values_to_be_unique", "follow_key", 2),
            ("expect_table_row_count_to_equal", None, None),
        ],
    ),
    (
        "tracks",
        "update tracks set danceability = 1.5 where track_id in "
        "(select track_id from tracks order by 1 limit 2)",
        [("expect_column_values_to_be_between", "danceability", 2)],
    ),
    (
        "tracks",
        "update tracks set mode = 3 where track_id in "
        "(select track_id from tracks order by 1 limit 1)",
        [("expect_column_values_to_be_in_set", "mode", 1)],
    ),
    (
        "tracks",
        "insert into tracks select * from tracks limit 1",
        [
            ("expect_column_values_to_be_unique", "track_id", 2),
            ("expect_column_sum_to_be_between", "n_source_lines", None),
        ],
    ),
    (
        "interactions",
        "delete from tracks where track_id in "
        "(select track_id from interactions order by 1 limit 1)",
        [("expect_column_values_to_be_in_set", "check_track_in_tracks", None)],
    ),
    (
        "interactions",
        "insert into interactions select * from interactions limit 1",
        [("expect_column_values_to_be_unique", "user_track_key", 2)],
    ),
    (
        "interactions",
        "update interactions set is_creator = false, is_liker = false where user_id in "
        "(select user_id from interactions order by all limit 1)",
        [("expect_column_values_to_be_in_set", "check_has_a_source", None)],
    ),
    (
        "int_positives_without_features",
        "insert into int_positives_without_features select * from interactions limit 1",
        [("expect_column_values_to_be_in_set", "check_track_not_in_tracks", 1)],
    ),
    (
        "negatives",
        "insert into negatives select user_id, track_id from splits where split = 'train' limit 1",
        [
            ("expect_column_values_to_be_in_set", "check_not_a_train_positive", 1),
            # that user now has N + 1 negatives
            ("expect_column_values_to_be_between", "negatives_of_user", 11),
        ],
    ),
    (
        "negatives",
        "insert into negatives select n.user_id, t.track_id from "
        "(select user_id from negatives order by 1 limit 1) n, "
        "(select track_id from tracks order by track_id desc limit 12) t",
        [("expect_column_values_to_be_between", "negatives_of_user", None)],
    ),
    (
        "splits",
        "update splits set split = 'test' where user_id in "
        "(select user_id from splits where split = 'val' order by 1 limit 1)",
        [
            ("expect_column_values_to_be_in_set", "check_user_has_train", None),
            ("expect_column_values_to_be_between", "user_test_rows", None),
        ],
    ),
    (
        "splits",
        "insert into splits select user_id, track_id, 'val' from splits "
        "where split = 'train' limit 1",
        [
            ("expect_column_values_to_be_unique", "user_track_key", 2),
            ("expect_table_row_count_to_equal", None, None),
            ("expect_column_values_to_be_between", "user_val_rows", None),
        ],
    ),
    (
        "splits",
        "update splits set split = 'holdout' where rowid = 0",
        [("expect_column_values_to_be_in_set", "split", 1)],
    ),
    (
        "splits_temporal",
        "update splits_temporal set split = 'train' where rowid = (select min(rowid) "
        "from splits_temporal where split = 'test' and not new_track)",
        [("expect_column_values_to_be_in_set", "check_train_before_cut", 1)],
    ),
    (
        "splits_temporal",
        "update splits_temporal set split = 'new_user' where rowid = (select min(rowid) "
        "from splits_temporal where split = 'test')",
        [("expect_column_values_to_be_in_set", "check_new_user_has_no_train", 1)],
    ),
    (
        "splits_temporal",
        "update splits_temporal set cut_date = cut_date + 1 where rowid = 0",
        [("expect_column_unique_value_count_to_be_between", "cut_date", None)],
    ),
    (
        "negatives_temporal",
        "insert into negatives_temporal select user_id, track_id from splits_temporal "
        "where split = 'train' limit 1",
        [
            ("expect_column_values_to_be_in_set", "check_not_a_train_positive", 1),
            ("expect_column_values_to_be_between", "negatives_of_user", None),
        ],
    ),
    (
        "rejects",
        "update rejects set line_number = 1 where rowid = 0",
        [("expect_column_values_to_be_between", "line_number", 1)],
    ),
    (
        "builds",
        "update builds set status = 'unknown'",
        [("expect_column_values_to_be_in_set", "status", 1)],
    ),
    (
        "truth_users",
        "insert into truth_users select * from truth_users limit 1",
        [("expect_column_values_to_be_unique", "user_id", 2)],
    ),
    (
        "truth_tracks",
        "update truth_tracks set bias = null where rowid = 0",
        [("expect_column_values_to_not_be_null", "bias", 1)],
    ),
]


@pytest.mark.parametrize(
    ("table", "breakage", "expected"),
    BREAKAGES,
    ids=[f"{t}:{e[0][1] or e[0][0]}" for t, _, e in BREAKAGES],
)
def test_each_suite_fails_for_the_right_reason(tiny_warehouse, tmp_path, table, breakage, expected):
    path = tmp_path / "broken.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    con = duckdb.connect(str(path))
    parameters = _params(con)
    con.execute(breakage)
    report = quality.validate(con, tmp_path / "reports", parameters, tables=[table])
    con.close()
    assert not report.success
    got = {(f.table, f.expectation, f.column): f for f in report.failures}
    for expectation, column, count in expected:
        failure = got.pop((table, expectation, column), None)
        assert failure is not None, report.message()
        if count is not None:
            assert failure.unexpected_count == count, failure.line()
        assert f"{table}: {expectation}" in report.message()
    assert not got, f"unexpected failures: {report.message()}"
    assert "report:" in report.message()


def test_missing_table_fails(tiny_warehouse, tmp_path):
    path = tmp_path / "broken.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    con = duckdb.connect(str(path))
    parameters = _params(con)
    con.execute("drop table negatives")
    report = quality.validate(con, tmp_path / "reports", parameters, tables=["negatives"])
    con.close()
    assert [f.line() for f in report.failures] == [
        "negatives: table exists - the build did not produce it: observed missing"
    ]


def _digests(path: Path) -> dict[str, str]:
    con = duckdb.connect(str(path), read_only=True)
    tables = [t for (t,) in con.execute("select table_name from duckdb_tables()").fetchall()]
    out = {
        t: con.execute(
            f"select md5(coalesce(string_agg(r, '|' order by r), '')) "
            f"from (select x::varchar as r from {t} as x)"
        ).fetchone()[0]
        for t in tables
    }
    con.close()
    return out


def _add_model_results(path: Path) -> None:
    with Warehouse(path).update("test: model results") as con:
        con.execute(
            "insert into model_runs (run_id, build_id, model, status) "
            "values ('run-1', 'b-1', 'als', 'evaluated')"
        )
        con.execute(
            "insert into metrics (run_id, protocol, split, metric, k, value) "
            "values ('run-1', 'full', 'test', 'ndcg', 10, 0.5)"
        )


@pytest.mark.slow
def test_a_failing_validation_leaves_the_published_warehouse_unchanged(tiny_dump, tmp_path, capsys):
    path = tmp_path / "w.duckdb"
    run_build(tiny_dump, tiny_dump / "tracks.csv", path)
    _add_model_results(path)
    before = _digests(path)
    # This Spotify file loads, but leaves no interactions: the gate refuses it.
    empty = tmp_path / "tracks.csv"
    empty.write_text(TRACKS_HEADER + "\n")
    code = main(
        ["etl", "--timj", str(tiny_dump), "--spotify", str(empty), "--warehouse", str(path)]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "interactions: expect_table_row_count_to_be_between" in err
    assert "report: " in err and "data_docs/index.html" in err
    after = _digests(path)
    # the failed build's row, and the time its stages took, are all it wrote
    recorded = ("builds", "timings")
    assert {t: d for t, d in after.items() if t not in recorded} == {
        t: d for t, d in before.items() if t not in recorded
    }
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute(
        "select status, validation->>'success' from builds order by started_at"
    ).fetchall()
    con.close()
    assert rows == [("published", "true"), ("failed", "false")]


@pytest.mark.slow
def test_model_results_survive_a_rebuild(tiny_dump, tmp_path):
    path = tmp_path / "w.duckdb"
    run_build(tiny_dump, tiny_dump / "tracks.csv", path)
    _add_model_results(path)
    before = _digests(path)
    run_build(tiny_dump, tiny_dump / "tracks.csv", path)
    after = _digests(path)
    assert after["model_runs"] == before["model_runs"]
    assert after["metrics"] == before["metrics"]
    assert after["interactions"] == before["interactions"]


def _env(path: Path) -> dict:
    return {**os.environ, "JAMREC_WAREHOUSE": str(path), "JAMREC_LOCK_TIMEOUT_S": "3"}


@pytest.mark.slow
def test_a_killed_build_leaves_the_warehouse_intact(tiny_dump, tmp_path):
    path = tmp_path / "w.duckdb"
    run_build(tiny_dump, tiny_dump / "tracks.csv", path)
    before = _digests(path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jamrec",
            "etl",
            "--timj",
            str(tiny_dump),
            "--spotify",
            str(tiny_dump / "tracks.csv"),
            "--force",  # the same inputs: without it the build is skipped
        ],
        env=_env(path),
        stderr=subprocess.PIPE,
        text=True,
    )
    # Kill it in the middle of the SQL transforms.
    for line in proc.stderr:
        if "sql int_likes_checked" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert list((tmp_path / ".work").glob("build-*.duckdb")), "the killed build left its file"
    after = _digests(path)
    assert {t: d for t, d in after.items() if t != "builds"} == {
        t: d for t, d in before.items() if t != "builds"
    }
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("select status from builds order by started_at").fetchall() == [
        ("published",),
        ("running",),
    ]
    con.close()
    # The next build marks it abandoned and clears its leftovers.
    run_build(tiny_dump, tiny_dump / "tracks.csv", path, force=True)
    con = duckdb.connect(str(path), read_only=True)
    assert [
        s for (s,) in con.execute("select status from builds order by started_at").fetchall()
    ] == ["published", "abandoned", "published"]
    con.close()
    assert not list((tmp_path / ".work").glob("build-*.duckdb"))


READER = """
import duckdb, sys
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("select count(*) from jams").fetchone()[0], flush=True)
sys.stdin.readline()
print(con.execute("select count(*) from jams").fetchone()[0], flush=True)
print(con.execute("select count(*) from builds").fetchone()[0], flush=True)
"""


@pytest.mark.slow
def test_a_reader_holding_the_file_is_not_disturbed(tiny_dump, tmp_path):
    path = tmp_path / "w.duckdb"
    run_build(tiny_dump, tiny_dump / "tracks.csv", path)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    jams_before = int(reader.stdout.readline())
    # Publish a different build while the reader holds the file open.
    from tests.helpers import write_dump

    timj, spotify = write_dump(tmp_path / "other")
    run_build(timj, spotify, path)
    out, _ = reader.communicate("go\n", timeout=60)
    assert reader.returncode == 0
    jams_during, builds_seen = (int(x) for x in out.split())
    assert jams_during == jams_before  # its snapshot, complete and unchanged
    assert builds_seen == 1
    con = duckdb.connect(str(path), read_only=True)
    assert (
        con.execute("select count(*) from jams").fetchone()[0] == 12
    )  # new readers see the new one
    con.close()


HOLDER = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])  # read-write, as a plain `duckdb FILE` session would
print("holding", flush=True)
sys.stdin.readline()
"""


@pytest.mark.slow
def test_a_read_write_holder_makes_writers_wait_then_fail_clearly(dump, tiny_dump, tmp_path):
    path = tmp_path / "w.duckdb"
    run_build(tiny_dump, tiny_dump / "tracks.csv", path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "holding"
    try:
        timj, spotify = dump
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "jamrec", "etl", "--timj", str(timj), "--spotify", str(spotify)],
            env=_env(path),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1
        assert time.monotonic() - start >= 3
        assert "waiting for" in result.stderr
        message = result.stderr.strip().splitlines()[-1]
        assert (
            message.startswith("jamrec: error:") and "held read-write by another process" in message
        )
        assert f"PID {holder.pid}" in message or str(holder.pid) in message
        assert "Traceback" not in result.stderr
    finally:
        holder.communicate("done\n", timeout=30)
