import json

import numpy as np
import pandas as pd
import pytest
import torch

from movierec import bench, synth
from movierec.data import load_movielens
from movierec.prepare import load_prepared, prepare_cached


def test_generator_is_deterministic_and_complete(tmp_path):
    a = synth.generate(tmp_path / "a", "tiny", seed=5)
    b = synth.generate(tmp_path / "b", "tiny", seed=5)
    c = synth.generate(tmp_path / "c", "tiny", seed=6)
    names = ["movies.csv", "ratings.csv", "tags.csv", "genome-scores.csv", "genome-tags.csv"]
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes()
    assert (a / "ratings.csv").read_bytes() != (c / "ratings.csv").read_bytes()
    ds = load_movielens(a)  # passes every validation, genome grid complete
    sc = synth.SCALES["tiny"]
    assert ds.summary() == {"movies": sc.movies, "ratings": sc.ratings, "tags": sc.tags,
                            "users": ds.ratings.userId.nunique(),
                            "genome_movies": sc.genome_movies, "genome_tags": sc.genome_tags}
    assert not list(tmp_path.glob(".*"))  # no temporary folders left


def test_generator_is_heavy_tailed_and_planted(tmp_path):
    ds = load_movielens(synth.generate(tmp_path / "s", "small", seed=0))
    counts = ds.ratings.movieId.value_counts().to_numpy()
    assert counts[0] > 20 * np.median(counts)  # popularity: a long tail
    per_tag = ds.tags.tag.str.lower().value_counts().to_numpy()
    assert per_tag[0] > 10 * np.median(per_tag)
    # the genome carries movie information: relevance varies across movies far beyond noise
    g = ds.genome_scores.pivot(index="movieId", columns="tagId", values="relevance")
    assert g.std(axis=0).mean() > 0.15
    assert ds.ratings.rating.isin(np.arange(1, 11) / 2).all()


def test_each_user_rates_within_a_span_and_no_movie_before_its_release(tmp_path):
    """New movies arrive over time, each user rates over at most five years, and no movie
    is rated before its release year: a movie that arrives after a user has left is not
    rated by them (the generator once moved such ratings to the movie's arrival, years after
    the user's last rating, so every user's test was made of brand-new movies)."""
    ds = load_movielens(synth.generate(tmp_path / "s", "tiny", seed=2))
    r = ds.ratings
    span = r.groupby("userId").timestamp.agg(lambda t: t.max() - t.min())
    assert span.max() <= synth.MAX_SPAN
    years = ds.movies.set_index("movieId").title.str.extract(r"\((\d{4})\)$")[0].astype(int)
    rated = pd.to_datetime(r.timestamp, unit="s").dt.year.to_numpy()
    assert (rated >= years.loc[r.movieId].to_numpy()).all()
    assert (years >= 2015).sum() > 10  # movies do arrive late: the checks above are not empty
    assert r.movieId.isin(years.index[years >= 2015]).sum() > 50


def test_a_late_movie_is_about_as_popular_among_those_who_can_see_it(tmp_path):
    """Fewer users are there to rate a movie that arrives late; its draws are weighted up for
    it, so the movies of the last years are not rated far less than the old ones (without
    the weighting: a fifth as often on this data)."""
    ds = load_movielens(synth.generate(tmp_path / "s", "small", seed=2))
    years = ds.movies.set_index("movieId").title.str.extract(r"\((\d{4})\)$")[0].astype(int)
    n = ds.ratings.movieId.value_counts().reindex(years.index, fill_value=0)
    assert n[years >= 2018].mean() > 0.5 * n[years < 2000].mean()


def test_cache_hit_detects_edits_and_truncation(tmp_path):
    folder = synth.generate(tmp_path / "d", "tiny", seed=0)
    cache = tmp_path / "cache"
    p1, s1 = prepare_cached(folder, cache_dir=cache)
    p2, s2 = prepare_cached(folder, cache_dir=cache)
    assert (s1, s2) == ("miss", "hit")
    assert np.array_equal(p1.split.labels, p2.split.labels)
    assert np.array_equal(p1.features.genome, p2.features.genome)
    assert p1.features.tag_vocab == p2.features.tag_vocab
    assert p2.file_sizes["ratings.csv"] == (folder / "ratings.csv").stat().st_size > 0
    pd.testing.assert_frame_equal(p1.movies.reset_index(drop=True), p2.movies)
    # an edited CSV changes the key: a new cache entry is built
    ratings = (folder / "ratings.csv").read_text().splitlines()
    (folder / "ratings.csv").write_text("\n".join(ratings[:-1]) + "\n")
    p3, s3 = prepare_cached(folder, cache_dir=cache)
    assert s3 == "miss" and len(p3.ratings) == len(p1.ratings) - 1
    # a truncated cache file is detected and rebuilt
    entry = next(p for p in cache.iterdir() if p.stat().st_mtime == max(
        q.stat().st_mtime for q in cache.iterdir()))
    npy = entry / "ratings.npy"
    npy.write_bytes(npy.read_bytes()[:100])
    _, s4 = prepare_cached(folder, cache_dir=cache)
    assert s4 == "rebuilt"
    load_prepared(entry)  # valid again


STEP = 0.02  # seconds every timed training step and seed-model step is made to take


def test_step_phases_put_each_part_of_the_step_in_its_own_phase(tmp_path, monkeypatch):
    """Encoding, the rest of the loss, the backward pass and row-wise Adam each made to take a
    different extra time: each phase holds its own (encoding not counted again in the forward
    pass), the others none of it, and the phases with the rest add up to the step."""
    import time as clock

    from movierec.model import MovieRecModel
    from movierec.optim import RowAdam

    monkeypatch.setenv("MOVIEREC_DATA", str(tmp_path / "data"))
    extra = {"encode": 1, "forward": 2, "row-wise Adam": 3, "backward": 4}  # x STEP

    def slow(fn, phase):
        def wrapped(*args, **kwargs):
            clock.sleep(extra[phase] * STEP)
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(MovieRecModel, "read_movies", slow(MovieRecModel.read_movies, "encode"))
    monkeypatch.setattr(MovieRecModel, "loss_from", slow(MovieRecModel.loss_from, "forward"))
    monkeypatch.setattr(RowAdam, "step", slow(RowAdam.step, "row-wise Adam"))
    monkeypatch.setattr(torch.autograd, "backward", slow(torch.autograd.backward, "backward"))
    exp = bench.Experiment(prepare_cached(bench._generated("tiny"), cache_dir=tmp_path / "c",
                                          leak_free_tags=True)[0], torch.device("cpu"))
    conf = {**bench.full_config(), "BATCH_SIZE": 512}
    ph = bench.step_phases(exp, "hybrid_rank", conf, steps=2, warmup=1)
    for phase in bench.PHASES:
        ms = 1000 * STEP * extra.get(phase, 0)
        assert ms <= ph[phase] < ms + 1000 * STEP, (phase, ph)
    assert ph["step"] == pytest.approx(sum(ph[p] for p in (*bench.PHASES, "other")))
    assert 0 <= ph["other"] < 1000 * STEP


def test_bench_runs_end_to_end_on_tiny_data(tmp_path, monkeypatch):
    """The whole bench on tiny data, each step made to take at least STEP seconds: a figure
    that does not time the work it names (a timer around nothing, a step left out) fails."""
    import time as clock

    from movierec import train

    monkeypatch.setenv("MOVIEREC_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MOVIEREC_CACHE", str(tmp_path / "cache"))

    def slow(step):
        def wrapped(*args, **kwargs):
            clock.sleep(STEP)
            return step(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(bench, "train_step", slow(bench.train_step))  # the throughput loops
    monkeypatch.setattr(train, "train_step", slow(train.train_step))  # fit's: a full epoch
    monkeypatch.setattr(bench.SeedModel, "forward", slow(bench.SeedModel.forward))
    r = bench.run(tmp_path / "out", scale="tiny", batches=2, batch_size=512, seed_batches=2,
                  rounds=3,
                  quality_scale="tiny")
    saved = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert saved["sizes"]["ratings"] == 6000
    assert saved["cache_load"]["status"] == "hit"  # the cache the timed preparation wrote
    assert set(saved["train"]) == {"seed", "hybrid", "hybrid_rank", "mf"}
    full = bench.full_config()
    assert saved["train_settings"]["ranks"] == {"tag": full["TAG_RANK"],
                                                "genome": full["GENOME_RANK"]}
    steps = -(-saved["sizes"]["train"] // 512)  # batches of 512 in an epoch
    for row in (*saved["train"].values(), saved["train_exact_features"]["hybrid_rank"]):
        assert row["ms_per_step"] >= 1000 * STEP  # each timed step was timed whole
        assert row["samples_per_second"] <= 512 / STEP
        assert row["epoch_seconds"] >= steps * STEP
    assert set(saved["phases"]) == {"hybrid_rank", "mf"}
    for ph in saved["phases"].values():  # the slowed step is timed whole; its sleep is "other"
        assert ph["step"] >= 1000 * STEP and ph["other"] >= 1000 * STEP
        assert ph["step"] == pytest.approx(sum(ph[p] for p in (*bench.PHASES, "other")))
    q = saved["quality"]
    assert set(q["exact"]["kept"]) == set() and set(q["projected"]["kept"]) == {"tag", "genome"}
    for name in ("exact", "projected"):
        assert 1 <= q[name]["best_epoch"] <= q[name]["epochs"] <= full["EPOCHS"]
    popular = bench.baseline("most_popular")  # the reference beside them, as tuned
    exp = bench.Experiment(bench.prepare_cached(bench._generated("tiny"),
                                                cache_dir=tmp_path / "c2",
                                                leak_free_tags=True)[0], torch.device("cpu"))
    assert q["most_popular"] == popular.tune(exp, {}, 0, 1).row
    epochs = saved["train_full_epoch"]  # the main model alternating with mf, three times each
    assert set(epochs) == {"hybrid_rank", "mf"}
    for row in epochs.values():
        times = sorted(x["epoch_seconds"] for x in row["runs"])
        assert len(times) == 3 and row["epoch_seconds"] == times[1]  # the median
        assert times[0] >= steps * STEP  # a full epoch: every step of it
    assert r["seed_pipeline"]["samples"] == 128 and r["seed_pipeline"]["seconds"] >= 2 * STEP
    # the speed-up compares the full epoch with the seed's loop, at the same thread count
    ours = saved["train_full_epoch"]["hybrid_rank"]
    assert r["speedup_vs_seed"] * r["seed_pipeline"]["samples_per_second"] == pytest.approx(
        saved["sizes"]["train"] / ours["epoch_seconds"], rel=0.05)
    assert r["seed_pipeline"]["threads"] == saved["train_settings"]["threads"]
    assert r["retrieval"]["users"] == saved["sizes"]["users"]
    assert 0 < r["retrieval"]["recommend_ms_median"] <= r["retrieval"]["recommend_ms_p95"]
    md = (tmp_path / "out" / "bench.md").read_text()
    assert "Speed-up" in md and "exact vs projected" in md and "| model | step | encode" in md
    assert "most popular (reference)" in md


def test_the_before_column_says_when_the_previous_bench_ran_on_another_cpu():
    here = {"machine": {"cpu": "AMD EPYC"}}
    assert bench._other_machine({**here, "before": {"machine": {"cpu": "AMD EPYC"}}}) == ""
    assert bench._other_machine(here) == ""  # no previous bench
    said = bench._other_machine({**here, "before": {"machine": {"cpu": "Intel Xeon"}}})
    assert "another machine: Intel Xeon" in said
