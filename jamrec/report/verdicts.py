"""The study's four conclusions and its audio question, answered from the warehouse.

Pure functions of rows already read (``comparisons``, ``metrics``, ``study_results``), so
each rule is tested on fixed inputs (``tests/test_report_verdicts.py``). Every answer is
one of :data:`HOLDS`, :data:`FAILS` or :data:`UNMEASURED`, per protocol (or grid), with the
numbers it rests on and, when unmeasured, the command that measures it.

The study's NN is ``hybrid_study`` (its exact set-up); ``hybrid`` is jamrec's own network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

HOLDS = "holds"
FAILS = "does not hold"
UNMEASURED = "not measured"

NN = "hybrid_study"  # the study's NN: jamrec's model with the study's exact set-up
# The study's names for jamrec's models, and the test HR@10 it reported for each.
STUDY_NAMES = {"als": "ALS", "mbcf": "MBCF", NN: "NN"}
STUDY_HR10 = {"als": 0.020, "mbcf": 0.280, NN: 0.230}
PROTOCOLS = ("full_sample", "sampled_100")  # the verdicts' protocols: full ranking, sampled
# The study's best settings (conclusion 3): the variant names of study_results' curves.
CLAIMED = {"batch_size": "batch_size=4096", "learning_rate": "lr=0.001"}
STUDY = "`jamrec study`"


@dataclass(frozen=True)
class Finding:
    """The answer under one protocol (or grid): ``status`` and why, in words."""

    where: str
    status: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    """One conclusion of the study, how it was checked, and a finding per protocol."""

    number: int
    claim: str
    how: str
    findings: tuple[Finding, ...]

    @property
    def summary(self) -> str:
        """``holds under sampled_100; does not hold under full_sample``: each status once,
        with the protocols (or grids) it applies to."""
        by_status: dict[str, list[str]] = {}
        for f in self.findings:
            by_status.setdefault(f.status, []).append(f"`{f.where}`")
        return "; ".join(f"{s} under {' and '.join(w)}" for s, w in by_status.items())


@dataclass(frozen=True)
class Pair:
    """A paired difference ``x - y`` with its 95% interval and whether it is significant."""

    difference: float
    ci_low: float
    ci_high: float
    significant: bool

    def text(self) -> str:
        return f"{self.difference:+.4f} [{self.ci_low:+.4f}, {self.ci_high:+.4f}]"


def pair(comparisons: Iterable[Mapping], x: str, y: str) -> Pair | None:
    """The difference ``x - y`` from ``comparisons`` rows (``model_a`` is the better mean,
    ``difference`` = a - b), whichever way round the pair was stored; None when absent."""
    for r in comparisons:
        if (r["model_a"], r["model_b"]) == (x, y):
            return Pair(r["difference"], r["ci_low"], r["ci_high"], bool(r["significant"]))
        if (r["model_a"], r["model_b"]) == (y, x):
            return Pair(-r["difference"], -r["ci_high"], -r["ci_low"], bool(r["significant"]))
    return None


def _name(model: str) -> str:
    return STUDY_NAMES.get(model, model)


def _pair_words(x: str, y: str, p: Pair) -> str:
    if not p.significant:
        verdict = "not significant"
    elif p.difference > 0:
        verdict = f"significant: {_name(x)} above"
    else:
        verdict = f"significant: {_name(x)} below"
    return f"{_name(x)} − {_name(y)} {p.text()} ({verdict})"


def order_verdict(
    comparisons: Mapping[str, Sequence[Mapping]],
    means: Mapping[str, Mapping[str, float]],
    label: Mapping[str, str],
) -> Verdict:
    """(1) MBCF > NN > ALS: under each of :data:`PROTOCOLS`, both gaps in the claimed
    direction and significant in the paired comparison (Holm-adjusted) on the same users.

    ``comparisons``: protocol -> the latest comparison's pairs; ``means``: protocol ->
    model -> test mean (said when no paired comparison exists); ``label``: protocol -> the
    metric compared (``NDCG@10``)."""
    chain = ("mbcf", NN, "als")
    findings = []
    for protocol in PROTOCOLS:
        rows = comparisons.get(protocol, [])
        first, second = pair(rows, chain[0], chain[1]), pair(rows, chain[1], chain[2])
        shown = means.get(protocol, {})
        if first is None or second is None:
            absent = [m for m in chain if m not in shown]
            if absent:
                why = f"no `{'`, `'.join(absent)}` run: `jamrec train --models {','.join(absent)}`"
            else:
                order = " > ".join(
                    f"{_name(m)} {shown[m]:.4f}" for m in sorted(chain, key=lambda m: -shown[m])
                )
                why = (
                    f"no paired comparison under `{protocol}`: `jamrec compare --protocol "
                    f"{protocol}` (the means alone: {order})"
                )
            findings.append(Finding(protocol, UNMEASURED, why))
            continue
        holds = all(p.significant and p.difference > 0 for p in (first, second))
        reason = (
            f"test {label.get(protocol, 'NDCG@10')}: {_pair_words(chain[0], chain[1], first)}; "
            f"{_pair_words(chain[1], chain[2], second)}"
        )
        findings.append(Finding(protocol, HOLDS if holds else FAILS, reason))
    return Verdict(
        1,
        "MBCF > NN > ALS",
        "Both gaps in the claimed direction and significant in the paired comparison of the "
        "latest runs (Holm-adjusted, the same test users for every model), under full "
        "ranking (`full_sample`) and against 100 sampled tracks (`sampled_100`).",
        tuple(findings),
    )


def _diff(rows: Iterable[Mapping], protocol: str, split: str, metric: str) -> Mapping | None:
    return next(
        (r for r in rows if (r["protocol"], r["split"], r["metric"]) == (protocol, split, metric)),
        None,
    )


def _interval_words(row: Mapping) -> str:
    return f"{row['value']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"


def covers_zero(row: Mapping) -> bool:
    """Whether a difference's 95% interval holds 0 (no measurable difference)."""
    return bool(row["ci_low"] <= 0 <= row["ci_high"])


def negatives_verdict(rows: Sequence[Mapping]) -> Verdict:
    """(2) Negative samples help MBCF: the paired test NDCG@10 difference positives-only
    minus published negatives (``study_results``, experiment ``negatives``) is below 0
    with its 95% interval; it does not hold when the interval covers 0 or lies above."""
    found = [r for r in rows if r["experiment"] == "negatives"]
    findings = []
    for protocol in PROTOCOLS:
        d = _diff(found, protocol, "test", "ndcg_diff")
        if d is None:
            why = f"no `negatives` experiment on this build: {STUDY}"
            findings.append(Finding(protocol, UNMEASURED, why))
            continue
        p = _diff(found, protocol, "test", "ndcg_diff_p")
        p_text = f", p = {p['value']:.4f}" if p is not None else ""
        what = f"test NDCG@10, positives only − with negatives: {_interval_words(d)}{p_text}"
        if d["ci_high"] < 0:
            findings.append(Finding(protocol, HOLDS, f"{what} (the negatives help)"))
        elif d["ci_low"] > 0:
            findings.append(Finding(protocol, FAILS, f"{what} (positives only do better)"))
        else:
            findings.append(Finding(protocol, FAILS, f"{what} (the interval covers 0)"))
    return Verdict(
        2,
        "negative samples help MBCF",
        "MBCF trained with the published negatives and with positives only (the same seed "
        "and epochs), compared user by user on test NDCG@10 (`jamrec study`, experiment "
        "`negatives`): holds when the paired difference and its 95% interval are below 0.",
        tuple(findings),
    )


Curve = Sequence[tuple[int, float]]  # (step, val NDCG@10 on the probe), by step


def grid_verdict(curves: Mapping[str, Mapping[str, Curve]]) -> Verdict:
    """(3) Batch size 4096 and learning rate 1e-3 are best: under each grid, the claimed
    value ends (last step of the common budget) with the highest validation NDCG@10 on
    the probe; the best value over the steps is named too.

    ``curves``: experiment (``batch_size``, ``learning_rate``) -> variant -> points."""
    findings = []
    for experiment, claimed in CLAIMED.items():
        variants = {v: list(c) for v, c in curves.get(experiment, {}).items() if c}
        if claimed not in variants:
            why = (
                f"no `{experiment}` curves on this build: {STUDY}"
                if not variants
                else f"no `{claimed}` curve among {', '.join(sorted(variants))}"
            )
            findings.append(Finding(experiment, UNMEASURED, why))
            continue
        final = {v: c[-1][1] for v, c in variants.items()}
        peak = {v: max(c, key=lambda p: p[1]) for v, c in variants.items()}
        ranked = sorted(variants, key=lambda v: (-final[v], v))
        steps = max(c[-1][0] for c in variants.values())
        values = ", ".join(f"{v} {final[v]:.4f}" for v in ranked)
        top = max(peak, key=lambda v: (peak[v][1], v == claimed))
        reason = (
            f"val NDCG@10 after {steps} steps: {values}; the highest at any step: {top} "
            f"{peak[top][1]:.4f} (step {peak[top][0]})"
        )
        status = HOLDS if final[claimed] >= final[ranked[0]] else FAILS
        findings.append(Finding(experiment, status, reason))
    return Verdict(
        3,
        "batch size 4096 and learning rate 1e-3 are best",
        "MBCF over the study's grids for the same number of optimiser steps (`jamrec study`, "
        "experiments `batch_size` and `learning_rate`): holds when the claimed value ends "
        "with the highest validation NDCG@10 on the fixed probe. Curve points have no "
        "interval (one probe mean each), and at equal steps a larger batch has seen more "
        "pairs.",
        tuple(findings),
    )


def retention(values: Mapping[str, float]) -> float | None:
    """Test NDCG@10 under ``full_sample`` over that under ``sampled_100``: how much of a
    model's accuracy against sampled tracks is left when it ranks the catalogue."""
    full, sampled = values.get("full_sample"), values.get("sampled_100")
    if full is None or not sampled:
        return None
    return full / sampled


def generalisation_verdict(means: Mapping[str, Mapping[str, float]]) -> Verdict:
    """(4) The NN generalises poorly, read as: its accuracy against 100 sampled tracks (the
    study's kind of measure) carries over to ranking the whole catalogue worse than the
    other study models'. Holds when the NN's retention (:func:`retention`) is below both
    MBCF's and ALS's.

    ``means``: model -> protocol -> test NDCG@10."""
    kept = {m: retention(means.get(m, {})) for m in ("mbcf", NN, "als")}
    others = {m: r for m, r in kept.items() if m != NN and r is not None}
    where = "sampled_100 → full_sample"
    measured = {m: r for m, r in kept.items() if r is not None}
    nn = kept[NN]
    if nn is None or not others:
        missing = [m for m, r in kept.items() if r is None]
        why = (
            f"test NDCG@10 under both protocols missing for {', '.join(missing)}: "
            f"`jamrec train --models {','.join(missing)}`"
        )
        finding = Finding(where, UNMEASURED, why)
    else:
        values = ", ".join(
            f"{_name(m)} {r:.3f} ({means[m]['full_sample']:.4f} / {means[m]['sampled_100']:.4f})"
            for m, r in sorted(measured.items(), key=lambda kv: (kv[1], kv[0]))
        )
        lowest = all(nn < r for r in others.values())
        tail = "the NN keeps the least" if lowest else "the NN does not keep the least"
        finding = Finding(where, HOLDS if lowest else FAILS, f"share kept: {values}; {tail}")
    return Verdict(
        4,
        "the NN generalises poorly",
        "Read as: what the NN shows against 100 sampled tracks (how the study measured it) "
        "does not carry over to ranking the whole catalogue. Each study model's share kept "
        "= test NDCG@10 under `full_sample` / under `sampled_100`; holds when the NN keeps "
        "less than both MBCF and ALS (point estimates: no interval on a ratio).",
        (finding,),
    )


AUDIO_ORDER = (NN, "hybrid", "two_tower")


def audio_sentence(rows: Sequence[Mapping], audio_share: float | None) -> str | None:
    """One plain sentence from the ``audio_ablation`` rows: per model, the paired test
    NDCG@10 difference audio minus no audio on warm tracks (``full_sample``) and on cold
    tracks (``cold_start``), with 95% intervals; None when the experiment did not run."""
    found = [r for r in rows if r["experiment"] == "audio_ablation" and r["metric"] == "ndcg_diff"]
    if not found:
        return None
    names = sorted(
        {r["model"] for r in found},
        key=lambda m: (AUDIO_ORDER.index(m) if m in AUDIO_ORDER else len(AUDIO_ORDER), m),
    )
    parts = []
    for model in names:
        mine = [r for r in found if r["model"] == model]
        warm = _diff(mine, "full_sample", "test", "ndcg_diff")
        cold = _diff(mine, "cold_start", "cold", "ndcg_diff")
        words = [f"`{model}`"]
        if warm is not None:
            effect = (
                "the features give nothing on warm tracks here"
                if covers_zero(warm)
                else "the features help on warm tracks"
                if warm["ci_low"] > 0
                else "the features hurt on warm tracks"
            )
            words.append(f"warm {_interval_words(warm)}, {effect}")
        if cold is not None:
            effect = (
                "nothing measurable on cold tracks"
                if covers_zero(cold)
                else "they help on cold tracks"
                if cold["ci_low"] > 0
                else "they hurt on cold tracks"
            )
            words.append(f"cold {_interval_words(cold)}, {effect}")
        else:
            words.append("not measured on cold tracks (without audio it sees ids only)")
        parts.append(": ".join([words[0], "; ".join(words[1:])]))
    share = (
        f"with a planted audio share of {audio_share:g}"
        if audio_share is not None
        else "on real data (no planted audio share)"
    )
    return (
        f"What the audio features add, {share} (test NDCG@10, with audio minus without, "
        f"paired, 95% interval): {' — '.join(parts)}."
    )
