"""Adam on the rows a step touches: the one Adam implementation of the package, used by training
(:class:`RowAdam`, for the embedding tables) and by a new user's fold-in
(:meth:`movierec.recommend.Recommender.fold_in`)."""

from __future__ import annotations

import math

import torch

from movierec.ops import unique_indices

BETAS = (0.9, 0.999)
EPS = 1e-8


def adam_update(moments: torch.Tensor, grad: torch.Tensor, step: int, lr: float,
                betas: tuple[float, float] = BETAS, eps: float = EPS) -> torch.Tensor:
    """SparseAdam's update of rows whose gradient is ``grad`` and whose two moments lie side
    by side in ``moments`` (rows, 2, ...), updated in place; returns the change to add to the
    rows (``step`` counts from 1)."""
    beta1, beta2 = betas
    m, v = moments.unbind(1)
    m.lerp_(grad, 1 - beta1)
    v.lerp_(grad.square(), 1 - beta2)
    step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
    return m.div(v.sqrt().add_(eps)).mul_(-step_size)


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
    same arithmetic (:func:`adam_update`) done on dense rows gathered by index instead of
    sparse tensors, in a fraction of the time (``sparse_mask`` and sparse additions dominated
    the training step). A row's repeated gradients are summed in batch order
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
                delta = adam_update(moments, values, state["step"], group["lr"],
                                    group["betas"], group["eps"])
                state["moments"].index_copy_(0, rows, moments)
                p.index_add_(0, rows, delta)
