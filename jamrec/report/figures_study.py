"""Figures of "The study, re-run" as PNG bytes (see :mod:`jamrec.report.figures`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from jamrec.report.figures import COLORS, STYLE, model_colors, new_figure, png
from jamrec.report.figures_beyond import Point, interval_errors

Series = Sequence[tuple[int, float]]  # (step, value), by step


def _vbars(ax: Axes, names: list[str], points: list[Point], colors: list) -> None:
    """Vertical bars with their 95% intervals, one per name, in the order given."""
    x = np.arange(len(names))
    ax.bar(x, [p[0] for p in points], yerr=interval_errors(points), color=colors, capsize=3)
    ax.set_xticks(
        x, names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center"
    )


def headline_figure(
    points: Mapping[str, Point],
    best: str | None,
    below_best: set[str],
    vs_popularity: Mapping[str, str],
    metric: str,
) -> bytes:
    """Test ``metric`` per model (best first, as given) with 95% intervals; above each bar,
    ``*`` when the model is significantly below ``best`` and ``↑pop`` / ``↓pop`` when it is
    significantly above / below popularity (paired comparisons, Holm-adjusted)."""
    models = list(points)
    colors = model_colors(models)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(8, 3.8)
        ax = fig.add_subplot()
        values = [points[m] for m in models]
        _vbars(ax, models, values, [colors[m] for m in models])
        top = max([1e-3] + [p[0] if p[2] is None else p[2] for p in values])
        for i, (m, p) in enumerate(zip(models, values)):
            marks = []
            if m == best:
                marks.append("best")
            elif m in below_best:
                marks.append("*")
            if m in vs_popularity:
                marks.append(vs_popularity[m])
            if marks:
                y = p[0] if p[2] is None else p[2]
                ax.annotate(
                    " ".join(marks),
                    (i, y),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    fontweight="bold",
                )
        ax.set_ylim(0, top * 1.2)
        ax.set_ylabel(metric)
        ax.set_xlabel("model")
        return png(fig)


def variant_bars_figure(
    panels: Mapping[tuple[str, str], Mapping[str, Point]], variants: list[str]
) -> bytes:
    """One panel per (title, y label): a bar per variant with its 95% interval."""
    with matplotlib.rc_context(STYLE):
        fig = new_figure(min(3.0 * len(panels) + 1.0, 10.0), 3.4)
        for i, ((title, ylabel), values) in enumerate(panels.items()):
            ax = fig.add_subplot(1, len(panels), i + 1)
            shown = [v for v in variants if v in values]
            colors = [COLORS[variants.index(v) % len(COLORS)] for v in shown]
            _vbars(ax, shown, [values[v] for v in shown], colors)
            ax.tick_params(axis="x", labelsize=7)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            tops = [p[0] if p[2] is None else p[2] for p in values.values()]
            ax.set_ylim(0, max([1e-3, *tops]) * 1.15)
        return png(fig)


def grid_curves_figure(
    ndcg: Mapping[str, Series], loss: Mapping[str, Series], probe_users: int | None, setting: str
) -> bytes:
    """The study's figures: validation NDCG@10 on the probe (left) and the batch's
    training loss, BCE (right), after every optimiser step; one line per value of
    ``setting``."""
    variants = list(ndcg)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(9, 3.3)
        probe = f" (probe of {probe_users:,} val users)" if probe_users else " (val probe)"
        for col, (series, ylabel) in enumerate(
            ((ndcg, "val NDCG@10" + probe), (loss, "batch training loss (BCE)"))
        ):
            ax = fig.add_subplot(1, 2, col + 1)
            for i, v in enumerate(variants):
                _curve(ax, series.get(v, []), i, v)
            ax.set_xlabel("optimiser step")
            ax.set_ylabel(ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        fig.axes[0].legend(fontsize=7, frameon=False, loc="best", title=setting)
        return png(fig)


def _curve(ax: Axes, points: Series, i: int, label: str) -> None:
    """One curve over steps: (step, value) points, the i-th colour, small markers."""
    ax.plot(
        [p[0] for p in points],
        [p[1] for p in points],
        marker="o",
        markersize=2.5,
        color=COLORS[i % len(COLORS)],
        label=label,
    )


def als_curves_figure(
    metrics: Mapping[str, Series], loss: Series, probe_users: int | None
) -> bytes:
    """ALS iteration by iteration: HR@K (left), NDCG@K and MRR (middle) on the validation
    probe, and implicit's training loss (right; not a BCE: its own axis)."""
    with matplotlib.rc_context(STYLE):
        fig = new_figure(10, 3.3)
        probe = f" (probe, {probe_users:,} val users)" if probe_users else " (val probe)"
        groups = (
            ([m for m in metrics if m.startswith("HR")], "val HR@K" + probe),
            ([m for m in metrics if not m.startswith("HR")], "val NDCG@K, MRR" + probe),
        )
        for col, (names, ylabel) in enumerate(groups):
            ax = fig.add_subplot(1, 3, col + 1)
            for i, name in enumerate(names):
                _curve(ax, metrics[name], i, name)
            ax.set_ylabel(ylabel)
            ax.set_xlabel("ALS iteration")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            if names:
                ax.legend(fontsize=7, frameon=False, loc="best")
        ax = fig.add_subplot(1, 3, 3)
        ax.plot([p[0] for p in loss], [p[1] for p in loss], marker="o", markersize=2.5, color="k")
        ax.set_ylabel("ALS training loss (implicit: weighted\nsquared error + L2)")
        ax.set_xlabel("ALS iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        return png(fig)
