"""The report's comparison: the main model's rank-weight sweep (val only), seeds, the tables of
every model and baseline, paired bootstraps against the best baselines, and ``metrics.json``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from movierec.baselines import BaselineResult
from movierec.experiment import Experiment, VariantResult, train_variant
from movierec.stats import paired_bootstrap, rmse_bootstrap
from movierec.train import TrainConfig

RANKING_COLUMNS = ("recall", "ndcg", "hit_rate", "map", "coverage")


def sweep_rank_weight(exp: Experiment, name: str, train_config: TrainConfig,
                      weights: list[float], **kwargs
                      ) -> tuple[pd.DataFrame, float, dict[float, VariantResult]]:
    """Train ``name`` with each retrieval-loss weight on train, early-stopped on val, and read
    val only: (one row per weight: best epoch, val RMSE, val NDCG@10 and recall@10 of the
    chosen scoring; the weight chosen; each weight's tuned run, for ``train_variant(...,
    tuned=)``). The rule: the highest val NDCG@10 (the main model's job is to recommend); val
    RMSE is the price, shown in the frontier plot."""
    rows, runs = [], {}
    for w in weights:
        r = runs[w] = train_variant(exp, name, replace(train_config, rank_weight=w,
                                                       progress=False), test=False, **kwargs)
        best = r.history.loc[r.history.epoch == r.fit.best_epoch].iloc[0]
        rows.append({"rank_weight": w, "best_epoch": r.fit.best_epoch,
                     "val_rmse": r.rating["val_rmse"], "val_ndcg@10": r.val_by[r.by],
                     "val_recall@10": float(best["val_recall@10"]), "by": r.by,
                     "seconds": r.timing["train_seconds"]})
    table = pd.DataFrame(rows)
    chosen = float(table.rank_weight[table["val_ndcg@10"].idxmax()])
    return table, chosen, runs


def seed_runs(exp: Experiment, name: str, train_config: TrainConfig, seeds: list[int],
              first: VariantResult, **kwargs) -> dict[int, VariantResult]:
    """``first`` (the run with ``train_config.seed``) and the variant retrained (tuned, refit,
    tested) with each other seed, everything else equal."""
    runs = {train_config.seed: first}
    for s in seeds:
        if s not in runs:
            runs[s] = train_variant(exp, name, replace(train_config, seed=s, progress=False),
                                    **kwargs)
    return runs


def headline(run: VariantResult, k: int) -> dict[str, float]:
    """The test figures a seed table shows."""
    return {"test_rmse": run.rating["test_rmse"], f"recall@{k}": run.ranking[f"recall@{k}"],
            f"ndcg@{k}": run.ranking[f"ndcg@{k}"]}


def seed_summary(per_seed: dict[int, dict[str, float]]) -> dict:
    """Per-seed values with their mean and sample standard deviation."""
    frame = pd.DataFrame(per_seed).T
    return {"per_seed": {str(s): v for s, v in per_seed.items()},
            "mean": frame.mean().to_dict(),
            "sd": frame.std(ddof=1).fillna(0.0).to_dict(), "seeds": len(frame)}


def mean_per_user(runs: dict[int, VariantResult]) -> dict[str, np.ndarray]:
    """Per-user test values averaged over seeds."""
    keys = next(iter(runs.values())).per_user
    return {k: np.mean([r.per_user[k] for r in runs.values()], axis=0) for k in keys}


def rating_table(baselines: dict[str, BaselineResult], results: dict[str, VariantResult]
                 ) -> pd.DataFrame:
    """Every model that rates: val and test RMSE and MAE."""
    rows = {n: b.rating for n, b in baselines.items() if b.kind == "rating"}
    rows.update({n: r.rating for n, r in results.items()})
    cols = ["val_rmse", "val_mae", "test_rmse", "test_mae"]
    return pd.DataFrame.from_dict(rows, orient="index")[cols]


def ranking_table(baselines: dict[str, BaselineResult], results: dict[str, VariantResult],
                  k: int) -> pd.DataFrame:
    """Every model that ranks: test metrics at ``k`` with standard errors over users."""
    rows = {n: b.ranking for n, b in baselines.items() if b.ranking}
    rows.update({n: r.ranking for n, r in results.items()})
    cols = [c for m in RANKING_COLUMNS for c in (f"{m}@{k}", f"{m}@{k}_se")]
    frame = pd.DataFrame.from_dict(rows, orient="index")
    return frame[[c for c in cols if c in frame]]


def best_baseline(baselines: dict[str, BaselineResult], metric: str) -> str:
    """The baseline with the best test ``metric`` (lowest RMSE, else highest): the strongest
    competitor as measured, a conservative choice for the comparison."""
    if metric == "test_rmse":
        have = {n: b.rating[metric] for n, b in baselines.items() if metric in b.rating}
        return min(have, key=have.get)
    have = {n: b.ranking[metric] for n, b in baselines.items() if b.ranking}
    return max(have, key=have.get)


def uncertainty(main: dict[str, np.ndarray], baselines: dict[str, BaselineResult], k: int,
                seed: int = 0, n_boot: int = 2000) -> dict:
    """Paired bootstraps (users as units, per-user values averaged over seeds) of the main
    model against the best ranking baseline on recall@k and NDCG@k, and against the best
    rating baseline on RMSE (positive: the main model is better)."""
    out = {}
    for metric in (f"recall@{k}", f"ndcg@{k}"):
        name = best_baseline(baselines, metric)
        m = metric.split("@")[0]
        out[metric] = {"against": name, **paired_bootstrap(
            main[m], baselines[name].per_user[m], n_boot, seed)}
    name = best_baseline(baselines, "test_rmse")
    out["rmse"] = {"against": name, **rmse_bootstrap(
        main["sse"], baselines[name].per_user["sse"], main["n"], n_boot, seed)}
    return out


def metrics_record(exp: Experiment, *, parameters: dict, baselines: dict[str, BaselineResult],
                   skipped: dict[str, str], results: dict[str, VariantResult],
                   main: str, sweep: pd.DataFrame, seeds: dict, uncertainty: dict,
                   ablations: dict, stage_seconds: dict, provenance: dict) -> dict:
    """Everything ``metrics.json`` holds: dataset, split, every model's and baseline's rating,
    ranking and cold-start metrics, sweeps, seeds, bootstraps, parameters, timings and
    provenance."""
    prep = exp.prep
    models = {**baselines, **results}
    n_configs = len(sweep) + sum(len(b.sweep) for b in baselines.values())
    return {
        "dataset": prep.name,
        "features": prep.features.blocks(),
        "summary": prep.summary,
        "split_sizes": prep.split.sizes(),
        "evaluated_users": {"val": len(exp.val_users), "test": len(exp.test_users)},
        "main_model": {"name": main, "rank_weight": results[main].train_config.rank_weight,
                       "scored_by": results[main].by, "readout": results[main].readout},
        "rating": {n: m.rating for n, m in models.items() if m.rating},
        "ranking": {n: m.ranking for n, m in models.items() if m.ranking},
        "ranking_by": {n: {**r.ranking_by, "chosen": r.by, "val_ndcg@10": r.val_by}
                       for n, r in results.items()},
        "cold_start": {n: m.cold_start for n, m in models.items() if m.cold_start},
        "seeds": seeds,
        "uncertainty": uncertainty,
        "ablations": ablations,
        "sweeps": {"rank_weight": sweep.drop(columns="seconds").to_dict(orient="records"),
                   **{n: b.sweep for n, b in baselines.items()}},
        "baseline_settings": {n: {**b.setting, "at_grid_edge": b.at_edge}
                              for n, b in baselines.items()},
        "configurations_tried": n_configs,
        "skipped": skipped,
        "history": {n: r.history.drop(columns="seconds").to_dict(orient="list")
                    for n, r in results.items()},
        "dropped": prep.dropped,
        "parameters": parameters,
        "timings": {"stage_seconds": stage_seconds,
                    **{n: r.timing for n, r in results.items()},
                    **{n: {"seconds": b.seconds} for n, b in baselines.items()}},
        "provenance": provenance,
    }


def frontier_references(baselines: dict[str, BaselineResult]) -> dict[str, tuple[str, float]]:
    """The best rating baseline's val RMSE and the best ranking baseline's val NDCG@10, as
    :func:`movierec.plots.frontier` draws them."""
    out = {}
    rating = {n: b.rating["val_rmse"] for n, b in baselines.items() if b.kind == "rating"}
    ranking = {n: max(row["val_ndcg@10"] for row in b.sweep)
               for n, b in baselines.items() if b.kind == "ranking"}
    if rating:
        name = min(rating, key=rating.get)
        out[f"{name} (val RMSE)"] = ("rmse", rating[name])
    if ranking:
        name = max(ranking, key=ranking.get)
        out[f"{name} (val NDCG@10)"] = ("ndcg", ranking[name])
    return out


def both_ways(results: dict[str, VariantResult], k: int) -> pd.DataFrame:
    """Each of our models scored by its retrieval cosine and by its predicted rating: test
    NDCG@k both ways, the val NDCG@10 that chose, and the choice."""
    return pd.DataFrame({n: {"chosen on val": r.by,
                             **{f"test ndcg@{k} ({b})": m[f"ndcg@{k}"]
                                for b, m in r.ranking_by.items()},
                             **{f"val ndcg@10 ({b})": v for b, v in r.val_by.items()}}
                         for n, r in results.items()}).T


def all_seeds(main: str, runs: dict[int, VariantResult], baselines: dict[str, BaselineResult],
              k: int) -> dict[str, dict]:
    """Seed summaries of the main model and of every baseline run with several seeds."""
    out = {main: seed_summary({s: headline(r, k) for s, r in runs.items()})}
    out.update({n: seed_summary(b.seeds) for n, b in baselines.items() if len(b.seeds) > 1})
    return out


def seed_table(seeds: dict[str, dict]) -> pd.DataFrame:
    """Mean and standard deviation over seeds, one row per model."""
    return pd.DataFrame({n: {**{f"{m} mean": v for m, v in s["mean"].items()},
                             **{f"{m} sd": v for m, v in s["sd"].items()}, "seeds": s["seeds"]}
                         for n, s in seeds.items()}).T


def summary_table(ratings: pd.DataFrame, ranks: pd.DataFrame, k: int) -> pd.DataFrame:
    """Test RMSE, MAE and the ranking metrics at ``k`` of every model, side by side."""
    cols = [f"{m}@{k}" for m in RANKING_COLUMNS if f"{m}@{k}" in ranks]
    return pd.concat([ratings[["test_rmse", "test_mae"]], ranks[cols]], axis=1)
