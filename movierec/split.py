"""Per-user chronological train/val/test split (the seed's 70/20/10, in integer arithmetic)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TRAIN, VAL, TEST = 0, 1, 2
PART_NAMES = ("train", "val", "test")


def split_sizes(n: np.ndarray | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sizes of train, val and test for a user with ``n`` ratings.

    train = floor(7n/10); of the remaining m, val = floor(2m/3); test = the rest. Integer
    arithmetic: the seed's ``int(n * 0.7)`` is one short for n = 90, 170, 180, 330, ...
    """
    n = np.asarray(n, np.int64)
    n_train = 7 * n // 10
    m = n - n_train
    n_val = 2 * m // 3
    return n_train, n_val, m - n_val


def chronological_split(users: np.ndarray, timestamps: np.ndarray, movies: np.ndarray
                        ) -> np.ndarray:
    """Label each rating TRAIN, VAL or TEST (int8), aligned with the input rows.

    Each user's ratings are ordered by timestamp, ties (ratings in the same second) by movie,
    so that the split depends on the ratings, not on the order a file lists them in (a user
    rates a movie once); the first ``split_sizes(n)[0]`` go to train, the next to val, the
    rest to test. Vectorised: one lexsort and a cumulative count, no per-user Python.
    """
    users = np.asarray(users)
    order = np.lexsort((movies, timestamps, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, counts)
    n_train, n_val, _ = split_sizes(counts)
    n_train, n_val = np.repeat(n_train, counts), np.repeat(n_val, counts)
    part = np.full(len(users), TEST, np.int8)
    part[rank < n_train + n_val] = VAL
    part[rank < n_train] = TRAIN
    labels = np.empty(len(users), np.int8)
    labels[order] = part
    return labels


@dataclass
class Split:
    """Row positions of each part into the ratings table."""

    labels: np.ndarray

    def rows(self, part: int) -> np.ndarray:
        return np.flatnonzero(self.labels == part)

    def sizes(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=3)
        return {name: int(c) for name, c in zip(PART_NAMES, counts, strict=True)}


def split_ratings(ratings: pd.DataFrame) -> Split:
    """Chronological per-user split of a ratings table."""
    return Split(chronological_split(ratings["userId"].to_numpy(),
                                     ratings["timestamp"].to_numpy(),
                                     ratings["movieId"].to_numpy()))


def train_cutoffs(ratings: pd.DataFrame, split: Split) -> pd.Series:
    """userId -> timestamp of the user's last training rating (for leak-free tags)."""
    train = ratings.iloc[split.rows(TRAIN)]
    return train.groupby("userId")["timestamp"].max()
