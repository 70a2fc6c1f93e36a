"""Recommend by searching the movie embeddings nearest to a user's embedding.

Exact search: movie vectors are normalised once, a block of users is scored with one matrix
product, already-seen movies are set to -inf, and ``torch.topk`` picks the best. The largest
MovieLens catalogue is under 100k movies, so no approximate index is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from movierec.evaluate import Csr
from movierec.model import FeatureTensors, MovieRecModel


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
                   torch.as_tensor(sub.items, device=scores.device)] = -torch.inf
        val, idx = torch.topk(scores, k, dim=1)
        idx[torch.isinf(val)] = -1
        idx_out[s:s + len(scores)] = idx.cpu().numpy()
        score_out[s:s + len(scores)] = val.float().cpu().numpy()
    return idx_out, score_out


@dataclass
class RankingVectors:
    """Vectors whose inner product (+ offset) is a model's ranking score."""

    users: torch.Tensor
    movies: torch.Tensor
    offset: torch.Tensor | None = None


@torch.no_grad()
def ranking_vectors(model: MovieRecModel, feats: FeatureTensors,
                    by: str = "cosine") -> RankingVectors:
    """``by="cosine"``: cosine of user and movie embeddings (nearest-embedding search);
    ``by="rating"``: the predicted rating, up to a per-user constant (adds movie biases).
    A model with a retrieval prior ranks "cosine" by cos / temperature + prior, the score it was
    trained to rank by (still one inner product: the prior is the offset)."""
    model.eval()
    m = model.all_movie_vectors(feats)
    u = model.all_user_vectors()
    c = model.config
    if by not in ("cosine", "rating"):
        raise ValueError(f"by must be 'cosine' or 'rating', got {by!r}")
    if c.score == "dot_bias":
        offset = model.movie_bias.weight.squeeze(1)
        return RankingVectors(u, m, offset if by == "rating" else None)
    un, mn = nn.functional.normalize(u, dim=1), nn.functional.normalize(m, dim=1)
    if by == "rating" and c.score == "cosine_bias":
        return RankingVectors(un * model.scale, mn, model.movie_bias.weight.squeeze(1))
    if by == "cosine" and model.movie_prior is not None:
        return RankingVectors(un / c.temperature, mn, model.movie_prior.weight.squeeze(1))
    return RankingVectors(un, mn)


class Recommender:
    """Top-k recommendations, similar movies, cold start and explanations for a trained model.

    ``history`` holds each user's already-rated movies (model indexes), excluded by default.
    """

    def __init__(self, model: MovieRecModel, feats: FeatureTensors, movies: pd.DataFrame,
                 user_ids: np.ndarray, history: Csr, *, by: str = "cosine",
                 tag_vocab: list[str] | None = None, genome_tags: list[str] | None = None,
                 genres: tuple[str, ...] | None = None) -> None:
        self.model, self.feats, self.history = model, feats, history
        self.movies = movies.reset_index(drop=True)
        self.user_ids = np.asarray(user_ids)
        self._user_index = pd.Index(self.user_ids)
        self._movie_index = pd.Index(self.movies["movieId"].to_numpy())
        self.vectors = ranking_vectors(model, feats, by)
        self.tag_vocab, self.genome_tags, self.genres = tag_vocab, genome_tags, genres

    @property
    def n_movies(self) -> int:
        return len(self.movies)

    def user_row(self, user_id: int) -> int:
        pos = self._user_index.get_indexer([user_id])[0]
        if pos < 0:
            raise KeyError(f"unknown userId {user_id}: not in the training data")
        return int(pos)

    def movie_row(self, movie_id: int) -> int:
        pos = self._movie_index.get_indexer([movie_id])[0]
        if pos < 0:
            raise KeyError(f"unknown movieId {movie_id}: not in movies.csv")
        return int(pos)

    def _frame(self, rows: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        keep = rows >= 0
        out = self.movies.iloc[rows[keep]][["movieId", "title", "genres"]].copy()
        out["score"] = scores[keep]
        return out.reset_index(drop=True)

    def recommend(self, user_id: int, k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """The user's top-k movies: DataFrame(movieId, title, genres, score)."""
        row = self.user_row(user_id)
        exclude = self.history.select(np.array([row])) if exclude_seen else None
        idx, scores = topk_search(self.vectors.users[row:row + 1], self.vectors.movies, k,
                                  exclude=exclude, movie_offset=self.vectors.offset)
        return self._frame(idx[0], scores[0])

    def recommend_all(self, k: int = 10, exclude_seen: bool = True, block: int = 1024,
                      users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k movie indexes and scores for every user (or the given user rows)."""
        rows = np.arange(len(self.user_ids)) if users is None else np.asarray(users)
        exclude = self.history.select(rows) if exclude_seen else None
        return topk_search(self.vectors.users[torch.as_tensor(rows)], self.vectors.movies, k,
                           exclude=exclude, movie_offset=self.vectors.offset, block=block)

    def similar_movies(self, movie_id: int, k: int = 10) -> pd.DataFrame:
        """The k movies whose embeddings are nearest (cosine) to the movie's."""
        row = self.movie_row(movie_id)
        check_k(k, self.n_movies - 1)
        vecs = nn.functional.normalize(self.vectors.movies, dim=1)
        idx, scores = topk_search(vecs[row:row + 1], vecs, k,
                                  exclude=Csr(np.array([0, 1]), np.array([row])))
        return self._frame(idx[0], scores[0])

    @torch.no_grad()
    def content_vector(self, movie_id: int) -> torch.Tensor:
        """The movie's embedding from its features alone (as for a movie never rated)."""
        rows = torch.tensor([self.movie_row(movie_id)], device=self.vectors.movies.device)
        return self.model.encode_movies(rows, self.feats, use_id=False)[0]

    def audience(self, movie_id: int, k: int = 10, content_only: bool = True) -> pd.DataFrame:
        """The k users whose embeddings are nearest to the movie (cold start: by content)."""
        vec = (self.content_vector(movie_id) if content_only
               else self.vectors.movies[self.movie_row(movie_id)])
        vec = nn.functional.normalize(vec, dim=0)
        users = nn.functional.normalize(self.vectors.users, dim=1)
        idx, scores = topk_search(vec[None], users, k)
        return pd.DataFrame({"userId": self.user_ids[idx[0]], "score": scores[0]})

    @torch.no_grad()
    def explain(self, user_id: int, movie_id: int, top: int = 5) -> pd.DataFrame:
        """The features that contribute most to cos(user, movie).

        The movie vector is linear in its features: m = sum_f w_f P_b e_f + bias (+ id vector),
        so cos = sum_f w_f (P_b e_f . u/|u|) / |m| + rest, an exact additive split.
        """
        model, c = self.model, self.model.config
        if c.encoder == "id":
            raise ValueError("an id-only model has no features to explain")
        urow, mrow = self.user_row(user_id), self.movie_row(movie_id)
        dev = self.vectors.movies.device
        u = nn.functional.normalize(model.user_vectors(torch.tensor([urow], device=dev))[0], dim=0)
        rows = torch.tensor([mrow], device=dev)
        norm = model.encode_movies(rows, self.feats)[0].norm()
        d = c.dim
        blocks = model.proj.weight.split(d, dim=1)  # P_b: tags, genres[, genome] (concat order)
        out = []

        def add(kind, names, idx, weights, table, block):
            proj = table[idx] @ blocks[block].T  # (n, d)
            contrib = weights * (proj @ u) / norm
            for n, w, cval in zip(names, weights.tolist(), contrib.tolist(), strict=True):
                out.append({"kind": kind, "feature": n, "weight": w, "contribution": cval})

        t_idx, _, t_w = self.feats.gather(self.feats.tags, rows)
        add("tag", [self.tag_vocab[i] if self.tag_vocab else str(i) for i in t_idx.tolist()],
            t_idx, t_w, model.tag.weight, 0)
        g_idx, _, g_w = self.feats.gather(self.feats.genres, rows)
        add("genre", [self.genres[i] if self.genres else str(i) for i in g_idx.tolist()],
            g_idx, g_w, model.genre.weight, 1)
        if c.n_genome_tags and bool(self.feats.genome_mask[mrow]):
            rel = self.feats.genome[mrow]
            top_idx = torch.topk(rel, min(50, len(rel))).indices
            w = rel[top_idx] / rel.sum()
            add("genome", [self.genome_tags[i] if self.genome_tags else str(i)
                           for i in top_idx.tolist()], top_idx, w, model.genome_tag, 2)
        frame = pd.DataFrame(out)
        return frame.reindex(frame["contribution"].abs().sort_values(ascending=False).index
                             ).head(top).reset_index(drop=True)
