"""Tune the main model on val with Optuna's TPE sampler, seeded, recording every trial
(``make tune``), or record the baselines' grid searches (``make tune-baselines``)::

    python -m movierec.tune [--dataset ml-latest-small] [--trials 30] [--seed 42]
                            [--out reports/tune/ml-latest-small.json]
    python -m movierec.tune --baselines [--dataset ml-latest-small] [--seed 42]
                            [--out reports/tune/ml-latest-small-baselines.json]

Each trial is one setting of :data:`SPACE` tuned as the report tunes it (trained on train,
early-stopped on val, readout calibrated on val; :meth:`movierec.variants.VariantSpec.tune`),
scored by val NDCG@10; test is never read. The record (every trial's setting and val figures,
the best one, the space, the sampler and its seed, the data's checksums) is what the report's
``TUNED`` parameter reads: the main model is then trained with the best setting, and the
trials are shown and counted among the configurations tried.

The baselines' record holds each baseline's whole val grid search as the report runs it
(:func:`movierec.protocol.search`; the notebook's ``BASELINES``, seed and threads): the report's
``BASELINE_SEARCH`` parameter reads it, fits each baseline's recorded choice again (its val
figures checked against the record: :func:`movierec.protocol.replay`), refits it per seed and
reads test, so that ``make small`` does not repeat the searches (most of its time).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from movierec.evaluate import best, lower_is_better
from movierec.experiment import Experiment
from movierec.prepare import Source
from movierec.progress import say
from movierec.protocol import search as search_grid
from movierec.provenance import git_state, write_json
from movierec.report import notebook_defaults
from movierec.train import TrainConfig, resolve_device, seed_everything, set_threads
from movierec.variants import VariantSpec, variant

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "movierec.ipynb"
# setting -> ("log", low, high) | ("choice", values): the main model's settings a search tries.
# The size and the negatives stop at the notebook's defaults: larger ones cost `make small` its
# 10-minute budget (a trial with 128 dimensions and 4,096 negatives took 9 minutes here).
SPACE: dict[str, tuple] = {
    "rank_weight": ("log", 0.1, 10.0),
    "temperature": ("log", 0.03, 0.5),
    "reg": ("log", 0.001, 0.3),
    "dim": ("choice", (32, 64)),
    "lr": ("log", 0.003, 0.05),
    "dense_lr": ("log", 0.001, 0.01),
    "n_negatives": ("choice", (256, 1024)),
    "min_positive": ("choice", (3.0, 3.5, 4.0)),
}


def suggest(trial, space: dict[str, tuple]) -> dict:
    """One setting drawn by an Optuna ``trial`` from ``space``."""
    out = {}
    for name, (kind, *args) in space.items():
        if kind == "log":
            out[name] = trial.suggest_float(name, args[0], args[1], log=True)
        elif kind == "choice":
            out[name] = trial.suggest_categorical(name, list(args[0]))
        else:
            raise ValueError(f"unknown kind {kind!r} of setting {name!r}")
    return out


def search(exp: Experiment, spec: VariantSpec, trials: int, seed: int,
           space: dict[str, tuple] = SPACE, save=None) -> dict:
    """``trials`` settings of ``space`` tuned on val, drawn by TPE seeded with ``seed``;
    returns the record (every trial's row, the best setting by ``spec.target``), also handed
    to ``save`` after every trial (a long search keeps what it found)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[dict] = []

    def record() -> dict:
        chosen = best(rows, spec.target)
        return {"model": spec.name, "target": spec.target, "sampler": "optuna TPE",
                "seed": seed, "space": {k: list(v[1:]) if v[0] == "log" else list(v[1])
                                        for k, v in space.items()},
                "trials": list(rows), "best": {k: chosen[k] for k in space}}

    def objective(trial) -> float:
        setting = suggest(trial, space)
        t0 = time.perf_counter()
        row = spec.tune(exp, setting, seed).row
        rows.append({**row, "seconds": time.perf_counter() - t0})
        say(f"tune {spec.name}: trial {len(rows)}/{trials}, {spec.target} "
            f"{row[spec.target]:.4f} ({setting})")
        if save is not None:
            save(record())
        return row[spec.target]

    direction = "minimize" if lower_is_better(spec.target) else "maximize"
    study = optuna.create_study(direction=direction,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    return record()


def search_baselines(exp: Experiment, names: list[str], seed: int, threads: int,
                     save=None) -> dict:
    """Each named baseline's val grid searched as the report searches it (those that do not
    scale to ``exp`` skipped, with the reason): its rows, its chosen setting and the seconds
    the search took; the record so far is also handed to ``save`` after every baseline."""
    from movierec.baselines import baseline

    record: dict = {"seed": seed, "threads": threads, "baselines": {}, "skipped": {}}
    for name in names:
        spec = baseline(name)
        reason = spec.skip_reason(exp.prep, len(exp.train))
        if reason is not None:
            record["skipped"][name] = reason
            continue
        t0 = time.perf_counter()
        chosen, rows = search_grid(exp, spec, seed, threads)
        record["baselines"][name] = {"sweep": rows, "setting": chosen.setting,
                                     "seconds": time.perf_counter() - t0}
        say(f"tune-baselines {name}: {len(rows)} settings, chosen {chosen.setting}")
        if save is not None:
            save(record)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-latest-small")
    ap.add_argument("--baselines", action="store_true",
                    help="record the notebook's BASELINES' grid searches instead")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=None, help="default: the notebook's SEED")
    ap.add_argument("--out", default=None,
                    help="default: reports/tune/<dataset>.json (-baselines.json)")
    args = ap.parse_args(argv)
    params = notebook_defaults(NOTEBOOK)
    seed = params["SEED"] if args.seed is None else args.seed
    seed_everything(seed)
    threads = set_threads(params["THREADS"])
    prep, _ = Source(args.dataset, use_genome=params["USE_GENOME"],
                     leak_free_tags=params["LEAK_FREE_TAGS"]).prepare()
    exp = Experiment(prep, resolve_device(params["DEVICE"]), seed=seed,
                     tag_rank=params["TAG_RANK"], genome_rank=params["GENOME_RANK"])
    suffix = "-baselines" if args.baselines else ""
    out = Path(args.out or f"reports/tune/{prep.name}{suffix}.json")
    about = {"dataset": prep.name, "checksums": prep.checksums, "git": git_state()}

    def save(r: dict) -> None:
        write_json(out, {**r, **about, "complete": False})

    if args.baselines:
        record = search_baselines(exp, params["BASELINES"], seed, threads, save=save)
        write_json(out, {**record, **about, "complete": True})
        print(f"wrote {out}: " + ", ".join(f"{n} {b['setting']}"
                                           for n, b in record["baselines"].items()))
        return 0
    spec = VariantSpec(variant(params["RECOMMEND_WITH"]),
                       TrainConfig.from_parameters(params, seed=seed, progress=False),
                       params["DIM"])
    record = search(exp, spec, args.trials, seed, save=save)
    write_json(out, {**record, **about, "complete": True})
    print(f"wrote {out}: best {record['best']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
