"""Why a track was recommended: the listener's tracks it is closest to, and how it sounds.

An :class:`Explanation` of track ``t`` for a listener (a user index, or just a few track
indexes) holds

- ``similar_tracks``: the listener's tracks most similar to ``t``, by cosine similarity in
  the model's track space when it has one (ALS factors, MBCF and two-tower track vectors)
  and ``t`` lives in it, else over the standardised audio features;
- ``features``: the audio features of ``t`` that stand out against the candidate tracks
  (those with a train interaction: what listeners play), as z-scores, ``|z| >= 1``, and
  that the listener shares: the mean z of their ``similar_tracks`` (all their tracks
  when none is similar) is on the same side, by at least half a standard deviation.
  Ordered by ``z * mean z``: what the track and the listener have most in common first.
  A listener without tracks gets every feature that stands out, by ``|z|``;
- ``text``: both in a line, e.g. ``"high energy, low valence; like 3 of your tracks: ..."``.

``key`` and ``mode`` are categories (pitch class, major/minor), not quantities: their
z-scores mean nothing, so they are left out of both. Everything is a pure function of the
model and the data (ties go to the lower track index); :class:`Explainer` computes the
per-catalogue parts once, so explaining many recommendations costs a few small dot
products each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from jamrec.models.base import ItemVectors, Recommender, TrainData
from jamrec.models.dataset import Dataset, standardise

CATEGORICAL = ("key", "mode")  # categories, not quantities: no z-score, no cosine
STANDS_OUT = 1.0  # |z| from which a feature is worth naming: one standard deviation
SHARED = 0.5  # ... and the listener's closest tracks must lean the same way by half of one
N_SIMILAR = 3  # the listener's tracks named
N_FEATURES = 2  # the features named

# A user index (their train tracks), or a new listener's track indexes.
Listener: TypeAlias = int | np.integer | npt.ArrayLike


@dataclass
class Explanation:
    """Why ``track`` suits a listener (module docstring)."""

    text: str
    similar_tracks: list[tuple[int, float]] = field(default_factory=list)  # (track, cosine)
    features: list[tuple[str, float]] = field(default_factory=list)  # (feature, z), by |z|


def item_space(model: Recommender | None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(vectors (n_tracks, d), usable (n_tracks,) bool | None)`` of a model, or None.

    Models with the :class:`jamrec.models.base.ItemVectors` capability have one (ALS
    factors, MBCF and two-tower track vectors); ``usable`` marks the tracks whose vector
    means something (None: all of them): ID models only learn the tracks with a train
    interaction. The hybrid's ids only mean something through its MLP and baselines have
    no space at all: None.
    """
    if not isinstance(model, ItemVectors):
        return None
    return np.asarray(model.item_vectors(), np.float32), model.learnt_tracks()


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


class Explainer:
    """Explains recommendations of one model on one dataset (see the module docstring).

    ``data`` is a :class:`jamrec.models.dataset.Dataset` or :class:`jamrec.models.base.TrainData`
    (``train``, ``features``, ``feature_names``, ``candidates``); ``names`` (optional,
    ``(n_tracks,)``) are what the text calls tracks: default the track ids of a Dataset,
    else ``#<index>``.
    """

    def __init__(
        self,
        model: Recommender | None,
        data: Dataset | TrainData,
        names: Sequence[str] | np.ndarray | None = None,
    ):
        self.data = data
        self.feature_names = tuple(data.feature_names)
        keep = np.array([n not in CATEGORICAL for n in self.feature_names])
        self.z = standardise(data.features, data.candidates)[0][:, keep]
        self.z_names = tuple(n for n, k in zip(self.feature_names, keep) if k)
        self.by_features = _unit(self.z)
        space = item_space(model)
        self.by_model = None if space is None else _unit(space[0])
        self.usable = None if space is None else space[1]
        self.names = names if names is not None else getattr(data, "tracks", None)

    def _name(self, track: int) -> str:
        return str(self.names[track]) if self.names is not None else f"#{track}"

    def __call__(self, listener: Listener, track: int) -> Explanation:
        """Explain ``track`` (index) for ``listener``: a user index (their train tracks)
        or an array of track indexes."""
        if isinstance(listener, int | np.integer):
            mine = self.data.train[int(listener)].indices
        else:
            mine = np.asarray(listener, dtype=np.int64).reshape(-1)
        mine = np.unique(mine[mine != track])
        space = self.by_features
        if self.by_model is not None:
            ok = self.usable
            if ok is None:
                space = self.by_model
            elif ok[track] and ok[mine].any():  # else: no learnt vectors to compare
                space, mine = self.by_model, mine[ok[mine]]
        sims = space[mine] @ space[track] if len(mine) else np.zeros(0, np.float32)
        order = np.lexsort((mine, -sims))
        similar = [(int(mine[i]), float(sims[i])) for i in order[:N_SIMILAR] if sims[i] > 0]
        z = self.z[track]
        stands_out = np.abs(z) >= STANDS_OUT
        if len(mine):  # keep what the listener's closest tracks lean towards too
            near = [t for t, _ in similar] or mine
            lean = z * self.z[near].mean(axis=0)
            stands_out &= lean >= SHARED * np.abs(z)
        else:
            lean = np.abs(z)
        order = np.lexsort((np.arange(len(z)), -lean))
        features = [(self.z_names[j], float(z[j])) for j in order if stands_out[j]]
        return Explanation(_text(features, similar, self._name), similar, features)

    def many(self, listeners: Iterable[Listener], tracks: Iterable[int]) -> list[Explanation]:
        """One explanation per ``(listeners[i], tracks[i])``."""
        return [self(listener, int(t)) for listener, t in zip(listeners, tracks)]


def _text(
    features: list[tuple[str, float]],
    similar: list[tuple[int, float]],
    name: Callable[[int], str],
) -> str:
    words = [f"{'high' if z > 0 else 'low'} {f}" for f, z in features[:N_FEATURES]]
    sound = ", ".join(words)
    if similar:
        n = len(similar)
        like = f"like {n} of your tracks: {', '.join(name(t) for t, _ in similar)}"
        return f"{sound}; {like}" if sound else like
    return sound or "from what listeners like you play"


def explain(
    model: Recommender | None,
    data: Dataset | TrainData,
    listener: Listener,
    track: int,
    names: Sequence[str] | np.ndarray | None = None,
) -> Explanation:
    """Explain one recommendation: :class:`Explainer` ``(model, data, names)(listener, track)``.

    ``model`` may be None (features only). Build an :class:`Explainer` once to explain many.
    """
    return Explainer(model, data, names)(listener, track)
