"""End to end: a tiny generated dump through the ETL into a published warehouse."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import pytest

from jamrec.build.pipeline import run_build
from jamrec.build.sqlrunner import load_schema
from jamrec.cli import main
from jamrec.config import PROJECT_ROOT
from jamrec.warehouse import history

PUBLISHED = [
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
    "builds",
]


def fetch(path: Path, sql: str):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def table_digest(path: Path, table: str) -> str:
    """A hash of a table's content, independent of row order."""
    return fetch(
        path,
        f"select md5(coalesce(string_agg(r, '|' order by r), '')) "
        f"from (select t::varchar as r from {table} as t)",
    )[0][0]


def test_published_tables_are_complete(tiny_warehouse):
    tables = {t for (t,) in fetch(tiny_warehouse, "select table_name from duckdb_tables()")}
    assert set(PUBLISHED) <= tables
    assert {"truth_users", "truth_tracks", "truth_params"} <= tables
    for table in PUBLISHED:
        if table not in ("rejects", "builds", "followers"):
            assert fetch(tiny_warehouse, f"select count(*) from {table}")[0][0] > 0, table
    # no working tables leak into the published file
    assert not [t for t in tables if t.startswith(("raw_", "stg_")) or t.endswith("_checked")]


def test_every_published_column_has_a_comment(tiny_warehouse):
    schema = load_schema(PROJECT_ROOT / "sql")
    missing = fetch(
        tiny_warehouse,
        "select table_name, column_name from duckdb_columns() "
        "where comment is null and schema_name = 'main' and database_name = current_database() "
        "and not starts_with(table_name, 'truth_')",
    )
    assert missing == []
    for table in PUBLISHED:
        assert fetch(
            tiny_warehouse, f"select comment from duckdb_tables() where table_name = '{table}'"
        )[0][0]
        assert table in schema or table in history.TABLES


def test_nothing_is_lost(tiny_warehouse, tiny_dump):
    counts = json.loads(fetch(tiny_warehouse, "select stage_counts from builds")[0][0])
    for name in ["jams.tsv", "likes.tsv", "followers.tsv"]:
        path = tiny_dump / "archive" / name
        n_lines = path.read_bytes().count(b"\n") - 1
        c = counts["files"][name]
        assert c["lines"] == n_lines
        assert c["loaded"] + c["rejected"] == n_lines
    jam_rejects = dict(
        fetch(
            tiny_warehouse,
            "select reason, count(*) from rejects where source_file = 'jams.tsv' group by 1",
        )
    )
    assert any(r.startswith("expected 7 tab-separated fields") for r in jam_rejects)
    assert (
        fetch(
            tiny_warehouse,
            "select count(*) from rejects "
            "where source_file = 'likes.tsv' and reason like 'jam_id is not in jams%'",
        )[0][0]
        > 0
    )
    statuses = dict(fetch(tiny_warehouse, "select uri_status, count(*) from jams group by 1"))
    assert statuses["track"] > statuses["empty"] > 0
    assert statuses == counts["jams_by_uri_status"]


def test_mojibake_is_repaired(tiny_warehouse, tiny_dump):
    from jamrec.textfix import damage_text

    rows = fetch(
        tiny_warehouse,
        "select j.artist, j.title, j.source_line from jams j "
        "where strlen(j.artist || coalesce(j.title, '')) "
        "> length(j.artist || coalesce(j.title, ''))",
    )
    assert rows
    raw = (tiny_dump / "archive" / "jams.tsv").read_text().split("\n")
    for artist, title, line in rows:
        fields = raw[line - 1].split("\t")
        assert damage_text(artist) == fields[2]
        assert damage_text(title or "") == fields[3]
        assert "Ã" not in artist + (title or "")


def test_interactions_negatives_and_splits_invariants(tiny_warehouse):
    f = lambda sql: fetch(tiny_warehouse, sql)[0][0]  # noqa: E731
    assert f("select count(*) - count(distinct (user_id, track_id)) from interactions") == 0
    assert f("select count(*) from interactions anti join tracks using (track_id)") == 0
    # negatives are never train positives; val and test positives are not excluded (that
    # would tell a model which tracks are held out)
    train = "(select * from splits where split = 'train')"
    assert f(f"select count(*) from negatives semi join {train} using (user_id, track_id)") == 0
    assert f("select max(n) from (select count(*) n from negatives group by user_id)") <= 10
    train = "(select * from splits_temporal where split = 'train')"
    assert (
        f(f"select count(*) from negatives_temporal semi join {train} using (user_id, track_id)")
        == 0
    )
    assert f("select count(*) from splits_temporal") == f("select count(*) from interactions")
    assert f("select count(*) from splits") == f("select count(*) from interactions")
    assert (
        f(
            "select count(*) from (select user_id from splits group by 1 "
            "having count(*) filter (where split = 'train') = 0)"
        )
        == 0
    )


@pytest.mark.slow
def test_same_seed_same_tables(tiny_dump, tiny_warehouse, tmp_path):
    again = tmp_path / "again.duckdb"
    run_build(tiny_dump, tiny_dump / "tracks.csv", again)
    tables = ["jams", "likes", "tracks", "interactions", "negatives", "splits", "rejects"]
    for table in [*tables, "splits_temporal", "negatives_temporal"]:
        assert table_digest(again, table) == table_digest(tiny_warehouse, table), table
    other = tmp_path / "other.duckdb"
    from jamrec.config import BuildParams

    run_build(tiny_dump, tiny_dump / "tracks.csv", other, BuildParams(seed=1))
    assert table_digest(other, "interactions") == table_digest(tiny_warehouse, "interactions")
    assert table_digest(other, "negatives") != table_digest(tiny_warehouse, "negatives")
    assert table_digest(other, "splits") != table_digest(tiny_warehouse, "splits")


@pytest.mark.slow
def test_the_zip_loads_like_the_folder(tiny_dump, tiny_warehouse, tmp_path):
    archive = tmp_path / "thisismyjam-datadump.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ["jams.tsv", "likes.tsv", "followers.tsv"]:
            zf.write(tiny_dump / "archive" / name, f"archive/{name}")
    path = tmp_path / "zip.duckdb"
    run_build(archive, tiny_dump / "tracks.csv", path)
    for table in ["jams", "likes", "interactions", "rejects"]:
        assert table_digest(path, table) == table_digest(tiny_warehouse, table), table


@pytest.mark.parametrize(
    "variant", ["SpotifyFeatures.csv", "spotify_data.csv", "dataset.csv", "tracks_features.csv"]
)
@pytest.mark.slow
def test_every_spotify_variant_loads_into_the_same_tracks(
    tiny_dump, tiny_warehouse, tmp_path, variant
):
    path = tmp_path / "v.duckdb"
    run_build(tiny_dump, tiny_dump / variant, path)
    assert (
        fetch(
            path,
            "select count(*) from rejects where source_file = $f".replace("$f", f"'{variant}'"),
        )[0][0]
        == 0
    )
    con = duckdb.connect(str(path), read_only=True)
    con.execute(f"attach '{tiny_warehouse}' as base (read_only)")
    features = (
        "danceability, energy, key, loudness, mode, speechiness, acousticness, "
        "instrumentalness, liveness, valence, tempo, duration_ms"
    )
    ours = features.replace(", ", ", b_")
    n, differing = con.execute(
        f"select count(*), count(*) filter (where ({features}) is distinct from (b_{ours})) "
        "from ("
        f"select v.*, {', '.join(f'b.{c.strip()} as b_{c.strip()}' for c in features.split(','))} "
        "from tracks v join base.tracks b using (track_id))"
    ).fetchone()
    con.close()
    assert n > 0
    assert differing == 0
    if variant == "SpotifyFeatures.csv":
        assert fetch(path, "select max(len(genres)) from tracks")[0][0] > 1
        assert fetch(path, "select count(*) from tracks where n_source_lines > 1")[0][0] > 0


def test_sql_command_and_describe(tiny_warehouse, capsys):
    assert main(["sql", "--warehouse", str(tiny_warehouse), "select count(*) as n from jams"]) == 0
    out = capsys.readouterr().out
    assert "│" in out and "n" in out
    assert (
        main(
            [
                "sql",
                "--warehouse",
                str(tiny_warehouse),
                "--format",
                "csv",
                "select 1 as a, 'x' as b",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == "a,b\n1,x\n"
    assert main(["sql", "--warehouse", str(tiny_warehouse), "--describe"]) == 0
    out = capsys.readouterr().out
    for table in PUBLISHED:
        assert f"{table}  (" in out
    assert "22-character Spotify track id" in out


def test_sql_is_read_only_and_errors_are_one_line(tiny_warehouse, capsys):
    assert main(["sql", "--warehouse", str(tiny_warehouse), "drop table jams"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("jamrec: error: jamrec sql is read-only") and "DROP" in err
    assert main(["sql", "--warehouse", str(tiny_warehouse), "select nope from jams"]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert fetch(tiny_warehouse, "select count(*) from jams")[0][0] > 0


def test_duckdb_cli_1x_can_open_the_warehouse(tiny_warehouse):
    cli = Path(sys.executable).with_name("duckdb")
    if not cli.exists():
        cli = shutil.which("duckdb")
    if not cli:
        pytest.skip("the duckdb-cli package is not installed")
    result = subprocess.run(
        [
            str(cli),
            "-readonly",
            str(tiny_warehouse),
            "-c",
            "select count(*) from interactions; select version();",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "v1." in result.stdout


def test_a_second_build_at_once_is_refused(dump, tmp_path):
    from jamrec.build.publish import fail_build
    from jamrec.build.stages import start_build
    from jamrec.errors import JamrecError

    timj, spotify = dump
    path = tmp_path / "w.duckdb"
    first = start_build(timj, spotify, path)
    try:
        with pytest.raises(JamrecError, match="another build is running"):
            start_build(timj, spotify, path)
    finally:
        fail_build(first, RuntimeError("stopped by the test"))
    statuses = fetch(path, "select status, error from builds")
    assert statuses == [("failed", "stopped by the test")]


@pytest.mark.slow
def test_abandoned_builds_are_marked(dump, tmp_path):
    from jamrec.build.stages import release_build_lock, start_build

    timj, spotify = dump
    path = tmp_path / "w.duckdb"
    first = start_build(timj, spotify, path)
    release_build_lock(first.build_id)  # as if its process had died
    run_build(timj, spotify, path)
    statuses = dict(fetch(path, "select build_id, status from builds"))
    assert statuses[first.build_id] == "abandoned"
    assert sorted(statuses.values()) == ["abandoned", "published"]
