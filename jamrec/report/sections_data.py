"""The report's data section: what went in, what came out, and what it looks like."""

from __future__ import annotations

import duckdb

from jamrec.report import data, figures
from jamrec.report import html as h
from jamrec.report.sections_build import ETL, STATES
from jamrec.warehouse.store import table_names


def data_section(con: duckdb.DuckDBPyConnection, builds: data.Builds) -> str:
    """Stages, rejects, distributions, audio features, correlations and dates."""
    out = [h.heading(2, "data", "Data")]
    present = table_names(con)
    if builds.published is None and "interactions" not in present:
        why = "no build has been recorded"
        if builds.last is not None:
            state = STATES.get(builds.last["status"], builds.last["status"])
            why = f"no build was published (the last, {builds.last['build_id']}, {state})"
        out.append(h.note(f"No published data: {why}. Build the warehouse with {ETL}.", "missing"))
        return "".join(out)
    counts = (builds.published or {}).get("stage_counts") or {}
    if not counts:
        out.append(
            h.note(
                "The published build has no stage counts; rows below come from the tables. "
                f"Rebuild with {ETL} to record them.",
                "missing",
            )
        )
    out.append(_stages(con, counts))
    out.append(_rejects(con))
    out.append(_distributions(con))
    out.append(_features(con))
    out.append(_dates(con))
    return "".join(out)


def _stages(con: duckdb.DuckDBPyConnection, counts: dict) -> str:
    out = [h.heading(3, "stages", "Rows through each stage")]
    stages = data.stages(con, counts)
    if not stages:
        return out[0] + h.note(
            f"No stage counts and no tables to count: rebuild with {ETL}.", "missing"
        )
    out.append(h.table(["stage", "rows", "a row is"], [list(s) for s in stages], numeric={1}))
    out.append(
        h.figure(
            "fig-stages",
            figures.stages_figure(stages),
            "bar chart of rows through each pipeline stage",
            "Rows through each stage of the last published build: raw `jams.tsv` lines, jams "
            "loaded, jams whose Spotify URI is a track, then the unique (user, track) positives of "
            "creators and likers, those whose track has audio features (`interactions`), and how "
            "the split divides them; last, the negatives the build sampled for training (none "
            "a train positive of its user).",
        )
    )
    files = counts.get("files", {})
    if files:
        body = [
            [name, c.get("lines"), c.get("loaded"), c.get("rejected"), c.get("merged_repeats")]
            for name, c in sorted(files.items())
        ]
        out.append(
            h.para(
                "Per input file (loaded + rejected = lines read; the Spotify file may merge "
                "repeated tracks):"
            )
        )
        out.append(
            h.table(
                ["file", "data lines", "loaded", "rejected", "merged repeats"],
                body,
                numeric={1, 2, 3, 4},
            )
        )
    statuses = counts.get("jams_by_uri_status")
    if statuses:
        text = ", ".join(f"{k} {v:,}" for k, v in statuses.items())
        out.append(
            h.para(
                f"Jams by Spotify URI status: {text}. Only `track` URIs can join the audio "
                "features."
            )
        )
    return "".join(out)


def _rejects(con: duckdb.DuckDBPyConnection) -> str:
    out = [h.heading(3, "rejects", "Rejected lines by reason")]
    rejects = data.rejects_by_reason(con)
    if "rejects" not in table_names(con):
        return out[0] + h.note(f"No `rejects` table: rebuild with {ETL}.", "missing")
    if not rejects:
        return out[0] + h.para("No input line was rejected.")
    out.append(h.table(["file", "reason", "lines"], [list(r) for r in rejects], numeric={2}))
    out.append(
        h.figure(
            "fig-rejects",
            figures.rejects_figure(rejects),
            "bar chart of rejected lines by file and reason",
            "Input lines that were not loaded, by file and reason (details such as field counts "
            "folded; log scale). Every line is in the `rejects` table with its raw text.",
        )
    )
    return "".join(out)


def _distributions(con: duckdb.DuckDBPyConnection) -> str:
    out = [h.heading(3, "distributions", "Interactions per user and per track")]
    per_user = data.count_frequencies(con, "user_id")
    per_track = data.count_frequencies(con, "track_id")
    if not per_user:
        return out[0] + h.note(f"No interactions: rebuild with {ETL}.", "missing")
    n_users = sum(c for _, c in per_user)
    n_tracks = sum(c for _, c in per_track)
    total = sum(n * c for n, c in per_user)
    single = dict(per_user).get(1, 0)
    out.append(
        h.para(
            f"{total:,} interactions between {n_users:,} users and {n_tracks:,} tracks: "
            f"{total / n_users:.1f} per user on average (max {per_user[-1][0]:,}), "
            f"{single / n_users:.0%} of users have a single one; "
            f"{total / n_tracks:.1f} per track on average (max {per_track[-1][0]:,})."
        )
    )
    out.append(
        h.figure(
            "fig-distributions",
            figures.distributions_figure(per_user, per_track),
            "log-log histograms of interactions per user and per track",
            "How many users (left) and tracks (right) have a given number of interactions, in "
            "log-spaced bins, both axes on a log scale: the heavy tail of a few very active users "
            "and very popular tracks.",
        )
    )
    return "".join(out)


def _features(con: duckdb.DuckDBPyConnection) -> str:
    out = [h.heading(3, "features", "Audio features")]
    hists = data.feature_histograms(con)
    if not hists:
        return out[0] + h.note(
            f"No `tracks` table with audio features: rebuild with {ETL}.", "missing"
        )
    out.append(
        h.figure(
            "fig-features",
            figures.features_figure(hists),
            "small-multiple histograms of each audio feature",
            "Distribution of each audio feature over the Spotify catalogue (grey bars) and over "
            "the tracks with at least one interaction (blue line), each as a share of its tracks. "
            "Loudness, tempo and duration span their 0.5%-99.5% quantiles; values outside a "
            "panel's range are counted in its edge bins.",
        )
    )
    standardised = data.standardised_histograms(con)
    if standardised:
        out.append(
            h.figure(
                "fig-features-standardised",
                figures.features_figure(standardised),
                "small-multiple histograms of each standardised audio feature",
                "The audio features as the hybrid and the two-tower see them: z-scores against "
                "the mean and standard deviation of the candidate tracks (a train "
                "interaction), a missing value at 0; over the catalogue (grey bars) and over "
                "the candidates (blue line), each as a share of its tracks, from -4 to 4 "
                "standard deviations (values beyond in the edge bins). The study showed the "
                "same histograms of what its network saw.",
            )
        )
    names, matrix = data.feature_correlations(con)
    out.append(h.heading(3, "correlations", "Feature correlations"))
    if matrix:
        out.append(
            h.figure(
                "fig-correlations",
                figures.correlation_figure(
                    [n if n != data.TARGET else "interactions per track" for n in names], matrix
                ),
                "heatmap of correlations between audio features, popularity and interactions",
                "Pearson correlation between each pair of audio features, Spotify popularity and "
                "the target, interactions per track (last row and column; 0 for a track nobody "
                "has), over the catalogue (red: positive, blue: negative; blank: undefined, e.g. "
                "a constant or empty column). The popularity cell of the last row says how far "
                "Spotify popularity goes with jams and likes here.",
            )
        )
    else:
        out.append(h.note("Not enough numeric feature columns to correlate.", "missing"))
    return "".join(out)


def _dates(con: duckdb.DuckDBPyConnection) -> str:
    out = [h.heading(3, "dates", "When the jams were posted")]
    found = data.date_range(con)
    if found is None:
        return out[0] + h.note(f"No dated jams: rebuild with {ETL}.", "missing")
    first, last, months = found
    out.append(h.para(f"Jams were posted from {first} to {last} ({len(months)} months)."))
    out.append(
        h.figure(
            "fig-months",
            figures.months_figure(months),
            "bar chart of jams posted per month",
            "Jams posted per calendar month (`jams.creation_date`), all jams including those "
            "without a Spotify track.",
        )
    )
    return "".join(out)
