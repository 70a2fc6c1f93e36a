"""Probe: where the main model's training step goes, by phase, at both scales (issue 35: "measure
where the step's time goes"), beside `mf`'s step.

The phases are the bench's (:func:`movierec.bench.time_phases`: perf_counter around the step's
own calls; torch.profiler's operator times are not usable on this project's AMD VM). Two
settings: make full's (full.yaml: batch 16,384, 256 negatives, the bench's setting of the main
model; on generated ``medium`` data, 2.4M training ratings, written under the data root if
missing: the step's cost depends on the data through the batch's distinct rows only) and make
tune's on ml-latest-small (its record must be current: batch 1,024, 4,096 negatives; the main
model alone). Each is timed twice over ``STEPS`` steps after a warm-up (make full's setting
alternating with `mf`).
Run: ``MOVIEREC_DATA=... python docs/probes/step_phases.py [FOLDER]`` (under a minute; FOLDER:
generated medium data written elsewhere, when the data root is read-only).
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import sys
from pathlib import Path

import torch

from movierec import bench, records

STEPS = 40


def show(label: str, ms: dict[str, float]) -> None:
    print(f"{label:38s} " + "  ".join(f"{k} {ms[k]:5.1f}"
                                      for k in ("step", *bench.PHASES, "other")))


def full_settings(folder: Path | None) -> None:
    from movierec.experiment import Experiment
    from movierec.prepare import prepare_cached

    conf = bench.full_config()
    torch.set_num_threads(2)
    prep, _ = prepare_cached(folder or bench._generated("medium"), leak_free_tags=True)
    exp = Experiment(prep, torch.device("cpu"), tag_rank=conf["TAG_RANK"],
                     genome_rank=conf["GENOME_RANK"])
    for _ in range(2):
        for name in (conf["RECOMMEND_WITH"], "mf"):
            show(f"make full's setting, {name}", bench.step_phases(exp, name, conf, STEPS))


def tune_setting() -> None:
    from movierec.runtime import set_threads
    from movierec.train import make_optimizers, shuffled

    conf, s, spec, setting = records.probe_setup()
    set_threads(conf["THREADS"] or 0)
    exp, seed = s.exp, conf["SEED"]
    mcfg, tcfg = spec.configs(exp, setting)
    tcfg = dataclasses.replace(tcfg, progress=False)
    data = shuffled(exp.train, torch.Generator().manual_seed(seed))
    b = tcfg.batch_size
    batches = [data[i * b:(i + 1) * b] for i in range(3 + STEPS)]
    for _ in range(2):
        model = spec.build(exp, mcfg, seed, exp.train)
        opts, gen = make_optimizers(model, tcfg), torch.Generator().manual_seed(seed)
        model.train()
        for batch in batches[:3]:
            _step(model, exp.feats, tcfg, opts, gen, batch)
        totals: collections.Counter = collections.Counter()
        bench.time_phases(model, opts, totals)
        step_on = functools.partial(_step, model, exp.feats, tcfg, opts, gen)
        ms = bench.phases_of(step_on, batches[3:], totals)
        show("make tune's setting, ml-latest-small", ms)


def _step(model, feats, tcfg, opts, gen, batch):
    from movierec.train import train_step

    return train_step(model, feats, batch, tcfg, opts, gen)


if __name__ == "__main__":
    full_settings(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    tune_setting()
