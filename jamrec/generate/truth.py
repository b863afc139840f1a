"""Write ``truth/``: the planted preferences, enough to recompute the generator's score
(:data:`SCORE`) for every (user, track) pair that appears in the dump."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

SCORE = (
    "beta * (sqrt(1 - audio_share) * dot(u, t) + sqrt(audio_share) * (audio_scale"
    " * exp(-|a - p|^2 / (2 audio_width^2)) + audio_offset)) + bias"
)
DESCRIPTION = (
    "Tracks (the Spotify catalogue plus TIMJ-only songs) have taste vectors t = A x + c_genre"
    " + noise, where x are the standardised audio features (about half of the variance of t"
    " is linear in them), and a log-popularity bias: normal (sd {bias_sd}) for the songs TIMJ"
    " users know, correlated with Spotify popularity, and about {outside} for catalogue tracks"
    " they do not know. Users have taste vectors u = c + noise around one of {clusters} taste"
    " cluster centres c. The audio taste is a bump exp(-|a - p|^2 / (2 audio_width^2)), width"
    " {width}, around each user's preferred point p (near a point of their taste cluster) in"
    " the standardised audio features audio_features (a, the track's coordinates there),"
    " scaled by audio_scale and audio_offset to mean 0 and the spread of u.t; a linear model"
    " of the features cannot reproduce it. The score mixes them: beta (sqrt(1 - audio_share)"
    " u.t + sqrt(audio_share) audio taste) + bias, so audio_share is the audio taste's share"
    " of the taste variance ({share}: {share_note}). Each jam's user picks a track with"
    " probability proportional to exp(score), by sampling-importance-resampling: {m_jams}"
    " candidates drawn with probability proportional to exp(the score of the user's cluster"
    " centre and point), the one maximising the user's own difference from it + Gumbel noise"
    " kept; a user never jams a track twice except in the injected duplicate jams. Each like"
    " picks a jammed track the same way ({m_likes} candidates, the liker's u and p), then one"
    " of its jams by another user. Ranking a user's tracks by the score is therefore the best"
    " possible ranking, up to the candidate approximation; the per-user normaliser does not"
    " change the ranking."
)


def share_note(share: float) -> str:
    """What an audio share implies for the comparison of models, in a few words."""
    if share == 0:
        return (
            "no audio taste; the features still explain about half of t linearly, so a"
            " dot-product model of ids is as well placed as a hybrid, except on cold tracks"
        )
    return (
        f"{share:.0%} of the taste is a non-linear function of the audio features that ids"
        " can learn only from plays and a dot product over features only approximately; a"
        " model that combines ids with a non-linear use of the features has the most to gain"
    )


def _columns(prefix: str, vectors: np.ndarray) -> dict[str, pa.Array]:
    """``prefix_0 ...``: one float32 column per column of `vectors`."""
    return {
        f"{prefix}_{k}": pa.array(np.ascontiguousarray(vectors[:, k], dtype=np.float32))
        for k in range(vectors.shape[1])
    }


def write_truth(
    out: Path,
    user_ids: pl.Series,
    user_vectors: np.ndarray,
    user_points: np.ndarray,
    track_ids: pl.Series,
    track_vectors: np.ndarray,
    track_audio: np.ndarray,
    bias: np.ndarray,
    params: dict,
) -> None:
    """users.parquet (user_id, u_0..u_{d-1}, p_0..p_{k-1}), tracks.parquet (track_id,
    t_0..t_{d-1}, bias, a_0..a_{k-1}), params.json (`params` plus the score formula, the
    dimensions and a description). Vectors float32: what the generator computed with."""
    out.mkdir(parents=True, exist_ok=True)
    users = {
        "user_id": pa.array(user_ids.to_list(), pa.string()),
        **_columns("u", user_vectors),
        **_columns("p", user_points),
    }
    tracks = {
        "track_id": pa.array(track_ids.to_list(), pa.string()),
        **_columns("t", track_vectors),
        "bias": pa.array(np.asarray(bias, dtype=np.float32)),
        **_columns("a", track_audio),
    }
    pq.write_table(pa.table(users), out / "users.parquet", compression="zstd")
    pq.write_table(pa.table(tracks), out / "tracks.parquet", compression="zstd")
    args = {
        **params["description_args"],
        "share": params["audio_share"],
        "share_note": share_note(params["audio_share"]),
    }
    doc = {
        "dim": int(user_vectors.shape[1]),
        "audio_dim": int(user_points.shape[1]),
        "beta": params["beta"],
        "score": SCORE,
        **{k: v for k, v in params.items() if k not in ("beta", "description_args")},
        "description": DESCRIPTION.format(**args),
    }
    (out / "params.json").write_text(json.dumps(doc, indent=2) + "\n")
