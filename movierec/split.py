"""The splits: per-user chronological train/val/test (the seed's 70/20/10, in integer
arithmetic), the report's main split; and a global-time split, where new movies arrive as they
do for a deployed recommender (the cold-start study, :mod:`movierec.coldstart`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TRAIN, VAL, TEST = 0, 1, 2
UNUSED = 3  # a rating neither trained on nor evaluated (the global-time split's)
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
        counts = np.bincount(self.labels, minlength=UNUSED + 1)[:UNUSED]
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


def time_cuts(timestamps: np.ndarray, val_tenths: int = 1, test_tenths: int = 1
              ) -> tuple[int, int]:
    """The global split's two cut times T1 < T2: the times of the first rating of the last
    ``val_tenths + test_tenths`` tenths and of the last ``test_tenths`` tenths of all ratings by
    time (positions in integer arithmetic). An error when ratings in the same second fill a
    whole window (T1 = T2)."""
    t = np.sort(np.asarray(timestamps, np.int64))
    n = len(t)
    t1 = int(t[n * (10 - val_tenths - test_tenths) // 10])
    t2 = int(t[n * (10 - test_tenths) // 10])
    if not t1 < t2:
        raise ValueError(f"the global split's cuts coincide (T1 = T2 = {t1}): too few distinct "
                         "rating times for a val window")
    return t1, t2


def seen_before(users: np.ndarray, timestamps: np.ndarray, t: int) -> np.ndarray:
    """For each rating, whether its user rated anything before time ``t``."""
    users = np.asarray(users)
    early = np.zeros(int(users.max(initial=-1)) + 1, bool)
    early[users[np.asarray(timestamps) < t]] = True
    return early[users]


def time_split(users: np.ndarray, timestamps: np.ndarray, t1: int, t2: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """The global-time split's labels in its two worlds, aligned with the ratings.

    The tuning world: TRAIN before T1; VAL in [T1, T2), by users who rated before T1; UNUSED
    else. The test world: TRAIN before T2 (every rating then, the val window's too); TEST from
    T2 on, by users who rated before T2; UNUSED else. A model is tuned on the first and refit
    on the second, as the per-user split's protocol tunes on train and refits on train + val.
    """
    ts = np.asarray(timestamps)
    tune = np.full(len(ts), UNUSED, np.int8)
    tune[ts < t1] = TRAIN
    tune[(ts >= t1) & (ts < t2) & seen_before(users, ts, t1)] = VAL
    test = np.full(len(ts), UNUSED, np.int8)
    test[ts < t2] = TRAIN
    test[(ts >= t2) & seen_before(users, ts, t2)] = TEST
    return tune, test


def first_rated(movies: np.ndarray, timestamps: np.ndarray, n_movies: int) -> np.ndarray:
    """Each movie's first rating time (int64 max for a movie nobody rated)."""
    first = np.full(n_movies, np.iinfo(np.int64).max)
    np.minimum.at(first, np.asarray(movies), np.asarray(timestamps, np.int64))
    return first
