"""Our models: named designs (:data:`VARIANTS`) and how the protocol searches, tunes, refits and
tests them (:class:`VariantSpec`).

Tuning one setting: trained on train and early-stopped on val (the best epoch's state is kept);
a calibrated rating readout is chosen on val; the scoring (retrieval or predicted rating) with
the higher val NDCG@10 is chosen. The refit: retrained from the same initialisation on train +
val for the best number of epochs (so every user's latest ratings inform the test predictions),
with the tuned readout.

The main model's settings have no default here: each comes from its setting (the notebook's
``MAIN_SETTING``: make tune's choice, or the search of :data:`MAIN_SPACE` run in the report).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from movierec.age import AGE_WEIGHTS, age_inputs, year_span
from movierec.evaluate import RECENCY_HALF_LIVES, BiasBaseline, lower_is_better, rmse_mae
from movierec.experiment import Experiment
from movierec.loss import Objective
from movierec.model import BY, Encoder, ModelConfig, MovieRecModel, Score, biased_rating
from movierec.protocol import (
    L2,
    LEAN_WALK_STEPS,
    WALK_STEPS,
    EdgeWalk,
    Fitted,
    Fixed,
    Trial,
    choose_by,
    grid,
    large,
    val_rankings,
)
from movierec.split import TRAIN, VAL
from movierec.tensors import Ratings
from movierec.train import FitResult, TrainConfig, fit, predict, rating_errors


@dataclass(frozen=True)
class Variant:
    """A named model design: its parts, its objective and which val metric tunes it."""

    name: str
    about: str
    encoder: Encoder
    score: Score
    prior: bool = False  # a fixed popularity prior (log count) in the retrieval score
    objective: Objective = field(default_factory=Objective)
    monitor: str = "val_rmse"  # early stopping (and the choice among settings) on this
    # "learned": the rating head trained with the model; "calibrated": after training, damped
    # biases + a scale on the cosine chosen on val (calibrate_readout), the vectors unchanged
    readout: str = "learned"
    age_term: bool = False  # a movie's age at the user's now in the retrieval score (movierec.age)
    age_now: str = "user"  # whose now the age is read at (movierec.age.NOWS; "cut": a global cut)
    requires: tuple[str, ...] = ()  # settings without a default: each setting must name them
    axes: dict[str, tuple] = field(default_factory=dict)  # its val grid on every dataset
    large_axes: dict[str, tuple] | None = None  # the grid on large data (protocol.large)


# setting -> ("log", low, high) | ("choice", values): the main model's search space (make tune,
# or the report's own search where no record exists). Each choice reaches a step beyond the
# values chosen before (64 dimensions, 256 or 1,024 negatives, positives from 3.5 or 4), so that a
# choice at an end of the space is news, not the space's design (docs/research.md).
MAIN_SPACE: dict[str, tuple] = {
    "rank_weight": ("log", 0.1, 10.0),
    "temperature": ("log", 0.03, 0.5),
    "reg": ("log", 0.001, 0.3),
    "dim": ("choice", (32, 64, 128, 256)),
    "lr": ("log", 0.003, 0.05),
    "dense_lr": ("log", 0.001, 0.01),
    "n_negatives": ("choice", (64, 256, 1024, 4096)),
    "min_positive": ("choice", (3.0, 3.5, 4.0, 4.5)),
}
# on large data (protocol.large) a trial is a training of minutes to hours: the size and the
# negatives are fixed at values the full path has run at (docs/performance.md) and the ranges
# narrowed around what small-data searches chose, as the baselines' lean grids are
MAIN_LARGE_SPACE: dict[str, tuple] = {
    "rank_weight": ("log", 0.5, 5.0),
    "temperature": ("log", 0.1, 0.5),
    "reg": ("log", 0.003, 0.1),
    "dim": ("choice", (64,)),
    "lr": ("log", 0.003, 0.03),
    "dense_lr": ("log", 0.001, 0.01),
    "n_negatives": ("choice", (256,)),
    "min_positive": ("choice", (3.5, 4.0)),
}

VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("seed", "the seed's design, bugs fixed: content encoder, cosine on the rating scale",
            "content", "cosine", axes={"lr": (0.003, 0.01, 0.03)}, large_axes={}),
    Variant("hybrid", "content + movie-id embedding, rating biases: the rating model",
            "hybrid", "cosine_bias", objective=Objective(reg=0.05),
            axes={"reg": (0.01, 0.05, 0.2), "dim": (32, 64, 128)}, large_axes={}),
    Variant("hybrid_rank", "the main model: the hybrid trained with RMSE + w x sampled softmax, "
            "its rating readout calibrated on val",
            "hybrid", "cosine_bias", prior=True, monitor="val_ndcg@10", readout="calibrated",
            age_term=True, requires=tuple(MAIN_SPACE)),
    Variant("mf", "baseline: biased matrix factorisation, no content features",
            "id", "dot_bias", objective=Objective(reg=0.05),
            axes={"reg": (0.01, 0.03, 0.1, 0.3), "dim": (32, 64, 128)},
            # a full-scale epoch of mf takes about a minute: two settings there
            large_axes={"reg": (0.02, 0.05)}),
)}


def variant(name: str) -> Variant:
    """The variant called ``name``; an unknown name raises ValueError listing the known ones."""
    if name not in VARIANTS:
        raise ValueError(f"unknown model variant {name!r}; known: {sorted(VARIANTS)}")
    return VARIANTS[name]


def suggest(trial, space: dict[str, tuple]) -> dict:
    """One setting drawn by an Optuna ``trial`` from ``space``."""
    out = {}
    for name, (kind, *args) in space.items():
        if kind == "log":
            out[name] = trial.suggest_float(name, args[0], args[1], log=True)
        elif kind == "choice":
            out[name] = trial.suggest_categorical(name, list(args[0]))
        else:
            raise ValueError(f"unknown kind {kind!r} of setting {name!r}")
    return out


class Tpe:
    """Proposals of ``trials`` settings of ``space`` by Optuna's TPE sampler seeded with
    ``seed``, each proposal after the val figures of the ones before (:meth:`tell`); the same
    seed and figures propose the same settings. Multivariate TPE (the settings' joint density,
    not one density per setting: the main model's rank weight, temperature and positive
    threshold act together) after a random start of a third of the budget (independent TPE
    after ten random trials locked 56 of 60 trials on one threshold: docs/research.md)."""

    def __init__(self, space: dict[str, tuple], trials: int, seed: int, minimize: bool) -> None:
        import warnings

        from tqdm import TqdmWarning

        with warnings.catch_warnings():  # optuna imports tqdm.auto: no widgets in a notebook
            warnings.simplefilter("ignore", TqdmWarning)
            import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space, self.left, self.trial = space, trials, None
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True,
                                             n_startup_trials=max(10, trials // 3))
        self.study = optuna.create_study(direction="minimize" if minimize else "maximize",
                                         sampler=sampler)

    def ask(self) -> dict | None:
        if self.left == 0:
            return None
        self.left -= 1
        self.trial = self.study.ask()
        return suggest(self.trial, self.space)

    def tell(self, value: float) -> None:
        self.study.tell(self.trial, value)


# the calibrated readout's bias dampings tried on val (its scale is fitted, not gridded: a
# denser dataset chose the old grid's largest scale, 2, and its largest damping, 10)
READOUT_DAMPINGS = (2.0, 5.0, 10.0, 25.0, 50.0)
_FIELDS = {cls: {f.name for f in dataclasses.fields(cls)}
           for cls in (Objective, ModelConfig, TrainConfig)}


@dataclass(frozen=True)
class VariantSpec:
    """A variant as a :class:`~movierec.protocol.Spec`: its training settings, embedding size
    and what its val search tries: a grid (``axes``: a setting's name -> its values; a name of
    an :class:`~movierec.loss.Objective`, :class:`~movierec.model.ModelConfig` or
    :class:`~movierec.train.TrainConfig` field, e.g. ``{"rank_weight": [0.1, 1.0]}``), or
    ``trials`` settings of a ``space`` (:data:`MAIN_SPACE`'s form) proposed by TPE."""

    variant: Variant
    train: TrainConfig
    dim: int
    axes: dict[str, tuple] = field(default_factory=dict)
    space: dict[str, tuple] | None = None  # a TPE search of this space instead of a grid
    large_space: dict[str, tuple] | None = None  # the space on large data
    trials: int = 0  # the TPE search's budget
    checkpoint_dir: str | Path | None = None  # a checkpoint per training, resumed if present
    kind = "both"
    baseline = False
    seeded = True
    retune = True  # a seed's early stopping and readout are tuned with it
    limits = {"reg": L2}  # noqa: RUF012 (every variant's L2 weight; no other bound declared)

    def __post_init__(self) -> None:
        unknown = ({*self.axes, *self.variant.axes, *(self.variant.large_axes or ()),
                    *(self.space or ()), *(self.large_space or ())}
                   - set().union(*_FIELDS.values()))
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)} in the search of "
                             f"{self.name!r}; a setting names a field of Objective, "
                             "ModelConfig or TrainConfig")
        if self.space is not None and (self.axes or self.trials < 1):
            raise ValueError(f"{self.name}: a TPE search takes a space and trials >= 1, not "
                             "axes")

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def about(self) -> str:
        return self.variant.about

    @property
    def target(self) -> str:
        return self.variant.monitor

    def grid(self, n_ratings: int) -> tuple[dict, ...]:
        """The settings of a grid search (empty for a TPE search): the spec's ``axes`` if
        given, else its variant's grid (the lean one on large data:
        :func:`movierec.protocol.large`)."""
        return () if self.space is not None else grid(**self.grid_axes(n_ratings))

    def lean(self, n_ratings: int) -> bool:
        """Whether ``n_ratings`` training ratings take the variant's lean grid (none given)."""
        return not self.axes and self.variant.large_axes is not None and large(n_ratings)

    def grid_axes(self, n_ratings: int) -> dict[str, tuple]:
        v = self.variant
        if self.axes:
            return self.axes
        return v.large_axes if self.lean(n_ratings) else v.axes

    def proposals(self, n_ratings: int, seed: int):
        """What the val search tries: the grid, walking on past an end where its choice sits
        (:class:`~movierec.protocol.EdgeWalk`; a lean grid one step), or TPE over the space
        (the lean one on large data) seeded with ``seed``."""
        if self.space is None:
            return EdgeWalk(self.grid(n_ratings), self.target, self.limits,
                            LEAN_WALK_STEPS if self.lean(n_ratings) else WALK_STEPS)
        return Tpe(self.space_for(n_ratings), self.trials, seed, lower_is_better(self.target))

    def space_for(self, n_ratings: int) -> dict[str, tuple]:
        """The TPE space searched with ``n_ratings`` training ratings (the lean one, if any,
        on large data)."""
        return (self.large_space if self.large_space is not None and large(n_ratings)
                else self.space)

    def searched(self, n_ratings: int) -> dict:
        """What the search covers with ``n_ratings`` training ratings, for the report: the
        grid's axes or the TPE space."""
        if self.space is None:
            return {k: list(v) for k, v in self.grid_axes(n_ratings).items()}
        return {k: list(v[1:]) if v[0] == "log" else list(v[1])
                for k, v in self.space_for(n_ratings).items()}

    def skip_reason(self, prep, n_ratings: int) -> None:
        return None

    def configs(self, exp: Experiment, setting: dict) -> tuple[ModelConfig, TrainConfig]:
        """The model and training configurations of ``setting`` (which must name every
        setting the variant ``requires``)."""
        v = self.variant
        missing = [k for k in v.requires if k not in setting]
        if missing:
            raise ValueError(f"{self.name} has no default for {missing}: its setting must name "
                             "them (the notebook's MAIN_SETTING, or its search)")
        pick = {cls: {k: x for k, x in setting.items() if k in names}
                for cls, names in _FIELDS.items()}
        objective = replace(v.objective, **pick[Objective])
        mcfg = model_config(exp, **{"dim": self.dim, "encoder": v.encoder, "score": v.score,
                                   "prior": v.prior, "objective": objective,
                                   "age_years": year_span(exp.prep)[1] if v.age_term else 0,
                                   **pick[ModelConfig]})
        return mcfg, replace(self.train, **pick[TrainConfig])

    def build(self, exp: Experiment, mcfg: ModelConfig, seed: int, data: Ratings
              ) -> MovieRecModel:
        """The initial model (seeded by ``seed``) on ``exp.device``, its retrieval prior and
        rated-movie mask taken from the training data ``data``."""
        model = MovieRecModel(mcfg, torch.Generator().manual_seed(seed)).to(exp.device)
        if model.content is not None:
            model.content.set_bases(exp.feats)
        if mcfg.prior:
            model.init_prior(exp.positive_counts(data, mcfg.objective.min_positive))
        if model.movie is not None and model.movie.seen is not None:
            model.set_seen(exp.positive_counts(data) > 0)
        return model

    def _checkpoint(self, setting: dict, seed: int, what: str) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        tag = "".join(f"-{k}={v}" for k, v in setting.items())
        return Path(self.checkpoint_dir) / f"{self.name}{tag}-seed{seed}-{what}.pt"

    def _label(self, setting: dict, seed: int, what: str) -> str:
        shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in setting.items())
        return f"{self.name} ({shown}) seed {seed}, {what}" if setting else (
            f"{self.name} seed {seed}, {what}")

    def _meta(self, exp: Experiment) -> dict:
        f = exp.prep.features
        return {"variant": self.name, "dataset": exp.prep.name, "tag_vocab": f.tag_vocab,
                "genome_tags": f.genome_tags, "movie_ids": torch.tensor(f.movie_ids),
                "user_ids": torch.tensor(exp.prep.user_ids)}

    def fitted(self, exp: Experiment, model: MovieRecModel) -> Fitted:
        """What the protocol reads of a trained model: its predictions and both rankings (the
        model's default first)."""
        def rate(users: np.ndarray, movies: np.ndarray) -> np.ndarray:
            data = Ratings.from_arrays(users, movies, np.zeros(len(users)), exp.device)
            return predict(model, exp.feats, data).cpu().numpy()

        order = sorted(BY, key=lambda b: b != model.default_ranking)
        return Fitted(rate, {b: model.ranking_vectors(exp.feats, b) for b in order}, model)

    def tune(self, exp: Experiment, setting: dict, seed: int, threads: int = 1) -> Trial:
        mcfg, tcfg = self.configs(exp, setting)
        v = self.variant
        ckpt = self._checkpoint(setting, seed, "tune")
        result = fit(self.build(exp, mcfg, seed, exp.train), exp.feats, exp.train, tcfg,
                     validation(exp, v.monitor), seed=seed, monitor=v.monitor,
                     mode="min" if lower_is_better(v.monitor) else "max",
                     checkpoint=ckpt, resume=ckpt is not None, meta=self._meta(exp),
                     label=self._label(setting, seed, "tuned on train"))
        readout = (calibrate_readout(exp, result.model, (TRAIN,))
                   if v.readout == "calibrated" else {})
        age, aged = choose_age(exp, result.model, v.age_now) if v.age_term else (None, {})
        rating = {"epochs": len(result.history), "best_epoch": result.best_epoch}
        rating.update({f"val_{k}": x for k, x in rating_errors(
            predict(result.model, exp.feats, exp.val), exp.val.ratings).items()})
        fitted = self.fitted(exp, result.model)
        figures = val_rankings(exp, fitted, {"cosine": aged}) if age is not None else None
        by, val_by = choose_by(exp, fitted, figures)
        best = result.history.loc[result.history.epoch == result.best_epoch].iloc[0]
        row = {**setting, "best_epoch": result.best_epoch, "val_rmse": rating["val_rmse"],
               "val_ndcg@10": val_by[by]}
        if "val_recall@10" in best:
            row["val_recall@10"] = float(best["val_recall@10"])
        if age is not None:  # the chosen ranking's, as its NDCG (the history's is without it)
            row["val_recall@10"] = figures[by]["val_recall@10"]
            row["age_weight"] = age
        row["by"] = by
        return Trial(setting, row, rating, fitted, by, val_by,
                     {"fit": result, "readout": readout, "age_weight": age,
                      "configs": (mcfg, tcfg)},
                     capped=[f"epochs ({tcfg.epochs})"] if result.best_epoch >= tcfg.epochs
                     else [])

    def refit(self, exp: Experiment, trial: Trial, seed: int, threads: int = 1) -> Fitted:
        """The tuned setting retrained from the same start on train + val for the tuned number
        of epochs, with the tuned readout."""
        mcfg, tcfg = trial.tuned["configs"]
        tuned: FitResult = trial.tuned["fit"]
        ckpt = self._checkpoint(trial.setting, seed, "refit")
        final = fit(self.build(exp, mcfg, seed, exp.train_val), exp.feats, exp.train_val,
                    replace(tcfg, epochs=tuned.best_epoch), None, seed=seed, monitor=None,
                    checkpoint=ckpt, resume=ckpt is not None,
                    meta={**self._meta(exp), "refit": True},
                    label=self._label(trial.setting, seed, "refit on train + val"))
        if trial.tuned["readout"]:
            calibrate_readout(exp, final.model, (TRAIN, VAL), trial.tuned["readout"])
        if trial.tuned.get("age_weight") is not None:
            set_age(exp, final.model, (TRAIN, VAL), trial.tuned["age_weight"],
                    self.variant.age_now)
        return self.fitted(exp, final.model)


def main_spec(params: dict, setting: dict | None = None):
    """The main model (``RECOMMEND_WITH``) as a report's parameters run it: its search, TPE
    over :data:`MAIN_SPACE` for ``MAIN_TRIALS`` trials, or, given a ``setting``, that setting
    alone (not searched); the other training settings from ``EPOCHS``, ``BATCH_SIZE``, ...
    (:meth:`TrainConfig.from_parameters`), its checkpoints in ``CHECKPOINT_DIR``."""
    spec = VariantSpec(variant(params["RECOMMEND_WITH"]), TrainConfig.from_parameters(params),
                       params["DIM"], space=MAIN_SPACE, large_space=MAIN_LARGE_SPACE,
                       trials=params["MAIN_TRIALS"],
                       checkpoint_dir=params.get("CHECKPOINT_DIR"))
    return spec if setting is None else Fixed(spec, dict(setting))


def model_specs(params: dict) -> list[VariantSpec]:
    """Our other models (``MODELS``) as a report's parameters run them: each its variant's val
    grid, with the training settings of ``EPOCHS``, ``BATCH_SIZE``, ... and ``DIM``, their
    checkpoints in ``CHECKPOINT_DIR`` (the notebook's and ``make tune``'s, one definition)."""
    return specs(params["MODELS"], TrainConfig.from_parameters(params), params["DIM"],
                 checkpoint_dir=params.get("CHECKPOINT_DIR"))


def model_config(exp: Experiment, **settings) -> ModelConfig:
    """A model's configuration on ``exp``: the dataset's sizes and ``settings``."""
    f = exp.prep.features
    return ModelConfig(
        n_users=exp.prep.n_users, n_movies=exp.prep.n_movies, n_tags=len(f.tag_vocab),
        n_genres=int(f.genres.indices.max()) + 1 if len(f.genres.indices) else 1,
        n_genome_tags=0 if f.genome is None else f.genome.shape[1],
        global_mean=float(exp.train.ratings.mean()), tag_rank=exp.feats.rank("tag"),
        genome_rank=exp.feats.rank("genome"), **settings)


def validation(exp: Experiment, monitor: str):
    """The per-epoch validation of :func:`movierec.train.fit` on ``exp``: val RMSE, and val
    recall@10 and NDCG@10 when ``monitor`` is a ranking metric."""
    def evaluate(model: MovieRecModel) -> dict[str, float]:
        out = {"val_rmse": rating_errors(predict(model, exp.feats, exp.val),
                                         exp.val.ratings)["rmse"]}
        if "@" in monitor:
            out.update(exp.val_ranking(model.ranking_vectors(exp.feats)))
        return out
    return evaluate


def specs(names: list[str], train: TrainConfig, dim: int, **kwargs) -> list[VariantSpec]:
    """The variants called ``names`` as specs with the same training settings."""
    return [VariantSpec(variant(n), train, dim, **kwargs) for n in names]


@torch.no_grad()
def pair_cosines(model: MovieRecModel, exp: Experiment, data: Ratings) -> np.ndarray:
    """cos(user, movie) of every (user, movie) pair of ``data`` (float64)."""
    model.eval()
    movies = nn.functional.normalize(model.all_movie_vectors(exp.feats), dim=1)
    users = nn.functional.normalize(model.all_user_vectors(), dim=1)
    return (users[data.users] * movies[data.movies]).sum(1).double().cpu().numpy()


def set_age(exp: Experiment, model: MovieRecModel, parts: tuple[int, ...], weight: float,
            now: str = "user") -> None:
    """Set ``model``'s age term (:class:`~movierec.model.AgeTerm`) from the split ``parts``
    alone (each user's now by the rule ``now``, h by age: :func:`movierec.age.age_inputs`) at
    ``weight``."""
    model.age.set(*age_inputs(exp.prep, parts, now), weight)


@torch.no_grad()
def choose_age(exp: Experiment, model: MovieRecModel, now: str = "user"
               ) -> tuple[float, dict[str, float]]:
    """The age term's weight for ``model`` fitted on train: the one of :data:`AGE_WEIGHTS`
    whose retrieval ranking has the highest val NDCG@10 (the smaller weight on a tie), and
    that ranking's val figures (:meth:`~movierec.experiment.Experiment.val_ranking`); the term
    (from train alone, each user's now by the rule ``now``) is left set at it. Users and movies
    are encoded once for all weights."""
    inputs, scores = age_inputs(exp.prep, (TRAIN,), now), {}
    model.eval()
    users, movies = model.all_user_vectors(), model.all_movie_vectors(exp.feats)
    for weight in AGE_WEIGHTS:
        model.age.set(*inputs, weight)
        scores[weight] = exp.val_ranking(model.ranking(users, movies, "cosine"))
    best = max(AGE_WEIGHTS, key=lambda w: (scores[w]["val_ndcg@10"], -w))
    model.age.set(*inputs, best)
    return best, scores[best]


def calibrate_readout(exp: Experiment, model: MovieRecModel, parts: tuple[int, ...],
                      setting: dict | None = None) -> dict:
    """Set ``model``'s rating map to mu + b_user + b_movie + scale · cos(user, movie), biases
    the damped means of the split ``parts`` (:class:`~movierec.evaluate.BiasBaseline`), each
    user's weighted by recency or not. With ``setting`` None, all are chosen on val (``model``
    is then the model fitted on train): for each damping of READOUT_DAMPINGS and half-life
    (None, then each of RECENCY_HALF_LIVES) the scale is the least-squares fit of the val
    ratings' residuals from the biases on the cosines (at least 0: a higher cosine never rates
    lower), and the pair with the lowest val RMSE wins; else ``setting`` is applied (to the
    model refit on train + val; no ``half_life`` key: unweighted). Returns the setting."""
    pairs = (((setting["damping"], setting.get("half_life")),) if setting
             else tuple(itertools.product(READOUT_DAMPINGS, (None, *RECENCY_HALF_LIVES))))
    fit_data = exp.prep.part(*parts)
    recency = (exp.prep.recency(*parts) if any(h is not None for _, h in pairs) else None)
    biases = {(d, h): BiasBaseline(exp.prep.n_users, exp.prep.n_movies, reg_user=d,
                                   reg_movie=d, half_life=h).fit(*fit_data, recency)
              for d, h in pairs}
    if setting is None:
        cos = pair_cosines(model, exp, exp.val)
        u, m = exp.val.users.cpu().numpy(), exp.val.movies.cpu().numpy()
        truth = exp.val.ratings.cpu().numpy()
        scores = {}
        for (d, h), b in biases.items():
            residual = truth - biased_rating(b.mean, b.user_bias[u], b.movie_bias[m], 0.0)
            # numpy's own sums (pairwise, no BLAS): the same bits under any MKL code path
            scale = max(0.0, float((residual * cos).sum() / max((cos * cos).sum(), 1e-12)))
            scores[(d, h, scale)] = rmse_mae(biased_rating(b.mean, b.user_bias[u],
                                                           b.movie_bias[m], cos, scale),
                                             truth)["rmse"]
        damping, half_life, scale = min(scores, key=scores.get)
        setting = {"damping": damping, "half_life": half_life, "scale": scale}
    b = biases[(setting["damping"], setting.get("half_life"))]
    model.head.set_readout(b.mean, b.user_bias, b.movie_bias, setting["scale"])
    return setting
