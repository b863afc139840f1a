"""The tables jamrec writes about itself, in one place: their DDL, comments, migrations
and the views every reader shares.

A build (``sql/``) replaces the data tables; *history* tables are written by jamrec's own
jobs (builds, model runs, metrics, promotions, served lists, sweeps, ...) and carried over
by every rebuild. This module is the only one that creates or alters them:

- :data:`TABLES` declares each table's columns, types and comments (``jamrec sql
  --describe`` shows them);
- :data:`MIGRATIONS` brings any older warehouse to the current shape, one numbered step
  at a time, recorded in ``schema_migrations``. Every step is idempotent. Code elsewhere
  never asks whether a column exists: a connection handed out by
  :meth:`jamrec.warehouse.store.Warehouse.update` (writers) or ``connect_readonly``
  (readers) sees the current shape;
- :data:`VIEWS` answer the questions asked everywhere (the published build, the latest
  run of each model, champions, the champion-selection score), for analysts too.

Adding a table: declare it in :data:`TABLES` and append a migration that creates it
(``docs/warehouse.md``). Adding a column: append it to its table and a migration that adds
it. Never edit a released migration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from jamrec.log import log

# What champions are selected on, and what every "val NDCG@10" of a run means.
SELECTION = ("full_sample", "val", "ndcg", 10)  # protocol, split, metric, k


@dataclass(frozen=True)
class Column:
    """One column: its name, DuckDB type (with constraints and default) and comment."""

    name: str
    type: str
    comment: str


@dataclass(frozen=True)
class Table:
    """A history table: its name, what one row is, and its columns in order."""

    name: str
    comment: str
    columns: tuple[Column, ...]

    def create_sql(self) -> str:
        """``create table if not exists`` with every current column."""
        body = ",\n    ".join(f"{c.name} {c.type}" for c in self.columns)
        return f"create table if not exists {self.name} (\n    {body}\n)"

    def column_names(self) -> list[str]:
        """The columns, in table order (for inserts that name them)."""
        return [c.name for c in self.columns]


@dataclass(frozen=True)
class View:
    """A shared question, as a view: its name, comment and ``select``; its columns take
    the comments of ``source``'s columns of the same name, or those in ``columns``."""

    name: str
    comment: str
    sql: str
    source: str
    columns: tuple[tuple[str, str], ...] = ()


C = Column

# Columns shared by tables, or added together by one migration.
EVALUATION_COLUMNS = (
    C(
        "evaluation_seed",
        "integer",
        "Seed of the evaluation's random choices (user sample, sampled-100 negatives, "
        "bootstrap): the same for every run compared, whatever its training seed.",
    ),
    C("user_sample", "integer", "Users in the full_sample protocol's seeded sample."),
    C("n_boot", "integer", "Bootstrap resamples behind the 95% intervals."),
)
PROMOTION_PAIRED = (
    C(
        "val_difference",
        "double",
        "Challenger minus champion, validation NDCG@10 (full_sample) averaged over the "
        "users both were measured on (paired).",
    ),
    C("difference_ci_low", "double", "Lower end of its paired bootstrap 95% interval."),
    C(
        "difference_ci_high",
        "double",
        "Upper end of its paired bootstrap 95% interval.",
    ),
    C(
        "p_value",
        "double",
        "Two-sided paired permutation test (sign flips over users) of the difference.",
    ),
    C("n_users_paired", "integer", "Users behind the paired difference."),
)

EARLY_STOPPING = (
    C(
        "best_step",
        "integer",
        "The step (epoch, iteration, or probe when long epochs are probed several times) "
        "whose state the saved model holds: the best on the validation probe when early "
        "stopping is on, else the last one trained (null for models without training steps).",
    ),
    C("stopped_step", "integer", "The last step (epoch, iteration or probe) trained."),
    C(
        "stop_reason",
        "varchar",
        "Why training ended: 'no_improvement' (patience steps without a significant gain on "
        "the validation probe; the best step restored), 'max_steps' (the epochs/iterations "
        "maximum first; the best step kept), 'disabled' (early stopping off: the last step "
        "kept) or 'no_probe' (no validation users to probe: the last step kept); null for "
        "models without training steps.",
    ),
)

BUILDS = Table(
    "builds",
    "One row per warehouse build, failed ones included; kept across rebuilds.",
    (
        C("build_id", "varchar not null", "Build id, sortable by start time."),
        C("started_at", "timestamptz not null", "When the build started (UTC)."),
        C("finished_at", "timestamptz", "When it was published or failed (UTC)."),
        C(
            "status",
            "varchar not null",
            "'running', 'published', 'failed', 'interrupted' (SIGINT/SIGTERM), 'abandoned' "
            "(its process died), 'skipped' (nothing changed), 'rolled_back' (replaced by "
            "jamrec rollback) or 'rollback' (a rollback: note says what it restored).",
        ),
        C("inputs_fingerprint", "varchar", "SHA-256 over the content hashes of every input file."),
        C("inputs", "json", "Per input file - its path, size, SHA-256, line count (JSON)."),
        C(
            "code_version",
            "varchar",
            "jamrec version plus a hash of the code and SQL that built it.",
        ),
        C("git_commit", "varchar", "The checkout's git commit, when there was one."),
        C(
            "parameters",
            "json",
            "Build parameters - seed, n_negatives, k_test, k_val, input paths (JSON).",
        ),
        C("stage_counts", "json", "Rows through each stage, rejects by reason (JSON)."),
        C("validation", "json", "Data-quality results of the build (JSON)."),
        C("error", "varchar", "Why the build failed."),
        C(
            "note",
            "varchar",
            "Why a build was skipped (its inputs, parameters and code matched the last one).",
        ),
        C("pid", "integer", "Process id of the build."),
        C("host", "varchar", "Host that ran the build."),
        C("duckdb_version", "varchar", "DuckDB library version that wrote it."),
    ),
)

MODEL_RUNS = Table(
    "model_runs",
    "One row per trained model (written by jamrec train; kept across rebuilds).",
    (
        C("run_id", "varchar not null", "Run id, e.g. als-20261126T180000-1a2b."),
        C(
            "build_id",
            "varchar not null",
            "The warehouse build the model was trained on (its data snapshot).",
        ),
        C("model", "varchar not null", "Model name (popularity, random, oracle, als, mbcf, ...)."),
        C(
            "config",
            "json",
            "The model's hyperparameters (JSON): what identifies it; runtime options such as "
            "device and threads are in timings.",
        ),
        C("seed", "integer", "Seed of every random choice of the run."),
        C(
            "data_snapshot",
            "json",
            "Build id, input fingerprint, users, tracks and train rows the run saw (JSON).",
        ),
        C("started_at", "timestamptz", "When training started (UTC)."),
        C("finished_at", "timestamptz", "When the run was recorded (UTC)."),
        C(
            "status",
            "varchar not null",
            "'trained' (saved, not yet evaluated), 'evaluated', 'failed' or 'interrupted' "
            "(SIGINT/SIGTERM; its model folder removed).",
        ),
        C(
            "timings",
            "json",
            "Seconds spent training and evaluating, training throughput and the runtime "
            "options (device, threads) (JSON).",
        ),
        C(
            "model_path",
            "varchar",
            "Where the trained model is saved (its library's own format), relative to the "
            "warehouse's folder (absolute in runs recorded before schema migration 3).",
        ),
        C("code_version", "varchar", "jamrec version plus a hash of its code."),
        C(
            "is_champion",
            "boolean default false",
            "Whether this run is its model's current champion.",
        ),
        C("promotion_note", "varchar", "Why the run is (or is not) champion."),
        C("error", "varchar", "Why the run failed."),
        C(
            "purpose",
            "varchar default 'standard'",
            "'standard' (the leave-k-out splits), 'temporal' (trained before the time cut, "
            "evaluated after it), 'cold_start' (trained without the withheld tracks) or "
            "'study' (a variant trained by jamrec study: results in study_results); only "
            "standard runs become champions.",
        ),
        C("promoted_at", "timestamptz", "When it last became champion (UTC)."),
        *EVALUATION_COLUMNS,
        *EARLY_STOPPING,
    ),
)

METRICS = Table(
    "metrics",
    "Evaluation results, one row per run, protocol, split, metric and cutoff.",
    (
        C("run_id", "varchar not null", "The evaluated run (model_runs.run_id)."),
        C(
            "protocol",
            "varchar not null",
            "'full' (every candidate, every evaluated user), 'full_sample' (the same on a seeded "
            "user sample), 'sampled_100' (each held-out track among 100 sampled), 'temporal' / "
            "'temporal_sample' (full ranking of what users jammed after the time cut, every user "
            "/ the user sample; temporal runs), 'cold_start' / "
            "'cold_start_catalogue' (withheld tracks among the withheld set / the catalogue), "
            "'beyond' (coverage, novelty, diversity, popularity of top-10 lists) or 'fold_in' "
            "(new listeners from their tracks).",
        ),
        C(
            "split",
            "varchar not null",
            "'val', 'test', or 'cold' (the withheld tracks' interactions, all splits).",
        ),
        C(
            "metric",
            "varchar not null",
            "'hr', 'ndcg', 'mrr'; for 'beyond': coverage, novelty (bits), diversity, "
            "rec_popularity_pct, jam_popularity_pct; for 'fold_in': ndcg, ndcg_trained, overlap.",
        ),
        C("k", "integer", "Cutoff K (5, 10, 20); null for MRR."),
        C("value", "double", "Mean over evaluated users."),
        C("ci_low", "double", "Lower end of the 95% bootstrap interval over users."),
        C("ci_high", "double", "Upper end of the 95% bootstrap interval over users."),
        C("n_users", "integer", "Users evaluated."),
        *EVALUATION_COLUMNS,
    ),
)

TRAINING_CURVES = Table(
    "training_curves",
    "Per-epoch or per-iteration training loss and validation NDCG@10 of each run.",
    (
        C("run_id", "varchar not null", "The run (model_runs.run_id)."),
        C(
            "step",
            "integer not null",
            "Epoch or iteration, or validation probe where long epochs are probed several "
            "times (model_runs.timings: probes_per_epoch; 0 for models without training steps).",
        ),
        C("loss", "double", "Training loss at that step (null when the model has none)."),
        C(
            "val_ndcg_at_10",
            "double",
            "Full-ranking NDCG@10 on a fixed sample of validation users (the run's "
            "probe_users, drawn with its training seed; early stopping decides on it).",
        ),
        C("seconds", "double", "Seconds since training started."),
    ),
)

PROMOTIONS = Table(
    "promotions",
    "Every champion/challenger decision, promoted or not (jamrec train/retrain, jamrec promote).",
    (
        C("decided_at", "timestamptz not null", "When the decision was made (UTC)."),
        C("model", "varchar not null", "The model."),
        C("build_id", "varchar", "The build the challenger was trained and compared on."),
        C("challenger_run_id", "varchar", "The new run."),
        C("challenger_val_ndcg_at_10", "double", "Its validation NDCG@10 (full_sample protocol)."),
        C(
            "champion_run_id",
            "varchar",
            "The champion it was compared with (null for a model's first run).",
        ),
        C(
            "champion_val_ndcg_at_10",
            "double",
            "The champion's validation NDCG@10 on the same build.",
        ),
        C(
            "champion_rescored",
            "boolean",
            "Whether the champion was re-scored on this build (it was trained on an older one).",
        ),
        C("promoted", "boolean not null", "Whether the challenger became champion."),
        C("note", "varchar", "Why."),
        *PROMOTION_PAIRED,
    ),
)

RECOMMENDATIONS = Table(
    "recommendations",
    "Top-N tracks per user from each serving champion, refreshed after promotion.",
    (
        C("run_id", "varchar not null", "The champion run that produced the list."),
        C("model", "varchar not null", "Its model."),
        C("user_id", "varchar not null", "The user (32 hex)."),
        C("rank", "integer not null", "1 = best."),
        C(
            "track_id",
            "varchar not null",
            "The recommended track (never one of the user's own positives).",
        ),
        C("score", "float", "The model's score (comparable within a list only)."),
        C("generated_at", "timestamptz not null", "When the lists were computed (UTC)."),
    ),
)

SWEEPS = Table(
    "sweeps",
    "Tuning sweeps - every configuration tried, its validation NDCG@10, and the one chosen.",
    (
        C("sweep_id", "varchar not null", "The sweep."),
        C("model", "varchar not null", "The model tuned."),
        C("build_id", "varchar not null", "The build it was tuned on."),
        C(
            "config",
            "json not null",
            "The settings tried (JSON; the rest are the model's defaults).",
        ),
        C(
            "val_ndcg_at_10",
            "double",
            "Validation NDCG@10 (full_sample protocol); the only basis of the choice.",
        ),
        C(
            "chosen",
            "boolean not null",
            "Whether this configuration won (it is then trained, tested and recorded as a run).",
        ),
        C(
            "run_id",
            "varchar",
            "The run recorded for the chosen configuration (test results in metrics).",
        ),
        C("seconds", "double", "Training and validation time of the trial."),
        C("finished_at", "timestamptz", "When the sweep was recorded (UTC)."),
    ),
)

COLDSTART_TRACKS = Table(
    "coldstart_tracks",
    "Tracks withheld, with all their interactions, by the cold-start protocol (jamrec coldstart).",
    (
        C("build_id", "varchar not null", "The build the tracks were withheld from."),
        C("seed", "integer not null", "Seed of the draw."),
        C("share", "double not null", "Share of the tracks with interactions that was withheld."),
        C("track_id", "varchar not null", "A withheld track."),
    ),
)

USER_METRICS = Table(
    "user_metrics",
    "Per-user evaluation results: one row per run, protocol, split and evaluated user "
    "(written by every evaluation; the metrics rows are their means).",
    (
        C("run_id", "varchar not null", "The evaluated run (model_runs.run_id)."),
        C(
            "protocol",
            "varchar not null",
            "As in metrics: full, full_sample, sampled_100, temporal, ...",
        ),
        C("split", "varchar not null", "'val' or 'test'."),
        C("user_id", "varchar not null", "The evaluated user (32 hex)."),
        C(
            "n_relevant",
            "integer",
            "The user's held-out tracks that were ranked (candidates; sampled_100: lists).",
        ),
        C(
            "hr_at_5",
            "double",
            "1 if a held-out track is in the top 5 (sampled_100: mean over the user's lists).",
        ),
        C("hr_at_10", "double", "1 if a held-out track is in the top 10."),
        C("hr_at_20", "double", "1 if a held-out track is in the top 20."),
        C("ndcg_at_5", "double", "NDCG@5 of the user's held-out tracks."),
        C("ndcg_at_10", "double", "NDCG@10 of the user's held-out tracks."),
        C("ndcg_at_20", "double", "NDCG@20 of the user's held-out tracks."),
        C(
            "rr",
            "double",
            "Reciprocal rank of the best-ranked held-out track (its mean is the metrics MRR; "
            "sampled_100: mean over the user's lists).",
        ),
        C(
            "rank",
            "integer",
            "Rank of the best-ranked held-out track (1 = top; sampled_100: best rank in the "
            "user's lists of 101).",
        ),
    ),
)

COMPARISONS = Table(
    "comparisons",
    "Paired comparisons of models on one build, protocol, split and metric (jamrec compare, "
    "jamrec train): differences over the same users, intervals, tests, Holm's correction.",
    (
        C(
            "comparison_id",
            "varchar not null",
            "One comparison (one family for Holm's correction).",
        ),
        C("compared_at", "timestamptz not null", "When it was computed (UTC)."),
        C("build_id", "varchar not null", "The build the runs were trained and evaluated on."),
        C("protocol", "varchar not null", "As in metrics."),
        C("split", "varchar not null", "'val' or 'test'."),
        C("metric", "varchar not null", "'hr', 'ndcg' or 'mrr'."),
        C("k", "integer", "Cutoff K; null for MRR."),
        C("model_a", "varchar not null", "The first model (the better mean comes first)."),
        C("model_b", "varchar not null", "The second model."),
        C(
            "runs_a",
            "json",
            "Runs of model_a averaged per user: the latest run of each training seed.",
        ),
        C("runs_b", "json", "Runs of model_b, likewise."),
        C("n_users", "integer", "Users evaluated for both models (the pairs)."),
        C(
            "mean_a",
            "double",
            "Mean over the paired users of model_a's per-user values (seed-averaged).",
        ),
        C("mean_b", "double", "The same for model_b."),
        C("difference", "double", "mean_a - mean_b."),
        C("ci_low", "double", "Lower end of the paired bootstrap 95% interval of the difference."),
        C("ci_high", "double", "Upper end of that interval."),
        C(
            "p_value",
            "double",
            "Two-sided paired permutation test over users (random sign flips of the per-user "
            "differences), unadjusted.",
        ),
        C("p_holm", "double", "p_value adjusted by Holm's step-down method across the family."),
        C("significant", "boolean", "p_holm below alpha."),
        C(
            "wilcoxon_p",
            "double",
            "Wilcoxon signed-rank p-value (zero differences dropped), unadjusted.",
        ),
        C("seeds_a", "integer", "Training seeds of model_a."),
        C(
            "seed_sd_a",
            "double",
            "Standard deviation across seeds of model_a's mean (null: one seed).",
        ),
        C("seeds_b", "integer", "Training seeds of model_b."),
        C("seed_sd_b", "double", "Standard deviation across seeds of model_b's mean."),
        C("n_pairs", "integer", "Pairs in the family (Holm's m)."),
        C("alpha", "double", "Significance level."),
        C("evaluation_seed", "integer", "Evaluation seed of the runs and of the resamples."),
        C("n_boot", "integer", "Bootstrap resamples of the interval."),
        C("n_permutations", "integer", "Random sign flips of the permutation test."),
    ),
)


ALERTS = Table(
    "alerts",
    "Every alert raised about jamrec's flow runs (a failed or crashed run, an overdue weekly "
    "retrain), written by the record-alert flow that the jamrec-alerts automation runs.",
    (
        C("raised_at", "timestamptz not null", "When the alert was recorded (UTC)."),
        C(
            "kind",
            "varchar not null",
            "'flow-run-failed' (a run ended Failed or Crashed) or 'retrain-overdue' "
            "(retrain/weekly has not completed for 8 days).",
        ),
        C("flow_name", "varchar", "The flow of the run (build-warehouse, retrain, ...)."),
        C("flow_run_id", "varchar", "The Prefect flow run, when the alert is about one."),
        C("flow_run_name", "varchar", "Its name as the Prefect UI shows it."),
        C("deployment", "varchar", "Its deployment (flow/deployment), when it had one."),
        C("state", "varchar", "The run's final state: Failed, Crashed, ..."),
        C("message", "varchar", "The state message: which step failed and why."),
        C(
            "webhook",
            "varchar",
            "The webhook block the automation also called, or null when none is configured.",
        ),
    ),
)

TIMINGS = Table(
    "timings",
    "Where the time went: wall seconds and peak memory of every stage of a build, of a model "
    "run and of the demo, written with the build's or the run's own row; no other table or "
    "result depends on them.",
    (
        C("recorded_at", "timestamptz not null", "When the stage ended (UTC)."),
        C(
            "build_id",
            "varchar not null",
            "The build: the one whose stage this is (a skipped build's own id for its input "
            "check), or the build a run was trained on.",
        ),
        C(
            "run_id",
            "varchar",
            "The model run (model_runs.run_id); null for a build's stages and a job's own "
            "(generate, compare, report, total).",
        ),
        C(
            "flow",
            "varchar",
            "What ran it: a Prefect flow (build-warehouse, train-and-evaluate, retrain, sweep, "
            "cold-start, study), demo, or a command (jamrec etl, jamrec train, jamrec "
            "coldstart, jamrec evaluate, jamrec study); null for a library call outside them.",
        ),
        C(
            "stage",
            "varchar not null",
            "Build: check inputs, start, load <file>, load truth, sql transforms, validate, "
            "publish; run: train, save, evaluate, record, promote; job: compare, generate, "
            "report, total (the demo's wall time).",
        ),
        C("model", "varchar", "The model, for a run's stages."),
        C("seconds", "double not null", "Wall-clock seconds the stage took."),
        C(
            "peak_rss_gb",
            "double",
            "The process's resident-memory high-water mark when the stage ended (GiB; "
            "getrusage ru_maxrss): since the process started, not the stage's own.",
        ),
        C(
            "rows",
            "bigint",
            "The stage's count, when it has one: lines or records read (load), rows of the "
            "tables built (sql transforms), rows validated (validate), rows in the published "
            "file (publish), train interactions (train), per-user results (evaluate), rows "
            "written (record), recommendations served (promote), model pairs (compare), "
            "jams.tsv lines (generate).",
        ),
    ),
)

STUDY_RESULTS = Table(
    "study_results",
    "The study's experiments (jamrec study): one row per invocation, experiment, variant, "
    "protocol, split, metric, cutoff and step; curves have one row per step.",
    (
        C("study_id", "varchar not null", "One jamrec study invocation."),
        C("build_id", "varchar not null", "The build it ran on."),
        C(
            "experiment",
            "varchar not null",
            "negatives, batch_size, learning_rate, als_curves, audio_ablation or per_user "
            "(docs/protocols.md, \"The study's experiments\").",
        ),
        C(
            "variant",
            "varchar not null",
            "What the experiment varied, e.g. 'published_negatives', 'positives_only', "
            "'batch_size=1024', 'lr=0.005', 'audio', 'no_audio'; a difference row names "
            "both sides ('positives_only - published_negatives').",
        ),
        C("model", "varchar not null", "The model (mbcf, als, hybrid, two_tower, popularity, ...)."),
        C(
            "run_id",
            "varchar",
            "The run recorded for the variant (model_runs, purpose 'study'); null for curves "
            "and per-user models, which are not runs.",
        ),
        C(
            "protocol",
            "varchar not null",
            "A metrics protocol (full_sample, sampled_100, cold_start, cold_start_catalogue), "
            "'val_probe' (full ranking of a fixed seeded sample of validation users, after "
            "each step), 'train' (training loss) or 'per_user' (the per-user models' ranking).",
        ),
        C("split", "varchar not null", "'val', 'test', 'cold' or 'train' (the loss)."),
        C(
            "metric",
            "varchar not null",
            "'hr', 'ndcg', 'mrr', 'loss'; '<metric>_diff' (variant minus reference, paired "
            "over users, with its bootstrap interval) and '<metric>_diff_p' (its two-sided "
            "paired permutation p-value).",
        ),
        C("k", "integer", "Cutoff K; null for MRR and the loss."),
        C(
            "step",
            "integer",
            "The optimiser step (batch_size, learning_rate) or ALS iteration (als_curves) of "
            "a curve's point, 1-based; null for final results.",
        ),
        C("value", "double", "Mean over users, the loss, the difference or the p-value."),
        C("ci_low", "double", "Lower end of the 95% bootstrap interval over users (null: none)."),
        C("ci_high", "double", "Upper end of that interval."),
        C("n_users", "integer", "Users behind the value (null for the loss)."),
        C("seed", "integer", "The training seed of every model of the invocation."),
        C(
            "evaluation_seed",
            "integer",
            "Seed of the evaluation's choices (user samples, probe, bootstrap, permutations).",
        ),
        C(
            "settings",
            "json",
            "The variant's settings (JSON): the model's config, the experiment's budget "
            "(steps, probe users), audio_share of the generated dump (null on real data).",
        ),
        C("created_at", "timestamptz not null", "When the experiment's rows were written (UTC)."),
    ),
)

SCHEMA_MIGRATIONS = Table(
    "schema_migrations",
    "Which migrations of jamrec's history tables this warehouse has had, and when.",
    (
        C("version", "integer not null", "Migration number (jamrec/warehouse/history.py)."),
        C("description", "varchar", "What it changed."),
        C("applied_at", "timestamptz not null", "When it was applied (UTC)."),
    ),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        BUILDS,
        MODEL_RUNS,
        METRICS,
        TRAINING_CURVES,
        PROMOTIONS,
        RECOMMENDATIONS,
        SWEEPS,
        COLDSTART_TRACKS,
        USER_METRICS,
        COMPARISONS,
        ALERTS,
        TIMINGS,
        STUDY_RESULTS,
        SCHEMA_MIGRATIONS,
    )
}

_PROTOCOL, _SPLIT, _METRIC, _K = SELECTION
VIEWS: tuple[View, ...] = (
    View(
        "published_build",
        "The build whose tables are published now (the latest published row of builds).",
        "select * from builds where status = 'published' order by started_at desc limit 1",
        "builds",
    ),
    View(
        "run_selection",
        "Each run's champion-selection score: validation NDCG@10 under the full_sample "
        "protocol (the one protocol every model has).",
        f"select run_id, value as val_ndcg_at_10, ci_low, ci_high, n_users from metrics "
        f"where protocol = '{_PROTOCOL}' and split = '{_SPLIT}' and metric = '{_METRIC}' "
        f"and k = {_K}",
        "metrics",
        (("val_ndcg_at_10", "Validation NDCG@10 (full_sample): what champions are chosen on."),),
    ),
    View(
        "latest_runs",
        "The latest evaluated standard run of each model on each build.",
        "select * from model_runs where status = 'evaluated' and purpose = 'standard' "
        "qualify row_number() over (partition by build_id, model "
        "order by started_at desc, run_id desc) = 1",
        "model_runs",
    ),
    View(
        "champions",
        "The run serving each model now, with its selection score.",
        "select r.*, s.val_ndcg_at_10 from model_runs r left join run_selection s using (run_id) "
        "where r.is_champion",
        "model_runs",
        (("val_ndcg_at_10", "Validation NDCG@10 (full_sample): what champions are chosen on."),),
    ),
)


@dataclass(frozen=True)
class Migration:
    """One numbered, idempotent step from the previous shape to the next."""

    version: int
    description: str
    apply: Callable[[duckdb.DuckDBPyConnection], None]


def _baseline(con: duckdb.DuckDBPyConnection) -> None:
    """Every table as of jamrec 0.1; warehouses written before migrations existed may
    lack some tables or the columns added later (``purpose``, ``promoted_at``, ``note``)."""
    for table in TABLES.values():
        con.execute(table.create_sql())
        for column in table.columns:
            con.execute(
                f"alter table {table.name} add column if not exists {column.name} "
                f"{_droppable_constraints(column.type)}"
            )
    con.execute("update model_runs set purpose = 'standard' where purpose is null")
    con.execute("update model_runs set is_champion = false where is_champion is null")


def _droppable_constraints(sql_type: str) -> str:
    """A column type for ``add column``: DuckDB cannot add a ``not null`` column."""
    return sql_type.replace(" not null", "")


def _add_columns(con: duckdb.DuckDBPyConnection, table: Table, columns: tuple[Column, ...]) -> None:
    for column in columns:
        con.execute(
            f"alter table {table.name} add column if not exists {column.name} "
            f"{_droppable_constraints(column.type)}"
        )


def _paired_evaluation(con: duckdb.DuckDBPyConnection) -> None:
    """Per-user results and paired comparisons: the ``user_metrics`` and ``comparisons``
    tables, the evaluation settings of every metrics row and run, and the paired
    difference behind each promotion. Touches nothing else (other migrations may run
    before or after it)."""
    con.execute(USER_METRICS.create_sql())
    con.execute(COMPARISONS.create_sql())
    _add_columns(con, METRICS, EVALUATION_COLUMNS)
    _add_columns(con, MODEL_RUNS, EVALUATION_COLUMNS)
    _add_columns(con, PROMOTIONS, PROMOTION_PAIRED)


def _statuses_and_relative_paths(con: duckdb.DuckDBPyConnection) -> None:
    """Version 3 changes no shape: new status values ('interrupted', 'rolled_back',
    'rollback') and relative model paths are described by the refreshed comments."""


def _alerts(con: duckdb.DuckDBPyConnection) -> None:
    """The ``alerts`` table (failure and overdue-retrain alerts of the flow runs)."""
    con.execute(ALERTS.create_sql())


def _timings(con: duckdb.DuckDBPyConnection) -> None:
    """The ``timings`` table (seconds and peak memory per stage of builds and runs)."""
    con.execute(TIMINGS.create_sql())


def _early_stopping(con: duckdb.DuckDBPyConnection) -> None:
    """Which step each run kept and why its training ended: ``model_runs.best_step``,
    ``stopped_step``, ``stop_reason`` (null in runs recorded before)."""
    _add_columns(con, MODEL_RUNS, EARLY_STOPPING)


def _study_results(con: duckdb.DuckDBPyConnection) -> None:
    """The ``study_results`` table (jamrec study); the ``model_runs.purpose`` comment
    gains 'study' (refreshed with every comment after the migration)."""
    con.execute(STUDY_RESULTS.create_sql())


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "history tables of jamrec 0.1, with every column added since", _baseline),
    Migration(
        2,
        "per-user results (user_metrics), paired comparisons (comparisons), evaluation "
        "settings on metrics and model_runs, paired differences on promotions",
        _paired_evaluation,
    ),
    Migration(
        3,
        "statuses interrupted, rolled_back, rollback; model paths relative to the warehouse",
        _statuses_and_relative_paths,
    ),
    Migration(4, "alerts: failed or crashed flow runs, overdue weekly retrains", _alerts),
    Migration(5, "timings: wall seconds and peak memory per stage of builds and runs", _timings),
    Migration(
        6,
        "early stopping: model_runs.best_step, stopped_step, stop_reason",
        _early_stopping,
    ),
    Migration(
        7,
        "study_results: the study's experiments (jamrec study); run purpose 'study'",
        _study_results,
    ),
)
CURRENT = max(step.version for step in MIGRATIONS)


def applied_versions(con: duckdb.DuckDBPyConnection) -> set[int]:
    """The migrations this warehouse has had (empty before any, or with no table at all)."""
    found = con.execute(
        "select count(*) from duckdb_tables() where database_name = current_database() "
        "and schema_name = 'main' and table_name = 'schema_migrations'"
    ).fetchall()[0][0]
    if not found:
        return set()
    return {v for (v,) in con.execute("select version from schema_migrations").fetchall()}


def version(con: duckdb.DuckDBPyConnection) -> int:
    """The warehouse's history version: 0 before any migration (or no table at all)."""
    return max(applied_versions(con), default=0)


def is_current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether every migration of :data:`MIGRATIONS` has been applied to ``con``."""
    return {step.version for step in MIGRATIONS} <= applied_versions(con)


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Bring ``con``'s history tables to :data:`CURRENT`; (re)create the views and comments.

    Returns the versions applied (empty when the warehouse was current). Runs inside the
    caller's write (a copy-on-write update or a build's own file), so a failure publishes
    nothing.
    """
    from jamrec.provenance import now

    done = applied_versions(con)
    have = max(done, default=0)
    applied = []
    # Every step not yet recorded, in number order: steps are independent and idempotent,
    # so a number added later below an applied one (parallel work merged) still runs.
    for step in sorted(MIGRATIONS, key=lambda m: m.version):
        if step.version in done:
            continue
        step.apply(con)
        con.execute(SCHEMA_MIGRATIONS.create_sql())
        con.execute(
            "insert into schema_migrations values ($v, $d, $t)",
            {"v": step.version, "d": step.description, "t": now()},
        )
        applied.append(step.version)
    have_views = {
        v
        for (v,) in con.execute(
            "select view_name from duckdb_views() where database_name = current_database() "
            "and not internal"
        ).fetchall()
    }
    if applied or not {v.name for v in VIEWS} <= have_views:
        for view in VIEWS:
            con.execute(f"create or replace view {view.name} as {view.sql}")
        apply_comments(con)
    if applied and have:
        log.info("warehouse history migrated from version %d: applied %s", have, applied)
    return applied


def apply_comments(con: duckdb.DuckDBPyConnection) -> None:
    """``comment on`` every history table, column and view."""
    for table in TABLES.values():
        con.execute(f"comment on table {table.name} is {quote(table.comment)}")
        for column in table.columns:
            con.execute(f"comment on column {table.name}.{column.name} is {quote(column.comment)}")
    for view in VIEWS:
        con.execute(f"comment on view {view.name} is {quote(view.comment)}")
        known = {c.name: c.comment for c in TABLES[view.source].columns} | dict(view.columns)
        for (column,) in con.execute(
            "select column_name from duckdb_columns() where database_name = current_database() "
            "and table_name = $v",
            {"v": view.name},
        ).fetchall():
            if column in known:
                con.execute(f"comment on column {view.name}.{column} is {quote(known[column])}")


def insert_sql(table: str) -> str:
    """``insert into <table> (<every column>) values (?, ...)`` for positional rows."""
    names = TABLES[table].column_names()
    return f"insert into {table} ({', '.join(names)}) values ({', '.join('?' for _ in names)})"


def quote(text: str) -> str:
    """A SQL string literal for jamrec's own constant text (``comment on`` takes no
    parameters). Never used for input or command-line values."""
    return "'" + text.replace("'", "''") + "'"
