"""No leak by construction: a canary pair planted in val and test never reaches what any
model is fitted on; the check catches a model (deliberately, here) fitted on train + test."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from jamrec.models import MODELS, create
from jamrec.models.base import LeakError, TrainData, check_no_leak, leaked_pairs
from jamrec.models.dataset import Dataset, open_dataset
from jamrec.operations import runs
from tests.planted import TEST_CONFIGS

FAST = {name: {**config, "epochs": 1} for name, config in TEST_CONFIGS.items() if name != "als"}
FAST["als"] = {"factors": 4, "iterations": 1}


def _with(matrix: sp.csr_matrix, cells: list[tuple[int, int]]) -> sp.csr_matrix:
    out = matrix.tolil(copy=True)
    for u, t in cells:
        out[u, t] = 1
    return out.tocsr()


@pytest.fixture(scope="module")
def canary(tiny_warehouse) -> tuple[Dataset, list[tuple[int, int]]]:
    """The tiny warehouse's dataset with two canary pairs, one in val and one in test: a
    user and a popular track they have no positive with (so only a leak could put them in
    training)."""
    data = open_dataset(tiny_warehouse)
    positives = data.positives().toarray() > 0
    popular = np.argsort(-np.asarray(data.train.getnnz(axis=0)), kind="stable")
    users = np.flatnonzero(data.train.getnnz(axis=1) >= 2)[:2]
    cells = [(int(u), int(next(t for t in popular if not positives[u, t]))) for u in users]
    planted = dataclasses.replace(
        data, val=_with(data.val, cells[:1]), test=_with(data.test, cells[1:])
    )
    return planted, cells


def assert_never_fitted_on(model, data: Dataset, cells: list[tuple[int, int]]) -> None:
    """The canary check: what ``model`` was fitted on holds no held-out pair."""
    fitted = sp.csr_matrix(model.seen)
    for u, t in cells:
        assert fitted[u, t] == 0, f"{model.name} was fitted on the held-out pair ({u}, {t})"
    check_no_leak(fitted, data)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_no_model_is_fitted_on_a_held_out_canary(canary, name):
    data, cells = canary
    run = runs.train(name, data, seed=0, config=FAST.get(name))
    assert_never_fitted_on(run.model, data, cells)


def test_the_canary_catches_a_model_fitted_on_train_and_test(canary):
    data, cells = canary
    leaky = dataclasses.replace(TrainData.from_dataset(data), train=data.train + data.test)
    model = create("popularity").fit(leaky)  # deliberately: train + test
    with pytest.raises(AssertionError, match="held-out pair"):
        assert_never_fitted_on(model, data, cells)
    assert leaked_pairs(model.seen, data) == data.test.nnz
    with pytest.raises(LeakError, match="held-out"):
        check_no_leak(model.seen, data)


def test_a_dataset_whose_train_holds_a_held_out_pair_is_refused(canary):
    data, cells = canary
    broken = dataclasses.replace(data, train=_with(data.train, cells[:1]))
    with pytest.raises(LeakError, match="1 held-out"):
        TrainData.from_dataset(broken)
    with pytest.raises(LeakError):
        runs.train("popularity", broken)
