"""The real 5,000-line excerpt of jams.tsv (skipped when ../shared is absent)."""

from __future__ import annotations

import json
import unicodedata

import duckdb
import pytest

from jamrec.build.pipeline import run_build
from tests.helpers import SHARED_SAMPLE, TRACKS_HEADER

pytestmark = pytest.mark.skipif(not SHARED_SAMPLE.exists(), reason="the real TIMJ sample is absent")


@pytest.fixture(scope="module")
def sample_warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    (root / "archive").mkdir()
    (root / "archive" / "jams.tsv").write_bytes(SHARED_SAMPLE.read_bytes())
    (root / "archive" / "likes.tsv").write_text("user_id\tjam_id\n")
    (root / "archive" / "followers.tsv").write_text("followed_user_id\tfollower_user_id\n")
    # Features for the first 1,000 distinct track ids of the sample (sorted): a partial overlap.
    ids = sorted(
        {
            line.split("\t")[6][len("spotify:track:") :]
            for line in SHARED_SAMPLE.read_text().splitlines()[1:]
            if line.split("\t")[6].startswith("spotify:track:")
        }
    )[:1000]
    rows = [
        f"{i},Song,50,200000,0,\"['A']\",['{i}'],2010,0.5,0.5,1,-6.0,1,0.1,0.1,0.0,0.1,0.5,120.0,4"
        for i in ids
    ]
    (root / "tracks.csv").write_text(TRACKS_HEADER + "\n" + "\n".join(rows) + "\n")
    path = root / "jamrec.duckdb"
    run_build(root, root / "tracks.csv", path)
    con = duckdb.connect(str(path), read_only=True)
    yield con
    con.close()


def test_exact_counts(sample_warehouse):
    q = lambda sql: sample_warehouse.execute(sql).fetchall()  # noqa: E731
    assert q("select count(*), count(distinct user_id), count(distinct track_id) from jams") == [
        (5000, 2766, 3207)
    ]
    assert q("select count(*) from rejects") == [(0,)]
    assert dict(q("select uri_status, count(*) from jams group by 1")) == {
        "track": 3488,
        "empty": 1512,
    }
    assert q("select min(creation_date)::varchar, max(creation_date)::varchar from jams") == [
        ("2015-09-03", "2015-09-11")
    ]
    # positives: 3,488 jams with a URI, 3,468 distinct (user, track) pairs
    counts = json.loads(q("select stage_counts from builds")[0][0])
    assert counts["positives"] == 3468
    assert counts["positives_with_features"] + counts["positives_without_features"] == 3468
    assert q("select count(*) from tracks") == [(1000,)]


def test_artist_names_are_repaired(sample_warehouse):
    q = lambda sql: sample_warehouse.execute(sql).fetchall()  # noqa: E731
    by_line = dict(q("select source_line, artist from jams where source_line in (4, 31)"))
    assert by_line == {4: "야광토끼 (neon bunny)", 31: "Hitchhiker 히치하이커"}
    titles = {
        t for (t,) in q("select title from jams where artist in ('Crystal Kay', 'KinKi Kids')")
    }
    assert {"こんなに近くで...", "硝子の少年"} <= titles
    assert q("select count(*) from jams where artist = 'Jerry González'") == [(1,)]
    assert q("select count(*) from jams where artist = 'Björk'")[0][0] >= 1
    # Every non-ASCII row was damaged exactly once: its text is UTF-8 bytes shown as
    # cp1252, and each one decodes back (recomposed to NFC, as some clients sent
    # decomposed accents and jamo).
    raw = SHARED_SAMPLE.read_text().split("\n")
    rows = q(
        "select source_line, artist, title from jams "
        "where strlen(artist || coalesce(title, '')) > length(artist || coalesce(title, ''))"
    )
    assert len(rows) == 240
    for line, artist, title in rows:
        fields = raw[line - 1].split("\t")
        assert artist == unicodedata.normalize("NFC", _undamage(fields[2]))
        assert (title or "") == unicodedata.normalize("NFC", _undamage(fields[3]))


def _undamage(text: str) -> str:
    data = bytearray()
    for ch in text:
        try:
            data += ch.encode("cp1252")
        except UnicodeEncodeError:
            data.append(ord(ch))  # the five bytes cp1252 leaves undefined
    return data.decode("utf-8")
