"""Saved models read in another build's id spaces (champions trained on an older build)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jamrec.errors import JamrecError
from jamrec.models import load
from jamrec.models.base import Recommender, TrainData
from jamrec.models.dataset import Dataset


class Remapped(Recommender):
    """A saved model scored in another build's id spaces.

    ``inner`` was trained on a build whose users and tracks are ``inner_users`` and
    ``inner_tracks``; scores come back in ``data``'s indexes. A user the model does not
    know gets its fallback: the new build's train popularity. A track it does not know
    ranks below every track it knows (for that user).
    """

    def __init__(
        self, inner: Recommender, inner_users: np.ndarray, inner_tracks: np.ndarray, data: Dataset
    ):
        super().__init__(inner.config)
        # Class attributes on every model; a wrapper takes the wrapped model's, per instance.
        self.name = f"{inner.name} (re-scored)"  # type: ignore[misc]
        self.pairwise = inner.pairwise  # type: ignore[misc]
        self.pair_scoring = inner.pair_scoring  # type: ignore[misc]
        self.shared_scores = inner.shared_scores  # type: ignore[misc]
        self.inner = inner
        self.n_users, self.n_tracks = data.n_users, data.n_tracks
        self.user_map = _positions(inner_users, data.users)
        self.track_map = _positions(inner_tracks, data.tracks)
        self.popularity = np.asarray(data.train.getnnz(axis=0), dtype=np.float32)
        self.seen = data.train

    def _fit(self, data: TrainData) -> None:
        raise JamrecError("a re-scored champion is not trained again")

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        items = np.arange(self.n_tracks) if items is None else np.asarray(items, dtype=np.int64)
        out = np.broadcast_to(self.popularity[items], (len(users), len(items))).astype(np.float32)
        inner_users = self.user_map[users]
        inner_items = self.track_map[items]
        known_rows = np.flatnonzero(inner_users >= 0)
        known_cols = np.flatnonzero(inner_items >= 0)
        if len(known_rows) and len(known_cols):
            block = self.inner.score(inner_users[known_rows], inner_items[known_cols])
            floor = block.min(axis=1, keepdims=True) - 1.0
            out[known_rows] = floor
            out[np.ix_(known_rows, known_cols)] = block
        return out


def _positions(known: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each id in ``wanted``, its index in the sorted array ``known``, or -1."""
    known = np.asarray(known).astype(str)
    wanted = np.asarray(wanted).astype(str)
    pos = np.searchsorted(known, wanted)
    pos = np.minimum(pos, max(len(known) - 1, 0))
    hit = len(known) > 0 and True
    found = (known[pos] == wanted) if hit else np.zeros(len(wanted), bool)
    return np.where(found, pos, -1).astype(np.int64)


def saved_model(path: str | None) -> tuple[Recommender, np.ndarray, np.ndarray]:
    """A run's saved model and the user/track ids of the build it was trained on."""
    if not path or not Path(path).exists():
        raise JamrecError(f"the saved model {path} is gone (pruned or moved)")
    ids = np.load(Path(path) / "ids.npz", allow_pickle=False)
    return load(Path(path)), ids["users"], ids["tracks"]
