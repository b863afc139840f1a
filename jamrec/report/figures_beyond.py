"""Figures of the "Beyond the study" section as PNG bytes (see :mod:`jamrec.report.figures`)."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.axes import Axes

from jamrec.report.figures import COLORS, STYLE, model_colors, new_figure, png

# (value, ci_low, ci_high); the interval ends may be None.
Point = tuple[float, float | None, float | None]
# Shorter setting names for the sweep figure's configuration labels.
SHORT = {"regularization": "reg", "negatives_per_positive": "neg", "batch_size": "batch"}
SHORT |= {"iterations": "iter", "learning_rate": "lr", "epochs": "ep"}


def interval_errors(points: list[Point]) -> np.ndarray:
    """Asymmetric error bars (2, n) from (value, low, high); no interval: zero length."""
    low = [v - (lo if lo is not None else v) for v, lo, _ in points]
    high = [(hi if hi is not None else v) - v for v, _, hi in points]
    return np.clip(np.array([low, high], dtype=float), 0, None)


def _bars(ax: Axes, models: list[str], points: list[Point], colors: dict, hatch: str = "") -> None:
    """Horizontal bars, first model on top, with 95% intervals as error bars."""
    y = np.arange(len(models))
    ax.barh(
        y,
        [p[0] for p in points],
        xerr=interval_errors(points),
        color=[colors[m] for m in models],
        hatch=hatch,
        capsize=3,
        error_kw={"elinewidth": 1},
    )
    ax.set_yticks(y, models)
    ax.set_ylim(len(models) - 0.5, -0.5)


def cold_start_figure(
    panels: dict[tuple[str, str], dict[str, Point]], models: list[str], chance: str | None
) -> bytes:
    """A grid of panels, rows: metrics, columns: protocols; bars per model with intervals.

    ``panels``: (protocol, metric label) -> model -> point; ``chance``: the model whose
    value is drawn as a dashed line in every panel (random: chance level), if any.
    """
    protocols = list(dict.fromkeys(p for p, _ in panels))
    metrics = list(dict.fromkeys(m for _, m in panels))
    colors = model_colors(models)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(9, 0.32 * len(models) * len(metrics) + 1.2 * len(metrics))
        for row, metric in enumerate(metrics):
            for col, protocol in enumerate(protocols):
                ax = fig.add_subplot(len(metrics), len(protocols), row * len(protocols) + col + 1)
                values = panels.get((protocol, metric), {})
                shown = [m for m in models if m in values]
                _bars(ax, shown, [values[m] for m in shown], colors)
                if chance in values:
                    ax.axvline(values[chance][0], color="black", linestyle="--", linewidth=1)
                ax.set_title(f"{protocol}: {metric}")
                ax.set_xlabel(metric)
                if col == 0:
                    ax.set_ylabel("model")
                ax.set_xlim(
                    0, max([1e-3] + [p[0] if p[2] is None else p[2] for p in values.values()]) * 1.1
                )
                if col:
                    ax.tick_params(labelleft=False)
        return png(fig)


def popularity_figure(recommended: dict[str, Point], jammed: dict[str, Point]) -> bytes:
    """Mean popularity percentile of each model's top-10 (bars with intervals) against the
    tracks users jammed (one line and its interval band when every run measured the same
    users, else a black tick per model); a dotted line marks 50, a random list's mean."""
    models = list(recommended)
    colors = model_colors(models)
    with matplotlib.rc_context(STYLE):
        fig = new_figure(8, 0.4 * len(models) + 1.3)
        ax = fig.add_subplot()
        _bars(ax, models, [recommended[m] for m in models], colors)
        jams = {round(v[0], 6) for v in jammed.values()}
        if len(jams) == 1:
            value, low, high = next(iter(jammed.values()))
            if low is not None and high is not None:
                ax.axvspan(low, high, color=COLORS[7], alpha=0.25, linewidth=0)
            ax.axvline(value, color="black", linewidth=1.5, label="what users jam (test)")
        else:
            y = [i for i, m in enumerate(models) if m in jammed]
            x = [jammed[m][0] for m in models if m in jammed]
            ax.plot(x, y, "k|", markersize=18, markeredgewidth=2, label="what users jam (test)")
        ax.axvline(50, color="gray", linestyle=":", linewidth=1, label="random list (50)")
        ax.set_xlim(0, 100)
        ax.set_xlabel("mean popularity percentile of the tracks (train interactions)")
        ax.set_ylabel("model")
        ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2)
        return png(fig)


def config_label(config: dict, varying: set[str]) -> str:
    """``factors=40 reg=0.1``: the settings that vary within the sweep, names shortened."""
    parts = [f"{SHORT.get(k, k)}={_setting(v)}" for k, v in sorted(config.items()) if k in varying]
    text = " ".join(parts) or "defaults"
    return text if len(text) <= 40 else text[:39] + "…"


def _setting(v: object) -> str:
    """A setting's value: floats in their shortest form (``0.001``, ``40``)."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def settings_text(config: dict) -> str:
    """``alpha=40, factors=80``: every setting of ``config``, sorted by name."""
    return ", ".join(f"{k}={_setting(v)}" for k, v in sorted(config.items()))


def sweep_figure(labels: list[str], values: list[float | None], chosen: int | None) -> bytes:
    """Validation NDCG@10 per configuration (best on top, as given); ``chosen``: the index
    of the chosen configuration, drawn in colour and marked."""
    with matplotlib.rc_context(STYLE):
        fig = new_figure(8, 0.28 * len(labels) + 1.1)
        ax = fig.add_subplot()
        y = np.arange(len(labels))
        heights = [np.nan if v is None else v for v in values]
        colors = [COLORS[1] if i == chosen else COLORS[7] for i in range(len(labels))]
        ax.barh(y, heights, color=colors)
        ax.set_yticks(y, labels, fontsize=8 if len(labels) <= 24 else 6)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        if chosen is not None and values[chosen] is not None:
            ax.annotate(
                "chosen",
                (values[chosen], chosen),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontweight="bold",
            )
        finite = [v for v in values if v is not None]
        ax.set_xlim(0, max([*finite, 1e-3]) * 1.15)
        ax.set_xlabel("validation NDCG@10 (full_sample)")
        ax.set_ylabel("configuration")
        return png(fig)
