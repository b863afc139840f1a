"""The report's champions subsection: which run serves each model, and how it got there."""

from __future__ import annotations

import duckdb

from jamrec.report import figures_models as figures
from jamrec.report import html as h
from jamrec.report import models


def champions_section(con: duckdb.DuckDBPyConnection) -> str:
    """Current champions, every run's selection metric over time, the latest decisions."""
    out = [h.heading(3, "champions", "Champions")]
    found = models.champions(con)
    out.append(
        h.para(
            "A model's champion is the run that serves its recommendations; a new run replaces "
            "it only if its validation NDCG@10 (`full_sample`) is at least as good."
        )
    )
    if found.current:
        body = [
            [
                c["model"],
                c["run_id"],
                c["build_id"],
                c["started"],
                c["promoted_at"],
                c["value"],
                c["note"],
            ]
            for c in found.current
        ]
        headers = ["model", "champion run", "build", "trained", "promoted", "val NDCG@10", "note"]
        out.append(h.table(headers, body, numeric={5}))
    else:
        out.append(h.note("No run has been promoted to champion yet.", "missing"))
    if any(r["value"] is not None for r in found.history):
        caption = (
            "Every evaluated run of each model in the order it was trained (all builds): its "
            "validation NDCG@10 (`full_sample`, the champion criterion); a star marks the "
            "current champion. Runs on different builds were measured on different splits."
        )
        image = figures.champion_figure(found.history)
        out.append(
            h.figure("fig-champions", image, "val NDCG@10 of every run, champions starred", caption)
        )
    if found.decisions:
        body = [
            [
                *(d["decided"], d["model"], d["challenger_run_id"], d["challenger_val_ndcg_at_10"]),
                *(d["champion_run_id"], d["champion_val_ndcg_at_10"], d["promoted"], d["note"]),
            ]
            for d in found.decisions
        ]
        headers = ["decided", "model", "challenger", "its val NDCG@10", "champion"]
        headers += ["its val NDCG@10", "promoted", "note"]
        out.append(h.para("Latest champion/challenger decisions (`promotions`), newest first:"))
        out.append(h.table(headers, body, numeric={3, 5}))
    return "".join(out)
