"""Compare a run's ``metrics.json`` with a reference one (the committed report).

Two modes, chosen from the machine fingerprint that provenance records:

- **exact**: same device type, CPU vendor and model, torch CPU capability, MKL code path, thread
  count and package versions. Every result must be equal bit for bit (as JSON stores floats).
- **tolerance**: any other CPU machine. Counts (split sizes, dropped rows, epochs) must still be
  equal; rating metrics, losses and other continuous values within a relative ``rel``; ranking
  metrics within what ``flips`` changed top-k entries can move (each user-mean metric by at most
  ``flips / users``), coverage within ``coverage_movies / movies``, since a near-tie between two
  movies can fall either way when the last bits differ.

A run on another dataset (checksums), with other parameters, or on a GPU is not compared (no
GPU tolerance has been measured); :class:`Comparison` says why. Command line::

    python -m movierec.compare REFERENCE.json RUN.json [--expect-mode tolerance]
                               [--expect-exact-differs]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

# what CPU bits depend on (README, Reproducibility); the first differing one forbids "exact"
FINGERPRINT = ("device", "cpu_vendor", "cpu", "cpu_capability", "mkl_cbwr", "torch_threads",
               "versions")
# the parts of metrics.json that a rerun must reproduce
# (the bootstraps in "uncertainty" are functions of per-user values whose means are compared here)
RESULTS = ("split_sizes", "dropped", "main_model", "rating", "ranking", "ranking_by",
           "cold_start", "seeds", "ablations", "sweeps", "baseline_settings", "skipped",
           "history")
MACHINE_PARAMETERS = ("THREADS", "DEVICE")  # parameters that describe the machine, not the run


@dataclass(frozen=True)
class Tolerance:
    """Measured bounds for a run on another CPU (README, Reproducibility, says how)."""

    rel: float = 1e-5  # continuous values: |a - b| <= rel * max(|a|, |b|)
    flips: int = 3  # user-mean ranking metrics: top-k entries that may change over all users
    coverage_movies: int = 10  # coverage: distinct movies shown that may differ


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
    return {k: v for k, v in params.items() if k not in MACHINE_PARAMETERS}


def choose_mode(ref: dict, ours: dict) -> Comparison:
    """Exact, tolerance or skipped (with the reason), before any value is looked at."""
    if run_parameters(ref.get("parameters", {})) != run_parameters(ours.get("parameters", {})):
        keys = sorted(k for k in set(ref.get("parameters", {})) | set(ours.get("parameters", {}))
                      if k not in MACHINE_PARAMETERS
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


def _bound(path: tuple[str, ...], users: dict[str, int], n_movies: int,
           tol: Tolerance) -> float | None:
    """The absolute bound of a ranking metric at ``path`` (None: not a ranking metric)."""
    name = path[-1]
    if "@" not in name:
        return None
    if name.startswith("coverage"):
        return tol.coverage_movies / n_movies
    part = "val" if path[0] == "history" or name.startswith("val_") else "test"
    return tol.flips / users[part]


def compare_values(ref, ours, comparison: Comparison, path: tuple[str, ...], *,
                   tol: Tolerance, users: dict[str, int], n_movies: int) -> None:
    """Walk two JSON trees, recording every value outside ``comparison.mode``'s rule."""
    where = "/".join(path)
    if isinstance(ref, dict) and isinstance(ours, dict):
        if set(ref) != set(ours):
            comparison.differences.append(f"{where}: keys {sorted(set(ref) ^ set(ours))} "
                                          "in one report only")
        for k in sorted(set(ref) & set(ours)):
            compare_values(ref[k], ours[k], comparison, (*path, k), tol=tol, users=users,
                           n_movies=n_movies)
        return
    if isinstance(ref, list) and isinstance(ours, list):
        if len(ref) != len(ours):
            comparison.differences.append(f"{where}: length {len(ref)} vs {len(ours)}")
            return
        for i, (x, y) in enumerate(zip(ref, ours, strict=True)):
            compare_values(x, y, comparison, (*path, str(i)), tol=tol, users=users,
                           n_movies=n_movies)
        return
    comparison.checked += 1
    if ref == ours:
        return
    continuous = isinstance(ref, float) and isinstance(ours, float)
    if comparison.mode == "exact" or not continuous:
        comparison.differences.append(f"{where}: {ref!r} vs {ours!r}")
        return
    metric_path = tuple(p for p in path if not p.isdigit())
    bound = _bound(metric_path, users, n_movies, tol)
    diff = abs(ref - ours)
    if bound is not None:
        if diff > bound:
            what = (f"{tol.coverage_movies} movies" if metric_path[-1].startswith("coverage")
                    else f"{tol.flips} top-k flips")
            comparison.differences.append(
                f"{where}: {ref!r} vs {ours!r} (|diff| {diff:.3g} > {bound:.3g}, the effect of "
                f"{what})")
    elif not diff <= tol.rel * max(abs(ref), abs(ours)) and not (
            math.isnan(ref) and math.isnan(ours)):
        comparison.differences.append(f"{where}: {ref!r} vs {ours!r} (relative "
                                      f"{diff / max(abs(ref), abs(ours)):.3g} > {tol.rel:g})")


def compare_reports(ref: dict, ours: dict, *, tol: Tolerance = Tolerance(),
                    mode: str | None = None) -> Comparison:
    """Compare the results of two ``metrics.json`` dicts. ``mode`` forces "exact" or
    "tolerance" (when the run is comparable at all); by default the fingerprint decides."""
    comparison = choose_mode(ref, ours)
    if not comparison.compared:
        return comparison
    if mode is not None:
        if mode not in ("exact", "tolerance"):
            raise ValueError(f"mode must be 'exact' or 'tolerance', got {mode!r}")
        comparison.mode, comparison.reason = mode, f"{mode} mode asked for"
    users = ours.get("evaluated_users", {})
    n_movies = ours.get("summary", {}).get("movies", 0)
    if comparison.mode == "tolerance" and (not users or not n_movies):
        comparison.differences.append("the run lacks evaluated_users/summary, which the "
                                      "ranking tolerance needs")
        return comparison
    for key in RESULTS:
        compare_values(ref.get(key), ours.get(key), comparison, (key,), tol=tol, users=users,
                       n_movies=n_movies)
    return comparison


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
    """The notebook's closing checks on its own ``metrics.json`` dict: the main model beats
    the global mean on test RMSE and most-popular on test recall, the results reproduce the
    committed report when compared, and a CI run of the small configuration was compared."""
    main = metrics["main_model"]["name"]
    k = metrics["parameters"]["KS"][0]
    rating, ranking = metrics["rating"], metrics["ranking"]
    checks = {
        "the main model beats the global mean (test RMSE)":
            rating[main]["test_rmse"] < rating["global_mean"]["test_rmse"],
        "the main model beats most-popular (test recall)":
            ranking[main][f"recall@{k}"] > ranking["most_popular"][f"recall@{k}"],
    }
    if comparison.compared:
        checks[f"results reproduce the committed report ({comparison.mode} mode)"] = (
            comparison.ok)
    if required_in_ci(metrics["parameters"]["DATASET"], comparison, ci):
        checks["CI compared this run with the committed report"] = comparison.compared
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
