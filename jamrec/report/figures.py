"""Figures of the report as PNG bytes, drawn from already aggregated data.

Figures are :class:`matplotlib.figure.Figure` objects on an explicit Agg canvas, never
pyplot: nothing switches the process-wide backend, no GUI is needed, and no figure stays
registered anywhere (each is cleared after it is saved). PNGs carry no timestamp or
software tag, so the same warehouse gives byte-identical images.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from jamrec.report.data import Histogram

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

STYLE: dict[RcKeyType, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "jamrec",
}
DPI = 100
# tab10 is a ListedColormap, its colors (r, g, b) tuples; the registry types it as any Colormap
COLORS: tuple[tuple[float, float, float], ...] = matplotlib.colormaps["tab10"].colors  # type: ignore[attr-defined]


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches on an Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes (no metadata); the figure is cleared afterwards."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    fig.clear()
    return buffer.getvalue()


KNOWN_MODELS = (
    *("als", "mbcf", "hybrid", "oracle", "popularity", "random"),
    *("hybrid_study", "two_tower", "item_knn"),
)


def model_colors(models: list[str]) -> dict[str, tuple]:
    """A colour per model: fixed for jamrec's own models, the same in every figure and
    every report; other names take the remaining colours in sorted order."""
    colors = {m: COLORS[i] for i, m in enumerate(KNOWN_MODELS)}
    spare = [c for c in COLORS if c not in colors.values()]
    for i, m in enumerate(sorted(set(models) - set(colors))):
        colors[m] = spare[i % len(spare)]
    return {m: colors[m] for m in models}


def stages_figure(stages: list[tuple[str, int, str]]) -> bytes:
    """Horizontal bars: rows through each stage, top to bottom."""
    with matplotlib.rc_context(STYLE):
        fig = new_figure(8, 0.35 * len(stages) + 1)
        ax = fig.add_subplot()
        labels = [
            name.strip() if not name.startswith(" ") else "   " + name.strip()
            for name, *_ in stages
        ]
        values = [n for _, n, _ in stages]
        y = np.arange(len(stages))
        ax.barh(
            y, values, color=[COLORS[0] if not s[0].startswith(" ") else COLORS[1] for s in stages]
        )
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        for yi, v in zip(y, values):
            ax.annotate(f"{v:,}", (v, yi), xytext=(3, 0), textcoords="offset points", va="center")
        ax.set_xlabel("rows")
        ax.set_ylabel("stage")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xlim(0, max(values or [1]) * 1.15)
        return png(fig)


def rejects_figure(rejects: list[tuple[str, str, int]]) -> bytes:
    """Horizontal bars: rejected lines per (file, reason)."""
    with matplotlib.rc_context(STYLE):
        fig = new_figure(8, 0.35 * len(rejects) + 1)
        ax = fig.add_subplot()
        y = np.arange(len(rejects))
        ax.barh(y, [n for *_, n in rejects], color=COLORS[3])
        ax.set_yticks(y, [f"{f}: {r}"[:70] for f, r, _ in rejects])
        ax.invert_yaxis()
        counts = [n for *_, n in rejects]
        spread = max(counts) / max(min(counts), 1)
        ax.set_xscale("log" if spread > 50 else "linear")
        ax.set_xlabel("rejected lines" + (" (log scale)" if spread > 50 else ""))
        ax.set_ylabel("file: reason")
        return png(fig)


def _log_bins(freq: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Integer, roughly log-spaced bin edges and the count of each bin."""
    n = np.array([a for a, _ in freq], dtype=float)
    w = np.array([b for _, b in freq], dtype=float)
    edges = np.unique(np.round(np.logspace(0, math.log10(n.max() + 1), 30)))
    if len(edges) < 2:
        edges = np.array([1.0, 2.0])
    counts, _ = np.histogram(n, bins=edges, weights=w)
    return edges, counts


def distributions_figure(
    per_user: list[tuple[int, int]], per_track: list[tuple[int, int]]
) -> bytes:
    """Two log-log histograms: interactions per user, interactions per track."""
    with matplotlib.rc_context(STYLE):
        fig = new_figure(9, 3.2)
        for i, (freq, what) in enumerate(((per_user, "users"), (per_track, "tracks"))):
            ax = fig.add_subplot(1, 2, i + 1)
            if freq:
                edges, counts = _log_bins(freq)
                ax.bar(
                    edges[:-1],
                    counts,
                    width=np.diff(edges),
                    align="edge",
                    color=COLORS[i],
                    edgecolor="white",
                    linewidth=0.5,
                )
                ax.set_xscale("log")
                ax.set_yscale("log")
            ax.set_xlabel(f"interactions per {what[:-1]} (log scale)")
            ax.set_ylabel(f"{what} (log scale)")
            ax.set_title(f"interactions per {what[:-1]}")
        return png(fig)


def features_figure(hists: list[Histogram]) -> bytes:
    """Small multiples: each feature's distribution over the catalogue and over the
    tracks with interactions, both as shares of their tracks."""
    cols = 4
    nrows = math.ceil(len(hists) / cols)
    with matplotlib.rc_context({**STYLE, "font.size": 8}):
        fig = new_figure(10, 2.0 * nrows + 0.4)
        for i, h in enumerate(hists):
            ax = fig.add_subplot(nrows, cols, i + 1)
            edges = np.array(h.edges)
            for counts, label, color, kind in (
                (h.catalogue, "catalogue", COLORS[7], "bar"),
                (h.played, "tracks with interactions", COLORS[0], "step"),
            ):
                c = np.array(counts, dtype=float)
                share = c / c.sum() if c.sum() else c
                if kind == "bar":
                    ax.stairs(share, edges, fill=True, color=color, alpha=0.6, label=label)
                else:
                    ax.stairs(share, edges, color=color, linewidth=1.4, label=label)
            ax.set_title(h.label)
            ax.tick_params(labelsize=7)
            if i % cols == 0:
                ax.set_ylabel("share of tracks")
            if edges[0] % 1 == 0.5 and np.allclose(np.diff(edges), 1.0):  # integer-valued
                values = np.arange(edges[0] + 0.5, edges[-1])
                ax.set_xticks(values[:: 1 if len(values) <= 8 else 2])
        handles, labels = fig.axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncols=2, frameon=False)
        return png(fig)


def correlation_figure(names: list[str], matrix: list[list]) -> bytes:
    """A heatmap of pairwise correlations, with the value in each cell."""
    m = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        fig = new_figure(7.5, 6.2)
        ax = fig.add_subplot()
        image = ax.imshow(m, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("column")
        ax.set_ylabel("column")
        for i in range(len(names)):
            for j in range(len(names)):
                text = "" if np.isnan(m[i, j]) else f"{m[i, j]:.2f}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if abs(np.nan_to_num(m[i, j])) < 0.6 else "white",
                )
        fig.colorbar(image, ax=ax, shrink=0.8, label="Pearson correlation")
        return png(fig)


def months_figure(months: list[tuple[str, int]]) -> bytes:
    """Jams posted per month."""
    with matplotlib.rc_context(STYLE):
        fig = new_figure(9, 2.8)
        ax = fig.add_subplot()
        x = np.arange(len(months))
        ax.bar(x, [n for _, n in months], width=1.0, color=COLORS[0])
        step = max(1, len(months) // 12)
        ax.set_xticks(x[::step], [m for m, _ in months][::step], rotation=45, ha="right")
        ax.set_ylabel("jams per month")
        return png(fig)
