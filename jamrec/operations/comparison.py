"""The comparison table: the latest evaluated run of each model on a build, with the
headline metric of every protocol (what ``jamrec train`` prints and the flows attach).
Whether two models really differ is :mod:`jamrec.operations.compare`'s question."""

from __future__ import annotations

from pathlib import Path

import duckdb

from jamrec.warehouse.store import warehouse_at

COMPARISON_COLUMNS = (
    ("full", "hr", 10, "full HR@10"),
    ("full", "ndcg", 10, "full NDCG@10"),
    ("full", "mrr", None, "full MRR"),
    ("full_sample", "ndcg", 10, "sample NDCG@10"),
    ("sampled_100", "hr", 10, "sampled-100 HR@10"),
    ("sampled_100", "ndcg", 10, "sampled-100 NDCG@10"),
)
TEMPORAL_COLUMNS = (
    ("temporal", "hr", 10, "temporal HR@10"),
    ("temporal", "ndcg", 10, "temporal NDCG@10"),
    ("temporal", "mrr", None, "temporal MRR"),
    ("temporal_sample", "ndcg", 10, "sample NDCG@10"),
)
PURPOSES = ("standard", "temporal")


def comparison(
    con: duckdb.DuckDBPyConnection,
    split: str = "test",
    build_id: str | None = None,
    purpose: str = "standard",
) -> list[dict]:
    """The latest evaluated run of each model on a build (default: the published one),
    with the headline metrics of every protocol: one dict per model, best first.
    ``purpose``: ``standard`` (leave-k-out) or ``temporal`` runs."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}; known: {PURPOSES}")
    rows = con.execute(
        """
        with latest as (
            select * from model_runs where status = 'evaluated' and purpose = $purpose
            qualify row_number() over (partition by build_id, model
                order by started_at desc, run_id desc) = 1
        )
        select r.model, r.run_id, m.protocol, m.metric, m.k, m.value, m.n_users
        from latest r join metrics m using (run_id)
        where r.build_id = coalesce($build, (select build_id from published_build))
            and m.split = $split
        """,
        {"build": build_id, "split": split, "purpose": purpose},
    ).fetchall()
    table: dict[str, dict] = {}
    for model, run_id, protocol, metric, k, value, n_users in rows:
        entry = table.setdefault(model, {"model": model, "run_id": run_id})
        entry[(protocol, metric, k)] = value
        entry[f"n_users_{protocol}"] = n_users
    sample = "temporal_sample" if purpose == "temporal" else "full_sample"
    return sorted(table.values(), key=lambda e: -(e.get((sample, "ndcg", 10)) or 0.0))


def comparison_text(warehouse: Path | None = None, purpose: str = "standard") -> str:
    """The comparison table of the published warehouse, and where it is stored."""
    store = warehouse_at(warehouse)
    con = store.connect_readonly()
    try:
        table = format_comparison(comparison(con, purpose=purpose), purpose=purpose)
    finally:
        con.close()
    return (
        f"{table}\n\nstored in {store.path}: tables model_runs, metrics (with 95% bootstrap "
        "intervals), user_metrics (per user), comparisons (paired differences), "
        'training_curves; e.g. jamrec sql "select * from metrics where k = 10"'
    )


def format_comparison(entries: list[dict], split: str = "test", purpose: str = "standard") -> str:
    """A plain-text table of :func:`comparison` (models x protocols)."""
    if not entries:
        return "no evaluated runs on this build yet (run `jamrec train` and `jamrec evaluate`)"
    if purpose == "temporal":
        return _format_temporal(entries, split)
    header = f"{'model':<12}" + "".join(f"{label:>21}" for *_, label in COMPARISON_COLUMNS)
    lines = [f"{split} split: mean over evaluated users", header, "-" * len(header)]
    for entry in entries:
        cells = []
        for protocol, metric, k, _ in COMPARISON_COLUMNS:
            value = entry.get((protocol, metric, k))
            cells.append(f"{value:>21.4f}" if value is not None else f"{'-':>21}")
        lines.append(f"{entry['model']:<12}" + "".join(cells))
    users = {
        p: next((e[f"n_users_{p}"] for e in entries if f"n_users_{p}" in e), None)
        for p in ("full", "full_sample", "sampled_100")
    }
    lines.append(
        "full: every candidate track for every evaluated user "
        f"({users['full'] or '-'} users; the hybrid MLP is not full-ranked for all); "
        f"sample: the same on a seeded sample of {users['full_sample'] or '-'} users, every "
        "model; sampled-100: each held-out track among 100 sampled (random HR@10 ~ 0.099)"
    )
    return "\n".join(lines)


def _format_temporal(entries: list[dict], split: str) -> str:
    header = f"{'model':<12}" + "".join(f"{label:>21}" for *_, label in TEMPORAL_COLUMNS)
    lines = [
        f"temporal protocol, {split} split (what users jammed after the time cut): mean over "
        "evaluated users",
        header,
        "-" * len(header),
    ]
    for entry in entries:
        cells = [
            f"{entry[(p, m, k)]:>21.4f}" if entry.get((p, m, k)) is not None else f"{'-':>21}"
            for p, m, k, _ in TEMPORAL_COLUMNS
        ]
        lines.append(f"{entry['model']:<12}" + "".join(cells))
    users = {
        p: next((e[f"n_users_{p}"] for e in entries if f"n_users_{p}" in e), None)
        for p in ("temporal", "temporal_sample")
    }
    lines.append(
        f"temporal: every candidate track for every evaluated user ({users['temporal'] or '-'} "
        f"users); sample: the same on a seeded sample of {users['temporal_sample'] or '-'} "
        "users, every model. Tracks first played after the cut are not candidates."
    )
    return "\n".join(lines)
