"""Probe (val only): a movie's age at the user's "now" as a retrieval term of the main model.

For each seed the tuned main model is trained on train (early stopping on val, as the report
does) and its val ranking is read with ``g x h(age)`` added to its score, for a few ``g``:
``age`` = the year of the user's last training rating minus the movie's release year (from
its title), and ``h(age)`` = log of how often training ratings fall at that age over how often
the catalogue offers that age when they are made (estimated on train alone; ages below 0 and
titles without a year are buckets of their own). The term is an inner product (a one-hot of
the user's year against each movie's h by year), so top-k search is unchanged. Nothing reads
test. Run: ``MOVIEREC_DATA=... python docs/probes/age_term.py [seeds...]``; prints JSON.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import torch
import yaml

from movierec import provenance, records
from movierec.csr import Csr
from movierec.evaluate import hit_matrix, ranking_metrics
from movierec.experiment import setup
from movierec.features import release_years
from movierec.report import notebook_defaults
from movierec.split import TRAIN
from movierec.tensors import RankingVectors

MAX_AGE = 40  # ages from here on pooled
GS = (0.0, 0.25, 0.5, 1.0)


def years_of(seconds: np.ndarray) -> np.ndarray:
    return pd.to_datetime(seconds, unit="s").year.to_numpy()


def age_bucket(now: np.ndarray, release: np.ndarray, future: bool = True) -> np.ndarray:
    """0..MAX_AGE (clipped), MAX_AGE + 1 for released after now (``future``; else age 0),
    MAX_AGE + 2 for no year."""
    age = now - release
    out = np.clip(np.nan_to_num(age, nan=0), 0, MAX_AGE).astype(np.int64)
    if future:
        out[np.nan_to_num(age, nan=0) < 0] = MAX_AGE + 1
    out[np.isnan(release)] = MAX_AGE + 2
    return out


def age_log_ratio(prep, release: np.ndarray) -> np.ndarray:
    """h by age bucket, from the training ratings alone (one pseudo-count each side)."""
    mask = prep.split.labels == TRAIN
    when, movies = years_of(prep.timestamps[mask]), prep.items[mask]
    rated = np.bincount(age_bucket(when, release[movies]), minlength=MAX_AGE + 3)
    offered = np.zeros(MAX_AGE + 3)
    for year, n in zip(*np.unique(when, return_counts=True), strict=True):
        offered += n * np.bincount(age_bucket(np.full(len(release), year), release),
                                   minlength=MAX_AGE + 3)
    return np.log((rated + 1) / (rated.sum() + 1)) - np.log((offered + 1) / (offered.sum() + 1))


def with_age(vectors: RankingVectors, now: np.ndarray, release: np.ndarray, h: np.ndarray,
             g: float, future: bool) -> RankingVectors:
    years = np.arange(now.min(), now.max() + 1)
    user_extra = np.zeros((len(now), len(years)), np.float32)
    user_extra[np.arange(len(now)), now - years[0]] = g
    movie_extra = np.stack([h[age_bucket(np.full(len(release), y), release, future)]
                            for y in years], 1)
    cat = lambda a, b: torch.cat([a, torch.as_tensor(b, dtype=a.dtype, device=a.device)], 1)  # noqa: E731
    return RankingVectors(cat(vectors.users, user_extra), cat(vectors.movies, movie_extra),
                          vectors.offset)


def main(seeds: list[int]) -> dict:
    root = provenance.project_root()
    conf = {**notebook_defaults(root / "notebooks" / "movierec.ipynb"),  # make small's parameters
            **yaml.safe_load((root / "notebooks" / "params" / "small.yaml").read_text())}
    exp = setup(conf).exp
    prep = exp.prep
    spec, recorded, _ = records.main_search(conf, exp, root)
    setting = recorded[spec.name]["setting"]  # make tune's choice (a record must exist)
    release = release_years(prep.movies["title"])
    h = age_log_ratio(prep, release)
    mask = prep.split.labels == TRAIN
    now = np.zeros(prep.n_users, np.int64)
    np.maximum.at(now, prep.users[mask], years_of(prep.timestamps[mask]))
    counts = np.bincount(prep.items[mask], minlength=prep.n_movies)
    rel = exp.val_relevant
    cold = counts[rel.indices] == 0
    users = np.repeat(np.arange(len(exp.val_users)), rel.lengths())
    cold_rel = Csr.from_pairs(users[cold], rel.indices[cold], len(exp.val_users))
    out = {"h": {str(a): round(float(x), 3) for a, x in enumerate(h)}, "setting": setting,
           "val_cold_pairs": int(cold.sum()), "seeds": {}}
    for seed in seeds:
        trial = spec.tune(exp, setting, seed)
        vectors = trial.fitted.rankings[trial.by]
        rows = {}
        for g, future in [(g, f) for g in GS for f in (True, False) if g or f]:
            v = with_age(vectors, now, release, h, g, future)
            topk = exp.rank(v, part=1, k=50)
            m = ranking_metrics(topk, rel, (10, 50), n_items=prep.n_movies)
            rows[f"{g}{'' if future else ' clip'}"] = {
                **{k: m[k] for k in ("ndcg@10", "recall@10", "recall@50")},
                "cold_pairs_in_top50": int(hit_matrix(topk, cold_rel).sum())}
        out["seeds"][seed] = rows
        print(json.dumps({seed: rows}), flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main([int(s) for s in sys.argv[1:]] or [42, 1, 2, 3]), indent=1))
