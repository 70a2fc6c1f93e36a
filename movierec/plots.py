"""The report's figures and tables. Each figure function draws on a new figure and returns it:
every model with its own colour and marker, legends beside the data, plain axes."""

from __future__ import annotations

import itertools

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

NOT_APPLICABLE = "–"
COUNTS = ("users", "relevant_pairs", "seeds", "best_epoch", "epochs", "resamples",
          "settings tried")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "d")


def table(frame: pd.DataFrame, digits: int = 4):
    """``frame`` as the report shows it: numbers rounded to ``digits``, counts (a column named
    as one of :data:`COUNTS`, or its last level) as whole numbers, "–" where a figure does not
    apply (NaN)."""
    counts = [c for c in frame.columns
              if (c[-1] if isinstance(c, tuple) else c) in COUNTS]
    return (frame.style.format(precision=digits, na_rep=NOT_APPLICABLE, thousands=",")
            .format(precision=0, na_rep=NOT_APPLICABLE, thousands=",", subset=counts))


def show(items: list[tuple[str, pd.DataFrame]]) -> None:
    """Print each caption and display its table (:func:`table`), in order."""
    from IPython.display import display

    for caption, frame in items:
        print(caption)
        display(table(frame))


def styles(names: list[str]) -> dict[str, dict]:
    """A distinct colour and marker per name (tab20's colours, then the markers cycle)."""
    colours = plt.get_cmap("tab20").colors
    return {n: {"color": colours[i % len(colours)], "marker": m}
            for i, (n, m) in enumerate(zip(names, itertools.cycle(MARKERS), strict=False))}


def _legend_outside(ax) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8,
              frameon=False)


def rating_distribution(ratings: np.ndarray, title: str = "Ratings") -> Figure:
    fig, ax = plt.subplots(figsize=(6, 3))
    values, counts = np.unique(ratings, return_counts=True)
    ax.bar(values, counts, width=0.4)
    ax.set(xlabel="rating", ylabel="count", title=title, xticks=values)
    fig.tight_layout()
    return fig


def learning_curves(histories: dict[str, pd.DataFrame], metric: str = "val_rmse") -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    style = styles(list(histories))
    for name, h in histories.items():
        axes[0].plot(h["epoch"], h["train_loss"], label=name, ms=4, **style[name])
        if metric in h:
            axes[1].plot(h["epoch"], h[metric], label=name, ms=4, **style[name])
    axes[0].set(xlabel="epoch", ylabel="training loss", title="Training loss")
    axes[1].set(xlabel="epoch", ylabel=metric, title=f"Validation ({metric})")
    _legend_outside(axes[1])
    fig.tight_layout()
    return fig


def predicted_vs_true(pred: np.ndarray, truth: np.ndarray, title: str) -> Figure:
    """Distribution of predictions for each true rating (box per half star)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    levels = np.unique(truth)
    ax.boxplot([pred[truth == v] for v in levels], positions=levels, widths=0.3,
               showfliers=False)
    ax.plot([0.5, 5], [0.5, 5], "--", color="grey", lw=1)
    ax.set(xlabel="true rating", ylabel="predicted rating", title=title, xlim=(0.2, 5.3))
    fig.tight_layout()
    return fig


def recall_at_k(curves: dict[str, dict[int, float]], metric: str = "recall") -> Figure:
    """Each model's test metric at every cut-off, the cut-offs evenly spaced and labelled."""
    fig, ax = plt.subplots(figsize=(8, 4))
    style = styles(list(curves))
    ks = sorted({k for curve in curves.values() for k in curve})
    for name, curve in curves.items():
        ax.plot(range(len(ks)), [curve.get(k, np.nan) for k in ks], label=name, **style[name])
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set(xlabel="k (movies recommended)", ylabel=f"{metric}@k", title=f"{metric}@k on test")
    _legend_outside(ax)
    fig.tight_layout()
    return fig


WEIGHT_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


def frontier(points: pd.DataFrame, chosen: dict, references: dict[str, tuple[str, float]],
             endpoint: tuple[str, float, float] | None = None,
             current: tuple[str, float, float] | None = None) -> Figure:
    """Val RMSE against val NDCG@10 of the main model's settings tried on val (``points``: one
    row each, with its ``rank_weight``; coloured by it, the ``chosen`` setting ringed);
    ``references``: label -> ("rmse" | "ndcg", val value) drawn as lines (the best
    baselines); ``endpoint``: (label, val RMSE, val NDCG@10) of a rating-only model;
    ``current``: the same of the chosen setting as trained in this run, where the points come
    from a record made earlier."""
    fig, ax = plt.subplots(figsize=(8, 4))
    dots = ax.scatter(points["val_rmse"], points["val_ndcg@10"], c=points["rank_weight"],
                      cmap="viridis", norm=matplotlib.colors.LogNorm(), s=30,
                      label=f"main model: {len(points)} setting(s) tried")
    bar = fig.colorbar(dots, ax=ax, label="retrieval weight w", pad=0.02)
    lo, hi = points["rank_weight"].min(), points["rank_weight"].max()
    ticks = [v for v in WEIGHT_TICKS if lo <= v <= hi] or [lo, hi]
    bar.set_ticks(ticks, labels=[f"{v:g}" for v in ticks])  # a log bar names 1-2-5 steps
    bar.ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))  # RMSEs differ in the 3rd
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3f"))  # decimal
    if len(points) <= 8:
        for _, row in points.iterrows():
            ax.annotate(f"w={row.rank_weight:g}", (row.val_rmse, row["val_ndcg@10"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
    pick = points[np.logical_and.reduce([points[k] == v for k, v in chosen.items()])].iloc[0]
    ax.plot(pick.val_rmse, pick["val_ndcg@10"], "o", ms=14, mfc="none", mec="red",
            label=f"chosen (w={pick.rank_weight:.3g})")
    if current is not None:
        ax.plot(current[1], current[2], "*", ms=14, color="red", label=current[0])
    if endpoint is not None:
        ax.plot(endpoint[1], endpoint[2], "s", color="grey", label=endpoint[0])
    for (label, (axis, value)), style in zip(references.items(), ("--", ":", "-."),
                                             strict=False):
        line = ax.axvline if axis == "rmse" else ax.axhline
        line(value, ls=style, color="black", lw=1, label=label)
    ax.set(xlabel="val RMSE (lower is better)", ylabel="val NDCG@10 (higher is better)",
           title="One embedding space, two jobs: the trade-off on val")
    ax.legend(loc="upper left", bbox_to_anchor=(1.25, 1.0), borderaxespad=0.0, fontsize=8,
              frameon=False)
    fig.tight_layout()
    return fig


def cold_frontier(mixed: dict, k: int = 20) -> Figure:
    """The mixed task's frontier: Recall@k of relevant new movies against NDCG@10 of relevant
    warm ones as the new movies' bonus grows, on val (where the bonus is chosen, ringed) and
    on test, each point labelled with its bonus and the new movies in an average top k."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for part, style in (("val", "o--"), ("test", "s-")):
        rows = mixed[part]
        x = [r["warm ndcg@10"] for r in rows]
        y = [r[f"new recall@{k}"] for r in rows]
        ax.plot(x, y, style, label=part)
        for r, xi, yi in zip(rows, x, y, strict=True):
            ax.annotate(f"b={r['bonus']:g} ({r['new_in_top']:.1f} new)", (xi, yi),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
        pick = next(r for r in rows if r["bonus"] == mixed["chosen"])
        ax.plot(pick["warm ndcg@10"], pick[f"new recall@{k}"], "o", ms=14, mfc="none",
                mec="red", label=f"bonus chosen on val ({mixed['chosen']:g})" if part == "val"
                else None)
    ax.set(xlabel="NDCG@10 of warm movies (higher is better)",
           ylabel=f"Recall@{k} of new movies (higher is better)",
           title="New movies in the mixed ranking: what each bonus buys and costs")
    _legend_outside(ax)
    fig.tight_layout()
    return fig
