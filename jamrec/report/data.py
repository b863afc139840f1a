"""The data half of the report: every number comes from one aggregate query in DuckDB.

Nothing here pulls rows of a big table into Python: histograms are binned in SQL, the
correlations are DuckDB's ``corr()``, and the per-user/per-track counts come back as a
frequency table (one row per distinct count, at most a few thousand rows at TIMJ scale).
Each function takes a read-only connection and returns plain Python values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import duckdb

from jamrec.warehouse import sqltext
from jamrec.warehouse.contract import AUDIO_FEATURES
from jamrec.warehouse.query import REJECT_REASON
from jamrec.warehouse.store import one_row, table_names

BUILD_COLUMNS = (
    *("build_id", "status", "error", "parameters", "stage_counts", "validation", "inputs"),
    *("inputs_fingerprint", "code_version", "started_at", "finished_at"),
)
UTC_MINUTE = "strftime({} at time zone 'UTC', '%Y-%m-%d %H:%M UTC')"


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> list[dict]:
    """The result of ``sql`` as a list of dicts (column name -> value)."""
    cursor = con.execute(sql, params or {})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    """Column names of ``table`` in the connection's own database (empty if absent)."""
    found = con.execute(
        "select column_name from duckdb_columns() "
        "where database_name = current_database() and schema_name = 'main' and table_name = $t",
        {"t": table},
    ).fetchall()
    return {c for (c,) in found}


def _json(value: object) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def planted(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The generator's parameters (``truth_params``) on generated data; None on real data."""
    if "truth_params" not in table_names(con):
        return None
    return {k: _json(v) for k, v in con.execute("select name, value from truth_params").fetchall()}


@dataclass
class Builds:
    """The ``builds`` history: the last build (any status), the last published one, recent."""

    last: dict | None
    published: dict | None
    recent: list[dict]


def builds(con: duckdb.DuckDBPyConnection, limit: int = 10) -> Builds:
    """Rows of ``builds``, newest first; JSON columns parsed."""
    picked = ", ".join(BUILD_COLUMNS)
    found = rows(
        con,
        f"""
        select *, {UTC_MINUTE.format("started_at")} as started,
            {UTC_MINUTE.format("finished_at")} as finished,
            round(epoch(finished_at - started_at), 1) as seconds
        from (select {picked} from builds)
        order by started_at desc, build_id desc
        """,
    )
    for row in found:
        for key in ("parameters", "stage_counts", "validation", "inputs"):
            row[key] = _json(row[key])
    published = next((r for r in found if r["status"] == "published"), None)
    return Builds(found[0] if found else None, published, found[:limit])


def stages(con: duckdb.DuckDBPyConnection, counts: dict) -> list[tuple[str, int, str]]:
    """Rows through each stage: (stage, rows, what a row is), from the build's stage counts
    and the published tables."""
    files = counts.get("files", {})
    jams = files.get("jams.tsv", {})
    likes = files.get("likes.tsv", {})
    present = table_names(con)

    def count(table: str) -> int | None:
        return (
            one_row(con, f"select count(*) from {sqltext.identifier(table, present)}")[0]
            if table in present
            else None
        )

    out = [
        ("jams.tsv data lines", jams.get("lines"), "raw lines read"),
        ("jams loaded", jams.get("loaded", count("jams")), "jams (valid lines)"),
        (
            "jams with a Spotify track URI",
            counts.get("jams_by_uri_status", {}).get("track"),
            "jams",
        ),
        ("likes loaded", likes.get("loaded", count("likes")), "likes of existing jams"),
        ("positives (creators + likers)", counts.get("positives"), "unique (user, track)"),
        ("positives joined with audio features", counts.get("positives_with_features"), "pairs"),
        ("interactions (published)", count("interactions"), "unique (user, track)"),
    ]
    for split, n in sorted(counts.get("splits", {}).items(), key=lambda kv: kv[0] != "train"):
        out.append((f"  of which {split}", n, "interactions"))
    negatives = counts.get("negatives", count("negatives"))
    out.append(("negatives (published)", negatives, "sampled (user, track), no train positive"))
    return [(name, n, unit) for name, n, unit in out if n is not None]


def rejects_by_reason(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int]]:
    """(file, reason without its details, rows) from ``rejects``, largest first."""
    if "rejects" not in table_names(con):
        return []
    return con.execute(
        f"select source_file, {REJECT_REASON} as reason, count(*) as n "
        "from rejects group by all order by n desc, source_file, reason"
    ).fetchall()


def count_frequencies(con: duckdb.DuckDBPyConnection, key: str) -> list[tuple[int, int]]:
    """How many ``key``s (user_id or track_id) have n interactions: (n, how many), by n."""
    if key not in ("user_id", "track_id") or "interactions" not in table_names(con):
        return []
    return con.execute(
        f"select n, count(*) from (select count(*) as n from interactions group by {key}) "
        "group by n order by n"
    ).fetchall()


def date_range(con: duckdb.DuckDBPyConnection) -> tuple[str, str, list[tuple[str, int]]] | None:
    """First and last jam date, and jams per month (``YYYY-MM``, count)."""
    if "jams" not in table_names(con):
        return None
    first, last = one_row(con, "select min(creation_date), max(creation_date) from jams")
    if first is None:
        return None
    months = con.execute(
        "select strftime(date_trunc('month', creation_date), '%Y-%m') as m, count(*) "
        "from jams where creation_date is not null group by m order by m"
    ).fetchall()
    return str(first), str(last), months


# (column or SQL expression, label, fixed range or None for the 0.5%..99.5% quantiles, bins)
FEATURES = (
    ("danceability", "danceability", (0.0, 1.0), 20),
    ("energy", "energy", (0.0, 1.0), 20),
    ("valence", "valence", (0.0, 1.0), 20),
    ("acousticness", "acousticness", (0.0, 1.0), 20),
    ("instrumentalness", "instrumentalness", (0.0, 1.0), 20),
    ("speechiness", "speechiness", (0.0, 1.0), 20),
    ("liveness", "liveness", (0.0, 1.0), 20),
    ("loudness", "loudness (dB)", None, 20),
    ("tempo", "tempo (BPM)", None, 20),
    ("duration_ms / 60000.0", "duration (min)", None, 20),
    ("popularity", "popularity", (0.0, 100.0), 20),
    ("key", "key (0 = C)", (-0.5, 11.5), 12),
    ("mode", "mode (1 = major)", (-0.5, 1.5), 2),
    ("time_signature", "time signature", (-0.5, 7.5), 8),
)
CORRELATED = (
    *("danceability", "energy", "valence", "acousticness", "instrumentalness", "speechiness"),
    *("liveness", "loudness", "tempo", "duration_ms", "mode", "popularity"),
)


@dataclass
class Histogram:
    """One feature's bins: ``edges`` (bins + 1), counts over the catalogue and over the
    tracks that have at least one interaction. Values outside the range fall in the
    edge bins."""

    label: str
    edges: list[float]
    catalogue: list[int]
    played: list[int]


def feature_histograms(con: duckdb.DuckDBPyConnection) -> list[Histogram]:
    """A histogram of each audio feature present in ``tracks`` (two scans of the table)."""
    present = table_names(con)
    if "tracks" not in present:
        return []
    have = columns(con, "tracks")
    feats = [f for f in FEATURES if f[0].split()[0] in have]
    if not feats:
        return []
    ranges: dict[str, tuple[float, float]] = {}
    auto = [f for f in feats if f[2] is None]
    if auto:
        sql = ", ".join(
            f"quantile_cont({expr}, 0.005), quantile_cont({expr}, 0.995)" for expr, *_ in auto
        )
        bounds = one_row(con, f"select {sql} from tracks")
        for i, (expr, *_rest) in enumerate(auto):
            lo, hi = bounds[2 * i], bounds[2 * i + 1]
            ranges[expr] = (lo or 0.0, hi if hi is not None and hi > (lo or 0.0) else (lo or 0) + 1)
    for expr, _, fixed, _ in feats:
        if fixed is not None:  # the others' ranges came from the data, just above
            ranges.setdefault(expr, fixed)
    names = [f"f{i}" for i in range(len(feats))]
    select = ", ".join(f"cast({expr} as double) as {n}" for (expr, *_), n in zip(feats, names))
    spec = ", ".join(
        f"('{n}', {float(ranges[expr][0])!r}, {float(ranges[expr][1])!r}, {bins})"
        for (expr, _, _, bins), n in zip(feats, names)
    )
    played = (
        "select distinct track_id, true as is_played from interactions"
        if "interactions" in present
        else "select null::varchar as track_id, true as is_played where false"
    )
    found = con.execute(
        f"""
        with played as ({played}),
        wide as (
            select coalesce(p.is_played, false) as is_played, {select}
            from tracks t left join played p using (track_id)
        ),
        long as (unpivot wide on {", ".join(names)} into name feature value x),
        ranges (feature, lo, hi, bins) as (values {spec})
        select feature,
            least(greatest(floor((x - lo) / (hi - lo) * bins), 0), bins - 1)::int as bin,
            count(*), count(*) filter (where is_played)
        from long join ranges using (feature)
        group by all order by all
        """
    ).fetchall()
    out = []
    for (expr, label, _, bins), name in zip(feats, names):
        lo, hi = ranges[expr]
        catalogue, hits = [0] * bins, [0] * bins
        for feature, b, n, p in found:
            if feature == name:
                catalogue[b], hits[b] = n, p
        edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
        out.append(Histogram(label, edges, catalogue, hits))
    return out


Z_RANGE, Z_BINS = 4.0, 32  # standardised features: [-4, 4] in 32 bins (the rest at the edges)


def standardised_histograms(con: duckdb.DuckDBPyConnection) -> list[Histogram]:
    """The audio features as the networks see them (``jamrec.models.dataset.standardise``):
    z-scores against the mean and standard deviation of the candidate tracks (those with a
    train interaction), a missing value at 0, a constant feature's deviation taken as 1;
    histograms over the catalogue and over the candidates. Empty without ``tracks`` or
    ``splits``."""
    present = table_names(con)
    if not {"tracks", "splits"} <= present:
        return []
    feats = [f for f in AUDIO_FEATURES if f in columns(con, "tracks")]
    if not feats:
        return []
    # Column names come from the warehouse contract (constants), never from input.
    stats = ", ".join(
        f"avg({f}) as m_{f}, coalesce(nullif(stddev_pop({f}), 0), 1) as s_{f}" for f in feats
    )
    z = ", ".join(f"coalesce(({f} - m_{f}) / s_{f}, 0) as {f}" for f in feats)
    found = con.execute(
        f"""
        with candidates as (select distinct track_id, true as is_candidate from splits
                            where split = 'train'),
        stats as (select {stats} from tracks join candidates using (track_id)),
        wide as (select coalesce(c.is_candidate, false) as is_candidate, {z}
                 from tracks t left join candidates c using (track_id), stats),
        long as (unpivot wide on {", ".join(feats)} into name feature value x)
        select feature,
            least(greatest(floor((x + $r) / (2 * $r) * $b), 0), $b - 1)::int as bin,
            count(*), count(*) filter (where is_candidate)
        from long group by all order by all
        """,
        {"r": Z_RANGE, "b": Z_BINS},
    ).fetchall()
    edges = [-Z_RANGE + 2 * Z_RANGE * i / Z_BINS for i in range(Z_BINS + 1)]
    out = []
    for name in feats:
        catalogue, candidates = [0] * Z_BINS, [0] * Z_BINS
        for feature, b, n, c in found:
            if feature == name:
                catalogue[b], candidates[b] = n, c
        out.append(Histogram(name, edges, catalogue, candidates))
    return out


TARGET = "interactions"  # the correlations' target column: interactions per track


def feature_correlations(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[list]]:
    """Pearson correlations between the audio features, popularity and the target,
    interactions per track (0 for a track nobody has), over ``tracks`` (``None`` where
    undefined, e.g. a constant column); one scan of the table. The target comes last."""
    present = table_names(con)
    if "tracks" not in present:
        return [], []
    have = columns(con, "tracks")
    names = [c for c in CORRELATED if c in have]
    source = "tracks"
    if "interactions" in present and names:
        names.append(TARGET)
        source = (
            f"(select t.*, coalesce(i.n, 0) as {TARGET} from tracks t left join "
            "(select track_id, count(*) as n from interactions group by track_id) i "
            "using (track_id))"
        )
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    if not pairs:
        return names, []
    values = one_row(
        con, "select " + ", ".join(f"corr({a}, {b})" for a, b in pairs) + f" from {source}"
    )
    matrix: list[list] = [
        [1.0 if i == j else None for j in range(len(names))] for i in range(len(names))
    ]
    for (a, b), value in zip(pairs, values):
        i, j = names.index(a), names.index(b)
        matrix[i][j] = matrix[j][i] = value
    return names, matrix
