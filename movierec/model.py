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
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from movierec.csr import Csr
from movierec.features import MovieFeatures, bag_matrix, genome_weights, low_rank_basis

RATING_MID, RATING_HALF_RANGE = 2.75, 2.25  # cos in [-1, 1] -> rating in [0.5, 5.0]
Encoder = Literal["content", "hybrid", "id"]
Score = Literal["cosine", "cosine_bias", "dot_bias"]
RankBy = Literal["cosine", "rating"]
ENCODERS: tuple[str, ...] = get_args(Encoder)
SCORES: tuple[str, ...] = get_args(Score)
BY: tuple[str, ...] = get_args(RankBy)
# checkpoints written before the encoder and the rating head became modules
LEGACY_KEYS = {"tag.weight": "content.tag.weight", "genre.weight": "content.genre.weight",
               "genome_tag": "content.genome_tag", "no_genome": "content.no_genome",
               "proj.weight": "content.proj.weight", "proj.bias": "content.proj.bias",
               "user_bias.weight": "head.user_bias.weight",
               "movie_bias.weight": "head.movie_bias.weight",
               "global_bias": "head.global_bias", "scale": "head.scale"}


def unit_rows(x: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """``(nn.functional.normalize(x, dim=1), the rows' norms)``, the rows multiplied by their
    norms' reciprocals rather than divided by them: the same values up to rounding, and a
    backward pass about twice as fast on a CPU (a broadcast division's gradient with respect
    to its divisor was one of the training step's slowest operations)."""
    norm = torch.linalg.vector_norm(x, dim=1)
    return x * norm.clamp_min(eps).reciprocal().unsqueeze(1), norm


def unique_indices(index: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(index, return_inverse=True)`` for indexes into a table of ``size`` rows
    (the distinct indexes, sorted, and each entry's position among them), by marking the table
    instead of sorting: a few linear passes, 2-4x faster than the sort for a training batch."""
    mark = torch.zeros(size, dtype=torch.bool, device=index.device).index_fill_(0, index, True)
    uniq = mark.nonzero().squeeze(1)
    position = torch.empty(size, dtype=torch.long, device=index.device).index_copy_(
        0, uniq, torch.arange(len(uniq), device=index.device))
    return uniq, position.index_select(0, index)


@dataclass
class ModelConfig:
    """Sizes and design choices; saved with every checkpoint."""

    n_users: int
    n_movies: int
    n_tags: int
    n_genres: int
    n_genome_tags: int = 0  # 0: no genome branch
    dim: int = 64
    encoder: Encoder = "content"
    score: Score = "cosine"
    global_mean: float = 3.5
    prior: bool = False  # a fixed per-movie logit (log popularity) in the retrieval score
    user_history: int = 0  # > 0: user vector += mean embedding of the user's last N rated movies
    temperature: float = 0.1  # retrieval score = cos(user, movie) / temperature (+ prior)
    tag_rank: int = 0  # > 0: tag table = fixed basis (n_tags, tag_rank) @ learned coefficients
    genome_rank: int = 0  # > 0: the same for the genome-tag table

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class FeatureTensors:
    """A dataset's movie features as tensors on one device, with vectorised row gathering.

    ``tag_rank`` / ``genome_rank`` > 0 also hold each movie's tag bag (genome relevance
    weights) projected on a fixed basis of that many columns, at most the feature count
    (:func:`~movierec.features.low_rank_basis`, computed here once, or taken from ``bases``, a
    trained model's), so that the encoder reads ``rank`` numbers per movie instead of its whole
    bag or genome row. With every block projected, ``inputs`` holds them side by side with the
    genre weights (and the no-genome flag), for the encoder as one product
    (:meth:`ContentEncoder.input_map`)."""

    def __init__(self, features: MovieFeatures, device: torch.device | str = "cpu",
                 tag_rank: int = 0, genome_rank: int = 0,
                 bases: dict[str, np.ndarray] | None = None) -> None:
        def bags(b: Csr) -> tuple[torch.Tensor, ...]:
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
        bases = dict(bases or {})
        inputs = {"tag": (tag_rank, lambda: bag_matrix(features.tags, len(features.tag_vocab)))}
        if features.genome is not None:
            inputs["genome"] = (genome_rank, lambda: genome_weights(features.genome,
                                                                    features.genome_mask))
        elif genome_rank or "genome" in bases:
            raise ValueError("genome_rank > 0 needs features with a genome")
        self.bases: dict[str, torch.Tensor] = {}
        self.low: dict[str, torch.Tensor] = {}  # block -> (n_movies, rank) projected features
        self.kept: dict[str, float] = {}  # block -> share of the features' energy kept
        for block, (rank, rows) in inputs.items():
            if not rank and block not in bases:
                continue
            x = rows()
            if block in bases:
                basis = np.asarray(bases[block], np.float32)
            else:  # a rank above the feature count keeps every feature (a rotation)
                basis, self.kept[block] = low_rank_basis(x, min(rank, x.shape[1]))
            self.bases[block] = torch.as_tensor(basis, device=device)
            self.low[block] = torch.as_tensor(np.asarray(x @ basis, np.float32), device=device)
        # every block projected: the encoder's inputs side by side, so that it is one matmul
        self.inputs = self.genre_width = None
        if "tag" in self.low and (self.genome is None or "genome" in self.low):
            self.genre_width = int(features.genres.indices.max(initial=0)) + 1
            genre = bag_matrix(features.genres, self.genre_width).toarray().astype(np.float32)
            cols = [self.low["tag"], torch.as_tensor(genre, device=device)]
            if self.genome is not None:
                has = self.genome_mask.float().unsqueeze(1)
                cols += [self.low["genome"] * has, 1.0 - has]
            self.inputs = torch.cat(cols, 1)

    def rank(self, block: str) -> int:
        """Columns of ``block``'s projected features (0: the block is read whole)."""
        return self.bases[block].shape[1] if block in self.bases else 0

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


class ContentEncoder(nn.Module):
    """A movie's vector from its features: Linear(concat(tag bag, genre bag[, genome])).

    Tag and genre bags are weighted means of their embeddings (weights sum to 1); the genome
    block is the relevance-weighted mean of the genome-tag embeddings, or a learned vector for a
    movie without genome scores. With ``tag_rank`` (``genome_rank``) > 0 the tag (genome-tag)
    embedding table is ``basis @ coef``: a fixed basis of the features (a buffer, from
    :class:`FeatureTensors`) times a learned (rank, dim) matrix, so a batch reads each movie's
    projected features instead of its bag. The vector is linear in the features, which
    :meth:`contributions` uses to explain a score exactly."""

    def __init__(self, n_tags: int, n_genres: int, n_genome_tags: int, dim: int,
                 tag_rank: int = 0, genome_rank: int = 0) -> None:
        super().__init__()
        self.dim = dim
        self.tag = self.tag_coef = None
        if tag_rank:
            self.tag_coef = nn.Parameter(torch.empty(tag_rank, dim))
            self.register_buffer("tag_basis", torch.zeros(n_tags, tag_rank))
        else:
            self.tag = nn.EmbeddingBag(n_tags, dim, mode="sum")
        self.genre = nn.EmbeddingBag(n_genres, dim, mode="sum")
        self.genome_tag = self.genome_coef = self.no_genome = None
        if n_genome_tags:
            if genome_rank:
                self.genome_coef = nn.Parameter(torch.empty(genome_rank, dim))
                self.register_buffer("genome_basis", torch.zeros(n_genome_tags, genome_rank))
            else:
                self.genome_tag = nn.Parameter(torch.empty(n_genome_tags, dim))
            self.no_genome = nn.Parameter(torch.empty(dim))
        self.proj = nn.Linear(len(self.block_names()) * dim, dim)

    def block_names(self) -> list[str]:
        """The feature blocks in concatenation order."""
        return ["tag", "genre"] + (["genome"] if self.no_genome is not None else [])

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None, std: float) -> None:
        for p in self.embedding_parameters():
            nn.init.normal_(p, 0.0, std, generator=generator)
        bound = 1.0 / np.sqrt(self.proj.in_features)
        nn.init.uniform_(self.proj.weight, -bound, bound, generator=generator)
        nn.init.zeros_(self.proj.bias)

    def embedding_parameters(self) -> list[nn.Parameter]:
        """The feature embedding tables (dense gradients, no weight decay)."""
        tag = self.tag_coef if self.tag is None else self.tag.weight
        genome = [p for p in (self.genome_tag, self.genome_coef, self.no_genome) if p is not None]
        return [tag, self.genre.weight, *genome]

    @torch.no_grad()
    def set_bases(self, feats: FeatureTensors) -> None:
        """Copy the fixed feature bases of ``feats`` into the model (its checkpoint then carries
        them, and :meth:`bases` rebuilds the same inputs later)."""
        for block, rank in (("tag", self.rank("tag")), ("genome", self.rank("genome"))):
            if rank != feats.rank(block):
                raise ValueError(f"the model's {block} block has rank {rank}, the features "
                                 f"{feats.rank(block)}")
            if rank:
                getattr(self, f"{block}_basis").copy_(feats.bases[block])

    def rank(self, block: str) -> int:
        coef = getattr(self, f"{block}_coef", None)
        return 0 if coef is None else coef.shape[0]

    def bases(self) -> dict[str, np.ndarray]:
        """The fixed feature bases (block -> (n_features, rank)), for :class:`FeatureTensors`."""
        return {b: getattr(self, f"{b}_basis").cpu().numpy() for b in ("tag", "genome")
                if self.rank(b)}

    def table(self, block: str) -> torch.Tensor:
        """The (n_features, dim) embedding table of ``block``: learned, or basis @ coef."""
        if block == "genre":
            return self.genre.weight
        if self.rank(block):
            return getattr(self, f"{block}_basis") @ getattr(self, f"{block}_coef")
        return self.tag.weight if block == "tag" else self.genome_tag

    def input_map(self, genre_width: int) -> torch.Tensor:
        """The encoder as one (k, dim) matrix on :attr:`FeatureTensors.inputs` (projected tag
        bag, the first ``genre_width`` genres' weights[, projected genome row, no-genome flag]):
        each block's learned table composed with its slice of the projection."""
        p = self.proj.weight.split(self.dim, dim=1)
        genres = self.genre.weight[:genre_width]  # rows past the features' genres: no movie
        maps = [self.tag_coef @ p[0].T, genres @ p[1].T]
        if self.no_genome is not None:
            maps += [self.genome_coef @ p[2].T, self.no_genome.unsqueeze(0) @ p[2].T]
        return torch.cat(maps)

    def fused(self, feats: FeatureTensors) -> bool:
        """Whether ``feats`` holds inputs that :meth:`input_map` reads (every block projected,
        no more genres than the model's)."""
        return (feats.inputs is not None and self.tag is None
                and (self.no_genome is None or self.genome_tag is None)
                and feats.genre_width <= self.genre.num_embeddings
                and (self.no_genome is None) == (feats.genome is None))

    def forward(self, rows: torch.Tensor, feats: FeatureTensors) -> torch.Tensor:
        if self.fused(feats):  # one gather and one matmul: the same map, fewer operations
            return torch.addmm(self.proj.bias, feats.inputs.index_select(0, rows),
                               self.input_map(feats.genre_width))
        if self.tag is None:
            tag = feats.low["tag"].index_select(0, rows) @ self.tag_coef
        else:
            t_idx, t_off, t_w = feats.gather(feats.tags, rows)
            tag = self.tag(t_idx, t_off, per_sample_weights=t_w)
        g_idx, g_off, g_w = feats.gather(feats.genres, rows)
        parts = [tag, self.genre(g_idx, g_off, per_sample_weights=g_w)]
        if self.no_genome is not None:
            if self.genome_tag is None:
                weighted = feats.low["genome"].index_select(0, rows) @ self.genome_coef
            else:
                rel = feats.genome[rows]
                weighted = (rel @ self.genome_tag) / rel.sum(1, keepdim=True).clamp_min(1e-6)
            has = feats.genome_mask[rows].unsqueeze(1)
            parts.append(torch.where(has, weighted, self.no_genome.expand_as(weighted)))
        return self.proj(torch.cat(parts, dim=1))

    @torch.no_grad()
    def contributions(self, row: int, feats: FeatureTensors, direction: torch.Tensor,
                      genome_top: int = 50) -> list[tuple[str, int, float, float]]:
        """(block, feature index, weight, w_f P_b e_f . direction) for each feature of movie
        ``row``: the movie vector is sum_f w_f P_b e_f + bias, so these add up to its
        projection on ``direction`` (less the bias); the genome block lists its ``genome_top``
        most relevant tags."""
        blocks = self.proj.weight.split(self.dim, dim=1)  # P_b, in block_names() order
        rows = torch.tensor([row], device=direction.device)
        out = []

        def add(block: str, idx: torch.Tensor, weights: torch.Tensor):
            p = blocks[self.block_names().index(block)]
            values = weights * ((self.table(block)[idx] @ p.T) @ direction)
            out.extend(zip([block] * len(idx), idx.tolist(), weights.tolist(), values.tolist(),
                           strict=True))

        t_idx, _, t_w = feats.gather(feats.tags, rows)
        add("tag", t_idx, t_w)
        g_idx, _, g_w = feats.gather(feats.genres, rows)
        add("genre", g_idx, g_w)
        if self.no_genome is not None and bool(feats.genome_mask[row]):
            rel = feats.genome[row]
            top = torch.topk(rel, min(genome_top, len(rel))).indices
            add("genome", top, rel[top] / rel.sum())
        return out


class RatingHead(nn.Module):
    """The rating from a user-movie interaction: mu + b_user + b_movie + (scale x) interaction
    (``cosine_bias``: cosine scaled by a learned factor; ``dot_bias``: the dot product)."""

    def __init__(self, n_users: int, n_movies: int, global_mean: float, scaled: bool) -> None:
        super().__init__()
        self.user_bias = nn.Embedding(n_users, 1, sparse=True)
        self.movie_bias = nn.Embedding(n_movies, 1, sparse=True)
        self.global_bias = nn.Parameter(torch.tensor(float(global_mean)))
        self.scale = nn.Parameter(torch.tensor(RATING_HALF_RANGE)) if scaled else None

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.movie_bias.weight)

    @torch.no_grad()
    def set_readout(self, mean: float, user_bias: np.ndarray, movie_bias: np.ndarray,
                    scale: float) -> None:
        """Replace the learned rating map by a calibrated one: damped-mean biases and a scale
        on the cosine chosen on val (see :func:`movierec.experiment.calibrate_readout`)."""
        if self.scale is None:
            raise ValueError("only a cosine_bias head has a scale to calibrate")
        self.global_bias.fill_(float(mean))
        for table, values in ((self.user_bias, user_bias), (self.movie_bias, movie_bias)):
            table.weight.copy_(torch.as_tensor(values, dtype=table.weight.dtype).unsqueeze(1))
        self.scale.fill_(float(scale))

    def forward(self, inter: torch.Tensor, movies: torch.Tensor,
                user_bias: torch.Tensor | None,
                movie_bias: torch.Tensor | None = None) -> torch.Tensor:
        """``movie_bias``: the biases of ``movies`` when already looked up (None: looked up)."""
        bias = self.global_bias
        if user_bias is not None:
            bias = bias + user_bias
        bias = bias + (self.movie_bias(movies).squeeze(1) if movie_bias is None else movie_bias)
        return bias + (self.scale * inter if self.scale is not None else inter)


class MovieRecModel(nn.Module):
    """User embeddings and a movie encoder (content, movie id, or both); ``forward`` predicts
    ratings, :meth:`rank_users`/:meth:`rank_movies` give the retrieval space."""

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
        self.content = (ContentEncoder(c.n_tags, c.n_genres, c.n_genome_tags, c.dim,
                                       c.tag_rank, c.genome_rank)
                        if c.encoder != "id" else None)
        self.movie = (nn.Embedding(c.n_movies, c.dim, sparse=True)
                      if c.encoder in ("hybrid", "id") else None)
        self.head = (RatingHead(c.n_users, c.n_movies, c.global_mean, c.score == "cosine_bias")
                     if c.score != "cosine" else None)
        self.movie_prior = None
        if c.prior:  # fixed, not trained: see init_prior
            self.movie_prior = nn.Embedding(c.n_movies, 1)
            self.movie_prior.weight.requires_grad_(False)
        if c.encoder == "hybrid" or c.prior:
            # movies rated in the training data; the others keep their initial id vector (zero)
            # and prior, so they are scored by content alone (see set_seen)
            self.register_buffer("seen", torch.ones(c.n_movies, dtype=torch.bool))
        else:
            self.seen = None
        self._register_load_state_dict_pre_hook(_rename_legacy_keys, with_module=True)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise every parameter from ``generator`` (no global RNG), always in the same
        order (user, history, content, movie id), so a seed gives the same model."""
        c = self.config
        std = 0.1
        nn.init.normal_(self.user.weight, 0.0, std, generator=generator)
        if self.history_items is not None:
            nn.init.normal_(self.history_items.weight, 0.0, std, generator=generator)
            self.history_items.weight[c.n_movies] = 0.0
        if self.content is not None:
            self.content.reset_parameters(generator, std)
        if self.movie is not None:
            if c.encoder == "hybrid":
                nn.init.zeros_(self.movie.weight)  # unseen movies keep a zero id vector
            else:
                nn.init.normal_(self.movie.weight, 0.0, std, generator=generator)
        if self.head is not None:
            self.head.reset_parameters()
        if self.movie_prior is not None:
            nn.init.zeros_(self.movie_prior.weight)

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Embedding tables with sparse gradients (optimised with SparseAdam, no decay): the
        user and movie tables, of which a batch touches few rows. The tag table is dense: a
        batch's tag bags touch hundreds of thousands of entries, which a dense gradient sums
        faster than a sparse one coalesces (measured in the benchmark)."""
        mods = [self.user, self.movie, self.history_items]
        if self.head is not None:
            mods += [self.head.user_bias, self.head.movie_bias]
        return [m.weight for m in mods if m is not None]

    def dense_embedding_parameters(self) -> list[nn.Parameter]:
        """Dense embedding tables (tags, genres, genome tags): Adam, no weight decay."""
        return [] if self.content is None else self.content.embedding_parameters()

    def dense_parameters(self) -> list[nn.Parameter]:
        """Everything else that trains: the projection, global bias and scale (AdamW)."""
        other = {id(p) for p in self.sparse_parameters() + self.dense_embedding_parameters()}
        return [p for p in self.parameters() if id(p) not in other and p.requires_grad]

    @torch.no_grad()
    def init_prior(self, counts: torch.Tensor) -> None:
        """Set the retrieval prior to log(1 + count) of each movie's training positives
        (centred): ranking starts from popularity and training learns what is personal on top
        of it. The prior is fixed, not trained: trained with (row-wise) Adam, every movie in a
        batch moved by about the learning rate whatever its gradient's size, which scrambled
        the popularity order (in a val probe on generated medium data the main model then
        stayed below most-popular's val NDCG@10; fixed, it is above it from the first epoch, as
        the bench report's quality table shows, and as good on ml-latest-small: README, Speed)."""
        if self.movie_prior is None:
            raise ValueError("this model has no retrieval prior (prior=False)")
        logc = torch.log1p(counts.float())
        self.movie_prior.weight.copy_((logc - logc.mean()).unsqueeze(1))

    def set_seen(self, seen: torch.Tensor) -> None:
        """Mark the movies the training data rates. An unseen movie's id vector is masked in
        every score (so catalogue negatives never train it): a movie never rated in training
        is encoded by its content alone, with the prior of a movie never rated."""
        if self.seen is None:
            raise ValueError("this model has no movie-id vectors or prior to mask")
        self.seen.copy_(seen)

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
        return self.movie_parts(rows, feats, use_id)[0]

    def movie_parts(self, rows: torch.Tensor, feats: FeatureTensors, use_id: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(movie vectors, their raw id vectors or None), the id vectors for the penalty."""
        out = None if self.content is None else self.content(rows, feats)
        ids = None
        if self.movie is not None and use_id:
            ids = self.movie(rows)
            masked = ids if self.seen is None else ids * self.seen[rows].unsqueeze(1)
            out = masked if out is None else out + masked
        return out, ids

    # ---- scores: the rating, and the retrieval score in its pairwise and factored forms ----

    def predict_from_vectors(self, users: torch.Tensor, u: torch.Tensor, movies: torch.Tensor,
                             m: torch.Tensor) -> torch.Tensor:
        """Predicted ratings for paired rows of user vectors ``u`` and movie vectors ``m``."""
        user_bias = None if self.head is None else self.head.user_bias(users).squeeze(1)
        return self.rating_from_vectors(u, m, movies, user_bias)

    def rating_from_vectors(self, u: torch.Tensor, m: torch.Tensor, movies: torch.Tensor,
                            user_bias: torch.Tensor | None = None,
                            movie_bias: torch.Tensor | None = None) -> torch.Tensor:
        """The rating formula for paired rows of user vectors ``u``, movie vectors ``m`` (of the
        movie indexes ``movies``) and user biases (ignored by ``score="cosine"``); also used
        for a user folded in after training, who has no row in the user tables."""
        if self.config.score == "dot_bias":
            inter = (u * m).sum(1)
        else:
            inter = nn.functional.cosine_similarity(u, m, dim=1, eps=1e-8)
        return self.rating_from_interaction(inter, movies, user_bias, movie_bias)

    def rating_from_interaction(self, inter: torch.Tensor, movies: torch.Tensor,
                                user_bias: torch.Tensor | None = None,
                                movie_bias: torch.Tensor | None = None) -> torch.Tensor:
        """The rating from the interaction term (the cosine, or for ``dot_bias`` the dot
        product) of each (user, movie) pair: :meth:`rating_from_vectors` after the product."""
        if self.head is None:
            return RATING_MID + RATING_HALF_RANGE * inter
        return self.head(inter, movies, user_bias, movie_bias)

    def retrieval_logits(self, un: torch.Tensor, mn: torch.Tensor,
                         movies: torch.Tensor | None, pairwise: bool = True,
                         prior: torch.Tensor | None = None) -> torch.Tensor:
        """The retrieval score cos(user, movie) / temperature (+ the movie's prior) from unit
        vectors: of paired rows, or (``pairwise=False``) of every user row against every movie
        row (a 1-D ``un``: one user, logits of shape (movies,)); ``movies`` None: ``mn`` is the
        whole catalogue in index order. :meth:`rank_users` and :meth:`rank_movies` factor the
        same score for search."""
        t = self.config.temperature
        if un.dim() == 1:  # one user (a fold-in): a matrix-vector product
            logits = mn @ (un / t)
        else:
            logits = (un * mn).sum(1) / t if pairwise else (un @ mn.T) / t
        if self.movie_prior is not None:
            logits = logits + (self.prior(movies) if prior is None else prior)
        return logits

    def retrieval_from_cosine(self, cos: torch.Tensor, prior: torch.Tensor | None
                              ) -> torch.Tensor:
        """:meth:`retrieval_logits` of paired rows from their cosines (and the movies'
        priors, for a model with a retrieval prior)."""
        logits = cos / self.config.temperature
        return logits if self.movie_prior is None else logits + prior

    def negative_factors(self, mn: torch.Tensor, movies: torch.Tensor,
                         prior: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`retrieval_logits` of user rows ``un`` against the negatives ``movies`` (unit
        vectors ``mn``), less ``bound``, in factors: ``un @ mt.T + offset`` (the temperature
        divides the few negatives, not the many users; the prior enters as a row); ``bound``
        is an upper bound of every logit (1 / temperature + the largest prior: |cos| <= 1).
        Returns (mt, offset, bound) for :func:`~movierec.loss.bounded_softmax`."""
        t = self.config.temperature
        if self.movie_prior is None:
            bound = torch.tensor(1.0 / t, device=mn.device)
            return mn / t, (-bound).expand(len(mn)), bound
        prior = self.prior(movies) if prior is None else prior
        bound = 1.0 / t + prior.detach().max()
        return mn / t, prior - bound, bound

    def prior(self, movies: torch.Tensor | None = None) -> torch.Tensor:
        """The (fixed) retrieval prior of ``movies`` (None: every movie)."""
        rows = (torch.arange(self.config.n_movies, device=self.movie_prior.weight.device)
                if movies is None else movies)
        return self.movie_prior(rows).squeeze(1)

    @property
    def default_ranking(self) -> RankBy:
        """How the model ranks by default: matrix factorisation by its predicted rating, the
        cosine models by nearest-embedding search."""
        return "rating" if self.config.score == "dot_bias" else "cosine"

    def rank_users(self, u: torch.Tensor, by: RankBy = "cosine") -> torch.Tensor:
        """User vectors in the ranking space: score = rank_users(u) . rank_movies(m) + offset.
        ``by="cosine"``: the cosine (/ temperature, for a model with a retrieval prior);
        ``by="rating"``: the predicted rating up to a per-user constant."""
        if by not in BY:
            raise ValueError(f"by must be 'cosine' or 'rating', got {by!r}")
        if self.config.score == "dot_bias":
            return u
        un = nn.functional.normalize(u, dim=-1)
        if by == "rating" and self.head is not None:
            return un * self.head.scale
        if by == "cosine" and self.movie_prior is not None:
            return un / self.config.temperature
        return un

    def rank_movies(self, m: torch.Tensor, by: RankBy = "cosine"
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Movie vectors in the ranking space and the per-movie offset (None: no offset)."""
        if by not in BY:
            raise ValueError(f"by must be 'cosine' or 'rating', got {by!r}")
        bias = None if self.head is None else self.head.movie_bias.weight.squeeze(1)
        if self.config.score == "dot_bias":
            return m, (bias if by == "rating" else None)
        mn = nn.functional.normalize(m, dim=-1)
        if by == "rating" and bias is not None:
            return mn, bias
        if by == "cosine" and self.movie_prior is not None:
            return mn, self.prior()
        return mn, None

    def forward(self, users: torch.Tensor, movies: torch.Tensor,
                feats: FeatureTensors) -> torch.Tensor:
        """Predicted ratings for (user, movie) index pairs; each unique movie is encoded once."""
        uniq, inverse = unique_indices(movies, feats.n_movies)
        m = self.encode_movies(uniq, feats).index_select(0, inverse)
        return self.predict_from_vectors(users, self.user_vectors(users), movies, m)

    @torch.no_grad()
    def all_movie_vectors(self, feats: FeatureTensors, block: int = 8192,
                          use_id: bool = True) -> torch.Tensor:
        """Vectors of every movie, encoded in blocks."""
        dev = self.user.weight.device
        rows = torch.arange(feats.n_movies, device=dev)
        return torch.cat([self.encode_movies(rows[i:i + block], feats, use_id)
                          for i in range(0, feats.n_movies, block)])


def _rename_legacy_keys(module, state_dict, prefix, *args) -> None:
    """Load-state-dict hook: map a checkpoint's pre-module keys (``tag.weight``, ...) to the
    current ones (``content.tag.weight``, ...)."""
    for old, new in LEGACY_KEYS.items():
        if prefix + old in state_dict and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)
    if module.seen is not None and prefix + "seen" not in state_dict:  # before set_seen existed
        state_dict[prefix + "seen"] = torch.ones_like(module.seen)
