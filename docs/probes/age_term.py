"""Probe (val only): a movie's age at the user's "now" as a retrieval term of the main model.

For each seed the tuned main model is trained on train (early stopping on val, as the report
does) and its val ranking is read with its age term (``movierec.age``, set from train alone by
``variants.set_age``) at each weight of ``age.AGE_WEIGHTS``: ``age`` = the year of the user's
last training rating minus the movie's release year (from its title), ``h(age)`` = log of how
often training ratings fall at that age over how often the movies known then offer that age
when they are made. The term is an inner product, so top-k search is unchanged. The model now
chooses the weight on val itself (``variants.choose_age``); this probe shows every weight's
figures, and val's cold movies in each top 50. Nothing reads test.
Run: ``MOVIEREC_DATA=... python docs/probes/age_term.py [seeds...]``; prints JSON.

(Before the term joined the model, 2026-12-01, this probe built it by hand, with offers counted
over the whole catalogue: docs/research.md has those figures.)
"""

from __future__ import annotations

import json
import sys

import numpy as np

from movierec import records
from movierec.age import AGE_WEIGHTS
from movierec.csr import Csr
from movierec.evaluate import hit_matrix, ranking_metrics
from movierec.split import TRAIN
from movierec.variants import set_age


def main(seeds: list[int]) -> dict:
    conf, s, spec, setting = records.probe_setup()  # make small's parameters, make tune's choice
    exp, prep = s.exp, s.exp.prep
    counts = np.bincount(prep.items[prep.split.labels == TRAIN], minlength=prep.n_movies)
    rel = exp.val_relevant
    cold = counts[rel.indices] == 0
    users = np.repeat(np.arange(len(exp.val_users)), rel.lengths())
    cold_rel = Csr.from_pairs(users[cold], rel.indices[cold], len(exp.val_users))
    out = {"setting": setting, "val_cold_pairs": int(cold.sum()), "seeds": {}}
    for seed in seeds:
        trial = spec.tune(exp, setting, seed, conf["THREADS"])
        model, rows = trial.fitted.model, {"chosen": trial.tuned["age_weight"]}
        for g in AGE_WEIGHTS:
            set_age(exp, model, (TRAIN,), g)
            topk = exp.rank(model.ranking_vectors(exp.feats, "cosine"), part=1, k=50)
            m = ranking_metrics(topk, rel, (10, 50), n_items=prep.n_movies)
            rows[f"{g:g}"] = {**{k: m[k] for k in ("ndcg@10", "recall@10", "recall@50")},
                              "cold_pairs_in_top50": int(hit_matrix(topk, cold_rel).sum())}
        out["seeds"][seed] = rows
        print(json.dumps({seed: rows}), flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main([int(s) for s in sys.argv[1:]] or [42, 1, 2, 3]), indent=1))
