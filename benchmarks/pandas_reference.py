"""The pandas reference for `jamrec etl`: the study's preprocessing as a straightforward script.

    .venv/bin/python benchmarks/pandas_reference.py DUMP   # DUMP/archive/*.tsv, DUMP/tracks.csv

What the study did before training, written the way a pandas user would: read the jams,
the likes and the Spotify file; keep the jams whose URI is a Spotify track; the positives
are each jam's creator and every user who liked it; de-duplicate (user, track); keep the
tracks that have audio features (joined in); then 10 negatives per user, drawn in a Python
loop from the tracks with features that the user has no positive for. It checks nothing,
rejects nothing and writes nothing: it is the floor that `jamrec etl`, which does all of
that, is measured against (issue 16: at most half its time, the quality gate included).
``benchmarks/bench_warehouse.py`` times it in the same run as the etl and the bare read.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from jamrec.models.dataset import AUDIO_FEATURES

N_NEGATIVES = 10
FEATURES = list(AUDIO_FEATURES)  # the eleven audio features the models use
TRACK_URI = "spotify:track:"


def read_tsv(path: Path) -> pd.DataFrame:
    """A TIMJ file as strings; broken lines (wrong field count) skipped, as pandas does."""
    return pd.read_csv(
        path,
        sep="\t",
        dtype=str,
        quoting=csv.QUOTE_NONE,
        on_bad_lines="skip",
        keep_default_na=False,
    )


def preprocess(dump: Path, seed: int = 0) -> dict[str, int]:
    """The study's preprocessing of ``dump``; row counts of what it made."""
    jams = read_tsv(dump / "archive" / "jams.tsv")
    likes = read_tsv(dump / "archive" / "likes.tsv")
    tracks = pd.read_csv(dump / "tracks.csv", usecols=["id", *FEATURES])

    jams = jams[jams["spotify_uri"].str.startswith(TRACK_URI)]
    jams = jams.assign(track_id=jams["spotify_uri"].str.slice(len(TRACK_URI)))
    jams = jams[jams["track_id"].str.len() == 22]
    creators = jams[["user_id", "track_id"]]
    likers = likes.merge(jams[["jam_id", "track_id"]], on="jam_id")[["user_id", "track_id"]]
    positives = pd.concat([creators, likers]).drop_duplicates()

    tracks = tracks.rename(columns={"id": "track_id"}).drop_duplicates("track_id")
    interactions = positives.merge(tracks, on="track_id")

    rng = np.random.default_rng(seed)
    catalogue = tracks["track_id"].to_numpy()
    negatives = []
    for user, group in interactions.groupby("user_id")["track_id"]:
        seen = set(group)
        picked: list[str] = []
        while len(picked) < N_NEGATIVES:
            track = catalogue[rng.integers(len(catalogue))]
            if track not in seen and track not in picked:
                picked.append(track)
        negatives += [(user, track) for track in picked]
    negatives_frame = pd.DataFrame(negatives, columns=["user_id", "track_id"])
    return {
        "jams": len(jams),
        "likes": len(likes),
        "positives": len(positives),
        "interactions": len(interactions),
        "negatives": len(negatives_frame),
    }


def main() -> None:
    dump = Path(sys.argv[1])
    start = time.perf_counter()
    counts = preprocess(dump)
    print(f"pandas reference: {time.perf_counter() - start:.1f} s  {counts}")


if __name__ == "__main__":
    main()
