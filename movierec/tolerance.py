"""Measure the tolerances of :mod:`movierec.compare`: rerun the committed small report under
other CPU code paths and record how far its results move (``make tolerance``)::

    python -m movierec.tolerance [--report reports/small] [--out reports/tolerance.json]

Each rerun is the committed report's notebook and parameters (:func:`movierec.report.rerun_copy`)
executed with one change to the machine: MKL's generic code path (``MKL_CBWR=COMPATIBLE``), one
torch thread instead of two, or torch's generic kernels (``ATEN_CPU_CAPABILITY=default``). For
each: how many values differ at all, the largest relative difference of a continuous value, how
many top-k flips the largest move of a user-mean ranking metric amounts to, how many movies the
largest move of a coverage amounts to, and whether the tolerance comparison passes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from movierec.bounds import Tolerance
from movierec.compare import RESULTS, compare_reports, metric_of, users_of
from movierec.provenance import write_json

RERUNS = {  # name -> (environment changes, parameter changes)
    "MKL's generic code path (MKL_CBWR=COMPATIBLE)": ({"MKL_CBWR": "COMPATIBLE"}, {}),
    "one torch thread instead of two": ({}, {"THREADS": 1}),
    "torch's generic kernels (ATEN_CPU_CAPABILITY=default)": (
        {"ATEN_CPU_CAPABILITY": "default"}, {}),
}


def leaves(tree, path: tuple[str, ...] = ()):
    """(path, value) of every leaf of a JSON tree."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from leaves(v, (*path, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from leaves(v, (*path, str(i)))
    else:
        yield path, tree


def movement(ref: dict, run: dict) -> dict:
    """How far ``run``'s results moved from ``ref``'s: values that differ; the largest relative
    difference of a continuous value that is not a ranking metric; the largest move of a
    user-mean ranking metric in top-k flips (|diff| x its users) and of a coverage in movies."""
    theirs = dict(leaves({k: run.get(k) for k in RESULTS}))
    differ, rel, flips, movies = 0, 0.0, 0.0, 0.0
    for path, a in leaves({k: ref.get(k) for k in RESULTS}):
        b = theirs.get(path)
        if a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a)
                      and math.isnan(b)):
            continue
        differ += 1
        if not (isinstance(a, float) and isinstance(b, float)):
            continue
        metric, ranking = metric_of(path)
        if ranking is None:
            rel = max(rel, abs(a - b) / max(abs(a), abs(b)))
        elif ranking.group(2) == "coverage":
            movies = max(movies, abs(a - b) * ref["summary"]["movies"])
        elif not ranking.group(3) and path[0] != "uncertainty":
            flips = max(flips, abs(a - b) * users_of(path, metric, ref))
    return {"values_differing": differ, "largest_relative": rel, "largest_flips": flips,
            "largest_coverage_movies": movies}


@contextmanager
def environment(changes: dict[str, str]):
    before = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


RECORDED = {"MKL_CBWR": "mkl_cbwr", "ATEN_CPU_CAPABILITY": "cpu_capability",
            "THREADS": "torch_threads"}  # a change -> where a report's provenance records it


def check_took_effect(changes: dict, run: dict) -> None:
    """Raise if the rerun's provenance does not record each change it was asked to run under
    (a change that never reached the kernel would measure a tolerance of zero)."""
    for name, value in changes.items():
        seen = run["provenance"].get(RECORDED[name])
        if str(seen).lower() != str(value).lower():  # torch names ATEN's "default" DEFAULT
            raise RuntimeError(f"the rerun asked for {name}={value} but its report records "
                               f"{RECORDED[name]}={seen!r}: the change did not reach the kernel")


def rerun(report_dir: Path, env: dict[str, str], params: dict, folder: Path) -> dict:
    """The committed report rerun in ``folder`` with ``env`` and ``params`` changed; its
    metrics.json."""
    import papermill

    from movierec.report import KERNEL, local_kernel, rerun_copy

    copy = rerun_copy(report_dir / "movierec.ipynb", folder, **params)
    with environment(env), local_kernel() as km:
        try:  # its closing check compares it with the committed report: measured here instead
            papermill.execute_notebook(str(copy), str(copy), kernel_name=KERNEL, km=km,
                                       progress_bar=False, log_output=False)
        except papermill.PapermillExecutionError:
            if not (folder / "metrics.json").exists():
                raise
    run = json.loads((folder / "metrics.json").read_text())
    check_took_effect({**env, **params}, run)
    return run


def measure(report_dir: Path, tol: Tolerance | None = None) -> dict:
    tol = tol or Tolerance()
    ref = json.loads((report_dir / "metrics.json").read_text())
    out = {"reference": str(report_dir / "metrics.json"),
           "reference_commit": ref["provenance"]["git"]["commit"],
           "tolerance": vars(tol), "reruns": {}}
    for name, (env, params) in RERUNS.items():
        folder = Path(tempfile.mkdtemp(prefix="movierec-tolerance-"))
        try:
            print(f"rerunning {report_dir} with {name}", file=sys.stderr, flush=True)
            run = rerun(report_dir, env, params, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        result = compare_reports(ref, run, tol=tol, mode="tolerance")
        out["reruns"][name] = {**movement(ref, run), "checked": result.checked,
                               "within_tolerance": result.ok,
                               "outside": result.differences}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", default="reports/small")
    ap.add_argument("--out", default="reports/tolerance.json")
    args = ap.parse_args(argv)
    measured = measure(Path(args.report))
    write_json(Path(args.out), measured)
    for name, r in measured["reruns"].items():
        print(f"{name}: {r['values_differing']} values differ, largest relative "
              f"{r['largest_relative']:.2g}, {r['largest_flips']:.0f} flips, "
              f"{r['largest_coverage_movies']:.0f} movies; within tolerance: "
              f"{r['within_tolerance']}")
    return 0 if all(r["within_tolerance"] for r in measured["reruns"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
