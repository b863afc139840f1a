"""The study jamrec grew out of, re-run on the published build (``jamrec study``).

The study asked what audio features add to recommendation quality, with MBCF (embeddings
and a dot product, BCE with negatives), a network over ids and audio features (its "NN":
``hybrid_study``; jamrec's ``hybrid`` adds a dot-product path and fresh negatives) and
ALS; it reported HR@10 ALS 0.020, MBCF 0.280, NN 0.230 under mixed protocols. Each of
its experiments is a function in :data:`EXPERIMENTS` (in order, with a one-line
description), measured here under jamrec's protocols (docs/protocols.md, "The
study's experiments"):

- ``negatives``: MBCF with the published negatives and with positives only;
- ``batch_size``, ``learning_rate``: the study's grids (:data:`STUDY_GRIDS`), MBCF's first
  optimiser steps, validation NDCG@10 on a fixed probe and the batch loss after each step;
- ``als_curves``: ALS, every metric on the probe after each iteration;
- ``audio_ablation``: ``hybrid`` and ``two_tower`` with and without audio features, warm
  users and withheld (cold) tracks;
- ``per_user``: one logistic regression per user over audio features, beside popularity.

Models that become runs (negatives, audio ablation) go through the run machinery
(:mod:`jamrec.operations.runs`): ``model_runs`` with ``purpose = 'study'`` (never
promoted), ``metrics``, ``user_metrics``, ``training_curves``, ``timings``. Every
experiment's results go to ``study_results`` in one write of its own, so an interrupted
study leaves whole experiments or nothing of one. One training seed for every model, one
evaluation seed for every user sample, probe, bootstrap and permutation test.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from jamrec import interrupts, timing
from jamrec.errors import JamrecError
from jamrec.evaluation import coldstart
from jamrec.evaluation.metrics import bootstrap_ci, metric_columns, per_user_metrics, ranks_full
from jamrec.evaluation.protocols import (
    EvaluationResult,
    EvaluationSettings,
    PerUser,
    bootstrap_code,
    sample_users,
    split_view,
    val_probe_metrics,
)
from jamrec.evaluation.significance import PairedResult, compare_paired
from jamrec.log import log, progress
from jamrec.models import create
from jamrec.models.base import Runtime, TrainData
from jamrec.models.dataset import Dataset, open_dataset, standardise
from jamrec.operations import runs
from jamrec.provenance import new_id, now
from jamrec.warehouse import history
from jamrec.warehouse.store import warehouse_at

PURPOSE = "study"  # model_runs.purpose of the study's runs: never champions
PROBE_USERS = 1000  # validation users of the curves' probe (the old curve probe's size)
PER_USER_USERS = 100  # test users of the per-user models (the study's)
PER_USER_NEGATIVES = 4  # sampled negatives per train positive of a per-user model
PER_USER_RIDGE = 1.0  # L2 penalty of the per-user logistic regressions (standardised features)
PER_USER_ITERATIONS = 25  # Newton steps of each (converged well before on tiny and small)
COLD_SHARE = 0.1  # share of the tracks withheld for the audio ablation's cold tracks
AUDIO_MODELS = ("hybrid", "two_tower")
K = 10  # the cutoff every final row reports (HR@10, NDCG@10, as the study did)
_PER_USER_CODE = 0x5E55  # seeds the per-user experiment's choices apart from the others'


@dataclass(frozen=True)
class Grid:
    """One of the study's grids: MBCF's ``setting`` at each of ``values``, the first
    ``steps`` optimiser steps of each."""

    setting: str
    values: tuple[float, ...]
    steps: int


# The study's grids (its figures: curves over optimiser steps). Not jamrec's tuning grids
# (jamrec.operations.sweep.DEFAULT_GRIDS).
STUDY_GRIDS: dict[str, Grid] = {
    "batch_size": Grid("batch_size", (1024, 2048, 4096), 50),
    "learning_rate": Grid("lr", (1e-3, 5e-3, 5e-4, 1e-4), 100),
}


class StudyRow(NamedTuple):
    """One ``study_results`` row, less what the invocation fills in (study id, build,
    seeds, time)."""

    experiment: str
    variant: str
    model: str
    run_id: str | None
    protocol: str
    split: str
    metric: str
    k: int | None
    step: int | None
    value: float
    ci_low: float | None
    ci_high: float | None
    n_users: int | None
    settings: dict


def _row(
    experiment: str,
    variant: str,
    model: str,
    protocol: str,
    split: str,
    metric: str,
    k: int | None,
    value: float,
    settings: dict,
    *,
    run_id: str | None = None,
    step: int | None = None,
    ci: tuple[float | None, float | None] = (None, None),
    n_users: int | None = None,
) -> StudyRow:
    """A :class:`StudyRow`, what it measures first and its details by name."""
    return StudyRow(
        experiment, variant, model, run_id, protocol, split, metric, k, step, value, *ci,
        n_users, settings,
    )  # fmt: skip


@dataclass
class StudyContext:
    """What every experiment of one invocation shares: the data, the seeds and budgets."""

    study_id: str
    data: Dataset
    warehouse: Path | None
    seed: int
    evaluation: EvaluationSettings
    probe_users: int = PROBE_USERS
    per_user_users: int = PER_USER_USERS
    epochs: dict[str, int] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    cold_share: float = COLD_SHARE
    runtime: Runtime | dict | None = None

    @property
    def audio_share(self) -> float | None:
        """The generated dump's planted audio share (its truth), None on real data."""
        truth = self.data.truth
        return None if truth is None else float(truth.audio_share)


@dataclass(frozen=True)
class Experiment:
    """One experiment: what it measures (one line) and the function that runs it."""

    description: str
    run: Callable[[StudyContext], tuple[list[StudyRow], list[str]]]  # rows, run ids


@dataclass
class ExperimentOutcome:
    """What one experiment wrote: its rows, the runs it recorded, its seconds."""

    name: str
    rows: list[StudyRow]
    run_ids: list[str]
    seconds: float


@dataclass
class StudyOutcome:
    """What :func:`run_study` did."""

    study_id: str
    build_id: str
    experiments: list[ExperimentOutcome] = field(default_factory=list)


# -- runs through the run machinery ----------------------------------------------------------


def _recorded_run(
    ctx: StudyContext,
    name: str,
    config: dict,
    data: Dataset,
    evaluate: Callable[[runs.TrainedRun], EvaluationResult],
    curve: bool = True,
) -> tuple[str, EvaluationResult]:
    """Train ``name`` on ``data``, evaluate it and record it as a ``study`` run: its run id
    and evaluation (``curve``: probe validation every step, :func:`.runs.train`). A run
    that fails or is interrupted is recorded as such (as every run is), then the error
    goes on."""
    run = None
    try:
        run = runs.train(name, data, ctx.seed, config, ctx.runtime, ctx.evaluation, curve)
        run.purpose = PURPOSE
        run.build_id = ctx.data.build_id
        result = evaluate(run)
        return runs.record(run, result, ctx.warehouse), result
    except BaseException as exc:
        with interrupts.deferred():
            try:
                runs.record_unfinished(run, name, exc, ctx.data.build_id, ctx.seed, ctx.warehouse)
            except Exception as problem:
                log.error("could not record the unfinished study run of %s: %s", name, problem)
        if interrupts.is_interruption(exc):
            raise interrupts.as_interrupted(exc) from None
        raise


def _metric_rows(
    experiment: str,
    variant: str,
    model: str,
    run_id: str | None,
    result: EvaluationResult,
    protocols: Sequence[str],
    splits: Sequence[str],
    settings: dict,
) -> list[StudyRow]:
    """HR@10 and NDCG@10 of a recorded run (its ``metrics`` rows, with their intervals)."""
    out = []
    for row in result.rows:
        wanted = row.protocol in protocols and row.split in splits and row.k == K
        if wanted and row.metric in ("hr", "ndcg"):
            out.append(
                _row(
                    experiment,
                    variant,
                    model,
                    row.protocol,
                    row.split,
                    row.metric,
                    K,
                    row.value,
                    settings,
                    run_id=run_id,
                    ci=(row.ci_low, row.ci_high),
                    n_users=row.n_users,
                )
            )
    return out


def _per_user(blocks: Sequence[PerUser], protocol: str, split: str) -> PerUser | None:
    return next((b for b in blocks if b.protocol == protocol and b.split == split), None)


def _paired_rows(
    experiment: str,
    variant: str,
    model: str,
    run_id: str | None,
    blocks: tuple[Sequence[PerUser], Sequence[PerUser]],
    protocol: str,
    split: str,
    seed: Sequence[int],
    settings: dict,
    n_boot: int,
) -> list[StudyRow]:
    """``<metric>_diff`` (variant minus reference, paired over the users both were
    evaluated on, with its bootstrap interval) and ``<metric>_diff_p`` (the paired
    permutation p-value) for HR@10 and NDCG@10 (:mod:`jamrec.evaluation.significance`)."""
    a, b = (_per_user(side, protocol, split) for side in blocks)
    if a is None or b is None:
        return []
    _, ia, ib = np.intersect1d(a.users, b.users, return_indices=True)
    out = []
    for metric in ("hr", "ndcg"):
        column = a.metrics.columns.index((metric, K))
        paired = compare_paired(
            a.metrics.values[ia, column], b.metrics.values[ib, column], n_boot, seed=seed
        )
        where = (experiment, variant, model, protocol, split)
        out += _difference(where, metric, paired, settings, run_id)
    return out


def _difference(
    where: tuple[str, str, str, str, str],
    metric: str,
    paired: PairedResult,
    settings: dict,
    run_id: str | None = None,
) -> list[StudyRow]:
    """The two rows of a paired difference at ``where`` (experiment, variant, model,
    protocol, split): ``<metric>_diff`` with its interval, ``<metric>_diff_p``."""
    return [
        _row(
            *where, f"{metric}_diff", K, paired.difference, settings, run_id=run_id,
            ci=(paired.ci_low, paired.ci_high), n_users=paired.n_users,
        ),
        _row(
            *where, f"{metric}_diff_p", K, paired.p_value, settings, run_id=run_id,
            n_users=paired.n_users,
        ),
    ]  # fmt: skip


def _budget(ctx: StudyContext, experiment: str, setting: str) -> dict:
    """An experiment's training budget: every step of the model's maximum (``setting``,
    or the ``--epochs`` given for the experiment), early stopping off, as the study
    trained: its variants are compared at the same number of steps, and a curve runs to
    the end."""
    config: dict[str, Any] = {"early_stopping": False}
    if experiment in ctx.epochs:
        config[setting] = ctx.epochs[experiment]
    return config


def _settings(model: str, config: dict, **extra: Any) -> dict:
    """A variant's settings: the model's whole config (its defaults filled in) and extras."""
    return {"model": model, **create(model, **config).config.model_dump(), **extra}


# -- the experiments -------------------------------------------------------------------------


def negatives(ctx: StudyContext) -> tuple[list[StudyRow], list[str]]:
    """MBCF with the published negatives (the default) and with positives only, the same
    seed and epochs; both recorded as runs; HR/NDCG@10 under full_sample and sampled_100
    (val, test), and the paired difference positives-only minus published."""
    config = _budget(ctx, "negatives", "epochs")
    variants = {"published_negatives": {}, "positives_only": {"positives_only": True}}
    protocols, splits = ("full_sample", "sampled_100"), ("test", "val")
    rows: list[StudyRow] = []
    results: dict[str, EvaluationResult] = {}
    run_ids: list[str] = []
    for variant in progress(variants, "study negatives, variant", name=str):
        settings = _settings("mbcf", {**config, **variants[variant]})
        run_id, result = _recorded_run(
            ctx,
            "mbcf",
            {**config, **variants[variant]},
            ctx.data,
            lambda run: runs.evaluate(run, ctx.data, ctx.evaluation),
        )
        results[variant] = result
        run_ids.append(run_id)
        rows += _metric_rows(
            "negatives", variant, "mbcf", run_id, result, protocols, splits, settings
        )
        log.info(
            "study negatives: mbcf %s, test NDCG@10 %.4f (full_sample), run %s",
            variant,
            result.value("full_sample", "test", "ndcg", K),
            run_id,
        )
    positives_only_run = run_ids[list(variants).index("positives_only")]
    for protocol in protocols:
        for split in splits:
            rows += _paired_rows(
                "negatives",
                "positives_only - published_negatives",
                "mbcf",
                positives_only_run,
                (results["positives_only"].per_user, results["published_negatives"].per_user),
                protocol,
                split,
                bootstrap_code(ctx.evaluation.seed, protocol, split),
                _settings("mbcf", config, reference="published_negatives"),
                ctx.evaluation.n_boot,
            )
    return rows, run_ids


def _step_curves(ctx: StudyContext, experiment: str) -> tuple[list[StudyRow], list[str]]:
    """MBCF at each value of the study's grid ``experiment``: after every optimiser step of
    the first ``steps``, the batch's loss and validation NDCG@10 on the fixed probe."""
    grid = STUDY_GRIDS[experiment]
    steps = ctx.steps.get(experiment, grid.steps)
    probe = val_probe_metrics(ctx.data, ctx.probe_users, ctx.evaluation.seed, ks=(K,))
    rows: list[StudyRow] = []
    for value in progress(grid.values, f"study {experiment}, mbcf", name=str):
        variant = f"{grid.setting}={value:g}"
        # Enough epochs for the steps (an epoch has at least one batch); on_batch ends it.
        config = {grid.setting: value, "epochs": steps}
        settings = _settings(
            "mbcf", config, steps=steps, probe_users=ctx.probe_users, grid=experiment
        )
        model = create("mbcf", runtime=ctx.runtime, seed=ctx.seed, **config)
        points: list[tuple[int, float, float, int]] = []
        start = time.perf_counter()

        def on_batch(step: int, loss: float, model: Any = model, points: list = points) -> bool:
            per_user = probe(model)
            column = per_user.columns.index(("ndcg", K))
            mean = float(per_user.values[:, column].mean()) if len(per_user.values) else math.nan
            points.append((step, loss, mean, len(per_user.values)))
            return step >= steps

        model.fit(TrainData.from_dataset(ctx.data, on_batch=on_batch))
        for step, loss, ndcg, n in points:
            where = (experiment, variant, "mbcf")
            rows += [
                _row(*where, "val_probe", "val", "ndcg", K, ndcg, settings, step=step, n_users=n),
                _row(*where, "train", "train", "loss", None, loss, settings, step=step),
            ]
        best = max(points, key=lambda p: p[2], default=None)
        if best is not None:
            log.info(
                "study %s: mbcf %s, %d steps in %.1f s: val NDCG@10 %.4f at the last step, "
                "best %.4f at step %d; last batch loss %.4f",
                experiment,
                variant,
                len(points),
                time.perf_counter() - start,
                points[-1][2],
                best[2],
                best[0],
                points[-1][1],
            )
    return rows, []


def batch_size(ctx: StudyContext) -> tuple[list[StudyRow], list[str]]:
    """MBCF at batch sizes 1024, 2048, 4096: the first 50 optimiser steps (a curve)."""
    return _step_curves(ctx, "batch_size")


def learning_rate(ctx: StudyContext) -> tuple[list[StudyRow], list[str]]:
    """MBCF at learning rates 1e-3, 5e-3, 5e-4, 1e-4: the first 100 optimiser steps."""
    return _step_curves(ctx, "learning_rate")


def als_curves(ctx: StudyContext) -> tuple[list[StudyRow], list[str]]:
    """ALS iteration by iteration: HR and NDCG at 5, 10, 20 and MRR on the validation
    probe after every iteration, and implicit's training loss."""
    config = _budget(ctx, "als_curves", "iterations")
    settings = _settings("als", config, probe_users=ctx.probe_users)
    metrics = val_probe_metrics(ctx.data, ctx.probe_users, ctx.evaluation.seed)
    rows: list[StudyRow] = []
    probed: list[np.ndarray] = []  # each iteration's per-user values

    def probe(model: Any) -> np.ndarray:
        per_user = metrics(model)
        probed.append(per_user.values)
        return per_user.values[:, per_user.columns.index(("ndcg", K))]

    def on_step(step: int, loss: float | None, _ndcg: float | None) -> None:
        values = probed[-1]  # the probe ran just before (TrainData.step)
        n = len(values)
        where = ("als_curves", "default", "als")
        for j, (metric, k) in enumerate(metric_columns()):
            mean = float(values[:, j].mean()) if n else math.nan
            rows.append(
                _row(*where, "val_probe", "val", metric, k, mean, settings, step=step, n_users=n)
            )
        if loss is not None:
            rows.append(
                _row(*where, "train", "train", "loss", None, float(loss), settings, step=step)
            )

    start = time.perf_counter()
    model = create("als", runtime=ctx.runtime, seed=ctx.seed, **config)
    model.fit(TrainData.from_dataset(ctx.data, probe=probe, on_step=on_step))
    curve = [r for r in rows if r.metric == "ndcg" and r.k == K]
    if curve:
        best = max(curve, key=lambda r: r.value)
        log.info(
            "study als_curves: %d iterations in %.1f s, val NDCG@10 %.4f at the last, "
            "best %.4f at iteration %s",
            len(curve),
            time.perf_counter() - start,
            curve[-1].value,
            best.value,
            best.step,
        )
    return rows, []


def _scores_cold_tracks(model: str, config: dict) -> bool:
    """Whether a variant has anything but ids to score a track without interactions."""
    settings = create(model, **config).config
    if model == "two_tower":
        return bool(
            getattr(settings, "use_audio", False) or getattr(settings, "use_popularity", False)
        )
    if model == "hybrid":
        return bool(getattr(settings, "use_audio", False))
    return False


def audio_ablation(ctx: StudyContext) -> tuple[list[StudyRow], list[str]]:
    """``hybrid`` and ``two_tower`` with and without audio features, the same seed and
    epochs: warm users (full_sample, val and test, paired difference audio minus no audio)
    and tracks withheld from training (cold_start, cold_start_catalogue)."""
    config = _budget(ctx, "audio_ablation", "epochs")
    variants = {"audio": {"use_audio": True}, "no_audio": {"use_audio": False}}
    extra = {"audio_share": ctx.audio_share}
    rows: list[StudyRow] = []
    run_ids: list[str] = []
    todo = [(m, v) for m in AUDIO_MODELS for v in variants]
    warm: dict[tuple[str, str], tuple[str, EvaluationResult]] = {}
    for model, variant in progress(todo, "study audio_ablation, warm", name=lambda t: " ".join(t)):
        overrides = {**config, **variants[variant]}
        run_id, result = _recorded_run(
            ctx,
            model,
            overrides,
            ctx.data,
            lambda run: runs.evaluate(run, ctx.data, ctx.evaluation),
            curve=False,  # only the final metrics are compared: no per-epoch probe
        )
        run_ids.append(run_id)
        warm[(model, variant)] = (run_id, result)
        rows += _metric_rows(
            "audio_ablation",
            variant,
            model,
            run_id,
            result,
            ("full_sample",),
            ("test", "val"),
            _settings(model, overrides, **extra),
        )
    for model in AUDIO_MODELS:
        for split in ("test", "val"):
            rows += _paired_rows(
                "audio_ablation",
                "audio - no_audio",
                model,
                warm[(model, "audio")][0],
                (warm[(model, "audio")][1].per_user, warm[(model, "no_audio")][1].per_user),
                "full_sample",
                split,
                bootstrap_code(ctx.evaluation.seed, "full_sample", split),
                _settings(model, config, reference="no_audio", **extra),
                ctx.evaluation.n_boot,
            )
    cold_rows, cold_runs = _cold_tracks(ctx, config, variants, extra)
    return rows + cold_rows, run_ids + cold_runs


def _cold_tracks(
    ctx: StudyContext, config: dict, variants: dict[str, dict], extra: dict
) -> tuple[list[StudyRow], list[str]]:
    """The audio ablation on tracks withheld from training (:mod:`.evaluation.coldstart`):
    each variant that can score such a track, trained without them, evaluated on the same
    seeded sample of up to ``user_sample`` cold users; the rest skipped."""
    cold = coldstart.withhold(ctx.data, share=ctx.cold_share, seed=ctx.seed)
    log.info(
        "study audio_ablation: %d tracks withheld (share %g, seed %d), %d cold users",
        len(cold.tracks),
        ctx.cold_share,
        ctx.seed,
        len(cold.users),
    )
    extra = {**extra, "cold_share": ctx.cold_share, "withheld_tracks": len(cold.tracks)}
    rows: list[StudyRow] = []
    run_ids: list[str] = []
    blocks: dict[tuple[str, str], tuple[str, list[PerUser]]] = {}
    todo = []
    for model in AUDIO_MODELS:
        for variant in variants:
            if _scores_cold_tracks(model, {**config, **variants[variant]}):
                todo.append((model, variant))
            else:
                log.info(
                    "study audio_ablation: %s %s skipped on cold tracks: it sees ids only, "
                    "and a withheld track has none it learnt",
                    model,
                    variant,
                )
    for model, variant in progress(todo, "study audio_ablation, cold", name=lambda t: " ".join(t)):
        overrides = {**config, **variants[variant]}
        per_user: list[PerUser] = []

        def evaluate(
            run: runs.TrainedRun, per_user: list[PerUser] = per_user, model: str = model
        ) -> EvaluationResult:
            start = time.perf_counter()
            metric_rows = coldstart.evaluate_cold_start(
                run.model,
                cold,
                seed=ctx.evaluation.seed,
                n_boot=ctx.evaluation.n_boot,
                # every variant on the same seeded sample, as full_sample is for warm users
                user_sample=ctx.evaluation.user_sample,
                per_user=per_user,
            )
            run.timings["evaluate_s"] = round(time.perf_counter() - start, 3)
            run.data_snapshot["withheld_tracks"] = len(cold.tracks)
            run.data_snapshot["withheld_share"] = ctx.cold_share
            users = sum(len(block.users) for block in per_user)
            run.stages.append(timing.Timing.since("evaluate", start, rows=users, model=model))
            result = runs.evaluation_result(model, metric_rows, ctx.evaluation)
            result.per_user = per_user
            return result

        run_id, result = _recorded_run(
            ctx, model, overrides, cold.train_view, evaluate, curve=False
        )
        run_ids.append(run_id)
        blocks[(model, variant)] = (run_id, per_user)
        rows += _metric_rows(
            "audio_ablation",
            variant,
            model,
            run_id,
            result,
            coldstart.PROTOCOLS,
            (coldstart.SPLIT,),
            _settings(model, overrides, **extra),
        )
    for model in AUDIO_MODELS:
        if (model, "audio") in blocks and (model, "no_audio") in blocks:
            for protocol in coldstart.PROTOCOLS:
                rows += _paired_rows(
                    "audio_ablation",
                    "audio - no_audio",
                    model,
                    blocks[(model, "audio")][0],
                    (blocks[(model, "audio")][1], blocks[(model, "no_audio")][1]),
                    protocol,
                    coldstart.SPLIT,
                    coldstart.bootstrap_code(ctx.evaluation.seed, protocol),
                    _settings(model, config, reference="no_audio", **extra),
                    ctx.evaluation.n_boot,
                )
    return rows, run_ids


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    ridge: float = PER_USER_RIDGE,
    iterations: int = PER_USER_ITERATIONS,
) -> tuple[np.ndarray, float]:
    """``(w, b)`` of an L2-penalised logistic regression of ``y`` ((n,) 0/1) on ``x``
    ((n, F) float), by Newton's method from zero (deterministic; the intercept is not
    penalised). ``p = sigmoid(x @ w + b)``."""
    x1 = np.column_stack([np.asarray(x, np.float64), np.ones(len(x))])
    y = np.asarray(y, np.float64)
    penalty = np.full(x1.shape[1], float(ridge))
    penalty[-1] = 0.0
    theta = np.zeros(x1.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x1 @ theta)))
        gradient = x1.T @ (p - y) + penalty * theta
        hessian = (
            (x1 * (p * (1 - p))[:, None]).T @ x1 + np.diag(penalty) + 1e-9 * np.eye(len(theta))
        )
        change = np.linalg.solve(hessian, gradient)
        theta -= change
        if np.abs(change).max() < 1e-8:
            break
    return theta[:-1], float(theta[-1])


def per_user(ctx: StudyContext) -> tuple[list[StudyRow], list[str]]:
    """The study's per-user fine-tuned models: for each of a seeded sample of test users, a
    logistic regression on the standardised audio features of their train positives
    against sampled train-only negatives; every candidate but their train tracks ranked;
    HR@10 and NDCG@10 on test beside popularity on the same users."""
    data = ctx.data
    view = split_view(data, "test")
    users = sample_users(view, ctx.per_user_users, ctx.evaluation.seed)
    cand = view.candidates  # tie order: the column order breaks ties
    z, _, _ = standardise(data.features, data.candidates)
    zc = z[cand]
    column = np.full(data.n_tracks, -1, np.int64)
    column[cand] = np.arange(len(cand))
    train = sp.csr_matrix(data.train[users])
    scores = np.zeros((len(users), len(cand)), np.float32)
    start = time.perf_counter()
    log.info("study per_user: a logistic regression for each of %d test users", len(users))
    for i, user in enumerate(users):
        positives = column[train[i].indices]
        positives = positives[positives >= 0]
        pool = np.setdiff1d(np.arange(len(cand)), positives)
        rng = np.random.default_rng([ctx.evaluation.seed, _PER_USER_CODE, int(user)])
        n_neg = min(len(pool), PER_USER_NEGATIVES * len(positives))
        negs = rng.choice(pool, size=n_neg, replace=False) if n_neg else pool[:0]
        x = zc[np.concatenate([positives, negs])]
        y = np.concatenate([np.ones(len(positives)), np.zeros(len(negs))])
        w, b = fit_logistic(x, y)
        scores[i] = (zc @ w + b).astype(np.float32)
    log.info(
        "study per_user: %d logistic regressions over %d features in %.1f s",
        len(users),
        zc.shape[1],
        time.perf_counter() - start,
    )
    counts = np.asarray(data.train.sum(axis=0)).ravel()[cand].astype(np.float32)
    relevant = view.relevant[users]
    exclude = sp.csr_matrix(train[:, cand])  # their train tracks only (the study's ranking)
    rel_rows, rel_cols = _entries(relevant)
    ex_rows, ex_cols = _entries(exclude)
    n_relevant = np.diff(relevant.indptr)
    per: dict[str, np.ndarray] = {}
    for name, block in (
        ("logistic", scores),
        ("popularity", np.broadcast_to(counts, scores.shape)),
    ):
        ranks = ranks_full(block, rel_rows, rel_cols, exclude=(ex_rows, ex_cols))
        metrics = per_user_metrics(ranks, n_relevant, ks=(K,))
        per[name] = metrics.values
    columns = [c for c in metric_columns((K,)) if c[0] in ("hr", "ndcg")]
    seed = [ctx.evaluation.seed, _PER_USER_CODE]
    settings = {
        "users": len(users),
        "negatives_per_positive": PER_USER_NEGATIVES,
        "ridge": PER_USER_RIDGE,
        "newton_steps": PER_USER_ITERATIONS,
        "features": list(data.feature_names),
        "excluded": "train",
    }
    rows: list[StudyRow] = []
    models = {"logistic": "per_user_logistic", "popularity": "popularity"}
    for name, values in per.items():
        low, high = bootstrap_ci(values, n_boot=ctx.evaluation.n_boot, seed=seed)
        for j, (metric, k) in enumerate(columns):
            rows.append(
                _row(
                    "per_user",
                    name,
                    models[name],
                    "per_user",
                    "test",
                    metric,
                    k,
                    float(values[:, j].mean()),
                    settings,
                    ci=(float(low[j]), float(high[j])),
                    n_users=len(values),
                )
            )
    for j, (metric, _) in enumerate(columns):
        paired = compare_paired(
            per["logistic"][:, j], per["popularity"][:, j], ctx.evaluation.n_boot, seed=seed
        )
        where = ("per_user", "logistic - popularity", "per_user_logistic", "per_user", "test")
        rows += _difference(where, metric, paired, settings)
    return rows, []


def _entries(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a csr matrix's entries, row by row."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    return rows, matrix.indices.astype(np.int64)


# The experiments, in the order a study runs them.
EXPERIMENTS: dict[str, Experiment] = {
    "negatives": Experiment(
        "MBCF with the published negatives vs positives only (no negative sample)", negatives
    ),
    "batch_size": Experiment(
        "MBCF, batch size 1024 / 2048 / 4096: val NDCG@10 and loss over 50 optimiser steps",
        batch_size,
    ),
    "learning_rate": Experiment(
        "MBCF, learning rate 1e-3 / 5e-3 / 5e-4 / 1e-4: val NDCG@10 and loss over 100 steps",
        learning_rate,
    ),
    "als_curves": Experiment(
        "ALS: HR, NDCG at 5/10/20 and MRR on the validation probe after every iteration",
        als_curves,
    ),
    "audio_ablation": Experiment(
        "hybrid and two_tower with vs without audio features: warm users and cold tracks",
        audio_ablation,
    ),
    "per_user": Experiment(
        "one logistic regression per test user over audio features, beside popularity",
        per_user,
    ),
}
EPOCHS = ("negatives", "als_curves", "audio_ablation")  # experiments with an epochs setting


def study_on_published_build(warehouse: Path | None = None) -> str | None:
    """The latest study of the published build that ran every experiment (its id), or
    None: what ``make demo`` skips rather than run the study again."""
    con = warehouse_at(warehouse).connect_readonly()
    try:
        found = con.execute(
            "select study_id from study_results where build_id = "
            "(select build_id from published_build) group by study_id "
            "having count(distinct experiment) = $n order by max(created_at) desc limit 1",
            {"n": len(EXPERIMENTS)},
        ).fetchone()
    finally:
        con.close()
    return None if found is None else str(found[0])


def check_experiments(names: Sequence[str] | str | None) -> list[str]:
    """The experiments asked for (``"a,b"`` or a list; default every one, in order), or
    one line naming the unknown ones and the known ones."""
    if names is None:
        return list(EXPERIMENTS)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise JamrecError(
            f"unknown experiment(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(EXPERIMENTS)}"
        )
    if not names:
        raise JamrecError(f"give at least one experiment; known: {', '.join(EXPERIMENTS)}")
    return names


def _check_budget(epochs: dict[str, int], steps: dict[str, int]) -> None:
    for what, given, known in (("epochs", epochs, EPOCHS), ("steps", steps, tuple(STUDY_GRIDS))):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise JamrecError(
                f"{what} given for {', '.join(unknown)}: only {', '.join(known)} take {what}"
            )
        low = sorted(k for k, v in given.items() if int(v) < 1)
        if low:
            raise JamrecError(f"{what} must be at least 1 (given for {low})")


def prepare(
    warehouse: Path | None = None,
    seed: int = 0,
    evaluation_seed: int | None = None,
    probe_users: int = PROBE_USERS,
    per_user_users: int = PER_USER_USERS,
    epochs: dict[str, int] | None = None,
    steps: dict[str, int] | None = None,
    user_sample: int = 5000,
    n_boot: int = 1000,
    cold_share: float = COLD_SHARE,
    runtime: Runtime | dict | None = None,
) -> StudyContext:
    """A new study on the published build: its id, the data and the settings every
    experiment shares (:func:`run_study` has what they mean)."""
    from jamrec.files import check_writable
    from jamrec.operations.pipeline import evaluation_settings

    epochs, steps = dict(epochs or {}), dict(steps or {})
    _check_budget(epochs, steps)
    if probe_users < 1 or per_user_users < 1:
        raise JamrecError("probe_users and per_user_users must be at least 1")
    store = warehouse_at(warehouse)
    store.check_writable("jamrec study")
    check_writable(runs.models_dir(warehouse), "jamrec study (its runs)")
    data = open_dataset(warehouse)
    ctx = StudyContext(
        new_id("study"),
        data,
        warehouse,
        seed,
        evaluation_settings(evaluation_seed, user_sample, n_boot),
        probe_users,
        per_user_users,
        epochs,
        steps,
        cold_share,
        runtime,
    )
    log.info(
        "study %s on build %s: training seed %d, evaluation seed %d, probe %d val users",
        ctx.study_id,
        data.build_id,
        seed,
        ctx.evaluation.seed,
        probe_users,
    )
    return ctx


def run_experiment(name: str, ctx: StudyContext) -> ExperimentOutcome:
    """Run one experiment and write its rows to ``study_results`` in one write."""
    check_experiments([name])
    start = time.perf_counter()
    log.info("study %s: %s", name, EXPERIMENTS[name].description)
    rows, run_ids = EXPERIMENTS[name].run(ctx)
    stamp = now()
    with warehouse_at(ctx.warehouse).update(f"record study {ctx.study_id}: {name}") as con:
        con.executemany(
            history.insert_sql("study_results"),
            [
                (
                    ctx.study_id,
                    ctx.data.build_id,
                    *row[:-1],
                    ctx.seed,
                    ctx.evaluation.seed,
                    json.dumps(row.settings, sort_keys=True, default=str),
                    stamp,
                )
                for row in rows
            ],
        )
    seconds = time.perf_counter() - start
    log.info(
        "study %s: %d rows, %d runs recorded in %.1f s", name, len(rows), len(run_ids), seconds
    )
    return ExperimentOutcome(name, rows, run_ids, round(seconds, 2))


@timing.job_of("jamrec study")
def run_study(
    warehouse: Path | None = None,
    experiments: Sequence[str] | str | None = None,
    seed: int = 0,
    evaluation_seed: int | None = None,
    probe_users: int = PROBE_USERS,
    per_user_users: int = PER_USER_USERS,
    epochs: dict[str, int] | None = None,
    steps: dict[str, int] | None = None,
    user_sample: int = 5000,
    n_boot: int = 1000,
    cold_share: float = COLD_SHARE,
    runtime: Runtime | dict | None = None,
) -> StudyOutcome:
    """``jamrec study`` without Prefect: each experiment of ``experiments`` (default every
    one of :data:`EXPERIMENTS`, in order) on the published build, its rows written to
    ``study_results`` as it ends.

    ``seed`` trains every model; ``evaluation_seed`` (default: the ``evaluation_seed``
    setting) draws every user sample and probe and seeds the bootstrap and permutations;
    ``user_sample`` and ``n_boot`` are the runs' evaluation settings. ``probe_users``:
    validation users of the curves' probe (the same users every step and variant);
    ``per_user_users``: test users of the per-user models. ``epochs`` overrides the
    training budget per experiment (``{"negatives": 5}``: MBCF's epochs; ``audio_ablation``:
    hybrid's and two_tower's; ``als_curves``: ALS's iterations; default each model's own),
    ``steps`` the optimiser steps of the study's grids (``batch_size`` 50,
    ``learning_rate`` 100). ``cold_share``: tracks withheld for the audio ablation's
    cold-track half. The flow ``study`` runs the same steps as tasks.
    """
    names = check_experiments(experiments)
    ctx = prepare(
        warehouse,
        seed,
        evaluation_seed,
        probe_users,
        per_user_users,
        epochs,
        steps,
        user_sample,
        n_boot,
        cold_share,
        runtime,
    )
    outcome = StudyOutcome(ctx.study_id, ctx.data.build_id)
    for name in progress(names, "study experiment"):
        outcome.experiments.append(run_experiment(name, ctx))
    return outcome


# -- what the command prints -----------------------------------------------------------------


def _ci(row: StudyRow) -> str:
    if row.ci_low is None or row.ci_high is None or not np.isfinite(row.ci_low):
        return ""
    sign = "+" if row.metric.endswith("_diff") else ""
    return f"[{row.ci_low:{sign}.4f}, {row.ci_high:{sign}.4f}]"


def _label(metric: str, k: int | None) -> str:
    base = {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR", "loss": "loss"}
    name, _, diff = metric.partition("_")
    text = base.get(name, name) + (f"@{k}" if k is not None else "")
    return f"{text} diff" if diff else text


def format_experiment(done: ExperimentOutcome) -> str:
    """Plain text of one experiment: final values (test and cold rows, the paired
    differences with their p-values), or for curves the last and best step of each."""
    head = f"{done.name} ({done.seconds:.1f} s): {EXPERIMENTS[done.name].description}"
    lines = [head]
    final = [r for r in done.rows if r.step is None and r.split != "val"]
    curves = [r for r in done.rows if r.step is not None]
    if final:
        p_values = {
            (r.variant, r.model, r.protocol, r.split, r.metric.removesuffix("_p")): r.value
            for r in final
            if r.metric.endswith("_diff_p")
        }
        lines.append(
            f"  {'variant':<38}{'model':<19}{'protocol':<22}{'split':<6}{'metric':<13}"
            f"{'value':>9}  {'95% CI':<19}{'p':>8}"
        )
        for r in final:
            if r.metric.endswith("_diff_p"):
                continue
            p = p_values.get((r.variant, r.model, r.protocol, r.split, r.metric))
            shown = "" if p is None else ("<0.0001" if p < 1e-4 else f"{p:.4f}")
            value = f"{r.value:+.4f}" if r.metric.endswith("_diff") else f"{r.value:.4f}"
            lines.append(
                f"  {r.variant:<38}{r.model:<19}{r.protocol:<22}{r.split:<6}"
                f"{_label(r.metric, r.k):<13}{value:>9}  {_ci(r):<19}{shown:>8}"
            )
    if curves:
        lines.append(
            f"  {'variant':<20}{'model':<7}{'metric':<11}{'steps':>6}{'last':>9}"
            f"{'best':>9}{'at step':>9}"
        )
        groups: dict[tuple, list[StudyRow]] = {}
        for r in curves:
            if r.metric == "loss" or (r.metric, r.k) in (("ndcg", K), ("hr", K), ("mrr", None)):
                groups.setdefault((r.variant, r.model, r.metric, r.k), []).append(r)
        for (variant, model, metric, k), points in groups.items():
            points.sort(key=lambda r: r.step or 0)
            pick = min if metric == "loss" else max
            best = pick(points, key=lambda r: r.value)
            lines.append(
                f"  {variant:<20}{model:<7}{_label(metric, k):<11}{len(points):>6}"
                f"{points[-1].value:>9.4f}{best.value:>9.4f}{best.step:>9}"
            )
    if not final and not curves:
        lines.append("  no rows (nothing to measure on this build)")
    return "\n".join(lines)


def format_study(outcome: StudyOutcome) -> str:
    """Every experiment's table, then the query that shows every row."""
    parts = [format_experiment(done) for done in outcome.experiments]
    rows = sum(len(done.rows) for done in outcome.experiments)
    parts.append(
        f"study {outcome.study_id} on build {outcome.build_id}: {rows} rows in study_results "
        "(validation rows and every curve point too); see them with\n"
        f'  jamrec sql "select experiment, variant, model, protocol, split, metric, k, step, '
        f"value, ci_low, ci_high, n_users from study_results where study_id = "
        f"'{outcome.study_id}' order by all\" --max-rows 1000"
    )
    return "\n\n".join(parts)
