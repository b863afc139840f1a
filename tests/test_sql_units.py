"""Unit tests of the SQL transforms: URI parsing, positives, negatives, splits, and the
temporal split."""

from __future__ import annotations

import random

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


def _catalogue(
    con, n_tracks: int, positives: dict[int, list[int]], held: dict[int, list[int]] | None = None
) -> None:
    """tracks, interactions and splits: every positive in train but those in ``held``
    (user -> tracks in test)."""
    con.execute(
        "create or replace table tracks as "
        "select 't' || lpad(range::varchar, 21, '0') as track_id from range($n)",
        {"n": n_tracks},
    )
    held = held or {}
    rows = [(_hex(u), _track(t)) for u, ts in positives.items() for t in ts]
    con.execute("create or replace table interactions (user_id varchar, track_id varchar)")
    con.executemany("insert into interactions values (?, ?)", rows)
    con.execute("create or replace table splits (user_id varchar, track_id varchar, split varchar)")
    con.executemany(
        "insert into splits values (?, ?, ?)",
        [
            (_hex(u), _track(t), "test" if t in held.get(u, ()) else "train")
            for u, ts in positives.items()
            for t in ts
        ],
    )


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


# The negatives as they were drawn before the sampling moved to integer keys: the same
# rule on the string ids. The keyed SQL must publish exactly these rows.
STRING_KEYED_NEGATIVES = """
with catalogue as (
    select track_id, row_number() over (order by track_id) - 1 as track_index from tracks
),
catalogue_size as (select count(*) as n_tracks from catalogue),
train_positives as (select user_id, track_id from {source} where split = 'train'),
users as (select distinct user_id from train_positives),
draws as (
    select users.user_id, draw.range as draw,
        hash('negatives', getvariable('seed'), users.user_id, draw.range)
            % catalogue_size.n_tracks as track_index
    from users
    cross join range(3 * getvariable('n_negatives')) as draw
    cross join catalogue_size
),
candidates as (
    select draws.user_id, catalogue.track_id, min(draws.draw) as draw
    from draws
    inner join catalogue on draws.track_index = catalogue.track_index
    anti join train_positives
        on draws.user_id = train_positives.user_id
        and catalogue.track_id = train_positives.track_id
    group by draws.user_id, catalogue.track_id
)
select user_id, track_id from candidates
qualify row_number() over (partition by user_id order by draw) <= getvariable('n_negatives')
"""


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("model", ["negatives", "negatives_temporal"])
def test_keyed_negatives_equal_the_string_keyed_draw(con, seed, model):
    rng = random.Random(seed)
    positives = {u: rng.sample(range(300), rng.randint(1, 120)) for u in range(200)}
    held = {u: ts[:2] for u, ts in positives.items() if len(ts) > 3}
    _catalogue(con, 300, positives, held=held)
    source = "splits" if model == "negatives" else "splits_temporal"
    if source != "splits":
        con.execute("create or replace table splits_temporal as select * from splits")
    variables = {**VARS, "seed": seed}
    assert run_model(con, SQL, model, variables) > 0
    got = con.execute(f"select user_id, track_id from {model} order by all").fetchall()
    expected = con.execute(
        f"select * from ({STRING_KEYED_NEGATIVES.format(source=source)}) order by all"
    ).fetchall()
    assert got == expected


def test_negatives_are_drawn_against_train_positives_only(con):
    # User 0 holds tracks 0..9 of 12, tracks 8 and 9 held out: only the train positives
    # (0..7) are excluded, so the held-out tracks may be negatives like any other track
    # (excluding them would tell a model which tracks are held out).
    _catalogue(con, 12, {0: list(range(10))}, held={0: [8, 9]})
    run_model(con, SQL, "negatives", VARS)
    got = sorted(t for (t,) in con.execute("select track_id from negatives").fetchall())
    assert got == [_track(t) for t in (8, 9, 10, 11)]


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


def _dated(con, rows: list[tuple[int, int, str]], jam_dates: list[str]) -> None:
    """interactions (user, track, first_jam_date) and jams (creation_date) for the temporal
    split."""
    con.execute(
        "create or replace table interactions "
        "(user_id varchar, track_id varchar, first_jam_date date)"
    )
    con.executemany(
        "insert into interactions values (?, ?, ?::date)",
        [(_hex(u), _track(t), d) for u, t, d in rows],
    )
    con.execute("create or replace table jams (creation_date date)")
    con.executemany("insert into jams values (?::date)", [(d,) for d in jam_dates])


def test_temporal_split_by_a_given_cut(con):
    rows = [
        (1, 1, "2013-01-01"),  # user 1: before and after the cut
        (1, 2, "2014-06-01"),  # on the cut: after it
        (1, 3, "2014-07-01"),  # track 3: nobody has it before the cut
        (2, 1, "2014-08-01"),  # user 2: only after the cut, never evaluated
        (3, 2, "2012-01-01"),  # user 3: only before
    ]
    _dated(con, rows, ["2013-01-01"])
    variables = {**VARS, "temporal_cut": "2014-06-01", "temporal_share": 0.1}
    assert run_model(con, SQL, "splits_temporal", variables) == len(rows)
    got = con.execute(
        "select user_id, track_id, split, cut_date::varchar, new_track from splits_temporal "
        "order by all"
    ).fetchall()
    assert got == [
        (_hex(1), _track(1), "train", "2014-06-01", False),
        (_hex(1), _track(2), "test", "2014-06-01", False),
        (_hex(1), _track(3), "test", "2014-06-01", True),
        (_hex(2), _track(1), "new_user", "2014-06-01", False),
        (_hex(3), _track(2), "train", "2014-06-01", False),
    ]


def test_temporal_split_never_trains_after_the_cut_nor_tests_users_without_train(con):
    rng = random.Random(3)
    days = [f"2013-{m:02d}-{d:02d}" for m in range(1, 13) for d in (1, 15)]
    rows = [(u, t, rng.choice(days)) for u in range(60) for t in rng.sample(range(40), 6)]
    _dated(con, rows, [d for _, _, d in rows])
    run_model(con, SQL, "splits_temporal", {**VARS, "temporal_cut": None, "temporal_share": 0.1})
    cut = con.execute("select distinct cut_date from splits_temporal").fetchall()
    # The default cut leaves about the last 10% of jams on or after it.
    (expected,) = con.execute("select quantile_disc(creation_date, 0.9) from jams").fetchone()
    assert cut == [(expected,)]
    assert con.execute(
        "select count(*) from splits_temporal where split = 'train' and positive_date >= cut_date"
    ).fetchone() == (0,)
    assert con.execute(
        "select count(*) from splits_temporal where split <> 'train' and positive_date < cut_date"
    ).fetchone() == (0,)
    assert con.execute(
        "select count(*) from splits_temporal t where split = 'test' and not exists "
        "(select 1 from splits_temporal s where s.user_id = t.user_id and s.split = 'train')"
    ).fetchone() == (0,)
    counts = dict(con.execute("select split, count(*) from splits_temporal group by 1").fetchall())
    assert counts["train"] > counts["test"] > 0
    # Negatives of the temporal split: never a train positive of the user.
    con.execute(
        "create or replace table tracks as "
        "select 't' || lpad(range::varchar, 21, '0') as track_id from range(40)"
    )
    run_model(con, SQL, "negatives_temporal", VARS)
    assert con.execute(
        "select count(*) from negatives_temporal n join splits_temporal s "
        "using (user_id, track_id) where s.split = 'train'"
    ).fetchone() == (0,)
    assert (
        con.execute("select count(distinct user_id) from negatives_temporal").fetchone()
        == con.execute(
            "select count(distinct user_id) from splits_temporal where split = 'train'"
        ).fetchone()
    )
