"""Movie features: genres, Snowball-stemmed user tags and the tag genome, as model-ready arrays.

Ragged per-movie lists (genres, tags) are stored as CSR bags -- ``offsets`` (n_movies + 1),
``indices`` and ``weights`` -- where a repeated tag becomes one entry whose weight is its share of
the movie's tag applications, so ``EmbeddingBag(mode="sum")`` yields the mean over all tag
applications with no padding. Index 0 of each vocabulary is "none": a movie without tags (or
genres) gets the bag ``[0]`` and so a learned "untagged" vector instead of padding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import scipy.sparse as sp

from movierec.csr import Csr
from movierec.data import DataError, MovieLens

GENRES: tuple[str, ...] = (
    "(no genres listed)", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western", "IMAX",
)
NO_TAG = "<no tag>"


@dataclass
class MovieFeatures:
    """Everything the movie encoder reads, aligned to the model's movie index."""

    movie_ids: np.ndarray  # int32: model index -> movieId
    genres: Csr
    tags: Csr
    tag_vocab: list[str]  # index 0 is NO_TAG
    genome: np.ndarray | None  # float32 (n_movies, n_genome_tags), zeros where absent
    genome_mask: np.ndarray | None  # bool (n_movies,): movie has genome scores
    genome_tags: list[str] | None
    tags_dropped_leak_free: int = 0

    @property
    def n_movies(self) -> int:
        return len(self.movie_ids)

    def blocks(self) -> list[str]:
        """Names of the feature blocks in use (for the report)."""
        return ["genres", "tags"] + (["genome"] if self.genome is not None else [])


def bags_from_pairs(rows: np.ndarray, cols: np.ndarray, n_rows: int) -> Csr:
    """Build CSR bags from (row, col) pairs; duplicates become weights, empty rows get [0]."""
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    empty = np.setdiff1d(np.arange(n_rows), rows, assume_unique=False)
    rows = np.concatenate([rows, empty])
    cols = np.concatenate([cols, np.zeros(len(empty), np.int64)])
    width = int(cols.max(initial=0)) + 1
    key, counts = np.unique(rows * width + cols, return_counts=True)
    r, c = key // width, key % width
    row_total = np.bincount(r, weights=counts, minlength=n_rows)
    offsets = np.zeros(n_rows + 1, np.int64)
    np.cumsum(np.bincount(r, minlength=n_rows), out=offsets[1:])
    weights = (counts / row_total[r]).astype(np.float32)
    return Csr(offsets, c.astype(np.int64), weights)


def movie_index(movies: pd.DataFrame, ids: np.ndarray) -> np.ndarray:
    """Map movieIds to model indexes (positions in ``movies``); all ids must be known."""
    lookup = np.full(int(movies["movieId"].max()) + 1, -1, np.int64)
    lookup[movies["movieId"].to_numpy()] = np.arange(len(movies))
    return lookup[np.asarray(ids)]


def genre_bags(movies: pd.DataFrame, file: str = "movies.csv", first: int = 2) -> Csr:
    """Per-movie genre bags over :data:`GENRES`; unknown genre names raise DataError (naming
    the lines of ``file``, whose first movie is on line ``first``)."""
    split = movies["genres"].str.split("|")
    exploded = split.explode()
    codes = pd.Index(list(GENRES)).get_indexer(exploded.to_numpy())
    bad = codes < 0
    if bad.any():  # the frame's index: each movie's row in the file
        rows = np.unique(exploded.index.to_numpy()[bad])
        names = sorted(set(exploded.to_numpy()[bad]))[:5]
        raise DataError(file, f"unknown genre(s) {names}; expected one of {list(GENRES)}",
                        column="genres", lines=rows + first, count=len(rows))
    positions = np.repeat(np.arange(len(movies)), split.str.len().to_numpy())
    return bags_from_pairs(positions, codes, len(movies))


@lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem.snowball import SnowballStemmer

    return SnowballStemmer("english")


def stem_tags(tags: pd.Series) -> pd.Series:
    """Lower-case and Snowball-stem each tag (the whole string, as the seed did).

    Only the unique strings are stemmed, then mapped back.
    """
    lower = tags.astype("str").str.lower()
    uniques = pd.unique(lower)
    stem = _stemmer().stem
    stemmed = dict(zip(uniques, (stem(t) for t in uniques), strict=True))
    return lower.map(stemmed)


def tag_bags(
    tags: pd.DataFrame, movies: pd.DataFrame, vocab: list[str] | None = None
) -> tuple[Csr, list[str]]:
    """Per-movie stemmed-tag bags and the vocabulary (0 = NO_TAG, then the stemmed tags in
    sorted order, so that it does not depend on the order of the file's rows).

    Given a ``vocab``, tags outside it are ignored (used for a frozen vocabulary).
    """
    stemmed = stem_tags(tags["tag"])
    if vocab is None:
        codes, uniques = pd.factorize(stemmed, sort=True)
        vocab = [NO_TAG, *map(str, uniques)]
        codes = codes + 1
    else:
        codes = pd.Index(vocab).get_indexer(stemmed)
    keep = codes > 0
    rows = movie_index(movies, tags["movieId"].to_numpy()[keep])
    return bags_from_pairs(rows, codes[keep], len(movies)), vocab


def genome_matrix(
    scores: pd.DataFrame, genome_tags: pd.DataFrame, movies: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Dense float32 (n_movies, n_genome_tags) relevance aligned to the movie index, and a mask
    of movies that have scores. Column j is the j-th tagId in ascending order (tag 1 is a real
    tag, not padding)."""
    tag_ids = np.sort(genome_tags["tagId"].to_numpy())
    col = np.searchsorted(tag_ids, scores["tagId"].to_numpy())
    row = movie_index(movies, scores["movieId"].to_numpy())
    matrix = np.zeros((len(movies), len(tag_ids)), np.float32)
    matrix[row, col] = scores["relevance"].to_numpy(np.float32)
    mask = np.zeros(len(movies), bool)
    mask[row] = True
    return matrix, mask


def leak_free_tags(tags: pd.DataFrame, cutoff: pd.Series) -> pd.DataFrame:
    """Keep only tags written no later than the tagging user's last training rating.

    ``cutoff`` maps userId -> timestamp of that user's last training rating. Tags of users with
    no training rating are dropped.
    """
    limit = tags["userId"].map(cutoff).to_numpy(dtype=np.float64, na_value=-np.inf)
    return tags[tags["timestamp"].to_numpy() <= limit].reset_index(drop=True)


def build_features(
    ds: MovieLens, *, use_genome: bool = True, tag_cutoff: pd.Series | None = None
) -> MovieFeatures:
    """All movie features of a dataset. ``tag_cutoff`` (userId -> timestamp) enables the
    leak-free tag option; the genome is used when present and ``use_genome``."""
    tags = ds.tags
    dropped = 0
    if tag_cutoff is not None:
        tags = leak_free_tags(tags, tag_cutoff)
        dropped = len(ds.tags) - len(tags)
    tbags, vocab = tag_bags(tags, ds.movies)
    genome = mask = gtags = None
    if use_genome and ds.genome_scores is not None:
        genome, mask = genome_matrix(ds.genome_scores, ds.genome_tags, ds.movies)
        gtags = ds.genome_tags.sort_values("tagId")["tag"].astype(str).tolist()
    return MovieFeatures(
        movie_ids=ds.movies["movieId"].to_numpy(np.int32),
        genres=genre_bags(ds.movies, str(ds.path / ds.movies_file), 1 if ds.classic else 2),
        tags=tbags,
        tag_vocab=vocab,
        genome=genome,
        genome_mask=mask,
        genome_tags=gtags,
        tags_dropped_leak_free=dropped,
    )


YEAR = re.compile(r"\((\d{4})(?:\s*[-–]\s*\d{0,4}\s*)?\)\s*$")


def release_years(titles: pd.Series) -> np.ndarray:
    """Each movie's release year from the end of its title ("Heat (1995)"; a span such as
    "(2006–2007)" gives its first year), NaN where the title names none."""
    found = titles.astype(str).str.extract(YEAR, expand=False)
    return pd.to_numeric(found, errors="coerce").to_numpy(np.float64)


def bag_matrix(bags: Csr, n_cols: int) -> sp.csr_matrix:
    """The bags as a sparse (n_rows, n_cols) matrix of their weights."""
    return sp.csr_matrix((bags.weights, bags.indices, bags.offsets), shape=(bags.n_rows, n_cols))


def genome_weights(genome: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Relevance rows scaled to sum to 1 (the genome block is their weighted mean of genome-tag
    vectors), zero rows for movies without scores."""
    total = genome.sum(1, keepdims=True, dtype=np.float64)
    return np.where(mask[:, None], genome / np.maximum(total, 1e-6), 0.0).astype(np.float32)


def low_rank_basis(matrix: np.ndarray | sp.spmatrix, rank: int, seed: int = 0,
                   power_iterations: int = 4, oversample: int = 16) -> tuple[np.ndarray, float]:
    """The top ``rank`` right singular vectors of ``matrix`` (n_cols, rank; float32) and the
    share of its squared Frobenius norm they keep, by randomised SVD (Halko, Martinsson & Tropp
    2011) in float64 from a seeded Gaussian sketch; each vector's sign is fixed so that its
    largest entry is positive. Projecting feature rows on it (``rows @ basis``) keeps what a
    rank-``rank`` linear map of the features can express, in ``rank`` numbers per row."""
    n_cols = matrix.shape[1]
    if not 0 < rank <= n_cols:
        raise ValueError(f"rank must be in 1..{n_cols} (the feature count), got {rank}")
    a = matrix.astype(np.float64)
    width = min(rank + oversample, n_cols)
    q = a @ np.random.default_rng(seed).standard_normal((n_cols, width))
    for _ in range(power_iterations):
        q, _ = np.linalg.qr(q)
        q = a @ (a.T @ q)
    q, _ = np.linalg.qr(q)
    _, sv, vt = np.linalg.svd(np.asarray((a.T @ q).T), full_matrices=False)
    basis = vt[:rank].T
    basis *= np.sign(basis[np.abs(basis).argmax(0), np.arange(rank)])
    total = (a.multiply(a).sum() if sp.issparse(a) else np.square(a).sum())
    return basis.astype(np.float32), float(np.square(sv[:rank]).sum() / max(total, 1e-300))
