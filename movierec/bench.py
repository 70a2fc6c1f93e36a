"""Speed and memory benchmark on generated MovieLens-format data with a genome.

    python -m movierec.bench --out reports/bench [--scale full] [--batches 20]

Measures, on one dataset in one run, with ``make full``'s training settings (full.yaml): seconds
per preprocessing stage and their peak RSS (in a child process), loading the prepared-data
cache, the training throughput of every variant as the notebook trains it (and of the main
model with the exact, unprojected encoder), one full epoch of the main model, its training
step's phases beside `mf`'s, retrieval latency, the main model's val quality with exact
and projected features (on smaller generated data), and the seed notebook's per-sample pipeline
(its own code path, same thread count) for the speed-up ratio. Writes bench.json and bench.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import shutil
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from movierec import synth
from movierec.baselines import baseline
from movierec.data import data_root, load_movielens
from movierec.experiment import Experiment
from movierec.features import GENRES, build_features, stem_tags
from movierec.model import MovieRecModel
from movierec.optim import RowAdam
from movierec.prepare import cache_path, cache_root, prepare, prepare_cached, save_prepared
from movierec.protocol import LARGE_ABOVE
from movierec.provenance import device_info, git_state, package_versions, write_json
from movierec.recommend import Recommender
from movierec.report import notebook_defaults
from movierec.runtime import resolve_device
from movierec.split import TRAIN, VAL, split_ratings
from movierec.tensors import Ratings
from movierec.train import TrainConfig, fit, make_optimizers, shuffled, train_step
from movierec.variants import MAIN_LARGE_SPACE, VARIANTS, VariantSpec, variant

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
FULL_YAML = NOTEBOOKS / "params" / "full.yaml"


def peak_rss_gb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 2**20  # Linux reports KiB


def _preprocess(folder: str, cache_dir: str) -> dict:
    """Each preprocessing stage, timed, ending with the cache write (run in a child process)."""
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    ds = load_movielens(folder, checksums=False)
    t["load_csv"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    split_ratings(ds.ratings)
    t["split"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_features(ds)
    t["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prep = prepare(ds, leak_free_tags=True)  # as make full prepares it
    t["prepare (index + split + features)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cache, _ = cache_path(Path(folder), cache_dir, leak_free_tags=True, use_genome=True)
    save_prepared(prep, cache)
    t["cache_write (with input checksums)"] = time.perf_counter() - t0
    return {"seconds": t, "peak_rss_gb": peak_rss_gb()}


def _cache_load(folder: str, cache_dir: str) -> dict:
    t0 = time.perf_counter()
    _, status = prepare_cached(folder, cache_dir=cache_dir, leak_free_tags=True)
    return {"seconds": time.perf_counter() - t0, "status": status, "peak_rss_gb": peak_rss_gb()}


def in_child(fn, *args) -> dict:
    """Run ``fn(*args)`` in a spawned process, so its time and peak RSS are its own."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


# --- the seed's pipeline, reimplemented faithfully (its bugs kept where they do not crash) ---


class SeedDataset(torch.utils.data.Dataset):
    """The seed's MovieDataset: every sample filters the whole genome-scores DataFrame."""

    def __init__(self, movies: pd.DataFrame, ratings: pd.DataFrame, relevances: pd.DataFrame):
        genre_idx = {g: i for i, g in enumerate(GENRES)}
        self.user_idx = ratings["userId"].reset_index(drop=True)
        self.ratings = ratings["rating"].reset_index(drop=True)
        self.movie_idx = ratings["movieId"].reset_index(drop=True)
        self.tag_idx = movies["tags"]
        self.genre_idx = movies["genres"].str.split("|").apply(lambda x: [genre_idx[g] for g in x])
        self.relevances = relevances

    def __getitem__(self, index):
        movie_id = self.movie_idx[index]
        tags = torch.Tensor(self.tag_idx[movie_id]).int()
        genres = torch.Tensor(self.genre_idx[movie_id]).int()
        relevance = torch.Tensor(
            self.relevances[self.relevances["movieId"] == movie_id]["relevance"].values)
        return tags, genres, self.user_idx[index], self.ratings[index], relevance, index

    def __len__(self):
        return len(self.user_idx)

    @staticmethod
    def collate(batch):
        tags, genres, user_id, rating, relevance, _index = zip(*batch, strict=True)
        return {"user_id": torch.Tensor(user_id).int(),
                "tags": pad_sequence(tags, batch_first=True, padding_value=0),
                "genres": pad_sequence(genres, batch_first=True, padding_value=0),
                "rating": torch.Tensor(rating).int(),
                "relevance": pad_sequence(relevance, batch_first=True, padding_value=0.0)}


class SeedModel(nn.Module):
    """The seed's MovieModel: a (batch, 1128, dim) genome tensor built every step."""

    def __init__(self, n_tags, n_genres, n_users, dim, n_genome, batch_size):
        super().__init__()
        self.other_tags = torch.arange(n_genome).repeat(batch_size, 1)
        self.tag_embedder = nn.Embedding(n_tags, dim, padding_idx=0)
        self.genre_embedder = nn.Embedding(n_genres, dim, padding_idx=0)
        self.user_embedder = nn.Embedding(n_users, dim)
        self.other_tag_embedder = nn.Embedding(n_genome, dim, padding_idx=0)
        self.fc = nn.Linear(3 * dim, dim)

    def forward(self, b):
        tag = self.tag_embedder(b["tags"]).mean(1)
        genre = self.genre_embedder(b["genres"]).mean(1)
        other = (b["relevance"].unsqueeze(-1) * self.other_tag_embedder(self.other_tags)).mean(1)
        return self.user_embedder(b["user_id"]), self.fc(torch.cat((tag, genre, other), 1))


def seed_pipeline(folder: Path, n_batches: int = 3, batch_size: int = 64, seed: int = 0) -> dict:
    """Samples/s of the seed's training loop (data loading + model step) over a few batches,
    on its own code path: the CSVs read with ``pd.read_csv`` as the seed reads them, its
    Dataset ``__getitem__`` (filtering the whole genome-scores frame per sample), DataLoader
    and model step, at torch's current thread count."""
    tags = pd.read_csv(folder / "tags.csv")
    movies = pd.read_csv(folder / "movies.csv", index_col="movieId")
    ratings = pd.read_csv(folder / "ratings.csv")
    relevances = pd.read_csv(folder / "genome-scores.csv")
    n_genome = len(pd.read_csv(folder / "genome-tags.csv"))
    codes, uniques = pd.factorize(stem_tags(tags["tag"]))
    tags["tag"] = codes + 1
    movies["tags"] = tags.groupby("movieId")["tag"].agg(list)
    movies["tags"] = movies["tags"].apply(lambda x: x if isinstance(x, list) else [0])
    data = SeedDataset(movies, ratings, relevances)
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, generator=g,
                                         collate_fn=SeedDataset.collate)
    model = SeedModel(len(uniques) + 1, len(GENRES), int(ratings["userId"].max()) + 1, 100,
                      n_genome, batch_size)
    opt = torch.optim.AdamW(model.parameters(), 1e-5)
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # the seed's torch.Tensor(read-only numpy) warns
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        for i, batch in enumerate(loader):
            if i == n_batches:
                break
            u, m = model(batch)
            pred = (nn.functional.cosine_similarity(u, m) + 1) * 5
            loss = torch.sqrt(torch.mean((pred - batch["rating"]) ** 2))
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    return {"samples": n_batches * batch_size, "seconds": seconds,
            "samples_per_second": n_batches * batch_size / seconds,
            "threads": torch.get_num_threads()}


def full_config(path: Path = FULL_YAML) -> dict:
    """The parameters of ``make full``: the notebook's defaults with full.yaml over them."""
    return {**notebook_defaults(NOTEBOOKS / "movierec.ipynb"), **yaml.safe_load(path.read_text())}


def bench_setting(space: dict[str, tuple] = MAIN_LARGE_SPACE) -> dict:
    """The main model's setting the bench times: the full-scale space's fixed size and
    negatives (what a step's cost depends on) and each range's geometric middle."""
    return {k: float(np.sqrt(v[1] * v[2])) if v[0] == "log" else v[1][0]
            for k, v in space.items()}


def full_spec(name: str, conf: dict) -> tuple[VariantSpec, dict]:
    """The variant called ``name`` as ``make full`` trains it, and its setting (the main
    model's: :func:`bench_setting`; another variant's: its lean grid's first)."""
    spec = VariantSpec(variant(name), TrainConfig.from_parameters(conf, progress=False),
                       conf["DIM"])
    if name == conf["RECOMMEND_WITH"]:
        return spec, bench_setting()
    return spec, spec.grid(LARGE_ABOVE + 1)[0]


def _build(exp: Experiment, name: str, conf: dict) -> tuple[MovieRecModel, TrainConfig]:
    """The variant's initial model and training settings (one epoch), exactly as the protocol
    builds them (prior, seen mask, feature bases included)."""
    spec, setting = full_spec(name, conf)
    mcfg, tcfg = spec.configs(exp, setting)
    return spec.build(exp, mcfg, conf["SEED"], exp.train), replace(tcfg, epochs=1)


def _batches(exp: Experiment, tcfg: TrainConfig, n: int, seed: int
             ) -> tuple[list[Ratings], float]:
    """The first ``n`` batches of a shuffled epoch, and the seconds the shuffle took."""
    t0 = time.perf_counter()
    data = shuffled(exp.train, torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - t0
    b = tcfg.batch_size
    return [data[i * b:(i + 1) * b] for i in range(n)], seconds


def _warmed_up(exp: Experiment, name: str, conf: dict, warmup: int, n: int,
               phases: collections.Counter | None = None):
    """A fresh model of variant ``name`` after ``warmup`` training steps: (a function taking
    one step on a batch, the next ``n`` batches, the shuffle's seconds); with ``phases``, the
    steps after the warm-up add their phases' seconds to it (:func:`time_phases`)."""
    model, tcfg = _build(exp, name, conf)
    opts, gen = make_optimizers(model, tcfg), torch.Generator().manual_seed(conf["SEED"])
    model.train()
    data, shuffle = _batches(exp, tcfg, warmup + n, conf["SEED"])

    def step_on(batch: Ratings) -> float:
        return train_step(model, exp.feats, batch, tcfg, opts, gen)

    for batch in data[:warmup]:
        step_on(batch)
    if phases is not None:
        time_phases(model, opts, phases)
    return step_on, data[warmup:], shuffle


def seconds_per_step(step_on, batches: list[Ratings]) -> float:
    """The mean seconds of ``step_on`` over ``batches``, one step after another."""
    t0 = time.perf_counter()
    for batch in batches:
        step_on(batch)
    return (time.perf_counter() - t0) / len(batches)


def train_throughput(exp: Experiment, name: str, conf: dict, batches: int,
                     warmup: int = 3) -> dict:
    """Steady-state samples per second of the variant's training step (``batches`` steps after
    ``warmup``); the epoch time adds the once-per-epoch shuffle, timed apart."""
    step_on, data, shuffle = _warmed_up(exp, name, conf, warmup, batches)
    step = seconds_per_step(step_on, data)
    size = conf["BATCH_SIZE"]
    steps = math.ceil(len(exp.train) / size)
    return {"samples_per_second": size / step, "ms_per_step": 1000 * step,
            "shuffle_seconds": shuffle, "epoch_seconds": shuffle + steps * step,
            "measured": f"{batches} batches"}


def full_epoch(exp: Experiment, name: str, conf: dict) -> tuple[dict, MovieRecModel]:
    """One whole epoch of ``fit``, shuffle included."""
    model, tcfg = _build(exp, name, conf)
    res = fit(model, exp.feats, exp.train, tcfg, None, seed=conf["SEED"], monitor=None)
    return {"samples_per_second": res.samples_per_second, "epoch_seconds": res.seconds,
            "measured": "full epoch"}, res.model


def full_epochs(exp: Experiment, names: tuple[str, ...], conf: dict, rounds: int = 3
                ) -> tuple[dict, MovieRecModel]:
    """One full epoch of each variant of ``names`` in turn, ``rounds`` times (A B A B ...: a
    drift of the machine's speed reaches every variant alike): each run's figures and the
    median epoch; and the first variant's last model."""
    runs: dict[str, list[dict]] = {n: [] for n in names}
    model = None
    for _ in range(rounds):
        for name in names:
            epoch, trained = full_epoch(exp, name, conf)
            runs[name].append(epoch)
            if name == names[0]:
                model = trained
    out = {}
    for name, rows in runs.items():
        median = sorted(rows, key=lambda r: r["epoch_seconds"])[len(rows) // 2]
        out[name] = {**median, "runs": rows, "measured": f"median of {len(rows)} full epochs, "
                     f"alternating with {[n for n in names if n != name]}"}
    return out, model


PHASES = ("encode", "forward", "backward", "row-wise Adam", "dense AdamW")


def time_phases(model: MovieRecModel, opts: list[torch.optim.Optimizer],
                totals: collections.Counter) -> None:
    """Make the training step's calls on ``model`` and ``opts`` add their seconds to
    ``totals`` by phase (:data:`PHASES`): encoding the step's distinct movies, the rest of the
    loss (reading the users, finding the distinct movies, the terms), its backward pass,
    row-wise Adam on the embedding tables, the dense optimiser. The timers are instance
    attributes of this model, its optimisers and each step's loss (the step itself,
    :func:`movierec.train.train_step`, is unchanged); torch.profiler's operator times were not
    usable (on this project's AMD VM it counted 31 ms of copies in a step that takes 31 ms
    unprofiled, and made the step 2.6 times as long)."""
    def timed(phase: str, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[phase] += time.perf_counter() - t0
        return wrapper

    model.read_movies = timed("encode", model.read_movies)
    loss = model.loss

    def loss_timed(*args, **kwargs):
        t0, encoding = time.perf_counter(), totals["encode"]
        out = loss(*args, **kwargs)
        totals["forward"] += time.perf_counter() - t0 - (totals["encode"] - encoding)
        out.backward = timed("backward", out.backward)
        return out

    model.loss = loss_timed
    for opt in opts:
        opt.step = timed("row-wise Adam" if isinstance(opt, RowAdam) else "dense AdamW",
                         opt.step)


def step_phases(exp: Experiment, name: str, conf: dict, steps: int = 20, warmup: int = 3
                ) -> dict[str, float]:
    """Milliseconds per training step of variant ``name``, whole and by phase
    (:func:`phases_of`), over ``steps`` steps after ``warmup``."""
    totals: collections.Counter = collections.Counter()
    step_on, data, _ = _warmed_up(exp, name, conf, warmup, steps, totals)
    return phases_of(step_on, data, totals)


def phases_of(step_on, batches: list[Ratings], totals: collections.Counter
              ) -> dict[str, float]:
    """Milliseconds per step of ``step_on`` over ``batches``, whole and by phase (``totals``
    filled by :func:`time_phases` during the steps; ``other``: the rest of the step, zeroing
    the gradients and drawing the negatives)."""
    step = seconds_per_step(step_on, batches) * 1000
    out = {"step": step, **{p: totals[p] / len(batches) * 1000 for p in PHASES}}
    return {**out, "other": step - sum(out[p] for p in PHASES)}


def quality(folder: Path, name: str, conf: dict, ranks: dict[str, int],
            device: torch.device) -> dict:
    """Val RMSE, NDCG@10 and recall@10 of ``variant`` tuned on generated data (early-stopped
    on val, test never read) with the exact encoder and with the fixed feature bases
    ``ranks``, everything else equal: what the bases cost in quality; most-popular's val
    recall and NDCG@10 beside them (the reference the main model must beat)."""
    prep, _ = prepare_cached(folder, cache_dir=cache_root(), leak_free_tags=True)
    out = {"dataset": folder.name, "train_ratings": int(prep.split.sizes()["train"])}
    out["most_popular"] = baseline("most_popular").tune(Experiment(prep, device), {}, 0, 1).row
    spec, setting = full_spec(name, conf)
    for label, r in (("exact", {}), ("projected", ranks)):
        exp = Experiment(prep, device, tag_rank=r.get("tag", 0), genome_rank=r.get("genome", 0))
        trial = spec.tune(exp, setting, conf["SEED"])
        fitted = trial.tuned["fit"]
        out[label] = {**{k: trial.row[k] for k in ("val_rmse", "val_ndcg@10", "val_recall@10",
                                                   "best_epoch")},
                      "epochs": len(fitted.history), "train_seconds": fitted.seconds,
                      "samples_per_second": fitted.samples_per_second, "kept": exp.feats.kept}
    return out


def retrieval_latency(exp: Experiment, model: MovieRecModel, n_users: int = 200) -> dict:
    """Milliseconds per ``recommend`` call, and seconds for every user's top 10."""
    prep = exp.prep
    rec = Recommender(model, exp.feats, prep.movies, prep.user_ids, prep.history(TRAIN, VAL))
    users = np.random.default_rng(0).choice(prep.user_ids, min(n_users, prep.n_users),
                                            replace=False)
    times = []
    for u in users:
        t0 = time.perf_counter()
        rec.recommend(int(u), k=10)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    rec.recommend_all(k=10)
    return {"recommend_ms_median": 1000 * float(np.median(times)),
            "recommend_ms_p95": 1000 * float(np.percentile(times, 95)),
            "recommend_all_seconds": time.perf_counter() - t0, "users": prep.n_users}


def run(out: Path, scale: str = "full", batches: int = 20, batch_size: int | None = None,
        full_epoch_of_main: bool = True, seed_batches: int = 3, device: str = "auto",
        rounds: int = 3,
        quality_scale: str | None = "medium", main: str | None = None) -> dict:
    """Every measurement on generated ``scale`` data, with ``make full``'s training settings
    (``batch_size`` None: full.yaml's); the quality check on ``quality_scale`` data."""
    conf = full_config()
    conf["BATCH_SIZE"] = batch_size = batch_size or conf["BATCH_SIZE"]
    main = main or conf["RECOMMEND_WITH"]
    ranks = {"tag": conf["TAG_RANK"], "genome": conf["GENOME_RANK"]}
    before = json.loads((out / "bench.json").read_text()) if (out / "bench.json").exists() else {}
    folder = _generated(scale)
    result: dict = {"scale": scale, "dataset": folder.name, "main_model": main}
    cache_dir = Path(tempfile.mkdtemp(prefix="movierec-bench-"))
    try:
        # children are spawned from this small process: each peak RSS is the child's own
        pre = in_child(_preprocess, str(folder), str(cache_dir))
        result["preprocess"] = pre
        result["cache_load"] = in_child(_cache_load, str(folder), str(cache_dir))
        prep, _ = prepare_cached(folder, cache_dir=cache_dir, leak_free_tags=True)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    result["sizes"] = {**prep.summary, **prep.split.sizes()}
    dev = resolve_device(device)
    result["train_settings"] = {"batch_size": batch_size,
                                "n_negatives": bench_setting()["n_negatives"],
                                "rank_weight": bench_setting()["rank_weight"],
                                "ranks": ranks,
                                "threads": torch.get_num_threads()}
    exact = Experiment(prep, dev)
    result["train_exact_features"] = {main: train_throughput(exact, main, conf, batches)}
    del exact
    t0 = time.perf_counter()
    exp = Experiment(prep, dev, tag_rank=ranks["tag"], genome_rank=ranks["genome"])
    result["feature_bases"] = {"seconds": time.perf_counter() - t0, "kept": exp.feats.kept}
    result["train"] = {v: train_throughput(exp, v, conf, batches) for v in VARIANTS}
    if full_epoch_of_main:
        result["train_full_epoch"], model = full_epochs(exp, (main, "mf"), conf, rounds)
    else:
        model = _build(exp, main, conf)[0]
    result["phases"] = {name: step_phases(exp, name, conf) for name in (main, "mf")}
    result["retrieval"] = retrieval_latency(exp, model)
    result["train_batch_size"] = batch_size
    result["before"] = {k: before[k] for k in ("train", "train_batch_size", "git", "machine")
                        if k in before}
    del exp, prep, model
    if quality_scale:
        result["quality"] = quality(_generated(quality_scale), main, conf, ranks, dev)
    # the seed's loop at this process's thread count, as our engine was measured
    result["seed_pipeline"] = seed_pipeline(folder, seed_batches)
    ours = (result["train_full_epoch"] if full_epoch_of_main else result["train"])[main]
    result["speedup_vs_seed"] = ours["samples_per_second"] / result["seed_pipeline"][
        "samples_per_second"]
    result["peak_rss_gb"] = {"preprocess": pre["peak_rss_gb"], "bench_process": peak_rss_gb()}
    result["machine"] = {**device_info(dev), "platform": platform.platform(),
                         "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                         / 2**30}
    result["versions"] = package_versions()
    result["git"] = git_state()
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench.json", result)
    (out / "bench.md").write_text(markdown(result))
    return result


def _generated(scale: str) -> Path:
    """The generated dataset of ``scale`` under the data root, written if missing."""
    folder = data_root() / f"synthetic-{scale}"
    if not (folder / "genome-scores.csv").exists():
        synth.generate(folder, scale, seed=0)
    return folder


def _other_machine(r: dict) -> str:
    """Says so when the previous bench ran on another CPU: its figures then compare machines,
    not code."""
    was = r.get("before", {}).get("machine", {}).get("cpu")
    if was is None or was == r["machine"]["cpu"]:
        return ""
    return f", on another machine: {was}; its figures compare the machines, not the code"


def markdown(r: dict) -> str:
    m, pre, ts = r["machine"], r["preprocess"], r["train_settings"]
    main = r["main_model"]
    before = r.get("before", {}).get("train", {})
    rows = {**{f"{k} (exact features)": v for k, v in r["train_exact_features"].items()},
            **r["train"], **{f"{k} (full epoch)": v for k, v in r.get("train_full_epoch",
                                                                        {}).items()}}

    def was(name: str) -> str:
        b = before.get(name.split(" ")[0]) if "(" not in name else None
        return f"{b['samples_per_second']:,.0f}" if b else ""

    lines = [
        f"# Benchmark: generated `{r['scale']}` data",
        "",
        f"{r['sizes']['ratings']:,} ratings, {r['sizes']['tags']:,} tags, "
        f"{r['sizes']['movies']:,} movies, {r['sizes']['users']:,} users, genome "
        f"{r['sizes'].get('genome_movies', 0):,} movies x {r['sizes'].get('genome_tags', 0):,} "
        f"tags; train split {r['sizes']['train']:,} ratings (leak-free tags).",
        f"Machine: {m['cpu_count']} CPU cores ({m['cpu']}), {m['memory_gb']:.0f} GiB, device "
        f"`{m['device']}`{' (' + m['gpu'] + ')' if 'gpu' in m else ''}; torch "
        f"{r['versions']['torch']}, {ts['threads']} threads, commit "
        f"{str(r['git']['commit'])[:10]}.",
        "",
        "| preprocessing stage | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in pre["seconds"].items()],
        f"| cache load (second run) | {r['cache_load']['seconds']:.1f} |",
        f"| feature bases (tag rank {ts['ranks']['tag']}, genome rank {ts['ranks']['genome']})"
        f" | {r['feature_bases']['seconds']:.1f} |",
        "",
        f"Peak RSS: preprocessing {pre['peak_rss_gb']:.2f} GiB, cache load "
        f"{r['cache_load']['peak_rss_gb']:.2f} GiB, training process "
        f"{r['peak_rss_gb']['bench_process']:.2f} GiB. Feature bases keep "
        + ", ".join(f"{v:.1%} of the {k} features' energy"
                    for k, v in r["feature_bases"]["kept"].items()) + ".",
        "",
        f"Training as `make full` trains (batch {ts['batch_size']:,}, {ts['n_negatives']} "
        f"negatives; main model `{main}`). samples/s is the steady state; s/epoch adds the "
        f"epoch's shuffle. *Before*: the previous bench (batch "
        f"{r.get('before', {}).get('train_batch_size', '?')}, commit "
        f"{str(r.get('before', {}).get('git', {}).get('commit', '?'))[:10]}"
        f"{_other_machine(r)}).",
        "",
        "| training | samples/s | s/epoch | measured over | before, samples/s |",
        "|---|---:|---:|---|---:|",
        *[f"| {k} | {v['samples_per_second']:,.0f} | {v['epoch_seconds']:.0f} | "
          f"{v['measured']} | {was(k)} |" for k, v in rows.items()],
        "",
        "The training step by phase, ms (perf_counter around the step's own calls; `forward`: "
        "the loss less encoding the distinct movies; `other`: zeroing the gradients, drawing "
        "the negatives):",
        "",
        "| model | step | " + " | ".join(PHASES) + " | other |",
        "|---|" + "---:|" * (len(PHASES) + 2),
        *[f"| {name} | {ph['step']:.1f} | " + " | ".join(f"{ph[p]:.1f}" for p in PHASES)
          + f" | {ph['other']:.1f} |" for name, ph in r["phases"].items()],
        "",
    ]
    if "quality" in r:
        q = r["quality"]
        lines += [
            f"Quality of `{main}` with exact vs projected features (generated "
            f"`{Path(q['dataset']).name}`, {q['train_ratings']:,} train ratings; tuned on val "
            "as the notebook tunes it, test not read):",
            "",
            "| features | val RMSE | val NDCG@10 | val recall@10 | epochs (best) | samples/s |",
            "|---|---:|---:|---:|---:|---:|",
            *[f"| {k} | {q[k]['val_rmse']:.4f} | {q[k]['val_ndcg@10']:.4f} | "
              f"{q[k]['val_recall@10']:.4f} | {q[k]['epochs']} ({q[k]['best_epoch']}) | "
              f"{q[k]['samples_per_second']:,.0f} |" for k in ("exact", "projected")],
            *([f"| most popular (reference) | | {q['most_popular']['val_ndcg@10']:.4f} | "
               f"{q['most_popular']['val_recall@10']:.4f} | | |"] if "most_popular" in q else []),
            "",
        ]
    sp = r["seed_pipeline"]
    lines += [
        f"Retrieval (exact top-10 over {r['sizes']['movies']:,} movies, seen masked): "
        f"`recommend` {r['retrieval']['recommend_ms_median']:.1f} ms median "
        f"({r['retrieval']['recommend_ms_p95']:.1f} ms p95); all {r['retrieval']['users']:,} "
        f"users' top 10 in {r['retrieval']['recommend_all_seconds']:.0f} s.",
        "",
        f"Seed pipeline (its own code path: per-sample Dataset filtering the genome frame, "
        f"DataLoader, model step; {sp['threads']} threads, {sp['samples']} samples): "
        f"{sp['samples_per_second']:.1f} samples/s. Speed-up of `{main}` (full epoch, same "
        f"thread count): **{r['speedup_vs_seed']:,.0f}x**.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="reports/bench")
    ap.add_argument("--scale", default="full", choices=sorted(synth.SCALES))
    ap.add_argument("--batches", type=int, default=20, help="batches per variant measured")
    ap.add_argument("--batch-size", type=int, default=None, help="default: full.yaml's")
    ap.add_argument("--no-full-epoch", action="store_true")
    ap.add_argument("--quality-scale", default="medium",
                    help="generated scale of the quality check ('none': skip it)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    r = run(Path(args.out), args.scale, args.batches, args.batch_size, not args.no_full_epoch,
            device=args.device,
            quality_scale=None if args.quality_scale == "none" else args.quality_scale)
    print(markdown(r))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
