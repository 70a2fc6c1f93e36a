"""A loaded dataset turned into model-ready arrays: contiguous indexes, split and features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from movierec.data import MovieLens
from movierec.evaluate import Csr
from movierec.features import MovieFeatures, build_features, movie_index
from movierec.split import TEST, TRAIN, VAL, Split, split_ratings, train_cutoffs

RELEVANT_RATING = 4.0


@dataclass
class Prepared:
    """Ratings as index arrays (users 0..n_users-1 by ascending userId, movies by position in
    movies.csv), their split, and the movie features."""

    name: str
    movies: pd.DataFrame
    user_ids: np.ndarray
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    split: Split
    features: MovieFeatures
    summary: dict
    checksums: dict[str, str]
    dropped: dict[str, int]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_movies(self) -> int:
        return len(self.movies)

    def part(self, *parts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, movies, ratings) of the given split parts."""
        mask = np.isin(self.split.labels, parts)
        return self.users[mask], self.items[mask], self.ratings[mask]

    def history(self, *parts: int) -> Csr:
        """Each user's rated movies in ``parts`` (default train + val), for masking."""
        u, m, _ = self.part(*(parts or (TRAIN, VAL)))
        return Csr.from_pairs(u, m, self.n_users)

    def relevant(self, part: int = TEST, threshold: float = RELEVANT_RATING
                 ) -> tuple[np.ndarray, Csr]:
        """(user rows with >= 1 relevant movie, their relevant movies in ``part``)."""
        u, m, r = self.part(part)
        keep = r >= threshold
        full = Csr.from_pairs(u[keep], m[keep], self.n_users)
        rows = np.flatnonzero(full.lengths() > 0)
        return rows, full.select(rows)


def prepare(ds: MovieLens, *, leak_free_tags: bool = False, use_genome: bool = True) -> Prepared:
    """Index, split and featurise a dataset.

    ``leak_free_tags`` keeps only tags written no later than the tagging user's last training
    rating (by default every tag is used, as in the seed: see README, "Leakage").
    """
    r = ds.ratings
    user_ids, users = np.unique(r["userId"].to_numpy(), return_inverse=True)
    split = split_ratings(r)
    cutoff = train_cutoffs(r, split) if leak_free_tags else None
    features = build_features(ds, use_genome=use_genome, tag_cutoff=cutoff)
    dropped = dict(ds.dropped)
    if leak_free_tags:
        dropped["tags_after_cutoff"] = features.tags_dropped_leak_free
    return Prepared(
        name=ds.name,
        movies=ds.movies,
        user_ids=user_ids.astype(np.int64),
        users=users.astype(np.int64),
        items=movie_index(ds.movies, r["movieId"].to_numpy()),
        ratings=r["rating"].to_numpy(np.float32),
        timestamps=r["timestamp"].to_numpy(np.int64),
        split=split,
        features=features,
        summary=ds.summary(),
        checksums=ds.checksums,
        dropped=dropped,
    )
