"""Probe (val only): what id dropout costs the main model's warm ranking on the per-user split.

The new-movie study (``movierec.coldstart``) chooses an id dropout rate on its val window's new
movies; the rule for adopting it into the main model is that it must not lower the warm ranking
on val. Here the tuned main model is trained on train (early stopping on val, as the report
does) with each rate and each seed, and its val figures are read. Nothing reads test.
Run: ``MOVIEREC_DATA=... python docs/probes/id_dropout_warm.py [seeds...]``; prints JSON.
"""

from __future__ import annotations

import json
import sys

from movierec import records

RATES = (0.0, 0.25, 0.5)


def main(seeds: list[int]) -> dict:
    conf, s, spec, setting = records.probe_setup()  # make small's parameters, make tune's choice
    exp = s.exp
    out = {"setting": setting, "seeds": {}}
    for seed in seeds:
        rows = {}
        for rate in RATES:
            trial = spec.tune(exp, {**setting, "id_dropout": rate}, seed, conf["THREADS"])
            rows[f"{rate:g}"] = {k: trial.row[k] for k in ("val_ndcg@10", "val_recall@10",
                                                            "val_rmse")}
        out["seeds"][seed] = rows
        print(json.dumps({seed: rows}), flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main([int(s) for s in sys.argv[1:]] or [42, 1, 2, 3]), indent=1))
