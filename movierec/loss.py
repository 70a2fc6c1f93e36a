"""The terms of the training objective, as plain tensor functions, and the objective's settings.

A model's loss (:meth:`movierec.model.MovieRecModel.loss_from`) is ``RMSE + rank_weight x
sampled softmax + reg x L2``: RMSE on the ratings, a softmax that ranks each positive (a rated
movie) above catalogue negatives, and L2 on the rows the batch reads. This module holds the
settings (:class:`Objective`) and the arithmetic; the model composes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Objective:
    """What a model is trained to do (saved with it: a new user is folded in with it too)."""

    rating: bool = True  # the RMSE term on ratings
    rank_weight: float = 0.0  # weight of the sampled-softmax (retrieval) term; 0: none
    min_positive: float = 0.0  # softmax positives: ratings >= this (0: every rated movie)
    reg: float = 0.0  # L2 on the batch's user/movie-id vectors and biases
    # the share of a step's movies read by content alone, their id vectors dropped (so that the
    # content path learns to stand alone, as a movie without ratings must)
    id_dropout: float = 0.0

    def __post_init__(self) -> None:
        if not self.rating and not self.rank_weight:
            raise ValueError("an objective needs the rating term, a rank weight, or both")
        if self.rank_weight < 0 or self.reg < 0:
            raise ValueError(f"weights must be >= 0, got rank_weight={self.rank_weight}, "
                             f"reg={self.reg}")
        if not 0 <= self.id_dropout < 1:
            raise ValueError(f"id_dropout must be in [0, 1), got {self.id_dropout}")


def rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).pow(2).mean().sqrt()


def mean_nll(pos: torch.Tensor, lse: torch.Tensor, keep: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Mean over rows of -log softmax of ``pos`` among it and negatives whose log-sum-exp is
    ``lse``; ``keep`` (0/1 per row) restricts the mean (0 when no row is kept)."""
    nll = torch.logaddexp(pos, lse) - pos
    if keep is None:
        return nll.sum() / max(len(nll), 1)
    return (nll * keep).sum() / keep.sum().clamp_min(1.0)


def sampled_softmax(pos: torch.Tensor, neg: torch.Tensor, keep: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """Mean over rows of -log softmax of the positive logit among it and the row's negatives
    (``pos``: (n,), ``neg``: (n, n_neg)). The plain form, which :func:`bounded_softmax`
    computes faster."""
    return mean_nll(pos, torch.logsumexp(neg, 1), keep)


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


def bounded_softmax(pos: torch.Tensor, users: torch.Tensor, movies: torch.Tensor,
                    offset: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """:func:`sampled_softmax` of ``pos`` against the negatives' logits
    ``users @ movies.T + offset + bound``, given less ``bound``, a constant upper bound of every
    logit (:meth:`movierec.model.Retrieval.bounded`): their log-sum-exp needs no per-row
    maximum, so it is one product, one exp and one sum (:class:`ExpRowSums`)."""
    return mean_nll(pos, bound + torch.log(ExpRowSums.apply(users, movies, offset)))
