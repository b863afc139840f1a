"""Pieces the report's sections share: protocols in words, a run's settings."""

from __future__ import annotations

from jamrec.report import html as h
from jamrec.report.models import settings_text

PROTOCOLS = {
    "full": "every candidate track ranked, for every evaluated user",
    "full_sample": "the same on a seeded sample of users, the same for every model",
    "sampled_100": "each held-out track ranked among 100 sampled tracks (random HR@10 ~ 0.099)",
    "temporal": "trained before the time cut, every candidate ranked for every user active "
    "before it, against what they jammed after it",
    "temporal_sample": "the temporal protocol on the seeded user sample",
    "cold_start": "withheld tracks ranked among the withheld tracks only",
    "cold_start_catalogue": "withheld tracks ranked among the whole catalogue",
    "beyond": "what the top-10 lists look like: coverage, novelty, diversity, popularity",
    "fold_in": "listeners folded in from a few tracks without retraining, against their "
    "trained vectors",
    "val_probe": "a fixed seeded sample of validation users, every candidate ranked after each "
    "training step",
}


def protocol_words(protocol: str) -> str:
    """What a protocol measures, in words (the protocol's name when it is unknown)."""
    return PROTOCOLS.get(protocol, f"protocol {protocol}")


def settings_cell(config: str | dict | None) -> str:
    """A run's settings (``model_runs.config``) as a compact HTML cell."""
    text = settings_text(config)
    return f"<small>{h.esc(text)}</small>" if text else "–"


def settings_table(runs: list[dict]) -> str:
    """Model, run and settings of each run (``model_runs.config``)."""
    body = [[h.esc(r["model"]), h.esc(r["run_id"]), settings_cell(r.get("config"))] for r in runs]
    return h.table(["model", "run", "settings"], body, raw=True)
