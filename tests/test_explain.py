"""Explanations on the planted data: a user's group shows in danceability (level), energy
(1 - level) and acousticness (level), so an explanation must name the user's own tracks of
the recommended track's group and those features, in the right direction."""

from __future__ import annotations

import numpy as np
import pytest

from jamrec.models.dataset import standardise
from jamrec.operations.explain import STANDS_OUT, Explainer, explain
from tests.planted import N_GROUPS, make, planted

GROUP_FEATURES = {"danceability": 1, "energy": -1, "acousticness": 1}  # sign of level


@pytest.fixture(scope="module")
def data():
    return planted()[0]


def _check(explanation, data, user: int, track: int) -> None:
    mine = data.train[user].indices
    assert explanation.similar_tracks, explanation
    for t, cosine in explanation.similar_tracks:
        assert t in mine and t % N_GROUPS == track % N_GROUPS and 0 < cosine <= 1 + 1e-6
    cosines = [c for _, c in explanation.similar_tracks]
    assert cosines == sorted(cosines, reverse=True)
    assert all(abs(z) >= STANDS_OUT for _, z in explanation.features)
    level = (track % N_GROUPS) - 1  # -1, 0, 1: the low, middle and high groups
    named = {f: z for f, z in explanation.features if f in GROUP_FEATURES}
    if level:  # the middle group sits at the mean: nothing about it stands out
        assert named, explanation
        assert all(np.sign(z) == GROUP_FEATURES[f] * level for f, z in named.items())
        word = next(iter(named))
        assert f"{'high' if named[word] > 0 else 'low'} {word}" in explanation.text
    assert "key" not in dict(explanation.features) and "mode" not in dict(explanation.features)


@pytest.mark.parametrize("model_name", [None, "als", "two_tower"])
def test_names_the_users_tracks_and_the_features(data, model_name):
    model = make(model_name).fit(data) if model_name else None
    explainer = Explainer(model, data, names=[f"track {i}" for i in range(data.n_tracks)])
    for user in (0, 1, 2, 3):
        track = next(t for t in range(data.n_tracks) if t % N_GROUPS == user % N_GROUPS)
        track = int(
            np.setdiff1d(np.arange(track, data.n_tracks, N_GROUPS), data.train[user].indices)[0]
        )
        explanation = explainer(user, track)
        _check(explanation, data, user, track)
        assert f"like {len(explanation.similar_tracks)} of your tracks" in explanation.text
        first = explanation.similar_tracks[0][0]
        assert f"track {first}" in explanation.text


def test_a_listener_given_by_tracks_and_batches(data):
    explainer = Explainer(None, data)
    listener = data.train[0].indices  # user 0's tracks, as a new listener
    assert explainer(listener, 39) == explainer(0, 39) == explain(None, data, 0, 39)
    batch = explainer.many([0, 1, listener], [39, 37, 39])
    assert batch[0] == batch[2] == explainer(0, 39) and batch[1] == explainer(1, 37)
    assert explainer([], 39).similar_tracks == []


def test_standardise_is_fitted_on_the_marked_tracks():
    features = np.array([[0.0, 5.0], [2.0, 5.0], [100.0, np.nan]], np.float32)
    z, mean, std = standardise(features, np.array([True, True, False]))
    np.testing.assert_allclose(mean, [1.0, 5.0])
    np.testing.assert_allclose(std, [1.0, 1.0])  # the constant column keeps std 1
    np.testing.assert_allclose(z, [[-1.0, 0.0], [1.0, 0.0], [99.0, 0.0]])  # NaN -> mean
