"""Early stopping on a paired validation probe: one rule for every iterative model.

ALS (after each iteration) and the torch models (after each epoch) report the step through
:meth:`jamrec.models.base.TrainData.step`, which runs the run's validation probe: per-user
NDCG@10 of one fixed, seeded sample of validation users, the same users every step, so two
steps compare *paired* (user by user). :class:`EarlyStopping` decides on those values:

- the first probed step is the best so far;
- a later step is an **improvement** when its mean gain over the best so far (the mean
  over the sample of ``values - best_values``) exceeds ``min_gain``; with
  ``improvement = 'significant'`` it must also exceed ``SE_MULTIPLE`` (2) standard errors
  of that paired difference (a one-sided test at about 2.3%);
- after ``patience`` steps in a row without an improvement training stops, and the model
  is put back to the best step's state (a copy taken when it became the best).

The comparison is always with the best *kept* step, not the previous one. The default,
'mean' with patience 5, waits for a slow, steady gain (each step a little above the last)
and stops a plateau or a decline after 5 steps; noise can only prolong training (a noisy
new best resets the patience), never end it while the model still gains. The
'significant' rule saves more steps but stops slow gains (measured in
benchmarks/RESULTS.md, "Early stopping"). What was kept and why training ended is a
:class:`StopOutcome`, recorded in ``model_runs`` (``best_step``, ``stopped_step``,
``stop_reason``); each step's probe mean is in ``training_curves``.

With ``early_stopping = False`` the model trains every step and keeps the last one, as it
did before this rule existed (bit-identical: nothing is restored). The steps setting of a
model (``epochs``, ``iterations``) is the maximum either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from pydantic import Field

from jamrec.models.base import ModelConfig

# Probe users by default, sized from the paired noise measured on the generated small dump
# (benchmarks/bench_early_stopping.py; docs/protocols.md, "Early stopping"): once training
# has settled, the per-user NDCG@10 difference between two consecutive steps has a
# standard deviation of 0.020 (MBCF), 0.024 (ALS) and 0.045 (two_tower), up to 0.11 in
# the first steps. Over n users the standard error of the mean paired gain is sd/sqrt(n):
# with 10,000 users the 2-SE bar is 0.0004-0.0009 NDCG@10, about one late step's change
# there (median 0.0003-0.0013) and 1-2% of the models' NDCG@10 (0.034-0.056); with 1,000
# (the old curve probe) it is 0.0013-0.0028, several late steps' worth. Past 10,000 the
# bar shrinks only with the square root while the probe's cost grows linearly (it ranks
# every candidate for every probed user, each step).
PROBE_USERS = 10_000
SE_MULTIPLE = 2.0  # standard errors a paired gain must exceed to count (one-sided ~2.3%)

# Why training ended (model_runs.stop_reason).
NO_IMPROVEMENT = "no_improvement"  # patience ran out: restored the best step
MAX_STEPS = "max_steps"  # the epochs/iterations maximum came first: the best step kept
DISABLED = "disabled"  # early_stopping = False: every step trained, the last one kept
NO_PROBE = "no_probe"  # nothing to probe (no validation users): every step, the last kept
STOP_REASONS = (NO_IMPROVEMENT, MAX_STEPS, DISABLED, NO_PROBE)


class EarlyStoppingConfig(ModelConfig):
    """Settings of early stopping (module docstring), shared by every iterative model.

    On by default, with ``improvement = 'mean'`` and ``patience = 5``: chosen on
    validation on the generated small dump (benchmarks/RESULTS.md, "Early stopping"),
    where that rule keeps ALS, MBCF, the hybrid and the two-tower at the step (or within a
    step) that training every step would reach, with the same test NDCG@10, while at TIMJ
    scale MBCF's validation peaks at epoch 2 and the two-tower's wanders from epoch 1, so
    they stop there instead of training 20 epochs. The 'significant' rule (a gain must
    exceed 2 standard errors of the paired difference) stopped ALS at step 6 and MBCF at
    9 there, while both still rose slowly: a slow, steady gain is below the bar at every
    step, and test NDCG@10 fell by up to 17%. ``min_gain = 0``: any gain of the mean
    counts (raise it to demand a practical size, in NDCG@10). ``probe_users``: see
    :data:`PROBE_USERS`; every validation user when there are fewer. A model may set other
    defaults: the two-tower probes within long epochs (``probe_every``) with a patience of
    3 probes.
    """

    early_stopping: bool = Field(
        True,
        description="Stop when validation NDCG@10 stops improving and keep the best step "
        "(False: every step, the last one kept).",
    )
    patience: int = Field(
        5,
        ge=1,
        description="Steps without an improvement over the best before stopping.",
    )
    min_gain: float = Field(
        0.0,
        ge=0,
        description="Least mean NDCG@10 gain over the best that counts.",
    )
    improvement: str = Field(
        "mean",
        pattern="^(significant|mean)$",
        description="What counts as an improvement over the kept step: 'mean' (the probe's "
        "mean exceeds the kept step's by more than min_gain) or 'significant' (the paired "
        "mean gain also exceeds 2 standard errors).",
    )
    probe_users: int = Field(
        PROBE_USERS,
        ge=1,
        description="Validation users probed each step (sized from the measured noise).",
    )


@dataclass(frozen=True)
class StopOutcome:
    """How a run's training ended: the step whose state the model holds (``best_step``),
    the last step trained (``stopped_step``) and why (one of :data:`STOP_REASONS`)."""

    best_step: int | None
    stopped_step: int | None
    stop_reason: str


def paired_gain(values: np.ndarray, best: np.ndarray) -> tuple[float, float]:
    """``(mean, standard error)`` of the per-user differences ``values - best``.

    Both are ``(n,)`` per-user NDCG@10 of the same users in the same order. The standard
    error is ``sd / sqrt(n)`` with the sample standard deviation (``ddof=1``); infinite
    below two users, where no gain can be told from noise.
    """
    if np.ndim(values) != 1 or np.shape(values) != np.shape(best):
        raise ValueError(
            f"paired values of different users: {np.shape(values)} vs {np.shape(best)}"
        )
    diff = np.asarray(values, np.float64) - np.asarray(best, np.float64)
    if len(diff) < 2:
        return (float(diff.mean()) if len(diff) else 0.0), math.inf
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff)))


StateT = TypeVar("StateT")


class EarlyStopping(Generic[StateT]):
    """The stopping rule of the module docstring for one training run.

    Call :meth:`observe` after every step with the probe's per-user values and a function
    that copies the model's state; it returns ``True`` when training should stop. Then
    :meth:`restore_state` is the state to put back (``None``: keep the current one) and
    :attr:`outcome` what happened.
    """

    def __init__(self, config: EarlyStoppingConfig):
        self.enabled = config.early_stopping
        self.patience = config.patience
        self.min_gain = config.min_gain
        self.improvement = config.improvement
        self.best_step: int | None = None
        self.best_values: np.ndarray | None = None
        self.best_state: StateT | None = None
        self.last_step: int | None = None
        self.since_best = 0
        self.stopped_early = False
        self.probed = False

    def is_improvement(self, values: np.ndarray) -> bool:
        """Whether ``values`` beat the best so far by more than ``min_gain`` and, with
        ``improvement = 'significant'``, by more than :data:`SE_MULTIPLE` standard errors of
        the paired difference (``'mean'``: the mean gain alone decides)."""
        if self.best_values is None:
            return True
        gain, se = paired_gain(values, self.best_values)
        if self.improvement == "mean":
            return gain > self.min_gain
        return gain > self.min_gain and gain > SE_MULTIPLE * se

    def observe(self, step: int, values: np.ndarray | None, state: Callable[[], StateT]) -> bool:
        """Take step ``step``'s per-user probe values (``(n,)``, or ``None``/empty with no
        probe); ``state()`` copies the model's state and is called only for a new best.
        Returns whether to stop training now."""
        self.last_step = step
        if not self.enabled or values is None or len(values) == 0:
            return False
        self.probed = True
        if self.is_improvement(values):
            self.best_step, self.since_best = step, 0
            self.best_values = np.array(values, np.float64)
            self.best_state = state()
            return False
        self.since_best += 1
        self.stopped_early = self.since_best >= self.patience
        return self.stopped_early

    def restore_state(self) -> StateT | None:
        """The best step's state when the model has moved on since (else ``None``)."""
        if self.best_step is None or self.best_step == self.last_step:
            return None
        return self.best_state

    @property
    def outcome(self) -> StopOutcome:
        """What training kept and why it ended (call after the last step)."""
        if not self.enabled:
            return StopOutcome(self.last_step, self.last_step, DISABLED)
        if not self.probed:
            return StopOutcome(self.last_step, self.last_step, NO_PROBE)
        reason = NO_IMPROVEMENT if self.stopped_early else MAX_STEPS
        return StopOutcome(self.best_step, self.last_step, reason)
