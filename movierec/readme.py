"""README's and the docs' figures, generated from the committed reports (never by hand).

The documents hold blocks between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``;
each is rendered from ``reports/small/metrics.json``, ``reports/full/metrics.json`` or
``reports/bench/bench.json``::

    python -m movierec.readme          # rewrite the generated blocks (make readme)
    python -m movierec.readme --check  # exit 1 if any block is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from movierec.stats import metric_label, verdicts

RANKING_COLUMNS = (("recall", "Recall"), ("ndcg", "NDCG"), ("hit_rate", "HitRate"),
                   ("map", "MAP"), ("coverage", "Coverage"))


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def model_order(metrics: dict) -> list[str]:
    """Baselines first (in the report's order), then the parameters' MODELS, then the main
    model."""
    main = metrics.get("main_model", {}).get("name")
    models = [*metrics["parameters"].get("MODELS", []), *([main] if main else [])]
    seen = [*metrics["rating"], *metrics["ranking"]]
    baselines = [n for n in dict.fromkeys(seen) if n not in models]
    return baselines + [m for m in models if m in seen]


BUCKET_COLUMNS = {"cold": "cold Recall@50", "sparse": "sparse Recall@50"}


def results_table(metrics: dict, columns: tuple[str, ...] = ("rmse", "mae", "recall", "ndcg",
                                                              "coverage", "cold", "sparse")
                  ) -> str:
    """One row per model: test rating metrics, ranking metrics at the first cut-off, and
    recall@50 of the test's cold and sparse movies (:data:`movierec.experiment.BUCKETS`)."""
    k = metrics["parameters"]["KS"][0]
    names = ({c: f"{n}@{k}" for c, n in RANKING_COLUMNS} | BUCKET_COLUMNS
             | {"rmse": "test RMSE", "mae": "test MAE"})
    lines = ["| model | " + " | ".join(names[c] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for model in model_order(metrics):
        rating, ranking = metrics["rating"].get(model, {}), metrics["ranking"].get(model, {})
        buckets = metrics.get("buckets", {}).get(model, {})
        cells = [_num(rating.get(f"test_{c}")) if c in ("rmse", "mae")
                 else _num(buckets.get(c, {}).get("recall@50")) if c in BUCKET_COLUMNS
                 else _num(ranking.get(f"{c}@{k}")) for c in columns]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _label(metric: str) -> str:
    if metric in ("test_rmse", "rmse"):
        return "test RMSE"
    return metric_label(metric)


def seed_spread(metrics: dict) -> str:
    """Each multi-seed model's test figures over its seeds: mean ± sample std."""
    parts = []
    for model, summary in metrics.get("seeds", {}).items():
        stats = [f"{_label(m)} {summary['mean'][m]:.4f} ± {summary['sd'][m]:.4f}"
                 for m in summary["mean"]]
        parts.append(f"{model} over {summary['seeds']} seeds: " + ", ".join(stats) + ".")
    return "\n".join(f"- {p}" for p in parts)


def uncertainty(metrics: dict) -> str:
    """What the main model beats, is level with and loses to, metric by metric, in the one
    wording rule of :func:`movierec.stats.verdict` (the paired bootstraps of metrics.json)."""
    main = metrics.get("main_model", {}).get("name")
    lines = verdicts(metrics.get("uncertainty", {}), main)
    if not lines:
        return ""
    head = (f"**{main} against every model** (each with the difference, its 95% interval from a "
            "paired bootstrap over the test users, 2,000 resamples, per-user values averaged "
            "over seeds, and the mean difference over training seeds ± its standard error; "
            f"positive means {main} is ahead; \"beats\" and \"loses to\" only when the "
            "interval excludes zero and the seeds' mean difference exceeds twice its standard "
            "error):")
    return head + "\n\n" + "\n".join(f"- {line}" for line in lines)


def wall_time(metrics: dict, target: str) -> list[str]:
    """The sentences on the report's recorded run (its run.json, if any): ``target``'s wall
    time and machine, the runner's note, a failed closing check; and which searches were
    replayed from records, and their time where they were made."""
    notes = []
    if "run" in metrics:
        run = metrics["run"]
        notes.append(f"`{target}` took {run['wall_seconds'] / 60:.0f} min end to end "
                     f"({run['cpu_count']} cores of an {run['cpu']}, "
                     f"{run['memory_gb']:.0f} GiB)." + (f" Note on that run: {run['note']}"
                                                         if run.get("note") else ""))
        if run.get("status", "ok") != "ok":
            notes.append(f"**The run ended with a failed closing check** ({run['status']}; "
                         "the report shows which).")
    runs = {n: r for n, r in metrics.get("search_runs", {}).items() if isinstance(r, dict)}
    recorded = {n: r for n, r in runs.items() if "record" in r}
    if recorded:
        minutes = sum(r["seconds"] for r in recorded.values()) / 60
        here = [n for n, r in runs.items() if "record" not in r and metrics["searches"][n]
                ["tried"] > 1]
        notes.append(f"The searches of {', '.join(recorded)} were recorded once by `make "
                     f"tune` and `make tune-baselines` ({minutes:.0f} min of fits, not in that "
                     "time) and replayed: each choice refitted and its val figures checked"
                     + (f"; searched in the run: {', '.join(here)}" if here else "") + ".")
    return notes


def edges(metrics: dict) -> str:
    """Which models' chosen settings sit at an edge of what their search tried, or stopped
    at a cap (the best may lie beyond)."""
    flagged = [f"{n} ({', '.join([*s['at_edge'], *[c + ' cap' for c in s['capped']]])})"
               for n, s in metrics.get("searches", {}).items() if s["at_edge"] or s["capped"]]
    return ("At an edge of what its search tried, or stopped at a cap (the best may lie "
            "beyond): " + ", ".join(flagged) + ".") if flagged else ""


def cold_results(metrics: dict) -> str:
    """The new-movie study (metrics.json's ``coldstart``): its windows, the cold task's table
    (test, means over seeds), the main model's verdicts, and the mixed task at the bonus chosen
    on val against no bonus (test)."""
    cold = metrics.get("coldstart") or {}
    if not cold:
        return ""
    if "skipped" in cold:
        return f"**New movies**: no study on this dataset ({cold['skipped']})."
    test, val = cold["test"], cold["val"]
    lines = [f"**New movies** (`movierec.coldstart`: a global-time split at {cold['t1']} and "
             f"{cold['t2']}; test: {test['users']:,} users with a relevant one of "
             f"{test['new_movies']:,} new movies, val: {val['users']:,} of "
             f"{val['new_movies']:,}; each ranks the window's new movies only):", "",
             "| model | new-movie NDCG@10 | Recall@10 | Recall@20 | val NDCG@10 |",
             "|---|---:|---:|---:|---:|"]
    for name, row in sorted(cold["cold"].items(), key=lambda kv: -kv[1]["ndcg@10"]):
        lines.append(f"| {name} | {row['ndcg@10']:.4f} | {row['recall@10']:.4f} | "
                     f"{row['recall@20']:.4f} | {row['val_ndcg@10']:.4f} |")
    said = verdicts(cold["uncertainty"], "the main model (content path)")
    mixed, chosen = cold["mixed"], cold["choices"]["bonus"]
    base = mixed["test"][0]
    pick = next(r for r in mixed["test"] if r["bonus"] == chosen)
    tail = (f"Chosen on val: id dropout {cold['choices']['id_dropout']:g}; in the mixed ranking "
            f"the new movies' bonus {chosen:g} (the largest keeping val's warm NDCG@10 within "
            f"{mixed['warm_cost']:g}), which on test puts {pick['new_in_top']:.2f} new movies in "
            f"an average top 20 (no bonus: {base['new_in_top']:.2f}), their Recall@20 "
            f"{pick['new recall@20']:.4f} (no bonus: {base['new recall@20']:.4f}), warm "
            f"NDCG@10 {pick['warm ndcg@10']:.4f} (no bonus: {base['warm ndcg@10']:.4f}).")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {s}" for s in said) + "\n\n" + tail


def small_results(metrics: dict) -> str:
    s = metrics["split_sizes"]
    users = metrics.get("evaluated_users", {}).get("test")
    main = metrics.get("main_model", {})
    searched = metrics.get("searches", {}).get(main.get("name"), {})
    how = metrics.get("search_runs", {}).get("main_setting_from", "")
    chosen = (f"its settings chosen on val by a {searched.get('tried')}-trial TPE search "
              f"with seed {metrics['parameters']['SEED']}, from {how}")
    protocol = (f"Test split of the per-user chronological split ({s['train']:,} / "
                f"{s['val']:,} / {s['test']:,} ratings)"
                + (f"; {users:,} users with a relevant test movie" if users else "")
                + (f". Main model: {main['name']}, {chosen}. "
                   f"{metrics.get('configurations_tried', 0)} configurations tried on val in "
                   "all, over every model's search (each once)." if main else "."))
    protocol = " ".join([protocol, *wall_time(metrics, "make small")])
    return "\n\n".join(p for p in (results_table(metrics), seed_spread(metrics),
                                     uncertainty(metrics), edges(metrics), protocol,
                                     cold_results(metrics)) if p)


def full_results(metrics: dict) -> str:
    """The full configuration's table, the rows it skipped and its timed stages."""
    skipped = metrics.get("skipped", {})
    seconds = sum(metrics.get("timings", {}).get("stage_seconds", {}).values())
    notes = [f"Skipped: {n} ({why})." for n, why in skipped.items()] or [
        "No baseline skipped at this size."]
    notes.append(f"The notebook's timed stages took {seconds:,.0f} s in all "
                 f"({metrics['provenance'].get('cpu_count', '?')} CPU cores, "
                 f"{metrics['provenance'].get('device', '?')}).")
    notes += wall_time(metrics, "make full")
    main = metrics.get("main_model", {}).get("name")
    how = metrics.get("search_runs", {}).get("main_setting_from")
    if main and how:
        notes.insert(0, f"Main model {main}: its settings {how}.")
    said = uncertainty(metrics)
    return "\n\n".join(p for p in (results_table(metrics, ("rmse", "recall", "ndcg", "coverage",
                                                              "cold", "sparse")), said,
                                       edges(metrics), " ".join(notes), cold_results(metrics))
                       if p)


EPOCH_GOAL_SECONDS = 60  # the main model's full-scale epoch (the goal)


def speed_table(bench: dict) -> str:
    """The headline figures of ``make bench``, with the machine and commit they ran on."""
    pre, tr, ret = bench["preprocess"]["seconds"], bench["train"], bench["retrieval"]
    m, ts, main = bench["machine"], bench["train_settings"], bench["main_model"]
    rows = [("load + validate CSVs", f"{pre['load_csv']:.1f} s"),
            ("prepare (index, split, features)",
             f"{pre['prepare (index + split + features)']:.1f} s"),
            ("prepared-data cache, second run", f"{bench['cache_load']['seconds']:.1f} s"),
            ("peak RSS, preprocessing", f"{bench['preprocess']['peak_rss_gb']:.2f} GiB"),
            (f"feature bases (tag rank {ts['ranks']['tag']}, genome rank "
             f"{ts['ranks']['genome']})", f"{bench['feature_bases']['seconds']:.1f} s")]
    exact = bench["train_exact_features"][main]
    rows.append((f"{main}, whole tag bags and genome rows (ranks 0, as before the bases)",
                 f"{exact['samples_per_second']:,.0f} samples/s ({exact['epoch_seconds']:.0f} "
                 "s/epoch)"))
    rows += [(name + (" (the main model; goal: >= 400,000 samples/s, <= 60 s/epoch)"
                      if name == main else ""),
              f"{r['samples_per_second']:,.0f} samples/s ({r['epoch_seconds']:.0f} s/epoch)")
             for name, r in tr.items()]
    for name, r in bench.get("train_full_epoch", {}).items():
        each = ", ".join(f"{x['epoch_seconds']:.0f}" for x in r.get("runs", [r]))
        goal = (f"; goal <= {EPOCH_GOAL_SECONDS} s: "
                f"{'met' if r['epoch_seconds'] <= EPOCH_GOAL_SECONDS else 'not met'}"
                if name == main else "")
        rows.append((f"one full epoch of {name} ({bench['sizes']['train']:,} ratings; "
                     f"{r.get('measured', 'one run')})",
                     f"{r['epoch_seconds']:.0f} s ({r['samples_per_second']:,.0f} samples/s; "
                     f"runs: {each} s{goal})"))
    if "quality" in bench:
        q = bench["quality"]
        rows += [(f"{main} val NDCG@10 / RMSE, {k} features (generated "
                  f"{Path(q['dataset']).name})",
                  f"{q[k]['val_ndcg@10']:.4f} / {q[k]['val_rmse']:.4f}")
                 for k in ("exact", "projected")]
        if "most_popular" in q:
            rows.append(("most popular's val NDCG@10 (the same data)",
                         f"{q['most_popular']['val_ndcg@10']:.4f}"))
    sp = bench["seed_pipeline"]
    rows += [(f"`recommend(user, k=10)` over {bench['sizes']['movies']:,} movies",
              f"{ret['recommend_ms_median']:.1f} ms median"),
             (f"every user's top 10 ({ret['users']:,} users)",
              f"{ret['recommend_all_seconds']:.0f} s"),
             (f"seed's own per-sample pipeline ({sp['threads']} threads)",
              f"{sp['samples_per_second']:.1f} samples/s"),
             (f"speed-up of {main} over it (same threads)", f"{bench['speedup_vs_seed']:,.0f}x")]
    lines = [f"Measured by `make bench` on {m['cpu_count']} cores of an {m['cpu']} "
             f"({m['memory_gb']:.0f} GiB, device `{m['device']}`, `MKL_CBWR={m['mkl_cbwr']}`), "
             f"commit {bench['git']['commit'][:10]}, at `make full`'s batch "
             f"({ts['batch_size']:,}, {ts['n_negatives']} negatives):", "",
             "| measure | figure |", "|---|---:|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def tolerance_table(measured: dict) -> str:
    """What ``make tolerance`` measured: each rerun's movement beside the tolerance."""
    tol = measured["tolerance"]
    lines = [f"Reruns of the committed report (commit {measured['reference_commit'][:10]}); "
             f"tolerance: relative {tol['rel']:g}, {tol['flips']} flips, "
             f"{tol['coverage_movies']} movies.", "",
             "| rerun | values that differ | largest relative difference (continuous) | "
             "largest ranking move (flips) | largest coverage move (movies) | within "
             "tolerance |", "|---|---:|---:|---:|---:|---|"]
    for name, r in measured["reruns"].items():
        lines.append(f"| {name} | {r['values_differing']:,} | {r['largest_relative']:.2g} | "
                     f"{r['largest_flips']:.0f} | {r['largest_coverage_movies']:.0f} | "
                     f"{'yes' if r['within_tolerance'] else 'no: ' + '; '.join(r['outside'])} |")
    return "\n".join(lines)


BLOCKS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "small-results": ("reports/small/metrics.json", small_results),
    "full-results": ("reports/full/metrics.json", full_results),
    "speed": ("reports/bench/bench.json", speed_table),
    "tolerance": ("reports/tolerance.json", tolerance_table),
}


DOCUMENTS = ("README.md", "docs/performance.md", "docs/reproducibility.md")


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.S)


def render_all(root: Path) -> dict[str, str]:
    """Every document under ``root`` with its generated blocks re-rendered; each block must
    stand in exactly one document, unless its source report does not exist yet (then in
    none)."""
    texts = {d: (root / d).read_text(encoding="utf-8") for d in DOCUMENTS}
    homes = {name: [d for d, t in texts.items() if _pattern(name).search(t)] for name in BLOCKS}
    for name, found in homes.items():
        if not (root / BLOCKS[name][0]).exists():  # a report never run has no block yet
            if found:
                raise ValueError(f"the generated block {name!r} stands in {found}, but "
                                 f"{BLOCKS[name][0]} does not exist: run its make target")
            continue
        if len(found) != 1:
            raise ValueError(f"the generated block {name!r} must stand in one document of "
                             f"{list(DOCUMENTS)}, found in {found}")
    homes = {name: found for name, found in homes.items() if found}
    for name, (doc,) in homes.items():
        texts[doc] = render(texts[doc], root, names=(name,))
    return texts


def render(readme: str, root: Path, names: tuple[str, ...] | None = None) -> str:
    """``readme`` with the generated blocks ``names`` (None: all) re-rendered from the files
    under ``root``."""
    for name in names or BLOCKS:
        source, build = BLOCKS[name]
        pattern = _pattern(name)
        if not pattern.search(readme):
            raise ValueError(f"README lacks the generated block {name!r}")
        data = json.loads((root / source).read_text())
        run = (root / source).parent / "run.json"  # the report's wall time, if recorded
        if run.exists():
            data["run"] = json.loads(run.read_text())
        body = build(data)
        note = f"<!-- from {source} by `make readme`; do not edit by hand -->\n"
        readme = pattern.sub(lambda m, b=body, n=note: m.group(1) + n + b + "\n" + m.group(2),
                             readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Render README's generated blocks.")
    ap.add_argument("--check", action="store_true", help="exit 1 if README is stale")
    ap.add_argument("--root", default=".", help="the checkout (default: here)")
    args = ap.parse_args(argv)
    root = Path(args.root)
    fresh = render_all(root)
    stale = [d for d, text in fresh.items()
             if text != (root / d).read_text(encoding="utf-8")]
    if args.check:
        if stale:
            print(f"{', '.join(stale)} stale: run `make readme`")
            return 1
        print(f"{', '.join(DOCUMENTS)} agree with the reports")
        return 0
    for d in stale:
        (root / d).write_text(fresh[d], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
