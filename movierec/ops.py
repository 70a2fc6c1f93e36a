"""Tensor primitives shared by the model's loss and the optimiser."""

from __future__ import annotations

import torch


def unique_indices(index: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(index, return_inverse=True)`` for indexes into a table of ``size`` rows
    (the distinct indexes, sorted, and each entry's position among them), by marking the table
    instead of sorting: a few linear passes, 2-4x faster than the sort for a training batch."""
    mark = torch.zeros(size, dtype=torch.bool, device=index.device).index_fill_(0, index, True)
    uniq = mark.nonzero().squeeze(1)
    position = torch.empty(size, dtype=torch.long, device=index.device).index_copy_(
        0, uniq, torch.arange(len(uniq), device=index.device))
    return uniq, position.index_select(0, index)
