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
from torch import nn

from movierec.csr import Csr
from movierec.evaluate import BiasBaseline, per_user_ranking, ranking_metrics, rmse_mae
from movierec.model import BY, Encoder, FeatureTensors, ModelConfig, MovieRecModel, Score
from movierec.prepare import Prepared
from movierec.recommend import RankingVectors, ranking_vectors, topk_search
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
    prior: bool = False  # a fixed popularity prior (log count) in the retrieval score
    loss: str = "rmse"
    reg: float | None = None
    min_positive: float | None = None
    monitor: str = "val_rmse"  # early stopping on this val metric
    # "learned": the rating head trained with the model; "calibrated": after training, damped
    # biases + a scale on the cosine chosen on val (calibrate_readout), the vectors unchanged
    readout: str = "learned"

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
        if model.content is not None:
            model.content.set_bases(exp.feats)
        if mcfg.user_history:
            model.set_history(exp.history_tensor(mcfg.user_history, *parts))
        if mcfg.prior:
            model.init_prior(exp.positive_counts(data, tcfg.min_positive))
        if model.seen is not None:
            model.set_seen(exp.positive_counts(data) > 0)
        return model


def variant(name: str) -> Variant:
    """The variant called ``name``; an unknown name raises ValueError listing the known ones."""
    if name not in VARIANTS:
        raise ValueError(f"unknown model variant {name!r}; known: {sorted(VARIANTS)}")
    return VARIANTS[name]


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("seed", "the seed's design, bugs fixed: content encoder, cosine on the rating scale",
            "content", "cosine"),
    Variant("hybrid", "content + movie-id embedding, rating biases: the rating model",
            "hybrid", "cosine_bias", reg=0.05),
    Variant("hybrid_rank", "the main model: the hybrid trained with RMSE + w x sampled softmax, "
            "its rating readout calibrated on val",
            "hybrid", "cosine_bias", prior=True, loss="rmse+softmax", reg=0.05,
            min_positive=3.5, monitor="val_ndcg@10", readout="calibrated"),
    Variant("mf", "baseline: biased matrix factorisation, no content features",
            "id", "dot_bias", reg=0.05),
)}


READOUT_DAMPINGS = (2.0, 5.0, 10.0)
READOUT_SCALES = tuple(float(x) for x in np.arange(0.0, 2.01, 0.125))


@dataclass
class Experiment:
    """A prepared dataset on a device, with the tensors and ranking sets every variant uses."""

    prep: Prepared
    device: torch.device
    seed: int = 0  # picks the val users that monitor ranking when there are too many
    max_val_users: int = 20_000
    max_test_users: int | None = None  # None: every test user is ranked; else a seeded sample
    tag_rank: int = 0  # > 0: content encoders read tag bags projected on this many columns
    genome_rank: int = 0  # > 0: the same for genome rows (see FeatureTensors)
    feats: FeatureTensors = field(init=False)
    train: Ratings = field(init=False)
    val: Ratings = field(init=False)
    test: Ratings = field(init=False)

    def __post_init__(self) -> None:
        self.feats = FeatureTensors(self.prep.features, self.device, self.tag_rank,
                                    self.genome_rank)
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
        n_test = len(self.test_users)
        if self.max_test_users is not None and n_test > self.max_test_users:
            pick = np.sort(np.random.default_rng([self.seed, 1]).choice(
                n_test, self.max_test_users, replace=False))
            self.test_users, self.test_relevant = self.test_users[pick], self.test_relevant.select(
                pick)
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
            global_mean=float(self.train.ratings.mean()), tag_rank=self.feats.rank("tag"),
            genome_rank=self.feats.rank("genome"), **overrides)

    def rank(self, vectors: RankingVectors, part: int = TEST, k: int = 50
             ) -> np.ndarray:
        """Top-k movie indexes for the evaluated users of ``part`` (history masked)."""
        users, history = ((self.test_users, self.test_history) if part == TEST
                          else (self.val_users, self.val_history))
        rows = torch.as_tensor(users, device=vectors.users.device)
        idx, _ = topk_search(vectors.users[rows], vectors.movies, k, exclude=history,
                             movie_offset=vectors.offset)
        return idx

    def relevant_of(self, part: int) -> Csr:
        return self.test_relevant if part == TEST else self.val_relevant

    def ranking(self, vectors: RankingVectors, part: int = TEST,
                ks: tuple[int, ...] = (10, 20, 50)) -> dict[str, float]:
        """Ranking metrics (user means and standard errors, coverage) of ``part``."""
        return ranking_metrics(self.rank(vectors, part, max(ks)), self.relevant_of(part), ks,
                               n_items=self.prep.n_movies)

    def cold_relevant(self) -> tuple[np.ndarray, Csr]:
        """Test users with a relevant movie that nobody rated in train + val (positions in
        ``test_users``) and those cold movies alone."""
        rated = np.zeros(self.prep.n_movies, bool)
        rated[self.prep.part(TRAIN, VAL)[1]] = True
        rel = self.test_relevant
        keep = ~rated[rel.indices]
        users = np.repeat(np.arange(len(rel.lengths())), rel.lengths())[keep]
        cold = Csr.from_pairs(users, rel.indices[keep], len(rel.lengths()))
        rows = np.flatnonzero(cold.lengths() > 0)
        return rows, cold.select(rows)

    def test_ranking(self, vectors: RankingVectors, ks: tuple[int, ...] = (10, 20, 50)
                     ) -> tuple[dict[str, float], dict[str, np.ndarray], dict[str, float]]:
        """One top-k search of the test users, three readings of it: the ranking metrics;
        each user's recall and NDCG at ``ks[0]`` (for the paired bootstrap); and the cold-start
        metrics at 10 and 50, with only never-rated movies relevant (users who have one; every
        movie outside the user's history is still a candidate)."""
        topk = self.rank(vectors, TEST, max(*ks, 50))
        metrics = ranking_metrics(topk[:, :max(ks)], self.test_relevant, ks,
                                  n_items=self.prep.n_movies)
        values = per_user_ranking(topk, self.test_relevant, (ks[0],))
        per_user = {m: values[f"{m}@{ks[0]}"] for m in ("recall", "ndcg")}
        rows, cold = self.cold_relevant()
        cold_metrics = {**ranking_metrics(topk[rows, :50], cold, (10, 50)), "users": len(rows),
                        "relevant_pairs": len(cold.indices)}
        return metrics, per_user, cold_metrics

    def validation(self, monitor: str):
        """The per-epoch validation function for :func:`movierec.train.fit`: val RMSE, and
        val recall@10 and NDCG@10 when ``monitor`` is a ranking metric."""
        def evaluate(model: MovieRecModel) -> dict[str, float]:
            out = {"val_rmse": rating_errors(predict(model, self.feats, self.val),
                                             self.val.ratings)["rmse"]}
            if "@" in monitor:
                metrics = self.ranking(ranking_vectors(model, self.feats), VAL, ks=(10,))
                out.update({f"val_{k}": metrics[k] for k in ("recall@10", "ndcg@10")})
            return out
        return evaluate


def per_user_sse(pred: np.ndarray, data: Ratings, n_users: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-user sum of squared errors and rating count over ``data`` (every user row; 0 for a
    user without ratings there), from which RMSE over any set of users follows."""
    users = data.users.cpu().numpy()
    err = np.asarray(pred, np.float64) - data.ratings.cpu().numpy().astype(np.float64)
    return (np.bincount(users, err**2, n_users),
            np.bincount(users, minlength=n_users).astype(np.float64))


@torch.no_grad()
def pair_cosines(model: MovieRecModel, feats: FeatureTensors, data: Ratings) -> np.ndarray:
    """cos(user, movie) of every (user, movie) pair of ``data`` (float64)."""
    model.eval()
    movies = nn.functional.normalize(model.all_movie_vectors(feats), dim=1)
    users = nn.functional.normalize(model.all_user_vectors(), dim=1)
    return (users[data.users] * movies[data.movies]).sum(1).double().cpu().numpy()


def calibrate_readout(exp: Experiment, model: MovieRecModel, parts: tuple[int, ...],
                      setting: dict | None = None) -> dict:
    """Set ``model``'s rating map to mu + b_user + b_movie + scale · cos(user, movie), biases
    the damped means of the split ``parts`` (:class:`~movierec.evaluate.BiasBaseline`). With
    ``setting`` None, the damping and scale are chosen on val (the grid READOUT_DAMPINGS x
    READOUT_SCALES, lowest val RMSE; ``model`` is then the model fitted on train); else
    ``setting`` is applied (to the model refit on train + val). Returns the setting."""
    fit_data = exp.prep.part(*parts)
    biases = {d: BiasBaseline(exp.prep.n_users, exp.prep.n_movies, reg_user=d,
                              reg_movie=d).fit(*fit_data)
              for d in ((setting["damping"],) if setting else READOUT_DAMPINGS)}
    if setting is None:
        cos = pair_cosines(model, exp.feats, exp.val)
        u, m = exp.val.users.cpu().numpy(), exp.val.movies.cpu().numpy()
        truth = exp.val.ratings.cpu().numpy()
        scores = {(d, s): rmse_mae(b.mean + b.user_bias[u] + b.movie_bias[m] + s * cos,
                                   truth)["rmse"]
                  for d, b in biases.items() for s in READOUT_SCALES}
        damping, scale = min(scores, key=scores.get)
        setting = {"damping": damping, "scale": scale}
    b = biases[setting["damping"]]
    model.head.set_readout(b.mean, b.user_bias, b.movie_bias, setting["scale"])
    return setting


@dataclass
class VariantResult:
    """A trained and evaluated variant, in named parts."""

    name: str
    fit: FitResult  # the final model (refit on train + val if asked) and the tuning history
    rating: dict[str, float]  # epochs, best_epoch, val_rmse, val_mae, test_rmse, test_mae
    ranking: dict[str, float]  # test ranking metrics (recall@10, ...) scored the chosen way
    timing: dict[str, float]  # train_seconds, samples_per_second
    model_config: ModelConfig
    train_config: TrainConfig
    by: str = "cosine"  # the scoring chosen on val: "cosine" (retrieval) or "rating"
    val_by: dict[str, float] = field(default_factory=dict)  # val NDCG@10 of each scoring
    ranking_by: dict[str, dict] = field(default_factory=dict)  # test metrics of each scoring
    per_user: dict[str, np.ndarray] = field(default_factory=dict)  # test recall/ndcg, sse, n
    cold_start: dict[str, float] = field(default_factory=dict)  # see Experiment.test_ranking
    readout: dict = field(default_factory=dict)  # a calibrated rating map's damping and scale

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


def choose_scoring(exp: Experiment, model: MovieRecModel) -> tuple[str, dict[str, float]]:
    """The one rule for how a model that can both rate and retrieve is ranked: by whichever of
    its retrieval score ("cosine") and its predicted rating ("rating") has the higher val
    NDCG@10 (ties: the model's default). Returns (choice, val NDCG@10 of each)."""
    val = {by: exp.ranking(ranking_vectors(model, exp.feats, by), VAL, ks=(10,))["ndcg@10"]
           for by in BY}
    best = max(val.values())
    choice = model.default_ranking if val[model.default_ranking] == best else max(val,
                                                                                  key=val.get)
    return choice, val


def train_variant(exp: Experiment, name: str, train_config: TrainConfig, *, dim: int = 64,
                  refit: bool = True, checkpoint_dir=None, ks: tuple[int, ...] = (10, 20, 50),
                  test: bool = True, tuned: VariantResult | None = None,
                  **model_overrides) -> VariantResult:
    """Train a named variant (see :data:`VARIANTS`) and evaluate it.

    Tuning: trained on train, early-stopped on val (val metrics, and the choice of scoring by
    :func:`choose_scoring`, come from this model). ``test=False`` stops here (a sweep never
    reads test). Then, with ``refit``, retrained from the same initialisation on train + val
    for the best number of epochs, so that every user's most recent ratings inform the test
    predictions; test metrics come from the refit model, read once, both scorings recorded.
    With ``checkpoint_dir``, both trainings write a checkpoint after every epoch
    (``<name>.pt``, ``<name>-refit.pt``) and resume from it. ``tuned``: the result of an
    earlier ``test=False`` call with the same settings (a sweep's chosen run), whose tuning is
    reused instead of repeated.
    """
    ckpt = refit_ckpt = None
    if checkpoint_dir is not None:
        ckpt = Path(checkpoint_dir) / f"{name}.pt"
        refit_ckpt = Path(checkpoint_dir) / f"{name}-refit.pt"
    spec = variant(name)
    f = exp.prep.features
    meta = {"variant": name, "dataset": exp.prep.name, "tag_vocab": f.tag_vocab,
            "genome_tags": f.genome_tags, "movie_ids": torch.tensor(f.movie_ids),
            "user_ids": torch.tensor(exp.prep.user_ids)}
    mcfg = spec.model_config(exp, dim, **model_overrides)
    tcfg = spec.train_config(train_config)
    if tuned is not None:
        if (tuned.name, tuned.model_config) != (name, mcfg) or replace(
                tuned.train_config, progress=tcfg.progress) != tcfg:
            raise ValueError(f"the tuned run of {tuned.name!r} has other settings than these")
        out = replace(tuned, train_config=tcfg, rating=dict(tuned.rating),
                      timing=dict(tuned.timing))
        return _test_variant(exp, spec, out, refit, ks, refit_ckpt, meta) if test else out
    result = fit(spec.build(exp, mcfg, tcfg, exp.train, TRAIN), exp.feats, exp.train, tcfg,
                 exp.validation(spec.monitor), monitor=spec.monitor, mode=spec.mode,
                 checkpoint=ckpt, resume=ckpt is not None, meta=meta)
    readout = (calibrate_readout(exp, result.model, (TRAIN,))
               if spec.readout == "calibrated" else {})
    rating = {"epochs": len(result.history), "best_epoch": result.best_epoch}
    rating.update({f"val_{k}": v for k, v in rating_errors(
        predict(result.model, exp.feats, exp.val), exp.val.ratings).items()})
    timing = {"train_seconds": result.seconds, "samples_per_second": result.samples_per_second}
    by, val_by = choose_scoring(exp, result.model)
    out = VariantResult(name, result, rating, {}, timing, mcfg, tcfg, by, val_by,
                        readout=readout)
    return _test_variant(exp, spec, out, refit, ks, refit_ckpt, meta) if test else out


def _test_variant(exp: Experiment, spec: Variant, out: VariantResult, refit: bool,
                  ks: tuple[int, ...], refit_ckpt, meta: dict) -> VariantResult:
    """Refit a tuned variant on train + val (if asked) and read test once (train_variant)."""
    result, mcfg, tcfg = out.fit, out.model_config, out.train_config
    rating, timing, readout, by = out.rating, out.timing, out.readout, out.by
    final = result
    if mcfg.user_history and not refit:  # test users are represented by train + val
        result.model.set_history(exp.history_tensor(mcfg.user_history, TRAIN, VAL))
    if refit:
        final = fit(spec.build(exp, mcfg, tcfg, exp.train_val, TRAIN, VAL), exp.feats,
                    exp.train_val, replace(tcfg, epochs=result.best_epoch), None, monitor=None,
                    checkpoint=refit_ckpt, resume=refit_ckpt is not None,
                    meta={**meta, "refit": True})
        timing["train_seconds"] += final.seconds
        if readout:
            calibrate_readout(exp, final.model, (TRAIN, VAL), readout)
    pred = predict(final.model, exp.feats, exp.test)
    rating.update({f"test_{k}": v for k, v in rating_errors(pred, exp.test.ratings).items()})
    vectors = {b: ranking_vectors(final.model, exp.feats, b) for b in BY}
    out.ranking_by = {b: exp.ranking(v, TEST, ks) for b, v in vectors.items() if b != by}
    out.ranking, per_user, out.cold_start = exp.test_ranking(vectors[by], ks)
    out.ranking_by[by] = out.ranking
    out.ranking_by = {b: out.ranking_by[b] for b in BY}  # in BY's order
    sse, n = per_user_sse(pred.cpu().numpy(), exp.test, exp.prep.n_users)
    out.per_user = {**per_user, "sse": sse, "n": n}
    out.fit = replace(final, history=result.history, best_epoch=result.best_epoch)
    return out
