"""Runs models on one experiment with one protocol (:mod:`movierec.protocol`), one after
another or side by side in spawned processes, and keeps every result (and the models skipped,
with the reason) in the order given. Only how the work is scheduled lives here: each result is
the one :func:`movierec.protocol.run` gives alone."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from movierec.experiment import Experiment
from movierec.progress import say
from movierec.protocol import (
    KS,
    Reading,
    Result,
    Spec,
    Trial,
    first_reading,
    read_seed,
    result_of,
    run,
    seeds_of,
)

# A spawned worker's own copy of the experiment, sent once when the process starts
# (:func:`_start_worker`) rather than with every job; never set in the notebook's process.
_WORKER_EXPERIMENT: dict[str, Experiment] = {}


def _start_worker(exp: Experiment, threads: int) -> None:
    from movierec.runtime import set_threads

    set_threads(threads)
    _WORKER_EXPERIMENT["exp"] = exp


def _first_in_worker(spec: Spec, kwargs: dict
                     ) -> tuple[Trial, list[dict], Reading, Any, dict, float]:
    """:func:`first_reading` in a worker process (``kwargs``: its keywords, the spec's
    ``record`` among them), with its seconds."""
    start = time.perf_counter()
    got = first_reading(_WORKER_EXPERIMENT["exp"], spec, **kwargs)
    return (*got, time.perf_counter() - start)


def _seed_in_worker(spec: Spec, chosen: Trial, s: int, kwargs: dict) -> tuple[Reading, float]:
    """An extra seed's test reading in a worker process (``kwargs``: :func:`read_seed`'s
    keywords), with its seconds."""
    start = time.perf_counter()
    reading, _ = read_seed(_WORKER_EXPERIMENT["exp"], spec, chosen, s, **kwargs)
    return reading, time.perf_counter() - start


@dataclass
class Runner:
    """Runs specs on one experiment with one protocol and keeps every :class:`Result` (and the
    specs skipped, with the reason), in the order given. A spec named in ``recorded`` replays
    that recorded search instead of searching its grid (:func:`replay`)."""

    exp: Experiment
    seed: int
    ks: tuple[int, ...] = KS
    threads: int = 1
    refit: bool = True
    progress: Callable[[str], None] | None = print
    recorded: dict[str, dict] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def run(self, specs: Sequence[Spec], seeds: Sequence[int] = (), workers: int = 1
            ) -> dict[str, Result]:
        """:func:`run` each spec that scales to the experiment (extra ``seeds`` for the seeded
        ones); returns this call's results. With ``workers`` > 1 the specs and their seeds
        run side by side in that many spawned processes (:meth:`_side_by_side`), each with
        ``threads`` torch threads as here, so that each result is the one a lone run gives;
        every process holds a copy of the experiment."""
        reasons = {s.name: s.skip_reason(self.exp.prep, len(self.exp.train)) for s in specs}
        shared = {"seed": self.seed, "ks": self.ks, "threads": self.threads,
                  "refit": self.refit}  # every job's keywords; a spec's record: its first's
        todo = [s for s in specs if reasons[s.name] is None]
        extras = {s.name: seeds_of(s, self.seed, seeds)[1:] for s in todo}
        jobs = len(todo) + sum(map(len, extras.values()))
        done = (self._side_by_side(todo, extras, shared, workers) if workers > 1 and jobs > 1
                else {})
        out = {}
        for spec in specs:
            if reasons[spec.name] is not None:
                self.skipped[spec.name] = reasons[spec.name]
                self._say(f"--- {spec.name}: skipped, {reasons[spec.name]}")
                continue
            r = out[spec.name] = self.results[spec.name] = (
                done[spec.name] if spec.name in done
                else run(self.exp, spec, seeds=seeds, record=self.recorded.get(spec.name),
                         **shared))
            edge = (f" (at the edge of what it tried: {r.at_edge})" if r.at_edge else "") + (
                f" (at its natural bound: {r.at_limit})" if r.at_limit else "") + (
                f" (stopped at its cap: {r.capped})" if r.capped else "")
            chosen = {k: float(f"{v:.3g}") if isinstance(v, float) else v
                      for k, v in r.setting.items()}
            self._say(f"--- {spec.name}: {len(r.sweep)} setting(s), {r.search['how']}; "
                      f"chosen {chosen}{edge}; "
                      + ", ".join(f"{k} {v:.4f}" for k, v in r.headline().items())
                      + f" ({r.seconds:.0f} s)")
        return out

    def _side_by_side(self, todo: list, extras: dict[str, tuple[int, ...]],
                      shared: dict, workers: int) -> dict[str, Result]:
        """Each spec as jobs in ``workers`` spawned processes, each sent the experiment once:
        its val search with its first seed's test reading, then one job per ``extras`` seed
        (each refit is independent of the others). At most ``workers`` jobs run at once, the
        costliest spec's first (by its recorded search's seconds; unrecorded ones first, their
        cost unknown), so that a long spec's seeds spread over the workers instead of queueing
        behind one process. ``shared``: every job's keywords (a spec's record goes to its
        first job alone)."""
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        cost = {s.name: self.recorded.get(s.name, {}).get("seconds", float("inf"))
                for s in todo}
        order = {s.name: i for i, s in enumerate(sorted(todo, key=lambda s: -cost[s.name]))}
        queue = [(order[s.name], 0, s, None) for s in todo]  # (priority, job, spec, extra seed)
        firsts, readings, seconds = {}, {s.name: {} for s in todo}, {}
        with ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"),
                                 initializer=_start_worker,
                                 initargs=(self.exp, self.threads)) as pool:
            running = {}
            while queue or running:
                queue.sort(key=lambda job: job[:2])
                while queue and len(running) < workers:
                    _, _, spec, s = queue.pop(0)
                    future = (pool.submit(_first_in_worker, spec,
                                          {**shared, "record": self.recorded.get(spec.name)})
                              if s is None else
                              pool.submit(_seed_in_worker, spec, firsts[spec.name][0], s, shared))
                    running[future] = (spec, s)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    spec, s = running.pop(future)
                    if s is None:
                        *first, took = future.result()
                        firsts[spec.name], seconds[spec.name] = first, took
                        queue += [(order[spec.name], i, spec, x)
                                  for i, x in enumerate(extras[spec.name], 1)]
                    else:
                        readings[spec.name][s], took = future.result()
                        seconds[spec.name] += took
        out = {}
        for spec in todo:
            chosen, rows, first, model, facts = firsts[spec.name]
            by_seed = {self.seed: first, **{x: readings[spec.name][x] for x in extras[spec.name]}}
            out[spec.name] = result_of(spec, chosen, rows, by_seed, model, seconds[spec.name],
                                       facts)
        return out

    def _say(self, line: str) -> None:
        say(line)
        if self.progress is not None:
            self.progress(line)
