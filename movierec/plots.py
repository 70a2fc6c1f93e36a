"""The report's figures. Each function draws on a new figure and returns it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def rating_distribution(ratings: np.ndarray, title: str = "Ratings") -> Figure:
    fig, ax = plt.subplots(figsize=(6, 3))
    values, counts = np.unique(ratings, return_counts=True)
    ax.bar(values, counts, width=0.4)
    ax.set(xlabel="rating", ylabel="count", title=title, xticks=values)
    fig.tight_layout()
    return fig


def learning_curves(histories: dict[str, pd.DataFrame], metric: str = "val_rmse") -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, h in histories.items():
        axes[0].plot(h["epoch"], h["train_loss"], marker=".", label=name)
        if metric in h:
            axes[1].plot(h["epoch"], h[metric], marker=".", label=name)
    axes[0].set(xlabel="epoch", ylabel="training loss", title="Training loss")
    axes[1].set(xlabel="epoch", ylabel=metric, title=f"Validation ({metric})")
    for ax in axes:
        ax.legend()
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
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, curve in curves.items():
        ks = sorted(curve)
        ax.plot(ks, [curve[k] for k in ks], marker="o", label=name)
    ax.set(xlabel="k", ylabel=f"{metric}@k", title=f"{metric}@k on test", xscale="log")
    ax.legend()
    fig.tight_layout()
    return fig


def embedding_map(xy: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 6))
    for lab in pd.unique(labels):
        sel = labels == lab
        ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.6, label=f"{lab} ({sel.sum()})")
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(markerscale=3, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


MAIN_GENRES = ("Animation", "Documentary", "Horror", "Sci-Fi", "Romance", "Comedy", "Action",
               "Drama")


def main_genre(genres: pd.Series, skip: str | None = None) -> np.ndarray:
    """A movie's most distinctive genre among :data:`MAIN_GENRES` (checked in that order;
    ``skip`` is never chosen, e.g. the genre a map is about), else "other": a legible colouring
    for embedding maps."""
    out = np.full(len(genres), "other", dtype=object)
    for g in reversed(MAIN_GENRES):
        if g != skip:
            out[genres.str.contains(g, regex=False).to_numpy()] = g
    return out


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project rows of ``x`` on their first two principal components."""
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def frontier(sweep: pd.DataFrame, chosen: float, references: dict[str, tuple[str, float]],
             endpoint: tuple[str, float, float] | None = None) -> Figure:
    """Val RMSE against val NDCG@10 as the retrieval-loss weight varies (one point per weight,
    the chosen one ringed); ``references``: label -> ("rmse" | "ndcg", val value) drawn as
    lines (the best baselines); ``endpoint``: (label, val RMSE, val NDCG@10) of a rating-only
    model."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(sweep["val_rmse"], sweep["val_ndcg@10"], "o-", label="main model, by weight")
    for _, row in sweep.iterrows():
        ax.annotate(f"w={row.rank_weight:g}", (row.val_rmse, row["val_ndcg@10"]),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)
    pick = sweep[sweep.rank_weight == chosen].iloc[0]
    ax.plot(pick.val_rmse, pick["val_ndcg@10"], "o", ms=14, mfc="none", mec="red",
            label=f"chosen (w={chosen:g})")
    if endpoint is not None:
        ax.plot(endpoint[1], endpoint[2], "s", color="grey", label=endpoint[0])
    for (label, (axis, value)), style in zip(references.items(), ("--", ":", "-."),
                                             strict=False):
        line = ax.axvline if axis == "rmse" else ax.axhline
        line(value, ls=style, color="black", lw=1, label=label)
    ax.set(xlabel="val RMSE (lower is better)", ylabel="val NDCG@10 (higher is better)",
           title="One embedding space, two jobs: the trade-off on val")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
