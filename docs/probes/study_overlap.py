"""Probe: the new-movie study's LightFM fits (one thread) in a second process beside the main
model's fits (the notebook's threads): wall time saved, and are the results equal bit for bit?

LightFM fits in one thread while the main model's fits use the notebook's two, so during the
study's LightFM (about 100 s of make small) one core could take other work. Here, on make small's
data and make tune's setting, the main model's tuning and refit for two seeds and LightFM's tuning
and one refit (the report's recorded choice) run alone, one after the other, then at once (LightFM
in a spawned process, started when its set-up is done), twice; each result is compared with the
lone run's (a sum over its ranking vectors). Nothing reads test figures.
Run: ``MOVIEREC_DATA=... python docs/probes/study_overlap.py`` (``OMP_WAIT_POLICY=PASSIVE`` to
see torch's OpenMP threads sleep rather than spin while they wait).
"""
from __future__ import annotations

import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np

READY = Path(tempfile.gettempdir()) / "movierec-study-overlap-ready"


def setup():
    from movierec import coldstart, records
    from movierec.baselines import baseline
    from movierec.protocol import Fixed
    from movierec.provenance import project_root
    from movierec.runtime import set_threads
    conf, s, spec, setting = records.probe_setup()
    set_threads(conf["THREADS"] or 0)
    study = coldstart.build(s)
    rec, _ = records.baseline_searches(conf, s.exp, project_root())
    lfm = Fixed(baseline("lightfm"), rec["lightfm"]["setting"])
    main = coldstart.served_at_cut(spec)
    return conf, study, main, setting, lfm


def lightfm_fits(study, lfm, seed=42):
    t = lfm.tune(study.tune, lfm.setting, seed, 1)
    f = lfm.refit(study.test, t, seed, 1)
    v = f.rankings[t.by]
    return float(np.float64(v.users.double().sum() + v.movies.double().sum()))


def main_fits(study, main, setting, seeds=(42, 1)):
    out = []
    for seed in seeds:
        t = main.tune(study.tune, setting, seed, 1)
        f = main.refit(study.test, t, seed, 1)
        v = f.rankings[t.by]
        out.append(float(v.users.double().sum() + v.movies.double().sum()))
    return out


def worker(go_at: float):
    _, study, _, _, lfm = setup()
    READY.write_text("1")
    while time.time() < go_at:
        time.sleep(0.05)
    start = time.time()
    value = lightfm_fits(study, lfm)
    return start, time.time(), value


if __name__ == "__main__":
    conf, study, main, setting, lfm = setup()
    res = {}

    def timed(f, *a):
        t = time.perf_counter()
        v = f(*a)
        return time.perf_counter() - t, v

    res["main_alone"], mv = timed(main_fits, study, main, setting)
    res["lightfm_alone"], lv = timed(lightfm_fits, study, lfm)
    for rnd in range(2):
        READY.unlink(missing_ok=True)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            go_at = time.time() + 60
            job = pool.apply_async(worker, (go_at,))
            while time.time() < go_at:
                time.sleep(0.05)
            assert READY.exists(), "worker not ready in 60 s"
            m0 = time.time()
            mv2 = main_fits(study, main, setting)
            m1 = time.time()
            l0, l1, lv2 = job.get()
        res[f"together{rnd}"] = {"main": m1 - m0, "lightfm": l1 - l0,
                                 "wall": max(m1, l1) - min(m0, l0),
                                 "equal": mv2 == mv and lv2 == lv}
        print(json.dumps(res), flush=True)
    res["serial_sum"] = res["main_alone"] + res["lightfm_alone"]
    print(json.dumps(res, indent=1))
