"""Recommend by searching the movie embeddings nearest to a user's embedding (exact search:
:func:`movierec.retrieval.topk_search`), fold new users in, and explain a score."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from movierec import artifact
from movierec.catalogue import Catalogue, CatalogueError
from movierec.csr import Csr
from movierec.model import MovieRecModel, MovieRows
from movierec.optim import adam_update
from movierec.retrieval import check_k, topk_search
from movierec.tensors import FeatureTensors

NO_GENOME = "(no genome scores)"  # the learned vector of a movie the genome does not cover


@dataclass(frozen=True)
class FoldIn:
    """How a new user is folded into a trained model: the model's own loss
    (:meth:`~movierec.model.MovieRecModel.loss_from`) over the user's ratings and, for the
    retrieval term, the whole catalogue as negatives, minimised over a new user vector and
    bias with every movie frozen (``steps`` of Adam at ``lr``)."""

    steps: int = 80
    lr: float = 0.1


@contextmanager
def _frozen(model: nn.Module):
    """The model's parameters without gradients for the duration (restored afterwards)."""
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


class Recommender:
    """Top-k recommendations, similar movies, cold start and explanations for a trained model,
    for the users it was trained on and for new users given a few ratings.

    ``history`` holds each user's already-rated movies (model indexes), excluded by default.
    ``Recommender.load(folder)`` rebuilds one from a saved model folder (no dataset needed).
    """

    def __init__(self, model: MovieRecModel, feats: FeatureTensors, movies: pd.DataFrame,
                 user_ids: np.ndarray, history: Csr, *, by: str | None = None,
                 tag_vocab: list[str] | None = None, genome_tags: list[str] | None = None,
                 genres: tuple[str, ...] | None = None, fold_in: FoldIn = FoldIn()) -> None:
        self.model, self.feats, self.history = model, feats, history
        self.by = by or model.default_ranking  # see MovieRecModel.rank_users
        self.catalogue = Catalogue(movies, np.bincount(history.indices,
                                                       minlength=len(movies)))
        self.user_ids = np.asarray(user_ids)
        self._user_index = pd.Index(self.user_ids)
        model.eval()
        with torch.no_grad():
            self.movie_vectors = model.all_movie_vectors(feats)  # raw (the model's own) vectors
            self.user_vectors = model.all_user_vectors()
            self.vectors = model.ranking(self.user_vectors, self.movie_vectors, self.by)
        self.fold_in_config = fold_in
        self.tag_vocab, self.genome_tags, self.genres = tag_vocab, genome_tags, genres
        self.manifest: dict | None = None

    @classmethod
    def load(cls, folder, device: str | torch.device = "auto", *,
             expect_checksums: dict[str, str] | None = None) -> Recommender:
        """The recommender saved in ``folder`` (see :mod:`movierec.artifact`)."""
        parts = artifact.read_artifact(folder, device, expect_checksums=expect_checksums)
        manifest = parts.pop("manifest")
        rec = cls(**parts)
        rec.manifest = manifest
        return rec

    def save(self, folder, *, variant: str, dataset: str, data_checksums: dict[str, str],
             examples: dict | None = None):
        """Write this recommender to ``folder`` atomically (see :mod:`movierec.artifact`)."""
        return artifact.save_artifact(folder, self, variant=variant, dataset=dataset,
                                      data_checksums=data_checksums, examples=examples)

    # ---- the catalogue and the users ----

    @property
    def movies(self) -> pd.DataFrame:
        return self.catalogue.movies

    @property
    def n_movies(self) -> int:
        return len(self.catalogue)

    @property
    def popularity(self) -> np.ndarray:
        """Per-movie count of users whose history holds it."""
        return self.catalogue.popularity

    def movie_row(self, movie_id: int) -> int:
        return self.catalogue.row(movie_id)

    def find_movies(self, query: str, n: int = 5) -> pd.DataFrame:
        return self.catalogue.find(query, n)

    def most_rated(self, n: int = 10, genre: str | None = None) -> np.ndarray:
        return self.catalogue.most_rated(n, genre)

    def user_row(self, user_id: int) -> int:
        pos = self._user_index.get_indexer([user_id])[0]
        if pos < 0:
            raise CatalogueError(f"unknown userId {user_id}: not in the training data")
        return int(pos)

    # ---- recommendations ----

    def recommend(self, user_id: int, k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """The user's top-k movies: DataFrame(movieId, title, genres, score)."""
        row = self.user_row(user_id)
        exclude = self.history.select(np.array([row])) if exclude_seen else None
        idx, scores = topk_search(self.vectors.users[row:row + 1], self.vectors.movies, k,
                                  exclude=exclude, movie_offset=self.vectors.offset)
        return self.catalogue.frame(idx[0], scores[0])

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
        vecs = nn.functional.normalize(self.movie_vectors, dim=1)
        idx, scores = topk_search(vecs[row:row + 1], vecs, k,
                                  exclude=Csr(np.array([0, 1]), np.array([row])))
        return self.catalogue.frame(idx[0], scores[0])

    def neighbours(self, movie_ids: list[int], k: int = 5) -> pd.DataFrame:
        """Each movie's ``k`` nearest movies (:meth:`similar_movies`), nearest first: one row
        per movie, indexed by its title."""
        titles = self.movies["title"].to_numpy()
        return pd.DataFrame([self.similar_movies(int(m), k)["title"].tolist()
                             for m in movie_ids],
                            index=pd.Index([titles[self.movie_row(int(m))] for m in movie_ids],
                                           name="movie"),
                            columns=[f"nearest {i}" for i in range(1, k + 1)])

    # ---- cold start: a movie by its content ----

    @torch.no_grad()
    def content_vector(self, movie_id: int) -> torch.Tensor:
        """The movie's embedding from its features alone (as for a movie never rated)."""
        rows = torch.tensor([self.movie_row(movie_id)], device=self.vectors.movies.device)
        return self.model.encode_movies(rows, self.feats, use_id=False)[0]

    def audience(self, movie_id: int, k: int = 10, content_only: bool = True) -> pd.DataFrame:
        """The k users whose embeddings are nearest to the movie (cold start: by content)."""
        vec = (self.content_vector(movie_id) if content_only
               else self.movie_vectors[self.movie_row(movie_id)])
        vec = nn.functional.normalize(vec, dim=0)
        users = nn.functional.normalize(self.user_vectors, dim=1)
        idx, scores = topk_search(vec[None], users, k)
        return pd.DataFrame({"userId": self.user_ids[idx[0]], "score": scores[0]})

    def audience_hits(self, movie_id: int, actual: np.ndarray, k: int = 100) -> dict:
        """How many of the movie's predicted top-``k`` audience (by content alone) are among
        the ``actual`` userIds who rated it, and how many a random audience would hold."""
        audience = self.audience(movie_id, k=k)
        hits = int(audience["userId"].isin(np.asarray(actual)).sum())
        return {"hits": hits, "k": k, "random": k * len(set(actual)) / len(self.user_ids),
                "audience": audience}

    # ---- a new user ----

    def resolve(self, ratings: dict) -> pd.DataFrame:
        """The movie each key of ``{movieId or title: rating}`` names (a title: exactly, or
        the only title containing it; anything else is a :class:`CatalogueError`):
        DataFrame(given, movieId, title, rating)."""
        return self._rated(ratings, self._check_ratings(ratings)[0])

    def _rated(self, ratings: dict, rows: np.ndarray) -> pd.DataFrame:
        out = self.movies.iloc[rows][["movieId", "title"]].reset_index(drop=True)
        out.insert(0, "given", list(ratings))
        out["rating"] = [float(v) for v in ratings.values()]
        return out

    def _check_ratings(self, ratings: dict) -> tuple[np.ndarray, torch.Tensor]:
        if not ratings:
            raise ValueError("ratings is empty: give at least one {movieId or title: rating}")
        rows = self.catalogue.rows(list(ratings))
        if len(np.unique(rows)) != len(rows):
            raise ValueError("two keys of ratings name the same movie")
        values = np.asarray(list(ratings.values()), np.float64)
        bad = [float(v) for v in values if not (0.5 <= v <= 5.0)]
        if bad:
            raise ValueError(f"ratings must lie in 0.5..5.0, got {bad}")
        return rows, torch.as_tensor(values, dtype=torch.float32,
                                     device=self.movie_vectors.device)

    def fold_in(self, ratings: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A new user's vector and rating bias from ``{movieId or title: rating}``: the model's
        training loss (:class:`FoldIn`) minimised with every movie frozen, starting from the
        mean user vector (deterministic)."""
        return self._fold_in(*self._check_ratings(ratings))

    def _fold_in(self, rows: np.ndarray, r: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`fold_in` for ratings ``r`` of the movie rows ``rows`` (already checked)."""
        cfg, model = self.fold_in_config, self.model
        dev = self.movie_vectors.device
        movies = MovieRows(torch.arange(self.n_movies, device=dev), self.movie_vectors)
        pos = torch.as_tensor(rows, device=dev)
        neg = movies.index if model.config.objective.rank_weight else None
        params = [self.user_vectors.mean(0).clone()]
        if model.head.biased:
            params.append(torch.zeros((), device=dev))
        moments = [p.new_zeros((1, 2, *p.shape)) for p in params]
        n = len(rows)
        with _frozen(model), torch.enable_grad():
            for p in params:
                p.requires_grad_(True)
            for step in range(1, cfg.steps + 1):
                bias = params[1].expand(n) if len(params) > 1 else None
                loss = model.loss_from(params[0].expand(n, -1), bias, movies, pos, neg, r)
                grads = torch.autograd.grad(loss, params)
                with torch.no_grad():
                    for p, g, m in zip(params, grads, moments, strict=True):
                        p.add_(adam_update(m, g.unsqueeze(0), step, cfg.lr)[0])
        return params[0].detach(), (params[1].detach() if len(params) > 1 else None)

    @torch.no_grad()
    def recommend_for_ratings(self, ratings: dict, k: int = 10) -> pd.DataFrame:
        """Top-k for a new user given ``{movieId or title: rating}`` (rated movies excluded),
        by the same nearest-embedding search as :meth:`recommend`. ``because``: the movie they
        liked most (rated >= their mean) whose embedding is nearest to the pick's. The frame's
        ``attrs["rated"]`` names the movie each key resolved to (:meth:`resolve`)."""
        rows, r = self._check_ratings(ratings)
        u, _ = self._fold_in(rows, r)
        exclude = Csr(np.array([0, len(rows)]), np.sort(rows))
        idx, scores = topk_search(self.model.rank_users(u, self.by)[None], self.vectors.movies,
                                  k, exclude=exclude, movie_offset=self.vectors.offset)
        out = self.catalogue.frame(idx[0], scores[0])
        liked = rows[(r >= r.mean()).cpu().numpy()]
        unit = nn.functional.normalize(self.movie_vectors, dim=1)
        picks = torch.as_tensor(idx[0][idx[0] >= 0], device=unit.device)
        sims = unit[picks] @ unit[torch.as_tensor(liked, device=unit.device)].T
        best = liked[sims.argmax(1).cpu().numpy()]
        out["because"] = self.movies["title"].to_numpy()[best]
        out.attrs["rated"] = self._rated(ratings, rows)
        return out

    # ---- explanations ----

    @torch.no_grad()
    def explain(self, user_id: int, movie_id: int, top: int = 5,
                genome_top: int = 50) -> pd.DataFrame:
        """The features that contribute most to cos(user, movie) (of the genome, the movie's
        ``genome_top`` most relevant tags are weighed).

        The movie vector is linear in its features: m = sum_f w_f P_b e_f + bias (+ id vector),
        so cos = sum_f w_f (P_b e_f . u/|u|) / |m| + rest, an exact additive split
        (:meth:`~movierec.model.ContentEncoder.contributions`).
        """
        model = self.model
        if model.content is None:
            raise ValueError("an id-only model has no features to explain")
        urow, mrow = self.user_row(user_id), self.movie_row(movie_id)
        dev = self.vectors.movies.device
        u = nn.functional.normalize(self.user_vectors[urow], dim=0)
        norm = model.encode_movies(torch.tensor([mrow], device=dev), self.feats)[0].norm()
        names = {"tag": self.tag_vocab, "genre": self.genres, "genome": self.genome_tags}
        frame = pd.DataFrame(
            [{"kind": block, "feature": (NO_GENOME if i < 0 else names[block][i]
                                         if names[block] else str(i)),
              "weight": w, "contribution": c / float(norm)}
             for block, i, w, c in model.content.contributions(mrow, self.feats, u,
                                                               genome_top)])
        return frame.reindex(frame["contribution"].abs().sort_values(ascending=False).index
                             ).head(top).reset_index(drop=True)
