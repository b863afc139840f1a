"""The synthetic-data generator: formats, quirks, determinism and planted preferences.

Everything runs at the tiny scale (well under a second per dump) except the tests marked
``slow``, which generate the small scale once.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from jamrec.errors import JamrecError
from jamrec.generate import SCALES, activity, generate
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
    """Tiny dumps: seed 0 twice (determinism), seed 1, and seed 0 without broken lines."""
    root = tmp_path_factory.mktemp("generated")
    runs = {"a": (0, None), "a_again": (0, None), "b": (1, None), "clean": (0, 0.0)}
    out = {}
    for name, (seed, share) in runs.items():
        summary = generate(
            root / name,
            "tiny",
            seed=seed,
            broken_share=share,
            spotify_variants="all",
            progress=lambda s: None,
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


def test_output_does_not_depend_on_the_number_of_threads(tmp_path, monkeypatch):
    from jamrec.generate import choice

    monkeypatch.setattr(choice, "CHUNK", 256)  # many chunks even at the tiny scale
    for threads in (1, 2):
        monkeypatch.setattr(choice, "THREADS", threads)
        generate(tmp_path / str(threads), "tiny", seed=5, progress=lambda s: None)
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
    d = params["dim"]
    assert users.columns == ["user_id", *(f"u_{k}" for k in range(d))]
    assert tracks.columns == ["track_id", *(f"t_{k}" for k in range(d)), "bias"]
    assert all(dt == pl.Float32 for dt in users.dtypes[1:] + tracks.dtypes[1:])
    assert users["user_id"].is_unique().all() and tracks["track_id"].is_unique().all()
    assert params["score"] == "beta * dot(u, t) + bias" and params["beta"] > 0
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


def test_audio_features_explain_part_of_the_track_vectors(dump):
    root, _ = dump
    truth = pl.read_parquet(root / "truth/tracks.parquet")
    spotify = pl.read_csv(root / "tracks.csv").join(truth, left_on="id", right_on="track_id")
    cols = ["danceability", "energy", "loudness", "speechiness", "acousticness", "instrumentalness"]
    cols += ["liveness", "valence", "tempo", "mode", "explicit", "duration_ms"]
    x = spotify.select(cols).to_numpy().astype(float)
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


def _percentiles(root: Path, rows: list[list[str]]) -> tuple[float, float]:
    """Mean percentile of each (user, jammed catalogue track) among the catalogue, ranked
    by the truth score and by the bias alone."""
    users = pl.read_parquet(root / "truth/users.parquet")
    tracks = pl.DataFrame({"track_id": _csv(root / "tracks.csv")["id"]})
    tracks = tracks.join(pl.read_parquet(root / "truth/tracks.parquet"), on="track_id", how="left")
    beta = json.loads((root / "truth/params.json").read_text())["beta"]
    t = tracks.select([c for c in tracks.columns if c.startswith("t_")]).to_numpy()
    bias = tracks["bias"].to_numpy()
    u_of = dict(zip(users["user_id"], users.select(users.columns[1:]).to_numpy()))
    row_of = {tid: i for i, tid in enumerate(tracks["track_id"])}
    ranks, ranks_bias = [], []
    for user, uri in {(r[1], r[6][14:]) for r in rows if r[6][14:] in row_of}:
        score = beta * t @ u_of[user] + bias
        j = row_of[uri]
        ranks.append((score < score[j]).mean())
        ranks_bias.append((bias < bias[j]).mean())
    return float(np.mean(ranks)), float(np.mean(ranks_bias))


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        generate(tmp_path, "huge")
    with pytest.raises(JamrecError, match="variant"):
        generate(tmp_path, "tiny", spotify_variants=["tracks.csv", "nope.csv"])
    assert set(SCALES) == {"tiny", "small", "full"}


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
    users = pl.read_parquet(root / "truth/users.parquet")
    tracks = pl.DataFrame({"track_id": _csv(root / "tracks.csv")["id"]})
    tracks = tracks.join(pl.read_parquet(root / "truth/tracks.parquet"), on="track_id", how="left")
    beta = json.loads((root / "truth/params.json").read_text())["beta"]
    t = tracks.select([c for c in tracks.columns if c.startswith("t_")]).to_numpy()
    bias = tracks["bias"].to_numpy()
    u_of = dict(zip(users["user_id"], users.select(users.columns[1:]).to_numpy()))
    row_of = {tid: i for i, tid in enumerate(tracks["track_id"])}
    by_user: dict[str, list[int]] = {}
    for r in rows:
        if r[6][14:] in row_of:
            by_user.setdefault(r[1], []).append(row_of[r[6][14:]])
    hits, hits_bias = [], []
    for user, items in by_user.items():
        if len(set(items)) < 2:
            continue
        held, seen = items[-1], [i for i in items if i != items[-1]]
        for score, out in ((beta * t @ u_of[user] + bias, hits), (bias.copy(), hits_bias)):
            score[seen] = -np.inf
            out.append((score > score[held]).sum() < 10)
    return float(np.mean(hits)), float(np.mean(hits_bias))
