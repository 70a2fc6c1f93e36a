"""The two-tower model, composed of parts: a user table, a movie tower (a content encoder over the
movie's features, a movie-id table, or both), a rating head and a retrieval score. It owns its
loss (:meth:`MovieRecModel.loss`), which training and a new user's fold-in both call.

Movie encoder (the seed's design, bugs fixed): mean of the movie's tag embeddings, mean of its
genre embeddings and (when the dataset has one) the relevance-weighted mean of the genome-tag
embeddings, concatenated and projected by a Linear layer to the user-embedding size. The parts
are chosen by :class:`ModelConfig` (:func:`build_parts`):

- ``encoder``: ``"content"`` (the seed), ``"hybrid"`` (content plus a movie-id embedding that
  starts at zero, so a movie never seen in training is encoded by its content alone) or ``"id"``
  (a movie-id embedding only: plain matrix factorisation).
- ``score``: ``"cosine"`` maps cos(user, movie) onto the rating scale, 2.75 + 2.25 cos, as the seed
  intended; ``"cosine_bias"`` adds global, user and movie biases and a scale; ``"dot_bias"`` is
  biased matrix factorisation, mu + b_u + b_m + <u, m>.
- the retrieval score (how a model recommends): interaction / temperature, plus a fixed
  per-movie prior (log popularity) when ``prior`` is set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from movierec.loss import Objective, bounded_softmax, rmse
from movierec.ops import unique_indices
from movierec.tensors import FeatureTensors, RankingVectors

RATING_MID, RATING_HALF_RANGE = 2.75, 2.25  # cos in [-1, 1] -> rating in [0.5, 5.0]
Encoder = Literal["content", "hybrid", "id"]
Score = Literal["cosine", "cosine_bias", "dot_bias"]
RankBy = Literal["cosine", "rating"]
ENCODERS: tuple[str, ...] = get_args(Encoder)
SCORES: tuple[str, ...] = get_args(Score)
BY: tuple[str, ...] = get_args(RankBy)
INIT_STD = 0.1  # every embedding table starts as N(0, INIT_STD^2) (id tables of hybrids: 0)


def unit_rows(x: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """``(nn.functional.normalize(x, dim=1), the rows' norms)``, the rows multiplied by their
    norms' reciprocals rather than divided by them: the same values up to rounding, and a
    backward pass about twice as fast on a CPU (a broadcast division's gradient with respect
    to its divisor was one of the training step's slowest operations)."""
    norm = torch.linalg.vector_norm(x, dim=1)
    return x * norm.clamp_min(eps).reciprocal().unsqueeze(1), norm


def biased_rating(mean, user_bias, movie_bias, interaction, scale=None):
    """The biased rating formula, mu + b_user + b_movie + (scale x) interaction, for tensors
    or arrays alike: the rating head's (:class:`BiasedHead`) and the calibrated readout's
    (:func:`movierec.variants.calibrate_readout`), in one place and one order of operations."""
    return mean + user_bias + movie_bias + (interaction if scale is None else scale * interaction)


@dataclass(frozen=True)
class ModelConfig:
    """Sizes, the parts and the objective; saved with every checkpoint and saved model."""

    n_users: int
    n_movies: int
    n_tags: int
    n_genres: int
    dim: int
    n_genome_tags: int = 0  # 0: no genome branch
    encoder: Encoder = "content"
    score: Score = "cosine"
    global_mean: float = 3.5
    prior: bool = False  # a fixed per-movie logit (log popularity) in the retrieval score
    temperature: float = 1.0  # retrieval score = interaction / temperature (+ prior); the main
    # model's is one of its settings (variants.MAIN_SPACE); without a prior it orders nothing
    tag_rank: int = 0  # > 0: tag table = fixed basis (n_tags, tag_rank) @ learned coefficients
    genome_rank: int = 0  # > 0: the same for the genome-tag table
    age_years: int = 0  # > 0: an age-at-the-user's-now term over this many years (AgeTerm)
    objective: Objective = field(default_factory=Objective)

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.objective.rank_weight and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(**{**d, "objective": Objective(**d.get("objective", {}))})


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
        most relevant tags, or, for a movie without genome scores, the learned no-genome vector
        (feature index -1)."""
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
        elif self.no_genome is not None:
            p = blocks[self.block_names().index("genome")]
            out.append(("genome", -1, 1.0, float((self.no_genome @ p.T) @ direction)))
        return out



# ---- the parts ----


class MovieIds(nn.Module):
    """A learned vector per movie (sparse gradients). ``masked`` (a hybrid's): the table
    starts at zero and a movie not marked as rated (:meth:`set_seen`) adds nothing, so that the
    catalogue negatives of the retrieval loss never train it and a movie never rated is
    encoded by its content alone."""

    def __init__(self, n_movies: int, dim: int, masked: bool) -> None:
        super().__init__()
        self.table = nn.Embedding(n_movies, dim, sparse=True)
        self.register_buffer("seen", torch.ones(n_movies, dtype=torch.bool) if masked else None)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None) -> None:
        if self.seen is not None:
            nn.init.zeros_(self.table.weight)
        else:
            nn.init.normal_(self.table.weight, 0.0, INIT_STD, generator=generator)

    @torch.no_grad()
    def set_seen(self, seen: torch.Tensor) -> None:
        """Mark the movies the training data rates; the others keep their zero vector."""
        if self.seen is None:
            raise ValueError("only a hybrid's movie-id table is masked")
        self.seen.copy_(seen)

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the rows' contribution to the movie vectors, their raw vectors for the penalty)."""
        ids = self.table(rows)
        return (ids if self.seen is None else ids * self.seen[rows].unsqueeze(1)), ids


class Cosine:
    """The interaction of a user and a movie vector: their cosine. Recommends by it."""

    default_ranking: RankBy = "cosine"
    unit_vectors = True  # the training step reads unit vectors for it

    @staticmethod
    def unit(x: torch.Tensor) -> torch.Tensor:
        """Vectors whose inner products are the interactions: the unit vectors."""
        return nn.functional.normalize(x, dim=-1)

    @staticmethod
    def pair(u: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return nn.functional.cosine_similarity(u, m, dim=1, eps=1e-8)

    @staticmethod
    def from_units(u: torch.Tensor, vecs: torch.Tensor, rows: torch.Tensor,
                   cos: torch.Tensor | None) -> torch.Tensor:
        """The interaction of user rows ``u`` and movies ``vecs[rows]`` whose cosine ``cos``
        the training step has computed."""
        return cos


class Dot:
    """The interaction of a user and a movie vector: their dot product (matrix
    factorisation). Recommends by its predicted rating."""

    default_ranking: RankBy = "rating"
    unit_vectors = False

    @staticmethod
    def unit(x: torch.Tensor) -> torch.Tensor:
        return x

    @staticmethod
    def pair(u: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return (u * m).sum(1)

    @staticmethod
    def from_units(u: torch.Tensor, vecs: torch.Tensor, rows: torch.Tensor,
                   cos: torch.Tensor | None) -> torch.Tensor:
        return (u * vecs.index_select(0, rows)).sum(1)


class FixedHead(nn.Module):
    """The seed's rating: 2.75 + 2.25 x interaction, which spans 0.5-5 for a cosine; nothing
    learned."""

    biased = False  # no user or movie biases

    def user_bias(self, users: torch.Tensor) -> None:
        return None

    def movie_bias(self, movies: torch.Tensor) -> None:
        return None

    def scale_users(self, users: torch.Tensor) -> torch.Tensor:
        """User vectors of the rating's factored form (up to a positive factor)."""
        return users

    def movie_offset(self) -> None:
        return None

    def forward(self, inter: torch.Tensor, user_bias: None, movie_bias: None) -> torch.Tensor:
        return RATING_MID + RATING_HALF_RANGE * inter


class BiasedHead(nn.Module):
    """The rating mu + b_user + b_movie + (scale x) interaction (:func:`biased_rating`); the
    biases are tables with sparse gradients; ``scaled``: a learned scale (for a cosine)."""

    biased = True

    def __init__(self, n_users: int, n_movies: int, global_mean: float, scaled: bool) -> None:
        super().__init__()
        self.user_biases = nn.Embedding(n_users, 1, sparse=True)
        self.movie_biases = nn.Embedding(n_movies, 1, sparse=True)
        self.global_bias = nn.Parameter(torch.tensor(float(global_mean)))
        self.scale = nn.Parameter(torch.tensor(RATING_HALF_RANGE)) if scaled else None

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.zeros_(self.user_biases.weight)
        nn.init.zeros_(self.movie_biases.weight)

    def user_bias(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_biases(users).squeeze(1)

    def movie_bias(self, movies: torch.Tensor) -> torch.Tensor:
        return self.movie_biases(movies).squeeze(1)

    def scale_users(self, users: torch.Tensor) -> torch.Tensor:
        return users if self.scale is None else users * self.scale

    def movie_offset(self) -> torch.Tensor:
        return self.movie_biases.weight.squeeze(1)

    @torch.no_grad()
    def set_readout(self, mean: float, user_bias: np.ndarray, movie_bias: np.ndarray,
                    scale: float) -> None:
        """Replace the learned rating map by a calibrated one: damped-mean biases and a scale
        on the cosine chosen on val (see :func:`movierec.variants.calibrate_readout`)."""
        if self.scale is None:
            raise ValueError("only a scaled (cosine) head has a scale to calibrate")
        self.global_bias.fill_(float(mean))
        for table, values in ((self.user_biases, user_bias), (self.movie_biases, movie_bias)):
            table.weight.copy_(torch.as_tensor(values, dtype=table.weight.dtype).unsqueeze(1))
        self.scale.fill_(float(scale))

    def forward(self, inter: torch.Tensor, user_bias: torch.Tensor,
                movie_bias: torch.Tensor) -> torch.Tensor:
        return biased_rating(self.global_bias, user_bias, movie_bias, inter, self.scale)


class Retrieval(nn.Module):
    """How the model recommends: the retrieval score of a user and a movie is
    ``interaction / temperature + prior[movie]`` (:meth:`score`), the prior a fixed per-movie
    logit (:meth:`MovieRecModel.init_prior`) or absent. Search (:meth:`scale_users`,
    :meth:`offset`) and the sampled softmax (:meth:`bounded`) read it in factored forms."""

    def __init__(self, n_movies: int, temperature: float, prior: bool) -> None:
        super().__init__()
        self.temperature = temperature
        # fixed, not trained: see MovieRecModel.init_prior
        self.register_buffer("prior", torch.zeros(n_movies) if prior else None)

    def prior_of(self, movies: torch.Tensor) -> torch.Tensor | None:
        return None if self.prior is None else self.prior.index_select(0, movies)

    def score(self, inter: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        """The retrieval score of paired rows from their interactions and the movies' priors
        (:meth:`prior_of`; None without a prior)."""
        logits = inter / self.temperature
        return logits if prior is None else logits + prior

    def scale_users(self, users: torch.Tensor) -> torch.Tensor:
        """User vectors of the score's factored form ``users @ movies.T + offset``: divided by
        the temperature when a prior is added (without one, the order needs no scaling)."""
        return users if self.prior is None else users / self.temperature

    def offset(self) -> torch.Tensor | None:
        return self.prior

    def bounded(self, movies: torch.Tensor, prior: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The score of user rows ``un`` against the negatives' unit vectors ``movies`` (priors
        ``prior``), less ``bound``, in factors: ``un @ mt.T + offset`` (the temperature divides
        the few negatives, not the many users; the prior enters as a row); ``bound`` bounds
        every score (1 / temperature + the largest prior: |cos| <= 1). Returns (mt, offset,
        bound) for :func:`~movierec.loss.bounded_softmax`."""
        t = self.temperature
        if prior is None:
            bound = torch.tensor(1.0 / t, device=movies.device)
            return movies / t, (-bound).expand(len(movies)), bound
        bound = 1.0 / t + prior.max()
        return movies / t, prior - bound, bound


class AgeTerm(nn.Module):
    """A movie's age at the user's now in the retrieval score: ``weight x h[movie, now]``, as
    an inner product of ``weight x`` a one-hot of the user's now (a column of ``n_years``)
    with the movie's row of ``h`` (:func:`movierec.age.age_inputs`). Fixed, not trained: set
    after training from the fitted-on data (:meth:`set`), the weight chosen on val; weight 0
    (the start) adds nothing. A user the model was not fitted on (a fold-in) is at the latest
    now of the fitted-on users (the fitted-on data's last year)."""

    def __init__(self, n_users: int, n_movies: int, n_years: int) -> None:
        super().__init__()
        self.register_buffer("user_year", torch.full((n_users,), n_years - 1))
        self.register_buffer("movie_h", torch.zeros(n_movies, n_years))
        self.register_buffer("weight", torch.zeros(()))

    @torch.no_grad()
    def set(self, user_year: np.ndarray, movie_h: np.ndarray, weight: float) -> None:
        if movie_h.shape != tuple(self.movie_h.shape):
            raise ValueError(f"the age term's table is {tuple(self.movie_h.shape)}, got "
                             f"{movie_h.shape}")
        self.user_year.copy_(torch.as_tensor(user_year))
        self.movie_h.copy_(torch.as_tensor(movie_h))
        self.weight.fill_(float(weight))

    @property
    def active(self) -> bool:
        return bool(self.weight != 0)

    def users(self, n: int, rows: torch.Tensor | None) -> torch.Tensor:
        """(n, n_years): weight x the one-hot of each user's now (``rows``: the users' rows;
        None: ``n`` new users, at the latest now)."""
        year = (self.user_year.index_select(0, rows) if rows is not None
                else self.user_year.max().expand(n))
        return nn.functional.one_hot(year, self.movie_h.shape[1]).to(self.movie_h) * self.weight


@dataclass
class MovieRows:
    """The movie side of a loss: the movies read (indexes), their vectors and their raw
    movie-id vectors (None: no id table, or not penalised)."""

    index: torch.Tensor
    vectors: torch.Tensor
    ids: torch.Tensor | None = None


class MovieRecModel(nn.Module):
    """User embeddings and a movie tower. :meth:`predict` rates, :meth:`ranking` gives the
    vectors that recommend, :meth:`loss` is the training objective."""

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = c = config
        self.user = nn.Embedding(c.n_users, c.dim, sparse=True)
        self.content = (ContentEncoder(c.n_tags, c.n_genres, c.n_genome_tags, c.dim,
                                       c.tag_rank, c.genome_rank)
                        if c.encoder != "id" else None)
        self.movie = (MovieIds(c.n_movies, c.dim, masked=c.encoder == "hybrid")
                      if c.encoder != "content" else None)
        self.interaction = Dot() if c.score == "dot_bias" else Cosine()
        self.head = (FixedHead() if c.score == "cosine" else
                     BiasedHead(c.n_users, c.n_movies, c.global_mean, c.score == "cosine_bias"))
        self.retrieval = Retrieval(c.n_movies, c.temperature, c.prior)
        self.age = AgeTerm(c.n_users, c.n_movies, c.age_years) if c.age_years else None
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise every parameter from ``generator`` (no global RNG), always in the same
        order (user, content, movie id), so a seed gives the same model."""
        nn.init.normal_(self.user.weight, 0.0, INIT_STD, generator=generator)
        if self.content is not None:
            self.content.reset_parameters(generator, INIT_STD)
        if self.movie is not None:
            self.movie.reset_parameters(generator)
        if isinstance(self.head, BiasedHead):
            self.head.reset_parameters()
        if self.retrieval.prior is not None:
            self.retrieval.prior.zero_()

    # ---- parameters, by optimiser ----

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Embedding tables with sparse gradients (row-wise Adam, no decay): the user and
        movie-id tables and the bias tables, of which a batch touches few rows. The tag table
        is dense: a batch's tag bags touch hundreds of thousands of entries, which a dense
        gradient sums faster than a sparse one coalesces (measured in the benchmark)."""
        tables = [self.user, None if self.movie is None else self.movie.table]
        if isinstance(self.head, BiasedHead):
            tables += [self.head.user_biases, self.head.movie_biases]
        return [t.weight for t in tables if t is not None]

    def dense_embedding_parameters(self) -> list[nn.Parameter]:
        """Dense embedding tables (tags, genres, genome tags): Adam, no weight decay."""
        return [] if self.content is None else self.content.embedding_parameters()

    def dense_parameters(self) -> list[nn.Parameter]:
        """Everything else that trains: the projection, global bias and scale (AdamW)."""
        other = {id(p) for p in self.sparse_parameters() + self.dense_embedding_parameters()}
        return [p for p in self.parameters() if id(p) not in other]

    # ---- state set from the training data ----

    @torch.no_grad()
    def init_prior(self, counts: torch.Tensor) -> None:
        """Set the retrieval prior to log(1 + count) of each movie's training positives
        (centred): ranking starts from popularity and training learns what is personal on top
        of it. The prior is fixed, not trained: trained with (row-wise) Adam, every movie in a
        batch moved by about the learning rate whatever its gradient's size, which scrambled
        the popularity order (docs/performance.md, "Why the prior is fixed")."""
        if self.retrieval.prior is None:
            raise ValueError("this model has no retrieval prior (prior=False)")
        logc = torch.log1p(counts.float())
        self.retrieval.prior.copy_(logc - logc.mean())

    def set_seen(self, seen: torch.Tensor) -> None:
        """Mark the movies the training data rates (a hybrid's id table; see
        :class:`MovieIds`)."""
        if self.movie is None:
            raise ValueError("this model has no movie-id vectors to mask")
        self.movie.set_seen(seen)

    # ---- vectors ----

    @torch.no_grad()
    def all_user_vectors(self) -> torch.Tensor:
        return self.user.weight.detach().clone()

    def read_movies(self, rows: torch.Tensor, feats: FeatureTensors, use_id: bool = True,
                    id_keep: torch.Tensor | None = None) -> MovieRows:
        """The vectors of the movies ``rows`` (content + id; ``use_id=False``: by content
        alone; ``id_keep``, one flag per movie of the catalogue: the movies whose id vector is
        added, the others read by content alone) and their raw id vectors."""
        out = None if self.content is None else self.content(rows, feats)
        ids = None
        if self.movie is not None and use_id:
            masked, ids = self.movie(rows)
            if id_keep is not None:
                masked = masked * id_keep.index_select(0, rows).unsqueeze(1)
            out = masked if out is None else out + masked
        return MovieRows(rows, out, ids)

    def encode_movies(self, rows: torch.Tensor, feats: FeatureTensors,
                      use_id: bool = True) -> torch.Tensor:
        """Movie vectors (len(rows), dim). ``use_id=False`` encodes by content alone."""
        return self.read_movies(rows, feats, use_id).vectors

    @torch.no_grad()
    def all_movie_vectors(self, feats: FeatureTensors, block: int = 8192,
                          use_id: bool = True) -> torch.Tensor:
        """Vectors of every movie, encoded in blocks."""
        rows = torch.arange(feats.n_movies, device=self.user.weight.device)
        return torch.cat([self.encode_movies(rows[i:i + block], feats, use_id)
                          for i in range(0, feats.n_movies, block)])

    # ---- the two jobs: rate, and rank (the factored forms of the scores) ----

    def predict(self, users: torch.Tensor, u: torch.Tensor, movies: torch.Tensor,
                m: torch.Tensor) -> torch.Tensor:
        """Predicted ratings of paired rows: users (indexes ``users``, vectors ``u``) and
        movies (indexes ``movies``, vectors ``m``)."""
        return self.head(self.interaction.pair(u, m), self.head.user_bias(users),
                         self.head.movie_bias(movies))

    @property
    def default_ranking(self) -> RankBy:
        """How the model ranks by default: matrix factorisation by its predicted rating, the
        cosine models by nearest-embedding search."""
        return self.interaction.default_ranking

    def _aged(self, by: str) -> bool:
        """Whether the ranking ``by`` carries the age term (the retrieval score's, when set)."""
        return by == "cosine" and self.age is not None and self.age.active

    def rank_users(self, u: torch.Tensor, by: RankBy = "cosine",
                   rows: torch.Tensor | None = None) -> torch.Tensor:
        """User vectors (rows, or one 1-D vector) in the ranking space: ``by="cosine"``, the
        retrieval score; ``by="rating"``, the predicted rating up to a per-user constant.
        ``rows``: the users' rows in the model, for the age term's now (None: new users)."""
        units = self.interaction.unit(u)
        out = (self.head.scale_users(units) if _check_by(by) == "rating"
               else self.retrieval.scale_users(units))
        if not self._aged(by):
            return out
        flat = out.dim() == 1
        out = out.reshape(-1, out.shape[-1])
        out = torch.cat([out, self.age.users(len(out), rows)], 1)
        return out[0] if flat else out

    def rank_movies(self, m: torch.Tensor, by: RankBy = "cosine"
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Movie vectors (every movie, in index order) in the ranking space and the per-movie
        offset (None: no offset)."""
        units = self.interaction.unit(m)
        if self._aged(by):
            units = torch.cat([units, self.age.movie_h.to(units)], 1)
        return units, (self.head.movie_offset() if _check_by(by) == "rating"
                       else self.retrieval.offset())

    def ranking(self, u: torch.Tensor, m: torch.Tensor, by: RankBy) -> RankingVectors:
        """Every user's vector ``u`` (in row order) and every movie's ``m`` (in index order) in
        the ranking space: ``score = users @ movies.T + offset``."""
        movies, offset = self.rank_movies(m, by)
        rows = torch.arange(len(u), device=u.device)
        return RankingVectors(self.rank_users(u, by, rows), movies, offset)

    @torch.no_grad()
    def ranking_vectors(self, feats: FeatureTensors, by: RankBy | None = None
                        ) -> RankingVectors:
        """Every user's and movie's vectors in the ranking space (``by``: see
        :meth:`rank_users`; None: :attr:`default_ranking`)."""
        self.eval()
        return self.ranking(self.all_user_vectors(), self.all_movie_vectors(feats),
                            by or self.default_ranking)

    # ---- the training objective ----

    def loss(self, feats: FeatureTensors, users: torch.Tensor, movies: torch.Tensor,
             ratings: torch.Tensor, negatives: torch.Tensor | None = None,
             id_keep: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss of a batch of (user, movie, rating) rows, ``negatives`` the
        catalogue negatives of the retrieval term (:attr:`ModelConfig.objective`), ``id_keep``
        the movies whose id vectors this step reads (None: all; the objective's id dropout).
        Each distinct movie (rated or negative) is read once (:meth:`loss_from`)."""
        wanted = movies if negatives is None else torch.cat([movies, negatives])
        uniq, inverse = unique_indices(wanted, feats.n_movies)
        return self.loss_from(self.user(users), self.head.user_bias(users),
                              self.read_movies(uniq, feats, id_keep=id_keep),
                              inverse[: len(movies)],
                              None if negatives is None else inverse[len(movies):], ratings)

    def loss_from(self, u: torch.Tensor, user_bias: torch.Tensor | None, movies: MovieRows,
                  pos: torch.Tensor, neg: torch.Tensor | None, ratings: torch.Tensor
                  ) -> torch.Tensor:
        """The loss of user rows ``u`` (biases ``user_bias``) and their ``ratings`` of the
        movies at rows ``pos`` of ``movies``, against the negatives at rows ``neg``
        (:attr:`ModelConfig.objective`): RMSE + rank_weight x sampled softmax (positives:
        ratings >= min_positive) + reg x the rows' squared norms (users, movie ids, biases).
        Training (:meth:`loss`) and a new user's fold-in
        (:meth:`movierec.recommend.Recommender.fold_in`) both call it."""
        obj = self.config.objective
        vecs = movies.vectors
        # every movie-side value is read once per distinct movie, then spread to the rows with
        # index_select (not advanced indexing, whose CPU backward adds duplicate rows from
        # several threads in a varying order: not bit-reproducible)
        movie_bias = self.head.movie_bias(movies.index)
        movie_bias = None if movie_bias is None else movie_bias.index_select(0, pos)
        un = mn = cos = u_norm = None
        if self.interaction.unit_vectors or neg is not None:  # each movie normalised once
            un, u_norm = unit_rows(u)  # the norm kept for the penalty
            mn = unit_rows(vecs)[0]
            cos = (un * mn.index_select(0, pos)).sum(1)  # shared by both terms
        loss = torch.zeros((), device=u.device)
        if obj.rating:
            inter = self.interaction.from_units(u, vecs, pos, cos)
            loss = loss + rmse(self.head(inter, user_bias, movie_bias), ratings)
        if neg is not None:
            prior = self.retrieval.prior_of(movies.index)
            rows, un_pos, pos_cos = pos, un, cos
            if obj.min_positive > 0:  # only the positives' rows enter the softmax
                kept = (ratings >= obj.min_positive).nonzero().squeeze(1)
                rows, un_pos = pos.index_select(0, kept), un.index_select(0, kept)
                pos_cos = cos.index_select(0, kept)
            score = self.retrieval.score(
                pos_cos, None if prior is None else prior.index_select(0, rows))
            mt, offset, bound = self.retrieval.bounded(
                mn.index_select(0, neg), None if prior is None else prior.index_select(0, neg))
            loss = loss + obj.rank_weight * bounded_softmax(score, un_pos, mt, offset, bound)
        if obj.reg:
            terms = [u.pow(2).sum(1) if u_norm is None else u_norm.square()]
            if movies.ids is not None:
                terms.append(movies.ids.pow(2).sum(1).index_select(0, pos))
            if user_bias is not None:
                terms += [user_bias**2, movie_bias**2]
            loss = loss + obj.reg * torch.stack(terms).sum(0).mean()
        return loss


def _check_by(by: str) -> str:
    if by not in BY:
        raise ValueError(f"by must be 'cosine' or 'rating', got {by!r}")
    return by
