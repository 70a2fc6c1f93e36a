"""The new-movie study: the global-time split, its two worlds, the cold and mixed tasks, the
rules, and the whole study on generated data whose new movies arrive over time."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from movierec import coldstart, readme, synth
from movierec.csr import Csr
from movierec.evaluate import per_user_ranking
from movierec.experiment import setup
from movierec.report import notebook_defaults
from movierec.split import TEST, TRAIN, UNUSED, VAL, first_rated, time_cuts, time_split
from movierec.tensors import RankingVectors
from movierec.variants import VariantSpec

ROOT_NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "movierec.ipynb"


def test_the_cuts_start_the_last_two_tenths_and_the_last_tenth_of_the_ratings():
    ts = np.arange(100) * 10
    assert time_cuts(np.random.default_rng(0).permutation(ts)) == (800, 900)
    assert time_cuts(ts, val_tenths=2, test_tenths=1) == (700, 900)
    with pytest.raises(ValueError, match="cuts coincide"):
        time_cuts(np.r_[np.zeros(50), np.ones(50)].astype(int))


def test_each_world_trains_only_on_what_came_before_its_cut():
    # user 0 rates early and late; 1 first in the val window; 2 only in test; 3 first at the
    # instant T1; 4 first at the instant T2 (a cut's own second belongs to the later part)
    users = np.array([0, 0, 0, 0, 1, 1, 2, 3, 4])
    ts = np.array([10, 50, 60, 95, 55, 90, 99, 50, 90])
    tune, test = time_split(users, ts, t1=50, t2=90)
    assert tune.tolist() == [TRAIN, VAL, VAL, UNUSED, UNUSED, UNUSED, UNUSED, UNUSED, UNUSED]
    assert test.tolist() == [TRAIN, TRAIN, TRAIN, TEST, TRAIN, TEST, UNUSED, TRAIN, UNUSED]
    assert first_rated(np.array([0, 1, 0]), np.array([5, 3, 2]), 3).tolist() == [
        2, 3, np.iinfo(np.int64).max]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study of generated small data (new movies arriving over time), its setup."""
    # twice tiny's users and movies: enough users active around the cuts for both windows
    scale = dataclasses.replace(synth.SCALES["tiny"], users=240, movies=600, ratings=9_000)
    folder = synth.generate(tmp_path_factory.mktemp("data") / "arrivals", scale, seed=3)
    params = notebook_defaults(ROOT_NOTEBOOK)
    params.update(DATASET=str(folder), CACHE_DIR=str(tmp_path_factory.mktemp("cache")),
                  THREADS=0, EPOCHS=2, PROGRESS=False, STABILITY_SEEDS=[5])
    s = setup(params)
    return s, params, coldstart.build(s)


def test_no_rating_or_tag_from_after_a_cut_reaches_its_world(study):
    """A val or test rating moved into a world's training data, or a tag written after the cut
    a world is used with, fails here."""
    _, _, st = study
    for world, cut in ((st.tune, st.t1), (st.test, st.t2)):
        train = world.prep.split.labels == TRAIN
        assert train.any() and (world.prep.timestamps[train] < cut).all()
    assert (st.tune.prep.timestamps[st.tune.prep.split.labels == VAL] >= st.t1).all()
    assert (st.test.prep.timestamps[st.test.prep.split.labels == TEST] >= st.t2).all()
    for w, world in ((st.val_window, st.tune), (st.test_window, st.test)):
        _, movies, _ = world.prep.part(TRAIN)
        assert not w.new[movies].any()  # a new movie has no training rating in its world
        assert len(w.cold_users) > 5 and w.new.sum() > 5
    # the tags: each world's bags are exactly the tags written before its cut
    from movierec.data import load_movielens
    from movierec.features import tag_bags
    from movierec.prepare import canonical, prepare

    ds = canonical(load_movielens(study[0].source.dataset))
    for world, cut in ((st.tune, st.t1), (st.test, st.t2)):
        kept = ds.tags[ds.tags["timestamp"] < cut]
        want, _ = tag_bags(kept, ds.movies, world.prep.features.tag_vocab)
        got = world.prep.features.tags
        assert np.array_equal(got.indices, want.indices) and np.array_equal(
            got.offsets, want.offsets)
    assert st.tune.prep.features.tag_vocab == st.test.prep.features.tag_vocab
    # the genome: no row for a movie first rated after the world's cut, the others as released
    first = first_rated(st.test.prep.items, st.test.prep.timestamps, st.test.prep.n_movies)
    released = prepare(ds).features.genome_mask
    for world, cut in ((st.tune, st.t1), (st.test, st.t2)):
        mask = world.prep.features.genome_mask
        assert not mask[first >= cut].any()
        np.testing.assert_array_equal(mask[first < cut], released[first < cut])
        assert released[first >= cut].any()  # the released genome does cover some of them
    later = (ds.tags["timestamp"] >= st.t1).sum()
    assert later > 0 and st.tune.prep.features.tags_dropped_leak_free == later


def test_a_window_with_too_few_new_movie_users_is_skipped_with_the_reason_before_training(
        study, monkeypatch):
    s, params, st = study
    n = len(st.val_window.cold_users)
    monkeypatch.setattr(coldstart, "MIN_COLD_USERS", n + 1)
    said = rf"its val window \(.*\) has {n} \(\d+ new movies\): no study on this dataset"
    with pytest.raises(coldstart.ThinWindow, match=said):
        coldstart.build(s)
    # the report goes on without the study, saying why (no result is read: none is needed)
    cold = coldstart.run(s, params, results={})
    assert set(cold) == {"skipped"} and re.search(said, cold["skipped"])
    assert readme.cold_results({"coldstart": cold}) == (
        f"**New movies**: no study on this dataset ({cold['skipped']}).")


def test_the_cold_task_ranks_only_the_windows_new_movies(study):
    _, _, st = study
    w = st.test_window
    n_users, n_movies = st.test.prep.n_users, st.test.prep.n_movies
    rng = torch.Generator().manual_seed(0)
    vectors = RankingVectors(torch.randn(n_users, 4, generator=rng),
                             torch.randn(n_movies, 4, generator=rng), None)
    got = coldstart.cold_values(vectors, w)
    new = np.flatnonzero(w.new)
    scores = (vectors.users.numpy() @ vectors.movies.numpy().T)[w.users[w.cold_users]]
    order = new[np.argsort(-scores[:, new], axis=1, kind="stable")][:, :20]
    want = per_user_ranking(order, w.relevant_new.select(w.cold_users), (10, 20))
    for key in ("recall@10", "recall@20", "ndcg@10"):
        np.testing.assert_allclose(got[key], want[key], atol=1e-6)
    # an oracle that scores each user's relevant new movies first finds them all
    m = torch.zeros(n_movies, n_users)
    for i, row in enumerate(w.users):
        m[w.relevant_new.row(i), row] = 1.0
    oracle = coldstart.cold_values(RankingVectors(torch.eye(n_users), m, None), w)
    assert np.allclose(oracle["ndcg@10"][oracle["recall@10"] == 1.0], 1.0)


def test_the_mixed_tasks_bonus_brings_new_movies_into_the_top(study):
    _, _, st = study
    w = st.test_window
    prep = st.test.prep
    rng = torch.Generator().manual_seed(1)
    vectors = RankingVectors(torch.randn(prep.n_users, 4, generator=rng),
                             torch.randn(prep.n_movies, 4, generator=rng), None)
    none, huge = (coldstart.mixed_reading(vectors, w, b) for b in (0.0, 1e6))
    assert huge["new_in_top"] == min(20, w.new.sum())  # every slot a new movie
    assert huge["warm ndcg@10"] == 0.0 and none["new_in_top"] < huge["new_in_top"]


def test_the_rules_score_what_they_say():
    class Prep:
        n_users, n_movies = 2, 4
        timestamps = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        items = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1])  # the last tenth: movie 1 only
        ratings = np.full(10, 5.0)

        class split:
            @staticmethod
            def rows(part):
                return np.arange(10)

        class features:
            genres = Csr(np.array([0, 1, 2, 3, 4]), np.array([0, 1, 1, 2]),
                         np.ones(4, np.float32))

    class Exp:
        prep = Prep

    score = coldstart.genre_popularity(Exp).offset.numpy()
    assert score.tolist() == [0.0, 1.0, 1.0, 0.0]  # genre 1 is the recent one


def test_content_knn_is_the_cosine_to_the_liked_movies(study):
    _, _, st = study
    v = coldstart.content_knn(st.test)
    x = coldstart.content_matrix(st.test).toarray()
    users, movies, ratings = st.test.prep.part(TRAIN)
    liked = ratings >= 4
    u = users[liked][0]
    profile = x[movies[liked][users[liked] == u]].sum(0)
    want = x @ profile / np.linalg.norm(profile)
    np.testing.assert_allclose((v.users[u] @ v.movies.T).numpy(), want, atol=1e-5)


def test_the_whole_study_on_generated_data(study, monkeypatch):
    s, params, st = study
    from movierec.runner import Runner

    runner = Runner(s.exp, seed=params["SEED"], progress=None)
    from movierec import baselines
    from movierec.variants import main_spec

    from .conftest import MAIN

    runner.run([baselines.baseline("lightfm"),
                main_spec(params, {**MAIN, "dim": 8, "n_negatives": 64})])
    tuned, nows = [], set()
    real_tune = VariantSpec.tune

    def counted(self, exp, setting, seed, threads=1):
        tuned.append((self.name, setting.get("id_dropout"), seed))
        nows.add(self.variant.age_now)
        return real_tune(self, exp, setting, seed, threads)

    monkeypatch.setattr(VariantSpec, "tune", counted)
    cold = coldstart.run(s, params, runner.results, st)
    # each model, rate and seed trained once (the chosen rate's first seed is not redone)
    assert len(tuned) == len(set(tuned)), tuned
    assert {r for _, r, _ in tuned} == {None, *coldstart.DROPOUTS}
    assert nows == {"cut"}  # every main-model competitor is served at the world's cut
    names = set(cold["cold"])
    assert {coldstart.MAIN, "newest", "genre popularity", "content kNN",
            "lightfm (item features)", "main, ids only (no content)"} <= names
    assert any(n.startswith("main, id dropout") for n in names)
    assert cold["choices"]["id_dropout"] in coldstart.DROPOUTS
    assert cold["choices"]["bonus"] in coldstart.BONUSES
    assert set(cold["seeds"][coldstart.MAIN]) == {str(params["SEED"]), "5"}
    assert set(cold["seeds"]["newest"]) == {str(params["SEED"])}  # a rule: one reading
    assert set(cold["uncertainty"]) == {"new ndcg@10", "new recall@20"}
    assert set(cold["uncertainty"]["new ndcg@10"]) == names - {coldstart.MAIN}
    assert cold["test"]["users"] == len(st.test_window.cold_users)
    table = coldstart.table(cold)
    assert list(table["ndcg@10"]) == sorted(table["ndcg@10"], reverse=True)
    assert isinstance(pd.Timestamp(cold["t1"]), pd.Timestamp)
