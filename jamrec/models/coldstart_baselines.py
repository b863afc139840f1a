"""Cold-start baselines: models that can rank tracks nobody has jammed yet.

Both score from the track side of the catalogue, so a track without train interactions
gets a real score (ID models leave it at an untrained or constant score):

- ``feature_knn``: cosine between a track's standardised audio features and the user's
  mean train-track profile;
- ``spotify_popularity``: Spotify's own 0..100 ``popularity`` of the track, the same list
  for everyone.

Ids are :class:`jamrec.models.dataset.Dataset` indexes, as for every model.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import scipy.sparse as sp
from pydantic import Field

from jamrec.models.base import ModelConfig, Recommender, Runtime, TrainData
from jamrec.models.dataset import standardise


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


class FeatureKNNConfig(ModelConfig):
    """Which audio features the similarity uses."""

    ignore: tuple[str, ...] = Field(
        ("key",), description="Features left out: key is a pitch class, not an ordered quantity."
    )


class FeatureKNN(Recommender):
    """Content-based: ``score(u, t) = cos(profile_u, z_t)``, deterministic (no randomness).

    ``z_t`` are the track's audio features standardised with the train tracks' mean and
    std (:func:`~jamrec.models.dataset.standardise`), then scaled to unit length;
    ``profile_u`` is the mean of ``z_t`` over the user's train tracks (a user without train
    tracks scores 0 everywhere: the tie order). The cosine to the mean profile equals, up to
    a per-user factor, the mean cosine to the user's tracks, so scoring is one
    ``(users, F) @ (F, items)`` product: cheap at any scale. State: ``users``
    (n_users, F) and ``tracks`` (n_tracks, F) float32 unit vectors; ``mean``, ``std``.
    """

    name = "feature_knn"
    Config = FeatureKNNConfig
    config: FeatureKNNConfig

    def _fit(self, data: TrainData) -> None:
        keep = [i for i, n in enumerate(data.feature_names) if n not in self.config.ignore]
        z, self.mean, self.std = standardise(data.features[:, keep], data.candidates)
        self.tracks = _unit_rows(z)
        train = sp.csr_matrix(data.train, dtype=np.float32)
        self.users = _unit_rows(np.asarray(train @ self.tracks))  # scaling leaves the cosine
        data.step(0, None, self)

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        tracks = self.tracks if items is None else self.tracks[np.asarray(items)]
        return (self.users[np.atleast_1d(users)] @ tracks.T).astype(np.float32)

    def _save(self, folder: Path) -> None:
        np.savez(
            folder / "feature_knn.npz",
            users=self.users,
            tracks=self.tracks,
            mean=self.mean,
            std=self.std,
        )

    def _load(self, folder: Path) -> None:
        with np.load(folder / "feature_knn.npz") as saved:
            self.users, self.tracks = saved["users"], saved["tracks"]
            self.mean, self.std = saved["mean"], saved["std"]


class SpotifyPopularity(Recommender):
    """Ranks by Spotify's catalogue ``popularity`` (0..100), the same list for everyone.

    Unlike ``popularity`` (train counts) it exists for tracks without interactions.
    :meth:`fit` takes it from, in order: the ``popularity`` given to the constructor
    ((n_tracks,) aligned to ``Dataset.tracks``, see :func:`load_spotify_popularity`);
    :attr:`TrainData.popularity`; a ``"popularity"`` column of the train data's features.
    Without any, fitting is an error (as for the oracle without truth). A missing value
    (NaN) ranks below every known popularity.
    """

    name = "spotify_popularity"

    def __init__(
        self,
        config: ModelConfig | None = None,
        runtime: Runtime | None = None,
        popularity: np.ndarray | None = None,
    ):
        super().__init__(config, runtime)
        self.popularity = None if popularity is None else np.asarray(popularity, np.float32)

    def _fit(self, data: TrainData) -> None:
        popularity = self.popularity
        if popularity is None:
            popularity = getattr(data, "popularity", None)
        if popularity is None and "popularity" in data.feature_names:
            popularity = data.features[:, list(data.feature_names).index("popularity")]
        if popularity is None:
            raise ValueError(
                "spotify_popularity needs the catalogue popularity: pass popularity= "
                "(load_spotify_popularity) or train data that carries it"
            )
        popularity = np.asarray(popularity, dtype=np.float32)
        if popularity.shape != (data.n_tracks,):
            raise ValueError(f"popularity has shape {popularity.shape}, not ({data.n_tracks},)")
        self.popularity = np.where(np.isnan(popularity), np.float32(-1.0), popularity)
        data.step(0, None, self)

    def _fitted(self) -> np.ndarray:
        if self.popularity is None:
            raise ValueError("spotify_popularity has no popularity yet: fit or load it first")
        return self.popularity

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        popularity = self._fitted()
        values = popularity if items is None else popularity[np.asarray(items)]
        return np.broadcast_to(values, (len(np.atleast_1d(users)), len(values))).copy()

    def _save(self, folder: Path) -> None:
        np.save(folder / "popularity.npy", self._fitted())

    def _load(self, folder: Path) -> None:
        self.popularity = np.load(folder / "popularity.npy")


def load_spotify_popularity(con: duckdb.DuckDBPyConnection, tracks: np.ndarray) -> np.ndarray:
    """(len(tracks),) float32: warehouse ``tracks.popularity`` aligned to ``tracks``
    (``Dataset.tracks``, track ids); NaN where the catalogue has no value or no track."""
    rows = con.execute("select track_id, popularity from tracks").fetchnumpy()
    ids = np.asarray(rows["track_id"], dtype=object)
    values = np.ma.filled(np.ma.asarray(rows["popularity"]).astype(np.float32), np.nan)
    index = {track: i for i, track in enumerate(ids)}
    where = np.array([index.get(t, -1) for t in tracks], dtype=np.int64)
    out = np.full(len(tracks), np.nan, np.float32)
    out[where >= 0] = values[where[where >= 0]]
    return out
