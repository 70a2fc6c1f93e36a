"""One protocol for every model, ours and the library baselines.

A model is a :class:`Spec`: what its val search tries (its proposals: a grid, or a sampler that
proposes each setting after the figures of the ones before) and how one setting is fitted.
:func:`run` searches it (every setting fitted on train and read on val; the best by the spec's
``target``), or replays a recorded search (:func:`replay`), refits the chosen setting on train +
val and reads test once per seed, keeping each user's test values for the paired bootstrap.
Every model comes back as one :class:`Result`.

A model that ranks can offer several scorings (ours: its retrieval score and its predicted
rating); the one with the higher val NDCG@10 is chosen on the tuned model (:func:`choose_by`)
and the refitted model is ranked by it; test reads every scoring for the report.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from movierec.bounds import RANKING_METRIC, Tolerance
from movierec.evaluate import best, lower_is_better, rmse_mae
from movierec.experiment import Experiment, per_user_sse
from movierec.prepare import Prepared
from movierec.progress import Throttle, say
from movierec.split import TEST
from movierec.tensors import RankingVectors

Kind = Literal["rating", "ranking", "both"]
KS = (10, 20, 50)
HEADLINE_BUCKETS = ("cold", "sparse")  # each seed's recall@50 of these movies (Experiment)


@dataclass
class Fitted:
    """A fitted model as the protocol reads it: ``predict(users, movies)`` -> ratings (models
    that rate); ``rankings``: scoring name -> vectors (models that rank; the first is the
    model's default); ``model``: the trained module, for the models that have one (ours)."""

    predict: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    rankings: dict[str, RankingVectors] = field(default_factory=dict)
    model: Any = None


class Proposals(Protocol):
    """What a search tries, one setting at a time: :meth:`ask` the next (None: the search is
    over), then :meth:`tell` it the setting's val figure (by the spec's target)."""

    def ask(self) -> dict | None: ...

    def tell(self, value: float) -> None: ...


class Grid:
    """The proposals of a grid: its settings in order (what they score is not read)."""

    def __init__(self, settings) -> None:
        self.settings, self.next = list(settings), 0

    def ask(self) -> dict | None:
        if self.next == len(self.settings):
            return None
        self.next += 1
        return dict(self.settings[self.next - 1])

    def tell(self, value: float) -> None:
        pass


# above this many training ratings a dataset is large: a fit takes minutes to an hour, so a
# spec that has a lean grid (or TPE space) searches that, and its grid walks LEAN_WALK_STEPS
LARGE_ABOVE = 5_000_000
WALK_STEPS = 3  # how many steps an axis of a grid may walk on past each of the grid's ends
LEAN_WALK_STEPS = 1  # ... of a lean grid (large data)
L2 = (0.0, float("inf"))  # an L2 weight's natural range (a spec's ``limits``): 0 is no penalty


def large(n_ratings: int) -> bool:
    """Whether ``n_ratings`` training ratings make a large dataset (:data:`LARGE_ABOVE`): the
    one test behind every spec's choice of its lean grid or space."""
    return n_ratings > LARGE_ABOVE


class EdgeWalk:
    """A grid that walks on where its choice sits at an end: the grid's settings in order,
    then, while the best setting so far (by ``target``, the first of equals, as the search
    chooses) has a numeric value at an end of what its axis has tried, not at the setting's
    natural bound (``limits``), that setting with the value one step further out. A step is
    the end's own ratio to its neighbour (the grids are geometric; a rounded integer for an
    integer axis) and stops at the natural bound; an end walks when it and its neighbour are
    positive (an axis from 0 walks its top), at most ``steps`` steps, and only while each
    step wins; then, where that side has a finite natural bound the steps never reach (an L2
    weight's 0), the bound itself, once. A walk ends with the choice inside what its axes
    tried (what the report's at_edge reads), at its natural bound (at_limit), or ``steps``
    beyond the grid where no bound lies that way, still flagged. The same figures told give
    the same proposals (a record replays)."""

    def __init__(self, settings, target: str, limits: dict[str, tuple[float, float]] | None = None,
                 steps: int = WALK_STEPS) -> None:
        self.grid, self.target, self.steps = Grid(settings), target, steps
        self.limits = dict(limits or {})
        self.tried: list[tuple[dict, float]] = []
        self.walked: dict[tuple[str, int], int] = {}  # (setting, end: 0 low, -1 high) -> steps
        self.asked: dict | None = None

    def ask(self) -> dict | None:
        self.asked = self.grid.ask()
        if self.asked is None and self.tried:
            self.asked = self.step()
        return self.asked

    def tell(self, value: float) -> None:
        self.tried.append((self.asked, value))

    def step(self) -> dict | None:
        """The next setting of the walk (None: it is over)."""
        chosen = best(self.tried, self.target, lambda t, _: t[1])[0]
        settings = [s for s, _ in self.tried]
        for key, value in chosen.items():
            axis = sorted({s[key] for s in settings})
            if len(axis) < 2 or not all(map(_number, axis)):
                continue
            for end, near in ((0, 1), (-1, -2)):
                walked = self.walked.get((key, end), 0)
                if (value != axis[end] or value in self.limits.get(key, ())
                        or not (_positive_number(axis[end]) and _positive_number(axis[near]))
                        or walked > self.steps):
                    continue
                beyond = (step_past(axis[end], axis[near], self.limits.get(key))
                          if walked < self.steps else self.bound(key, end))
                if beyond is None or {**chosen, key: beyond} in settings:
                    continue
                self.walked[key, end] = walked + 1
                return {**chosen, key: beyond}
        return None

    def bound(self, key: str, end: int) -> float | None:
        """The natural bound of ``key`` on the side of ``end`` (0 low, -1 high) where it is
        finite, else None."""
        limit = self.limits.get(key)
        value = None if limit is None else limit[0 if end == 0 else 1]
        return value if value is not None and math.isfinite(value) else None


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _positive_number(v) -> bool:
    return _number(v) and v > 0


def step_past(end: float, near: float, limit: tuple[float, float] | None = None
              ) -> float | None:
    """The value one step past a grid axis's ``end`` away from its neighbour ``near``: ``end``
    times their ratio (3 significant digits; an integer axis rounds, by at least 1, and stays
    >= 1), clipped to the setting's natural bounds ``limit``. None: no value lies beyond."""
    value = end * (end / near)
    if isinstance(end, int) and isinstance(near, int):
        value = round(value)
        value = value if value != end else end + (1 if end > near else -1)
        if value < 1:
            return None
    else:
        value = float(f"{value:.3g}")
    if limit is not None:
        value = min(max(value, limit[0]), limit[1])
    return None if value == end else value


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
    capped: list[str] = field(default_factory=list)  # what stopped at its cap (e.g. epochs)


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

    def proposals(self, n_ratings: int, seed: int) -> Proposals: ...

    def searched(self, n_ratings: int) -> dict: ...  # what its search covers, for the report

    def skip_reason(self, prep: Prepared, n_ratings: int) -> str | None: ...

    def tune(self, exp: Experiment, setting: dict, seed: int, threads: int) -> Trial: ...

    def refit(self, exp: Experiment, trial: Trial, seed: int, threads: int) -> Fitted: ...


def grid(**axes: Sequence) -> tuple[dict, ...]:
    """Every combination of the axes' values, the last axis varying fastest."""
    return tuple(dict(zip(axes, values, strict=True))
                 for values in itertools.product(*axes.values()))


def val_rankings(exp: Experiment, fitted: Fitted, known: dict[str, dict[str, float]]
                ) -> dict[str, dict[str, float]]:
    """Val Recall@10 and NDCG@10 of each of ``fitted``'s scorings, in its order (``known``:
    those already read, by scoring, not read again)."""
    return {by: known[by] if by in known else exp.val_ranking(v)
            for by, v in fitted.rankings.items()}


def choose_by(exp: Experiment, fitted: Fitted,
              figures: dict[str, dict[str, float]] | None = None
              ) -> tuple[str | None, dict[str, float]]:
    """The one rule for a model that ranks in several ways: the scoring with the highest val
    NDCG@10 (ties: the first, the model's default). ``figures``: each scoring's val figures
    when already read (:func:`val_rankings`). Returns (choice, val NDCG@10 of each; empty for a
    model with one scoring, which needs no choice)."""
    if len(fitted.rankings) < 2:
        return next(iter(fitted.rankings), None), {}
    figures = figures or val_rankings(exp, fitted, {})
    val = {by: figures[by]["val_ndcg@10"] for by in fitted.rankings}
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
    search: dict = field(default_factory=dict)  # how the setting was chosen (Search.facts)

    @property
    def by(self) -> str | None:
        return self.trial.by

    @property
    def at_edge(self) -> list[str]:
        """Settings chosen at an end of their grid that is not their natural bound: the
        best value may lie beyond the grid."""
        return at_edge(self.setting, self.sweep, self.limits)

    @property
    def capped(self) -> list[str]:
        """What the chosen setting's tuning stopped at its cap (e.g. epochs)."""
        return list(self.trial.capped)

    @property
    def at_limit(self) -> list[str]:
        """Settings chosen at their natural bound (nothing lies beyond it)."""
        return [k for k, v in self.setting.items() if v in self.limits.get(k, ())]

    def headline(self, seed: int | None = None) -> dict[str, float]:
        """The test figures a seed table shows (of the first seed by default)."""
        return self.seeds[next(iter(self.seeds)) if seed is None else seed]


def at_edge(setting: dict, sweep: list[dict],
            limits: dict[str, tuple[float, float]] | None = None) -> list[str]:
    """The numeric settings chosen at an end of their grid axis (the optimum may lie beyond
    it), but for an end that is the setting's natural bound (``limits``: its lowest and highest
    meaningful values); a named choice has no ends."""
    out = []
    for key, value in setting.items():
        axis = sorted({row[key] for row in sweep})
        if (len(axis) > 1 and all(map(_number, axis)) and value in (axis[0], axis[-1])
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
            head.update({f"{b} recall@50": buckets[b]["recall@50"] for b in HEADLINE_BUCKETS
                         if b in buckets})
        else:
            ranking_by[name] = exp.ranking(vectors, TEST, ks)
    return Reading(rating, ranking, ranking_by if len(ranking_by) > 1 else {}, buckets, users,
                   head)


def search(exp: Experiment, spec: Spec, seed: int, threads: int) -> tuple[Trial, list[dict]]:
    """Every setting ``spec`` proposes (:meth:`Spec.proposals`) fitted on train and read on
    val: (the best trial by ``spec.target``, the table of every setting, each row with the
    seconds its fit took). Only the best trial keeps its model."""
    chosen, rows = None, []
    proposals = spec.proposals(len(exp.train), seed)
    report = Throttle()
    while (setting := proposals.ask()) is not None:
        start = time.perf_counter()
        trial = spec.tune(exp, setting, seed, threads)
        rows.append({**trial.row, "seconds": time.perf_counter() - start})
        proposals.tell(trial.row[spec.target])
        report(f"{spec.name}: setting {len(rows)} {setting}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in trial.row.items() if k.startswith("val_")))
        if chosen is None or best([chosen, trial], spec.target,
                                  lambda t, m: t.row[m]) is trial:
            chosen = trial
        else:
            trial.fitted = None
    if chosen is None:
        raise ValueError(f"{spec.name}: its search proposes no setting")
    return chosen, rows


def val_figures(row: dict) -> dict:
    """A search row's figures read on val and its training's (what a replay must match)."""
    return {k: v for k, v in row.items() if k.startswith("val_") or k in TRAINING_FIGURES}


TRAINING_FIGURES = ("best_epoch", "epochs", "by")  # what tuning a setting fixed besides val


def record_mismatch(recorded: dict, row: dict, val_users: int, exact: bool) -> list[str]:
    """The figures of a val ``row`` that differ from the ``recorded`` one: any difference when
    ``exact`` (the record's machine); else beyond what another CPU moves
    (:class:`movierec.bounds.Tolerance`: a ranking metric by ``flips`` changed top-k entries
    over ``val_users``, any other number by ``rel``; counts and names exactly); and its
    figures that the record lacks (read since it was made)."""
    out, tol = [], Tolerance()
    want, got = val_figures(recorded), val_figures(row)
    out += [f"{key} {got[key]!r} (not recorded)" for key in got if key not in want]
    for key, was in want.items():
        now = got.get(key)
        if not exact and isinstance(was, float) and isinstance(now, float):
            if abs(was - now) <= replay_bound(key, was, now, val_users, tol):
                continue
        elif was == now:
            continue
        out.append(f"{key} {now!r} (recorded {was!r})")
    return out


def replay_bound(key: str, was: float, now: float, val_users: int, tol: Tolerance) -> float:
    """How far another CPU may move the val figure ``key``."""
    return (tol.flips / val_users if RANKING_METRIC.match(key)
            else tol.rel * max(abs(was), abs(now)))


def runner_up_gap(rows: list[dict], target: str) -> float:
    """How far the best row's ``target`` is ahead of the next best's (inf: a single row)."""
    values = sorted((r[target] for r in rows), reverse=not lower_is_better(target))
    return abs(values[0] - values[1]) if len(values) > 1 else float("inf")


def check_proposals(spec: Spec, rows: list[dict], n_ratings: int, seed: int) -> None:
    """The recorded ``rows`` must be what ``spec``'s search proposes now, told the recorded
    figures (a grid: its settings in order; TPE: the same draws), and all of it."""
    proposals = spec.proposals(n_ratings, seed)
    for i, row in enumerate(rows):
        setting = proposals.ask()
        if setting is None or {k: row.get(k) for k in setting} != setting:
            raise ValueError(f"{spec.name}: the recorded search's setting {i + 1} is "
                             f"{ {k: v for k, v in row.items() if k not in val_figures(row)} }, "
                             f"its search now proposes {setting}: the record is of another "
                             "search (grid, space, budget or seed)")
        proposals.tell(row[spec.target])
    if (more := proposals.ask()) is not None:
        raise ValueError(f"{spec.name}: its search now tries more than the {len(rows)} "
                         f"recorded settings (next: {more})")


def replay(exp: Experiment, spec: Spec, record: dict, seed: int, threads: int
           ) -> tuple[Trial, list[dict], str]:
    """A search recorded earlier (``record``: its ``sweep`` rows, the ``setting`` chosen, and
    ``exact``: whether it was recorded on this machine fingerprint; ``make tune``) in place of
    :func:`search`. The rows must be what ``spec``'s search proposes now
    (:func:`check_proposals`) and the setting their best by ``spec.target``; only that setting
    is fitted again on train and read on val. Its val figures must equal the recorded ones
    (``exact``), or lie within another CPU's bounds; then also its target must have moved by
    less than half its lead over the runner-up, so that no drift the bounds allow can change
    the choice unseen, else the whole search runs again here. A record of other code, data or
    settings is an error. Returns (that trial, the rows, how the choice was made)."""
    rows, setting = [dict(r) for r in record["sweep"]], record["setting"]
    check_proposals(spec, rows, len(exp.train), seed)
    chosen = best(rows, spec.target)
    if {k: chosen[k] for k in setting} != setting:
        raise ValueError(f"{spec.name}: the recorded choice {setting} is not the best of its "
                         f"recorded search by {spec.target}")
    trial = spec.tune(exp, setting, seed, threads)
    differ = record_mismatch(chosen, trial.row, len(exp.val_users), record["exact"])
    if differ:
        where = "on this machine fingerprint" if record["exact"] else "beyond another CPU's bounds"
        raise ValueError(f"{spec.name}: its recorded choice {setting} now gives "
                         f"{', '.join(differ)} on val ({where}): the record is of other code, "
                         "data or settings; remake it (make tune / make tune-baselines), or "
                         "search in the run (the notebook's MAIN_SETTING / BASELINE_SEARCH)")
    if record["exact"]:
        return trial, rows, "recorded, refitted exactly"
    moved = abs(trial.row[spec.target] - chosen[spec.target])
    gap = runner_up_gap(rows, spec.target)
    if moved < gap / 2:
        return trial, rows, (f"recorded on another machine, refitted within its bounds "
                             f"({spec.target} moved {moved:.2g}, under half the lead "
                             f"{gap:.2g})")
    say(f"{spec.name}: {spec.target} moved {moved:.2g} on this machine, not under half the "
        f"recorded lead {gap:.2g}: the whole search runs again here")
    trial, rows = search(exp, spec, seed, threads)
    return trial, rows, (f"searched again here ({spec.target} of the recorded choice moved "
                         f"{moved:.2g}, not under half its lead {gap:.2g})")


def tune(exp: Experiment, spec: Spec, seed: int, threads: int, record: dict | None = None
         ) -> tuple[Trial, list[dict], str]:
    """``spec``'s search run on val (:func:`search`), or its ``record``ed search replayed
    (:func:`replay`): (the chosen trial, the rows, how it was chosen)."""
    if record is None:
        trial, rows = search(exp, spec, seed, threads)
        return trial, rows, ("given, not searched" if isinstance(spec, Fixed)
                             else "searched here")
    return replay(exp, spec, record, seed, threads)


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


def search_facts(spec: Spec, rows: list[dict], how: str, record: dict | None,
                 n_ratings: int) -> dict:
    """What the report says of a spec's search: how its setting was chosen, what it covers
    with ``n_ratings`` training ratings, how many settings it tried and the seconds their fits
    took (where they ran: here, or where the record was made)."""
    return {"how": how, "searched": spec.searched(n_ratings), "tried": len(rows),
            "seconds": sum(r.get("seconds", 0.0) for r in rows),
            **({"record": record["made"]} if record and "searched again" not in how else {})}


def result_of(spec: Spec, chosen: Trial, rows: list[dict], readings: dict[int, Reading],
              model: Any, seconds: float, search: dict) -> Result:
    """A spec's :class:`Result` from its val search (``chosen``, ``rows``, ``search``: its
    facts) and its test ``readings`` by seed, the first seed's first (``model``: that
    seed's)."""
    one = next(iter(readings.values()))
    per_user = {k: np.mean([r.per_user[k] for r in readings.values()], axis=0)
                for k in one.per_user}  # a bucket's users are the same in every seed
    return Result(spec.name, spec.about, spec.kind, spec.baseline, spec.target, rows,
                  chosen.setting, chosen, {**chosen.rating, **one.rating}, one.ranking,
                  one.ranking_by, one.buckets, per_user,
                  {s: r.headline for s, r in readings.items()}, seconds, model,
                  dict(spec.limits), search)


def first_reading(exp: Experiment, spec: Spec, *, seed: int, ks: tuple[int, ...] = KS,
                  threads: int = 1, refit: bool = True, record: dict | None = None
                  ) -> tuple[Trial, list[dict], Reading, Any, dict]:
    """``spec`` tuned on val (its search run, or its ``record``ed search replayed:
    :func:`tune`) and read on test for ``seed``: (the chosen trial, the val rows, the reading,
    the refitted model, the search's facts)."""
    chosen, rows, how = tune(exp, spec, seed, threads, record)
    reading, fitted = read_seed(exp, spec, chosen, seed, seed=seed, ks=ks, threads=threads,
                                refit=refit)
    return chosen, rows, reading, fitted.model, search_facts(spec, rows, how, record,
                                                             len(exp.train))


def run(exp: Experiment, spec: Spec, *, seed: int, seeds: Sequence[int] = (),
        ks: tuple[int, ...] = KS, threads: int = 1, refit: bool = True,
        record: dict | None = None) -> Result:
    """:func:`first_reading`, then a test reading for each extra seed (:func:`read_seed`)."""
    start = time.perf_counter()
    chosen, rows, first, model, facts = first_reading(exp, spec, seed=seed, ks=ks,
                                                      threads=threads, refit=refit,
                                                      record=record)
    readings = {seed: first}
    for s in seeds_of(spec, seed, seeds)[1:]:
        readings[s], _ = read_seed(exp, spec, chosen, s, seed=seed, ks=ks, threads=threads,
                                   refit=refit)
    return result_of(spec, chosen, rows, readings, model, time.perf_counter() - start, facts)


@dataclass(frozen=True)
class Fixed:
    """``spec`` with its search fixed to one ``setting`` (e.g. an ablation of a chosen model,
    or a setting given rather than searched)."""

    spec: Any
    setting: dict

    def __getattr__(self, name: str):
        return getattr(self.spec, name)

    def proposals(self, n_ratings: int, seed: int) -> Grid:
        return Grid([self.setting])

    def searched(self, n_ratings: int) -> dict:
        return {k: [v] for k, v in self.setting.items()}
