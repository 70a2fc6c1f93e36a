"""Named model variants and the calls a notebook makes to train and evaluate them.

Every variant is trained on the train split, early-stopped on val and reported on test, with
rating metrics (RMSE, MAE) and ranking metrics on the one protocol of :mod:`movierec.evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from movierec.evaluate import BiasBaseline, GlobalMean, ranking_metrics, rmse_mae
from movierec.model import Encoder, FeatureTensors, ModelConfig, MovieRecModel, Score
from movierec.prepare import Prepared
from movierec.recommend import (
    RankingVectors,
    bias_ranking,
    popularity_ranking,
    ranking_vectors,
    topk_search,
)
from movierec.split import TEST, TRAIN, VAL
from movierec.train import FitResult, Ratings, TrainConfig, fit, predict, rating_errors


@dataclass(frozen=True)
class Variant:
    """A named model design, how it is trained and which val metric tunes it. Training
    settings left None keep the caller's :class:`~movierec.train.TrainConfig` value."""

    name: str
    about: str
    encoder: Encoder
    score: Score
    prior: bool = False  # a learned popularity prior in the retrieval score
    loss: str = "rmse"
    reg: float | None = None
    min_positive: float | None = None
    monitor: str = "val_rmse"  # early stopping on this val metric

    @property
    def mode(self) -> str:
        return "min" if self.monitor == "val_rmse" else "max"

    def model_config(self, exp: Experiment, dim: int, **overrides) -> ModelConfig:
        return exp.model_config(dim=dim, **{"encoder": self.encoder, "score": self.score,
                                            "prior": self.prior, **overrides})

    def train_config(self, base: TrainConfig) -> TrainConfig:
        extra = {k: v for k, v in (("reg", self.reg), ("min_positive", self.min_positive))
                 if v is not None}
        return replace(base, loss=self.loss, **extra)

    def build(self, exp: Experiment, mcfg: ModelConfig, tcfg: TrainConfig, data: Ratings,
              *parts: int) -> MovieRecModel:
        """The initial model (seeded by ``tcfg.seed``) on ``exp.device``, its user history and
        retrieval prior taken from the training data ``data`` (= the split ``parts``)."""
        model = MovieRecModel(mcfg, torch.Generator().manual_seed(tcfg.seed)).to(exp.device)
        if mcfg.user_history:
            model.set_history(exp.history_tensor(mcfg.user_history, *parts))
        if mcfg.prior:
            model.init_prior(exp.positive_counts(data, tcfg.min_positive))
        return model


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("seed", "the seed's design, bugs fixed: content encoder, cosine on the rating scale",
            "content", "cosine"),
    Variant("hybrid", "content + movie-id embedding, rating biases: the rating model",
            "hybrid", "cosine_bias", reg=0.05),
    Variant("hybrid_rank", "the hybrid trained for retrieval (sampled softmax) + RMSE",
            "hybrid", "cosine_bias", prior=True, loss="rmse+softmax", reg=0.05,
            min_positive=3.5, monitor="val_recall@10"),
    Variant("mf", "baseline: biased matrix factorisation, no content features",
            "id", "dot_bias", reg=0.05),
)}


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
    """A trained and evaluated variant, in named parts."""

    name: str
    fit: FitResult  # the final model (refit on train + val if asked) and the tuning history
    rating: dict[str, float]  # epochs, best_epoch, val_rmse, val_mae, test_rmse, test_mae
    ranking: dict[str, float]  # test ranking metrics (recall@10, ...)
    timing: dict[str, float]  # train_seconds, samples_per_second
    model_config: ModelConfig
    train_config: TrainConfig

    @property
    def model(self) -> MovieRecModel:
        return self.fit.model

    @property
    def history(self) -> pd.DataFrame:
        return self.fit.history

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
    variant = VARIANTS[name]
    f = exp.prep.features
    meta = {"variant": name, "dataset": exp.prep.name, "tag_vocab": f.tag_vocab,
            "genome_tags": f.genome_tags, "movie_ids": torch.tensor(f.movie_ids),
            "user_ids": torch.tensor(exp.prep.user_ids)}
    mcfg = variant.model_config(exp, dim, **model_overrides)
    tcfg = variant.train_config(train_config)
    result = fit(variant.build(exp, mcfg, tcfg, exp.train, TRAIN), exp.feats, exp.train, tcfg,
                 exp.validation(variant.monitor), monitor=variant.monitor, mode=variant.mode,
                 checkpoint=ckpt, resume=ckpt is not None, meta=meta)
    rating = {"epochs": len(result.history), "best_epoch": result.best_epoch}
    rating.update({f"val_{k}": v for k, v in rating_errors(
        predict(result.model, exp.feats, exp.val), exp.val.ratings).items()})
    timing = {"train_seconds": result.seconds, "samples_per_second": result.samples_per_second}
    final = result
    if mcfg.user_history and not refit:  # test users are represented by train + val
        result.model.set_history(exp.history_tensor(mcfg.user_history, TRAIN, VAL))
    if refit:
        final = fit(variant.build(exp, mcfg, tcfg, exp.train_val, TRAIN, VAL), exp.feats,
                    exp.train_val, replace(tcfg, epochs=result.best_epoch), None, monitor=None,
                    checkpoint=refit_ckpt, resume=refit_ckpt is not None,
                    meta={**meta, "refit": True})
        timing["train_seconds"] += final.seconds
    rating.update({f"test_{k}": v for k, v in rating_errors(
        predict(final.model, exp.feats, exp.test), exp.test.ratings).items()})
    ranking = exp.ranking(ranking_vectors(final.model, exp.feats), TEST, ks)
    return VariantResult(name, replace(final, history=result.history,
                                       best_epoch=result.best_epoch),
                         rating, ranking, timing, mcfg, tcfg)


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


def rating_table(baselines: dict[str, dict], results: dict[str, VariantResult]
                 ) -> pd.DataFrame:
    """One row per model: val and test RMSE and MAE."""
    rows = {**baselines, **{n: r.rating for n, r in results.items()}}
    cols = ["val_rmse", "val_mae", "test_rmse", "test_mae"]
    return pd.DataFrame.from_dict(rows, orient="index")[cols]


def ranking_results(exp: Experiment, results: dict[str, VariantResult],
                    ks: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """Test ranking metrics of the ranking baselines (most popular, the bias model by predicted
    rating) and of every trained variant, on the one protocol of :class:`Experiment`."""
    out = {"most_popular": exp.ranking(popularity_ranking(exp.prep), TEST, ks),
           "bias": exp.ranking(bias_ranking(exp.prep), TEST, ks)}
    out.update({n: r.ranking for n, r in results.items()})
    return out


def seed_spread(exp: Experiment, name: str, train_config: TrainConfig, seeds: list[int],
                result: VariantResult, metrics: tuple[str, ...], **kwargs
                ) -> dict[int, dict[str, float]]:
    """The variant retrained with each of ``seeds`` (everything else equal), next to
    ``result`` (its run with ``train_config.seed``): seed -> the test ``metrics``."""
    spread = {}
    for s in seeds:
        r = train_variant(exp, name, replace(train_config, seed=s, progress=False), **kwargs)
        spread[s] = {k: r.ranking[k] for k in metrics}
    spread[train_config.seed] = {k: result.ranking[k] for k in metrics}
    return spread


def metrics_record(exp: Experiment, *, parameters: dict, baselines: dict,
                   results: dict[str, VariantResult], ranking: dict, stability: dict,
                   recommend_with: str, stage_seconds: dict, provenance: dict) -> dict:
    """Everything ``metrics.json`` holds: dataset, split, every model's rating and ranking
    metrics, the seed spread, training histories, parameters, timings and provenance."""
    prep = exp.prep
    return {
        "dataset": prep.name,
        "features": prep.features.blocks(),
        "summary": prep.summary,
        "split_sizes": prep.split.sizes(),
        "evaluated_users": {"val": len(exp.val_users), "test": len(exp.test_users)},
        "rating": {**baselines, **{n: r.rating for n, r in results.items()}},
        "ranking": ranking,
        "ranking_seed_stability": {recommend_with: stability} if stability else {},
        "history": {n: r.history.drop(columns="seconds").to_dict(orient="list")
                    for n, r in results.items()},
        "dropped": prep.dropped,
        "parameters": parameters,
        "timings": {"stage_seconds": stage_seconds, **{n: r.timing for n, r in results.items()}},
        "provenance": provenance,
    }
