"""One protocol for every model, ours and the library baselines.

A model is a :class:`Spec`: a val grid and how one setting is fitted. :func:`run` tunes it
(every setting fitted on train and read on val; the best by the spec's ``target``), refits the
chosen setting on train + val and reads test once per seed, keeping each user's test values for
the paired bootstrap. Every model comes back as one :class:`Result`.

A model that ranks can offer several scorings (ours: its retrieval score and its predicted
rating); the one with the higher val NDCG@10 is chosen on the tuned model (:func:`choose_by`)
and the refitted model is ranked by it; test reads every scoring for the report.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from movierec.compare import RANKING_METRIC, Tolerance
from movierec.evaluate import best, rmse_mae
from movierec.experiment import Experiment, per_user_sse
from movierec.prepare import Prepared
from movierec.progress import Throttle, say
from movierec.split import TEST
from movierec.tensors import RankingVectors

Kind = Literal["rating", "ranking", "both"]
KS = (10, 20, 50)


@dataclass
class Fitted:
    """A fitted model as the protocol reads it: ``predict(users, movies)`` -> ratings (models
    that rate); ``rankings``: scoring name -> vectors (models that rank; the first is the
    model's default); ``model``: the trained module, for the models that have one (ours)."""

    predict: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    rankings: dict[str, RankingVectors] = field(default_factory=dict)
    model: Any = None


@dataclass
class Trial:
    """One setting fitted on train and read on val."""

    setting: dict
    row: dict  # the search table's row: the setting, its val figures (and training's)
    rating: dict[str, float]  # val rating figures (and training's epochs) of a rating model
    fitted: Fitted | None  # dropped once a better trial is found
    by: str | None = None  # the scoring chosen on val (a model that ranks)
    val_by: dict[str, float] = field(default_factory=dict)  # val NDCG@10 of each scoring
    tuned: dict = field(default_factory=dict)  # what the refit reuses (epochs, readout, ...)


class Spec(Protocol):
    """A model the protocol can run."""

    name: str
    about: str
    kind: Kind
    target: str  # the val metric that chooses a setting: "val_rmse" or "val_ndcg@10"
    baseline: bool  # a library baseline (the report compares our models with these)
    seeded: bool  # False: deterministic, so extra seeds would repeat the same numbers
    retune: bool  # each seed tunes the chosen setting again (early stopping, readout)
    limits: dict[str, tuple[float, float]]  # each setting's natural range (may be empty)

    def grid(self, n_ratings: int) -> Sequence[dict]: ...

    def skip_reason(self, prep: Prepared, n_ratings: int) -> str | None: ...

    def tune(self, exp: Experiment, setting: dict, seed: int, threads: int) -> Trial: ...

    def refit(self, exp: Experiment, trial: Trial, seed: int, threads: int) -> Fitted: ...


def grid(**axes: Sequence) -> tuple[dict, ...]:
    """Every combination of the axes' values, the last axis varying fastest."""
    return tuple(dict(zip(axes, values, strict=True))
                 for values in itertools.product(*axes.values()))


def choose_by(exp: Experiment, fitted: Fitted) -> tuple[str | None, dict[str, float]]:
    """The one rule for a model that ranks in several ways: the scoring with the highest val
    NDCG@10 (ties: the first, the model's default). Returns (choice, val NDCG@10 of each;
    empty for a model with one scoring, which needs no choice)."""
    if len(fitted.rankings) < 2:
        return next(iter(fitted.rankings), None), {}
    val = {by: exp.val_ranking(v)["val_ndcg@10"] for by, v in fitted.rankings.items()}
    return best(val, "val_ndcg@10", lambda by, _: val[by]), val


@dataclass
class Result:
    """A model tuned on val and read on test once per seed."""

    name: str
    about: str
    kind: Kind
    baseline: bool
    target: str  # the val metric that chose the setting
    sweep: list[dict]  # one row per setting tried on val
    setting: dict  # the chosen one
    trial: Trial  # the chosen setting's tuning, first seed (its fitted model dropped)
    rating: dict[str, float]  # val (tuning) and test (first seed) rating figures
    ranking: dict[str, float]  # test ranking metrics of the chosen scoring, first seed
    ranking_by: dict[str, dict]  # test ranking metrics of every scoring (several only)
    buckets: dict[str, dict]  # test ranking by the movies' rating counts (Experiment)
    per_user: dict[str, np.ndarray]  # test recall/ndcg at k, sse, n: means over the seeds
    seeds: dict[int, dict[str, float]]  # seed -> headline test figures
    seconds: float
    model: Any = None  # the final model of the first seed (ours: a MovieRecModel)
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)  # natural ranges

    @property
    def by(self) -> str | None:
        return self.trial.by

    @property
    def at_edge(self) -> list[str]:
        """Settings chosen at an end of their grid that is not their natural bound: the
        best value may lie beyond the grid."""
        return at_edge(self.setting, self.sweep, self.limits)

    @property
    def at_limit(self) -> list[str]:
        """Settings chosen at their natural bound (nothing lies beyond it)."""
        return [k for k, v in self.setting.items() if v in self.limits.get(k, ())]

    def headline(self, seed: int | None = None) -> dict[str, float]:
        """The test figures a seed table shows (of the first seed by default)."""
        return self.seeds[next(iter(self.seeds)) if seed is None else seed]


def at_edge(setting: dict, sweep: list[dict],
            limits: dict[str, tuple[float, float]] | None = None) -> list[str]:
    """The settings chosen at an end of their grid axis (the optimum may lie beyond it), but
    for an end that is the setting's natural bound (``limits``: its lowest and highest
    meaningful values)."""
    out = []
    for key, value in setting.items():
        axis = sorted({row[key] for row in sweep})
        if (len(axis) > 1 and value in (axis[0], axis[-1])
                and value not in (limits or {}).get(key, ())):
            out.append(key)
    return out


@dataclass
class Reading:
    """One fitted model read on test."""

    rating: dict[str, float]
    ranking: dict[str, float]
    ranking_by: dict[str, dict]
    buckets: dict[str, dict]
    per_user: dict[str, np.ndarray]
    headline: dict[str, float]


def read_test(exp: Experiment, fitted: Fitted, by: str | None, ks: tuple[int, ...]) -> Reading:
    """Test rating figures, and the ranking metrics of every scoring (the chosen one ``by``
    also per user and by the movies' rating counts), from one fitted model."""
    rating, ranking, ranking_by, buckets, users, head = {}, {}, {}, {}, {}, {}
    if fitted.predict is not None:
        u, m, r = exp.prep.part(TEST)
        pred = fitted.predict(u, m)
        rating = {f"test_{k}": v for k, v in rmse_mae(pred, r).items()}
        head["test_rmse"] = rating["test_rmse"]
        users["sse"], users["n"] = per_user_sse(pred, exp.test, exp.prep.n_users)
    for name, vectors in fitted.rankings.items():
        if name == by:
            ranking, ranked_users, buckets = exp.test_ranking(vectors, ks)
            ranking_by[name] = ranking
            users.update(ranked_users)
            head.update({k: ranking[k] for k in (f"recall@{ks[0]}", f"ndcg@{ks[0]}")})
        else:
            ranking_by[name] = exp.ranking(vectors, TEST, ks)
    return Reading(rating, ranking, ranking_by if len(ranking_by) > 1 else {}, buckets, users,
                   head)


def search(exp: Experiment, spec: Spec, seed: int, threads: int) -> tuple[Trial, list[dict]]:
    """Every setting of ``spec``'s grid fitted on train and read on val: (the best trial by
    ``spec.target``, the table of every setting). Only the best trial keeps its model."""
    chosen, rows = None, []
    settings = spec.grid(len(exp.train))
    report = Throttle()
    for i, setting in enumerate(settings, 1):
        trial = spec.tune(exp, setting, seed, threads)
        rows.append(trial.row)
        report(f"{spec.name}: setting {i}/{len(settings)} {setting}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in trial.row.items() if k.startswith("val_")),
            final=i == len(settings))
        if chosen is None or best([chosen, trial], spec.target,
                                  lambda t, m: t.row[m]) is trial:
            chosen = trial
        else:
            trial.fitted = None
    return chosen, rows


def record_mismatch(recorded: dict, row: dict, val_users: int) -> list[str]:
    """The figures of a val ``row`` that differ from the ``recorded`` one beyond what another
    CPU moves (:class:`movierec.compare.Tolerance`: a ranking metric by ``flips`` changed
    top-k entries over ``val_users``, any other number by ``rel``; counts and names exactly),
    and its val figures that the record lacks (read since it was made)."""
    out, tol = [], Tolerance()
    out += [f"{key} {row[key]!r} (not recorded)" for key in row
            if key.startswith("val_") and key not in recorded]
    for key, was in recorded.items():
        now = row.get(key)
        if isinstance(was, float) and isinstance(now, float):
            bound = (tol.flips / val_users if RANKING_METRIC.match(key)
                     else tol.rel * max(abs(was), abs(now)))
            if abs(was - now) <= bound:
                continue
        elif was == now:
            continue
        out.append(f"{key} {now!r} (recorded {was!r})")
    return out


def replay(exp: Experiment, spec: Spec, record: dict, seed: int, threads: int
           ) -> tuple[Trial, list[dict]]:
    """A search recorded earlier (``record``: its ``sweep`` rows, the ``setting`` chosen;
    ``make tune-baselines``) in place of :func:`search`: the rows must be ``spec``'s grid and
    the setting their best by ``spec.target``; only that setting is fitted again on train and
    read on val, and its val figures must be the recorded ones (a record of other code, data
    or settings is an error). Returns (that trial, the recorded rows)."""
    rows, setting = record["sweep"], record["setting"]
    settings = list(spec.grid(len(exp.train)))
    tried = [{k: row.get(k) for k in s} for row, s in zip(rows, settings, strict=False)]
    if len(rows) != len(settings) or tried != settings:
        was = [{k: v for k, v in r.items() if not k.startswith("val_")} for r in rows]
        raise ValueError(f"{spec.name}: the recorded search tried {was}, its grid is now "
                         f"{settings}: run make tune-baselines again")
    chosen = best(rows, spec.target)
    if {k: chosen[k] for k in setting} != setting:
        raise ValueError(f"{spec.name}: the recorded choice {setting} is not the best of its "
                         f"recorded search by {spec.target}")
    trial = spec.tune(exp, setting, seed, threads)
    differ = record_mismatch(chosen, trial.row, len(exp.val_users))
    if differ:
        raise ValueError(f"{spec.name}: its recorded choice {setting} now gives "
                         f"{', '.join(differ)} on val: the record is of other code, data or "
                         "settings; run make tune-baselines again (or search in the run: the "
                         "report's BASELINE_SEARCH=None)")
    return trial, [dict(r) for r in rows]


def tune(exp: Experiment, spec: Spec, seed: int, threads: int, record: dict | None = None
         ) -> tuple[Trial, list[dict]]:
    """``spec``'s grid searched on val (:func:`search`), or its ``record``ed search replayed
    (:func:`replay`)."""
    return (search(exp, spec, seed, threads) if record is None
            else replay(exp, spec, record, seed, threads))


def seeds_of(spec: Spec, seed: int, seeds: Sequence[int] = ()) -> tuple[int, ...]:
    """The seeds ``spec`` is read on test with: ``seed``, then the extra ``seeds`` (seeded
    specs only; a deterministic one would repeat the same numbers)."""
    return (seed, *(x for x in seeds if spec.seeded and x != seed))


def read_seed(exp: Experiment, spec: Spec, chosen: Trial, s: int, *, seed: int,
              ks: tuple[int, ...] = KS, threads: int = 1, refit: bool = True
              ) -> tuple[Reading, Fitted]:
    """Seed ``s``'s test reading of the ``chosen`` setting: its refit on train + val
    (``refit``; else the tuned model, ``chosen``'s own for ``s`` = ``seed``), after tuning the
    setting again with ``s`` first for an extra seed of a spec that ``retune``s (our models:
    early stopping and readout are part of the setting). Returns (the reading, the model)."""
    trial = chosen
    if s != seed and (spec.retune or not refit):
        trial = spec.tune(exp, chosen.setting, s, threads)
    fitted = spec.refit(exp, trial, s, threads) if refit else trial.fitted
    reading = read_test(exp, fitted, trial.by, ks)
    say(f"{spec.name}: seed {s} on test: " + ", ".join(
        f"{k} {v:.4f}" for k, v in reading.headline.items()))
    trial.fitted = None
    return reading, fitted


def result_of(spec: Spec, chosen: Trial, rows: list[dict], readings: dict[int, Reading],
              model: Any, seconds: float) -> Result:
    """A spec's :class:`Result` from its val search (``chosen``, ``rows``) and its test
    ``readings`` by seed, the first seed's first (``model``: that seed's)."""
    one = next(iter(readings.values()))
    per_user = {k: np.mean([r.per_user[k] for r in readings.values()], axis=0)
                for k in one.per_user}  # a bucket's users are the same in every seed
    return Result(spec.name, spec.about, spec.kind, spec.baseline, spec.target, rows,
                  chosen.setting, chosen, {**chosen.rating, **one.rating}, one.ranking,
                  one.ranking_by, one.buckets, per_user,
                  {s: r.headline for s, r in readings.items()}, seconds, model,
                  dict(spec.limits))


def first_reading(exp: Experiment, spec: Spec, *, seed: int, ks: tuple[int, ...] = KS,
                  threads: int = 1, refit: bool = True, record: dict | None = None
                  ) -> tuple[Trial, list[dict], Reading, Any]:
    """``spec`` tuned on val (its grid searched, or its ``record``ed search replayed:
    :func:`tune`) and read on test for ``seed``: (the chosen trial, the val rows, the reading,
    the refitted model)."""
    chosen, rows = tune(exp, spec, seed, threads, record)
    reading, fitted = read_seed(exp, spec, chosen, seed, seed=seed, ks=ks, threads=threads,
                                refit=refit)
    return chosen, rows, reading, fitted.model


def run(exp: Experiment, spec: Spec, *, seed: int, seeds: Sequence[int] = (),
        ks: tuple[int, ...] = KS, threads: int = 1, refit: bool = True,
        record: dict | None = None) -> Result:
    """:func:`first_reading`, then a test reading for each extra seed (:func:`read_seed`)."""
    start = time.perf_counter()
    chosen, rows, first, model = first_reading(exp, spec, seed=seed, ks=ks, threads=threads,
                                               refit=refit, record=record)
    readings = {seed: first}
    for s in seeds_of(spec, seed, seeds)[1:]:
        readings[s], _ = read_seed(exp, spec, chosen, s, seed=seed, ks=ks, threads=threads,
                                   refit=refit)
    return result_of(spec, chosen, rows, readings, model, time.perf_counter() - start)


# A spawned worker's own copy of the experiment, sent once when the process starts
# (:func:`_start_worker`) rather than with every job; never set in the notebook's process.
_WORKER_EXPERIMENT: dict[str, Experiment] = {}


def _start_worker(exp: Experiment, threads: int) -> None:
    from movierec.train import set_threads

    set_threads(threads)
    _WORKER_EXPERIMENT["exp"] = exp


def _first_in_worker(spec: Spec, kwargs: dict) -> tuple[Trial, list[dict], Reading, Any, float]:
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
            edge = (f" (at the edge of its grid: {r.at_edge})" if r.at_edge else "") + (
                f" (at its natural bound: {r.at_limit})" if r.at_limit else "")
            chosen = {k: float(f"{v:.3g}") if isinstance(v, float) else v
                      for k, v in r.setting.items()}
            how = "recorded" if spec.name in self.recorded else "searched"
            self._say(f"--- {spec.name}: {len(r.sweep)} setting(s) {how}, chosen {chosen}{edge}; "
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
                        chosen, rows, first, model, took = future.result()
                        firsts[spec.name], seconds[spec.name] = (chosen, rows, first, model), took
                        queue += [(order[spec.name], i, spec, x)
                                  for i, x in enumerate(extras[spec.name], 1)]
                    else:
                        readings[spec.name][s], took = future.result()
                        seconds[spec.name] += took
        out = {}
        for spec in todo:
            chosen, rows, first, model = firsts[spec.name]
            by_seed = {self.seed: first, **{x: readings[spec.name][x] for x in extras[spec.name]}}
            out[spec.name] = result_of(spec, chosen, rows, by_seed, model, seconds[spec.name])
        return out

    def _say(self, line: str) -> None:
        say(line)
        if self.progress is not None:
            self.progress(line)


@dataclass(frozen=True)
class Fixed:
    """``spec`` with its grid fixed to one ``setting`` (e.g. an ablation of a chosen model)."""

    spec: Any
    setting: dict

    def __getattr__(self, name: str):
        return getattr(self.spec, name)

    def grid(self, n_ratings: int) -> tuple[dict, ...]:
        return (dict(self.setting),)
