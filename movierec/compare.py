"""Compare a run's ``metrics.json`` with a reference one (the committed report).

Two modes, chosen from the machine fingerprint that provenance records:

- **exact**: same device type, CPU vendor and model, torch CPU capability, MKL code path, thread
  count and package versions. Every result must be equal bit for bit (as JSON stores floats).
- **tolerance**: any other CPU machine. Counts (split sizes, dropped rows, epochs, evaluated
  users), names and choices must still be equal; rating metrics, losses and other continuous
  values within a relative ``rel``; ranking metrics within what ``flips`` changed top-k entries
  can move, since a near-tie between two movies can fall either way when the last bits differ:
  a user mean by flips / users (the users of that evaluation: test, val or a bucket's users,
  counted in the reference), its standard error only as far as its mean's change
  allows, coverage by ``coverage_movies / movies``; seed spreads and bootstraps by what those
  bounds imply. Every bound is sized from the reference, never from the run.

A run on another dataset (checksums), with other parameters, or on a GPU is not compared (no
GPU tolerance has been measured); :class:`Comparison` says why. Command line::

    python -m movierec.compare REFERENCE.json RUN.json [--expect-mode tolerance]
                               [--expect-exact-differs]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from movierec.bounds import MAX_RATING_ERROR, RANKING_METRIC, Tolerance

# what CPU bits depend on (README, Reproducibility); the first differing one forbids "exact"
FINGERPRINT = ("device", "cpu_vendor", "cpu", "cpu_capability", "mkl_cbwr", "torch_threads",
               "versions")
# the parts of metrics.json that a rerun must reproduce (everything but timings, provenance
# and parameters, which choose_mode compares first)
RESULTS = ("split_sizes", "dropped", "summary", "features", "evaluated_users", "main_model",
           "rating", "ranking", "ranking_by", "buckets", "catalogue", "seeds", "uncertainty",
           "ablations", "coldstart", "sweeps", "searches", "configurations_tried", "skipped",
           "history")
MACHINE_PARAMETERS = ("THREADS", "DEVICE")  # parameters that describe the machine, not the run
# parameters that say how a run is done, not what it computes: the baselines' searches replayed
# from their record or searched again, fitted side by side or one after another
HOW_PARAMETERS = ("BASELINE_SEARCH", "BASELINE_WORKERS")




@dataclass
class Comparison:
    """The outcome: ``mode`` is "exact", "tolerance" or "skipped" (with ``reason``)."""

    mode: str
    reason: str = ""
    machine: dict[str, tuple] = field(default_factory=dict)  # fingerprint keys that differ
    differences: list[str] = field(default_factory=list)  # values outside the mode's rule
    checked: int = 0  # number of values compared

    @property
    def compared(self) -> bool:
        return self.mode != "skipped"

    @property
    def ok(self) -> bool:
        return self.compared and not self.differences

    def summary(self) -> str:
        if not self.compared:
            return f"not compared with the reference: {self.reason}"
        head = f"compared {self.checked} values in {self.mode} mode ({self.reason})"
        if not self.differences:
            return head + ": all equal" + (" bit for bit" if self.mode == "exact" else
                                            " within tolerance")
        lines = [head + f": {len(self.differences)} outside", *self.differences]
        return "\n  ".join(lines)


def fingerprint(provenance: dict) -> dict:
    """The machine properties that CPU bits depend on, from a report's provenance."""
    out = {k: provenance.get(k) for k in FINGERPRINT}
    if isinstance(out["device"], str):
        out["device"] = out["device"].split(":")[0]
    return out


def run_parameters(params: dict) -> dict:
    """Parameters that define the run (not the machine it ran on)."""
    return {k: v for k, v in params.items() if k not in (*MACHINE_PARAMETERS, *HOW_PARAMETERS)}


def choose_mode(ref: dict, ours: dict) -> Comparison:
    """Exact, tolerance or skipped (with the reason), before any value is looked at."""
    if run_parameters(ref.get("parameters", {})) != run_parameters(ours.get("parameters", {})):
        keys = sorted(k for k in set(ref.get("parameters", {})) | set(ours.get("parameters", {}))
                      if k not in (*MACHINE_PARAMETERS, *HOW_PARAMETERS)
                      and ref["parameters"].get(k) != ours["parameters"].get(k))
        return Comparison("skipped", f"different parameters {keys}")
    if ref["provenance"].get("checksums") != ours["provenance"].get("checksums"):
        return Comparison("skipped", "different data (checksums)")
    a, b = fingerprint(ref["provenance"]), fingerprint(ours["provenance"])
    if b["device"] != "cpu" or a["device"] != "cpu":
        return Comparison("skipped", "a GPU run (no GPU tolerance has been measured)")
    machine = {k: (a[k], b[k]) for k in FINGERPRINT if a[k] != b[k]}
    if not machine:
        return Comparison("exact", "same machine fingerprint")
    return Comparison("tolerance", "machine differs in " + ", ".join(machine), machine)


def metric_of(path: tuple[str, ...]) -> tuple[str, re.Match | None]:
    """The metric a value at ``path`` is a figure of (its last key naming one), and its
    ranking-metric match (None: not a ranking metric)."""
    for key in reversed(path):
        if key.isdigit():
            continue
        m = RANKING_METRIC.match(key)
        if m or "rmse" in key or "mae" in key:
            return key, m
    return path[-1], None


def users_of(path: tuple[str, ...], metric: str, ref: dict) -> int:
    """How many users the ranking metric at ``path`` averages over, as the reference counted
    them: a bucket's users (a model's, or the main model's for a bootstrap), the val users
    (searches, training histories, val figures), else the test users."""
    if path[0] == "buckets":
        return ref["buckets"][path[1]][path[2]]["users"]
    if path[0] == "coldstart":  # the new-movie study's users: of its val or test window, and
        part = "val" if "val" in path or metric.startswith("val_") else "test"  # of its tasks
        return ref["coldstart"][part]["mixed_users" if "mixed" in path else "users"]
    bucket = RANKING_METRIC.match(metric)
    if bucket and bucket["bucket"]:
        return ref["buckets"][ref["main_model"]["name"]][bucket["bucket"]]["users"]
    if path[0] in ("history", "sweeps") or metric.startswith("val_"):
        return ref["evaluated_users"]["val"]
    return ref["evaluated_users"]["test"]


def _lookup(tree, path: tuple[str, ...]):
    for key in path:
        tree = tree[int(key)] if isinstance(tree, list) else tree[key]
    return tree


def _bound(path: tuple[str, ...], ref_value: float, ref: dict, run: dict,
           tol: Tolerance) -> float:
    """How far a continuous value at ``path`` may move on another CPU: ``flips`` changed top-k
    entries move a user-mean ranking metric by at most flips / users (each user's value by at
    most 1 per entry); its standard error by at most (the flips its mean's change implies) /
    sqrt(users (users - 1)), so an error that moves while its mean stays put fails; coverage
    by coverage_movies / movies; a seed spread by a per-seed bound times sqrt(s / (s - 1)); a
    bootstrap of two models twice the bound (both can move); every other value by ``rel``."""
    metric, ranking = metric_of(path)
    stat = path[-1]
    bootstrap = "uncertainty" in path[:2]  # the report's, or the new-movie study's
    if bootstrap and stat == "p_not_better":
        return _p_bound(path[:-1], ref, run, tol)
    if stat == "new_in_top":  # a mean count of shown movies: a flip moves it by 1 / users
        return tol.flips / users_of(path, metric, ref)
    if ranking is not None:
        if ranking.group(2) == "coverage":
            one = tol.coverage_movies / ref["summary"]["movies"]
        elif ranking.group(3):  # a standard error, tied to its mean's change
            n = users_of(path, metric, ref)
            mean = (*path[:-1], metric.removesuffix("_se"))
            moved = abs(_lookup(ref, mean) - _lookup(run, mean))
            flips = min(tol.flips, math.ceil(moved * n - 1e-9)) if moved == moved else 0
            one = flips / math.sqrt(n * (n - 1)) + tol.rel * abs(ref_value)
        else:
            one = tol.flips / users_of(path, metric, ref)
    elif bootstrap:  # an RMSE gap: each RMSE within rel of its size
        return 2 * tol.rel * MAX_RATING_ERROR
    else:
        one = tol.rel * abs(ref_value)
    if bootstrap:
        return 2 * one
    if path[0] == "seeds" and path[2] == "sd":
        s = ref["seeds"][path[1]]["seeds"]
        if ranking is None:  # the largest per-seed value sets the scale
            one = tol.rel * max(abs(v[metric]) for v in ref["seeds"][path[1]]["per_seed"]
                                .values())
        return one * math.sqrt(s / (s - 1))
    return one


def _p_bound(entry: tuple[str, ...], ref: dict, run: dict, tol: Tolerance) -> float:
    """How far a bootstrap's share of resamples not ahead may move: by ``p_shift`` (near-ties
    among the resamples), plus what its difference's own change moves it by, at most the
    resampled differences' density peak times that change. The peak is taken as
    ``tol.p_peaks`` normal peaks, p_peaks / (se sqrt(2 pi)), se from the reference's 95%
    interval, for the skewed bootstraps of few users; a share that moves while its difference
    stays put fails at ``p_shift``."""
    try:
        moved = abs(_lookup(ref, (*entry, "diff")) - _lookup(run, (*entry, "diff")))
        se = (_lookup(ref, (*entry, "ci_high")) - _lookup(ref, (*entry, "ci_low"))) / 3.92
    except (KeyError, IndexError, TypeError):
        return tol.p_shift
    if moved == 0:
        return tol.p_shift
    if not se > 0:  # a difference that moved under an interval of no width: anything goes
        return 1.0
    return tol.p_shift + tol.p_peaks * moved / (se * math.sqrt(2 * math.pi))


def _equal(a, b) -> bool:
    """Equal as JSON values; NaN equals nothing, itself included: an undefined result in both
    runs is a hole, not an agreement."""
    return a == b and not (isinstance(a, float) and math.isnan(a))


def compare_values(ref, ours, comparison: Comparison, path: tuple[str, ...], *,
                   tol: Tolerance, reference: dict, run: dict) -> None:
    """Walk two JSON trees, recording every value outside ``comparison.mode``'s rule (bounds
    sized from the ``reference`` report's counts, never the ``run``'s)."""
    where = "/".join(path)
    if isinstance(ref, dict) and isinstance(ours, dict):
        if set(ref) != set(ours):
            comparison.differences.append(f"{where}: keys {sorted(set(ref) ^ set(ours))} "
                                          "in one report only")
        for k in sorted(set(ref) & set(ours)):
            compare_values(ref[k], ours[k], comparison, (*path, k), tol=tol,
                           reference=reference, run=run)
        return
    if isinstance(ref, list) and isinstance(ours, list):
        if len(ref) != len(ours):
            comparison.differences.append(f"{where}: length {len(ref)} vs {len(ours)}")
            return
        for i, (x, y) in enumerate(zip(ref, ours, strict=True)):
            compare_values(x, y, comparison, (*path, str(i)), tol=tol, reference=reference,
                           run=run)
        return
    comparison.checked += 1
    if _equal(ref, ours):
        return
    if any(isinstance(x, float) and math.isnan(x) for x in (ref, ours)):
        comparison.differences.append(f"{where}: {ref!r} vs {ours!r} (undefined)")
        return
    continuous = isinstance(ref, float) and isinstance(ours, float)
    if comparison.mode == "exact" or not continuous:
        comparison.differences.append(f"{where}: {ref!r} vs {ours!r}")
        return
    bound = _bound(path, ref, reference, run, tol)
    diff = abs(ref - ours)
    if not diff <= bound:  # NaN on one side only fails too
        comparison.differences.append(f"{where}: {ref!r} vs {ours!r} (|diff| {diff:.3g} > "
                                      f"{bound:.3g})")


def compare_reports(ref: dict, ours: dict, *, tol: Tolerance | None = None,
                    mode: str | None = None) -> Comparison:
    """Compare the results of two ``metrics.json`` dicts. ``mode`` forces "exact" or
    "tolerance" (when the run is comparable at all); by default the fingerprint decides."""
    tol = tol or Tolerance()
    comparison = choose_mode(ref, ours)
    if not comparison.compared:
        return comparison
    if mode is not None:
        if mode not in ("exact", "tolerance"):
            raise ValueError(f"mode must be 'exact' or 'tolerance', got {mode!r}")
        comparison.mode, comparison.reason = mode, f"{mode} mode asked for"
    if not ref.get("evaluated_users") or not ref.get("summary", {}).get("movies"):
        comparison.differences.append("the reference lacks evaluated_users/summary, which "
                                      "the ranking tolerance is sized from")
        return comparison
    for key in RESULTS:
        if key not in ref or key not in ours:
            where = "one report only" if key in ref or key in ours else "neither report"
            comparison.differences.append(f"{key}: in {where}")
            continue
        compare_values(ref[key], ours[key], comparison, (key,), tol=tol, reference=ref,
                       run=ours)
    comparison.differences += inconsistent_seeds(ours.get("seeds", {}))
    return comparison


def inconsistent_seeds(seeds: dict, rel: float = 1e-9) -> list[str]:
    """A run's seed summaries whose mean or spread is not that of its own per-seed values
    (a spread is compared within a bound of the per-seed values' bounds; this keeps it theirs)."""
    out = []
    for model, summary in seeds.items():
        values = list(summary.get("per_seed", {}).values())
        for metric, mean in summary.get("mean", {}).items():
            xs = [v[metric] for v in values]
            want_mean = math.fsum(xs) / len(xs)
            want_sd = (math.sqrt(math.fsum((x - want_mean) ** 2 for x in xs) / (len(xs) - 1))
                       if len(xs) > 1 else 0.0)
            for stat, got, want in (("mean", mean, want_mean),
                                    ("sd", summary["sd"][metric], want_sd)):
                if not abs(got - want) <= rel * max(abs(want), 1e-12) + 1e-12:
                    out.append(f"seeds/{model}/{stat}/{metric}: {got!r} is not the {stat} of "
                               f"its per-seed values ({want!r})")
    return out


def compare_files(reference: str | Path, run: str | Path, **kwargs) -> Comparison:
    return compare_reports(json.loads(Path(reference).read_text()),
                           json.loads(Path(run).read_text()), **kwargs)


def compare_with_committed(run: str | Path, committed: str | Path | None) -> Comparison:
    """Compare a run's metrics.json with the committed report's; skipped (with the reason)
    when there is none, or when this run is the one writing it."""
    if committed is None or not Path(committed).exists():
        return Comparison("skipped", "no committed report")
    if Path(run).resolve().parent == Path(committed).resolve().parent:
        return Comparison("skipped", "this run writes the committed report")
    return compare_files(committed, run)


def required_in_ci(dataset: str, comparison: Comparison, ci: bool) -> bool:
    """In CI, a run of the small configuration must be compared with the committed report
    (a silently skipped comparison would hide a drift)."""
    return ci and dataset == "ml-latest-small" and comparison.reason != (
        "this run writes the committed report")


def self_checks(metrics: dict, comparison: Comparison, ci: bool) -> dict[str, bool]:
    """The notebook's closing checks on its own ``metrics.json`` dict: every model it was
    configured with (``BASELINES``, ``MODELS``, the main model) has results or a reason it
    was skipped; the main model beats the global mean on test RMSE and most-popular on test
    recall (where those ran); the results reproduce the committed report when compared; and a
    CI run of the small configuration was compared."""
    params, main = metrics["parameters"], metrics["main_model"]["name"]
    k = params["KS"][0]
    rating, ranking = metrics["rating"], metrics["ranking"]
    ran = {*rating, *ranking}
    configured = [*params["BASELINES"], *params["MODELS"], main]
    missing = [n for n in configured if n not in ran and n not in metrics["skipped"]]
    checks = {"every configured model has results or a reason it was skipped"
              + (f" (missing: {missing})" if missing else ""): not missing}
    if "global_mean" in rating:
        checks["the main model beats the global mean (test RMSE)"] = (
            rating[main]["test_rmse"] < rating["global_mean"]["test_rmse"])
    if "most_popular" in ranking:
        checks["the main model beats most-popular (test recall)"] = (
            ranking[main][f"recall@{k}"] > ranking["most_popular"][f"recall@{k}"])
    if comparison.compared:
        checks[f"results reproduce the committed report ({comparison.mode} mode)"] = (
            comparison.ok)
    if required_in_ci(params["DATASET"], comparison, ci):
        checks["CI compared this run with the committed report"] = comparison.compared
    return checks


def check_report(metrics: dict, path: str | Path, root: Path | None, ci: bool) -> dict:
    """The report's closing checks (:func:`self_checks`; the comparison with the committed
    small report, :func:`compare_with_committed`), printed; AssertionError if any fails."""
    comparison = compare_with_committed(
        path, root / "reports" / "small" / "metrics.json" if root else None)
    print(comparison.summary())
    checks = self_checks(metrics, comparison, ci)
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise AssertionError(f"a closing check failed: {failed}")
    return checks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Compare a run's metrics.json with a reference.")
    ap.add_argument("reference")
    ap.add_argument("run")
    ap.add_argument("--expect-mode", choices=("exact", "tolerance"),
                    help="fail unless the fingerprint chooses this mode")
    ap.add_argument("--expect-exact-differs", action="store_true",
                    help="also fail unless an exact comparison finds differences (proves that a "
                         "simulated other machine changed the bits)")
    args = ap.parse_args(argv)
    result = compare_files(args.reference, args.run)
    print(result.summary())
    failed = not result.ok
    if args.expect_mode and result.mode != args.expect_mode:
        print(f"FAIL: expected {args.expect_mode} mode, got {result.mode}")
        failed = True
    if args.expect_exact_differs:
        exact = compare_files(args.reference, args.run, mode="exact")
        print(f"exact mode would find {len(exact.differences)} of {exact.checked} values "
              "different")
        if exact.ok:
            print("FAIL: the run is bit-identical: the simulated machine changed nothing")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
