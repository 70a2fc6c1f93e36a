"""The report's comparison, over the one result type of :mod:`movierec.protocol`: the tables of
every model, seed spreads, paired bootstraps of the main model against the strongest baselines,
and ``metrics.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from movierec import plots
from movierec.evaluate import best
from movierec.experiment import BUCKETS, Experiment
from movierec.protocol import Result
from movierec.stats import paired_bootstrap, rmse_bootstrap, verdict

RANKING_COLUMNS = ("recall", "ndcg", "hit_rate", "map", "coverage")


def baselines_of(results: dict[str, Result]) -> dict[str, Result]:
    return {n: r for n, r in results.items() if r.baseline}


def rating_table(results: dict[str, Result]) -> pd.DataFrame:
    """Every model that rates: val and test RMSE and MAE."""
    rows = {n: r.rating for n, r in results.items() if r.rating}
    cols = ["val_rmse", "val_mae", "test_rmse", "test_mae"]
    return pd.DataFrame.from_dict(rows, orient="index")[cols]


def ranking_table(results: dict[str, Result], k: int) -> pd.DataFrame:
    """Every model that ranks: test metrics at ``k`` with standard errors over users."""
    rows = {n: r.ranking for n, r in results.items() if r.ranking}
    cols = [c for m in RANKING_COLUMNS for c in (f"{m}@{k}", f"{m}@{k}_se")]
    frame = pd.DataFrame.from_dict(rows, orient="index")
    return frame[[c for c in cols if c in frame]]


def recall_curves(results: dict[str, Result], ks: list[int]) -> dict[str, dict[int, float]]:
    """Each ranking model's test recall at every cut-off, for :func:`movierec.plots.recall_at_k`."""
    return {n: {k: r.ranking[f"recall@{k}"] for k in ks} for n, r in results.items()
            if r.ranking}


def bucket_table(results: dict[str, Result], k: int) -> pd.DataFrame:
    """Every ranking model's test ranking of cold, sparse and warm movies (only that bucket's
    relevant movies counted; see Experiment.test_ranking): one row per model, a column group
    per bucket."""
    rows = {n: {(b, m): v[m] for b, v in r.buckets.items()
                for m in (f"recall@{k}", f"ndcg@{k}", "recall@50", "users")}
            for n, r in results.items() if r.buckets}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


def best_baseline(results: dict[str, Result], metric: str) -> str:
    """The baseline with the best test ``metric``: the strongest competitor as measured, a
    conservative choice for the comparison."""
    table = "rating" if metric.startswith("test_") else "ranking"
    have = {n: getattr(r, table)[metric] for n, r in baselines_of(results).items()
            if metric in getattr(r, table)}
    return best(have, metric, lambda n, _: have[n])


def uncertainty(results: dict[str, Result], main: str, k: int, seed: int = 0,
                n_boot: int = 2000) -> dict:
    """Paired bootstraps (users as units, per-user values averaged over seeds) of the main
    model against every other model, on recall@k and NDCG@k (models that rank) and on RMSE
    (models that rate); positive: the main model is ahead. ``strongest`` names the best
    baseline of each metric as measured on test."""
    mine = results[main].per_user
    buckets = [b for b in BUCKETS if b != "warm" and f"{b} recall" in mine
               and (~np.isnan(mine[f"{b} recall"])).sum() >= 2]  # a bootstrap needs two users
    out: dict = {f"recall@{k}": {}, f"ndcg@{k}": {}, "rmse": {},
                 **{f"{b} recall@50": {} for b in buckets}}
    for name, r in results.items():
        if name == main:
            continue
        for metric in (f"recall@{k}", f"ndcg@{k}"):
            m = metric.split("@")[0]
            if m in r.per_user and m in mine:
                out[metric][name] = paired_bootstrap(mine[m], r.per_user[m], n_boot, seed)
        for b in buckets:  # the bucket's users (the others have no such relevant movie)
            if f"{b} recall" in r.per_user:
                users = ~np.isnan(mine[f"{b} recall"])
                out[f"{b} recall@50"][name] = paired_bootstrap(
                    mine[f"{b} recall"][users], r.per_user[f"{b} recall"][users], n_boot, seed)
        if "sse" in r.per_user and "sse" in mine:
            out["rmse"][name] = rmse_bootstrap(mine["sse"], r.per_user["sse"], mine["n"],
                                               n_boot, seed)
    out["strongest"] = {metric: best_baseline(results, test)
                        for metric, test in ((f"recall@{k}", f"recall@{k}"),
                                             (f"ndcg@{k}", f"ndcg@{k}"), ("rmse", "test_rmse"))}
    return {metric: v for metric, v in out.items() if v}


def uncertainty_table(uncert: dict) -> pd.DataFrame:
    """The bootstraps of :func:`uncertainty`, one row per (metric, model), with the verdict."""
    rows = {(metric, name): {**ci, "verdict": verdict(ci)}
            for metric, against in uncert.items() if metric != "strongest"
            for name, ci in against.items()}
    return pd.DataFrame.from_dict(rows, orient="index")[
        ["diff", "ci_low", "ci_high", "p_not_better", "verdict"]]


def seed_summary(per_seed: dict[int, dict[str, float]]) -> dict:
    """Per-seed values with their mean and sample standard deviation."""
    frame = pd.DataFrame(per_seed).T
    return {"per_seed": {str(s): v for s, v in per_seed.items()},
            "mean": frame.mean().to_dict(),
            "sd": frame.std(ddof=1).fillna(0.0).to_dict(), "seeds": len(frame)}


def all_seeds(results: dict[str, Result]) -> dict[str, dict]:
    """Seed summaries of every model run with several seeds."""
    return {n: seed_summary(r.seeds) for n, r in results.items() if len(r.seeds) > 1}


def seed_table(seeds: dict[str, dict]) -> pd.DataFrame:
    """Mean and standard deviation over seeds, one row per model."""
    return pd.DataFrame({n: {**{f"{m} mean": v for m, v in s["mean"].items()},
                             **{f"{m} sd": v for m, v in s["sd"].items()}, "seeds": s["seeds"]}
                         for n, s in seeds.items()}).T


def summary_table(results: dict[str, Result], k: int) -> pd.DataFrame:
    """Test RMSE, MAE and the ranking metrics at ``k`` of every model, side by side."""
    ratings, ranks = rating_table(results), ranking_table(results, k)
    cols = [f"{m}@{k}" for m in RANKING_COLUMNS if f"{m}@{k}" in ranks]
    return pd.concat([ratings[["test_rmse", "test_mae"]], ranks[cols]], axis=1)


def both_ways(results: dict[str, Result], k: int) -> pd.DataFrame:
    """Each model that ranks in several ways (ours: by its retrieval score and by its
    predicted rating): test NDCG@k each way, the val NDCG@10 that chose, and the choice."""
    return pd.DataFrame({n: {"chosen on val": r.by,
                             **{f"test ndcg@{k} ({b})": m[f"ndcg@{k}"]
                                for b, m in r.ranking_by.items()},
                             **{f"val ndcg@10 ({b})": v for b, v in r.trial.val_by.items()}}
                         for n, r in results.items() if r.ranking_by}).T


def search_table(result: Result) -> pd.DataFrame:
    """A model's settings tried on val, with their val figures (the chosen one marked)."""
    frame = pd.DataFrame(result.sweep)
    frame["chosen"] = [all(row.get(k) == v for k, v in result.setting.items())
                       for row in result.sweep]
    return frame


def frontier_references(results: dict[str, Result]) -> dict[str, tuple[str, float]]:
    """The best rating baseline's val RMSE and the best ranking baseline's val NDCG@10, as
    :func:`movierec.plots.frontier` draws them."""
    out = {}
    base = baselines_of(results)
    rating = {n: r.rating["val_rmse"] for n, r in base.items() if r.kind == "rating"}
    ranking = {n: max(row["val_ndcg@10"] for row in r.sweep)
               for n, r in base.items() if r.kind == "ranking"}
    if rating:
        name = min(rating, key=rating.get)
        out[f"{name} (val RMSE)"] = ("rmse", rating[name])
    if ranking:
        name = max(ranking, key=ranking.get)
        out[f"{name} (val NDCG@10)"] = ("ndcg", ranking[name])
    return out


def frontier(results: dict[str, Result], main: str, tuning: dict | None = None,
             rating_only: str = "hybrid") -> Figure:
    """The main model's settings on val, RMSE against NDCG@10 (its tuning's trials, else its
    grid), with the best baselines' val figures and, if it ran, the same design trained for
    RMSE alone. With a tuning record, the chosen setting as this run trained and calibrated it
    is drawn too: the record's figures are of the code that made it."""
    r, end = results[main], results.get(rating_only)
    endpoint = end and (f"{rating_only} (w = 0)", end.rating["val_rmse"],
                        end.trial.val_by[end.by])
    points = pd.DataFrame(tuning["trials"] if tuning else r.sweep)
    weight = r.trial.tuned["configs"][0].objective.rank_weight
    if "rank_weight" not in points:
        points["rank_weight"] = weight
    chosen = tuning["best"] if tuning else r.setting
    current = (("chosen, as trained and calibrated in this run", r.rating["val_rmse"],
                r.trial.val_by[r.by]) if tuning else None)
    return plots.frontier(points, chosen or {"rank_weight": weight},
                          frontier_references(results), endpoint, current)


def load_tuning(path: str | os.PathLike | None, prep, root: Path | None = None,
                kind: str = "", seed: int | None = None) -> dict | None:
    """The record of ``make tune`` (``kind`` "-baselines": of ``make tune-baselines``) at
    ``path``, checked to be complete, of these data (the same file checksums) and, given a
    ``seed``, searched with it; ``"auto"``: ``reports/tune/<dataset><kind>.json`` under the
    checkout ``root`` if there is one and, given a ``seed``, searched with it (a run with
    another seed searches for itself); None: no record."""
    auto = path == "auto"
    if auto:
        path = None if root is None else root / "reports" / "tune" / f"{prep.name}{kind}.json"
        if path is None or not path.exists():
            return None
    if path is None:
        return None
    record = json.loads(Path(path).read_text())
    again = f"run make tune{kind} again"
    if not record.get("complete", True):
        raise ValueError(f"{path}: an unfinished search (make tune{kind} stopped): {again}")
    if record["checksums"] != prep.checksums:
        raise ValueError(f"{path} tuned on other data than {prep.name!r} (file checksums "
                         f"differ): {again}")
    if seed is not None and record["seed"] != seed:
        if auto:
            return None
        raise ValueError(f"{path} searched with seed {record['seed']}, this run's is {seed}: "
                         f"{again} with --seed {seed}, or set the parameter to None")
    return record


def describe_search(record: dict | None) -> str:
    """One line on where the baselines' searches come from (a ``make tune-baselines`` record,
    or this run)."""
    if not record:
        return "the baselines' searches: every grid searched in this run"
    minutes = sum(b["seconds"] for b in record["baselines"].values()) / 60
    commit = (record["git"]["commit"] or "unknown")[:7]
    return (f"the baselines' searches: recorded by make tune-baselines at commit {commit} "
            f"({minutes:.0f} min there); each recorded choice is fitted again here")


def recorded_searches(record: dict | None) -> dict[str, dict]:
    """The baselines' searches of a ``make tune-baselines`` record, by name, for
    :class:`movierec.protocol.Runner` (empty: every grid is searched in the run)."""
    return dict(record["baselines"]) if record else {}


def main_axes(tuning: dict | None, rank_weights: list[float]) -> dict[str, tuple]:
    """The main model's val grid: its tuning's best setting, else the retrieval weights."""
    if tuning:
        return {k: (v,) for k, v in tuning["best"].items()}
    return {"rank_weight": tuple(rank_weights)}


def histories(results: dict[str, Result]) -> dict[str, pd.DataFrame]:
    """The per-epoch training log of each of our models (its chosen setting's tuning)."""
    return {n: r.trial.tuned["fit"].history for n, r in results.items() if not r.baseline}


def configurations_tried(results: dict[str, Result], tuning: dict | None = None) -> int:
    """Settings read on val over every model, the main model's tuning trials included (the
    count a reader weighs a winner against)."""
    return sum(len(r.sweep) for r in results.values()) + len(tuning["trials"] if tuning else ())


def metrics_record(exp: Experiment, *, parameters: dict, results: dict[str, Result],
                   skipped: dict[str, str], main: str, uncertainty: dict, ablations: dict,
                   stage_seconds: dict, provenance: dict, tuning: dict | None = None,
                   baseline_search: dict | None = None) -> dict:
    """Everything ``metrics.json`` holds: dataset, split, every model's rating, ranking and
    cold-start metrics, searches, seeds, bootstraps, parameters, timings and provenance."""
    prep, chosen = exp.prep, results[main]
    return {
        "dataset": prep.name,
        "features": prep.features.blocks(),
        "summary": prep.summary,
        "split_sizes": prep.split.sizes(),
        "evaluated_users": {"val": len(exp.val_users), "test": len(exp.test_users)},
        "main_model": {"name": main,
                       "rank_weight": chosen.trial.tuned["configs"][0].objective.rank_weight,
                       "scored_by": chosen.by, "readout": chosen.trial.tuned["readout"]},
        "rating": {n: r.rating for n, r in results.items() if r.rating},
        "ranking": {n: r.ranking for n, r in results.items() if r.ranking},
        "ranking_by": {n: {**r.ranking_by, "chosen": r.by, "val_ndcg@10": r.trial.val_by}
                       for n, r in results.items() if r.ranking_by},
        "buckets": {n: r.buckets for n, r in results.items() if r.buckets},
        "catalogue": exp.catalogue_leak(),
        "seeds": all_seeds(results),
        "uncertainty": uncertainty,
        "ablations": ablations,
        "sweeps": {n: [{k: v for k, v in row.items() if k != "seconds"} for row in r.sweep]
                   for n, r in results.items()},
        "baseline_settings": {n: {**r.setting, "at_grid_edge": r.at_edge,
                                  "at_natural_bound": r.at_limit}
                              for n, r in baselines_of(results).items()},
        "configurations_tried": configurations_tried(results, tuning),
        "tuning": tuning and {k: tuning[k] for k in ("model", "target", "sampler", "seed",
                                                     "space", "trials", "best")},
        "baseline_search": baseline_search and {
            "git": baseline_search["git"], "seed": baseline_search["seed"],
            "seconds": {n: b["seconds"] for n, b in baseline_search["baselines"].items()}},
        "skipped": skipped,
        "history": {n: h.drop(columns="seconds").to_dict(orient="list")
                    for n, h in histories(results).items()},
        "dropped": prep.dropped,
        "parameters": parameters,
        "timings": {"stage_seconds": stage_seconds,
                    **{n: {"seconds": r.seconds} for n, r in results.items()}},
        "provenance": provenance,
    }
