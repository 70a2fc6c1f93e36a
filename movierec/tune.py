"""Record val searches once, so that the report replays them instead of searching (most of its
time): our models' (``make tune``: the main model's and ``MODELS``') and the baselines' (``make
tune-baselines``)::

    python -m movierec.tune [--dataset ml-latest-small]
    python -m movierec.tune --baselines [--dataset ml-latest-small]

Each search is the report's own (:func:`movierec.protocol.search`, on the experiment the
notebook's parameters describe: :func:`movierec.experiment.setup`): the main model's is TPE over
:data:`movierec.variants.MAIN_SPACE` for the notebook's ``MAIN_TRIALS`` trials, another model's
or a baseline's its val grid; test is never read. The record (:mod:`movierec.records`: every
setting's val figures, the choice, the seconds, and what proves it current) goes to
reports/tune/<dataset>.json (-baselines.json), written after each search, so that a stopped
run's next run goes on from it (``--fresh``: from the start); ``make tune`` also
writes the main model's choice into notebooks/params/tuned.yaml, where the report reads it
(``MAIN_SETTING = "tuned"``, which replays the whole record).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from movierec import records
from movierec.baselines import baseline
from movierec.experiment import setup
from movierec.progress import say
from movierec.protocol import search
from movierec.report import notebook_defaults
from movierec.variants import main_spec, model_specs

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "movierec.ipynb"


def record_searches(specs: list, params: dict, kind: str, root: Path = ROOT,
                    fresh: bool = False) -> tuple[str, dict]:
    """Each of ``specs`` searched on val of the experiment ``params`` describe (those that do
    not scale to it skipped), recorded under ``root`` after each search; returns (the
    dataset's name, the record's searches by name). A stopped run's unfinished record of this
    data, seed, budget, code and machine is resumed (its finished searches kept, the commit
    of each run that added to it listed under ``resumed``) unless ``fresh``
    (:func:`movierec.records.resumable`)."""
    s = setup(params)
    exp, seed = s.exp, params["SEED"]
    budget = {"trials": params["MAIN_TRIALS"]} if kind == "main" else None
    path = records.path_of(root, exp.prep.name, kind)
    made = records.made(kind, s.device, root)
    earlier, why = ((None, "searched from the start (--fresh)") if fresh else
                    records.resumable(path, kind, checksums=exp.prep.checksums, seed=seed,
                                      device=s.device, budget=budget,
                                      dataset=params["DATASET"]))
    say(f"{kind} record {path}: {why}")
    about = {"dataset": exp.prep.name, "checksums": exp.prep.checksums, "seed": seed,
             "threads": s.threads, "budget": budget, "made": made}
    searches: dict[str, dict] = {}
    if earlier is not None:
        about |= {"made": earlier["made"], "resumed": [*earlier.get("resumed", []), made["git"]]}
        searches = {spec.name: earlier["searches"][spec.name] for spec in specs
                    if spec.name in earlier["searches"]}
    write = records.writer(path, about)
    for spec in specs:
        reason = spec.skip_reason(exp.prep, len(exp.train))
        if reason is not None:
            say(f"{kind} {spec.name}: skipped, {reason}")
            continue
        if spec.name in searches:
            say(f"{kind} {spec.name}: kept from the stopped run, chosen "
                f"{searches[spec.name]['setting']}")
            continue
        start = time.perf_counter()
        chosen, rows = search(exp, spec, seed, s.threads)
        searches[spec.name] = {"sweep": rows, "setting": chosen.setting,
                               "seconds": time.perf_counter() - start}
        say(f"{kind} {spec.name}: {len(rows)} settings, chosen {chosen.setting}")
        write(searches, False)
    write(searches, True)
    print(f"wrote {path}")
    return exp.prep.name, searches


def tune_models(params: dict, root: Path = ROOT, fresh: bool = False) -> tuple[str, dict]:
    """``make tune``: the main model's search and each of ``MODELS``' grids on val of the
    experiment ``params`` describe, recorded under ``root`` (reports/tune/<dataset>.json), the
    main model's choice written into notebooks/params/tuned.yaml; returns (the dataset's name,
    the record's searches by name)."""
    spec = main_spec(params)
    dataset, searches = record_searches([spec, *model_specs(params)], params, "main", root,
                                        fresh)
    path = records.write_tuned(root, dataset, searches[spec.name]["setting"])
    print(f"wrote {path}: {dataset}: {searches[spec.name]['setting']}")
    return dataset, searches


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=None, help="default: the notebook's DATASET")
    ap.add_argument("--baselines", action="store_true",
                    help="record the notebook's BASELINES' grid searches instead")
    ap.add_argument("--fresh", action="store_true",
                    help="search everything again, not resuming a stopped run's record")
    args = ap.parse_args(argv)
    params = notebook_defaults(NOTEBOOK)
    params["DATASET"] = args.dataset or params["DATASET"]
    params["PROGRESS"] = False
    if args.baselines:
        record_searches([baseline(n) for n in params["BASELINES"]], params, "baselines",
                        fresh=args.fresh)
        return 0
    tune_models(params, fresh=args.fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
