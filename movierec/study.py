"""The report's comparison, over the one result type of :mod:`movierec.protocol`: the tables of
every model, seed spreads, paired bootstraps of the main model against the strongest baselines,
and ``metrics.json``."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from movierec import plots
from movierec.evaluate import best
from movierec.experiment import Experiment
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


def cold_table(results: dict[str, Result], k: int) -> pd.DataFrame:
    """Cold-start ranking of every model that ranks (see Experiment.test_ranking)."""
    frame = pd.DataFrame({n: r.cold_start for n, r in results.items() if r.cold_start}).T
    return frame[[f"recall@{k}", f"ndcg@{k}", "recall@50", "users", "relevant_pairs"]]


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
    out: dict = {f"recall@{k}": {}, f"ndcg@{k}": {}, "rmse": {}}
    for name, r in results.items():
        if name == main:
            continue
        for metric in (f"recall@{k}", f"ndcg@{k}"):
            m = metric.split("@")[0]
            if m in r.per_user and m in mine:
                out[metric][name] = paired_bootstrap(mine[m], r.per_user[m], n_boot, seed)
        if "sse" in r.per_user and "sse" in mine:
            out["rmse"][name] = rmse_bootstrap(mine["sse"], r.per_user["sse"], mine["n"],
                                               n_boot, seed)
    out["strongest"] = {metric: best_baseline(results, test)
                        for metric, test in ((f"recall@{k}", f"recall@{k}"),
                                             (f"ndcg@{k}", f"ndcg@{k}"), ("rmse", "test_rmse"))}
    return out


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


def frontier(results: dict[str, Result], main: str, rating_only: str = "hybrid") -> Figure:
    """The main model's search on val (RMSE against NDCG@10, by retrieval weight) with the
    best baselines' val figures and, if it ran, the same design trained for RMSE alone."""
    r, end = results[main], results.get(rating_only)
    endpoint = end and (f"{rating_only} (w = 0)", end.rating["val_rmse"],
                        end.trial.val_by[end.by])
    return plots.frontier(pd.DataFrame(r.sweep), r.setting["rank_weight"],
                          frontier_references(results), endpoint)


def histories(results: dict[str, Result]) -> dict[str, pd.DataFrame]:
    """The per-epoch training log of each of our models (its chosen setting's tuning)."""
    return {n: r.trial.tuned["fit"].history for n, r in results.items() if not r.baseline}


def configurations_tried(results: dict[str, Result]) -> int:
    """Settings read on val over every model (the count a reader weighs a winner against)."""
    return sum(len(r.sweep) for r in results.values())


def metrics_record(exp: Experiment, *, parameters: dict, results: dict[str, Result],
                   skipped: dict[str, str], main: str, uncertainty: dict, ablations: dict,
                   stage_seconds: dict, provenance: dict) -> dict:
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
        "cold_start": {n: r.cold_start for n, r in results.items() if r.cold_start},
        "seeds": all_seeds(results),
        "uncertainty": uncertainty,
        "ablations": ablations,
        # the main model's search under the name of its axis, and each baseline's grid
        "sweeps": {"rank_weight": [{k: v for k, v in row.items() if k != "seconds"}
                                   for row in chosen.sweep],
                   **{n: r.sweep for n, r in baselines_of(results).items()}},
        "baseline_settings": {n: {**r.setting, "at_grid_edge": r.at_edge,
                                  "at_natural_bound": r.at_limit}
                              for n, r in baselines_of(results).items()},
        "configurations_tried": configurations_tried(results),
        "skipped": skipped,
        "history": {n: h.drop(columns="seconds").to_dict(orient="list")
                    for n, h in histories(results).items()},
        "dropped": prep.dropped,
        "parameters": parameters,
        "timings": {"stage_seconds": stage_seconds,
                    **{n: {"seconds": r.seconds} for n, r in results.items()}},
        "provenance": provenance,
    }
