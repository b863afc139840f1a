"""Early stopping: the rule on scripted probe values, and the four iterative models on the
planted data, with a real per-user NDCG@10 probe of their held-out tracks.

- the rule (patience, min_gain, the 2-standard-error test against the best kept step);
- a stopped model holds exactly the best step's state: its scores equal those of a model
  trained for exactly that many steps with the same seed and early stopping off;
- the same seed stops at the same step with the same probe values;
- ALS with early stopping off is bit-identical to a plain ``implicit`` fit (the code
  before early stopping), and probing does not change what a torch model learns.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from jamrec.models import create
from jamrec.models.base import TrainData
from jamrec.models.early_stopping import (
    DISABLED,
    MAX_STEPS,
    NO_IMPROVEMENT,
    NO_PROBE,
    SE_MULTIPLE,
    EarlyStopping,
    EarlyStoppingConfig,
    paired_gain,
)
from jamrec.models.products import one_blas_thread
from jamrec.models.torch.trainer import probe_points
from tests.planted import ALL_USERS, LEARNERS, make, planted

# --- the rule, on scripted per-user probe values ------------------------------------------

N = 400  # probe users of the scripted sequences


def _noise(seed: int, sd: float = 0.05) -> np.ndarray:
    """(N,) zero-mean per-user noise of a fixed sample."""
    x = np.random.default_rng(seed).normal(0, sd, N)
    return x - x.mean()


def _run(sequence: list[np.ndarray], **settings) -> tuple[EarlyStopping[int], list[int], list[int]]:
    """Feed ``sequence`` (one (N,) array per step, steps 1..) until the rule stops; returns
    the stopper, the steps observed and the steps whose state was copied."""
    # the significant rule unless a test asks for the mean one (the default)
    config = EarlyStoppingConfig(**{"early_stopping": True, "improvement": "significant",
                                    **settings})  # fmt: skip
    stopper: EarlyStopping[int] = EarlyStopping(config)
    observed, copied = [], []
    for step, values in enumerate(sequence, start=1):
        observed.append(step)

        def state(step: int = step) -> int:
            copied.append(step)
            return step

        if stopper.observe(step, values, state):
            break
    return stopper, observed, copied


def _level(mean: float, seed: int) -> np.ndarray:
    return mean + _noise(seed)


def test_paired_gain_is_the_mean_and_standard_error_of_the_differences():
    rng = np.random.default_rng(0)
    best, values = rng.random(50), rng.random(50)
    gain, se = paired_gain(values, best)
    diff = values - best
    assert gain == pytest.approx(diff.mean())
    assert se == pytest.approx(diff.std(ddof=1) / math.sqrt(50))
    assert paired_gain(np.array([0.5]), np.array([0.2]))[1] == math.inf
    for other in (np.zeros(4), np.zeros(1), np.zeros((3, 1))):
        with pytest.raises(ValueError, match="different users"):
            paired_gain(np.zeros(3), other)


def test_patience_counts_steps_without_a_significant_gain_then_restores_the_best():
    base = _noise(0)
    # step 2 is clearly better (+0.05 for every user); steps 3-5 equal to it, plus noise
    sequence = [0.30 + base, 0.35 + base, *(0.35 + base + _noise(s, 0.01) for s in (3, 4, 5))]
    sequence += [0.50 + base]  # never reached: patience 3 ran out at step 5
    stopper, observed, copied = _run(sequence, patience=3)
    assert observed == [1, 2, 3, 4, 5] and copied == [1, 2]
    assert stopper.best_step == 2 and stopper.restore_state() == 2
    assert stopper.outcome.stop_reason == NO_IMPROVEMENT
    assert (stopper.outcome.best_step, stopper.outcome.stopped_step) == (2, 5)
    # patience 1: the first step without a gain stops
    stopper, observed, _ = _run(sequence, patience=1)
    assert observed == [1, 2, 3] and stopper.outcome.best_step == 2


def test_a_significant_gain_resets_patience():
    base = _noise(0)
    means = [0.30, 0.30, 0.30, 0.40, 0.40, 0.40, 0.40]  # flat, a jump at step 4, flat again
    stopper, observed, copied = _run([m + base + _noise(10 + i, 0.01) for i, m in
                                      enumerate(means)], patience=3)  # fmt: skip
    assert copied == [1, 4] and observed == [1, 2, 3, 4, 5, 6, 7]
    assert stopper.outcome.stop_reason == NO_IMPROVEMENT and stopper.restore_state() == 4


def test_a_gain_within_two_standard_errors_does_not_count():
    base = np.random.default_rng(1).random(N)
    noise = _noise(2, sd=0.2)  # the per-user differences: sd 0.2, SE 0.01 over 400 users
    se = noise.std(ddof=1) / math.sqrt(N)
    small = base + noise + 1.5 * se  # mean gain 1.5 SE: noise, not an improvement
    large = base + noise + 2.5 * se  # 2.5 SE: an improvement
    assert paired_gain(small, base)[0] == pytest.approx(1.5 * se)
    stopper, _, copied = _run([base, small, small, small], patience=3)
    assert copied == [1] and stopper.outcome.best_step == 1
    stopper, _, copied = _run([base, large], patience=3)
    assert copied == [1, 2]
    assert SE_MULTIPLE == 2.0


def test_slow_gains_add_up_against_the_kept_step():
    base = np.random.default_rng(3).random(N)
    noise = _noise(4, sd=0.2)
    se = noise.std(ddof=1) / math.sqrt(N)
    # +0.8 SE a step: no single step is significant, but against step 1 the third one is
    sequence = [base] + [base + noise + k * 0.8 * se for k in (1, 2, 3)]
    stopper, _, copied = _run(sequence, patience=3)
    assert copied == [1, 4] and stopper.outcome.stop_reason == MAX_STEPS


def test_the_mean_rule_counts_any_gain_of_the_mean():
    """``improvement = 'mean'``: a slow gain below 2 standard errors keeps training (the
    significant rule stops there), and a flat stretch still stops after the patience."""
    base = np.random.default_rng(1).random(N)
    noise = _noise(2, sd=0.2)
    se = noise.std(ddof=1) / math.sqrt(N)
    rising = [base] + [base + noise + k * 0.5 * se for k in (1, 2, 3, 4, 5)]
    stopper, observed, copied = _run(rising, patience=2, improvement="mean")
    assert copied == [1, 2, 3, 4, 5, 6] and stopper.outcome.stop_reason == MAX_STEPS
    stopper, observed, copied = _run(rising, patience=2)  # the significant rule
    assert copied == [1] and observed == [1, 2, 3]  # 0.5 and 1 SE: below the bar
    assert stopper.outcome.stop_reason == NO_IMPROVEMENT
    # flat after step 2: its mean is not beaten, three steps later training stops
    flat = [base, base + 0.01, base + 0.01, base + 0.005, base + 0.01, base + 0.5]
    stopper, observed, copied = _run(flat, patience=3, improvement="mean")
    assert copied == [1, 2] and observed == [1, 2, 3, 4, 5]
    assert stopper.outcome.stop_reason == NO_IMPROVEMENT and stopper.restore_state() == 2
    # min_gain still applies to the mean
    stopper, _, copied = _run(rising, patience=9, improvement="mean", min_gain=0.6 * se)
    assert copied == [1, 3, 5]


def test_min_gain_is_the_least_mean_gain_that_counts():
    base = _noise(5)
    sequence = [0.30 + base, 0.31 + base, 0.32 + base, 0.33 + base]  # +0.01 a step, no noise
    stopper, _, copied = _run(sequence, patience=2)
    assert copied == [1, 2, 3, 4]  # every +0.01 is significant (the differences are constant)
    stopper, _, copied = _run(sequence, patience=2, min_gain=0.015)
    # +0.01 is below min_gain, +0.02 over the kept step 1 is above it
    assert copied == [1, 3] and stopper.outcome.stop_reason == MAX_STEPS
    stopper, observed, copied = _run(sequence, patience=2, min_gain=0.05)
    assert copied == [1] and observed == [1, 2, 3] and stopper.restore_state() == 1


def test_the_maximum_keeps_the_best_step_and_restores_only_when_it_moved_on():
    base = _noise(6)
    rising = [0.1 + base, 0.2 + base, 0.3 + base]
    stopper, _, _ = _run(rising)
    assert stopper.outcome.stop_reason == MAX_STEPS and stopper.outcome.best_step == 3
    assert stopper.restore_state() is None  # the model already holds step 3
    stopper, _, _ = _run([0.1 + base, 0.3 + base, 0.2 + base])
    assert stopper.outcome == type(stopper.outcome)(2, 3, MAX_STEPS)
    assert stopper.restore_state() == 2


def test_disabled_or_without_a_probe_every_step_runs_and_the_last_is_kept():
    base = _noise(7)
    falling = [0.5 + base, *(0.1 + base for _ in range(6))]
    stopper, observed, copied = _run(falling, early_stopping=False)
    assert observed == list(range(1, 8)) and copied == [] and stopper.restore_state() is None
    assert stopper.outcome == type(stopper.outcome)(7, 7, DISABLED)
    for missing in (None, np.zeros(0)):
        stopper, observed, copied = _run([missing] * 5)
        assert observed == [1, 2, 3, 4, 5] and copied == [] and stopper.restore_state() is None
        assert stopper.outcome == type(stopper.outcome)(5, 5, NO_PROBE)


# --- the models, on the planted data ------------------------------------------------------


def _probe(data: TrainData, held: sp.csr_matrix):
    """Per-user NDCG@10 of the held-out tracks, train tracks excluded, every user."""
    train = data.train.toarray() > 0
    held = sp.csr_matrix(held)
    discount = 1 / np.log2(np.arange(2, 12))

    def probe(model) -> np.ndarray:
        scores = model.score(ALL_USERS).astype(np.float64)
        scores[train] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
        out = np.empty(len(ALL_USERS))
        for user in ALL_USERS:
            relevant = np.isin(top[user], held[user].indices)
            ideal = discount[: min(10, held[user].nnz)].sum()
            out[user] = (discount * relevant).sum() / ideal
        return out

    return probe


STEPS = {"als": "iterations"}  # the others: epochs
# early stopping settings that make every model stop well before its maximum on the
# planted data (it is learnt in a few steps)
MAXIMUM = 12


def _fit(name: str, curve: list | None = None, probe: bool = True, **settings):
    data, held = planted()
    data.probe = _probe(data, held) if probe else None
    if curve is not None:
        data.on_step = lambda step, loss, ndcg: curve.append((step, ndcg))
    steps = STEPS.get(name, "epochs")
    chosen = {steps: MAXIMUM, "patience": 2, "early_stopping": True, **settings}
    return make(name, **chosen).fit(data)


@pytest.fixture(scope="module", params=LEARNERS)
def stopped(request):
    """(name, model fitted with early stopping, its curve) for each iterative model."""
    curve: list = []
    return request.param, _fit(request.param, curve), curve


def test_the_model_keeps_exactly_the_best_step(stopped):
    name, model, curve = stopped
    outcome = model.stopping
    assert outcome.stop_reason == NO_IMPROVEMENT, outcome
    assert 1 <= outcome.best_step < outcome.stopped_step < MAXIMUM
    assert [s for s, _ in curve] == list(range(1, outcome.stopped_step + 1))
    steps = STEPS.get(name, "epochs")
    exact = _fit(name, **{steps: outcome.best_step, "early_stopping": False})
    assert exact.stopping.stop_reason == DISABLED
    assert exact.stopping.best_step == outcome.best_step
    assert np.array_equal(model.score(ALL_USERS), exact.score(ALL_USERS))


def test_the_same_seed_stops_at_the_same_step(stopped):
    name, model, curve = stopped
    again_curve: list = []
    again = _fit(name, again_curve)
    assert again.stopping == model.stopping and again_curve == curve
    assert np.array_equal(again.score(ALL_USERS), model.score(ALL_USERS))


def test_als_without_early_stopping_is_a_plain_implicit_fit():
    data, _ = planted()
    model = _fit("als", early_stopping=False)
    assert model.stopping.stop_reason == DISABLED and model.stopping.stopped_step == MAXIMUM
    cfg = model.config
    conf = sp.csr_matrix(data.train, dtype=np.float32, copy=True)
    conf.data = 1.0 + np.float32(cfg.alpha) * conf.data
    with one_blas_thread():
        plain = AlternatingLeastSquares(
            factors=cfg.factors,
            regularization=cfg.regularization,
            alpha=1.0,
            iterations=MAXIMUM,
            calculate_training_loss=True,
            num_threads=0,
            random_state=cfg.seed,
            dtype=np.float32,
        )
        plain.fit(conf, show_progress=False)
    assert np.array_equal(model.model.user_factors, plain.user_factors)
    assert np.array_equal(model.model.item_factors, plain.item_factors)


@pytest.mark.parametrize("name", LEARNERS)
def test_probing_does_not_change_what_is_learnt(name):
    steps = STEPS.get(name, "epochs")
    probed = _fit(name, early_stopping=False, **{steps: 3})
    plain = _fit(name, probe=False, **{steps: 3})
    assert plain.stopping.stop_reason == NO_PROBE
    assert np.array_equal(probed.score(ALL_USERS), plain.score(ALL_USERS))


TORCH = tuple(name for name in LEARNERS if name not in STEPS)
WITHIN = 200  # probe_every: several probes an epoch on the planted data (480+ pairs)


def test_probe_points_spread_the_probes_evenly_and_always_end_the_epoch():
    assert probe_points(10_000, 100, 0) == [100]  # off: the epoch's end only
    assert probe_points(10_000, 100, 20_000) == [100]  # an epoch shorter than probe_every
    assert probe_points(10_000, 100, 2_500) == [25, 50, 75, 100]
    assert probe_points(10_050, 100, 5_000) == [50, 101]  # a last, partial batch
    assert probe_points(1_000, 100, 1) == list(range(1, 11))  # at most one per batch
    assert probe_points(0, 100, 10) == [1]


@pytest.mark.parametrize("name", TORCH)
def test_probing_within_epochs_does_not_change_what_is_learnt(name):
    curve: list = []
    probed = _fit(name, curve, early_stopping=False, epochs=3, probe_every=WITHIN)
    plain = _fit(name, probe=False, epochs=3, probe_every=WITHIN)
    once = _fit(name, early_stopping=False, epochs=3)  # probed at the epochs' ends only
    per_epoch = probed.stats["probes_per_epoch"]
    assert per_epoch >= 2 and once.stats["probes_per_epoch"] == 1
    assert [s for s, _ in curve] == list(range(1, 3 * per_epoch + 1))
    assert probed.stopping.stopped_step == 3 * per_epoch
    assert np.array_equal(probed.score(ALL_USERS), plain.score(ALL_USERS))
    assert np.array_equal(probed.score(ALL_USERS), once.score(ALL_USERS))


@pytest.mark.parametrize("name", ["mbcf", "two_tower"])
def test_a_stop_between_probes_of_an_epoch_keeps_exactly_the_best_probe(name):
    """The kept probe's state equals a model trained (early stopping off) for exactly the
    optimiser steps done when that probe ran."""
    data, held = planted()
    batches = [0]  # optimiser steps so far
    at_probe: dict[int, int] = {}  # probe step -> optimiser steps done then
    data.probe = _probe(data, held)
    data.on_step = lambda step, loss, ndcg: at_probe.__setitem__(step, batches[0])
    data.on_batch = lambda step, loss: batches.__setitem__(0, step) or False
    settings = {"epochs": MAXIMUM, "patience": 3, "probe_every": WITHIN}
    model = make(name, early_stopping=True, **settings).fit(data)
    outcome = model.stopping
    assert outcome.stop_reason == NO_IMPROVEMENT, outcome
    assert model.stats["probes_per_epoch"] >= 2
    assert outcome.best_step < outcome.stopped_step
    halt = at_probe[outcome.best_step]
    again, _ = planted()
    again.on_batch = lambda step, loss: step >= halt
    exact = make(name, early_stopping=False, **settings).fit(again)
    assert np.array_equal(model.score(ALL_USERS), exact.score(ALL_USERS))


# --- what a run records -------------------------------------------------------------------


def test_a_run_records_the_step_it_kept(tiny_warehouse, tmp_path):
    import shutil

    import duckdb

    from jamrec.build.quality import validate
    from jamrec.models.dataset import open_dataset
    from jamrec.operations import runs
    from jamrec.warehouse.store import Warehouse

    path = tmp_path / "w.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    data = open_dataset(path)
    config = {"factors": 8, "iterations": 40, "early_stopping": True}
    run = runs.train("als", data, seed=0, config=config)
    again = runs.train("als", data, seed=0, config=config)
    assert run.stopping is not None and run.stopping == again.stopping
    assert [c[:3] for c in run.curve] == [c[:3] for c in again.curve]
    assert run.stopping.stop_reason in (NO_IMPROVEMENT, MAX_STEPS)
    for trained in (run, runs.train("popularity", data)):
        runs.save(trained, data, path)
        runs.record(trained, None, path)
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = dict(
            (model, rest)
            for model, *rest in con.execute(
                "select model, best_step, stopped_step, stop_reason from model_runs"
            ).fetchall()
        )
        steps = con.execute(
            "select step from training_curves where run_id = $r order by step",
            {"r": run.run_id},
        ).fetchall()
    finally:
        con.close()
    outcome = run.stopping
    assert rows["als"] == [outcome.best_step, outcome.stopped_step, outcome.stop_reason]
    assert rows["popularity"] == [None, None, None]
    assert [s for (s,) in steps] == list(range(1, outcome.stopped_step + 1))
    con = Warehouse(path).connect_readonly()
    try:
        report = validate(con, tmp_path / "reports", {}, tables=["model_runs"])
    finally:
        con.close()
    assert report.success, report.message()


def test_migration_6_adds_the_stop_columns_to_older_warehouses(tmp_path):
    import duckdb

    from jamrec.warehouse import history

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        history.migrate(con)
        # the shape before version 6, with a run recorded then
        for column in history.EARLY_STOPPING:
            con.execute(f"alter table model_runs drop column {column.name}")
        con.execute("delete from schema_migrations where version = 6")
        con.execute(
            "insert into model_runs (run_id, build_id, model, status) "
            "values ('old', 'b-1', 'als', 'evaluated')"
        )
        assert not history.is_current(con)
        assert history.migrate(con) == [6] and history.migrate(con) == []
        found = con.execute(
            "select column_name, comment from duckdb_columns() "
            "where table_name = 'model_runs' and column_name in "
            "('best_step', 'stopped_step', 'stop_reason')"
        ).fetchall()
        assert {name for name, _ in found} == {c.name for c in history.EARLY_STOPPING}
        assert all(comment for _, comment in found)
        old = con.execute("select best_step, stopped_step, stop_reason from model_runs")
        assert old.fetchall() == [(None, None, None)]
        next(m for m in history.MIGRATIONS if m.version == 6).apply(con)  # idempotent
        assert history.is_current(con)
    finally:
        con.close()


def test_early_stopping_is_on_by_default_with_the_mean_rule_and_off_when_asked():
    for name in LEARNERS:
        model = _fit(name, **{STEPS.get(name, "epochs"): 3, "early_stopping": False})
        assert model.stopping.stop_reason == DISABLED and model.stopping.best_step == 3
    defaults = EarlyStoppingConfig()
    assert defaults.early_stopping and defaults.improvement == "mean"
    assert defaults.patience == 5 and defaults.min_gain == 0
    # every iterative default model stops, except the study's NN (its fixed 3 epochs)
    for name in ("als", "mbcf", "hybrid", "two_tower"):
        assert create(name).config.early_stopping, name
    assert not create("hybrid_study").config.early_stopping
    assert create("hybrid").config.probe_users == 2000  # the MLP scores every probed pair
    # the two-tower probes within long epochs (TIMJ scale: 5 an epoch), patience 3 probes
    two_tower = create("two_tower").config
    assert (two_tower.probe_every, two_tower.patience) == (4_000_000, 3)
    assert create("mbcf").config.probe_every == 0  # once an epoch
