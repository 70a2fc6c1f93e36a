"""Uncertainty: paired bootstrap of two models' per-user results (users are the units)."""

from __future__ import annotations

import numpy as np


def _resamples(n_users: int, n_boot: int, seed: int, block: int = 200):
    """Blocks of bootstrap resamples of user positions, from one seeded generator."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, block):
        yield rng.integers(0, n_users, (min(block, n_boot - start), n_users))


def _interval(diff: float, boot: np.ndarray) -> dict[str, float]:
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"diff": float(diff), "ci_low": float(lo), "ci_high": float(hi),
            "p_not_better": float(np.mean(boot <= 0.0)), "resamples": len(boot)}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0
                     ) -> dict[str, float]:
    """Mean of ``a - b`` over users (``a``, ``b``: the same users' metric under two models)
    with its 95% percentile interval over ``n_boot`` resamples of users, and the share of
    resamples where ``a`` is not ahead (``p_not_better``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two equal-length 1-D arrays of >= 2 users, got {a.shape} "
                         f"and {b.shape}")
    d = a - b
    boot = np.concatenate([d[idx].mean(1) for idx in _resamples(len(d), n_boot, seed)])
    return _interval(d.mean(), boot)


def rmse_bootstrap(sse_a: np.ndarray, sse_b: np.ndarray, counts: np.ndarray,
                   n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """RMSE(b) - RMSE(a) (positive: ``a`` is more accurate) from per-user sums of squared
    errors over the same ratings (``counts`` per user), with its 95% interval over resamples
    of the users who have ratings."""
    keep = np.asarray(counts) > 0
    sa, sb, n = (np.asarray(x, np.float64)[keep] for x in (sse_a, sse_b, counts))
    if len(n) < 2:
        raise ValueError("need at least two users with ratings")

    def gap(idx: np.ndarray) -> np.ndarray:
        total = n[idx].sum(-1)
        return np.sqrt(sb[idx].sum(-1) / total) - np.sqrt(sa[idx].sum(-1) / total)

    boot = np.concatenate([gap(idx) for idx in _resamples(len(n), n_boot, seed)])
    return _interval(float(gap(np.arange(len(n)))), boot)


def verdict(interval: dict[str, float]) -> str:
    """The one wording rule for a paired comparison (``diff`` positive: the first model is
    ahead): "beats" or "loses to" only when the 95% interval excludes zero, "is level with"
    otherwise."""
    if interval["ci_low"] > 0:
        return "beats"
    if interval["ci_high"] < 0:
        return "loses to"
    return "is level with"


def verdicts(uncert: dict, main: str) -> list[str]:
    """One sentence per metric: which models the main model beats, is level with and loses to
    (:func:`verdict`), the interval beside every model it does not beat."""
    out = []
    for metric, against in uncert.items():
        if metric == "strongest" or not against:
            continue
        groups: dict[str, list[str]] = {"beats": [], "is level with": [], "loses to": []}
        for name, ci in against.items():
            shown = name if verdict(ci) == "beats" else (
                f"{name} ({ci['diff']:+.4f} [{ci['ci_low']:+.4f}, {ci['ci_high']:+.4f}])")
            groups[verdict(ci)].append(shown)
        said = "; ".join(f"{verb} {', '.join(names)}" for verb, names in groups.items() if names)
        out.append(f"{metric_label(metric)}: {main} {said}.")
    return out


def metric_label(metric: str) -> str:
    """``ndcg@10`` -> NDCG@10; ``cold recall@50`` -> Recall@50 of cold movies."""
    names = {"recall": "Recall", "ndcg": "NDCG", "rmse": "RMSE"}
    bucket, _, metric = metric.rpartition(" ")
    name, _, k = metric.partition("@")
    return names[name] + (f"@{k}" if k else "") + (f" of {bucket} movies" if bucket else "")
