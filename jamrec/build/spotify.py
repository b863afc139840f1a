"""The five public variants of the Kaggle Spotify audio-features file, read into one shape.

Each variant is recognised by its exact header and mapped onto the canonical raw
columns in :data:`CANONICAL` (all text, exactly as in the file). Typing, unit fixes
(key letters, ``Major``/``Minor``, ``4/4``) and the per-line verdicts happen in
``sql/stg_tracks.sql``; this module only parses CSV and keeps line numbers exact.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from jamrec.build.ingest import RawLines, Source, split_lines
from jamrec.errors import InputError
from jamrec.warehouse.contract import AUDIO_FEATURES

FEATURES = AUDIO_FEATURES

CANONICAL = (
    "track_id",
    "name",
    "artists",
    "artist_ids",
    "album",
    "popularity",
    "duration_ms",
    "explicit",
    "release_date",
    "year",
    "genre",
    *FEATURES,
    "time_signature",
)


@dataclass(frozen=True)
class Variant:
    """One published variant: its file name, exact header, and canonical -> file column map.

    ``artists_format`` says how the artists cell is written: ``list`` (Python list text
    ``['A', 'B']``), ``plain`` (one name) or ``semicolon`` (``A;B``).
    """

    name: str
    header: tuple[str, ...]
    columns: dict[str, str]
    artists_format: str

    def describe(self) -> str:
        """``tracks.csv (id,name,popularity,...)`` for error messages."""
        return f"{self.name} ({','.join(self.header[:4])},...)"


def _header(text: str) -> tuple[str, ...]:
    return tuple(text.split(","))


def _same(*names: str) -> dict[str, str]:
    return {n: n for n in names}


VARIANTS: tuple[Variant, ...] = (
    Variant(
        "tracks.csv",
        _header(
            "id,name,popularity,duration_ms,explicit,artists,id_artists,release_date,"
            "danceability,energy,key,loudness,mode,speechiness,acousticness,instrumentalness,"
            "liveness,valence,tempo,time_signature"
        ),
        {
            "track_id": "id",
            "artist_ids": "id_artists",
            **_same("name", "popularity", "duration_ms", "explicit", "artists", "release_date"),
            **_same(*FEATURES, "time_signature"),
        },
        "list",
    ),
    Variant(
        "SpotifyFeatures.csv",
        _header(
            "genre,artist_name,track_name,track_id,popularity,acousticness,danceability,"
            "duration_ms,energy,instrumentalness,key,liveness,loudness,mode,speechiness,tempo,"
            "time_signature,valence"
        ),
        {
            "artists": "artist_name",
            "name": "track_name",
            **_same("track_id", "genre", "popularity", "duration_ms", *FEATURES, "time_signature"),
        },
        "plain",
    ),
    Variant(
        "spotify_data.csv",
        _header(
            ",artist_name,track_name,track_id,popularity,year,genre,danceability,energy,key,"
            "loudness,mode,speechiness,acousticness,instrumentalness,liveness,valence,tempo,"
            "duration_ms,time_signature"
        ),
        {
            "artists": "artist_name",
            "name": "track_name",
            **_same("track_id", "popularity", "year", "genre", "duration_ms", *FEATURES),
            "time_signature": "time_signature",
        },
        "plain",
    ),
    Variant(
        "dataset.csv",
        _header(
            ",track_id,artists,album_name,track_name,popularity,duration_ms,explicit,"
            "danceability,energy,key,loudness,mode,speechiness,acousticness,instrumentalness,"
            "liveness,valence,tempo,time_signature,track_genre"
        ),
        {
            "album": "album_name",
            "name": "track_name",
            "genre": "track_genre",
            **_same("track_id", "artists", "popularity", "duration_ms", "explicit"),
            **_same(*FEATURES, "time_signature"),
        },
        "semicolon",
    ),
    Variant(
        "tracks_features.csv",
        _header(
            "id,name,album,album_id,artists,artist_ids,track_number,disc_number,explicit,"
            "danceability,energy,key,loudness,mode,speechiness,acousticness,instrumentalness,"
            "liveness,valence,tempo,duration_ms,time_signature,year,release_date"
        ),
        {
            "track_id": "id",
            **_same("name", "album", "artists", "artist_ids", "explicit", "year", "release_date"),
            **_same(*FEATURES, "duration_ms", "time_signature"),
        },
        "list",
    ),
)


def detect_variant(source: Source, header: str) -> Variant:
    """The variant whose header is exactly ``header``; otherwise a clear error listing them."""
    fields = tuple(next(csv.reader([header])))
    for variant in VARIANTS:
        if fields == variant.header:
            return variant
    known = "; ".join(v.describe() for v in VARIANTS)
    shown = header if len(header) <= 100 else header[:97] + "..."
    raise InputError(
        source.display,
        f"header matches no known Spotify features variant: found {shown!r}; known: {known}",
        1,
    )


@dataclass
class RawTracks:
    """The Spotify file as canonical text columns plus ``line_number`` and ``variant``.

    ``rows`` holds one row per CSV record (``line_number`` = the record's first line);
    ``bad_records`` holds records whose field count is wrong or that are not UTF-8
    (``line_number``, ``raw_line``, ``reason``). ``lines`` is the file cut into lines,
    used to show the raw text of rejected records.
    """

    variant: Variant
    lines: RawLines
    rows: pa.Table
    bad_records: pa.Table


def read_spotify(con: duckdb.DuckDBPyConnection, source: Source) -> RawTracks:
    """Parse any of the five variants, keeping every record's line number exact.

    The fast path parses with DuckDB's CSV reader (strict, with rejects) and is exact
    whenever every record is one physical line: loaded rows then take the lines that
    were not rejected, in order. Anything else (fields with embedded newlines, blank
    lines) takes the slower, line-exact path through :mod:`csv`.
    """
    data = source.read_bytes()
    lines = split_lines(source, data)
    variant = detect_variant(source, lines.header)
    n_physical = lines.n_lines - 1
    fast = _parse_duckdb(con, source, variant) if source.member is None else None
    if fast is not None and fast[0].num_rows + fast[1].num_rows == n_physical:
        records, bad = fast
        rejected = bad.column("line_number").to_numpy()
        line_numbers = np.setdiff1d(np.arange(2, n_physical + 2, dtype=np.int64), rejected)
    else:
        body = data[data.index(b"\n") + 1 :] if b"\n" in data else b""
        records, line_numbers, bad = _parse_exact(body, variant, lines)
    rows = _canonical(records, variant, line_numbers)
    return RawTracks(variant, lines, rows, bad)


_DUCKDB_REASONS = {
    "INVALID ENCODING": "invalid UTF-8",
    "INVALID UNICODE": "invalid UTF-8",
}


def _parse_duckdb(
    con: duckdb.DuckDBPyConnection, source: Source, variant: Variant
) -> tuple[pa.Table, pa.Table] | None:
    """Strict CSV parse with DuckDB; returns (records, bad records) or None on failure."""
    columns = {f"c{i}": "VARCHAR" for i in range(len(variant.header))}
    try:
        records = con.sql(
            """
            select * from read_csv(
                $path, columns = $columns, header = true, auto_detect = false, delim = ',',
                quote = '"', escape = '"', strict_mode = true, store_rejects = true,
                rejects_table = 'spotify_reject_errors', rejects_scan = 'spotify_reject_scans'
            )
            """,
            params={"path": str(source.path), "columns": columns},
        ).to_arrow_table()
        errors = con.execute(
            """
            select line as line_number, csv_line as raw_line, error_type, error_message
            from spotify_reject_errors order by line
            """
        ).fetchall()
    except duckdb.Error:
        return None
    n_cols = len(variant.header)
    reasons = []
    for _, _, error_type, message in errors:
        if error_type in _DUCKDB_REASONS:
            reasons.append(_DUCKDB_REASONS[error_type])
        elif error_type in ("MISSING COLUMNS", "TOO MANY COLUMNS"):
            found = (
                message.rsplit("Found:", 1)[-1].strip().split()[0] if "Found:" in message else "?"
            )
            reasons.append(f"expected {n_cols} comma-separated fields (found {found})")
        else:
            reasons.append(f"unreadable CSV record ({message.splitlines()[0]})")
    bad = pa.table(
        {
            "line_number": pa.array([int(e[0]) for e in errors], pa.int64()),
            "raw_line": pa.array([e[1] for e in errors], pa.string()),
            "reason": pa.array(reasons, pa.string()),
        }
    )
    return records, bad


def _empty_bad() -> pa.Table:
    return pa.table(
        {
            "line_number": pa.array([], pa.int64()),
            "raw_line": pa.array([], pa.string()),
            "reason": pa.array([], pa.string()),
        }
    )


def _parse_exact(
    body: bytes, variant: Variant, lines: RawLines
) -> tuple[pa.Table, np.ndarray, pa.Table]:
    """Parse record by record with :mod:`csv`, tracking where each record starts."""
    text = body.decode("utf-8", errors="surrogateescape")
    physical = text.split("\n")
    reader = csv.reader(io.StringIO(text, newline=""))
    n_cols = len(variant.header)
    good: list[list[str]] = []
    good_lines: list[int] = []
    bad_lines: list[int] = []
    bad_raw: list[str] = []
    bad_reason: list[str] = []
    first = 2
    for record in reader:
        last = reader.line_num + 1
        raw = "\n".join(p.rstrip("\r") for p in physical[first - 2 : last - 1])
        reason = None
        if any("\udc80" <= ch <= "\udcff" for cell in record for ch in cell):
            reason = "invalid UTF-8"
        elif not record:
            reason = "empty line"
        elif len(record) != n_cols:
            reason = f"expected {n_cols} comma-separated fields (found {len(record)})"
        if reason:
            bad_lines.append(first)
            bad_raw.append(raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            bad_reason.append(reason)
        else:
            good.append(record)
            good_lines.append(first)
        first = last + 1
    columns: list[Sequence[str]] = list(zip(*good)) if good else [[] for _ in range(n_cols)]
    records = pa.table({f"c{i}": pa.array(col, pa.string()) for i, col in enumerate(columns)})
    bad = pa.table(
        {
            "line_number": pa.array(bad_lines, pa.int64()),
            "raw_line": pa.array(bad_raw, pa.string()),
            "reason": pa.array(bad_reason, pa.string()),
        }
    )
    return records, np.array(good_lines, dtype=np.int64), bad


def _canonical(records: pa.Table, variant: Variant, line_numbers: np.ndarray) -> pa.Table:
    """Rename a variant's columns to :data:`CANONICAL`; absent ones are null text."""
    position = {name: i for i, name in enumerate(variant.header)}
    n = records.num_rows
    columns = {"line_number": pa.array(line_numbers, pa.int64())}
    for name in CANONICAL:
        source_name = variant.columns.get(name)
        if source_name is None:
            columns[name] = pa.nulls(n, pa.string())
        else:
            columns[name] = records.column(position[source_name]).cast(pa.string())
    columns["variant"] = (
        pa.array([variant.name] * n, pa.string()) if n else pa.array([], pa.string())
    )
    columns["artists_format"] = (
        pa.array([variant.artists_format] * n, pa.string()) if n else pa.array([], pa.string())
    )
    return pa.table(columns)
