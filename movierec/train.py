"""Training engine: whole prepared dataset on the device, index-slice batches, early stopping,
atomic checkpoints and resume.

A batch is a slice of a seeded permutation of the training rows; each unique movie in the batch
is encoded once. Embedding tables get sparse gradients and SparseAdam (Adam without weight decay,
updating only the rows a batch touches); the dense encoder weights use AdamW.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from movierec.atomic import write_atomically
from movierec.evaluate import rmse_mae
from movierec.loss import LOSSES, batch_loss
from movierec.model import FeatureTensors, ModelConfig, MovieRecModel, unique_indices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_threads(threads: int) -> int:
    """Use ``threads`` CPU threads in torch (0: leave the count as it is; torch starts with one
    per physical core) and return the count in use. CPU results are bit-for-bit reproducible
    for a fixed count: the split of a parallel sum among threads changes its rounding."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch (for code outside movierec) and return a torch Generator
    that movierec's own functions take explicitly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class TrainConfig:
    """Optimisation settings; saved with every checkpoint."""

    epochs: int = 30
    batch_size: int = 1024
    lr: float = 0.01  # Adam on every embedding table (SparseAdam on user/movie tables)
    dense_lr: float = 0.003  # AdamW on the projection, biases and scale
    weight_decay: float = 0.01  # AdamW, the projection matrix only (never the embeddings)
    reg: float = 0.0  # L2 on the batch's user/movie-id vectors and biases (loss.batch_loss)
    loss: str = "rmse"  # "rmse", "softmax" (sampled softmax over the catalogue) or both
    rank_weight: float = 1.0  # weight of the softmax term in "rmse+softmax"
    min_positive: float = 0.0  # softmax positives: ratings >= this (0: every rated movie)
    n_negatives: int = 1024  # uniform catalogue negatives per batch, shared by its rows
    patience: int = 3  # early stopping: epochs without improvement of the monitored metric
    seed: int = 42
    progress: bool = True

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")


@dataclass
class Ratings:
    """(user, movie, rating) index tensors on one device."""

    users: torch.Tensor
    movies: torch.Tensor
    ratings: torch.Tensor

    @classmethod
    def from_arrays(cls, users, movies, ratings, device) -> Ratings:
        return cls(torch.as_tensor(np.asarray(users, np.int64), device=device),
                   torch.as_tensor(np.asarray(movies, np.int64), device=device),
                   torch.as_tensor(np.asarray(ratings, np.float32), device=device))

    def __len__(self) -> int:
        return len(self.users)


@torch.no_grad()
def predict(model: MovieRecModel, feats: FeatureTensors, data: Ratings,
            batch_size: int = 65536) -> torch.Tensor:
    """Predicted ratings for every row of ``data`` (movie vectors computed once)."""
    was_training = model.training
    model.eval()
    movie_vecs = model.all_movie_vectors(feats)
    out = torch.empty(len(data), device=data.ratings.device)
    for s in range(0, len(data), batch_size):
        u, m = data.users[s:s + batch_size], data.movies[s:s + batch_size]
        out[s:s + batch_size] = model.predict_from_vectors(u, model.user_vectors(u), m,
                                                           movie_vecs[m])
    model.train(was_training)
    return out


def rating_errors(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """RMSE and MAE over all rows (not a mean of per-batch values), for tensors on any device."""
    return rmse_mae(pred.detach().cpu().numpy(), truth.detach().cpu().numpy())


def summed_rows(grad: torch.Tensor, seen: list[tuple[torch.Tensor, ...]]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A sparse gradient's distinct rows and the sum of its values per row (what ``coalesce``
    gives): as they are when the indices are already distinct and sorted (a table read once
    per distinct movie); else the distinct indices are found once for any gradients in
    ``seen`` read by the same indices (a user's vector and bias: one pass instead of two)."""
    indices, values = grad._indices()[0], grad._values()
    if grad.is_coalesced() or bool((indices[1:] > indices[:-1]).all()):
        return indices, values
    same = [s for s in seen if s[0].shape == indices.shape and torch.equal(s[0], indices)]
    if not same:
        same = [(indices, *unique_indices(indices, grad.shape[0]))]
        seen.append(same[0])
    _, rows, inverse = same[0]
    return rows, values.new_zeros((len(rows), *values.shape[1:])).index_add_(0, inverse, values)


class RowAdam(torch.optim.SparseAdam):
    """:class:`torch.optim.SparseAdam` (lazy Adam: only the rows a batch touches move) with the
    same arithmetic done on dense rows gathered by index instead of sparse tensors, in a
    fraction of the time (``sparse_mask`` and sparse additions dominated the training step;
    see the benchmark's profile). A row's repeated gradients are summed in batch order
    (:func:`summed_rows`, deterministic), so results equal SparseAdam's up to that rounding
    (tested); tables read by the same rows share one search for distinct rows. A row's two
    moments lie side by side (state ``moments``: (rows, 2, ...), SparseAdam's ``exp_avg`` and
    ``exp_avg_sq``; a SparseAdam state loads), so one gather and one scatter move both."""

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("RowAdam takes no closure")
        seen: list[tuple[torch.Tensor, ...]] = []  # tables read by the same rows search once
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise RuntimeError("RowAdam needs sparse gradients (Embedding(sparse=True))")
                state = self.state[p]
                if not state:
                    state.update(step=0, moments=p.new_zeros((p.shape[0], 2, *p.shape[1:])))
                elif "exp_avg" in state:  # SparseAdam's layout
                    state["moments"] = torch.stack([state.pop("exp_avg"),
                                                    state.pop("exp_avg_sq")], 1)
                state["step"] += 1
                rows, values = summed_rows(p.grad, seen)  # the update is non-linear
                if values.numel() == 0:
                    continue
                if group.get("maximize", False):
                    values = -values
                moments = state["moments"].index_select(0, rows)  # updated in place, put back
                m, v = moments.unbind(1)
                m.lerp_(values, 1 - beta1)
                v.lerp_(values.square(), 1 - beta2)
                state["moments"].index_copy_(0, rows, moments)
                step = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                p.index_add_(0, rows, m.div(v.sqrt().add_(group["eps"])).mul_(-step_size))


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
    model = MovieRecModel(ModelConfig(**state["model_config"])).to(device)
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
    perm = torch.randperm(len(train), generator=gen).to(train.users.device)
    return Ratings(*(t.index_select(0, perm) for t in (train.users, train.movies,
                                                       train.ratings)))


def train_step(model: MovieRecModel, feats: FeatureTensors, batch: Ratings, cfg: TrainConfig,
               opts: list[torch.optim.Optimizer], gen: torch.Generator) -> float:
    """One optimiser step on ``batch`` (negatives drawn from ``gen`` for the retrieval loss);
    returns the batch loss."""
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    negs = None
    if cfg.loss in ("softmax", "rmse+softmax"):
        negs = torch.randint(feats.n_movies, (cfg.n_negatives,), generator=gen).to(
            batch.users.device)
    loss = batch_loss(model, feats, batch.users, batch.movies, batch.ratings, cfg, negs)
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
        part = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
        batch = Ratings(data.users[part], data.movies[part], data.ratings[part])
        total += train_step(model, feats, batch, cfg, opts, gen) * len(batch)
        count += len(batch)
    return total / max(count, 1)


def resume_state(checkpoint: str | os.PathLike, model: MovieRecModel,
                 opts: list[torch.optim.Optimizer], gen: torch.Generator) -> tuple:
    """Restore model, optimisers and generator from ``checkpoint``; returns (history, best,
    next epoch)."""
    state = load_checkpoint(checkpoint, map_location=model.user.weight.device)
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
    monitor: str | None = "val_rmse",
    mode: str = "min",
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    meta: dict | None = None,
    max_batches: int | None = None,
) -> FitResult:
    """Train ``model`` and return the state with the best ``monitor`` value.

    ``evaluate(model)`` returns validation metrics (e.g. ``{"val_rmse": ...}``) after each epoch;
    training stops after ``cfg.patience`` epochs without improvement. With ``monitor=None`` it
    runs all ``cfg.epochs`` and keeps the last state (a refit on train + val). With
    ``checkpoint``, the full training state (model, optimisers, RNG, history, best state,
    ``meta``) is written atomically after every epoch; ``resume=True`` continues from it and ends
    with the same result as an uninterrupted run. ``max_batches`` bounds each epoch (benchmarks).
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    opts = make_optimizers(model, cfg)
    history: list[dict] = []
    best = {"value": math.inf if mode == "min" else -math.inf, "epoch": -1, "state": None}
    start_epoch = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        history, best, start_epoch = resume_state(checkpoint, model, opts, gen)
    steps = math.ceil(len(train) / cfg.batch_size)
    if max_batches is not None:
        steps = min(steps, max_batches)
    bar = tqdm(total=cfg.epochs, initial=start_epoch, disable=not cfg.progress,
               desc="train" if monitor is not None else "refit", unit="epoch",
               dynamic_ncols=False, ncols=100)
    t_train, seen = 0.0, 0
    for epoch in range(start_epoch, cfg.epochs):
        if monitor is not None and best["epoch"] >= 0 and epoch - best["epoch"] > cfg.patience:
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
        bar.update(1)
        postfix = {"loss": f"{train_loss:.4f}"}
        if monitor is not None:
            postfix[monitor] = f"{value:.4f}"
        bar.set_postfix(postfix, refresh=False)
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "model": model.state_dict(), "optimizers": [o.state_dict() for o in opts],
                "generator": gen.get_state(), "history": history, "best": best,
                "epoch": epoch, "model_config": model.config.to_dict(),
                "train_config": asdict(cfg), "meta": meta or {}})
    bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    return FitResult(model=model, history=pd.DataFrame(history), best_epoch=best["epoch"] + 1,
                     seconds=t_train, samples_per_second=seen / t_train if t_train else 0.0)
