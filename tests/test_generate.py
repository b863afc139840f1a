"""The synthetic-data generator: formats, quirks, determinism and planted preferences.

Everything runs at the tiny scale (well under a second per dump) except the tests marked
``slow``: one generates the small scale, one builds a warehouse from a tiny dump for the
oracle.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from jamrec.errors import JamrecError
from jamrec.generate import AUDIO_SHARE, SCALES, activity, generate
from jamrec.textfix import damage_text as damage


def repair(text: str) -> str:
    """Undo the damage strictly: raises UnicodeError unless ``text`` is damaged UTF-8."""
    out = bytearray()
    for ch in text:
        try:
            out += ch.encode("cp1252")
        except UnicodeEncodeError:
            out += ch.encode("latin-1")  # the five bytes cp1252 leaves undefined, or raises
    return out.decode("utf-8")


# The published headers, spelled out here rather than imported (docs/inputs.md).
HEADERS = {
    "tracks.csv": "id,name,popularity,duration_ms,explicit,artists,id_artists,release_date,"
    "danceability,energy,key,loudness,mode,speechiness,acousticness,instrumentalness,liveness,"
    "valence,tempo,time_signature",
    "SpotifyFeatures.csv": "genre,artist_name,track_name,track_id,popularity,acousticness,"
    "danceability,duration_ms,energy,instrumentalness,key,liveness,loudness,mode,speechiness,"
    "tempo,time_signature,valence",
    "spotify_data.csv": ",artist_name,track_name,track_id,popularity,year,genre,danceability,"
    "energy,key,loudness,mode,speechiness,acousticness,instrumentalness,liveness,valence,tempo,"
    "duration_ms,time_signature",
    "dataset.csv": ",track_id,artists,album_name,track_name,popularity,duration_ms,explicit,"
    "danceability,energy,key,loudness,mode,speechiness,acousticness,instrumentalness,liveness,"
    "valence,tempo,time_signature,track_genre",
    "tracks_features.csv": "id,name,album,album_id,artists,artist_ids,track_number,disc_number,"
    "explicit,danceability,energy,key,loudness,mode,speechiness,acousticness,instrumentalness,"
    "liveness,valence,tempo,duration_ms,time_signature,year,release_date",
    "archive/jams.tsv": "jam_id\tuser_id\tartist\ttitle\tcreation_date\tlink\tspotify_uri",
    "archive/likes.tsv": "user_id\tjam_id",
    "archive/followers.tsv": "followed_user_id\tfollower_user_id",
}
HEX32 = re.compile(r"[0-9a-f]{32}")
TRACK_URI = re.compile(r"spotify:track:([0-9A-Za-z]{22})")
UNDEFINED_CP1252 = "\x81\x8d\x8f\x90\x9d"


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Tiny dumps: seed 0 twice (determinism), seed 1, seed 0 without broken lines, and
    seed 0 with audio shares 0 and 0.8 (twice)."""
    root = tmp_path_factory.mktemp("generated")
    runs = {
        "a": (0, None, AUDIO_SHARE),
        "a_again": (0, None, AUDIO_SHARE),
        "b": (1, None, AUDIO_SHARE),
        "clean": (0, 0.0, AUDIO_SHARE),
        "zero": (0, None, 0.0),
        "loud": (0, None, 0.8),
        "loud_again": (0, None, 0.8),
    }
    out = {}
    for name, (seed, share, audio_share) in runs.items():
        summary = generate(
            root / name,
            "tiny",
            seed=seed,
            broken_share=share,
            spotify_variants="all",
            progress=lambda s: None,
            audio_share=audio_share,
        )
        out[name] = (root / name, summary)
    return out


@pytest.fixture(scope="module")
def dump(dumps) -> tuple[Path, dict]:
    return dumps["a"]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n") and b"\r" not in raw
    return raw.decode("utf-8")[:-1].split("\n")


def _jam_rows(root: Path) -> list[list[str]]:
    """Well-formed jams.tsv data rows (7 fields), split on tabs; no unquoting."""
    return [
        f
        for f in (line.split("\t") for line in _lines(root / "archive/jams.tsv")[1:])
        if len(f) == 7
    ]


def test_same_seed_same_bytes_different_seed_different(dumps):
    first, again, other = (_files(dumps[k][0]) for k in ("a", "a_again", "b"))
    assert set(first) == set(again) == set(other)
    assert len(first) == 11  # 3 TIMJ files, 5 Spotify variants, 3 truth files
    for name, data in first.items():
        assert data == again[name], f"{name} differs between two runs with the same seed"
        assert data != other[name], f"{name} is the same for seeds 0 and 1"


def test_same_audio_share_same_bytes_another_share_other_picks(dumps):
    loud, again, zero = (_files(dumps[k][0]) for k in ("loud", "loud_again", "zero"))
    assert loud == again
    for name, data in loud.items():
        # The catalogue and the users' taste do not depend on the share; who picked what does.
        same = name.endswith(".csv") or name == "truth/users.parquet"
        assert (data == zero[name]) == same, name


# Today's dump bytes at audio share 0 (tiny, seed 0, all variants), as written before the
# share existed; the truth's vectors and bias likewise (its files gained columns). A
# change here changes every generated dump: make it on purpose, and update the hashes.
BEFORE_AUDIO_SHARE = {
    "SpotifyFeatures.csv": "aaed5e46c7cacb9ea48c31f11243343b55209f63c168d2ea9c22ed4038268c4e",
    "archive/followers.tsv": "289c1d22d385c4fb1d5eba44093af17161e484a2b0e010db2452d21d527d1704",
    "archive/jams.tsv": "a954990e303cfdd305eddd438e5d4574eb54e28d003cd7998b3c58f1584ed1d0",
    "archive/likes.tsv": "ad07c3baaf33515a70bf93608e100b51a136efe920a6334e03bd863235ccbc39",
    "dataset.csv": "91b4e5aff23998c0bf6e0928fdc0d0f5a37d115e80e013d4c5a8cc5dfc6412a4",
    "spotify_data.csv": "a9dd67e5abcbb63d5a8adb26effe99778444eabe0f7497fa666683a8053fd154",
    "tracks.csv": "95c14542008620d3b8ba00e8f036090c3fab4a2d62180503d4a65c960cec9a23",
    "tracks_features.csv": "167cef89e44d9c4bcc9285012615f4813b86b197340b82c3122088d61aad23dd",
    "truth/users.parquet u": "881cbfacbd6a985a49f92d7f2e2f1d3fdff907a254550b8312ed2157e16394c6",
    "truth/tracks.parquet t": "8bdd09a80104f9e1b7cda63d4b655daca61bd7622f747cf28188aa7c1744cfaa",
}


def test_audio_share_zero_writes_the_dumps_from_before_the_share(dumps):
    root, _ = dumps["zero"]
    found = {
        name: hashlib.sha256(data).hexdigest()
        for name, data in _files(root).items()
        if not name.startswith("truth/")
    }
    for name, prefix, extra in (("users", "u_", []), ("tracks", "t_", ["bias"])):
        frame = pl.read_parquet(root / f"truth/{name}.parquet")
        cols = [c for c in frame.columns if c.startswith(prefix)] + extra
        values = np.ascontiguousarray(frame.select(cols).to_numpy(), dtype=np.float32)
        ids = "\n".join(frame[frame.columns[0]]).encode()
        found[f"truth/{name}.parquet {prefix[0]}"] = hashlib.sha256(
            values.tobytes() + ids
        ).hexdigest()
    assert found == BEFORE_AUDIO_SHARE


@pytest.mark.parametrize("audio_share", [0.0, 0.8])
def test_output_does_not_depend_on_the_number_of_threads(tmp_path, monkeypatch, audio_share):
    from jamrec.generate import choice

    monkeypatch.setattr(choice, "CHUNK", 256)  # many chunks even at the tiny scale
    for threads in (1, 2):
        monkeypatch.setattr(choice, "THREADS", threads)
        generate(
            tmp_path / str(threads),
            "tiny",
            seed=5,
            progress=lambda s: None,
            audio_share=audio_share,
        )
    assert _files(tmp_path / "1") == _files(tmp_path / "2")


def test_headers_are_exact(dump):
    root, _ = dump
    for name, header in HEADERS.items():
        assert _lines(root / name)[0] == header, name


def test_only_the_reported_lines_are_broken(dumps):
    root, summary = dumps["a"]
    lines = _lines(root / "archive/jams.tsv")[1:]
    broken = [line for line in lines if line.count("\t") != 6]
    assert len(broken) == summary["broken_lines"] >= 3
    assert len(lines) == summary["jams_lines"] == summary["jams"] + summary["broken_lines"]
    assert any(line.count("\t") == 7 for line in broken)  # the embedded tab
    assert any(line.count("\t") < 6 for line in broken)  # truncated, split by a newline
    clean_root, clean = dumps["clean"]
    assert clean["broken_lines"] == 0
    assert all(line.count("\t") == 6 for line in _lines(clean_root / "archive/jams.tsv")[1:])


def test_ids_dates_links_and_uris_have_the_real_shapes(dump):
    root, summary = dump
    rows = _jam_rows(root)
    assert all(HEX32.fullmatch(r[0]) and HEX32.fullmatch(r[1]) for r in rows)
    assert all("2011-08-26" <= r[4] <= "2015-09-26" and len(r[4]) == 10 for r in rows)
    assert len({r[0] for r in rows}) == len(rows)
    uris = [r[6] for r in rows if r[6]]
    assert 0.6 < len(uris) / len(rows) < 0.8 and len(uris) == summary["jams_with_uri"]
    odd = [u for u in uris if not TRACK_URI.fullmatch(u)]
    assert len(odd) == summary["non_track_uris"] > 0
    assert all(u.startswith(("spotify:album:", "spotify:local:", "spotify:track:")) for u in odd)
    links = [r[5] for r in rows]
    assert sum(link.startswith("http://www.youtube.com/watch?v=") for link in links) > 0.5 * len(
        rows
    )
    assert any(link.startswith("http:///") for link in links) and "" in links
    for name in ("archive/likes.tsv", "archive/followers.tsv"):
        pairs = [line.split("\t") for line in _lines(root / name)[1:]]
        assert all(len(p) == 2 and HEX32.fullmatch(p[0]) and HEX32.fullmatch(p[1]) for p in pairs)
        assert len({tuple(p) for p in pairs}) == len(pairs), f"{name} has repeated pairs"
    ids = [line.split(",", 1)[0] for line in _lines(root / "tracks.csv")[1:]]
    assert all(re.fullmatch(r"[0-7][0-9A-Za-z]{21}", i) for i in ids) and len(set(ids)) == len(ids)


def test_non_ascii_rows_are_double_encoded(dump):
    root, summary = dump
    damaged = 0
    for row in _jam_rows(root):
        fields = [f for f in row[2:4] if not f.isascii()]
        for field in fields:
            fixed = repair(field)  # raises if the text is not damaged UTF-8
            assert not fixed.isascii()
        damaged += bool(fields)
    assert damaged == summary["mojibake_rows"] > 0.02 * summary["jams"]
    text = (root / "archive/jams.tsv").read_text("utf-8")
    assert "â€™" in text, "curly apostrophes should appear damaged"
    assert any(ch in text for ch in UNDEFINED_CP1252), "no byte that cp1252 leaves undefined"


def test_damage_is_the_inverse_of_the_etl_repair():
    samples = [
        "Jerry González",
        "ÁÍÏÐÝ",
        "끼 이 한국어",
        "こんにちは 周杰倫",
        "Группа",
        "It’s",
        "MUSIDORΛ",
    ]
    for s in samples:
        assert repair(damage(s)) == s
    assert damage("Jerry González") == "Jerry GonzÃ¡lez" and damage("Á") == "Ã\x81"
    textfix = pytest.importorskip("jamrec.textfix")
    for s in samples:
        assert textfix.repair_text(damage(s)) == s


def test_timj_names_match_the_spotify_file(dump):
    root, _ = dump
    with open(root / "tracks.csv", newline="", encoding="utf-8") as fh:
        spotify = {r["id"]: r for r in csv.DictReader(fh)}
    matched = 0
    for row in _jam_rows(root):
        uri = TRACK_URI.fullmatch(row[6])
        if uri and uri.group(1) in spotify:
            track = spotify[uri.group(1)]
            artist, title = (f if f.isascii() else repair(f) for f in row[2:4])
            assert title == track["name"] and artist == ast.literal_eval(track["artists"])[0]
            matched += 1
    assert matched > 0


def test_likes_duplicates_and_unknown_jams(dump):
    root, summary = dump
    rows = _jam_rows(root)
    creator = {r[0]: r[1] for r in rows}
    broken_ids = {
        line[:32] for line in _lines(root / "archive/jams.tsv")[1:] if line.count("\t") != 6
    }
    likes = [line.split("\t") for line in _lines(root / "archive/likes.tsv")[1:]]
    assert len(likes) == summary["likes"]
    unknown = [jam for _, jam in likes if jam not in creator]
    assert len(unknown) == summary["likes_of_unknown_jams"] > 0
    assert not set(unknown) & broken_ids, "likes of broken lines would be miscounted"
    assert all(creator.get(jam) != user for user, jam in likes), "a user liked their own jam"
    groups: dict[tuple, list[str]] = {}
    for r in rows:
        groups.setdefault((r[1], r[2], r[3]), []).append(r[4])
    extra = sum(len(days) - 1 for days in groups.values())
    assert extra == summary["duplicate_jams"] > 0
    same_day = sum(len(set(d)) == 1 for d in groups.values() if len(d) > 1)
    assert same_day > 0.5 * sum(len(d) > 1 for d in groups.values())


def test_followers_have_no_self_follows(dump):
    root, summary = dump
    pairs = [line.split("\t") for line in _lines(root / "archive/followers.tsv")[1:]]
    assert len(pairs) == summary["followers"] and all(a != b for a, b in pairs)


def test_spotify_variants_agree_and_use_their_conventions(dump):
    root, summary = dump
    frames = {name: _csv(root / name) for name in HEADERS if name.endswith(".csv")}
    ids = set(frames["tracks.csv"]["id"])
    assert len(ids) == summary["spotify_tracks"]
    assert set(frames["SpotifyFeatures.csv"]["track_id"]) == ids
    assert (
        set(frames["spotify_data.csv"]["track_id"]) == set(frames["dataset.csv"]["track_id"]) == ids
    )
    assert set(frames["tracks_features.csv"]["id"]) == ids
    tracks = frames["tracks.csv"]
    for field in ("artists", "id_artists"):
        for text in tracks[field]:
            assert repr(ast.literal_eval(text)) == text  # exactly Python's list repr
    dates = tracks["release_date"]
    for pattern in (r"\d{4}", r"\d{4}-\d{2}", r"\d{4}-\d{2}-\d{2}"):
        assert any(re.fullmatch(pattern, d) for d in dates), pattern
    assert set(tracks["explicit"]) == {"0", "1"} and set(tracks["mode"]) == {"0", "1"}
    assert {int(k) for k in tracks["key"]} == set(range(12))
    assert {int(t) for t in tracks["time_signature"]} <= {1, 3, 4, 5}
    assert all(0 <= int(p) <= 100 for p in tracks["popularity"])
    assert all(-60 <= float(x) <= 1 for x in tracks["loudness"])
    for col in ("danceability", "energy", "valence", "acousticness", "instrumentalness"):
        assert all(0 <= float(x) <= 1 for x in tracks[col]), col
    features = frames["SpotifyFeatures.csv"]
    assert set(features["mode"]) == {"Major", "Minor"}
    assert set(features["key"]) <= {"C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"}
    assert all(re.fullmatch(r"[1345]/4", t) for t in features["time_signature"])
    assert len(features["track_id"]) > len(ids)  # tracks repeat under several genres
    assert frames["spotify_data.csv"][""][:3] == ["0", "1", "2"]
    assert set(frames["dataset.csv"]["explicit"]) == {"True", "False"}
    assert any(";" in a for a in frames["dataset.csv"]["artists"])
    assert set(frames["tracks_features.csv"]["explicit"]) == {"True", "False"}


def _csv(path: Path) -> dict[str, list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return {name: [r[i] for r in rows[1:]] for i, name in enumerate(rows[0])}


def test_csv_is_written_like_pandas(dump):
    pd = pytest.importorskip("pandas")
    root, _ = dump
    for name in ("tracks.csv", "dataset.csv"):
        raw = (root / name).read_text("utf-8")
        frame = pd.read_csv(io.StringIO(raw), dtype=str, keep_default_na=False)
        index = name == "dataset.csv"
        if index:
            frame = frame.set_index(frame.columns[0]).rename_axis(None)
        assert frame.to_csv(index=index) == raw, name
    assert '"' in (root / "tracks.csv").read_text("utf-8"), "no quoted field in tracks.csv"


def test_truth_covers_every_user_and_track_in_the_dump(dump):
    root, summary = dump
    users = pl.read_parquet(root / "truth/users.parquet")
    tracks = pl.read_parquet(root / "truth/tracks.parquet")
    params = json.loads((root / "truth/params.json").read_text())
    d, k = params["dim"], params["audio_dim"]
    assert users.columns == [
        "user_id",
        *(f"u_{i}" for i in range(d)),
        *(f"p_{i}" for i in range(k)),
    ]
    assert tracks.columns == [
        "track_id", *(f"t_{i}" for i in range(d)), "bias", *(f"a_{i}" for i in range(k))
    ]  # fmt: skip
    assert all(dt == pl.Float32 for dt in users.dtypes[1:] + tracks.dtypes[1:])
    assert users["user_id"].is_unique().all() and tracks["track_id"].is_unique().all()
    assert params["score"] == (
        "beta * (sqrt(1 - audio_share) * dot(u, t) + sqrt(audio_share) * (audio_scale"
        " * exp(-|a - p|^2 / (2 audio_width^2)) + audio_offset)) + bias"
    )
    assert params["beta"] > 0 and params["audio_share"] == AUDIO_SHARE
    assert len(params["audio_features"]) == k
    assert params["counts"] == summary and len(users) == summary["users"]
    seen_users, seen_tracks = set(), set(_csv(root / "tracks.csv")["id"])
    for line in _lines(root / "archive/jams.tsv")[1:]:
        fields = line.split("\t")
        if len(fields) > 1 and HEX32.fullmatch(fields[0]) and HEX32.fullmatch(fields[1]):
            seen_users.add(fields[1])
        if uri := TRACK_URI.fullmatch(fields[-1]):  # broken lines included
            seen_tracks.add(uri.group(1))
    for name in ("archive/likes.tsv", "archive/followers.tsv"):
        pairs = [line.split("\t") for line in _lines(root / name)[1:]]
        seen_users.update(p[0] for p in pairs)
        if name.endswith("followers.tsv"):
            seen_users.update(p[1] for p in pairs)
    # A user seen only on a truncated line (id cut short) still has a truth row.
    assert seen_users <= set(users["user_id"])
    assert len(users) - len(seen_users) <= summary["broken_lines"]
    assert seen_tracks <= set(tracks["track_id"]) and len(tracks) == summary["truth_tracks"]


# Numeric columns of tracks.csv (key last: left out of linear fits, it is a pitch class).
FEATURES = ["danceability", "energy", "loudness", "speechiness", "acousticness"]
FEATURES += ["instrumentalness", "liveness", "valence", "tempo", "mode", "explicit", "duration_ms"]
FEATURES += ["key"]


def test_audio_features_explain_part_of_the_track_vectors(dump):
    root, _ = dump
    truth = pl.read_parquet(root / "truth/tracks.parquet")
    spotify = pl.read_csv(root / "tracks.csv").join(truth, left_on="id", right_on="track_id")
    x = spotify.select([c for c in FEATURES if c != "key"]).to_numpy().astype(float)
    x = np.c_[x, np.log(x[:, [3, 6, 11]]), np.ones(len(x))]
    t = spotify.select([c for c in truth.columns if c.startswith("t_")]).to_numpy().astype(float)
    residual = t - x @ np.linalg.lstsq(x, t, rcond=None)[0]
    r2 = 1 - residual.var(axis=0).sum() / t.var(axis=0).sum()
    assert 0.3 < r2 < 0.6


def test_jams_per_user_are_heavy_tailed(dump):
    counts = activity.jams_per_user(np.random.default_rng(0), 20_000, 200_000)
    assert 0.40 < (counts == 1).mean() < 0.48
    assert 2 <= np.median(counts) <= 3 and 100 <= counts.max() < 1000
    root, _ = dump
    per_user = pl.Series([r[1] for r in _jam_rows(root)]).value_counts()["count"]
    assert (per_user == 1).mean() > 0.3 and per_user.max() > 20 * per_user.median()


def test_truth_score_ranks_jammed_tracks_high(dump):
    root, _ = dump
    rank, rank_bias = _percentiles(root, [r for r in _jam_rows(root) if TRACK_URI.fullmatch(r[6])])
    assert rank > 0.9 and rank > rank_bias + 0.03


class _Planted:
    """A generated dump's planted score, from its ``truth/`` files alone: the formula that
    params.json records, written out here apart from the generator and the oracle.

    ``tracks`` (track ids) restricts and orders the tracks; all truth tracks by default.
    """

    def __init__(self, root: Path, tracks: list[str] | None = None):
        self.params = json.loads((root / "truth/params.json").read_text())
        users = pl.read_parquet(root / "truth/users.parquet")
        frame = pl.read_parquet(root / "truth/tracks.parquet")
        if tracks is not None:
            frame = pl.DataFrame({"track_id": tracks}).join(frame, on="track_id", how="left")
        d, k = self.params["dim"], self.params["audio_dim"]

        def cols(df: pl.DataFrame, prefix: str, n: int) -> np.ndarray:
            return df.select([f"{prefix}_{i}" for i in range(n)]).to_numpy().astype(np.float64)

        self.u, self.p = cols(users, "u", d), cols(users, "p", k)
        self.t, self.a = cols(frame, "t", d), cols(frame, "a", k)
        self.bias = frame["bias"].to_numpy().astype(np.float64)
        self.row = {user: i for i, user in enumerate(users["user_id"])}
        self.track_ids = list(frame["track_id"])

    def parts(self, user: str) -> tuple[np.ndarray, np.ndarray]:
        """``(u . t, the audio taste)`` of `user` for every track."""
        i, prm = self.row[user], self.params
        bump = np.exp(-((self.a - self.p[i]) ** 2).sum(axis=1) / (2 * prm["audio_width"] ** 2))
        return self.t @ self.u[i], prm["audio_scale"] * bump + prm["audio_offset"]

    def score(self, user: str) -> np.ndarray:
        """The planted score of `user` for every track."""
        dot, audio = self.parts(user)
        s, beta = self.params["audio_share"], self.params["beta"]
        return beta * (math.sqrt(1 - s) * dot + math.sqrt(s) * audio) + self.bias


def _percentiles(root: Path, rows: list[list[str]]) -> tuple[float, float]:
    """Mean percentile of each (user, jammed catalogue track) among the catalogue, ranked
    by the truth score and by the bias alone."""
    planted = _Planted(root, _csv(root / "tracks.csv")["id"])
    bias = planted.bias
    row_of = {tid: i for i, tid in enumerate(planted.track_ids)}
    ranks, ranks_bias = [], []
    for user, uri in {(r[1], r[6][14:]) for r in rows if r[6][14:] in row_of}:
        score = planted.score(user)
        j = row_of[uri]
        ranks.append((score < score[j]).mean())
        ranks_bias.append((bias < bias[j]).mean())
    return float(np.mean(ranks)), float(np.mean(ranks_bias))


def _played_audio_percentiles(root: Path) -> tuple[float, float]:
    """Mean percentile of each jammed track, among the tracks TIMJ users know, by the
    jammer's own audio taste and (the null) by other users' audio tastes (20 shuffles)."""
    planted = _Planted(root)
    known = np.flatnonzero(planted.bias > -10)  # the rest: catalogue tracks nobody knows
    column = {planted.track_ids[j]: c for c, j in enumerate(known)}
    users = list(planted.row)
    taste = np.stack([planted.parts(user)[1][known] for user in users])
    percentile = taste.argsort(axis=1).argsort(axis=1) / (len(known) - 1)
    pairs = np.array(
        [
            (planted.row[r[1]], column[r[6][14:]])
            for r in _jam_rows(root)
            if TRACK_URI.fullmatch(r[6]) and r[6][14:] in column and r[1] in planted.row
        ]
    )
    own = percentile[pairs[:, 0], pairs[:, 1]].mean()
    rng = np.random.default_rng(0)
    null = np.mean(
        [
            percentile[rng.permutation(len(users))[pairs[:, 0]], pairs[:, 1]].mean()
            for _ in range(20)
        ]
    )
    return float(own), float(null)


def test_audio_share_zero_plants_no_audio_taste(dumps):
    root, _ = dumps["zero"]
    planted = _Planted(root)
    assert planted.params["audio_share"] == 0
    beta = planted.params["beta"]
    for user in list(planted.row)[:50]:
        dot, _ = planted.parts(user)
        assert np.array_equal(planted.score(user), beta * dot + planted.bias)
    # The jammed tracks sit no higher in their jammer's audio taste than in anyone's.
    own, null = _played_audio_percentiles(root)
    assert abs(own - null) < 0.05, (own, null)


def test_a_high_audio_share_plants_an_audio_taste(dumps):
    root, _ = dumps["loud"]
    planted = _Planted(root)
    assert planted.params["audio_share"] == 0.8
    own, null = _played_audio_percentiles(root)
    assert own > 0.85 and own > null + 0.2, (own, null)
    # 80% of the taste's variance (within a user, over the tracks TIMJ users know) is the
    # audio taste's; the two parts are nearly uncorrelated.
    known = planted.bias > -10
    shares, corr = [], []
    for user in list(planted.row)[:100]:
        dot, audio = (x[known] for x in planted.parts(user))
        taste = math.sqrt(0.2) * dot + math.sqrt(0.8) * audio
        shares.append(0.8 * audio.var() / taste.var())
        corr.append(np.corrcoef(dot, audio)[0, 1])
    assert 0.7 < np.mean(shares) < 0.9 and abs(np.mean(corr)) < 0.1
    # And no model linear in the published features reproduces it (about half, per user).
    spotify = pl.read_csv(root / "tracks.csv")
    x = spotify.select([c for c in FEATURES if c != "key"]).to_numpy().astype(float)
    x = np.c_[x, np.log(x[:, [3, 6, 11]]), np.ones(len(x))]
    catalogue = _Planted(root, list(spotify["id"]))
    r2 = []
    for user in list(planted.row)[:100]:
        _, audio = catalogue.parts(user)
        residual = audio - x @ np.linalg.lstsq(x, audio, rcond=None)[0]
        r2.append(1 - residual.var() / audio.var())
    assert 0.3 < np.mean(r2) < 0.75, np.mean(r2)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        generate(tmp_path, "huge")
    with pytest.raises(JamrecError, match="variant"):
        generate(tmp_path, "tiny", spotify_variants=["tracks.csv", "nope.csv"])
    for share in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="audio share"):
            generate(tmp_path, "tiny", audio_share=share)
    assert set(SCALES) == {"tiny", "small", "full"}


def test_the_command_line_takes_and_records_the_audio_share(tmp_path, capsys):
    from jamrec.cli import main

    out = tmp_path / "dump"
    assert main(["generate", "--out", str(out), "--scale", "tiny", "--audio-share", "0.8"]) == 0
    assert "audio share 0.8" in capsys.readouterr().out
    assert json.loads((out / "truth/params.json").read_text())["audio_share"] == 0.8
    for bad in ("1.5", "-0.1", "nan", "half"):
        with pytest.raises(SystemExit) as exit_:
            main(["generate", "--out", str(out), "--audio-share", bad])
        assert exit_.value.code == 2
        assert "--audio-share" in capsys.readouterr().err


@pytest.mark.slow
def test_small_scale_truth_finds_held_out_jams_popularity_does_not(tmp_path):
    summary = generate(tmp_path, "small", seed=3, progress=lambda s: None)
    assert 0.9 * SCALES["small"].n_jams < summary["jams"] < 1.05 * SCALES["small"].n_jams
    assert 0.66 < summary["jams_with_uri"] / summary["jams"] < 0.74
    assert 0.7 < summary["jams_with_track_in_spotify"] / summary["jams_with_track_uri"] < 0.8
    assert 0.035 < summary["mojibake_rows"] / summary["jams"] < 0.07
    all_rows = _jam_rows(tmp_path)
    per_user = pl.Series([r[1] for r in all_rows]).value_counts()["count"]
    assert 0.38 < (per_user == 1).mean() < 0.5 and 2 <= per_user.median() <= 3
    assert per_user.max() >= 100
    rows = [r for r in all_rows if TRACK_URI.fullmatch(r[6])]
    hit, hit_bias = _hits_at_10(tmp_path, rows)
    assert hit > 2 * hit_bias and hit > 0.1


def _hits_at_10(root: Path, rows: list[list[str]]) -> tuple[float, float]:
    """Hold out each user's last jammed catalogue track; share of users for whom it is in
    the top 10 of the catalogue (their other tracks removed) by truth score and by bias."""
    planted = _Planted(root, _csv(root / "tracks.csv")["id"])
    bias = planted.bias
    row_of = {tid: i for i, tid in enumerate(planted.track_ids)}
    by_user: dict[str, list[int]] = {}
    for r in rows:
        if r[6][14:] in row_of:
            by_user.setdefault(r[1], []).append(row_of[r[6][14:]])
    hits, hits_bias = [], []
    for user, items in by_user.items():
        if len(set(items)) < 2:
            continue
        held, seen = items[-1], [i for i in items if i != items[-1]]
        for score, out in ((planted.score(user), hits), (bias.copy(), hits_bias)):
            score[seen] = -np.inf
            out.append((score > score[held]).sum() < 10)
    return float(np.mean(hits)), float(np.mean(hits_bias))


@pytest.mark.slow
def test_the_oracle_ranks_by_the_full_planted_score(dumps, tmp_path):
    from jamrec.build.pipeline import run_build
    from jamrec.models import create, load
    from jamrec.models.base import TrainData
    from jamrec.models.dataset import open_dataset

    root, _ = dumps["loud"]
    run_build(root, root / "tracks.csv", tmp_path / "jamrec.duckdb")
    data = open_dataset(tmp_path / "jamrec.duckdb")
    assert data.truth is not None and data.truth.audio_share == 0.8
    oracle = create("oracle").fit(TrainData.from_dataset(data))
    planted = _Planted(root, list(data.tracks))
    users = np.arange(0, data.n_users, 5)
    scores = oracle.score(users)
    want = np.stack([planted.score(data.users[u]) for u in users])
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-4)
    # The audio taste changes the ranking: the dot product and bias alone rank otherwise.
    beta = planted.params["beta"]
    alone = np.stack([beta * planted.parts(data.users[u])[0] + planted.bias for u in users])
    top = np.argsort(-scores, axis=1)[:, :10]
    assert (top != np.argsort(-alone, axis=1)[:, :10]).any(axis=1).mean() > 0.9
    saved = load(oracle.save(tmp_path / "oracle"))
    assert np.array_equal(saved.score(users), scores)


def test_an_oracle_saved_before_the_audio_share_still_loads(tmp_path):
    from jamrec.models import create, load
    from tests.planted import planted

    data, _ = planted()
    oracle = create("oracle").fit(data)
    folder = oracle.save(tmp_path / "oracle")
    truth = data.truth
    assert truth is not None
    # The old format: the user vectors already times beta, no mix.
    np.savez(
        folder / "truth.npz", users=truth.users * truth.beta, tracks=truth.tracks, bias=truth.bias
    )
    users = np.arange(10)
    np.testing.assert_allclose(load(folder).score(users), oracle.score(users), rtol=1e-6)
