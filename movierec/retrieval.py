"""Exact top-k search: the movies with the highest ``user @ movie + offset`` for each user, seen
movies excluded. Every model's ranking (:mod:`movierec.experiment`) and the recommender
(:mod:`movierec.recommend`) search with it.

Movie vectors are scored a block of users at a time with one matrix product, already-seen movies
are set to -inf, and ``torch.topk`` picks the best. The largest MovieLens catalogue is under 100k
movies, so no approximate index is needed.
"""

from __future__ import annotations

import numpy as np
import torch

from movierec.csr import Csr


def check_k(k: int, n_items: int) -> None:
    if not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > n_items:
        raise ValueError(f"k={k} exceeds the catalogue of {n_items} movies")


@torch.no_grad()
def topk_search(user_vecs: torch.Tensor, movie_vecs: torch.Tensor, k: int, *,
                exclude: Csr | None = None, movie_offset: torch.Tensor | None = None,
                block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Top-k movies for each user by ``user_vecs @ movie_vecs.T (+ movie_offset)``.

    ``exclude`` rows align with ``user_vecs``; their movies never enter a top-k (score -inf).
    Memory is bounded by ``block`` x n_movies scores. Returns (indices, scores), (n_users, k).
    A user with fewer than k candidates gets -inf scores in the tail (index -1).
    """
    n_items = movie_vecs.shape[0]
    check_k(k, n_items)
    idx_out = np.empty((len(user_vecs), k), np.int64)
    score_out = np.empty((len(user_vecs), k), np.float32)
    for s in range(0, len(user_vecs), block):
        scores = user_vecs[s:s + block] @ movie_vecs.T
        if movie_offset is not None:
            scores = scores + movie_offset
        if exclude is not None:
            sub = exclude.select(np.arange(s, s + len(scores)))
            rows = np.repeat(np.arange(len(scores)), sub.lengths())
            scores[torch.as_tensor(rows, device=scores.device),
                   torch.as_tensor(sub.indices, device=scores.device)] = -torch.inf
        val, idx = torch.topk(scores, k, dim=1)
        idx[torch.isinf(val)] = -1
        idx_out[s:s + len(scores)] = idx.cpu().numpy()
        score_out[s:s + len(scores)] = val.float().cpu().numpy()
    return idx_out, score_out
