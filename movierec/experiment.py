"""Named model variants and the calls a notebook makes to train and evaluate them.

Every variant is trained on the train split, early-stopped on val and reported on test, with
rating metrics (RMSE, MAE) and ranking metrics on the one protocol of :mod:`movierec.evaluate`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from movierec.evaluate import BiasBaseline, GlobalMean, ranking_metrics, rmse_mae
from movierec.model import FeatureTensors, ModelConfig, MovieRecModel
from movierec.prepare import Prepared
from movierec.recommend import RankingVectors, ranking_vectors, topk_search
from movierec.split import TEST, TRAIN, VAL
from movierec.train import FitResult, Ratings, TrainConfig, fit, predict, rating_errors

# name -> (model settings, training settings, monitored validation metric)
VARIANTS: dict[str, dict] = {
    "seed": {  # the seed's design, bugs fixed: content encoder, cosine on the rating scale
        "model": {"encoder": "content", "score": "cosine"},
        "train": {"loss": "rmse"},
        "monitor": "val_rmse",
    },
    "hybrid": {  # content + movie-id embedding, rating biases: the rating model
        "model": {"encoder": "hybrid", "score": "cosine_bias"},
        "train": {"loss": "rmse", "reg": 0.05},
        "monitor": "val_rmse",
    },
    "hybrid_rank": {  # the same encoder trained for retrieval (sampled softmax) + RMSE
        "model": {"encoder": "hybrid", "score": "cosine_bias", "prior": True},
        "train": {"loss": "rmse+softmax", "reg": 0.05, "min_positive": 3.5},
        "monitor": "val_recall@10",
    },
    "mf": {  # baseline: biased matrix factorisation, no content features
        "model": {"encoder": "id", "score": "dot_bias"},
        "train": {"loss": "rmse", "reg": 0.05},
        "monitor": "val_rmse",
    },
}


@dataclass
class Experiment:
    """A prepared dataset on a device, with the tensors and ranking sets every variant uses."""

    prep: Prepared
    device: torch.device
    seed: int = 0  # picks the val users that monitor ranking when there are too many
    max_val_users: int = 20_000
    feats: FeatureTensors = field(init=False)
    train: Ratings = field(init=False)
    val: Ratings = field(init=False)
    test: Ratings = field(init=False)

    def __post_init__(self) -> None:
        self.feats = FeatureTensors(self.prep.features, self.device)
        self.train, self.val, self.test = (
            Ratings.from_arrays(*self.prep.part(p), self.device) for p in (TRAIN, VAL, TEST))
        self.train_val = Ratings.from_arrays(*self.prep.part(TRAIN, VAL), self.device)
        self.val_users, self.val_relevant = self.prep.relevant(VAL)
        if len(self.val_users) > self.max_val_users:
            pick = np.sort(np.random.default_rng(self.seed).choice(
                len(self.val_users), self.max_val_users, replace=False))
            self.val_users, self.val_relevant = self.val_users[pick], self.val_relevant.select(pick)
        self.val_history = self.prep.history(TRAIN).select(self.val_users)
        self.test_users, self.test_relevant = self.prep.relevant(TEST)
        self.test_history = self.prep.history(TRAIN, VAL).select(self.test_users)

    def positive_counts(self, data: Ratings, min_rating: float = 0.0) -> torch.Tensor:
        """Per-movie count of the ratings >= ``min_rating`` in ``data``."""
        keep = data.ratings >= min_rating
        return torch.bincount(data.movies[keep], minlength=self.prep.n_movies)

    def history_tensor(self, n: int, *parts: int) -> torch.Tensor:
        return torch.as_tensor(self.prep.recent_items(n, *parts), device=self.device)

    def model_config(self, **overrides) -> ModelConfig:
        f = self.prep.features
        return ModelConfig(
            n_users=self.prep.n_users, n_movies=self.prep.n_movies, n_tags=len(f.tag_vocab),
            n_genres=int(f.genres.indices.max()) + 1 if len(f.genres.indices) else 1,
            n_genome_tags=0 if f.genome is None else f.genome.shape[1],
            global_mean=float(self.train.ratings.mean()), **overrides)

    def rank(self, vectors: RankingVectors, part: int = TEST, k: int = 50
             ) -> np.ndarray:
        """Top-k movie indexes for the evaluated users of ``part`` (history masked)."""
        users, history = ((self.test_users, self.test_history) if part == TEST
                          else (self.val_users, self.val_history))
        rows = torch.as_tensor(users, device=vectors.users.device)
        idx, _ = topk_search(vectors.users[rows], vectors.movies, k, exclude=history,
                             movie_offset=vectors.offset)
        return idx

    def ranking(self, vectors: RankingVectors, part: int = TEST,
                ks: tuple[int, ...] = (10, 20, 50)) -> dict[str, float]:
        relevant = self.test_relevant if part == TEST else self.val_relevant
        return ranking_metrics(self.rank(vectors, part, max(ks)), relevant, ks,
                               n_items=self.prep.n_movies)

    def validation(self, monitor: str):
        """The per-epoch validation function for :func:`movierec.train.fit`."""
        def evaluate(model: MovieRecModel) -> dict[str, float]:
            out = {"val_rmse": rating_errors(predict(model, self.feats, self.val),
                                             self.val.ratings)["rmse"]}
            if monitor.startswith("val_recall"):
                out.update({f"val_{k}": v for k, v in self.ranking(
                    ranking_vectors(model, self.feats), VAL, ks=(10,)).items()
                    if k == "recall@10"})
            return out
        return evaluate


@dataclass
class VariantResult:
    name: str
    fit: FitResult
    metrics: dict[str, float]
    model_config: ModelConfig
    train_config: TrainConfig

    def fold_in_settings(self) -> dict:
        """The training loss a new user is folded in with (:class:`movierec.recommend.FoldIn`)."""
        t = self.train_config
        return {"loss": t.loss, "min_positive": t.min_positive, "rank_weight": t.rank_weight,
                "reg": t.reg}


def train_variant(exp: Experiment, name: str, train_config: TrainConfig, *, dim: int = 64,
                  refit: bool = True, checkpoint_dir=None, ks: tuple[int, ...] = (10, 20, 50),
                  **model_overrides) -> VariantResult:
    """Train a named variant (see :data:`VARIANTS`) and evaluate it.

    Tuning: trained on train, early-stopped on val (val metrics come from this model). Then,
    with ``refit``, retrained from the same initialisation on train + val for the best number of
    epochs, so that every user's most recent ratings inform the test predictions; test metrics
    come from the refit model, evaluated once. With ``checkpoint_dir``, both trainings write
    a checkpoint after every epoch (``<name>.pt``, ``<name>-refit.pt``) and resume from it.
    """
    ckpt = refit_ckpt = None
    if checkpoint_dir is not None:
        ckpt = Path(checkpoint_dir) / f"{name}.pt"
        refit_ckpt = Path(checkpoint_dir) / f"{name}-refit.pt"
    spec = VARIANTS[name]
    f = exp.prep.features
    meta = {"variant": name, "dataset": exp.prep.name, "tag_vocab": f.tag_vocab,
            "genome_tags": f.genome_tags, "movie_ids": torch.tensor(f.movie_ids),
            "user_ids": torch.tensor(exp.prep.user_ids)}
    mcfg = exp.model_config(dim=dim, **{**spec["model"], **model_overrides})
    tcfg = replace(train_config, **spec["train"])

    def new_model(data: Ratings, *parts: int) -> MovieRecModel:
        """The variant's initial model, its history and prior taken from ``parts`` (= data)."""
        model = MovieRecModel(mcfg, torch.Generator().manual_seed(tcfg.seed)).to(exp.device)
        if mcfg.user_history:
            model.set_history(exp.history_tensor(mcfg.user_history, *parts))
        if mcfg.prior:
            model.init_prior(exp.positive_counts(data, tcfg.min_positive))
        return model

    result = fit(new_model(exp.train, TRAIN), exp.feats, exp.train, tcfg,
                 exp.validation(spec["monitor"]), monitor=spec["monitor"],
                 mode="min" if spec["monitor"] == "val_rmse" else "max", checkpoint=ckpt,
                 resume=ckpt is not None, meta=meta)
    metrics = {"epochs": len(result.history), "best_epoch": result.best_epoch,
               "train_seconds": result.seconds,
               "samples_per_second": result.samples_per_second}
    for k, v in rating_errors(predict(result.model, exp.feats, exp.val), exp.val.ratings).items():
        metrics[f"val_{k}"] = v
    final = result
    if mcfg.user_history and not refit:  # test users are represented by train + val
        result.model.set_history(exp.history_tensor(mcfg.user_history, TRAIN, VAL))
    if refit:
        final = fit(new_model(exp.train_val, TRAIN, VAL), exp.feats, exp.train_val,
                    replace(tcfg, epochs=result.best_epoch), None, monitor=None,
                    checkpoint=refit_ckpt, resume=refit_ckpt is not None,
                    meta={**meta, "refit": True})
        metrics["train_seconds"] += final.seconds
    for k, v in rating_errors(predict(final.model, exp.feats, exp.test), exp.test.ratings).items():
        metrics[f"test_{k}"] = v
    vectors = ranking_vectors(final.model, exp.feats)
    metrics.update({f"test_{k}": v for k, v in exp.ranking(vectors, TEST, ks).items()})
    return VariantResult(name, replace(final, history=result.history,
                                       best_epoch=result.best_epoch), metrics, mcfg, tcfg)


def rating_baselines(prep: Prepared) -> dict[str, dict[str, float]]:
    """Global-mean and user+item-bias baselines: val metrics from a fit on train, test metrics
    from a fit on train + val (as the refit models)."""
    out: dict[str, dict[str, float]] = {"global_mean": {}, "bias": {}}
    for part_name, part, fit_parts in (("val", VAL, (TRAIN,)), ("test", TEST, (TRAIN, VAL))):
        data = prep.part(*fit_parts)
        models = {"global_mean": GlobalMean().fit(*data),
                  "bias": BiasBaseline(prep.n_users, prep.n_movies).fit(*data)}
        u, m, r = prep.part(part)
        for name, model in models.items():
            out[name].update({f"{part_name}_{k}": v
                              for k, v in rmse_mae(model.predict(u, m), r).items()})
    return out


def popularity_vectors(prep: Prepared, parts: tuple[int, ...] = (TRAIN, VAL)) -> RankingVectors:
    """Most-popular ranking (rating count in history) as ranking vectors: zero user vectors
    plus a per-movie offset."""
    _, m, _ = prep.part(*parts)
    counts = np.bincount(m, minlength=prep.n_movies).astype(np.float32)
    return RankingVectors(torch.zeros(prep.n_users, 1), torch.zeros(prep.n_movies, 1),
                          torch.as_tensor(counts))


def bias_vectors(prep: Prepared) -> RankingVectors:
    """The user+item bias model ranked by predicted rating (= by movie bias)."""
    b = BiasBaseline(prep.n_users, prep.n_movies).fit(*prep.part(TRAIN, VAL))
    return RankingVectors(torch.zeros(prep.n_users, 1), torch.zeros(prep.n_movies, 1),
                          torch.as_tensor(b.movie_bias, dtype=torch.float32))


def results_table(baselines: dict[str, dict], variants: list[VariantResult]) -> pd.DataFrame:
    """One row per model: rating and ranking metrics side by side."""
    rows = {name: m for name, m in baselines.items()}
    rows.update({v.name: v.metrics for v in variants})
    return pd.DataFrame.from_dict(rows, orient="index")


class Timer:
    """Wall time per named stage: ``with timer("split"): ...``; ``timer.seconds`` is a dict."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


def user_history(prep: Prepared, user_row: int, n: int = 5) -> pd.DataFrame:
    """The user's ``n`` most recent train + val ratings (movieId, title, genres, rating)."""
    mask = (prep.users == user_row) & np.isin(prep.split.labels, (TRAIN, VAL))
    rows = np.flatnonzero(mask)
    rows = rows[np.argsort(prep.timestamps[rows], kind="stable")][-n:]
    frame = prep.movies.iloc[prep.items[rows]][["movieId", "title", "genres"]].copy()
    frame["rating"] = prep.ratings[rows]
    frame["timestamp"] = prep.timestamps[rows]
    return frame.sort_values("timestamp", ascending=False).reset_index(drop=True)


def cold_start_movie(prep: Prepared) -> int:
    """A tagged movie rated only in the test period: no model (refit on train + val included)
    has seen a rating of it, so it stands for a cold-start movie. Returns its movieId (the one
    with most test ratings)."""
    seen = np.bincount(prep.part(TRAIN, VAL)[1], minlength=prep.n_movies)
    later = np.bincount(prep.part(TEST)[1], minlength=prep.n_movies)
    tags = prep.features.tags
    tagged = (np.diff(tags.offsets) > 0) & (tags.indices[tags.offsets[:-1]] > 0)
    score = np.where((seen == 0) & tagged, later, -1)
    if score.max() <= 0:
        score = np.where(seen == 0, later, -1)
    if score.max() <= 0:
        raise ValueError("no movie is rated in the test period only")
    return int(prep.movies["movieId"].iloc[int(np.argmax(score))])
