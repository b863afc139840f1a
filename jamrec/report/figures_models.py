"""Figures of the model section as PNG bytes (see :mod:`jamrec.report.figures`)."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.ticker import MaxNLocator

from jamrec.report.figures import STYLE, model_colors, new_figure, png


def at_k_figure(series: dict[str, list[tuple[int, float, float, float]]], metric: str) -> bytes:
    """``metric`` against K, one line per model, with its 95% interval as error bars.

    ``series``: model -> [(k, value, ci_low, ci_high)], in the order models are listed.
    """
    colors = model_colors(list(series))
    with matplotlib.rc_context(STYLE):
        fig = new_figure(7, 3.6)
        ax = fig.add_subplot()
        for offset, (model, points) in enumerate(series.items()):
            k = np.array([p[0] for p in points], dtype=float) * (
                1 + 0.012 * (offset - len(series) / 2)
            )
            v = np.array([p[1] for p in points])
            err = np.array([[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]])
            ax.errorbar(
                k,
                v,
                yerr=np.clip(err, 0, None),
                marker="o",
                capsize=3,
                label=model,
                color=colors[model],
            )
        ks = sorted({p[0] for points in series.values() for p in points})
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("K")
        ax.set_ylabel(f"{metric}@K")
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        return png(fig)


def curves_figure(
    curves: dict[str, list[tuple[int, float | None, float | None]]],
    references: dict[str, float],
    losses: dict[str, str] | None = None,
) -> bytes:
    """One row per model: training loss and validation NDCG@10 against the step.

    ``references``: models without steps (their single val NDCG@10), drawn as dashed
    lines in every NDCG panel; ``losses``: what each model's loss is (its panel's y label;
    the losses differ, so each has its own axis).
    """
    losses = losses or {}
    colors = model_colors([*curves, *references])
    with matplotlib.rc_context(STYLE):
        fig = new_figure(9, 2.3 * len(curves) + 0.3)
        for row, (model, points) in enumerate(curves.items()):
            steps = [p[0] for p in points]
            loss = losses.get(model, "training loss")
            for col, (index, label, ylabel) in enumerate(
                ((1, "training loss", _wrap(loss)), (2, "val NDCG@10", "val NDCG@10 (probe)"))
            ):
                ax = fig.add_subplot(len(curves), 2, 2 * row + col + 1)
                column = [p[index] for p in points]
                values = [np.nan if v is None else v for v in column]
                ax.plot(steps, values, marker="o", markersize=3, color=colors[model], label=model)
                if index == 2:
                    for ref, value in references.items():
                        ax.axhline(value, linestyle="--", linewidth=1, color=colors[ref], label=ref)
                    ax.legend(fontsize=7, frameon=False, loc="best")
                ax.set_title(f"{model}: {label}")
                ax.set_ylabel(ylabel, fontsize=8)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
                ax.set_xlabel("step (epoch / iteration)")
        return png(fig)


def _wrap(text: str, width: int = 28) -> str:
    """``text`` on lines of at most about ``width`` characters (an axis label)."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + len(word) < width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def champion_figure(history: list[dict]) -> bytes:
    """Each evaluated run's val NDCG@10 (full_sample) in run order, per model; a star
    marks the current champion."""
    models = sorted({h["model"] for h in history})
    colors = model_colors(models)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(8, 3.6)
        ax = fig.add_subplot()
        for model in models:
            runs = [h for h in history if h["model"] == model and h["value"] is not None]
            x = np.arange(1, len(runs) + 1)
            ax.plot(
                x,
                [r["value"] for r in runs],
                marker="o",
                markersize=4,
                color=colors[model],
                label=model,
            )
            for xi, r in zip(x, runs):
                if r["is_champion"]:
                    ax.plot(
                        xi,
                        r["value"],
                        marker="*",
                        markersize=14,
                        color=colors[model],
                        markeredgecolor="black",
                    )
        longest = max((sum(h["model"] == m for h in history) for m in models), default=1)
        ax.set_xlim(0.5, longest + 0.5)
        ax.set_xlabel("run of the model (oldest = 1)")
        ax.set_ylabel("val NDCG@10 (full_sample)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        return png(fig)
