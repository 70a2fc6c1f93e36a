"""Training engine: whole prepared dataset on the device, index-slice batches, early stopping,
atomic checkpoints and resume.

A batch is a slice of a seeded permutation of the training rows; its loss is the model's own
(:meth:`~movierec.model.MovieRecModel.loss`). Embedding tables get sparse gradients and
row-wise Adam (:class:`~movierec.optim.RowAdam`: Adam without weight decay, updating only the
rows a batch touches); the dense encoder weights use AdamW.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd
import torch

from movierec.atomic import write_atomically
from movierec.evaluate import RATING_SCALE, rmse_mae
from movierec.model import ModelConfig, MovieRecModel
from movierec.optim import RowAdam
from movierec.progress import Throttle, duration
from movierec.tensors import FeatureTensors, Ratings


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; saved with every checkpoint. The settings a report chooses have
    no default here: their one home is the notebook's parameters cell (``EPOCHS``, ...)."""

    epochs: int
    batch_size: int
    lr: float  # row-wise Adam on the embedding tables (dense Adam on the feature tables)
    dense_lr: float  # AdamW on the projection, biases and scale
    patience: int  # early stopping: epochs without improvement of the monitored metric
    n_negatives: int = 0  # uniform catalogue negatives per batch (the retrieval loss's)
    weight_decay: float = 0.01  # AdamW, the projection matrix only (never the embeddings)
    progress: bool = True  # report epochs (movierec.progress)

    @classmethod
    def from_parameters(cls, params: dict, **changes) -> TrainConfig:
        """The settings of a notebook's parameters (upper-case field names: ``EPOCHS``, ...);
        a field the parameters lack must be given in ``changes``."""
        names = [f.name for f in fields(cls)]
        return cls(**{**{n: params[n.upper()] for n in names if n.upper() in params}, **changes})


@torch.no_grad()
def predict(model: MovieRecModel, feats: FeatureTensors, data: Ratings,
            batch_size: int = 65536) -> torch.Tensor:
    """Predicted ratings for every row of ``data`` (movie vectors computed once), clipped to
    the rating scale as every baseline's are (the training loss reads them unclipped)."""
    was_training = model.training
    model.eval()
    movie_vecs = model.all_movie_vectors(feats)
    out = torch.empty(len(data), device=data.ratings.device)
    for s in range(0, len(data), batch_size):
        u, m = data.users[s:s + batch_size], data.movies[s:s + batch_size]
        out[s:s + batch_size] = model.predict(u, model.user(u), m, movie_vecs[m]).clamp(
            *RATING_SCALE)
    model.train(was_training)
    return out


def rating_errors(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """RMSE and MAE over all rows (not a mean of per-batch values), for tensors on any device."""
    return rmse_mae(pred.detach().cpu().numpy(), truth.detach().cpu().numpy())


def make_optimizers(model: MovieRecModel, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    opts: list[torch.optim.Optimizer] = [RowAdam(model.sparse_parameters(), lr=cfg.lr)]
    groups = []
    if model.dense_embedding_parameters():
        groups.append({"params": model.dense_embedding_parameters(), "lr": cfg.lr,
                       "weight_decay": 0.0})
    decay = [p for p in model.dense_parameters() if p.dim() > 1]  # the projection's matrix
    no_decay = [p for p in model.dense_parameters() if p.dim() <= 1]
    groups += [{"params": ps, "weight_decay": wd}
               for ps, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)) if ps]
    if groups:
        opts.append(torch.optim.AdamW(groups, lr=cfg.dense_lr))
    return opts


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` with torch.save to a temporary file, then rename it into place."""
    write_atomically(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary unpickling)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def model_from_checkpoint(state: dict, device: str | torch.device = "cpu") -> MovieRecModel:
    model = MovieRecModel(ModelConfig.from_dict(state["model_config"])).to(device)
    model.load_state_dict(state["model"])
    return model


@dataclass
class FitResult:
    """What :func:`fit` returns: the best model (already loaded), its history and timings."""

    model: MovieRecModel
    history: pd.DataFrame
    best_epoch: int
    seconds: float
    samples_per_second: float


def shuffled(train: Ratings, gen: torch.Generator) -> Ratings:
    """``train`` in the order of a permutation drawn from ``gen``, gathered once per epoch so
    that each batch is a plain slice."""
    return train[torch.randperm(len(train), generator=gen).to(train.users.device)]


def train_step(model: MovieRecModel, feats: FeatureTensors, batch: Ratings, cfg: TrainConfig,
               opts: list[torch.optim.Optimizer], gen: torch.Generator) -> float:
    """One optimiser step on ``batch`` (negatives drawn from ``gen`` for the retrieval loss,
    and the movies that keep their id vector, for the objective's id dropout); returns the
    batch loss."""
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    negs = keep = None
    obj = model.config.objective
    if obj.rank_weight:
        negs = torch.randint(feats.n_movies, (cfg.n_negatives,), generator=gen).to(
            batch.users.device)
    if obj.id_dropout and model.movie is not None:
        keep = (torch.rand(feats.n_movies, generator=gen) >= obj.id_dropout).to(
            batch.users.device, torch.float32)
    loss = model.loss(feats, batch.users, batch.movies, batch.ratings, negs, keep)
    loss.backward()
    for opt in opts:
        opt.step()
    return float(loss.detach())


def train_epoch(model: MovieRecModel, feats: FeatureTensors, train: Ratings, cfg: TrainConfig,
                opts: list[torch.optim.Optimizer], gen: torch.Generator, steps: int) -> float:
    """One pass over a seeded permutation of ``train`` in ``steps`` batches; returns the mean
    batch loss weighted by batch size."""
    model.train()
    data = shuffled(train, gen)
    total, count = 0.0, 0
    for step in range(steps):
        batch = data[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        total += train_step(model, feats, batch, cfg, opts, gen) * len(batch)
        count += len(batch)
    return total / max(count, 1)


RESUMABLE_CHANGES = ("epochs", "progress")  # settings a resumed training may change


def resume_state(checkpoint: str | os.PathLike, model: MovieRecModel, cfg: TrainConfig,
                 seed: int, opts: list[torch.optim.Optimizer], gen: torch.Generator) -> tuple:
    """Restore model, optimisers and generator from ``checkpoint``, which must have been
    written with the same model and training settings (but the epoch count) and ``seed``;
    returns (history, best, next epoch)."""
    state = load_checkpoint(checkpoint, map_location=model.user.weight.device)
    mine = {**model.config.to_dict(), **asdict(cfg), "seed": seed}
    theirs = {**state["model_config"], **state["train_config"], "seed": state.get("seed")}
    differ = sorted(k for k in set(mine) | set(theirs)
                    if k not in RESUMABLE_CHANGES and mine.get(k) != theirs.get(k))
    if differ:
        raise ValueError(f"{checkpoint} was written with other settings ({', '.join(differ)}): "
                         "remove it, or point CHECKPOINT_DIR elsewhere")
    model.load_state_dict(state["model"])
    for opt, s in zip(opts, state["optimizers"], strict=True):
        opt.load_state_dict(s)
    gen.set_state(state["generator"])
    return state["history"], state["best"], state["epoch"] + 1


def fit(
    model: MovieRecModel,
    feats: FeatureTensors,
    train: Ratings,
    cfg: TrainConfig,
    evaluate: Callable[[MovieRecModel], dict[str, float]] | None,
    *,
    seed: int,
    monitor: str | None = "val_rmse",
    mode: str = "min",
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    meta: dict | None = None,
    max_batches: int | None = None,
    label: str = "training",
) -> FitResult:
    """Train ``model`` and return the state with the best ``monitor`` value. ``seed`` draws the
    batches' order and the retrieval loss's negatives.

    ``evaluate(model)`` returns validation metrics (e.g. ``{"val_rmse": ...}``) after each epoch;
    training stops after ``cfg.patience`` epochs without improvement. With ``monitor=None`` it
    runs all ``cfg.epochs`` and keeps the last state (a refit on train + val). With
    ``checkpoint``, the full training state (model, optimisers, RNG, history, best state,
    ``meta``) is written atomically after every epoch; ``resume=True`` continues from it and ends
    with the same result as an uninterrupted run. ``max_batches`` bounds each epoch (benchmarks).
    With ``cfg.progress``, epochs are reported (:mod:`movierec.progress`) as ``label``.
    """
    if model.config.objective.rank_weight and cfg.n_negatives < 1:
        raise ValueError(f"a retrieval loss (rank_weight {model.config.objective.rank_weight})"
                         f" needs n_negatives >= 1, got {cfg.n_negatives}")
    gen = torch.Generator().manual_seed(seed)
    opts = make_optimizers(model, cfg)
    history: list[dict] = []
    best = {"value": math.inf if mode == "min" else -math.inf, "epoch": -1, "state": None}
    start_epoch = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        history, best, start_epoch = resume_state(checkpoint, model, cfg, seed, opts, gen)
    steps = math.ceil(len(train) / cfg.batch_size)
    if max_batches is not None:
        steps = min(steps, max_batches)
    report = Throttle() if cfg.progress else None
    t_train, seen = 0.0, 0
    for epoch in range(start_epoch, cfg.epochs):
        if monitor is not None and best["epoch"] >= 0 and epoch - best["epoch"] > cfg.patience:
            if report is not None:
                report(f"{label}: stopped after epoch {epoch} (best: {best['epoch'] + 1})",
                       final=True)
            break
        t0 = time.perf_counter()
        train_loss = train_epoch(model, feats, train, cfg, opts, gen, steps)
        t_epoch = time.perf_counter() - t0
        t_train += t_epoch
        seen += min(len(train), steps * cfg.batch_size)
        metrics = evaluate(model) if evaluate is not None else {}
        row = {"epoch": epoch + 1, "train_loss": train_loss, **metrics, "seconds": t_epoch}
        history.append(row)
        value = metrics[monitor] if monitor is not None else -float(epoch)
        if monitor is None or (
                (value < best["value"]) if mode == "min" else (value > best["value"])):
            best = {"value": value, "epoch": epoch,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        if report is not None:
            left = (cfg.epochs - epoch - 1) * t_train / (epoch + 1 - start_epoch)
            report(f"{label}: epoch {epoch + 1}/{cfg.epochs}, loss {train_loss:.4f}"
                   + (f", {monitor} {value:.4f}" if monitor is not None else "")
                   + f", {duration(t_epoch)} an epoch, at most {duration(left)} left",
                   final=epoch == cfg.epochs - 1)
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "model": model.state_dict(), "optimizers": [o.state_dict() for o in opts],
                "generator": gen.get_state(), "history": history, "best": best,
                "epoch": epoch, "model_config": model.config.to_dict(),
                "train_config": asdict(cfg), "seed": seed, "meta": meta or {}})
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    return FitResult(model=model, history=pd.DataFrame(history), best_epoch=best["epoch"] + 1,
                     seconds=t_train, samples_per_second=seen / t_train if t_train else 0.0)
