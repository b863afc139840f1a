"""Unit tests of the SQL transforms: URI parsing, positives, negatives, splits."""

from __future__ import annotations

import duckdb
import pytest

from jamrec.build.sqlrunner import run_macros, run_model
from jamrec.config import PROJECT_ROOT

SQL = PROJECT_ROOT / "sql"
VARS = {"seed": 0, "n_negatives": 10, "k_test": 1, "k_val": 1, "spotify_file": "tracks.csv"}


@pytest.fixture
def con():
    con = duckdb.connect()
    run_macros(con, SQL)
    yield con
    con.close()


@pytest.mark.parametrize(
    ("uri", "status", "track_id"),
    [
        ("spotify:track:1oc5gffksuTK6vXF2k9zA3", "track", "1oc5gffksuTK6vXF2k9zA3"),
        (None, "empty", None),
        ("spotify:album:1oc5gffksuTK6vXF2k9zA3", "not_track", None),
        ("spotify:local:Artist:Album:Title:123", "not_track", None),
        ("spotify:track:1oc5gffksu", "malformed_track", None),
        ("spotify:track:1oc5gffksuTK6vXF2k9zA3x", "malformed_track", None),
        ("spotify:track:1oc5gffksuTK6vXF2k9zA!", "malformed_track", None),
        ("http://open.spotify.com/track/1oc5gffksuTK6vXF2k9zA3", "not_track", None),
    ],
)
def test_spotify_uri_parsing(con, uri, status, track_id):
    got = con.execute("select spotify_uri_status($u), spotify_track_id($u)", {"u": uri}).fetchone()
    assert got == (status, track_id)


def test_id_shapes(con):
    assert con.execute("select is_timj_id('f797dc96c582aa75efb4d6c22dbcc683')").fetchone()[0]
    assert not con.execute("select is_timj_id('F797DC96C582AA75EFB4D6C22DBCC683')").fetchone()[0]
    assert not con.execute("select is_timj_id('f797dc96')").fetchone()[0]
    assert not con.execute("select is_timj_id(null)").fetchone()[0]
    assert con.execute("select is_track_id('1oc5gffksuTK6vXF2k9zA3')").fetchone()[0]
    assert not con.execute("select is_track_id('1oc5gffksuTK6vXF2k9zA')").fetchone()[0]


def _hex(i: int) -> str:
    return f"{i:032x}"


def _track(i: int) -> str:
    return f"t{i:021d}"


def test_positives_are_deduplicated_with_creator_and_liker_flags(con):
    con.execute(
        "create table int_jams_checked as select * from (values "
        f"('{_hex(1)}', '{_hex(100)}', '{_track(1)}', date '2012-01-01', null),"
        # the same user jams the same track twice (a TIMJ duplicate jam)
        f"('{_hex(2)}', '{_hex(100)}', '{_track(1)}', date '2012-01-02', null),"
        f"('{_hex(3)}', '{_hex(101)}', '{_track(2)}', date '2012-01-03', null),"
        f"('{_hex(4)}', '{_hex(101)}', null, date '2012-01-04', null),"
        # a rejected line is no positive
        f"('{_hex(5)}', '{_hex(102)}', '{_track(3)}', date '2012-01-05', 'a reason')"
        ") t(jam_id, user_id, track_id, creation_date, reject_reason)"
    )
    con.execute(
        "create table int_likes_checked as select * from (values "
        f"('{_hex(101)}', '{_hex(1)}', null), ('{_hex(101)}', '{_hex(2)}', null),"  # one track
        f"('{_hex(100)}', '{_hex(3)}', null), ('{_hex(100)}', '{_hex(4)}', null),"  # 4: no track
        f"('{_hex(103)}', '{_hex(1)}', 'a reason')"  # a rejected like is no positive
        ") t(user_id, jam_id, reject_reason)"
    )
    run_model(con, SQL, "int_positives", VARS)
    rows = con.execute(
        "select user_id, track_id, is_creator, is_liker, n_jams, n_likes "
        "from int_positives order by all"
    ).fetchall()
    assert rows == [
        (_hex(100), _track(1), True, False, 2, 0),
        (_hex(100), _track(2), False, True, 0, 1),
        (_hex(101), _track(1), False, True, 0, 2),
        (_hex(101), _track(2), True, False, 1, 0),
    ]


def _catalogue(con, n_tracks: int, positives: dict[int, list[int]]) -> None:
    con.execute(
        "create or replace table tracks as "
        "select 't' || lpad(range::varchar, 21, '0') as track_id from range($n)",
        {"n": n_tracks},
    )
    rows = [(_hex(u), _track(t)) for u, ts in positives.items() for t in ts]
    con.execute("create or replace table interactions (user_id varchar, track_id varchar)")
    con.executemany("insert into interactions values (?, ?)", rows)


def test_negatives_never_positive_at_most_n_and_deterministic(con):
    positives = {u: list(range(u % 7, 60, 3)) for u in range(50)}
    _catalogue(con, 80, positives)
    run_model(con, SQL, "negatives", VARS)
    first = con.execute("select * from negatives order by all").fetchall()
    per_user = con.execute("select user_id, count(*) from negatives group by 1").fetchall()
    assert {n for _, n in per_user} <= set(range(1, 11))
    assert len(per_user) == 50
    assert sum(n for _, n in per_user) >= 50 * 9  # nearly always the full N
    clash = con.execute(
        "select count(*) from negatives join interactions using (user_id, track_id)"
    ).fetchone()[0]
    assert clash == 0
    assert con.execute("select count(*) from (select distinct * from negatives)").fetchone()[
        0
    ] == len(first)
    run_model(con, SQL, "negatives", VARS)
    assert con.execute("select * from negatives order by all").fetchall() == first
    run_model(con, SQL, "negatives", {**VARS, "seed": 1})
    assert con.execute("select * from negatives order by all").fetchall() != first


def test_negatives_when_the_user_holds_almost_the_whole_catalogue(con):
    _catalogue(con, 12, {0: list(range(10))})
    run_model(con, SQL, "negatives", VARS)
    got = sorted(t for (t,) in con.execute("select track_id from negatives").fetchall())
    assert got == [_track(10), _track(11)]


def test_negatives_with_n_zero(con):
    _catalogue(con, 12, {0: [1]})
    assert run_model(con, SQL, "negatives", {**VARS, "n_negatives": 0}) == 0


def test_splits_are_disjoint_complete_and_keep_train_rows(con):
    positives = {u: list(range(u)) for u in range(1, 40)}  # user u has u positives
    _catalogue(con, 40, positives)
    run_model(con, SQL, "splits", VARS)
    total = con.execute("select count(*) from interactions").fetchone()[0]
    assert con.execute("select count(*) from splits").fetchone()[0] == total
    assert (
        con.execute(
            "select count(*) from (select distinct user_id, track_id from splits)"
        ).fetchone()[0]
        == total
    )
    by_user = con.execute(
        "select user_id, count(*) filter (where split = 'test'),"
        " count(*) filter (where split = 'val'),"
        " count(*) filter (where split = 'train') from splits group by 1"
    ).fetchall()
    for user_id, n_test, n_val, n_train in by_user:
        n = int(user_id, 16)
        if n < 3:
            assert (n_test, n_val, n_train) == (0, 0, n)
        else:
            assert (n_test, n_val, n_train) == (1, 1, n - 2)
    first = con.execute("select * from splits order by all").fetchall()
    run_model(con, SQL, "splits", VARS)
    assert con.execute("select * from splits order by all").fetchall() == first
    run_model(con, SQL, "splits", {**VARS, "seed": 7})
    assert con.execute("select * from splits order by all").fetchall() != first


def test_splits_with_larger_k(con):
    _catalogue(con, 20, {1: list(range(4)), 2: list(range(10))})
    run_model(con, SQL, "splits", {**VARS, "k_test": 2, "k_val": 2})
    got = dict(
        ((u, s), n)
        for u, s, n in con.execute(
            "select user_id, split, count(*) from splits group by all"
        ).fetchall()
    )
    assert got == {
        (_hex(1), "train"): 4,
        (_hex(2), "test"): 2,
        (_hex(2), "val"): 2,
        (_hex(2), "train"): 6,
    }
