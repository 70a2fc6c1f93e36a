"""The training loss of a batch: RMSE on the ratings, a sampled softmax that ranks each rated
movie above catalogue negatives (the retrieval term, scored by
:meth:`~movierec.model.MovieRecModel.retrieval_logits`), and L2 on the batch's embeddings."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from movierec.model import FeatureTensors, MovieRecModel, unique_indices, unit_rows

if TYPE_CHECKING:
    from movierec.train import TrainConfig

LOSSES = ("rmse", "softmax", "rmse+softmax")


def rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).pow(2).mean().sqrt()


def sampled_softmax(pos: torch.Tensor, neg: torch.Tensor, keep: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """Mean over rows of -log softmax of the positive logit among it and the row's negatives
    (``pos``: (n,), ``neg``: (n, n_neg)); ``keep`` (0/1 per row) restricts the mean (0 when no
    row is kept). The plain form, which :func:`bounded_softmax` computes faster."""
    return mean_nll(pos, torch.logsumexp(neg, 1), keep)


def mean_nll(pos: torch.Tensor, lse: torch.Tensor, keep: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Mean over rows of -log softmax of ``pos`` among it and negatives whose log-sum-exp is
    ``lse``; ``keep`` (0/1 per row) restricts the mean."""
    nll = torch.logaddexp(pos, lse) - pos
    if keep is None:
        return nll.sum() / max(len(nll), 1)
    return (nll * keep).sum() / keep.sum().clamp_min(1.0)


class ExpRowSums(torch.autograd.Function):
    """``exp(a @ b.T + offset).sum(1)`` (``offset``: one entry per row of ``b``) without the
    (n, n_neg) gradient matrix: the backward pass scales the products' small operands by the
    incoming gradient instead of the large exponentials (whose broadcast product was the
    step's slowest elementwise operation), and the exponentials are taken in place."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        e = torch.addmm(offset.unsqueeze(0), a, b.T).exp_()
        ctx.save_for_backward(a, b, e)
        return e.sum(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, b, e = ctx.saved_tensors
        col = grad.unsqueeze(1)
        grad_a = (e @ b).mul_(col) if ctx.needs_input_grad[0] else None
        grad_b = e.T @ (a * col) if ctx.needs_input_grad[1] else None
        grad_offset = e.T @ grad if ctx.needs_input_grad[2] else None
        return grad_a, grad_b, grad_offset


def bounded_softmax(pos: torch.Tensor, un: torch.Tensor, mt: torch.Tensor,
                    offset: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """:func:`sampled_softmax` of ``pos`` against the negatives' logits
    ``un @ mt.T + offset + bound``, given less ``bound``, a constant upper bound of every
    logit (see :meth:`~movierec.model.MovieRecModel.negative_factors`): their log-sum-exp needs
    no per-row maximum, so it is one product, one exp and one sum (:class:`ExpRowSums`)."""
    return mean_nll(pos, bound + torch.log(ExpRowSums.apply(un, mt, offset)))


def batch_loss(model: MovieRecModel, feats: FeatureTensors, users: torch.Tensor,
               movies: torch.Tensor, ratings: torch.Tensor, cfg: TrainConfig,
               negatives: torch.Tensor | None = None) -> torch.Tensor:
    """The training loss of one batch; each distinct movie (rated or negative) is encoded once.

    RMSE term: predicted vs true ratings. Softmax term (when ``negatives`` is given): each
    (user, rated movie) against catalogue negatives shared by the batch; with
    ``cfg.min_positive``, only ratings at or above it are positives (only their rows are
    scored against the negatives).
    """
    wanted = movies if negatives is None else torch.cat([movies, negatives])
    uniq, inverse = unique_indices(wanted, feats.n_movies)
    # every movie-side table is read once per distinct movie, then spread to the rows with
    # index_select (not advanced indexing, whose CPU backward adds duplicate rows from several
    # threads in a varying order: not bit-reproducible); the penalty reuses these reads
    vecs, ids = model.movie_parts(uniq, feats)
    pos_rows, neg_rows = inverse[: len(movies)], inverse[len(movies):]
    user_ids = model.user(users)
    u = user_ids if model.history_items is None else model.user_vectors(users)
    head = model.head
    user_bias = None if head is None else head.user_bias(users).squeeze(1)
    movie_bias = (None if head is None
                  else head.movie_bias(uniq).squeeze(1).index_select(0, pos_rows))
    cosine = model.config.score != "dot_bias"
    un = mn = cos = u_norm = None
    if cosine or negatives is not None:  # unit vectors: each distinct movie normalised once
        un, u_norm = unit_rows(u)  # the norm kept for the penalty
        mn = unit_rows(vecs)[0]
        cos = (un * mn.index_select(0, pos_rows)).sum(1)  # shared by both terms
    loss = torch.zeros((), device=users.device)
    if cfg.loss in ("rmse", "rmse+softmax"):
        inter = cos if cosine else (u * vecs.index_select(0, pos_rows)).sum(1)
        pred = model.rating_from_interaction(inter, movies, user_bias, movie_bias)
        loss = loss + rmse(pred, ratings)
    if negatives is not None:
        prior = None if model.movie_prior is None else model.prior(uniq)
        rows, un_pos, pos_cos = pos_rows, un, cos
        if cfg.min_positive > 0:  # only the positives' rows enter the softmax
            kept = (ratings >= cfg.min_positive).nonzero().squeeze(1)
            rows, un_pos = pos_rows.index_select(0, kept), un.index_select(0, kept)
            pos_cos = cos.index_select(0, kept)
        pos = model.retrieval_from_cosine(
            pos_cos, None if prior is None else prior.index_select(0, rows))
        mt, offset, bound = model.negative_factors(
            mn.index_select(0, neg_rows), negatives,
            None if prior is None else prior.index_select(0, neg_rows))
        softmax = bounded_softmax(pos, un_pos, mt, offset, bound)
        loss = loss + (cfg.rank_weight if cfg.loss == "rmse+softmax" else 1.0) * softmax
    if cfg.reg:
        terms = [u_norm.square() if u_norm is not None and u is user_ids  # the same sum
                 else user_ids.pow(2).sum(1)]
        if ids is not None:
            terms.append(ids.pow(2).sum(1).index_select(0, pos_rows))
        if head is not None:
            terms += [user_bias**2, movie_bias**2]
        loss = loss + cfg.reg * torch.stack(terms).sum(0).mean()
    return loss
