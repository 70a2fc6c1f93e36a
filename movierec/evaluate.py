"""Evaluation: rating baselines (global mean, user+item biases) and top-k ranking metrics.

Ranking protocol (one for every model): history = train + val, relevant = the user's test movies
rated >= 4.0, candidates = every movie not in the user's history, users with >= 1 relevant movie.
Metrics are pure functions of a top-k matrix and the relevant sets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from movierec.csr import Csr

T = TypeVar("T")
LOWER_IS_BETTER = ("rmse", "mae")  # error metrics; every other metric: higher is better
RATING_SCALE = (0.5, 5.0)  # every model's predicted ratings are clipped to it (MovieLens' stars)


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` (e.g. ``val_rmse``, ``ndcg@10``) is better."""
    return metric.removeprefix("val_").removeprefix("test_") in LOWER_IS_BETTER


def best(items: Iterable[T], metric: str, value=lambda item, metric: item[metric]) -> T:
    """The item with the best ``metric`` (the first of equals), read by ``value``."""
    pick = min if lower_is_better(metric) else max
    return pick(items, key=lambda item: value(item, metric))


@dataclass
class GlobalMean:
    """Predicts the mean training rating for everyone."""

    mean: float = 0.0

    def fit(self, users: np.ndarray, movies: np.ndarray, ratings: np.ndarray) -> GlobalMean:
        self.mean = float(np.mean(ratings, dtype=np.float64))
        return self

    def predict(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        return np.full(len(users), self.mean, np.float32)


# the half-lives (in ratings) that recency-weighted biases try on val: the main model's
# readout and the recent_bias baseline
RECENCY_HALF_LIVES = (10.0, 25.0, 50.0, 100.0)


@dataclass
class BiasBaseline:
    """r = mu + b_user + b_movie, with damped (regularised) biases fitted by alternating means.

    ``reg_user``/``reg_movie`` act as pseudo-counts shrinking sparse users/movies towards 0.
    With a ``half_life`` (in ratings), a user's bias is the damped mean of their residuals
    weighted by recency, 0.5 ** (later ratings of theirs / half_life), so that it follows the
    user's latest ratings (:meth:`movierec.prepare.Prepared.recency` gives the counts).
    """

    n_users: int
    n_movies: int
    reg_user: float = 5.0
    reg_movie: float = 5.0
    iterations: int = 10
    half_life: float | None = None  # None: every rating of a user weighs the same
    mean: float = 0.0
    user_bias: np.ndarray | None = None
    movie_bias: np.ndarray | None = None

    def fit(self, users: np.ndarray, movies: np.ndarray, ratings: np.ndarray,
            recency: np.ndarray | None = None) -> BiasBaseline:
        """Fit on rated pairs; ``recency`` (each rating's count of later ratings by its user)
        is required with a ``half_life`` and ignored without one."""
        r = np.asarray(ratings, np.float64)
        self.mean = float(r.mean())
        bu, bm = np.zeros(self.n_users), np.zeros(self.n_movies)
        if self.half_life is None:
            weight, nu = None, np.bincount(users, minlength=self.n_users)
        elif recency is None or len(recency) != len(r):
            raise ValueError(f"a bias with half_life {self.half_life} needs each rating's "
                             "recency (Prepared.recency), one per rating")
        else:
            weight = 0.5 ** (np.asarray(recency, np.float64) / self.half_life)
            nu = np.bincount(users, weight, self.n_users)
        nm = np.bincount(movies, minlength=self.n_movies)
        for _ in range(self.iterations):
            resid = r - self.mean - bu[users]
            bm = np.bincount(movies, resid, self.n_movies) / (nm + self.reg_movie)
            resid = r - self.mean - bm[movies]
            if weight is not None:
                resid = resid * weight
            bu = np.bincount(users, resid, self.n_users) / (nu + self.reg_user)
        self.user_bias, self.movie_bias = bu, bm
        return self

    def predict(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        pred = self.mean + self.user_bias[users] + self.movie_bias[movies]
        return np.clip(pred, *RATING_SCALE).astype(np.float32)


def rmse_mae(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMSE and MAE over all rows."""
    err = np.asarray(pred, np.float64) - np.asarray(truth, np.float64)
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def hit_matrix(topk: np.ndarray, relevant: Csr) -> np.ndarray:
    """Boolean (n_users, k): is ``topk[u, j]`` in user u's relevant set. ``relevant`` rows align
    with ``topk`` rows; padding entries (index -1, fewer than k candidates) are never hits."""
    topk = np.asarray(topk, np.int64)
    width = int(max(topk.max(initial=0), relevant.indices.max(initial=0))) + 1
    rows = np.repeat(np.arange(len(topk)), relevant.lengths())
    rel_keys = rows * width + relevant.indices
    keys = np.arange(len(topk))[:, None] * width + topk
    return np.isin(keys, rel_keys) & (topk >= 0)


def per_user_ranking(topk: np.ndarray, relevant: Csr, ks: tuple[int, ...] = (10,)
                     ) -> dict[str, np.ndarray]:
    """Each user's Recall, NDCG (binary gain, log2 discount), HitRate and MAP at each k:
    ``{"recall@10": array of n_users, ...}``. ``topk`` is (n_users, >= max(ks)), best first,
    padded with -1 (never a hit); users must each have at least one relevant item."""
    topk = np.asarray(topk)
    n_rel = relevant.lengths()
    if (n_rel == 0).any():
        raise ValueError("every evaluated user needs at least one relevant item")
    if topk.ndim != 2 or topk.shape[1] < max(ks):
        raise ValueError(f"topk must have at least {max(ks)} columns, got shape {topk.shape}")
    hits = hit_matrix(topk[:, :max(ks)], relevant).astype(np.float64)
    discount = 1.0 / np.log2(np.arange(2, max(ks) + 2))
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = hits[:, :k]
        ideal_n = np.minimum(n_rel, k)
        idcg = np.cumsum(discount[:k])[ideal_n - 1]
        precision_at_i = np.cumsum(h, 1) / np.arange(1, k + 1)
        out[f"recall@{k}"] = h.sum(1) / n_rel
        out[f"ndcg@{k}"] = (h * discount[:k]).sum(1) / idcg
        out[f"hit_rate@{k}"] = h.any(1).astype(np.float64)
        out[f"map@{k}"] = (precision_at_i * h).sum(1) / ideal_n
    return out


def standard_error(values: np.ndarray) -> float:
    """Standard error of the mean of per-user values (sample standard deviation / sqrt(n))."""
    values = np.asarray(values, np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def ranking_metrics(topk: np.ndarray, relevant: Csr, ks: tuple[int, ...] = (10,),
                    n_items: int | None = None) -> dict[str, float]:
    """The user means of :func:`per_user_ranking` and their standard errors (``recall@10_se``,
    ...), plus catalogue coverage@k (distinct movies shown / ``n_items``) when ``n_items`` is
    given (padding, -1, is never covered)."""
    out: dict[str, float] = {}
    for name, values in per_user_ranking(topk, relevant, ks).items():
        out[name] = float(np.mean(values))
        out[f"{name}_se"] = standard_error(values)
    if n_items is not None:
        topk = np.asarray(topk)
        for k in ks:
            shown = topk[:, :k]
            out[f"coverage@{k}"] = len(np.unique(shown[shown >= 0])) / n_items
    return out
