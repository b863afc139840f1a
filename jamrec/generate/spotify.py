"""Write the Spotify audio-features file in any of its five public Kaggle variants.

All variants describe the same catalogue (the first ``n_catalogue`` pool tracks) with the
same values; only the layout differs: column order and names, artists as a Python list,
one name or ``A;B``, key as a number or a letter, mode 0/1 or Major/Minor, explicit 0/1
or True/False, an unnamed index column, one row per (track, genre) in SpotifyFeatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from jamrec.generate import text, vocab

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
}
VARIANTS = tuple(HEADERS)
KEY_LETTERS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Digits as in the Kaggle files: 3 decimals, or 3 significant digits for the small ones.
DECIMALS = {"danceability": 3, "energy": 3, "loudness": 3, "valence": 3, "tempo": 3}
SIGNIFICANT = ("speechiness", "acousticness", "instrumentalness", "liveness")


@dataclass
class Catalogue:
    """What the Spotify files say about the catalogue; every array/Series is (n,).

    ``artists`` (n, 3) holds indices into ``artist_names``/``artist_ids`` (-1 = none).
    """

    track_id: pl.Series
    name: pl.Series
    artists: np.ndarray
    artist_names: pl.Series
    artist_ids: pl.Series
    album: pl.Series
    album_id: pl.Series
    genre: np.ndarray
    popularity: np.ndarray
    features: dict[str, np.ndarray]


def release_dates(rng: np.random.Generator, year: np.ndarray) -> pl.Series:
    """YYYY-MM-DD mostly; YYYY alone for a quarter (more often for old records); YYYY-MM rarely."""
    n = len(year)
    full = pl.Series(year).cast(pl.String)
    month = pl.Series(rng.integers(1, 13, n)).cast(pl.String).str.zfill(2)
    day = pl.Series(rng.integers(1, 29, n)).cast(pl.String).str.zfill(2)
    only_year = rng.random(n) < np.where(year < 1980, 0.5, 0.15)
    year_month = ~only_year & (rng.random(n) < 0.012)
    return pl.select(
        pl.when(pl.lit(only_year))
        .then(full)
        .when(pl.lit(year_month))
        .then(full + "-" + month)
        .otherwise(full + "-" + month + "-" + day)
    ).to_series()


def _columns(rng: np.random.Generator, cat: Catalogue) -> dict[str, pl.Series]:
    """Every column any variant has, by its header name, in the tracks.csv conventions."""
    n = len(cat.track_id)
    col = {k: text.float_text(np.round(cat.features[k], d)) for k, d in DECIMALS.items()}
    col |= {k: text.float_text(text.round_sig(cat.features[k], 3)) for k in SIGNIFICANT}
    for k in ("duration_ms", "key", "mode", "time_signature", "explicit", "year"):
        col[k] = pl.Series(cat.features[k]).cast(pl.Int64)
    present = [cat.artists[:, k] >= 0 for k in range(3)]
    slots = [np.maximum(cat.artists[:, k], 0) for k in range(3)]
    reprs = pl.Series([repr(s) for s in cat.artist_names.to_list()], dtype=pl.String)
    quoted_ids = "'" + cat.artist_ids + "'"
    col["artists"] = _joined([reprs.gather(s) for s in slots], present, ", ", "[", "]")
    col["id_artists"] = _joined([quoted_ids.gather(s) for s in slots], present, ", ", "[", "]")
    col["artist_ids"] = col["id_artists"]
    col["artist_name"] = cat.artist_names.gather(slots[0])
    col["id"] = col["track_id"] = cat.track_id
    col["name"] = col["track_name"] = cat.name
    col["album"] = col["album_name"] = cat.album
    col["album_id"] = cat.album_id
    col["popularity"] = pl.Series(cat.popularity).cast(pl.Int64)
    col["genre"] = col["track_genre"] = pl.Series([g[1] for g in vocab.GENRES]).gather(cat.genre)
    col["release_date"] = release_dates(rng, cat.features["year"])
    col["track_number"] = pl.Series(rng.integers(1, 14, n))
    col["disc_number"] = pl.Series(np.where(rng.random(n) < 0.05, 2, 1))
    col[""] = pl.Series(np.arange(n))  # the unnamed index column
    return col


def _joined(
    parts: list[pl.Series], present: list[np.ndarray], sep: str, lo: str = "", hi: str = ""
) -> pl.Series:
    """Per row: the present parts joined by `sep`, between `lo` and `hi`."""
    kept = [pl.when(pl.lit(p)).then(pl.lit(s)) for s, p in zip(parts, present)]
    return pl.select(lo + pl.concat_str(kept, separator=sep, ignore_nulls=True) + hi).to_series()


def write_variants(
    out: Path, rng: np.random.Generator, cat: Catalogue, variants: list[str]
) -> dict:
    """Write each requested variant under `out`; return {"spotify_tracks": n, "rows_<file>": ..}.

    Columns are picked by the names in each published header; only the conventions
    that differ from tracks.csv are overridden per variant.
    """
    col = _columns(rng, cat)
    true_false = pl.Series(np.where(cat.features["explicit"] == 1, "True", "False"))
    overrides = {
        "dataset.csv": {
            "explicit": true_false,
            "artists": _joined(
                [cat.artist_names.gather(np.maximum(cat.artists[:, k], 0)) for k in range(3)],
                [cat.artists[:, k] >= 0 for k in range(3)],
                ";",
            ),
        },
        "tracks_features.csv": {
            "explicit": true_false,
            "time_signature": col["time_signature"].cast(pl.Float64).cast(pl.String),
        },
    }
    counts = {"spotify_tracks": len(cat.track_id)}
    for name in variants:
        if name == "SpotifyFeatures.csv":
            frame = _spotify_features(rng, cat, col)
        else:
            chosen = col | overrides.get(name, {})
            frame = _frame([chosen[h] for h in HEADERS[name].split(",")])
        text.write_csv(out / name, HEADERS[name], frame)
        counts[f"rows_{name}"] = len(frame)
    return counts


def _spotify_features(rng: np.random.Generator, cat: Catalogue, col: dict) -> pl.DataFrame:
    """SpotifyFeatures.csv: each track under its genre and sometimes one or two more,
    rows grouped by genre like the published file; key as a letter, mode Major/Minor,
    time signature "4/4"."""
    n = len(cat.track_id)
    extra = rng.choice(3, size=n, p=[0.7, 0.24, 0.06])
    rows = np.repeat(np.arange(n), 1 + extra)
    # Steps of 1..11 genres keep the two extra genres apart from each other and the first.
    step = 1 + rng.integers(0, 11, n)
    genre = (cat.genre[rows] + _ranks(extra) * step[rows]) % len(vocab.GENRES)
    order = np.lexsort((rows, genre))
    rows, genre = rows[order], genre[order]
    special = {
        "genre": pl.Series([g[0] for g in vocab.GENRES]).gather(genre),
        "key": pl.Series(list(KEY_LETTERS)).gather(cat.features["key"][rows]),
        "mode": pl.Series(np.where(cat.features["mode"][rows] == 1, "Major", "Minor")),
        "time_signature": col["time_signature"].gather(rows).cast(pl.String) + "/4",
    }
    header = HEADERS["SpotifyFeatures.csv"].split(",")
    return _frame([special[h] if h in special else col[h].gather(rows) for h in header])


def _frame(columns: list[pl.Series]) -> pl.DataFrame:
    """A frame of positional columns (names are irrelevant: the header is written verbatim)."""
    return pl.DataFrame([c.alias(f"c{i}") for i, c in enumerate(columns)])


def _ranks(extra: np.ndarray) -> np.ndarray:
    """0, 1, ..., extra[i] for each i, concatenated (the copy number of each row)."""
    total = 1 + extra
    starts = np.repeat(np.cumsum(total) - total, total)
    return np.arange(total.sum()) - starts
