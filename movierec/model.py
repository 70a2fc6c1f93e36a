"""The two-tower model: user-id embeddings and a movie encoder over the movie's features.

Movie encoder (the seed's design, bugs fixed): mean of the movie's tag embeddings, mean of its
genre embeddings and (when the dataset has one) the relevance-weighted mean of the genome-tag
embeddings, concatenated and projected by a Linear layer to the user-embedding size. Variants:

- ``encoder``: ``"content"`` (the seed), ``"hybrid"`` (content plus a movie-id embedding that
  starts at zero, so a movie never seen in training is encoded by its content alone) or ``"id"``
  (a movie-id embedding only: plain matrix factorisation).
- ``score``: ``"cosine"`` maps cos(user, movie) onto the rating scale, 2.75 + 2.25 cos, as the seed
  intended; ``"cosine_bias"`` adds learned global, user and movie biases and a learned scale;
  ``"dot_bias"`` is biased matrix factorisation, mu + b_u + b_m + <u, m>.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from movierec.features import Bags, MovieFeatures

RATING_MID, RATING_HALF_RANGE = 2.75, 2.25  # cos in [-1, 1] -> rating in [0.5, 5.0]
ENCODERS = ("content", "hybrid", "id")
SCORES = ("cosine", "cosine_bias", "dot_bias")


@dataclass
class ModelConfig:
    """Sizes and design choices; saved with every checkpoint."""

    n_users: int
    n_movies: int
    n_tags: int
    n_genres: int
    n_genome_tags: int = 0  # 0: no genome branch
    dim: int = 64
    encoder: str = "content"
    score: str = "cosine"
    global_mean: float = 3.5
    prior: bool = False  # a learned per-movie logit (popularity prior) in the retrieval score
    user_history: int = 0  # > 0: user vector += mean embedding of the user's last N rated movies
    temperature: float = 0.1  # retrieval score = cos(user, movie) / temperature (+ prior)

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class FeatureTensors:
    """A dataset's movie features as tensors on one device, with vectorised row gathering."""

    def __init__(self, features: MovieFeatures, device: torch.device | str = "cpu") -> None:
        def bags(b: Bags) -> tuple[torch.Tensor, ...]:
            return (torch.as_tensor(b.offsets, device=device),
                    torch.as_tensor(b.indices, device=device),
                    torch.as_tensor(b.weights, device=device))

        self.n_movies = features.n_movies
        self.tags = bags(features.tags)
        self.genres = bags(features.genres)
        self.genome = self.genome_mask = None
        if features.genome is not None:
            self.genome = torch.as_tensor(features.genome, device=device)
            self.genome_mask = torch.as_tensor(features.genome_mask, device=device)

    @staticmethod
    def gather(bags: tuple[torch.Tensor, ...], rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(indices, offsets, weights) of the bags of ``rows``, for ``EmbeddingBag``."""
        offsets, indices, weights = bags
        starts = offsets[rows]
        lengths = offsets[rows + 1] - starts
        new_offsets = torch.cumsum(lengths, 0) - lengths
        total = int(lengths.sum())
        pos = torch.arange(total, device=rows.device) + torch.repeat_interleave(
            starts - new_offsets, lengths, output_size=total)
        return indices[pos], new_offsets, weights[pos]


class MovieRecModel(nn.Module):
    """User embeddings and a movie encoder; ``forward`` predicts ratings."""

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = c = config
        self.user = nn.Embedding(c.n_users, c.dim, sparse=True)
        self.history_items = None
        if c.user_history:
            # padding index n_movies: excluded from the mean; a user without history gets 0
            self.history_items = nn.EmbeddingBag(c.n_movies + 1, c.dim, mode="mean",
                                                 sparse=True, padding_idx=c.n_movies)
            self.register_buffer("history", torch.full((c.n_users, c.user_history),
                                                       c.n_movies, dtype=torch.long))
        self.movie = None
        if c.encoder != "id":
            self.tag = nn.EmbeddingBag(c.n_tags, c.dim, mode="sum")
            self.genre = nn.EmbeddingBag(c.n_genres, c.dim, mode="sum")
            n_blocks = 2
            if c.n_genome_tags:
                self.genome_tag = nn.Parameter(torch.empty(c.n_genome_tags, c.dim))
                self.no_genome = nn.Parameter(torch.empty(c.dim))
                n_blocks = 3
            self.proj = nn.Linear(n_blocks * c.dim, c.dim)
        if c.encoder in ("hybrid", "id"):
            self.movie = nn.Embedding(c.n_movies, c.dim, sparse=True)
        if c.score != "cosine":
            self.user_bias = nn.Embedding(c.n_users, 1, sparse=True)
            self.movie_bias = nn.Embedding(c.n_movies, 1, sparse=True)
            self.global_bias = nn.Parameter(torch.tensor(float(c.global_mean)))
        if c.score == "cosine_bias":
            self.scale = nn.Parameter(torch.tensor(RATING_HALF_RANGE))
        self.movie_prior = nn.Embedding(c.n_movies, 1, sparse=True) if c.prior else None
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise every parameter from ``generator`` (no global RNG)."""
        c = self.config
        std = 0.1
        nn.init.normal_(self.user.weight, 0.0, std, generator=generator)
        if self.history_items is not None:
            nn.init.normal_(self.history_items.weight, 0.0, std, generator=generator)
            self.history_items.weight[c.n_movies] = 0.0
        if c.encoder != "id":
            for p in (self.tag.weight, self.genre.weight):
                nn.init.normal_(p, 0.0, std, generator=generator)
            if c.n_genome_tags:
                nn.init.normal_(self.genome_tag, 0.0, std, generator=generator)
                nn.init.normal_(self.no_genome, 0.0, std, generator=generator)
            bound = 1.0 / np.sqrt(self.proj.in_features)
            nn.init.uniform_(self.proj.weight, -bound, bound, generator=generator)
            nn.init.zeros_(self.proj.bias)
        if self.movie is not None:
            if c.encoder == "hybrid":
                nn.init.zeros_(self.movie.weight)  # unseen movies keep a zero id vector
            else:
                nn.init.normal_(self.movie.weight, 0.0, std, generator=generator)
        if c.score != "cosine":
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.movie_bias.weight)
        if self.movie_prior is not None:
            nn.init.zeros_(self.movie_prior.weight)

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Embedding tables with sparse gradients (optimised with SparseAdam, no decay): the
        user and movie tables, of which a batch touches few rows. The tag table is dense: a
        batch's tag bags touch hundreds of thousands of entries, which a dense gradient sums
        faster than a sparse one coalesces (measured in the benchmark)."""
        mods = [self.user, self.movie, self.movie_prior, self.history_items,
                getattr(self, "user_bias", None), getattr(self, "movie_bias", None)]
        return [m.weight for m in mods if m is not None]

    def dense_embedding_parameters(self) -> list[nn.Parameter]:
        """Dense embedding tables (tags, genres, genome tags): Adam, no weight decay."""
        if self.config.encoder == "id":
            return []
        params = [self.tag.weight, self.genre.weight]
        if self.config.n_genome_tags:
            params += [self.genome_tag, self.no_genome]
        return params

    def dense_parameters(self) -> list[nn.Parameter]:
        """Everything else: the projection, global bias and scale (AdamW)."""
        other = {id(p) for p in self.sparse_parameters() + self.dense_embedding_parameters()}
        return [p for p in self.parameters() if id(p) not in other]

    @torch.no_grad()
    def init_prior(self, counts: torch.Tensor) -> None:
        """Start the retrieval prior at log(1 + count) of each movie's training positives
        (centred), so that ranking starts from popularity and training learns what is
        personal on top of it."""
        if self.movie_prior is None:
            raise ValueError("this model has no retrieval prior (prior=False)")
        logc = torch.log1p(counts.float())
        self.movie_prior.weight.copy_((logc - logc.mean()).unsqueeze(1))

    def set_history(self, history: torch.Tensor) -> None:
        """Each user's last ``user_history`` movies (n_users, N), padded with n_movies."""
        if self.history_items is None:
            raise ValueError("this model has no user-history term (user_history=0)")
        self.history.copy_(history)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """User embeddings: the id vector, plus the mean of recent movies' vectors if enabled."""
        u = self.user(users)
        if self.history_items is not None:
            u = u + self.history_items(self.history[users])
        return u

    @torch.no_grad()
    def all_user_vectors(self, block: int = 65536) -> torch.Tensor:
        rows = torch.arange(self.config.n_users, device=self.user.weight.device)
        return torch.cat([self.user_vectors(rows[i:i + block])
                          for i in range(0, len(rows), block)])

    def encode_movies(self, rows: torch.Tensor, feats: FeatureTensors,
                      use_id: bool = True) -> torch.Tensor:
        """Movie vectors (len(rows), dim). ``use_id=False`` encodes by content alone."""
        c = self.config
        out = None
        if c.encoder != "id":
            t_idx, t_off, t_w = feats.gather(feats.tags, rows)
            g_idx, g_off, g_w = feats.gather(feats.genres, rows)
            parts = [self.tag(t_idx, t_off, per_sample_weights=t_w),
                     self.genre(g_idx, g_off, per_sample_weights=g_w)]
            if c.n_genome_tags:
                rel = feats.genome[rows]
                weighted = (rel @ self.genome_tag) / rel.sum(1, keepdim=True).clamp_min(1e-6)
                has = feats.genome_mask[rows].unsqueeze(1)
                parts.append(torch.where(has, weighted, self.no_genome.expand_as(weighted)))
            out = self.proj(torch.cat(parts, dim=1))
        if self.movie is not None and use_id:
            ids = self.movie(rows)
            out = ids if out is None else out + ids
        return out

    def predict_from_vectors(self, users: torch.Tensor, u: torch.Tensor, movies: torch.Tensor,
                             m: torch.Tensor) -> torch.Tensor:
        """Predicted ratings for paired rows of user vectors ``u`` and movie vectors ``m``."""
        user_bias = self.user_bias(users).squeeze(1) if self.config.score != "cosine" else None
        return self.rating_from_vectors(u, m, movies, user_bias)

    def rating_from_vectors(self, u: torch.Tensor, m: torch.Tensor, movies: torch.Tensor,
                            user_bias: torch.Tensor | None = None) -> torch.Tensor:
        """The rating formula for paired rows of user vectors ``u``, movie vectors ``m`` (of the
        movie indexes ``movies``) and user biases (ignored by ``score="cosine"``); also used
        for a user folded in after training, who has no row in the user tables."""
        c = self.config
        if c.score == "dot_bias":
            inter = (u * m).sum(1)
        else:
            inter = nn.functional.cosine_similarity(u, m, dim=1, eps=1e-8)
        if c.score == "cosine":
            return RATING_MID + RATING_HALF_RANGE * inter
        bias = self.global_bias
        if user_bias is not None:
            bias = bias + user_bias
        bias = bias + self.movie_bias(movies).squeeze(1)
        return bias + (self.scale * inter if c.score == "cosine_bias" else inter)

    def forward(self, users: torch.Tensor, movies: torch.Tensor,
                feats: FeatureTensors) -> torch.Tensor:
        """Predicted ratings for (user, movie) index pairs; each unique movie is encoded once."""
        uniq, inverse = torch.unique(movies, return_inverse=True)
        m = self.encode_movies(uniq, feats).index_select(0, inverse)
        return self.predict_from_vectors(users, self.user_vectors(users), movies, m)

    def penalty(self, users: torch.Tensor, movies: torch.Tensor) -> torch.Tensor:
        """Mean squared L2 norm of the batch's user vectors, movie-id vectors and biases
        (per-sample regularisation, as in matrix factorisation)."""
        terms = [self.user(users).pow(2).sum(1)]
        if self.movie is not None:
            terms.append(self.movie(movies).pow(2).sum(1))
        if self.config.score != "cosine":
            terms += [self.user_bias(users).squeeze(1) ** 2,
                      self.movie_bias(movies).squeeze(1) ** 2]
        return torch.stack(terms).sum(0).mean()

    @torch.no_grad()
    def all_movie_vectors(self, feats: FeatureTensors, block: int = 8192,
                          use_id: bool = True) -> torch.Tensor:
        """Vectors of every movie, encoded in blocks."""
        dev = self.user.weight.device
        rows = torch.arange(feats.n_movies, device=dev)
        return torch.cat([self.encode_movies(rows[i:i + block], feats, use_id)
                          for i in range(0, feats.n_movies, block)])
