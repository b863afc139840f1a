"""Write ``truth/``: the planted preferences, enough to recompute the generator's score
``beta * dot(u, t) + bias`` for every (user, track) pair that appears in the dump."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

DESCRIPTION = (
    "Tracks (the Spotify catalogue plus TIMJ-only songs) have taste vectors t = A x + c_genre"
    " + noise, where x are the standardised audio features (about half of the variance of t"
    " is linear in them), and a log-popularity bias: normal (sd {bias_sd}) for the songs TIMJ"
    " users know, correlated with Spotify popularity, and about {outside} for catalogue tracks"
    " they do not know. Users have taste vectors u = c + noise around one of {clusters} taste"
    " cluster centres c. Each jam's user picks a track with probability proportional to"
    " exp(bias + beta u.t), by sampling-importance-resampling: {m_jams} candidates drawn with"
    " probability proportional to exp(bias + beta c.t), the one maximising beta (u - c).t +"
    " Gumbel noise kept; a user never jams a track twice except in the injected duplicate"
    " jams. Each like picks a jammed track the same way ({m_likes} candidates, the liker's u),"
    " then one of its jams by another user. Ranking a user's tracks by beta * dot(u, t) + bias"
    " is therefore the best possible ranking, up to the candidate approximation; the per-user"
    " normaliser does not change the ranking."
)


def _vectors(ids: pl.Series, name: str, prefix: str, vectors: np.ndarray) -> dict[str, pa.Array]:
    cols = {name: pa.array(ids.to_list(), pa.string())}
    for k in range(vectors.shape[1]):
        cols[f"{prefix}_{k}"] = pa.array(np.ascontiguousarray(vectors[:, k], dtype=np.float32))
    return cols


def write_truth(
    out: Path,
    user_ids: pl.Series,
    user_vectors: np.ndarray,
    track_ids: pl.Series,
    track_vectors: np.ndarray,
    bias: np.ndarray,
    params: dict,
) -> None:
    """users.parquet (user_id, u_0..u_{d-1}), tracks.parquet (track_id, t_0..t_{d-1}, bias),
    params.json (`params` plus the score formula and a description). Vectors float32."""
    out.mkdir(parents=True, exist_ok=True)
    users = pa.table(_vectors(user_ids, "user_id", "u", user_vectors))
    tracks = _vectors(track_ids, "track_id", "t", track_vectors)
    tracks["bias"] = pa.array(np.asarray(bias, dtype=np.float32))
    pq.write_table(users, out / "users.parquet", compression="zstd")
    pq.write_table(pa.table(tracks), out / "tracks.parquet", compression="zstd")
    doc = {
        "dim": int(user_vectors.shape[1]),
        "beta": params["beta"],
        "score": "beta * dot(u, t) + bias",
        **{k: v for k, v in params.items() if k not in ("beta", "description_args")},
        "description": DESCRIPTION.format(**params["description_args"]),
    }
    (out / "params.json").write_text(json.dumps(doc, indent=2) + "\n")
