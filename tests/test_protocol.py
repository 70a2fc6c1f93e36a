"""One protocol for every model: search on val, refit on train + val, test once per seed; the
scoring rule; our variants as specs (readout calibration, reuse of the tuned run)."""

import dataclasses
import time

import numpy as np
import pytest
import torch

from movierec import protocol
from movierec.csr import Csr
from movierec.data import load_movielens
from movierec.evaluate import BiasBaseline, rmse_mae
from movierec.experiment import Experiment
from movierec.prepare import prepare
from movierec.protocol import Fitted, Fixed, Grid, Trial, choose_by, read_test, run
from movierec.runner import Runner
from movierec.split import TEST, TRAIN, VAL
from movierec.tensors import RankingVectors
from movierec.train import predict, rating_errors

from .conftest import spec


def oracle(exp: Experiment, relevant: Csr, users: np.ndarray, strength: float = 1.0
           ) -> RankingVectors:
    """Ranking vectors that put each user's ``relevant`` movies first (one-hot users)."""
    n_users, n_movies = exp.prep.n_users, exp.prep.n_movies
    u = torch.eye(n_users)
    m = torch.zeros(n_movies, n_users)
    for i, row in enumerate(users):
        m[relevant.row(i), row] = strength
    return RankingVectors(u, m, None)


class Planted:
    """A spec whose val figures are planted: it records what it was asked to fit."""

    name, about, kind, target, baseline, seeded, retune = ("planted", "", "ranking",
                                                           "val_ndcg@10", True, True, False)
    limits = {}  # noqa: RUF012

    def __init__(self, val: dict[int, float], target: str = "val_ndcg@10"):
        self.val, self.calls, self.target = val, [], target

    def proposals(self, n_ratings, seed):
        return Grid([{"x": x} for x in self.val])

    def searched(self, n_ratings):
        return {"x": list(self.val)}

    def skip_reason(self, prep, n_ratings):
        return None

    def tune(self, exp, setting, seed, threads):
        self.calls.append(("tune", setting["x"], seed))
        return Trial(setting, {**setting, self.target: self.val[setting["x"]]}, {},
                     Fitted(None, {"score": oracle(exp, exp.test_relevant, exp.test_users)}),
                     by="score")

    def refit(self, exp, trial, seed, threads):
        self.calls.append(("refit", trial.setting["x"], seed))
        return Fitted(None, {"score": oracle(exp, exp.test_relevant, exp.test_users)})


def test_search_takes_the_best_val_setting_first_of_equals_and_refits_it_per_seed(tiny_exp):
    planted = Planted({1: 0.2, 2: 0.5, 3: 0.5, 4: 0.1})
    r = run(tiny_exp, planted, seed=7, seeds=(8, 7, 9))
    assert r.setting == {"x": 2} and [row["x"] for row in r.sweep] == [1, 2, 3, 4]
    assert planted.calls == [("tune", x, 7) for x in (1, 2, 3, 4)] + [
        ("refit", 2, s) for s in (7, 8, 9)]  # each seed once; test read once per refit
    assert list(r.seeds) == [7, 8, 9] and r.ranking["recall@10"] == 1.0  # the oracle
    lower = Planted({1: 0.2, 2: 0.5}, target="val_rmse")  # an error: the smallest wins
    assert run(tiny_exp, lower, seed=0).setting == {"x": 1}


def parts_ranked(monkeypatch) -> list[int]:
    """The split parts (TEST, VAL) the experiment ranks from now on, in order."""
    reads = []
    original = Experiment.rank

    def spy(self, vectors, part=TEST, k=50):
        reads.append(part)
        return original(self, vectors, part, k)

    monkeypatch.setattr(Experiment, "rank", spy)
    return reads


def test_each_seed_reads_test_once_and_val_never_after_tuning(tiny_exp, monkeypatch):
    reads = parts_ranked(monkeypatch)
    planted = Planted({1: 0.3, 2: 0.4})
    run(tiny_exp, planted, seed=0, seeds=(1, 2))
    assert reads == [TEST] * 3  # the planted spec reads no val; each seed: one test search
    reads.clear()
    r = run(tiny_exp, spec("hybrid_rank", epochs=2, axes={"rank_weight": (0.1, 1.0)}), seed=3)
    tests = [i for i, p in enumerate(reads) if p == TEST]
    assert len(tests) == 2  # one search per scoring of the one refitted model
    assert all(p == VAL for p in reads[:tests[0]]) and set(reads[tests[0]:]) == {TEST}
    assert [row["rank_weight"] for row in r.sweep][:2] == [0.1, 1.0]  # then, here, a walk


def test_refit_learns_from_val_and_no_refit_tests_the_tuned_model(tiny_exp):
    s = spec("hybrid_rank", epochs=3)
    a, b = run(tiny_exp, s, seed=3), run(tiny_exp, s, seed=3, refit=False)
    assert a.rating["val_rmse"] == b.rating["val_rmse"]  # the same tuning run
    for r in (a, b):  # test figures come from the returned model
        got = rating_errors(predict(r.model, tiny_exp.feats, tiny_exp.test),
                            tiny_exp.test.ratings)["rmse"]
        assert got == r.rating["test_rmse"]
    # a movie rated in val but never in train has a movie bias only in the refit model
    val_only = np.setdiff1d(tiny_exp.val.movies.numpy(), tiny_exp.train.movies.numpy())
    assert len(val_only) > 0
    assert (a.model.head.movie_biases.weight[val_only] != 0).all()
    assert (b.model.head.movie_biases.weight[val_only] == 0).all()


def test_the_first_seed_reuses_its_tuned_run_and_other_seeds_tune_again(tiny_exp, monkeypatch):
    s = spec("hybrid_rank", epochs=2)
    tunes = []
    original = type(s).tune

    def counted(self, exp, setting, seed, threads=1):
        tunes.append(seed)
        return original(self, exp, setting, seed, threads)

    monkeypatch.setattr(type(s), "tune", counted)
    r = run(tiny_exp, s, seed=3, seeds=(4,))
    assert tunes == [3, 4]  # the chosen setting's trial is refitted, not trained again
    fresh = run(tiny_exp, s, seed=3)
    assert r.headline(3) == fresh.headline() and r.trial.tuned["readout"] == fresh.trial.tuned[
        "readout"]


def test_the_scoring_with_the_better_val_ndcg_is_chosen_ties_to_the_first(tiny_exp):
    good = oracle(tiny_exp, tiny_exp.val_relevant, tiny_exp.val_users)
    noise = RankingVectors(torch.randn(tiny_exp.prep.n_users, 4,
                                       generator=torch.Generator().manual_seed(0)),
                           torch.randn(tiny_exp.prep.n_movies, 4,
                                       generator=torch.Generator().manual_seed(1)), None)
    by, val = choose_by(tiny_exp, Fitted(None, {"cosine": noise, "rating": good}))
    assert by == "rating" and val["rating"] == pytest.approx(1.0) and val["cosine"] < 0.5
    assert choose_by(tiny_exp, Fitted(None, {"cosine": good, "rating": noise}))[0] == "cosine"
    assert choose_by(tiny_exp, Fitted(None, {"a": good, "b": good}))[0] == "a"
    assert choose_by(tiny_exp, Fitted(None, {"only": noise})) == ("only", {})


def test_our_models_are_read_both_ways_on_test(tiny_exp):
    r = run(tiny_exp, spec("mf", epochs=2), seed=3, ks=(5,))
    assert list(r.ranking_by) == ["rating", "cosine"]  # mf's default first
    assert r.ranking == r.ranking_by[r.by]
    other = next(b for b in r.ranking_by if b != r.by)
    reading = read_test(tiny_exp, protocol.Fitted(
        None, {other: r.model.ranking_vectors(tiny_exp.feats, other)}), other, (5,))
    assert reading.ranking == r.ranking_by[other]  # the other scoring, as if it were chosen


def test_calibrated_readout_is_chosen_on_val_and_never_worse_than_its_biases(tiny_exp):
    from movierec.evaluate import RECENCY_HALF_LIVES
    from movierec.variants import READOUT_DAMPINGS, calibrate_readout, pair_cosines

    s = spec("hybrid_rank", epochs=2)
    trial = s.tune(tiny_exp, s.grid(0)[0], 3)
    readout, model = trial.tuned["readout"], trial.fitted.model
    assert set(readout) == {"damping", "half_life", "scale"}
    assert readout["damping"] in READOUT_DAMPINGS
    assert readout["half_life"] in (None, *RECENCY_HALF_LIVES)
    assert readout["scale"] > 0
    got = rating_errors(predict(model, tiny_exp.feats, tiny_exp.val),
                        tiny_exp.val.ratings)["rmse"]
    assert got == pytest.approx(trial.rating["val_rmse"])
    u, m = tiny_exp.val.users.numpy(), tiny_exp.val.movies.numpy()
    truth, cos = tiny_exp.val.ratings.numpy(), pair_cosines(model, tiny_exp, tiny_exp.val)

    def biases(damping: float, half_life: float | None) -> BiasBaseline:
        return BiasBaseline(tiny_exp.prep.n_users, tiny_exp.prep.n_movies, reg_user=damping,
                            reg_movie=damping, half_life=half_life).fit(
            *tiny_exp.prep.part(TRAIN), tiny_exp.prep.recency(TRAIN))

    def best_rmse(b: BiasBaseline) -> float:  # with the least-squares scale (>= 0)
        base = b.mean + b.user_bias[u] + b.movie_bias[m]
        scale = max(0.0, ((truth - base) * cos).sum() / (cos * cos).sum())
        return rmse_mae(base + scale * cos, truth)["rmse"]

    b = biases(readout["damping"], readout["half_life"])
    biases_only = rmse_mae(b.mean + b.user_bias[u] + b.movie_bias[m], truth)["rmse"]
    assert got <= biases_only + 1e-6
    # the damping and the half-life are val's best pair, recency-weighted or not
    assert all(got <= best_rmse(biases(d, h)) + 1e-6
               for d in READOUT_DAMPINGS for h in (None, *RECENCY_HALF_LIVES))
    # the prediction is exactly mu + b_u + b_m + scale * cos
    want = b.mean + b.user_bias[u] + b.movie_bias[m] + readout["scale"] * cos
    np.testing.assert_allclose(predict(model, tiny_exp.feats, tiny_exp.val).numpy(), want,
                               rtol=1e-5, atol=1e-5)
    # the scale is val's best for its damping, not a grid point near it
    def val_rmse(scale: float) -> float:
        return rmse_mae(b.mean + b.user_bias[u] + b.movie_bias[m] + scale * cos,
                        tiny_exp.val.ratings.numpy())["rmse"]

    assert all(val_rmse(readout["scale"]) <= val_rmse(readout["scale"] + d)
               for d in (-0.01, 0.01, 0.5))
    # applying a setting (the refit) does not choose again
    assert calibrate_readout(tiny_exp, model, (TRAIN,), {"damping": 5.0, "scale": 0.0}) == {
        "damping": 5.0, "scale": 0.0}
    assert float(model.head.scale.detach()) == 0.0
    # a recorded half-life weights the biases of the data it is applied to by their recency
    calibrate_readout(tiny_exp, model, (TRAIN,), {"damping": 5.0, "half_life": 10.0,
                                                  "scale": 0.0})
    np.testing.assert_allclose(predict(model, tiny_exp.feats, tiny_exp.val).numpy(),
                               biases(5.0, 10.0).predict(u, m), rtol=1e-5, atol=1e-5)


def test_runner_skips_what_does_not_scale_and_keeps_one_result_type(tiny_exp):
    from movierec.baselines import baseline

    lines = []
    runner = Runner(tiny_exp, seed=0, ks=(5,), progress=lines.append)
    tight = dataclasses.replace(baseline("svdpp"), max_ratings=10)
    out = runner.run([baseline("bias"), tight, spec("seed", epochs=1)])
    assert list(out) == ["bias", "seed"] and list(runner.results) == ["bias", "seed"]
    assert "training ratings > 10" in runner.skipped["svdpp"]
    assert all(isinstance(r, protocol.Result) for r in runner.results.values())
    assert runner.results["bias"].baseline and not runner.results["seed"].baseline
    assert lines[1].startswith("--- svdpp: skipped")


def test_a_fixed_spec_runs_only_its_setting(tiny_exp):
    planted = Planted({1: 0.9, 2: 0.1})
    r = run(tiny_exp, Fixed(planted, {"x": 2}), seed=0)
    assert r.setting == {"x": 2} and planted.calls == [("tune", 2, 0), ("refit", 2, 0)]


def test_unknown_names_and_settings_are_errors_listing_the_known_ones():
    from movierec import baselines, variants

    with pytest.raises(ValueError, match=r"unknown model variant 'nope'; known: .*'mf'"):
        variants.variant("nope")
    with pytest.raises(ValueError, match=r"unknown baseline 'nope'; known: .*'ease'"):
        baselines.baseline("nope")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['tempreature'\]"):
        spec("hybrid_rank", axes={"tempreature": (0.1,)})


def test_a_tpe_search_is_seeded_reads_only_val_and_proposes_after_each_figure(tiny_exp,
                                                                             monkeypatch):
    from movierec.variants import VariantSpec

    reads = parts_ranked(monkeypatch)
    base = spec("hybrid_rank", epochs=2)
    space = {**{k: ("choice", (v[0],)) for k, v in base.axes.items()},
             "rank_weight": ("log", 0.1, 10.0), "dim": ("choice", (4, 8))}
    s = VariantSpec(base.variant, base.train, 8, space=space, trials=3)
    (a_trial, a), (_, b) = (protocol.search(tiny_exp, s, 7, 1) for _ in range(2))
    assert TEST not in reads  # only val is read
    assert [r["rank_weight"] for r in a] == [r["rank_weight"] for r in b] and len(a) == 3
    assert a_trial.row == {k: v for k, v in max(a, key=lambda r: r["val_ndcg@10"]).items()
                           if k != "seconds"}
    assert all(r["seconds"] > 0 for r in a)  # each fit timed
    protocol.check_proposals(s, a, len(tiny_exp.train), 7)  # what a replay checks
    with pytest.raises(ValueError, match="the record is of another search"):
        protocol.check_proposals(s, a, len(tiny_exp.train), 8)  # another seed
    with pytest.raises(ValueError, match=r"a TPE search takes a space and trials >= 1"):
        VariantSpec(base.variant, base.train, 8, space=space, trials=0)


def test_tpe_proposes_after_the_figures_it_is_told():
    """TPE's first ten proposals are its seeded random start; then each depends on the
    figures told before it, so a record whose figures were edited proposes otherwise."""
    from movierec.variants import Tpe

    space = {"a": ("log", 0.1, 10.0), "b": ("choice", (1, 2, 3))}

    def draws(figures: list[float], seed: int = 7) -> list[dict]:
        tpe, out = Tpe(space, len(figures), seed, minimize=False), []
        for figure in figures:
            out.append(tpe.ask())
            tpe.tell(figure)
        assert tpe.ask() is None  # the budget is spent
        return out

    figures = [(i * 7 % 5) / 10 for i in range(14)]
    told_otherwise = [1.0 - f for f in figures]
    assert draws(figures) == draws(figures)
    assert draws(told_otherwise)[:10] == draws(figures)[:10]
    assert draws(told_otherwise)[10:] != draws(figures)[10:]
    assert draws(figures, seed=8)[:10] != draws(figures)[:10]


def recorded(result, exact: bool = True) -> dict:
    return {"sweep": result.sweep, "setting": result.setting, "exact": exact,
            "made": {"code": "c0de", "git": {"commit": "abc1234"}, "machine": {"cpu": "X"}}}


def test_a_recorded_search_is_replayed_fitting_only_its_choice_and_checked(tiny_exp):
    searched = Planted({1: 0.2, 2: 0.5, 3: 0.1})
    full = run(tiny_exp, searched, seed=0)
    record = recorded(full)
    again = Planted({1: 0.2, 2: 0.5, 3: 0.1})
    r = run(tiny_exp, again, seed=0, record=record)
    assert again.calls == [("tune", 2, 0), ("refit", 2, 0)]  # the grid is not searched
    assert r.sweep == full.sweep and r.setting == full.setting and r.ranking == full.ranking
    assert r.search["how"] == "recorded, refitted exactly" and r.search["tried"] == 3
    with pytest.raises(ValueError, match="the record is of another search"):  # grid changed
        run(tiny_exp, Planted({1: 0.2, 2: 0.5, 4: 0.1}), seed=0, record=record)
    with pytest.raises(ValueError, match="tries more than the 3 recorded"):
        run(tiny_exp, Planted({1: 0.2, 2: 0.5, 3: 0.1, 4: 0.0}), seed=0, record=record)
    with pytest.raises(ValueError, match="not the best of its recorded search"):
        run(tiny_exp, Planted({1: 0.2, 2: 0.5, 3: 0.1}), seed=0,
            record={**record, "setting": {"x": 1}})
    # on the record's machine fingerprint the check is exact: the last bit counts
    with pytest.raises(ValueError, match=r"now gives val_ndcg@10 0\.5000000000000001 \(recorded"
                                         r" 0\.5\) on val \(on this machine fingerprint\)"):
        run(tiny_exp, Planted({1: 0.2, 2: 0.5 + 1e-16, 3: 0.1}), seed=0, record=record)

    class AlsoRecall(Planted):  # a val figure read since the record was made
        def tune(self, exp, setting, seed, threads):
            trial = super().tune(exp, setting, seed, threads)
            trial.row["val_recall@10"] = 0.3
            return trial

    with pytest.raises(ValueError, match=r"now gives val_recall@10 0\.3 \(not recorded\)"):
        run(tiny_exp, AlsoRecall({1: 0.2, 2: 0.5, 3: 0.1}), seed=0, record=record)


def test_on_another_machine_a_replay_holds_only_if_the_choice_cannot_have_moved(tiny_exp):
    users = len(tiny_exp.val_users)
    full = run(tiny_exp, Planted({1: 0.2, 2: 0.5, 3: 0.1}), seed=0)  # a lead of 0.3
    record = recorded(full, exact=False)
    small = 0.5 + 0.5 / users  # within another CPU's bound, well under half the lead
    r = run(tiny_exp, Planted({1: 0.2, 2: small, 3: 0.1}), seed=0, record=record)
    assert r.search["how"].startswith("recorded on another machine, refitted within its bounds")
    with pytest.raises(ValueError, match=r"beyond another CPU's bounds"):  # a real change
        run(tiny_exp, Planted({1: 0.2, 2: 0.45, 3: 0.1}), seed=0, record=record)
    # a choice that moved by half its lead or more (here: a lead of half a flip) is in doubt:
    # the whole search runs again here
    close = run(tiny_exp, Planted({1: 0.2, 2: 0.5, 3: 0.5 - 0.5 / users}), seed=0)
    again = Planted({1: 0.2, 2: 0.5 - 0.4 / users, 3: 0.5 - 0.5 / users})
    r = run(tiny_exp, again, seed=0, record=recorded(close, exact=False))
    assert r.search["how"].startswith("searched again here")
    assert [c for c in again.calls if c[0] == "tune"] == [("tune", x, 0) for x in (2, 1, 2, 3)]
    assert r.setting == {"x": 2} and "record" not in r.search


def figures(rows: list[dict]) -> list[dict]:
    """A search's rows without the seconds each fit took (which no rerun repeats)."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_side_by_side_processes_give_the_lone_runs_results(tiny_exp):
    from movierec.baselines import baseline

    names = ["bias", "svd", "ease", "als"]
    lone = Runner(tiny_exp, seed=3, progress=None)
    lone.run([baseline(n) for n in names], seeds=(4,))
    lines = []
    pooled = Runner(tiny_exp, seed=3, progress=lines.append)
    pooled.run([baseline(n) for n in names], seeds=(4,), workers=2)
    assert list(pooled.results) == names  # in the order given, whatever finished first
    for n in names:
        a, b = lone.results[n], pooled.results[n]
        assert (figures(a.sweep), a.setting, a.rating, a.ranking, a.seeds, a.buckets) == (
            figures(b.sweep), b.setting, b.rating, b.ranking, b.seeds, b.buckets)
        assert all(np.array_equal(a.per_user[k], b.per_user[k], equal_nan=True)
                   for k in a.per_user)
    assert [line.split(":")[0] for line in lines] == [f"--- {n}" for n in names]


class Counted(Planted):
    """A planted spec whose val row records the torch threads it was fitted with."""

    def __init__(self, name: str):
        super().__init__({1: 0.5})
        self.name = name

    def tune(self, exp, setting, seed, threads):
        trial = super().tune(exp, setting, seed, threads)
        trial.row["torch_threads"] = torch.get_num_threads()
        return trial


class Meeting(Planted):
    """A planted spec whose extra seeds' refits each wait (up to 30 s) until every extra seed
    has started: they finish at once only if they run at the same time."""

    def __init__(self, folder, first: int, extra: tuple[int, ...]):
        super().__init__({1: 0.5})
        self.name, self.folder, self.first, self.extra = "meeting", folder, first, extra

    def refit(self, exp, trial, seed, threads):
        if seed != self.first:
            (self.folder / f"started-{seed}").touch()
            deadline = time.monotonic() + 30
            while (len(list(self.folder.glob("started-*"))) < len(self.extra)
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            if len(list(self.folder.glob("started-*"))) == len(self.extra):
                (self.folder / f"met-{seed}").touch()
        return super().refit(exp, trial, seed, threads)


def test_side_by_side_a_specs_extra_seeds_run_at_once_in_both_processes(tiny_exp, tmp_path):
    extra = (0, 5)  # seed 0 is an extra seed like any other
    r = Runner(tiny_exp, seed=3, progress=None)
    r.run([Meeting(tmp_path, 3, extra)], seeds=extra, workers=2)
    assert sorted(p.name for p in tmp_path.glob("met-*")) == ["met-0", "met-5"]
    assert list(r.results["meeting"].seeds) == [3, 0, 5]  # the first seed first, then as given
    lone = run(tiny_exp, Planted({1: 0.5}), seed=3, seeds=extra)
    assert r.results["meeting"].seeds == lone.seeds


def test_side_by_side_processes_use_the_runners_thread_count(tiny_exp):
    before = torch.get_num_threads()
    for threads in (1, 2):
        r = Runner(tiny_exp, seed=0, threads=threads, progress=None)
        r.run([Counted("a"), Counted("b")], workers=2)
        assert [x.sweep[0]["torch_threads"] for x in r.results.values()] == [threads] * 2
    assert torch.get_num_threads() == before  # the parent's count is left alone


def test_side_by_side_sends_the_experiment_once_per_process_not_per_job(tiny_exp, monkeypatch):
    import copyreg
    import pickle

    sent = []

    def counted(exp):  # every pickler's reduction of an Experiment (copyreg's table), counted
        sent.append(1)
        return exp.__reduce_ex__(pickle.HIGHEST_PROTOCOL)  # object's own: no recursion

    monkeypatch.setitem(copyreg.dispatch_table, Experiment, counted)
    r = Runner(tiny_exp, seed=3, progress=None)
    r.run([Counted("a"), Counted("b"), Counted("c")], seeds=(4, 5), workers=2)  # 9 jobs
    assert [list(x.seeds) for x in r.results.values()] == [[3, 4, 5]] * 3
    assert 1 <= len(sent) <= 2  # once for each worker process started


def test_nothing_of_test_reaches_the_main_models_choices_or_its_refit(tiny_dir):
    """The main model's val search, its chosen setting, its readout, its epochs and its refit
    model are the same, weight for weight, when the test ratings are shuffled among the test
    rows or replaced by random ones: no path from test into training or tuning."""
    from movierec.variants import VariantSpec

    prep = prepare(load_movielens(tiny_dir))
    test = prep.split.labels == TEST
    rng = np.random.default_rng(0)
    shuffled, replaced = prep.ratings.copy(), prep.ratings.copy()
    shuffled[test] = rng.permutation(prep.ratings[test])
    replaced[test] = rng.choice(np.arange(1, 11) / 2, test.sum()).astype(np.float32)
    base = spec("hybrid_rank", epochs=3)
    grid = VariantSpec(base.variant, base.train, 8,
                       axes={**base.axes, "rank_weight": (0.3, 3.0), "temperature": (0.1, 0.5)})
    runs = []
    for ratings in (prep.ratings, shuffled, replaced):
        exp = Experiment(dataclasses.replace(prep, ratings=ratings), torch.device("cpu"))
        chosen, rows, _how = protocol.tune(exp, grid, 3, 1)
        fitted = grid.refit(exp, chosen, 3)
        runs.append((chosen, rows, fitted.model))
    (c0, rows0, m0), *others = runs
    for chosen, rows, model in others:
        assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows] == [
            {k: v for k, v in r.items() if k != "seconds"} for r in rows0]
        assert chosen.setting == c0.setting and chosen.tuned["readout"] == c0.tuned["readout"]
        assert chosen.tuned["fit"].best_epoch == c0.tuned["fit"].best_epoch
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                     m0.state_dict().values(), strict=True))
    assert not np.array_equal(replaced, prep.ratings)  # the test ratings did change


def test_every_model_of_ours_searches_its_own_grid_and_a_lean_one_at_scale():
    from movierec.protocol import LARGE_ABOVE
    from movierec.variants import MAIN_LARGE_SPACE, MAIN_SPACE, VariantSpec, variant

    from .conftest import train_config

    mf = VariantSpec(variant("mf"), train_config(), 64)
    assert len(mf.grid(1000)) == 12 and {s["dim"] for s in mf.grid(1000)} == {32, 64, 128}
    assert mf.grid(LARGE_ABOVE + 1) == ({"reg": 0.02}, {"reg": 0.05})
    assert mf.searched(LARGE_ABOVE + 1) == {"reg": [0.02, 0.05]}
    assert {len(VariantSpec(variant(n), train_config(), 64).grid(1000))
            for n in ("seed", "hybrid")} == {3, 9}
    pinned = VariantSpec(variant("mf"), train_config(), 64, axes={"reg": (0.1,)})
    assert pinned.grid(1000) == ({"reg": 0.1},)  # a caller's axes replace the grid
    main = VariantSpec(variant("hybrid_rank"), train_config(), 64, space=MAIN_SPACE,
                       large_space=MAIN_LARGE_SPACE, trials=3)
    small, large = (main.proposals(n, 0).ask() for n in (1000, LARGE_ABOVE + 1))
    assert small["n_negatives"] in MAIN_SPACE["n_negatives"][1]
    assert large["dim"] == 64 and large["n_negatives"] == 256  # the lean space's fixed values
    assert main.searched(LARGE_ABOVE + 1)["dim"] == [64]


def walk(axis: tuple, figure, target: str = "val_ndcg@10", limits: dict | None = None,
         key: str = "x") -> list:
    """The values an EdgeWalk over the grid ``axis`` proposes, told ``figure(value)``."""
    proposals, out = protocol.EdgeWalk([{key: v} for v in axis], target, limits), []
    while (setting := proposals.ask()) is not None:
        out.append(setting[key])
        proposals.tell(figure(setting[key]))
    return out


def test_a_grid_whose_choice_sits_at_an_end_walks_on_by_its_own_ratio_until_it_is_inside():
    peak = lambda top: lambda x: -abs(np.log2(max(x, 1e-9)) - np.log2(top))  # noqa: E731
    assert walk((32, 64, 128), peak(64)) == [32, 64, 128]  # inside: nothing more
    assert walk((32, 64, 128), peak(512)) == [32, 64, 128, 256, 512, 1024]  # 1024 lost
    assert walk((32, 64, 128), peak(1e9)) == [32, 64, 128, 256, 512, 1024]  # 3 steps at most
    assert walk((32, 64, 128), peak(8)) == [32, 64, 128, 16, 8, 4]  # the low end too
    assert walk((2, 3), peak(1)) == [2, 3, 1]  # an integer axis stays >= 1
    # an error falls: the lowest wins; floats keep 3 significant figures
    rmse = lambda x: abs(np.log(x) - np.log(0.0004))  # noqa: E731
    assert walk((0.01, 0.05, 0.2), rmse, "val_rmse") == [0.01, 0.05, 0.2, 0.002, 0.0004, 8e-05]
    # a natural bound is never passed, and a choice at it does not walk
    assert walk((0.25, 0.5), peak(5), limits={"x": (0.0, 0.9)}) == [0.25, 0.5, 0.9]
    assert walk((40, 80, 10**5), peak(10**6), limits={"x": (1, 10**5)}) == [40, 80, 10**5]
    # names are not walked, nor an end at or next to zero; an axis from zero walks its top
    # (BPR's L2 from 0: on the 100k shape its choice, 0.03, sat at the top unwalked)
    assert walk(("a", "b"), lambda x: x == "b") == ["a", "b"]
    assert walk((0.0, 0.1), peak(1)) == [0.0, 0.1]
    assert walk((0.0, 0.1, 0.3), peak(3)) == [0.0, 0.1, 0.3, 0.9, 2.7, 8.1]


def test_a_walk_that_used_its_steps_toward_a_finite_natural_bound_tries_the_bound_once():
    l2 = {"x": protocol.L2}  # an L2 weight: 0 is no penalty, nothing lies below it
    toward = lambda best: lambda x: abs(x - best)  # noqa: E731  (val RMSE: best at ``best``)
    steps = [0.01, 0.05, 0.2, 0.002, 0.0004, 8e-05]
    # still winning after 3 steps: 0 itself, once; it wins, so the choice is at its bound
    assert walk((0.01, 0.05, 0.2), toward(0.0), "val_rmse", l2) == [*steps, 0.0]
    # 0 loses: the choice, 8e-05, now lies inside what the axis tried
    assert walk((0.01, 0.05, 0.2), toward(5e-05), "val_rmse", l2) == [*steps, 0.0]
    tried = [{"x": v} for v in (*steps, 0.0)]
    assert protocol.at_edge({"x": 8e-05}, tried, l2) == []
    assert protocol.at_edge({"x": 0.0}, tried, l2) == []  # at_limit instead
    # no bound declared, or an infinite one that way: 3 steps and still flagged
    assert walk((0.01, 0.05, 0.2), toward(0.0), "val_rmse") == steps
    assert walk((0.01, 0.05, 0.2), lambda x: x, "val_ndcg@10", l2) == [
        0.01, 0.05, 0.2, 0.8, 3.2, 12.8]
    # a walk inside its steps does not try the bound
    assert walk((0.01, 0.05, 0.2), toward(0.002), "val_rmse", l2) == [*steps[:5]]


def test_a_walk_moves_each_axis_from_the_best_setting_and_replays_from_its_figures(tiny_exp):
    def figure(s):  # best at a = 8 (past the grid's top), b = "y"; b's values are names
        return -abs(np.log2(s["a"]) - 3) + (s["b"] == "y")

    class Walked(Planted):
        def proposals(self, n_ratings, seed):
            return protocol.EdgeWalk(protocol.grid(a=(1, 2), b=("x", "y")), self.target)

        def searched(self, n_ratings):
            return {"a": [1, 2], "b": ["x", "y"]}

        def tune(self, exp, setting, seed, threads):
            self.val = {setting["a"]: figure(setting)}
            return super().tune(exp, {**setting, "x": setting["a"]}, seed, threads)

    r = run(tiny_exp, Walked({}), seed=0)
    assert [(row["a"], row["b"]) for row in r.sweep] == [
        (1, "x"), (1, "y"), (2, "x"), (2, "y"), (4, "y"), (8, "y"), (16, "y")]
    assert r.setting["a"] == 8 and r.at_edge == [] and r.search["tried"] == 7
    from movierec.study import searches
    assert searches({"walked": r})["walked"]["walked"] == {"a": [4, 8, 16]}
    # a record of the walk replays: the same figures told propose the same settings
    again = Walked({})
    replayed = run(tiny_exp, again, seed=0, record=recorded(r))
    assert replayed.sweep == r.sweep and [c[0] for c in again.calls] == ["tune", "refit"]
    shorter = recorded(r)
    shorter["sweep"] = [{**row, "val_ndcg@10": -9.0} if row["a"] == 8 else row
                        for row in r.sweep]  # told otherwise, the walk stops after 4
    with pytest.raises(ValueError, match="the record is of another search"):
        run(tiny_exp, Walked({}), seed=0, record={**shorter, "setting": {**r.setting, "a": 4}})


def test_every_grid_of_the_report_walks_the_baselines_and_ours():
    from movierec.baselines import BASELINES
    from movierec.variants import VariantSpec, variant

    from .conftest import train_config

    svdpp = BASELINES["svdpp"].proposals(1000, 0)  # reg_all 0.02, 0.05, 0.1; an error
    for reg in (0.02, 0.05, 0.1):
        assert svdpp.ask() == {"reg_all": reg}
        svdpp.tell(reg)  # the smallest wins
    assert svdpp.ask() == {"reg_all": 0.008}
    mf = VariantSpec(variant("mf"), train_config(), 64).proposals(1000, 0)
    asked = []
    while (s := mf.ask()) is not None:
        asked.append(s)
        mf.tell(1.0 + s["dim"] / 1000)  # val RMSE: the smaller the better; reg alike
    assert asked[12:] == [{"reg": 0.00333, "dim": 32},  # a tie does not win: reg stops
                          {"reg": 0.01, "dim": 16}, {"reg": 0.01, "dim": 8},
                          {"reg": 0.01, "dim": 4}]


def test_a_lean_grid_at_scale_walks_one_step_an_end():
    from movierec.baselines import BASELINES
    from movierec.protocol import LARGE_ABOVE
    from movierec.variants import VariantSpec, variant

    from .conftest import train_config

    def asked(proposals, figure) -> list[dict]:
        out = []
        while (s := proposals.ask()) is not None:
            out.append(s)
            proposals.tell(figure(s))
        return out

    bpr = BASELINES["bpr"]  # lean: learning rate 0.003, 0.01; the largest wins
    big = asked(bpr.proposals(LARGE_ABOVE + 1, 0), lambda s: s["learning_rate"])
    assert [s["learning_rate"] for s in big] == [0.003, 0.01, 0.0333]
    small = asked(bpr.proposals(1000, 0), lambda s: s["learning_rate"])
    assert [s["learning_rate"] for s in small[15:]] == [0.0333, 0.111, 0.37]
    mf = VariantSpec(variant("mf"), train_config(), 64)  # lean: reg 0.02, 0.05
    assert [s["reg"] for s in asked(mf.proposals(LARGE_ABOVE + 1, 0), lambda s: s["reg"])
            ] == [0.02, 0.05, 0.008, 0.0]  # an error: the smallest wins; then L2's bound
