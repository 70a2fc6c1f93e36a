"""Probe: what the report would cost on data of ml-1m's shape (issue 35: "run the report ...
on generated data of ml-100k's and ml-1m's shapes"), measured instead of guessed.

Every model's search at 1M ratings is not run here (a session has about three hours of two
cores); instead each model trains one unit of work on both datasets: the same setting (make
tune's and make tune-baselines' choice on ml-latest-small, read from their records), the same
number of epochs (our models 2, LightFM 10, SVD and SVD++ 2; the others a whole fit). The ratio
of the two times, times what the model's search took on ml-latest-small (the records' seconds)
and what its replay took in the small report (its timings), is the estimate at 1M ratings: it
assumes that a search at 1M ratings tries the same number of settings for as many epochs as on
ml-latest-small, which it need not (walks go on past an end; early stopping reads val).
Test is never read; the generated data's val is read by nothing but this timing.

Run: ``MOVIEREC_DATA=... python docs/probes/ml1m_cost.py FOLDER`` with FOLDER written by
``make generate SCALE=1m LAYOUT=ml-1m SEED=... OUT=FOLDER`` (about 4 minutes on 2 cores).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time

import yaml

from movierec import records
from movierec.baselines import baseline
from movierec.experiment import setup
from movierec.provenance import project_root
from movierec.report import notebook_defaults
from movierec.variants import main_spec, model_specs

ROOT = project_root()
UNIT = {"ours": 2, "lightfm": 10, "surprise": 2}  # epochs in a unit of work
COSTLY = ("svd", "svdpp", "knn_baseline", "ease", "als", "lightfm", "bpr")


def params_for(dataset: str) -> dict:
    return {**notebook_defaults(ROOT / "notebooks" / "movierec.ipynb"),
            **yaml.safe_load((ROOT / "notebooks" / "params" / "small.yaml").read_text()),
            "DATASET": dataset}


def units(params: dict, settings: dict[str, dict]) -> dict[str, float]:
    """Seconds of one unit of work of each model on ``params``' dataset."""
    s = setup(params)
    exp, seed, threads = s.exp, params["SEED"], s.threads
    out = {}
    ours = {sp.name: sp for sp in [main_spec(params), *model_specs(params)]}
    for name, spec in ours.items():
        short = dataclasses.replace(spec.train, epochs=UNIT["ours"], patience=UNIT["ours"],
                                    progress=False)
        spec = dataclasses.replace(spec, train=short)
        start = time.perf_counter()
        spec.tune(exp, settings[name], seed, threads)
        out[name] = time.perf_counter() - start
    for name in COSTLY:
        b = baseline(name)
        setting = dict(settings[name])
        if name in ("svd", "svdpp"):
            setting["n_epochs"] = UNIT["surprise"]
        if name == "lightfm":
            b = dataclasses.replace(b, max_epochs=UNIT["lightfm"])
        start = time.perf_counter()
        b.tune(exp, setting, seed, 1)
        out[name] = time.perf_counter() - start
    for name, sec in out.items():
        print(f"  {exp.prep.name}: {name} {sec:.1f} s", flush=True)
    return out


def main(folder: str) -> None:
    small = "ml-latest-small"
    main_rec = json.loads(records.path_of(ROOT, small, "main").read_text())["searches"]
    base_rec = json.loads(records.path_of(ROOT, small, "baselines").read_text())["searches"]
    recorded = {**main_rec, **base_rec}
    settings = {k: v["setting"] for k, v in recorded.items()}
    report = json.loads((ROOT / "reports" / "small" / "metrics.json").read_text())["timings"]
    at_small = units(params_for(small), settings)
    at_1m = units(params_for(folder), settings)
    rows, search_total, replay_total = [], 0.0, 0.0
    for name in at_small:
        ratio = at_1m[name] / at_small[name]
        searched = recorded[name]["seconds"] * ratio
        replayed = report[name]["seconds"] * ratio
        search_total += searched
        replay_total += replayed
        rows.append((name, at_small[name], at_1m[name], ratio, searched, replayed))
    print("| model | unit, ml-latest-small (s) | unit, 1M shape (s) | ratio | its search at 1M "
          "(min) | its replay in the report at 1M (min) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, a, b, r, sr, rp in rows:
        print(f"| {name} | {a:.1f} | {b:.1f} | {r:.1f} | {sr / 60:.0f} | {rp / 60:.0f} |")
    print(f"searches {search_total / 3600:.1f} h of work; the report's replays "
          f"{replay_total / 3600:.1f} h of work (one job after another; the report runs the "
          "baselines' on two workers)")


if __name__ == "__main__":
    main(sys.argv[1])
