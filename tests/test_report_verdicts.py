"""The rules behind the report's verdicts on the study's conclusions, on fixed inputs
(:mod:`jamrec.report.verdicts`)."""

from __future__ import annotations

from jamrec.report import verdicts
from jamrec.report.verdicts import FAILS, HOLDS, NN, UNMEASURED


def comparison(a: str, b: str, difference: float, significant: bool) -> dict:
    """A ``comparisons`` row: ``a`` the better mean, the interval around the difference."""
    return {
        "model_a": a,
        "model_b": b,
        "difference": difference,
        "ci_low": difference - 0.01,
        "ci_high": difference + 0.01,
        "significant": significant,
    }


def statuses(verdict: verdicts.Verdict) -> dict[str, str]:
    return {f.where: f.status for f in verdict.findings}


def test_pair_reads_either_direction():
    rows = [{**comparison("als", NN, 0.05, True), "ci_low": 0.04, "ci_high": 0.06}]
    assert verdicts.pair(rows, "als", NN) == verdicts.Pair(0.05, 0.04, 0.06, True)
    assert verdicts.pair(rows, NN, "als") == verdicts.Pair(-0.05, -0.06, -0.04, True)
    assert verdicts.pair(rows, "mbcf", "als") is None


def test_order_holds_only_when_both_gaps_are_significant_and_in_order():
    means = {p: {"mbcf": 0.3, NN: 0.2, "als": 0.1} for p in verdicts.PROTOCOLS}
    holds = [comparison("mbcf", NN, 0.1, True), comparison(NN, "als", 0.1, True)]
    flat = [comparison("mbcf", NN, 0.1, False), comparison(NN, "als", 0.1, True)]
    reversed_ = [comparison(NN, "mbcf", 0.1, True), comparison("als", NN, 0.02, True)]
    found = verdicts.order_verdict(
        {"full_sample": holds, "sampled_100": flat}, means, {"sampled_100": "HR@10"}
    )
    assert statuses(found) == {"full_sample": HOLDS, "sampled_100": FAILS}
    assert "not significant" in found.findings[1].reason
    assert "HR@10" in found.findings[1].reason
    assert found.summary == "holds under `full_sample`; does not hold under `sampled_100`"
    found = verdicts.order_verdict({"full_sample": reversed_}, means, {})
    assert statuses(found) == {"full_sample": FAILS, "sampled_100": UNMEASURED}
    assert "significant: MBCF below" in found.findings[0].reason
    assert "jamrec compare --protocol sampled_100" in found.findings[1].reason
    assert "MBCF 0.3000 > NN 0.2000 > ALS 0.1000" in found.findings[1].reason
    # no NN run at all: the command that trains it
    found = verdicts.order_verdict({}, {"full_sample": {"mbcf": 0.3, "als": 0.1}}, {})
    assert statuses(found) == {"full_sample": UNMEASURED, "sampled_100": UNMEASURED}
    assert "jamrec train --models hybrid_study" in found.findings[0].reason


def study_row(experiment: str, protocol: str, split: str, metric: str, value: float, ci=None):
    low, high = ci if ci is not None else (None, None)
    return {
        "experiment": experiment,
        "model": "mbcf",
        "variant": "positives_only - published_negatives",
        "protocol": protocol,
        "split": split,
        "metric": metric,
        "k": 10,
        "value": value,
        "ci_low": low,
        "ci_high": high,
    }


def test_negatives_help_only_when_the_interval_is_below_zero():
    rows = [
        study_row("negatives", "full_sample", "test", "ndcg_diff", -0.02, (-0.03, -0.01)),
        study_row("negatives", "full_sample", "test", "ndcg_diff_p", 0.001),
        study_row("negatives", "sampled_100", "test", "ndcg_diff", -0.01, (-0.03, 0.01)),
        study_row("negatives", "full_sample", "val", "ndcg_diff", 0.05, (0.04, 0.06)),
    ]
    found = verdicts.negatives_verdict(rows)
    assert statuses(found) == {"full_sample": HOLDS, "sampled_100": FAILS}
    assert "p = 0.0010" in found.findings[0].reason
    assert "covers 0" in found.findings[1].reason
    rows[2] = study_row("negatives", "sampled_100", "test", "ndcg_diff", 0.02, (0.01, 0.03))
    assert "positives only do better" in verdicts.negatives_verdict(rows).findings[1].reason
    found = verdicts.negatives_verdict([])
    assert statuses(found) == {"full_sample": UNMEASURED, "sampled_100": UNMEASURED}
    assert "jamrec study" in found.findings[0].reason


def test_grid_holds_when_the_claimed_value_ends_highest():
    curves = {
        "batch_size": {
            "batch_size=1024": [(1, 0.01), (2, 0.05), (3, 0.02)],
            "batch_size=4096": [(1, 0.01), (2, 0.02), (3, 0.03)],
        },
        "learning_rate": {
            "lr=0.001": [(1, 0.01), (2, 0.02)],
            "lr=0.005": [(1, 0.02), (2, 0.04)],
        },
    }
    found = verdicts.grid_verdict(curves)
    assert statuses(found) == {"batch_size": HOLDS, "learning_rate": FAILS}
    assert "batch_size=1024 0.0500 (step 2)" in found.findings[0].reason
    assert "after 2 steps: lr=0.005 0.0400, lr=0.001 0.0200" in found.findings[1].reason
    found = verdicts.grid_verdict({"batch_size": {"batch_size=1024": [(1, 0.1)]}})
    assert statuses(found) == {"batch_size": UNMEASURED, "learning_rate": UNMEASURED}
    assert "no `batch_size=4096` curve" in found.findings[0].reason


def test_generalisation_holds_when_the_nn_keeps_the_least():
    means = {
        "mbcf": {"full_sample": 0.05, "sampled_100": 0.25},  # keeps 0.2
        "als": {"full_sample": 0.1, "sampled_100": 0.4},  # keeps 0.25
        NN: {"full_sample": 0.02, "sampled_100": 0.2},  # keeps 0.1
    }
    found = verdicts.generalisation_verdict(means)
    assert found.findings[0].status == HOLDS
    assert "NN 0.100 (0.0200 / 0.2000), MBCF 0.200" in found.findings[0].reason
    means[NN] = {"full_sample": 0.06, "sampled_100": 0.2}  # keeps 0.3
    assert verdicts.generalisation_verdict(means).findings[0].status == FAILS
    del means[NN]
    found = verdicts.generalisation_verdict(means)
    assert found.findings[0].status == UNMEASURED
    assert "hybrid_study" in found.findings[0].reason


def test_audio_sentence_says_nothing_on_warm_tracks_when_the_interval_covers_zero():
    def row(model: str, protocol: str, split: str, value: float, low: float, high: float):
        return {
            "experiment": "audio_ablation",
            "model": model,
            "variant": "audio - no_audio",
            "protocol": protocol,
            "split": split,
            "metric": "ndcg_diff",
            "value": value,
            "ci_low": low,
            "ci_high": high,
        }

    rows = [
        row("two_tower", "full_sample", "test", 0.02, 0.01, 0.03),
        row("two_tower", "cold_start", "cold", 0.1, 0.06, 0.14),
        row(NN, "full_sample", "test", -0.001, -0.02, 0.02),
    ]
    text = verdicts.audio_sentence(rows, 0.3)
    assert text is not None
    assert "planted audio share of 0.3" in text
    assert text.index(NN) < text.index("two_tower")
    assert "the features give nothing on warm tracks here" in text
    assert "the features help on warm tracks" in text and "they help on cold tracks" in text
    assert "not measured on cold tracks" in text
    assert verdicts.audio_sentence([], 0.3) is None
    assert "no planted audio share" in (verdicts.audio_sentence(rows, None) or "")
