"""A movie's age at the user's "now" as a term of the main model's retrieval score.

The user's now is the year the model serves them: on the per-user chronological split, the year
of their last rating in the data a model is fitted on (their next ratings follow it); in a
global-time split (the new-movie study, :mod:`movierec.coldstart`), the year of the cut, that
data's last year, for every user (:data:`NOWS`). A movie's age is that year minus its release
year (from its title). ``h(age)`` is the log of how often the
fitted-on ratings fall at that age over how often the movies known then (rated at least once in
that data) offer it when the ratings are made: time-aware popularity, estimated on the training
data alone (docs/research.md, "A movie's age at the user's now"). Ages from :data:`MAX_AGE` on
are pooled; a movie released after the user's now and one whose title names no year are
buckets of their own.

The term ``weight x h(age)`` is an inner product, a one-hot of the user's year against each
movie's ``h`` by year (:func:`age_inputs`), so nearest-embedding search is unchanged; the
weight is chosen on val among :data:`AGE_WEIGHTS` (:func:`movierec.variants.choose_age`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from movierec.prepare import Prepared

MAX_AGE = 40  # ages from here on are pooled
FUTURE, NO_YEAR = MAX_AGE + 1, MAX_AGE + 2  # released after the user's now; no year in title
N_BUCKETS = MAX_AGE + 3
AGE_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # the term's weights tried on val (0: no term)
# a user's now: "user", the year of their last fitted-on rating; "cut", the fitted-on data's last
# year for every user (a model served at a global cut, long after some users' last rating)
NOWS = ("user", "cut")


def years_of(seconds: np.ndarray) -> np.ndarray:
    """The calendar year (UTC) of each Unix time."""
    return pd.to_datetime(np.asarray(seconds, np.int64), unit="s").year.to_numpy(np.int64)


def year_span(prep: Prepared) -> tuple[int, int]:
    """(first year, number of years) of the dataset's ratings: the columns of the term (its
    shape only; the values come from the fitted-on data)."""
    if not len(prep.timestamps):
        return 0, 1
    first, last = years_of(np.array([prep.timestamps.min(), prep.timestamps.max()]))
    return int(first), int(last - first + 1)


def age_buckets(now: np.ndarray, release: np.ndarray) -> np.ndarray:
    """The bucket of each (now, release year) pair: the age 0..MAX_AGE (pooled above),
    :data:`FUTURE` for a release after now, :data:`NO_YEAR` for a NaN release year."""
    age = np.asarray(now, np.float64) - release
    out = np.clip(np.nan_to_num(age, nan=0.0), 0, MAX_AGE).astype(np.int64)
    out[np.nan_to_num(age, nan=0.0) < 0] = FUTURE
    out[np.isnan(age)] = NO_YEAR
    return out


def log_ratio(when: np.ndarray, movies: np.ndarray, release: np.ndarray) -> np.ndarray:
    """h by bucket from ratings made in years ``when`` of the movies ``movies`` (indexes into
    ``release``): log(share of the ratings at that age) - log(share of the offers at that
    age), an offer being a known movie (one of ``movies``) at a rating's time; one pseudo-count
    on each side. A bucket with no offer (no known movie was there when a rating was made,
    e.g. no title without a year was rated) has no evidence and h = 0, not the
    log(offers / ratings) the pseudo-counts alone would give it."""
    rated = np.bincount(age_buckets(when, release[movies]), minlength=N_BUCKETS)
    known = release[np.unique(movies)]
    offered = np.zeros(N_BUCKETS)
    for year, n in zip(*np.unique(when, return_counts=True), strict=True):
        offered += n * np.bincount(age_buckets(np.full(len(known), year), known),
                                   minlength=N_BUCKETS)
    h = np.log((rated + 1) / (rated.sum() + 1)) - np.log((offered + 1) / (offered.sum() + 1))
    h[offered == 0] = 0.0  # a rated bucket is always offered: only empty ones are neutral
    return h


def age_inputs(prep: Prepared, parts: tuple[int, ...], now: str = "user"
               ) -> tuple[np.ndarray, np.ndarray]:
    """The term's inputs from the split ``parts`` alone: each user's now as a column
    (0..n_years - 1 of :func:`year_span`), by the rule ``now`` of :data:`NOWS` (``"user"``: the
    year of their last rating there, a user without one at the parts' last year; ``"cut"``:
    every user at the parts' last year), and each movie's h at every year's now,
    (n_movies, n_years) float32."""
    if now not in NOWS:
        raise ValueError(f"now must be one of {NOWS}, got {now!r}")
    first, n_years = year_span(prep)
    mask = np.isin(prep.split.labels, parts)
    when, users = years_of(prep.timestamps[mask]), prep.users[mask]
    release = prep.release_years
    h = log_ratio(when, prep.items[mask], release)
    year = np.full(prep.n_users, when.max() if len(when) else first + n_years - 1, np.int64)
    if len(when) and now == "user":
        seen = np.unique(users)
        last = np.full(prep.n_users, np.iinfo(np.int64).min)
        np.maximum.at(last, users, when)
        year[seen] = last[seen]
    years = first + np.arange(n_years)
    table = h[age_buckets(years[None, :], release[:, None])].astype(np.float32)
    return year - first, table
