"""Probe (val only): does id dropout lift the new-movie study's val window beyond its noise?

The study (``movierec.coldstart``) chooses the dropout rate on the first seed's val reading of
the window's new movies (13 users on ml-latest-small). Here the main setting is tuned in the
study's tuning world with and without id dropout for several seeds, each val user's new-movie
NDCG@10 averaged over seeds, and the difference bootstrapped over the val users
(``stats.paired_bootstrap``, the report's). Nothing reads test.
Run: ``MOVIEREC_DATA=... python docs/probes/id_dropout_new_movies.py [rate] [seeds...]``.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from movierec import coldstart, records, stats


def main(rate: float, seeds: list[int]) -> dict:
    conf, s, spec, setting = records.probe_setup()  # make small's parameters, make tune's choice
    study = coldstart.build(s)
    values = {0.0: [], rate: []}
    for seed in seeds:
        for r in values:
            trial = spec.tune(study.tune, {**setting, "id_dropout": r}, seed, conf["THREADS"])
            v = coldstart.cold_values(trial.fitted.rankings[trial.by], study.val_window)
            values[r].append(v["ndcg@10"])
        print(json.dumps({seed: {str(r): float(np.mean(v[-1])) for r, v in values.items()}}),
              flush=True)
    with_, without = np.mean(values[rate], axis=0), np.mean(values[0.0], axis=0)
    boot = stats.paired_bootstrap(with_, without, seed=conf["SEED"])
    per_seed = [float(np.mean(a) - np.mean(b)) for a, b in zip(values[rate], values[0.0],
                                                                strict=True)]
    return {"rate": rate, "users": len(with_), "with": float(with_.mean()),
            "without": float(without.mean()), "bootstrap": boot, "per_seed_diff": per_seed}


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(float(args[0]) if args else 0.25,
                          [int(x) for x in args[1:]] or [42, 1, 2, 3]), indent=1))
