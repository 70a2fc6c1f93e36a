"""Library baselines on the project's protocol, and the paired bootstrap."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from movierec import baselines
from movierec.baselines import BASELINES, baseline
from movierec.data import load_movielens
from movierec.evaluate import per_user_ranking, ranking_metrics, standard_error
from movierec.experiment import Experiment
from movierec.features import release_years
from movierec.prepare import prepare
from movierec.protocol import LARGE_ABOVE, at_edge, run
from movierec.split import TEST, TRAIN, VAL
from movierec.stats import paired_bootstrap, rmse_bootstrap


@pytest.fixture(scope="module")
def exp(tiny_dir):
    return Experiment(prepare(load_movielens(tiny_dir), leak_free_tags=True), torch.device("cpu"))


@pytest.mark.parametrize("name,implicit_items", [("svd", False), ("svdpp", True)])
def test_factor_tables_predict_exactly_what_surprise_predicts(exp, name, implicit_items):
    from surprise import SVD, SVDpp

    prep = exp.prep
    u, m, r = prep.part(TRAIN)
    algo = (SVDpp if implicit_items else SVD)(n_factors=4, n_epochs=3, random_state=0)
    fitted = baselines._factorised(prep, algo, u, m, r, implicit_items)
    vu, vm, _ = prep.part(TEST)
    # include pairs the model never saw: a user or a movie absent from train
    vu = np.concatenate([vu, [0]])
    vm = np.concatenate([vm, [np.setdiff1d(np.arange(prep.n_movies), m)[0]]])
    want = np.array([algo.predict(a, b).est for a, b in zip(vu.tolist(), vm.tolist(),
                                                            strict=True)])
    np.testing.assert_allclose(fitted.predict(vu, vm), want, rtol=1e-9, atol=1e-9)
    # the ranking vectors order movies as the predicted rating does, user by user
    v = fitted.rankings["rating"]
    scores = (v.users[:3] @ v.movies.T + v.offset).numpy()
    pred = np.stack([fitted.predict(np.full(prep.n_movies, i), np.arange(prep.n_movies))
                     for i in range(3)])
    inside = (pred > 0.5) & (pred < 5.0)  # clipping ties the extremes
    for i in range(3):
        a, b = scores[i][inside[i]], pred[i][inside[i]]
        assert (np.argsort(a, kind="stable") == np.argsort(b, kind="stable")).mean() > 0.99


def test_ease_matches_its_closed_form():
    class P:  # the two attributes interactions() needs
        n_users, n_movies = 6, 4

    users = np.array([0, 0, 1, 2, 2, 3, 4, 5, 5, 5])
    movies = np.array([0, 1, 1, 2, 3, 0, 3, 0, 1, 2])
    fitted = baselines.fit_ease(P, users, movies, None, lam=2.0)
    x = np.zeros((6, 4))
    x[users, movies] = 1
    p = np.linalg.inv(x.T @ x + 2.0 * np.eye(4))
    b = np.eye(4) - p / np.diag(p)
    movies = fitted.rankings["score"].movies
    np.testing.assert_allclose(movies.T.numpy(), b, atol=1e-5)
    assert np.allclose(np.diag(movies.numpy()), 0)  # a movie never recommends itself


def test_ease_scores_each_user_by_their_history_times_b(exp):
    """On prepared data: the ranking vectors' users are the users' rated-movie indicators and
    the score of (u, j) is sum over u's movies i of B[i, j] (Steck's X B)."""
    prep = exp.prep
    users, movies, _ = prep.part(TRAIN)
    fitted = baselines.fit_ease(prep, users, movies, None, lam=50.0)
    v = fitted.rankings["score"]
    x = np.zeros((prep.n_users, prep.n_movies))
    x[users, movies] = 1
    assert np.array_equal(v.users.numpy(), x)  # a pair rated twice counts once, as in X
    p = np.linalg.inv(x.T @ x + 50.0 * np.eye(prep.n_movies))
    b = np.eye(prep.n_movies) - p / np.diag(p)
    np.testing.assert_allclose((v.users @ v.movies.T).numpy(), x @ b, atol=1e-4)


def test_tuning_reads_val_picks_its_best_and_reads_test_once_per_seed(exp, monkeypatch):
    fits, tests = [], []
    original_rank, original_fit = Experiment.rank, BASELINES["als"].fit

    def rank(self, vectors, part=TEST, k=50):
        tests.extend([part] if part == TEST else [])
        return original_rank(self, vectors, part, k)

    def fit(prep, users, movies, ratings, **kw):
        fits.append((len(users), kw["seed"]))
        return original_fit(prep, users, movies, ratings, **kw)

    monkeypatch.setattr(Experiment, "rank", rank)
    res = run(exp, baseline("bias"), seed=0, seeds=(1, 2))
    assert len(res.sweep) == len(BASELINES["bias"].settings)
    best = min(res.sweep, key=lambda row: row["val_rmse"])
    assert res.setting == {"damping": best["damping"]}
    assert res.rating["val_rmse"] == best["val_rmse"]
    assert list(res.seeds) == [0]  # deterministic: extra seeds would repeat it
    assert tests == [TEST]  # bias ranks: one test search
    tests.clear()
    als = dataclasses.replace(BASELINES["als"], fit=fit)
    res = run(exp, als, seed=0, seeds=(1,), ks=(5,))
    n_train, n_train_val = len(exp.train), len(exp.train_val)
    assert fits == [(n_train, 0)] * len(als.settings) + [(n_train_val, 0), (n_train_val, 1)]
    assert tests == [TEST, TEST]  # once per seed
    assert set(res.seeds) == {0, 1} and res.kind == "ranking" and not res.rating
    assert max(res.sweep, key=lambda row: row["val_ndcg@10"])["factors"] == res.setting["factors"]
    assert res.per_user["ndcg"].shape == (len(exp.test_users),)


def test_most_popular_ranks_by_training_counts(exp):
    u, m, r = exp.prep.part(TRAIN, VAL)
    fitted = baselines.fit_most_popular(exp.prep, u, m, r)
    top = np.argsort(-fitted.rankings["popularity"].offset.numpy(), kind="stable")[:5]
    counts = np.bincount(m, minlength=exp.prep.n_movies)
    assert (counts[top] == np.sort(counts)[::-1][:5]).all()


def test_skip_reasons_name_the_limit(exp):
    assert "training ratings > 1,000,000" in BASELINES["svdpp"].skip_reason(exp.prep, 2_000_000)
    assert BASELINES["svdpp"].skip_reason(exp.prep, 1000) is None
    big = type("P", (), {"n_movies": 50_000})()
    assert "movie-movie matrix" in BASELINES["ease"].skip_reason(big, 10)


def test_buckets_hold_the_test_movies_rated_so_often_before_test(exp):
    counts = np.bincount(exp.prep.part(TRAIN, VAL)[1], minlength=exp.prep.n_movies)
    seen_users = 0
    for lo, hi in ((0, 0), (1, 5), (6, float("inf"))):
        rows, part = exp.bucket_relevant(lo, hi)
        assert len(rows) > 0 and ((counts[part.indices] >= lo) & (counts[part.indices] <= hi)).all()
        full = exp.test_relevant.select(rows)
        for i in range(len(rows)):  # exactly the user's relevant movies of that bucket
            want = {m for m in full.row(i) if lo <= counts[m] <= hi}
            assert set(part.row(i)) == want
        seen_users += len(rows)
    assert seen_users >= len(exp.test_users)  # every test user is in at least one bucket


def test_per_user_metrics_average_to_the_reported_means_with_standard_errors():
    from movierec.csr import Csr

    rel = Csr.from_pairs(np.array([0, 0, 1, 2]), np.array([1, 2, 0, 3]), 3)
    topk = np.array([[1, 5, 2], [4, 5, 6], [3, -1, -1]])
    per = per_user_ranking(topk, rel, (3,))
    np.testing.assert_allclose(per["recall@3"], [1.0, 0.0, 1.0])
    m = ranking_metrics(topk, rel, (3,))
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["recall@3_se"] == pytest.approx(np.std([1, 0, 1], ddof=1) / np.sqrt(3))
    assert np.isnan(standard_error(np.array([1.0])))


def test_paired_bootstrap_finds_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    b = rng.random(400)
    same = paired_bootstrap(b, b.copy(), n_boot=500)
    assert same["diff"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0
    better = paired_bootstrap(b + 0.05 + 0.01 * rng.standard_normal(400), b, n_boot=500)
    assert 0 < better["ci_low"] < better["diff"] < better["ci_high"]
    assert better["p_not_better"] == 0
    noise = paired_bootstrap(b + 0.3 * rng.standard_normal(400), b, n_boot=500)
    assert noise["ci_low"] < 0 < noise["ci_high"]
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(b, b[:-1])
    with pytest.raises(ValueError, match=r"m vs n, ndcg@10: 1 undefined"):
        paired_bootstrap(np.r_[b[:-1], np.nan], b, what="m vs n, ndcg@10")


def test_bootstrap_intervals_have_the_width_normal_theory_gives():
    """Against an independent reference, not the same draws: with many users the percentile
    interval of a mean difference is about mean ± 1.96 sd / sqrt(n), and that of an RMSE gap
    about gap ± 1.96 times the delta method's standard error."""
    g = np.random.default_rng(3)
    n = 4000
    d = 0.02 + 0.3 * g.standard_normal(n)
    out = paired_bootstrap(d, np.zeros(n), n_boot=2000, seed=1)
    half = 1.96 * d.std(ddof=1) / np.sqrt(n)
    assert out["ci_high"] - out["ci_low"] == pytest.approx(2 * half, rel=0.1)
    assert (out["ci_high"] + out["ci_low"]) / 2 == pytest.approx(d.mean(), abs=0.1 * half)
    counts = g.integers(1, 30, n).astype(float)
    sse_a = counts * g.gamma(4.0, 0.2, n)  # per-user squared errors, two models
    sse_b = sse_a * (1.0 + 0.2 * g.random(n))
    gap = rmse_bootstrap(sse_a, sse_b, counts, n_boot=2000, seed=1)
    total = counts.sum()
    ra, rb = np.sqrt(sse_a.sum() / total), np.sqrt(sse_b.sum() / total)
    assert gap["diff"] == pytest.approx(rb - ra)
    # delta method: the gap's influence of user i, from its sums of squares and count
    infl = ((sse_b - rb**2 * counts) / (2 * rb) - (sse_a - ra**2 * counts) / (2 * ra)) / (
        total / n)
    half = 1.96 * infl.std(ddof=1) / np.sqrt(n)
    assert gap["ci_high"] - gap["ci_low"] == pytest.approx(2 * half, rel=0.1)


def test_rmse_bootstrap_is_the_rmse_gap_over_users_with_ratings():
    n = np.array([2.0, 0.0, 3.0, 1.0])
    sse_a, sse_b = np.array([0.5, 0.0, 1.0, 0.2]), np.array([1.0, 0.0, 2.0, 0.1])
    out = rmse_bootstrap(sse_a, sse_b, n, n_boot=200)
    assert out["diff"] == pytest.approx(np.sqrt(3.1 / 6) - np.sqrt(1.7 / 6))
    # a user without ratings is never drawn: the same interval as without that user
    keep = n > 0
    assert out == rmse_bootstrap(sse_a[keep], sse_b[keep], n[keep], n_boot=200)
    with pytest.raises(ValueError, match="at least two users with ratings"):
        rmse_bootstrap(sse_a, sse_b, np.array([2.0, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="undefined"):
        rmse_bootstrap(np.r_[sse_a[:3], np.nan], sse_b, n)
    # many users, a clearly more accurate model: the interval excludes zero and holds the gap
    g = np.random.default_rng(1)
    counts = g.integers(1, 20, 500).astype(float)
    worse = counts * (1.0 + g.random(500))
    better = rmse_bootstrap(0.8 * worse, worse, counts, n_boot=300)
    assert 0 < better["ci_low"] < better["diff"] < better["ci_high"]
    same = rmse_bootstrap(worse, worse, counts, n_boot=300)
    assert same["diff"] == same["ci_low"] == same["ci_high"] == 0.0


def test_a_setting_on_the_end_of_its_grid_is_flagged():
    sweep = [{"a": 1, "b": x, "val_rmse": 0.0} for x in (1, 2, 3)]
    assert at_edge({"a": 1, "b": 3}, sweep) == ["b"]  # a single-valued axis has no edge
    assert at_edge({"a": 1, "b": 1}, sweep) == ["b"]
    assert at_edge({"a": 1, "b": 2}, sweep) == []
    # an end that is the setting's natural bound is not an edge: nothing lies beyond it
    assert at_edge({"a": 1, "b": 3}, sweep, {"b": (0, 3)}) == []
    knn = BASELINES["knn_baseline"]
    assert max(row["k"] for row in knn.grid(1)) == knn.limits["k"][1]


def test_large_data_gets_the_lean_grid():
    als = BASELINES["als"]
    assert als.grid(1000) == als.settings and len(als.settings) == 48
    lean = als.grid(LARGE_ABOVE + 1)
    assert 0 < len(lean) < len(als.settings) and all(s in als.settings for s in lean)
    assert BASELINES["bias"].grid(10**9) == BASELINES["bias"].settings  # no lean grid


def test_the_wording_rule_follows_the_interval_and_the_seeds():
    from movierec.stats import seed_difference, verdict, verdicts

    def c(lo, hi, seed_diff=0.01, seed_se=0.001):
        return {"diff": (lo + hi) / 2, "ci_low": lo, "ci_high": hi, "seed_diff": seed_diff,
                "seed_se": seed_se, "seeds": 4}

    assert verdict(c(0.001, 0.02)) == "beats"
    assert verdict(c(-0.02, -1e-6, seed_diff=-0.01)) == "loses to"
    assert verdict(c(-0.0215, 0.0)) == "is level with"  # the interval touches zero
    # the interval excludes zero, but another seed moves the difference as much as it is
    assert verdict(c(0.001, 0.02, seed_diff=0.01, seed_se=0.005)) == "is level with"
    assert verdict(c(0.001, 0.02, seed_diff=-0.01)) == "is level with"  # the seeds disagree
    assert verdict(c(0.001, 0.02, seed_se=None)) == "is level with"  # one seed: unknown
    uncert = {"ndcg@10": {"ease": c(-0.0066, 0.0139, 0.004, 0.002),
                          "bpr": c(0.01, 0.03, 0.02, 0.001)},
              "recall@10": {},
              "rmse": {"svdpp": c(-0.0215, -0.0001, -0.0098, 0.0010)},
              "strongest": {"ndcg@10": "ease", "rmse": "svdpp"}}
    assert verdicts(uncert, "main") == [
        "NDCG@10: main beats bpr (+0.0200 [+0.0100, +0.0300], seeds +0.0200 ± 0.0010); is "
        "level with ease (+0.0036 [-0.0066, +0.0139], seeds +0.0040 ± 0.0020).",
        "RMSE: main loses to svdpp (-0.0108 [-0.0215, -0.0001], seeds -0.0098 ± 0.0010)."]
    # over seeds: each of mine paired with the same seed of theirs, or with their one value
    got = seed_difference({1: 0.3, 2: 0.5}, {1: 0.1, 2: 0.4}, lower_better=False)
    assert got["seed_diff"] == pytest.approx(0.15) and got["seed_se"] == pytest.approx(0.05)
    one = seed_difference({1: 0.3, 2: 0.5}, {7: 0.2}, lower_better=False)
    assert one["seed_diff"] == pytest.approx(0.2) and one["seed_se"] == pytest.approx(0.1)
    rmse = seed_difference({1: 0.85, 2: 0.87}, {7: 0.90}, lower_better=True)
    assert rmse["seed_diff"] == pytest.approx(0.04)  # a lower error is ahead
    assert seed_difference({1: 0.3}, {1: 0.1}, lower_better=False)["seed_se"] is None
    with pytest.raises(ValueError, match=r"seeds \[2\] have no value"):
        seed_difference({1: 0.3, 2: 0.5}, {1: 0.1, 3: 0.4}, lower_better=False)


def test_the_main_model_is_bootstrapped_against_every_other_model(exp):
    from movierec import study

    runner_results = {n: run(exp, baseline(n), seed=0, ks=(10,))
                      for n in ("global_mean", "bias", "most_popular")}
    uncert = study.uncertainty(runner_results, "bias", 10, n_boot=50)
    assert set(uncert["rmse"]) == {"global_mean"}  # every other model that rates
    assert set(uncert["ndcg@10"]) == {"most_popular"}  # every other model that ranks
    assert uncert["strongest"]["ndcg@10"] == "most_popular"
    direct = paired_bootstrap(runner_results["bias"].per_user["ndcg"],
                              runner_results["most_popular"].per_user["ndcg"], 50, 0)
    assert {k: v for k, v in uncert["ndcg@10"]["most_popular"].items()
            if k in direct} == direct
    assert uncert["ndcg@10"]["most_popular"]["seeds"] == 1  # deterministic models: one seed
    # a hole is an error naming the model and the metric, never a silent omission or a NaN
    broken = dict(runner_results)
    broken["most_popular"] = dataclasses.replace(runner_results["most_popular"], per_user={
        k: v for k, v in runner_results["most_popular"].per_user.items() if k != "ndcg"})
    with pytest.raises(ValueError, match="most_popular: no per-user ndcg values"):
        study.uncertainty(broken, "bias", 10, n_boot=50)
    nan = dict(runner_results["most_popular"].per_user)
    nan["recall"] = np.where(np.arange(len(nan["recall"])) == 3, np.nan, nan["recall"])
    broken["most_popular"] = dataclasses.replace(runner_results["most_popular"], per_user=nan)
    with pytest.raises(ValueError, match=r"bias vs most_popular, recall@10: 1 undefined"):
        study.uncertainty(broken, "bias", 10, n_boot=50)


def test_newest_unrated_rule_puts_never_rated_recent_movies_first():
    class P:
        n_users, n_movies = 2, 5
        movies = pd.DataFrame({"movieId": [10, 20, 30, 40, 50],
                               "title": ["A (1990)", "B (2015)", "C (2015)", "D", "E (1999)"]})
        release_years = release_years(movies["title"])

    users, movies = np.array([0, 1, 1, 0]), np.array([0, 0, 4, 3])  # A twice, E, D once
    rule = baselines.fit_newest_unrated(P, users, movies, None).rankings["rule"]
    order = np.argsort(-rule.offset.numpy(), kind="stable")
    # unrated B, C (2015; C's larger id first), then rated: A (2 ratings), then D, E (1 each;
    # E's larger id first)
    assert P.movies.movieId[order].tolist() == [30, 20, 10, 50, 40]


def test_newest_rule_orders_every_movie_by_release_year_and_reads_no_rating():
    class P:
        n_users, n_movies = 2, 5
        movies = pd.DataFrame({"movieId": [10, 20, 30, 40, 50],
                               "title": ["A (1990)", "B (2015)", "C (2015)", "D", "E (1999)"]})
        release_years = release_years(movies["title"])

    order_of = {}
    for users, movies in ((np.array([0, 1]), np.array([1, 2])), (np.array([], int),) * 2):
        rule = baselines.fit_newest(P, users, movies, None).rankings["rule"]
        order_of[len(users)] = P.movies.movieId[np.argsort(-rule.offset.numpy(),
                                                           kind="stable")].tolist()
    # 2015 (C's larger id first), 1999, 1990, then D (no year), whatever was rated
    assert order_of[2] == order_of[0] == [30, 20, 50, 10, 40]


def test_catalogue_leak_counts_never_rated_movies_that_test_rates(exp):
    leak = exp.catalogue_leak()
    never = set(range(exp.prep.n_movies)) - set(exp.prep.part(TRAIN, VAL)[1].tolist())
    later = never & set(exp.prep.part(TEST)[1].tolist())
    assert leak == {"movies": exp.prep.n_movies, "never_rated": len(never),
                    "never_rated_rated_in_test": len(later)}
    assert 0 < len(later) < len(never)  # the fixture has both kinds


def test_lightfm_ranks_as_its_own_predictions_and_tunes_its_epochs_on_val(exp):
    from lightfm import LightFM

    u, m, r = exp.prep.part(TRAIN)
    feats = baselines.item_features(exp.prep)
    assert np.allclose(np.asarray(feats.sum(1)).ravel(), 1.0)  # each movie's weights sum to 1
    fitted = baselines.fit_lightfm(exp.prep, u, m, r, seed=3, epochs=5, no_components=8)
    same = LightFM(no_components=8, loss="warp", learning_rate=0.05, random_state=3)
    same.fit_partial(baselines.interactions(exp.prep, u, m), item_features=feats, epochs=5,
                     num_threads=1)
    v = fitted.rankings["score"]
    for user in (0, 7):
        scores = (v.users[user] @ v.movies.T + v.offset).numpy()
        want = same.predict(user, np.arange(exp.prep.n_movies), item_features=feats)
        # the same scores up to the user's own bias, a constant for the user's ranking
        np.testing.assert_allclose(scores - scores.mean(), want - want.mean(), atol=1e-4)
    spec = dataclasses.replace(BASELINES["lightfm"], every=2, patience=1, max_epochs=6,
                               settings=({"no_components": 8, "learning_rate": 0.05},))
    trial = spec.tune(exp, spec.settings[0], 3, 1)
    assert trial.tuned["epochs"] in (2, 4, 6) and trial.row["epochs"] == trial.tuned["epochs"]
    again = baselines.fit_lightfm(exp.prep, u, m, r, seed=3, epochs=trial.tuned["epochs"],
                                  no_components=8, learning_rate=0.05)
    assert exp.val_ranking(again.rankings["score"])["val_ndcg@10"] == trial.row["val_ndcg@10"]


def test_recent_bias_fits_each_part_with_that_parts_recency(exp):
    from movierec.evaluate import BiasBaseline, rmse_mae

    spec = baseline("recent_bias")
    res = run(exp, spec, seed=0)
    assert [{k: r[k] for k in ("damping", "half_life")} for r in res.sweep[:20]] == list(
        spec.settings)  # the grid, then (here) a walk past its end
    assert {"damping", "half_life"} == set(res.setting)
    prep = exp.prep

    def fitted(parts):
        return BiasBaseline(prep.n_users, prep.n_movies, reg_user=res.setting["damping"],
                            reg_movie=res.setting["damping"],
                            half_life=res.setting["half_life"]).fit(*prep.part(*parts),
                                                                   prep.recency(*parts))

    val_u, val_m, val_r = prep.part(VAL)
    assert res.rating["val_rmse"] == rmse_mae(fitted((TRAIN,)).predict(val_u, val_m),
                                              val_r)["rmse"]
    u, m, r = prep.part(TEST)
    assert res.rating["test_rmse"] == rmse_mae(fitted((TRAIN, VAL)).predict(u, m), r)["rmse"]
