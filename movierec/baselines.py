"""Baselines a reviewer trusts, from well-kept libraries, on the project's split and protocol.

Rating: biased matrix factorisation (``svd``), SVD++ (``svdpp``) and item-kNN with baselines
(``knn_baseline``), all from scikit-surprise. Ranking: EASE (a closed form, a few lines of torch),
ALS and BPR on implicit feedback from ``implicit``. Every baseline is tuned like our own models:
each setting of its small grid is fitted on train and scored on val, the best one (val RMSE for
rating, val NDCG@10 for ranking) is refitted on train + val and read on test once.

Implicit-feedback models see every rated movie as an interaction (the rating value is ignored);
the rating models that factor into vectors (SVD, SVD++) are also ranked by their predicted rating.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from movierec.evaluate import BiasBaseline, GlobalMean, rmse_mae
from movierec.experiment import Experiment, per_user_sse
from movierec.prepare import Prepared
from movierec.recommend import RankingVectors
from movierec.split import TEST, TRAIN, VAL
from movierec.train import Ratings

Kind = Literal["rating", "ranking"]
RATING_SCALE = (0.5, 5.0)


@dataclass
class Fitted:
    """A fitted baseline: ``predict`` (rating models) and/or ``vectors`` (a ranking)."""

    predict: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    vectors: RankingVectors | None = None


@dataclass(frozen=True)
class Baseline:
    """A library model, its val grid and where it stops scaling."""

    name: str
    about: str
    kind: Kind
    fit: Callable[..., Fitted]  # fit(prep, users, movies, ratings, seed=, threads=, **setting)
    grid: tuple[dict, ...]
    seeded: bool = True  # False: deterministic, so extra seeds would repeat the same numbers
    max_ratings: int | None = None  # skipped above this many training ratings (too slow)
    max_movies: int | None = None  # skipped above this many movies (memory)
    # above ``large_above`` training ratings, ``large_grid`` (a few settings, each fit taking
    # minutes) replaces ``grid``
    large_grid: tuple[dict, ...] | None = None
    large_above: int = 5_000_000

    def grid_for(self, n_ratings: int) -> tuple[dict, ...]:
        """The val grid tried with ``n_ratings`` training ratings."""
        return (self.large_grid if self.large_grid is not None and n_ratings > self.large_above
                else self.grid)

    def skip_reason(self, prep: Prepared, n_ratings: int) -> str | None:
        """Why this baseline does not run on ``prep`` (None: it runs)."""
        if self.max_ratings is not None and n_ratings > self.max_ratings:
            return (f"{n_ratings:,} training ratings > {self.max_ratings:,}: "
                    f"{self.about.split(':')[0]} fits one rating at a time in one thread")
        if self.max_movies is not None and prep.n_movies > self.max_movies:
            return (f"{prep.n_movies:,} movies > {self.max_movies:,}: the dense movie-movie "
                    "matrix does not fit")
        return None


def interactions(prep: Prepared, users: np.ndarray, movies: np.ndarray) -> sp.csr_matrix:
    """Binary user x movie matrix (float32) of the given rated pairs."""
    data = np.ones(len(users), np.float32)
    x = sp.csr_matrix((data, (users, movies)), shape=(prep.n_users, prep.n_movies))
    x.data[:] = 1.0  # a pair rated twice counts once
    return x


# ---- simple baselines ----

def fit_global_mean(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1) -> Fitted:
    model = GlobalMean().fit(users, movies, ratings)
    return Fitted(model.predict, None)


def fit_bias(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1,
             damping: float = 5.0) -> Fitted:
    """mu + b_user + b_movie (damped means); ranked by predicted rating, i.e. by b_movie."""
    model = BiasBaseline(prep.n_users, prep.n_movies, reg_user=damping,
                         reg_movie=damping).fit(users, movies, ratings)
    vectors = RankingVectors(torch.zeros(prep.n_users, 1), torch.zeros(prep.n_movies, 1),
                             torch.as_tensor(model.movie_bias, dtype=torch.float32))
    return Fitted(model.predict, vectors)


def fit_most_popular(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1
                     ) -> Fitted:
    """Every user gets the movies with the most ratings in the fitted data."""
    counts = np.bincount(movies, minlength=prep.n_movies).astype(np.float32)
    return Fitted(None, RankingVectors(torch.zeros(prep.n_users, 1),
                                       torch.zeros(prep.n_movies, 1), torch.as_tensor(counts)))


# ---- rating models (scikit-surprise) ----

def _trainset(users: np.ndarray, movies: np.ndarray, ratings: np.ndarray):
    from surprise import Dataset, Reader
    frame = pd.DataFrame({"u": users, "m": movies, "r": ratings})
    return Dataset.load_from_df(frame, Reader(rating_scale=RATING_SCALE)).build_full_trainset()


def _factor_tables(prep: Prepared, trainset, algo, implicit_items: bool) -> tuple:
    """Surprise's factors re-indexed by our user/movie rows; a row the model never saw is zero
    (surprise then predicts from the remaining terms, exactly as these arrays do)."""
    u_rows = np.array([trainset.to_raw_uid(i) for i in range(trainset.n_users)], np.int64)
    m_rows = np.array([trainset.to_raw_iid(i) for i in range(trainset.n_items)], np.int64)
    dim = algo.pu.shape[1]
    pu, bu = np.zeros((prep.n_users, dim)), np.zeros(prep.n_users)
    qi, bi = np.zeros((prep.n_movies, dim)), np.zeros(prep.n_movies)
    user_vec = np.asarray(algo.pu, np.float64).copy()
    if implicit_items:  # SVD++: pu + |N(u)|^-1/2 sum of y_j over the user's rated movies
        for inner, rated in trainset.ur.items():
            items = [j for j, _ in rated]
            user_vec[inner] += algo.yj[items].sum(0) / np.sqrt(len(items))
    pu[u_rows], bu[u_rows] = user_vec, algo.bu
    qi[m_rows], bi[m_rows] = algo.qi, algo.bi
    return trainset.global_mean, pu, bu, qi, bi


def _factorised(prep: Prepared, algo, users, movies, ratings, implicit_items: bool) -> Fitted:
    trainset = _trainset(users, movies, ratings)
    algo.fit(trainset)
    mu, pu, bu, qi, bi = _factor_tables(prep, trainset, algo, implicit_items)

    def predict(u: np.ndarray, m: np.ndarray) -> np.ndarray:
        est = mu + bu[u] + bi[m] + np.einsum("ij,ij->i", pu[u], qi[m])
        return np.clip(est, *RATING_SCALE)

    vectors = RankingVectors(torch.as_tensor(pu, dtype=torch.float32),
                             torch.as_tensor(qi, dtype=torch.float32),
                             torch.as_tensor(bi, dtype=torch.float32))
    return Fitted(predict, vectors)


def fit_svd(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1,
            n_factors: int = 100, reg_all: float = 0.02, n_epochs: int = 20) -> Fitted:
    from surprise import SVD
    algo = SVD(n_factors=n_factors, reg_all=reg_all, n_epochs=n_epochs, random_state=seed)
    return _factorised(prep, algo, users, movies, ratings, implicit_items=False)


def fit_svdpp(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1,
              n_factors: int = 20, reg_all: float = 0.02, n_epochs: int = 20) -> Fitted:
    from surprise import SVDpp
    algo = SVDpp(n_factors=n_factors, reg_all=reg_all, n_epochs=n_epochs, random_state=seed,
                 cache_ratings=True)
    return _factorised(prep, algo, users, movies, ratings, implicit_items=True)


def fit_knn_baseline(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1,
                     k: int = 40) -> Fitted:
    """Item-kNN on the baseline residuals (pearson_baseline similarity); rating only."""
    from surprise import KNNBaseline
    algo = KNNBaseline(k=k, sim_options={"name": "pearson_baseline", "user_based": False},
                       verbose=False)
    algo.fit(_trainset(users, movies, ratings))

    def predict(u: np.ndarray, m: np.ndarray) -> np.ndarray:
        return np.array([algo.predict(a, b, clip=True).est for a, b in zip(u.tolist(),
                                                                           m.tolist(),
                                                                           strict=True)])
    return Fitted(predict, None)


# ---- ranking models ----

@torch.no_grad()
def fit_ease(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1,
             lam: float = 500.0) -> Fitted:
    """EASE (Steck 2019): B = I - P diag(1 / diag P), P = (X'X + lam I)^-1; score = X B."""
    x = torch.as_tensor(interactions(prep, users, movies).toarray())
    gram = x.T @ x
    gram.diagonal().add_(lam)  # symmetric positive definite: invert through Cholesky
    p = torch.cholesky_inverse(torch.linalg.cholesky(gram))
    b = -p / p.diagonal()
    b.fill_diagonal_(0.0)
    return Fitted(None, RankingVectors(x, b.T.contiguous(), None))


def _quiet_implicit() -> None:
    """Import ``implicit`` without tqdm's "IProgress not found" warning (it imports
    tqdm.auto; progress bars are off here anyway)."""
    from tqdm import TqdmWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        import implicit.cpu.als
        import implicit.cpu.bpr  # noqa: F401


def _implicit_vectors(model) -> RankingVectors:
    return RankingVectors(torch.as_tensor(np.asarray(model.user_factors)),
                          torch.as_tensor(np.asarray(model.item_factors)), None)


def fit_als(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1,
            factors: int = 64, regularization: float = 0.05, alpha: float = 10.0,
            iterations: int = 15) -> Fitted:
    _quiet_implicit()
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, "blas"):  # implicit's advice: BLAS threads fight its own
        model = AlternatingLeastSquares(factors=factors, regularization=regularization,
                                        alpha=alpha, iterations=iterations,
                                        num_threads=threads, random_state=seed)
        model.fit(interactions(prep, users, movies), show_progress=False)
    return Fitted(None, _implicit_vectors(model))


def fit_bpr(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1,
            factors: int = 64, learning_rate: float = 0.05, regularization: float = 0.01,
            iterations: int = 100) -> Fitted:
    """BPR with one thread: implicit's multi-threaded SGD is not reproducible."""
    _quiet_implicit()
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, "blas"):
        model = BayesianPersonalizedRanking(factors=factors, learning_rate=learning_rate,
                                            regularization=regularization,
                                            iterations=iterations, num_threads=1,
                                            random_state=seed)
        model.fit(interactions(prep, users, movies), show_progress=False)
    return Fitted(None, _implicit_vectors(model))


def _grid(**axes) -> tuple[dict, ...]:
    keys = list(axes)
    out = [{}]
    for k in keys:
        out = [{**o, k: v} for o in out for v in axes[k]]
    return tuple(out)


BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("global_mean", "global mean: the mean training rating for everyone", "rating",
             fit_global_mean, ({},), seeded=False),
    Baseline("bias", "bias: mu + b_user + b_movie, damped means", "rating", fit_bias,
             _grid(damping=(1.0, 2.0, 5.0, 10.0, 25.0)), seeded=False),
    Baseline("most_popular", "most popular: the most-rated movies", "ranking",
             fit_most_popular, ({},), seeded=False),
    Baseline("svd", "SVD (surprise): biased matrix factorisation by SGD", "rating", fit_svd,
             _grid(n_factors=(10, 20, 50, 100), reg_all=(0.02, 0.05, 0.1)), max_ratings=5_000_000),
    Baseline("svdpp", "SVD++ (surprise): biased MF plus implicit feedback from rated movies",
             "rating", fit_svdpp, _grid(reg_all=(0.02, 0.05, 0.1)), max_ratings=1_000_000),
    Baseline("knn_baseline", "KNNBaseline (surprise): item-kNN on baseline residuals",
             "rating", fit_knn_baseline, _grid(k=(40, 80, 160)), seeded=False,
             max_ratings=1_000_000),
    Baseline("ease", "EASE: closed-form item-item linear autoencoder", "ranking", fit_ease,
             _grid(lam=(300.0, 1000.0, 3000.0)), seeded=False, max_movies=20_000),
    Baseline("als", "ALS (implicit): weighted matrix factorisation", "ranking", fit_als,
             _grid(factors=(64, 128, 256), regularization=(1.0, 10.0, 100.0),
                   alpha=(0.5, 1.0, 2.0)),
             large_grid=_grid(factors=(64, 128), regularization=(10.0,), alpha=(1.0,))),
    Baseline("bpr", "BPR (implicit): pairwise ranking matrix factorisation", "ranking", fit_bpr,
             _grid(learning_rate=(0.001, 0.003, 0.01), regularization=(0.01, 0.1)),
             # 100 single-threaded epochs over 23.5M ratings take over 20 minutes a fit
             large_grid=_grid(learning_rate=(0.003, 0.01), regularization=(0.01,),
                              iterations=(15,))),
)}


def baseline(name: str) -> Baseline:
    """The baseline called ``name``; an unknown name raises ValueError listing the known ones."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
    return BASELINES[name]


@dataclass
class BaselineResult:
    """A baseline tuned on val and read on test once per seed."""

    name: str
    kind: Kind
    sweep: list[dict]  # every grid setting with its val metric(s)
    setting: dict  # the chosen one
    rating: dict[str, float]  # val_/test_ rmse, mae (rating models)
    ranking: dict[str, float]  # test ranking metrics (models with vectors)
    cold_start: dict[str, float]
    per_user: dict[str, np.ndarray]  # test recall/ndcg@k, sse, n: means over the seeds
    seeds: dict[int, dict[str, float]]  # seed -> test headline metrics
    seconds: float

    @property
    def at_edge(self) -> list[str]:
        """Settings chosen at the end of their grid axis (the optimum may lie beyond it)."""
        out = []
        for key, value in self.setting.items():
            axis = sorted({row[key] for row in self.sweep})
            if len(axis) > 1 and value in (axis[0], axis[-1]):
                out.append(key)
        return out


def val_score(exp: Experiment, fitted: Fitted, kind: Kind) -> dict[str, float]:
    """Val RMSE and MAE of a rating model, or val recall and NDCG@10 of a ranking one."""
    if kind == "rating":
        u, m, r = exp.prep.part(VAL)
        return {f"val_{k}": v for k, v in rmse_mae(fitted.predict(u, m), r).items()}
    metrics = exp.ranking(fitted.vectors, VAL, ks=(10,))
    return {f"val_{k}": metrics[k] for k in ("recall@10", "ndcg@10")}


def run_baseline(exp: Experiment, name: str, *, seed: int = 0, threads: int = 1,
                 ks: tuple[int, ...] = (10, 20, 50), seeds: tuple[int, ...] = ()
                 ) -> BaselineResult:
    """Tune baseline ``name`` on val (its grid, fitted on train), refit the best setting on
    train + val and evaluate on test, with ``seed`` and each extra seed (seeded models only)."""
    b = baseline(name)
    start = time.perf_counter()
    train, train_val = exp.prep.part(TRAIN), exp.prep.part(TRAIN, VAL)
    sweep = []
    grid = b.grid_for(len(train[0]))
    for setting in grid:
        fitted = b.fit(exp.prep, *train, seed=seed, threads=threads, **setting)
        sweep.append({**setting, **val_score(exp, fitted, b.kind)})
    key, best = ("val_rmse", min) if b.kind == "rating" else ("val_ndcg@10", max)
    chosen = best(sweep, key=lambda row: row[key])
    setting = {k: chosen[k] for k in grid[0]}
    rating = ({k: chosen[k] for k in ("val_rmse", "val_mae")} if b.kind == "rating" else {})
    runs, per_user, ranking, cold = {}, [], {}, {}
    u, m, r = exp.prep.part(TEST)
    test = Ratings.from_arrays(u, m, r, "cpu")
    for s in (seed, *(x for x in seeds if b.seeded and x != seed)):
        fitted = b.fit(exp.prep, *train_val, seed=s, threads=threads, **setting)
        row, users = {}, {}
        if fitted.predict is not None:
            pred = fitted.predict(u, m)
            errors = rmse_mae(pred, r)
            row["test_rmse"] = errors["rmse"]
            if s == seed:
                rating.update({f"test_{k}": v for k, v in errors.items()})
            users["sse"], users["n"] = per_user_sse(pred, test, exp.prep.n_users)
        if fitted.vectors is not None:
            metrics, ranked_users, cold_metrics = exp.test_ranking(fitted.vectors, ks)
            row.update({k: metrics[k] for k in (f"recall@{ks[0]}", f"ndcg@{ks[0]}")})
            users.update(ranked_users)
            if s == seed:
                ranking, cold = metrics, cold_metrics
        runs[s] = row
        per_user.append(users)
    mean_users = {k: np.mean([p[k] for p in per_user], axis=0) for k in per_user[0]}
    return BaselineResult(name, b.kind, sweep, setting, rating, ranking, cold, mean_users, runs,
                          time.perf_counter() - start)
