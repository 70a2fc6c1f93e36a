"""The report's comparison, over the one result type of :mod:`movierec.protocol`: the tables of
every model, seed spreads, paired bootstraps of the main model against the strongest baselines,
and ``metrics.json``."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from movierec import plots
from movierec.age import AGE_WEIGHTS
from movierec.evaluate import RECENCY_HALF_LIVES, best, lower_is_better
from movierec.experiment import BUCKETS, Experiment, Setup
from movierec.protocol import Fixed, Result, run
from movierec.stats import paired_bootstrap, rmse_bootstrap, seed_difference, verdict
from movierec.variants import READOUT_DAMPINGS

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
    """The main model against every other model on test: a paired bootstrap over users
    (per-user values averaged over seeds) and the mean difference over training seeds with
    its standard error (:func:`movierec.stats.seed_difference`), on recall@k and NDCG@k (models
    that rank), recall@50 of cold and sparse movies, and RMSE (models that rate); positive: the
    main model is ahead. ``strongest`` names the best baseline of each metric as measured on
    test. A model that ranks or rates without its per-user values, or an undefined value, is
    an error naming the model and the metric: a comparison never drops out silently."""
    mine = results[main].per_user
    buckets = [b for b in BUCKETS if b != "warm" and f"{b} recall" in mine
               and (~np.isnan(mine[f"{b} recall"])).sum() >= 2]  # a bootstrap needs two users
    out: dict = {f"recall@{k}": {}, f"ndcg@{k}": {}, "rmse": {},
                 **{f"{b} recall@50": {} for b in buckets}}
    for name, r in results.items():
        if name == main:
            continue
        if r.ranking:
            for m in ("recall", "ndcg"):
                metric = f"{m}@{k}"
                boot = paired_bootstrap(_per_user(results, main, m, metric),
                                        _per_user(results, name, m, metric), n_boot, seed,
                                        what=f"{main} vs {name}, {metric}")
                out[metric][name] = _with_seeds(results, main, name, boot, metric)
            for bucket in buckets:  # the bucket's users (the others have none of its movies)
                metric, key = f"{bucket} recall@50", f"{bucket} recall"
                users = ~np.isnan(mine[key])
                boot = paired_bootstrap(mine[key][users],
                                        _per_user(results, name, key, metric)[users], n_boot,
                                        seed, what=f"{main} vs {name}, {metric}")
                out[metric][name] = _with_seeds(results, main, name, boot, metric)
        if r.rating:
            boot = rmse_bootstrap(_per_user(results, main, "sse", "rmse"),
                                  _per_user(results, name, "sse", "rmse"),
                                  _per_user(results, main, "n", "rmse"), n_boot, seed,
                                  what=f"{main} vs {name}, RMSE")
            out["rmse"][name] = _with_seeds(results, main, name, boot, "test_rmse")
    out["strongest"] = {metric: best_baseline(results, test)
                        for metric, test in ((f"recall@{k}", f"recall@{k}"),
                                             (f"ndcg@{k}", f"ndcg@{k}"), ("rmse", "test_rmse"))}
    return {metric: v for metric, v in out.items() if v}


def _per_user(results: dict[str, Result], name: str, key: str, metric: str) -> np.ndarray:
    if key not in results[name].per_user:
        raise ValueError(f"{name}: no per-user {key} values to compare on {metric}")
    return results[name].per_user[key]


def _with_seeds(results: dict[str, Result], main: str, name: str, boot: dict, headline: str
                ) -> dict:
    """A bootstrap with the two models' difference over training seeds beside it."""
    try:
        seeds = seed_difference({s: h[headline] for s, h in results[main].seeds.items()},
                                {s: h[headline] for s, h in results[name].seeds.items()},
                                lower_is_better(headline))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{main} vs {name}, {headline}: no seed difference ({exc})") from exc
    return {**boot, **seeds}


def uncertainty_table(uncert: dict) -> pd.DataFrame:
    """The bootstraps of :func:`uncertainty`, one row per (metric, model), with the verdict."""
    rows = {(metric, name): {**ci, "verdict": verdict(ci)}
            for metric, against in uncert.items() if metric != "strongest"
            for name, ci in against.items()}
    return pd.DataFrame.from_dict(rows, orient="index")[
        ["diff", "ci_low", "ci_high", "p_not_better", "seed_diff", "seed_se", "seeds",
         "verdict"]]


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


def search_table(result: Result, top: int | None = None) -> pd.DataFrame:
    """A model's settings tried on val with their val figures, the chosen one marked, best
    first by the figure that chose (the ``top`` ones)."""
    frame = pd.DataFrame(result.sweep)
    frame["chosen"] = [all(row.get(k) == v for k, v in result.setting.items())
                       for row in result.sweep]
    frame = frame.sort_values(result.target, ascending=lower_is_better(result.target),
                              kind="stable")
    return frame if top is None else frame.head(top)


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
    """The main model's settings on val (its search's rows), RMSE against NDCG@10, with the
    best baselines' val figures and, if it ran, the same design trained for RMSE alone."""
    r, end = results[main], results.get(rating_only)
    endpoint = end and (f"{rating_only} (w = 0)", end.rating["val_rmse"],
                        end.trial.val_by[end.by])
    return plots.frontier(pd.DataFrame(r.sweep), r.setting, frontier_references(results),
                          endpoint)


def histories(results: dict[str, Result]) -> dict[str, pd.DataFrame]:
    """The per-epoch training log of each of our models (its chosen setting's tuning)."""
    return {n: r.trial.tuned["fit"].history for n, r in results.items() if not r.baseline}


def configurations_tried(results: dict[str, Result]) -> int:
    """Settings read on val over every model's search (recorded or run here), each once: the
    count a reader weighs a winner against."""
    return sum(r.search.get("tried", len(r.sweep)) for r in results.values())


def searches(results: dict[str, Result]) -> dict[str, dict]:
    """What each model's search covered and chose: what it searched (a grid's axes or a
    space), the settings it tried, the chosen setting, and which of its values sit at an edge
    of what was tried (the best may lie beyond), at a natural bound, or stopped at a cap."""
    return {n: {"searched": r.search.get("searched", {}), "tried": r.search.get("tried"),
                "walked": walked(r.search.get("searched", {}), r.sweep),
                "chosen": r.setting, "at_edge": r.at_edge, "at_limit": r.at_limit,
                "capped": r.capped}
            for n, r in results.items()}


def walked(searched: dict[str, list], sweep: list[dict]) -> dict[str, list]:
    """The values each setting tried beyond the ends of what its search was given
    (``searched``; a grid walks on past an end where its choice sits:
    :class:`movierec.protocol.EdgeWalk`), by setting; settings that tried none are left out."""
    out = {}
    for key, given in searched.items():
        if not given or not all(isinstance(v, int | float) for v in given):
            continue
        low, high = min(given), max(given)
        past = sorted({row[key] for row in sweep if key in row and not low <= row[key] <= high})
        if past:
            out[key] = past
    return out


def search_runs(results: dict[str, Result]) -> dict[str, dict]:
    """How each model's search ran (not a result: recorded or here, the seconds its fits
    took where they ran, the record's commit, code version and machine)."""
    return {n: {"how": ("a single setting, nothing to search" if r.search.get("how")
                        == "searched here" and r.search.get("tried") == 1
                        else r.search.get("how")),
                "seconds": r.search.get("seconds"),
                **({"record": {"commit": r.search["record"]["git"]["commit"],
                               "code": r.search["record"]["code"],
                               "cpu": r.search["record"]["machine"]["cpu"]}}
                   if "record" in r.search else {})}
            for n, r in results.items()}


def searches_table(results: dict[str, Result]) -> pd.DataFrame:
    """Every model's search in one table: how its setting was chosen, the settings tried,
    the minutes their fits took (where they ran), the choice and its edges."""
    runs, found = search_runs(results), searches(results)
    return pd.DataFrame({n: {"settings tried": f["tried"],
                             "minutes": (runs[n]["seconds"] or 0.0) / 60,
                             "how": runs[n]["how"],
                             "chosen": ", ".join(f"{k}={_short(v)}" for k, v in
                                                 f["chosen"].items()) or "(no setting)",
                             "walked past the grid": "; ".join(
                                 f"{k} " + ", ".join(map(_short, v))
                                 for k, v in f["walked"].items()),
                             "at an edge": ", ".join(f["at_edge"]),
                             "at a natural bound": ", ".join(f["at_limit"]),
                             "stopped at its cap": ", ".join(f["capped"])}
                         for n, f in found.items()}).T


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def readout_line(tuned: dict) -> str:
    """The main model's calibrated rating readout and its age term's weight (a trial's
    ``tuned``), as chosen on val."""
    readout = tuned["readout"]
    line = (f"rating readout calibrated on val: damping {readout['damping']:g} (of "
            f"{READOUT_DAMPINGS}), half-life {readout.get('half_life')} ratings (of None, "
            f"{RECENCY_HALF_LIVES}), scale {readout['scale']:.3f}")
    if tuned.get("age_weight") is not None:
        line += f"; age term's weight on val {tuned['age_weight']:g} (of {AGE_WEIGHTS})"
        if tuned["age_weight"] == max(AGE_WEIGHTS):
            line += " (the largest tried: the best may lie above it)"
    return line


def leaky_tags_ablation(s: Setup, spec, main: Result, *, seed: int, ks: tuple[int, ...],
                        refit: bool) -> tuple[dict, pd.DataFrame]:
    """The main model's chosen setting trained again on every tag, those written after the
    tagger's training cut-off included (the seed's features): (its test headline for
    metrics.json, a table of it beside the headline's)."""
    leaky_exp = s.exp.with_data(s.source.prepare(leak_free_tags=False)[0])
    leaky = run(leaky_exp, Fixed(spec, main.setting), seed=seed, ks=ks, refit=refit)
    table = pd.DataFrame({"leak-free (headline)": main.headline(),
                          "leaky tags (ablation)": leaky.headline()}).T
    return {"leaky_tags": leaky.headline()}, table


def examples(rec, prep, users, k: int = 10, latest: int = 5) -> list[tuple[str, pd.DataFrame]]:
    """For each of ``users``: their ``latest`` ratings, their top ``k`` and (a model with a
    content encoder) why the first was recommended: (caption, table) pairs to show."""
    out = []
    for user_id in users:
        out.append((f"=== user {user_id}: latest ratings",
                    prep.recent_ratings(rec.user_row(user_id), latest)[
                        ["title", "genres", "rating"]]))
        top = rec.recommend(user_id, k=k)
        out.append((f"top {k} for user {user_id}", top[["title", "genres", "score"]].round(3)))
        if rec.model.content is not None:
            out.append((f"why '{top.title[0]}':",
                        rec.explain(user_id, int(top.movieId[0]), top=5).round(4)))
    return out


UNDEFINED_ALLOWED = re.compile(r"_se$")  # a standard error over one user is undefined


def check_defined(tree, path: tuple[str, ...] = ()) -> None:
    """Raise ValueError naming the first undefined (NaN or infinite) number in ``tree``, but
    standard errors (undefined over a single user)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            check_defined(value, (*path, str(key)))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            check_defined(value, (*path, str(i)))
    elif (isinstance(tree, float) and not math.isfinite(tree)
          and not UNDEFINED_ALLOWED.search(path[-1])):
        raise ValueError(f"metrics.json: {'/'.join(path)} is {tree}: an undefined result")


def metrics_record(exp: Experiment, *, parameters: dict, results: dict[str, Result],
                   skipped: dict[str, str], main: str, setting_from: str, uncertainty: dict,
                   ablations: dict, stage_seconds: dict, provenance: dict,
                   coldstart: dict | None = None) -> dict:
    """Everything ``metrics.json`` holds: dataset, split, every model's rating, ranking and
    cold-start metrics, searches, seeds, bootstraps, parameters, timings and provenance (an
    undefined result is an error: :func:`check_defined`)."""
    prep, chosen = exp.prep, results[main]
    record = {
        "dataset": prep.name,
        "features": prep.features.blocks(),
        "summary": prep.summary,
        "split_sizes": prep.split.sizes(),
        "evaluated_users": {"val": len(exp.val_users), "test": len(exp.test_users)},
        "main_model": {"name": main, "setting": chosen.setting, "scored_by": chosen.by,
                       "readout": chosen.trial.tuned["readout"],
                       "age_weight": chosen.trial.tuned.get("age_weight")},
        "rating": {n: r.rating for n, r in results.items() if r.rating},
        "ranking": {n: r.ranking for n, r in results.items() if r.ranking},
        "ranking_by": {n: {**r.ranking_by, "chosen": r.by, "val_ndcg@10": r.trial.val_by}
                       for n, r in results.items() if r.ranking_by},
        "buckets": {n: r.buckets for n, r in results.items() if r.buckets},
        "catalogue": exp.catalogue_leak(),
        "seeds": all_seeds(results),
        "uncertainty": uncertainty,
        "ablations": ablations,
        "coldstart": coldstart or {},
        "sweeps": {n: [{k: v for k, v in row.items() if k != "seconds"} for row in r.sweep]
                   for n, r in results.items()},
        "searches": searches(results),
        "configurations_tried": configurations_tried(results),
        "skipped": skipped,
        "history": {n: h.drop(columns="seconds").to_dict(orient="list")
                    for n, h in histories(results).items()},
        "dropped": prep.dropped,
        "parameters": parameters,
        "search_runs": {"main_setting_from": setting_from, **search_runs(results)},
        "timings": {"stage_seconds": stage_seconds,
                    **{n: {"seconds": r.seconds} for n, r in results.items()}},
        "provenance": provenance,
    }
    check_defined({k: v for k, v in record.items()
                   if k not in ("parameters", "timings", "provenance", "search_runs")})
    return record
