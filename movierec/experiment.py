"""A prepared dataset on a device, with the tensors and the evaluation every model shares.

Rating metrics (RMSE, MAE) and ranking metrics on the one protocol of :mod:`movierec.evaluate`:
history = what the model was fitted on, relevant = the user's movies of the part rated >= 4,
candidates = every other movie. Val ranks a seeded sample of at most ``max_val_users`` users;
test ranks every user with a relevant test movie (or a seeded sample of ``max_test_users``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from movierec.csr import Csr
from movierec.evaluate import per_user_ranking, ranking_metrics
from movierec.prepare import Prepared, Source
from movierec.retrieval import topk_search
from movierec.runtime import resolve_device, seed_everything, set_threads
from movierec.split import TEST, TRAIN, VAL
from movierec.tensors import FeatureTensors, RankingVectors, Ratings

# the test movies by how often train + val rate them: never, a few times, often
BUCKETS = {"cold": (0, 0), "sparse": (1, 5), "warm": (6, float("inf"))}


@dataclass
class Experiment:
    """A prepared dataset on a device, with the tensors and ranking sets every model uses."""

    prep: Prepared
    device: torch.device
    seed: int = 0  # picks the val users that monitor ranking when there are too many
    max_val_users: int = 20_000
    max_test_users: int | None = None  # None: every test user is ranked; else a seeded sample
    tag_rank: int = 0  # > 0: content encoders read tag bags projected on this many columns
    genome_rank: int = 0  # > 0: the same for genome rows (see FeatureTensors)
    feats: FeatureTensors = field(init=False)
    train: Ratings = field(init=False)
    val: Ratings = field(init=False)
    test: Ratings = field(init=False)

    def __post_init__(self) -> None:
        self.feats = FeatureTensors(self.prep.features, self.device, self.tag_rank,
                                    self.genome_rank)
        self.train, self.val, self.test = (
            Ratings.from_arrays(*self.prep.part(p), self.device) for p in (TRAIN, VAL, TEST))
        self.train_val = Ratings.from_arrays(*self.prep.part(TRAIN, VAL), self.device)
        self.val_users, self.val_relevant = self.prep.relevant(VAL)
        if len(self.val_users) > self.max_val_users:
            pick = np.sort(np.random.default_rng(self.seed).choice(
                len(self.val_users), self.max_val_users, replace=False))
            self.val_users, self.val_relevant = self.val_users[pick], self.val_relevant.select(pick)
        self.val_history = self.prep.history(TRAIN).select(self.val_users)
        self.test_users, self.test_relevant = self.prep.relevant(TEST)
        n_test = len(self.test_users)
        if self.max_test_users is not None and n_test > self.max_test_users:
            pick = np.sort(np.random.default_rng([self.seed, 1]).choice(
                n_test, self.max_test_users, replace=False))
            self.test_users, self.test_relevant = self.test_users[pick], self.test_relevant.select(
                pick)
        self.test_history = self.prep.history(TRAIN, VAL).select(self.test_users)

    def with_data(self, prep: Prepared) -> Experiment:
        """The same experiment (device, seed, samples, feature ranks) on other prepared data
        (e.g. the leaky-tags ablation's)."""
        return replace(self, prep=prep)

    def ratings(self, *parts: int) -> Ratings:
        """The rating tensors of the split ``parts`` (train; val; test; train + val)."""
        known = {(TRAIN,): self.train, (VAL,): self.val, (TEST,): self.test,
                 (TRAIN, VAL): self.train_val}
        return known[parts]

    def positive_counts(self, data: Ratings, min_rating: float = 0.0) -> torch.Tensor:
        """Per-movie count of the ratings >= ``min_rating`` in ``data``."""
        keep = data.ratings >= min_rating
        return torch.bincount(data.movies[keep], minlength=self.prep.n_movies)

    def rank(self, vectors: RankingVectors, part: int = TEST, k: int = 50
             ) -> np.ndarray:
        """Top-k movie indexes for the evaluated users of ``part`` (history masked)."""
        users, history = ((self.test_users, self.test_history) if part == TEST
                          else (self.val_users, self.val_history))
        rows = torch.as_tensor(users, device=vectors.users.device)
        idx, _ = topk_search(vectors.users[rows], vectors.movies, k, exclude=history,
                             movie_offset=vectors.offset)
        return idx

    def relevant_of(self, part: int) -> Csr:
        return self.test_relevant if part == TEST else self.val_relevant

    def ranking(self, vectors: RankingVectors, part: int = TEST,
                ks: tuple[int, ...] = (10, 20, 50)) -> dict[str, float]:
        """Ranking metrics (user means and standard errors, coverage) of ``part``."""
        return ranking_metrics(self.rank(vectors, part, max(ks)), self.relevant_of(part), ks,
                               n_items=self.prep.n_movies)

    def val_ranking(self, vectors: RankingVectors) -> dict[str, float]:
        """Val recall@10 and NDCG@10, as every model is tuned on."""
        metrics = self.ranking(vectors, VAL, ks=(10,))
        return {f"val_{k}": metrics[k] for k in ("recall@10", "ndcg@10")}

    def bucket_relevant(self, lo: int, hi: float) -> tuple[np.ndarray, Csr]:
        """Test users with a relevant movie that train + val rate ``lo``..``hi`` times
        (positions in ``test_users``) and those movies alone."""
        counts = np.bincount(self.prep.part(TRAIN, VAL)[1], minlength=self.prep.n_movies)
        rel = self.test_relevant
        n = counts[rel.indices]
        keep = (n >= lo) & (n <= hi)
        users = np.repeat(np.arange(len(rel.lengths())), rel.lengths())[keep]
        part = Csr.from_pairs(users, rel.indices[keep], len(rel.lengths()))
        rows = np.flatnonzero(part.lengths() > 0)
        return rows, part.select(rows)

    def catalogue_leak(self) -> dict[str, int]:
        """What the catalogue tells of the test period: its movies that train + val never
        rate, and how many of those test rates. MovieLens lists a movie only if someone rated
        it, so nearly every never-rated movie is rated later: a score that puts never-rated
        movies first reads the future, and its cold-start recall with it."""
        never = self.positive_counts(self.train_val) == 0
        later = self.positive_counts(self.test) > 0
        return {"movies": self.prep.n_movies, "never_rated": int(never.sum()),
                "never_rated_rated_in_test": int((never & later).sum())}

    def test_ranking(self, vectors: RankingVectors, ks: tuple[int, ...] = (10, 20, 50)
                     ) -> tuple[dict[str, float], dict[str, np.ndarray], dict[str, dict]]:
        """One top-k search of the test users, three readings of it: the ranking metrics;
        each user's recall and NDCG at ``ks[0]`` (for the paired bootstrap); and the metrics of
        each bucket of :data:`BUCKETS` at 10 and 50, with only that bucket's relevant movies
        counted (users who have one; every movie outside the user's history is still a
        candidate), each user's recall@50 there too (key ``"<bucket> recall"``)."""
        topk = self.rank(vectors, TEST, max(*ks, 50))
        metrics = ranking_metrics(topk[:, :max(ks)], self.test_relevant, ks,
                                  n_items=self.prep.n_movies)
        values = per_user_ranking(topk, self.test_relevant, (ks[0],))
        per_user = {m: values[f"{m}@{ks[0]}"] for m in ("recall", "ndcg")}
        buckets = {}
        for name, (lo, hi) in BUCKETS.items():
            rows, relevant = self.bucket_relevant(lo, hi)
            if not len(rows):
                continue
            buckets[name] = {**ranking_metrics(topk[rows, :50], relevant, (10, 50)),
                             "users": len(rows), "relevant_pairs": len(relevant.indices)}
            per_user[f"{name} recall"] = np.full(len(self.test_users), np.nan)
            per_user[f"{name} recall"][rows] = per_user_ranking(topk[rows, :50], relevant,
                                                                (50,))["recall@50"]
        return metrics, per_user, buckets


def per_user_sse(pred: np.ndarray, data: Ratings, n_users: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-user sum of squared errors and rating count over ``data`` (every user row; 0 for a
    user without ratings there), from which RMSE over any set of users follows."""
    users = data.users.cpu().numpy()
    err = np.asarray(pred, np.float64) - data.ratings.cpu().numpy().astype(np.float64)
    return (np.bincount(users, err**2, n_users),
            np.bincount(users, minlength=n_users).astype(np.float64))


@dataclass
class Setup:
    """What a run works on: the experiment, where its data came from, and the machine."""

    exp: Experiment
    source: Source
    cache_status: str  # the prepared-data cache: hit, or written
    device: torch.device
    threads: int


def setup(params: dict[str, Any]) -> Setup:
    """The experiment a report's parameters describe (upper-case names, as in the notebook's
    parameters cell): Python, numpy and torch seeded with ``SEED``, ``THREADS`` torch threads,
    the ``DEVICE``, ``DATASET`` read from ``DATA_ROOT`` and prepared (``USE_GENOME``,
    ``LEAK_FREE_TAGS``; cached in ``CACHE_DIR``), and evaluated on ``MAX_TEST_USERS`` test users
    with ``TAG_RANK``/``GENOME_RANK`` feature bases. The one set-up of the notebook, ``make
    tune``, ``make bench`` and the probes."""
    seed_everything(params["SEED"])
    threads = set_threads(params["THREADS"])
    device = resolve_device(params["DEVICE"])
    source = Source(params["DATASET"], params.get("DATA_ROOT"), params.get("CACHE_DIR"),
                    use_genome=params["USE_GENOME"], leak_free_tags=params["LEAK_FREE_TAGS"])
    prep, status = source.prepare()
    exp = Experiment(prep, device, seed=params["SEED"], max_test_users=params["MAX_TEST_USERS"],
                     tag_rank=params["TAG_RANK"], genome_rank=params["GENOME_RANK"])
    return Setup(exp, source, status, device, threads)
