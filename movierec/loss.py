"""The training loss of a batch: RMSE on the ratings, a sampled softmax that ranks each rated
movie above catalogue negatives (the retrieval term, scored by
:meth:`~movierec.model.MovieRecModel.retrieval_logits`), and L2 on the batch's embeddings."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from movierec.model import FeatureTensors, MovieRecModel

if TYPE_CHECKING:
    from movierec.train import TrainConfig

LOSSES = ("rmse", "softmax", "rmse+softmax")


def rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).pow(2).mean().sqrt()


def sampled_softmax(pos: torch.Tensor, neg: torch.Tensor,
                    keep: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of -log softmax of the positive logit among it and the row's negatives
    (``pos``: (n,), ``neg``: (n, n_neg)); ``keep`` (0/1 per row) restricts the mean."""
    nll = torch.logaddexp(pos, torch.logsumexp(neg, 1)) - pos
    if keep is None:
        return nll.mean()
    return (nll * keep).sum() / keep.sum().clamp_min(1.0)


def batch_loss(model: MovieRecModel, feats: FeatureTensors, users: torch.Tensor,
               movies: torch.Tensor, ratings: torch.Tensor, cfg: TrainConfig,
               negatives: torch.Tensor | None = None) -> torch.Tensor:
    """The training loss of one batch; each distinct movie (rated or negative) is encoded once.

    RMSE term: predicted vs true ratings. Softmax term (when ``negatives`` is given): each
    (user, rated movie) against catalogue negatives shared by the batch; with
    ``cfg.min_positive``, only ratings at or above it are positives.
    """
    wanted = movies if negatives is None else torch.cat([movies, negatives])
    uniq, inverse = torch.unique(wanted, return_inverse=True)
    vecs = model.encode_movies(uniq, feats)
    u = model.user_vectors(users)
    # index_select, not vecs[inverse]: on CPU the backward of advanced indexing accumulates
    # duplicate rows from several threads in a varying order (not bit-reproducible)
    m = vecs.index_select(0, inverse[: len(movies)])
    loss = torch.zeros((), device=users.device)
    if cfg.loss in ("rmse", "rmse+softmax"):
        loss = loss + rmse(model.predict_from_vectors(users, u, movies, m), ratings)
    if negatives is not None:
        un = nn.functional.normalize(u, dim=1)
        pos = model.retrieval_logits(un, nn.functional.normalize(m, dim=1), movies)
        neg_vecs = nn.functional.normalize(vecs.index_select(0, inverse[len(movies):]), dim=1)
        neg = model.retrieval_logits(un, neg_vecs, negatives, pairwise=False)
        keep = (ratings >= cfg.min_positive).float() if cfg.min_positive > 0 else None
        softmax = sampled_softmax(pos, neg, keep)
        loss = loss + (cfg.rank_weight if cfg.loss == "rmse+softmax" else 1.0) * softmax
    if cfg.reg:
        loss = loss + cfg.reg * model.penalty(users, movies)
    return loss
