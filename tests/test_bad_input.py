"""Bad input: a clear one-line error naming the file and problem, or rows in ``rejects``."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from jamrec.cli import main
from tests.helpers import TRACKS_HEADER, hex_id, jam_line, track_line, write_dump


def etl(timj, spotify, capsys, *extra):
    code = main(["etl", "--timj", str(timj), "--spotify", str(spotify), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("jamrec: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def query(sql: str):
    from jamrec.config import get_settings

    con = duckdb.connect(str(get_settings().warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_valid_dump_loads(dump, capsys):
    code, out, err = etl(*dump, capsys)
    assert code == 0, err
    assert "published build" in out
    assert query("select count(*) from jams") == [(12,)]
    assert query("select count(*) from rejects") == [(0,)]


@pytest.mark.parametrize("name", ["jams.tsv", "likes.tsv", "followers.tsv"])
def test_missing_timj_file(dump, capsys, name):
    timj, spotify = dump
    (timj / "archive" / name).unlink()
    code, _, err = etl(timj, spotify, capsys)
    assert code == 2
    line = one_error_line(err)
    assert name in line and "file not found" in line


def test_missing_spotify_file(dump, capsys):
    timj, spotify = dump
    code, _, err = etl(timj, spotify.with_name("nope.csv"), capsys)
    assert code == 2
    assert "nope.csv: file not found" in one_error_line(err)


def test_missing_dump_folder(tmp_path, capsys):
    code, _, err = etl(tmp_path / "nowhere", tmp_path / "x.csv", capsys)
    assert code == 2
    assert "nowhere: not found" in one_error_line(err)


@pytest.mark.parametrize("name", ["jams.tsv", "likes.tsv"])
def test_empty_file(dump, capsys, name):
    timj, spotify = dump
    (timj / "archive" / name).write_bytes(b"")
    code, _, err = etl(timj, spotify, capsys)
    assert code == 2
    line = one_error_line(err)
    assert name in line and "file is empty" in line


def test_header_only_likes_and_followers_are_fine(tmp_path, capsys):
    timj, spotify = write_dump(tmp_path / "d", likes=[], followers=[])
    code, _, err = etl(timj, spotify, capsys)
    assert code == 0, err
    assert query("select count(*) from likes") == [(0,)]


def test_wrong_header(dump, capsys):
    timj, spotify = dump
    path = timj / "archive" / "jams.tsv"
    path.write_text(path.read_text().replace("jam_id\tuser_id", "jam\tuser", 1))
    code, _, err = etl(timj, spotify, capsys)
    assert code == 2
    line = one_error_line(err)
    assert "jams.tsv, line 1: header is not the expected one" in line


def test_comma_separated_header(dump, capsys):
    timj, spotify = dump
    (timj / "archive" / "likes.tsv").write_text("user_id,jam_id\n")
    code, _, err = etl(timj, spotify, capsys)
    assert code == 2
    assert "likes.tsv, line 1: header is not the expected one" in one_error_line(err)


def test_file_not_utf8(tmp_path, capsys):
    jams = [jam_line(j, j, j, artist="Björk Guðmundsdóttir") for j in range(30)]
    timj, spotify = write_dump(tmp_path / "d", jams=jams)
    path = timj / "archive" / "jams.tsv"
    path.write_bytes(path.read_text().encode("latin-1"))
    code, _, err = etl(timj, spotify, capsys)
    assert code == 2
    line = one_error_line(err)
    assert "jams.tsv: is not UTF-8: 30 of 30 lines" in line and "first on line 2" in line


def test_a_few_lines_not_utf8_are_rejected(tmp_path, capsys):
    jams = [jam_line(j, j % 5, j % 7) for j in range(40)]
    timj, spotify = write_dump(tmp_path / "d", jams=jams)
    path = timj / "archive" / "jams.tsv"
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"Artist", b"Art\xffist")
    path.write_bytes(b"\n".join(lines))
    code, _, err = etl(timj, spotify, capsys)
    assert code == 0, err
    assert query("select line_number, reason, raw_line like '%Art\\xFFist%' from rejects") == [
        (4, "invalid UTF-8", True)
    ]
    assert query("select count(*) from jams") == [(39,)]


@pytest.mark.slow
def test_crlf_and_bom_load_like_the_original(tmp_path, capsys):
    timj, spotify = write_dump(tmp_path / "plain")
    assert etl(timj, spotify, capsys)[0] == 0
    expected = query("select * exclude (source_line) from jams order by jam_id")

    timj2, spotify2 = write_dump(tmp_path / "windows")
    for path in [*(timj2 / "archive").iterdir(), spotify2]:
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    code, _, err = etl(timj2, spotify2, capsys)
    assert code == 0, err
    assert "byte-order mark" in err and "CRLF" in err
    assert query("select * exclude (source_line) from jams order by jam_id") == expected
    assert query("select count(*) from rejects") == [(0,)]
    assert query("select count(*) from tracks") == [(10,)]


def test_bad_lines_become_rejects_with_reasons(tmp_path, capsys):
    jams = [jam_line(j, j % 4, j % 6) for j in range(10)]
    jams += [
        jam_line(10, 1, 1) + "\textra",  # line 12: too many fields
        "\t".join(jam_line(11, 1, 1).split("\t")[:4]),  # line 13: too few
        jam_line(12, 1, 1).replace(hex_id(12), "XYZ", 1),  # line 14: bad jam id
        jam_line(13, 0xAB, 1).replace(hex_id(0xAB), hex_id(0xAB).upper(), 1),  # line 15: bad user
        jam_line(14, 1, 1, date="2013/05/01"),  # line 16
        jam_line(15, 1, 1, date="2009-01-01"),  # line 17
        jam_line(3, 2, 2),  # line 18: duplicate jam_id of line 5
        "",  # line 19: empty line
        jam_line(16, 1, None) + "spotify:album:1oc5gffksuTK6vXF2k9zA3",  # kept, no track id
    ]
    likes = [
        f"{hex_id(1)}\t{hex_id(2)}",
        f"{hex_id(1)}\t{hex_id(999)}",  # line 3: unknown jam
        f"{hex_id(1)}\t{hex_id(2)}",  # line 4: duplicate like
        f"{hex_id(1)}\t{hex_id(11)}",  # line 5: its jam's line was rejected
        f"{hex_id(1)}",  # line 6: too few fields
    ]
    tracks = (
        [track_line(t) for t in range(6)]
        + [
            track_line(7, danceability=1.5),  # line 8
            track_line(8).replace(",0.6,5,", ",high,5,"),  # line 9
            "ab!" + track_line(9)[3:],  # line 10: bad id
            track_line(1, danceability=0.7),  # line 11: duplicate id, different features
            track_line(2),  # line 12: exact repeat, merged
            "only,three,fields",  # line 13
        ]
    )
    timj, spotify = write_dump(tmp_path / "d", jams=jams, likes=likes, tracks=tracks)
    code, _, err = etl(timj, spotify, capsys)
    assert code == 0, err
    got = query("select source_file, line_number, reason from rejects order by all")
    assert got == sorted(
        [
            ("jams.tsv", 12, "expected 7 tab-separated fields (found 8)"),
            ("jams.tsv", 13, "expected 7 tab-separated fields (found 4)"),
            ("jams.tsv", 14, "jam_id is not 32 lowercase hex characters"),
            ("jams.tsv", 15, "user_id is not 32 lowercase hex characters"),
            ("jams.tsv", 16, "creation_date is not a YYYY-MM-DD date"),
            ("jams.tsv", 17, "creation_date outside 2011-08-26..2015-09-26"),
            ("jams.tsv", 18, "duplicate jam_id (first on line 5)"),
            ("jams.tsv", 19, "empty line"),
            ("likes.tsv", 3, "jam_id is not in jams (unknown jam, or its line was rejected)"),
            ("likes.tsv", 4, "duplicate like (first on line 2)"),
            ("likes.tsv", 5, "jam_id is not in jams (unknown jam, or its line was rejected)"),
            ("likes.tsv", 6, "expected 2 tab-separated fields (found 1)"),
            ("tracks.csv", 8, "danceability 1.5 outside 0..1"),
            ("tracks.csv", 9, "energy is not a number"),
            ("tracks.csv", 10, "track_id is not 22 base62 characters"),
            ("tracks.csv", 11, "duplicate track_id with different audio features (kept line 3)"),
            ("tracks.csv", 13, "expected 20 comma-separated fields (found 3)"),
        ]
    )
    raw = query("select raw_line from rejects where source_file = 'jams.tsv' and line_number = 12")
    assert raw == [(jam_line(10, 1, 1) + "\textra",)]
    # the album URI is not a reject: the jam stays, with no track id
    assert query(f"select uri_status, track_id from jams where jam_id = '{hex_id(16)}'") == [
        ("not_track", None)
    ]
    # nothing is lost: loaded + rejected = lines, for every file
    counts = query("select stage_counts from builds where status = 'published'")[0][0]
    import json

    files = json.loads(counts)["files"]
    assert files["jams.tsv"] == {"lines": 19, "loaded": 11, "rejected": 8}
    assert files["likes.tsv"] == {"lines": 5, "loaded": 1, "rejected": 4}
    assert files["tracks.csv"]["records"] == 12
    assert files["tracks.csv"]["loaded"] == 7 and files["tracks.csv"]["merged_repeats"] == 1
    assert query("select n_source_lines from tracks where source_line = 4") == [(2,)]


def test_unknown_spotify_variant(dump, capsys):
    timj, spotify = dump
    spotify.write_text("track,artist,danceability\nx,y,0.5\n")
    code, _, err = etl(timj, spotify, capsys)
    assert code == 2
    line = one_error_line(err)
    assert "tracks.csv, line 1: header matches no known Spotify features variant" in line
    for variant in ["tracks.csv", "SpotifyFeatures.csv", "spotify_data.csv", "dataset.csv"]:
        assert variant in line


@pytest.mark.slow
def test_spotify_header_only_is_not_published(dump, capsys):
    """A Spotify file with no rows loads, but a warehouse with no interactions fails the gate."""
    timj, spotify = dump
    spotify.write_text(TRACKS_HEADER + "\n")
    code, _, err = etl(timj, spotify, capsys)
    assert code == 1
    assert "interactions: expect_table_row_count_to_be_between" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_failed_build_leaves_published_warehouse_and_records_failure(dump, capsys):
    timj, spotify = dump
    assert etl(timj, spotify, capsys)[0] == 0
    before = query("select * from jams order by jam_id")
    (timj / "archive" / "jams.tsv").write_bytes(b"")
    assert etl(timj, spotify, capsys)[0] == 2
    assert query("select * from jams order by jam_id") == before
    statuses = query("select status, error from builds order by started_at")
    assert [s for s, _ in statuses] == ["published", "failed"]
    assert "file is empty" in statuses[1][1]


def test_console_script_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jamrec",
            "etl",
            "--timj",
            str(tmp_path),
            "--spotify",
            "x.csv",
            "--warehouse",
            str(tmp_path / "w.duckdb"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "jamrec: error:" in result.stderr


@pytest.mark.parametrize("ending", [b"\n", b""])
def test_lines_cut_across_the_newline_scans_chunks_equal_one_pass(monkeypatch, tmp_path, ending):
    import numpy as np

    from jamrec.build import ingest

    monkeypatch.setattr(ingest, "_CHUNK", 7)  # lines straddle every chunk boundary
    lines = [b"user_id\tjam_id", *(f"{'a' * (i % 11)}\t{i}".encode() for i in range(200))]
    data = b"\n".join(lines) + ending
    assert np.array_equal(
        ingest._newlines(data), np.flatnonzero(np.frombuffer(data, np.uint8) == 0x0A)
    )
    path = tmp_path / "likes.tsv"
    path.write_bytes(data)
    raw = ingest.split_lines(ingest.Source("likes.tsv", path), data)
    assert raw.header == "user_id\tjam_id"
    assert raw.table.column("raw_line").to_pylist() == lines[1:]
    assert raw.table.column("line_number").to_pylist() == list(range(2, 202))
