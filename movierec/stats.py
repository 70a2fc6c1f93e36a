"""Uncertainty: the paired bootstrap of two models' per-user results (users are the units), the
spread of their difference over training seeds, and the one wording rule built on both."""

from __future__ import annotations

import math

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


def _finite(what: str, *arrays: np.ndarray) -> None:
    for x in arrays:
        if not np.isfinite(x).all():
            raise ValueError(f"{what}: {int((~np.isfinite(x)).sum())} undefined (NaN or "
                             "infinite) per-user value(s): a bootstrap of them means nothing")


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                     what: str = "paired bootstrap") -> dict[str, float]:
    """Mean of ``a - b`` over users (``a``, ``b``: the same users' metric under two models)
    with its 95% percentile interval over ``n_boot`` resamples of users, and the share of
    resamples where ``a`` is not ahead (``p_not_better``). An undefined value is an error
    naming ``what`` (the models and the metric)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"{what}: need two equal-length 1-D arrays of >= 2 users, got "
                         f"{a.shape} and {b.shape}")
    _finite(what, a, b)
    d = a - b
    boot = np.concatenate([d[idx].mean(1) for idx in _resamples(len(d), n_boot, seed)])
    return _interval(d.mean(), boot)


def rmse_bootstrap(sse_a: np.ndarray, sse_b: np.ndarray, counts: np.ndarray,
                   n_boot: int = 2000, seed: int = 0, what: str = "RMSE bootstrap"
                   ) -> dict[str, float]:
    """RMSE(b) - RMSE(a) (positive: ``a`` is more accurate) from per-user sums of squared
    errors over the same ratings (``counts`` per user), with its 95% interval over resamples
    of the users who have ratings."""
    keep = np.asarray(counts) > 0
    sa, sb, n = (np.asarray(x, np.float64)[keep] for x in (sse_a, sse_b, counts))
    if len(n) < 2:
        raise ValueError(f"{what}: need at least two users with ratings")
    _finite(what, sa, sb)

    def gap(idx: np.ndarray) -> np.ndarray:
        total = n[idx].sum(-1)
        return np.sqrt(sb[idx].sum(-1) / total) - np.sqrt(sa[idx].sum(-1) / total)

    boot = np.concatenate([gap(idx) for idx in _resamples(len(n), n_boot, seed)])
    return _interval(float(gap(np.arange(len(n)))), boot)


def seed_difference(mine: dict[int, float], theirs: dict[int, float], lower_better: bool
                    ) -> dict[str, float | int | None]:
    """The difference of two models' test figure over training seeds (positive: the first is
    ahead): its mean over the first model's seeds, each paired with the same seed of the
    second (or its one value, for a deterministic model), and that mean's standard error
    (None with one seed: the spread is unknown)."""
    if not mine:
        raise ValueError("no per-seed values")
    other = theirs if len(theirs) > 1 else dict.fromkeys(mine, next(iter(theirs.values())))
    missing = [s for s in mine if s not in other]
    if missing:
        raise ValueError(f"seeds {missing} have no value of the other model")
    d = np.array([(other[s] - mine[s]) if lower_better else (mine[s] - other[s]) for s in mine])
    _finite("seed difference", d)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else None
    return {"seed_diff": float(d.mean()), "seed_se": se, "seeds": len(d)}


def verdict(comparison: dict) -> str:
    """The one wording rule for a paired comparison (``diff``, ``seed_diff`` positive: the
    first model is ahead): "beats" or "loses to" only when the bootstrap's 95% interval over
    users excludes zero **and** the mean difference over training seeds exceeds twice its
    standard error on the same side (the bootstrap averages each user over seeds, so its
    interval alone ignores how much another seed moves a model); "is level with" otherwise,
    one seed (an unknown spread) included."""
    se = comparison.get("seed_se")
    if se is None or not math.isfinite(comparison["ci_low"]):
        return "is level with"
    if comparison["ci_low"] > 0 and comparison["seed_diff"] > 2 * se:
        return "beats"
    if comparison["ci_high"] < 0 and comparison["seed_diff"] < -2 * se:
        return "loses to"
    return "is level with"


def evidence(comparison: dict) -> str:
    """The numbers a verdict stands on: the bootstrap's difference and 95% interval, and the
    seeds' mean difference ± its standard error."""
    se = comparison.get("seed_se")
    seeds = (f"seeds {comparison['seed_diff']:+.4f} ± {se:.4f}" if se is not None
             else "one seed: spread unknown")
    return (f"{comparison['diff']:+.4f} [{comparison['ci_low']:+.4f}, "
            f"{comparison['ci_high']:+.4f}], {seeds}")


def verdicts(uncert: dict, main: str) -> list[str]:
    """One sentence per metric: which models the main model beats, is level with and loses to
    (:func:`verdict`), each with its evidence (:func:`evidence`)."""
    out = []
    for metric, against in uncert.items():
        if metric == "strongest" or not against:
            continue
        groups: dict[str, list[str]] = {"beats": [], "is level with": [], "loses to": []}
        for name, comparison in against.items():
            groups[verdict(comparison)].append(f"{name} ({evidence(comparison)})")
        said = "; ".join(f"{verb} {', '.join(names)}" for verb, names in groups.items() if names)
        out.append(f"{metric_label(metric)}: {main} {said}.")
    return out


def metric_label(metric: str) -> str:
    """``ndcg@10`` -> NDCG@10; ``cold recall@50`` -> Recall@50 of cold movies."""
    names = {"recall": "Recall", "ndcg": "NDCG", "rmse": "RMSE"}
    bucket, _, metric = metric.rpartition(" ")
    name, _, k = metric.partition("@")
    return names[name] + (f"@{k}" if k else "") + (f" of {bucket} movies" if bucket else "")
