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

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from movierec.evaluate import (
    RATING_SCALE,
    RECENCY_HALF_LIVES,
    BiasBaseline,
    GlobalMean,
    rmse_mae,
)
from movierec.experiment import Experiment
from movierec.features import bag_matrix
from movierec.prepare import Prepared
from movierec.protocol import (
    L2,
    LEAN_WALK_STEPS,
    WALK_STEPS,
    EdgeWalk,
    Fitted,
    Kind,
    Trial,
    grid,
    large,
)
from movierec.split import TRAIN, VAL
from movierec.tensors import RankingVectors

BIAS_DAMPINGS = (1.0, 2.0, 5.0, 10.0, 25.0)  # the val grid of both bias baselines


@dataclass(frozen=True)
class Baseline:
    """A library model as a :class:`~movierec.protocol.Spec`: its val grid, how it is fitted
    and where it stops scaling."""

    name: str
    about: str
    kind: Kind
    fit: Callable[..., Fitted]  # fit(prep, users, movies, ratings, seed=, threads=, **setting)
    settings: tuple[dict, ...]
    seeded: bool = True  # False: deterministic, so extra seeds would repeat the same numbers
    max_ratings: int | None = None  # skipped above this many training ratings (too slow)
    max_movies: int | None = None  # skipped above this many movies (memory)
    # on large data (protocol.large), ``large_grid`` (a few settings, each fit taking minutes)
    # replaces ``settings``
    large_grid: tuple[dict, ...] | None = None
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)  # natural ranges
    reads_recency: bool = False  # its fit also takes each rating's recency (Prepared.recency)
    baseline = True
    retune = False  # a seed refits the chosen setting; nothing else is tuned per seed

    @property
    def target(self) -> str:
        return "val_rmse" if self.kind == "rating" else "val_ndcg@10"

    def lean(self, n_ratings: int) -> bool:
        """Whether ``n_ratings`` training ratings take the lean ``large_grid``."""
        return self.large_grid is not None and large(n_ratings)

    def grid(self, n_ratings: int) -> tuple[dict, ...]:
        """The val grid tried with ``n_ratings`` training ratings."""
        return self.large_grid if self.lean(n_ratings) else self.settings

    def proposals(self, n_ratings: int, seed: int) -> EdgeWalk:
        """The grid tried with ``n_ratings`` training ratings, walking on past an end where
        its choice sits (:class:`~movierec.protocol.EdgeWalk`; a lean grid one step)."""
        return EdgeWalk(self.grid(n_ratings), self.target, self.limits,
                        LEAN_WALK_STEPS if self.lean(n_ratings) else WALK_STEPS)

    def searched(self, n_ratings: int) -> dict:
        """The axes of the grid tried with ``n_ratings`` training ratings."""
        settings = self.grid(n_ratings)
        return {k: sorted({s[k] for s in settings}) for k in settings[0]}

    def skip_reason(self, prep: Prepared, n_ratings: int) -> str | None:
        """Why this baseline does not run on ``prep`` (None: it runs)."""
        if self.max_ratings is not None and n_ratings > self.max_ratings:
            return (f"{n_ratings:,} training ratings > {self.max_ratings:,}: "
                    f"{self.about.split(':')[0]} fits one rating at a time in one thread")
        if self.max_movies is not None and prep.n_movies > self.max_movies:
            return (f"{prep.n_movies:,} movies > {self.max_movies:,}: the dense movie-movie "
                    "matrix does not fit")
        return None

    def tune(self, exp: Experiment, setting: dict, seed: int, threads: int) -> Trial:
        """``setting`` fitted on train and read on val (RMSE and MAE of a rating model, recall
        and NDCG@10 of a ranking one)."""
        fitted = self._fit(exp, (TRAIN,), seed, threads, setting)
        if self.kind == "rating":
            u, m, r = exp.prep.part(VAL)
            val = {f"val_{k}": v for k, v in rmse_mae(fitted.predict(u, m), r).items()}
        else:
            val = exp.val_ranking(next(iter(fitted.rankings.values())))
        return Trial(setting, {**setting, **val}, val if self.kind == "rating" else {}, fitted,
                     by=next(iter(fitted.rankings), None))

    def refit(self, exp: Experiment, trial: Trial, seed: int, threads: int) -> Fitted:
        return self._fit(exp, (TRAIN, VAL), seed, threads, trial.setting)

    def _fit(self, exp: Experiment, parts: tuple[int, ...], seed: int, threads: int,
             setting: dict) -> Fitted:
        """``setting`` fitted on the split ``parts``."""
        extra = {"recency": exp.prep.recency(*parts)} if self.reads_recency else {}
        return self.fit(exp.prep, *exp.prep.part(*parts), seed=seed, threads=threads,
                        **extra, **setting)


def interactions(prep: Prepared, users: np.ndarray, movies: np.ndarray) -> sp.csr_matrix:
    """Binary user x movie matrix (float32) of the given rated pairs."""
    data = np.ones(len(users), np.float32)
    x = sp.csr_matrix((data, (users, movies)), shape=(prep.n_users, prep.n_movies))
    x.data[:] = 1.0  # a pair rated twice counts once
    return x


# ---- simple baselines ----

def fit_global_mean(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1) -> Fitted:
    model = GlobalMean().fit(users, movies, ratings)
    return Fitted(model.predict)


def fit_bias(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1,
             damping: float = 5.0, half_life: float | None = None,
             recency: np.ndarray | None = None) -> Fitted:
    """mu + b_user + b_movie (damped means; with a ``half_life``, each user's weighted by
    ``recency``: :class:`~movierec.evaluate.BiasBaseline`); ranked by predicted rating, i.e.
    by b_movie."""
    model = BiasBaseline(prep.n_users, prep.n_movies, reg_user=damping, reg_movie=damping,
                         half_life=half_life).fit(users, movies, ratings, recency)
    vectors = RankingVectors(torch.zeros(prep.n_users, 1), torch.zeros(prep.n_movies, 1),
                             torch.as_tensor(model.movie_bias, dtype=torch.float32))
    return Fitted(model.predict, {"rating": vectors})


def fit_most_popular(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1
                     ) -> Fitted:
    """Every user gets the movies with the most ratings in the fitted data."""
    counts = np.bincount(movies, minlength=prep.n_movies).astype(np.float32)
    return Fitted(None, {"popularity": RankingVectors(
        torch.zeros(prep.n_users, 1), torch.zeros(prep.n_movies, 1), torch.as_tensor(counts))})


def _rule(prep: Prepared, order: np.ndarray) -> Fitted:
    """A ranking rule: every user gets the movies in ``order``, first to last."""
    score = np.empty(prep.n_movies, np.float32)
    score[order] = np.arange(prep.n_movies, 0, -1)  # exact in float32 below 2^24 movies
    return Fitted(None, {"rule": RankingVectors(torch.zeros(prep.n_users, 1),
                                                torch.zeros(prep.n_movies, 1),
                                                torch.as_tensor(score))})


def fit_newest(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1) -> Fitted:
    """A rule, no learning, that reads no rating (a cold-start reference that only uses what
    is known of a movie at any cut-off): the newest release year (from the title) first, ties
    by movieId, the larger (later added) first; movies whose title names no year last."""
    years = np.nan_to_num(prep.release_years, nan=0.0)
    return _rule(prep, np.lexsort((-prep.movies["movieId"].to_numpy(), -years)))


def fit_newest_unrated(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1
                       ) -> Fitted:
    """A rule, no learning (a cold-start reference): movies the fitted data never rates first,
    the newest release year (from the title) first among them, then the rest by their count
    of ratings; ties by movieId, the larger (later added) first. On MovieLens it reads the
    future: a catalogue that lists only movies someone rated makes "never rated so far" mean
    "rated later" (:meth:`movierec.experiment.Experiment.catalogue_leak`)."""
    counts = np.bincount(movies, minlength=prep.n_movies)
    years = np.nan_to_num(prep.release_years, nan=0.0)
    return _rule(prep, np.lexsort((-prep.movies["movieId"].to_numpy(), -counts,
                                   -years * (counts == 0), counts > 0)))


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
    return Fitted(predict, {"rating": vectors})


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
    return Fitted(predict)


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
    return Fitted(None, {"score": RankingVectors(x, b.T.contiguous(), None)})


def _quiet_implicit() -> None:
    """Import ``implicit`` without tqdm's "IProgress not found" warning (it imports
    tqdm.auto; progress bars are off here anyway)."""
    from tqdm import TqdmWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        import implicit.cpu.als
        import implicit.cpu.bpr  # noqa: F401


def _implicit_fitted(model) -> Fitted:
    return Fitted(None, {"score": RankingVectors(torch.as_tensor(np.asarray(model.user_factors)),
                                                 torch.as_tensor(np.asarray(model.item_factors)),
                                                 None)})


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
    return _implicit_fitted(model)


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
    return _implicit_fitted(model)


ALL_NEIGHBOURS = 100_000  # a k above any user's count of ratings: every neighbour counts

# Each grid was widened until its choice on ml-latest-small's val is inside it or at the
# setting's natural bound (``limits``); on any dataset a choice at an end walks on past it
# (protocol.EdgeWalk), and the report flags what still sits at an edge (at_edge, at_limit).
# ---- a hybrid model from content: LightFM ----

YEAR_BINS = (1950, 1970, 1980, 1990, 2000, 2005, 2010, 2015)  # release-year features' edges


def item_features(prep: Prepared) -> sp.csr_matrix:
    """Each movie's LightFM features, rows summing to 1: its identity, its genres, its
    (leak-free, as prepared) stemmed tags and its release period (from the title; none when the
    title has no year), a quarter of the weight each for the blocks it has."""
    f, n = prep.features, prep.n_movies
    years = prep.release_years
    period = np.digitize(np.nan_to_num(years, nan=-1), YEAR_BINS)  # 0: before 1950 or none
    blocks = [sp.identity(n, np.float32, format="csr"),
              bag_matrix(f.genres, int(f.genres.indices.max()) + 1),
              bag_matrix(f.tags, len(f.tag_vocab))[:, 1:],  # index 0 is "untagged"
              sp.csr_matrix((np.isfinite(years).astype(np.float32), (np.arange(n), period)),
                            shape=(n, len(YEAR_BINS) + 1))]
    blocks = [sp.csr_matrix(b.multiply(1.0 / np.maximum(b.sum(1), 1e-12))) for b in blocks]
    x = sp.hstack(blocks, format="csr", dtype=np.float32)
    return sp.csr_matrix(x.multiply(1.0 / np.maximum(x.sum(1), 1e-12)), dtype=np.float32)


def lightfm_epochs(prep, users, movies, ratings, *, seed: int = 0, every: int = 10,
                   no_components: int = 64, learning_rate: float = 0.05,
                   item_alpha: float = 0.0, max_sampled: int = 10
                   ) -> Iterator[tuple[int, Fitted]]:
    """LightFM (Kula 2015) with the WARP loss: users and movies as sums of their features'
    embeddings (a movie's: identity, genres, tags, release period; :func:`item_features`),
    trained on every rated movie, one thread (its parallel SGD is not reproducible); yields
    (epochs so far, the model as fitted) every ``every`` epochs. ``max_sampled``: how many
    negatives WARP draws at most for a positive before it gives up (LightFM's default, 10)."""
    from lightfm import LightFM

    feats, x = item_features(prep), interactions(prep, users, movies)
    model = LightFM(no_components=no_components, loss="warp", learning_rate=learning_rate,
                    item_alpha=item_alpha, max_sampled=max_sampled, random_state=seed)
    epochs = 0
    while True:
        model.fit_partial(x, item_features=feats, epochs=every, num_threads=1)
        epochs += every
        bias, vectors = model.get_item_representations(feats)
        _, user_vectors = model.get_user_representations()
        yield epochs, Fitted(None, {"score": RankingVectors(
            torch.as_tensor(user_vectors), torch.as_tensor(vectors), torch.as_tensor(bias))})


def fit_lightfm(prep, users, movies, ratings, *, seed: int = 0, threads: int = 1,
                epochs: int = 30, **setting) -> Fitted:
    """:func:`lightfm_epochs` for ``epochs`` epochs."""
    return next(lightfm_epochs(prep, users, movies, ratings, seed=seed, every=epochs,
                               **setting))[1]


@dataclass(frozen=True)
class EpochTuned(Baseline):
    """A baseline whose epochs are tuned on val as our models' are: trained ``every`` epochs
    at a time (``epochs_fit``), read on val after each, stopped after ``patience`` reads
    without a better val figure or at ``max_epochs``; the refit trains the best count."""

    epochs_fit: Callable[..., Iterator[tuple[int, Fitted]]] | None = None
    every: int = 10
    patience: int = 3
    max_epochs: int = 200

    def tune(self, exp: Experiment, setting: dict, seed: int, threads: int) -> Trial:
        best, best_epochs, best_fitted, stale = None, 0, None, 0
        for epochs, fitted in self.epochs_fit(exp.prep, *exp.prep.part(TRAIN), seed=seed,
                                              every=self.every, **setting):
            val = exp.val_ranking(fitted.rankings["score"])
            if best is None or val[self.target] > best[self.target]:
                best, best_epochs, best_fitted, stale = val, epochs, fitted, 0
            else:
                stale += 1
            if stale >= self.patience or epochs >= self.max_epochs:
                break
        return Trial(setting, {**setting, "epochs": best_epochs, **best}, {}, best_fitted,
                     by="score", tuned={"epochs": best_epochs},
                     capped=[f"epochs ({self.max_epochs})"] if best_epochs >= self.max_epochs
                     else [])

    def refit(self, exp: Experiment, trial: Trial, seed: int, threads: int) -> Fitted:
        return self._fit(exp, (TRAIN, VAL), seed, threads,
                         {"epochs": trial.tuned["epochs"], **trial.setting})


BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("global_mean", "global mean: the mean training rating for everyone", "rating",
             fit_global_mean, ({},), seeded=False),
    Baseline("bias", "bias: mu + b_user + b_movie, damped means", "rating", fit_bias,
             grid(damping=BIAS_DAMPINGS), seeded=False),
    Baseline("recent_bias", "recent bias: mu + b_user + b_movie, each user's damped mean "
             "weighted by recency (half-life in ratings; the main model's readout without its "
             "cosine)", "rating", fit_bias,
             grid(damping=BIAS_DAMPINGS, half_life=RECENCY_HALF_LIVES),
             seeded=False, reads_recency=True,
             # about 11 s a fit over 23.5M ratings on 2 cores
             large_grid=grid(damping=(2.0, 5.0), half_life=RECENCY_HALF_LIVES)),
    Baseline("most_popular", "most popular: the most-rated movies", "ranking",
             fit_most_popular, ({},), seeded=False),
    Baseline("newest", "newest: the newest release first (a rule that reads no rating)",
             "ranking", fit_newest, ({},), seeded=False),
    Baseline("newest_unrated", "newest unrated: never-rated movies first, newest release "
             "first (a rule; reads the catalogue's future)", "ranking", fit_newest_unrated,
             ({},), seeded=False),
    Baseline("svd", "SVD (surprise): biased matrix factorisation by SGD", "rating", fit_svd,
             grid(n_factors=(2, 5, 10, 20, 50), reg_all=(0.005, 0.01, 0.02, 0.05, 0.1)),
             limits={"reg_all": L2}, max_ratings=5_000_000),
    Baseline("svdpp", "SVD++ (surprise): biased MF plus implicit feedback from rated movies",
             "rating", fit_svdpp, grid(reg_all=(0.02, 0.05, 0.1)), limits={"reg_all": L2},
             max_ratings=1_000_000),
    Baseline("knn_baseline", "KNNBaseline (surprise): item-kNN on baseline residuals",
             "rating", fit_knn_baseline, grid(k=(40, 80, 160, 320, 640, ALL_NEIGHBOURS)),
             seeded=False, max_ratings=1_000_000, limits={"k": (1, ALL_NEIGHBOURS)}),
    Baseline("ease", "EASE: closed-form item-item linear autoencoder", "ranking", fit_ease,
             grid(lam=(300.0, 1000.0, 3000.0)), seeded=False, max_movies=20_000),
    Baseline("als", "ALS (implicit): weighted matrix factorisation", "ranking", fit_als,
             grid(factors=(64, 128, 256), regularization=(1.0, 3.0, 10.0, 30.0),
                  alpha=(0.1, 0.25, 0.5, 1.0)),
             # alpha 0.25 won on val on ml-latest-small (of 4) and on generated full-scale
             # data (of 2); the regularisation each chose: about 5 min a fit over 23.5M ratings
             large_grid=grid(factors=(128,), regularization=(3.0, 10.0), alpha=(0.25,))),
    EpochTuned("lightfm", "LightFM (lightfm-next): WARP on users and movies as sums of their "
               "features' embeddings (identity, genres, tags, release period)", "ranking",
               # max_sampled: a val probe (docs/research.md) found its default, 10, short
               fit_lightfm, grid(no_components=(32, 64, 128), learning_rate=(0.01, 0.02, 0.05),
                                 max_sampled=(10, 30, 100)),
               epochs_fit=lightfm_epochs, max_ratings=5_000_000),
    Baseline("bpr", "BPR (implicit): pairwise ranking matrix factorisation", "ranking", fit_bpr,
             grid(learning_rate=(0.001, 0.003, 0.01),
                  regularization=(0.0, 0.001, 0.003, 0.01, 0.03)),
             limits={"regularization": L2},
             # 100 single-threaded epochs over 23.5M ratings take over 20 minutes a fit
             large_grid=grid(learning_rate=(0.003, 0.01), regularization=(0.003,),
                             iterations=(15,))),
)}


def baseline(name: str) -> Baseline:
    """The baseline called ``name``; an unknown name raises ValueError listing the known ones."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
    return BASELINES[name]
