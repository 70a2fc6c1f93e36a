"""The age-at-the-user's-now term of the main model's retrieval score (movierec.age, AgeTerm):
estimated from the fitted-on ratings alone, added as an inner product, its weight chosen on
val, set from train + val by the refit."""

import dataclasses

import numpy as np
import pytest

from movierec import age
from movierec.features import release_years
from movierec.split import TRAIN, VAL
from movierec.variants import choose_age, set_age

from .conftest import MAIN, spec

YEAR = 365.25 * 24 * 3600


@pytest.fixture(scope="module")
def tuned(tiny_exp):
    """The main model tuned on train (early stopping, readout and age weight on val)."""
    s = spec("hybrid_rank", dim=8, epochs=3, n_negatives=64)
    return s, s.tune(tiny_exp, {**MAIN, "dim": 8, "n_negatives": 64}, 3)


def test_h_is_the_log_ratio_of_the_ratings_share_to_the_known_movies_offers_share():
    release = np.array([2000.0, 2005.0, np.nan])
    when, movies = np.array([2005, 2005, 2006]), np.array([0, 1, 0])
    h = age.log_ratio(when, movies, release)
    # rated at ages 5, 0, 6; offered (movies 0 and 1, one offer per rating): in 2005 ages 5
    # and 0 twice each, in 2006 ages 6 and 1; movie 2 is not known (never rated), so no
    # year-less movie and no movie from the future is ever offered: no evidence, h = 0 there
    # (the pseudo-counts alone would give them log(7 / 4), above every observed bucket's)
    expect = {0: np.log(2 / 4) - np.log(3 / 7), 1: np.log(1 / 4) - np.log(2 / 7),
              5: np.log(2 / 4) - np.log(3 / 7), 6: np.log(2 / 4) - np.log(2 / 7),
              age.NO_YEAR: 0.0, age.FUTURE: 0.0, 2: 0.0}
    for bucket, value in expect.items():
        assert h[bucket] == pytest.approx(value), bucket
    # an offered bucket nobody rated is evidence against it: movie 1 (2010) offered in 2005
    h = age.log_ratio(np.array([2005, 2011]), np.array([0, 1]), np.array([2000.0, 2010.0]))
    assert h[age.FUTURE] == pytest.approx(np.log(1 / 3) - np.log(2 / 5))
    assert age.age_buckets(np.array([1999, 2100, 2000]), np.array([2000.0, 1990, np.nan])
                           ).tolist() == [age.FUTURE, age.MAX_AGE, age.NO_YEAR]


def test_the_terms_inputs_read_only_the_fitted_on_parts(tiny_exp):
    prep = tiny_exp.prep
    base = age.age_inputs(prep, (TRAIN,))
    labels = prep.split.labels
    later = np.where(labels == TRAIN, 0, 3 * YEAR).astype(np.int64)
    shuffled = np.where(labels == TRAIN, prep.items, np.roll(prep.items, 5))
    moved = dataclasses.replace(prep, timestamps=prep.timestamps + later, items=shuffled)
    now, table = age.age_inputs(moved, (TRAIN,))
    np.testing.assert_array_equal(now, base[0])
    # the columns are the dataset's years (its shape); those of train's years are train's
    np.testing.assert_array_equal(table[:, :base[1].shape[1]], base[1])
    # the same change read by train + val moves the users' now
    assert (age.age_inputs(moved, (TRAIN, VAL))[0] != age.age_inputs(prep, (TRAIN, VAL))[0]
            ).any()
    train_later = dataclasses.replace(prep, timestamps=prep.timestamps + np.where(
        labels == TRAIN, 3 * YEAR, 0).astype(np.int64))
    assert not np.array_equal(age.age_inputs(train_later, (TRAIN,))[1], base[1])


def expected_term(prep, parts, weight):
    """weight x h(age of each movie at each user's now), from the definition."""
    mask = np.isin(prep.split.labels, parts)
    when = age.years_of(prep.timestamps[mask])
    now = np.full(prep.n_users, -1)
    for u, y in zip(prep.users[mask], when, strict=True):
        now[u] = max(now[u], y)
    release = release_years(prep.movies["title"])
    h = age.log_ratio(when, prep.items[mask], release)
    return weight * h[age.age_buckets(now[:, None], release[None, :])]


def scores(vectors):
    s = vectors.users @ vectors.movies.T
    return (s if vectors.offset is None else s + vectors.offset).detach().double().numpy()


def test_the_ranking_adds_weight_times_h_at_each_users_now(tuned, tiny_exp):
    _, trial = tuned
    model = trial.fitted.model
    set_age(tiny_exp, model, (TRAIN,), 0.0)
    plain = model.ranking_vectors(tiny_exp.feats, "cosine")
    rating = model.ranking_vectors(tiny_exp.feats, "rating")
    set_age(tiny_exp, model, (TRAIN, VAL), 0.5)
    aged = model.ranking_vectors(tiny_exp.feats, "cosine")
    assert plain.users.shape[1] == model.config.dim  # weight 0: no term at all
    np.testing.assert_allclose(scores(aged) - scores(plain),
                               expected_term(tiny_exp.prep, (TRAIN, VAL), 0.5), atol=1e-5)
    # the predicted rating's ranking never carries it
    np.testing.assert_array_equal(scores(model.ranking_vectors(tiny_exp.feats, "rating")),
                                  scores(rating))
    # a new user (a fold-in) is at the fitted-on data's last year (train's: before the
    # dataset's last)
    set_age(tiny_exp, model, (TRAIN,), 0.5)
    last_year = age.years_of(tiny_exp.prep.timestamps[tiny_exp.prep.split.labels == TRAIN]).max()
    first, n_years = age.year_span(tiny_exp.prep)
    assert last_year < first + n_years - 1
    extra = model.rank_users(model.all_user_vectors()[0], "cosine")[model.config.dim:]
    assert extra.argmax().item() == last_year - first
    assert extra.max().item() == 0.5 and extra.sum().item() == 0.5


def test_the_weight_is_the_val_best_and_the_refit_reads_train_and_val(tuned, tiny_exp):
    s, trial = tuned
    model = trial.fitted.model
    chosen = trial.tuned["age_weight"]
    values = {}
    for w in age.AGE_WEIGHTS:
        set_age(tiny_exp, model, (TRAIN,), w)
        values[w] = tiny_exp.val_ranking(model.ranking_vectors(tiny_exp.feats, "cosine"))[
            "val_ndcg@10"]
    assert len(set(values.values())) > 1  # the weights rank differently here
    assert values[chosen] == max(values.values())
    assert chosen == min(w for w in values if values[w] == max(values.values()))
    weight, figures = choose_age(tiny_exp, model)
    assert weight == chosen and model.age.weight.item() == chosen
    assert trial.row["age_weight"] == chosen
    set_age(tiny_exp, model, (TRAIN,), chosen)
    assert figures == tiny_exp.val_ranking(model.ranking_vectors(tiny_exp.feats, "cosine"))
    assert trial.row["val_recall@10"] == tiny_exp.val_ranking(
        model.ranking_vectors(tiny_exp.feats, trial.by))["val_recall@10"]
    refit = s.refit(tiny_exp, trial, 3).model
    assert refit.age.weight.item() == chosen
    now, table = age.age_inputs(tiny_exp.prep, (TRAIN, VAL))
    np.testing.assert_array_equal(refit.age.user_year.numpy(), now)
    np.testing.assert_array_equal(refit.age.movie_h.numpy(), table)
    assert not np.array_equal(now, age.age_inputs(tiny_exp.prep, (TRAIN,))[0])


def test_a_trials_val_figures_are_its_chosen_rankings_age_term_included(tiny_exp, monkeypatch):
    import movierec.variants

    monkeypatch.setattr(movierec.variants, "AGE_WEIGHTS", (1.0,))  # a term that moves ranks
    s = spec("hybrid_rank", dim=8, epochs=3, n_negatives=64)
    trial = s.tune(tiny_exp, {**MAIN, "dim": 8, "n_negatives": 64}, 3)
    assert trial.tuned["age_weight"] == 1.0 and trial.by == "cosine"
    aged = tiny_exp.val_ranking(trial.fitted.rankings["cosine"])
    assert trial.row["val_ndcg@10"] == aged["val_ndcg@10"]
    assert trial.row["val_recall@10"] == aged["val_recall@10"]
    history = trial.tuned["fit"].history
    plain = history.loc[history.epoch == trial.row["best_epoch"], "val_recall@10"].item()
    assert plain != aged["val_recall@10"]  # the history's figure is the ranking without it


def test_an_age_table_of_another_shape_is_refused(tuned):
    model = tuned[1].fitted.model
    n_movies, n_years = model.age.movie_h.shape
    with pytest.raises(ValueError, match=rf"the age term's table is \({n_movies}, {n_years}\), "
                                         rf"got \({n_movies}, {n_years + 1}\)"):
        model.age.set(np.zeros(model.config.n_users, np.int64),
                      np.zeros((n_movies, n_years + 1), np.float32), 0.5)


def test_the_readout_line_says_when_the_weight_is_the_largest_tried():
    from movierec.study import readout_line

    readout = {"damping": 5.0, "half_life": None, "scale": 0.5}
    top, inside = (readout_line({"readout": readout, "age_weight": w})
                   for w in (max(age.AGE_WEIGHTS), age.AGE_WEIGHTS[1]))
    assert "the largest tried" in top and "the largest tried" not in inside


def test_served_at_a_cut_every_user_is_at_the_fitted_on_datas_last_year(tuned, tiny_exp):
    """The new-movie study serves every user at its global cut: their now is that year, not
    their last rating's (which ``"user"``, the per-user split's rule, keeps)."""
    s, trial = tuned
    prep = tiny_exp.prep
    first = age.year_span(prep)[0]
    for parts in ((TRAIN,), (TRAIN, VAL)):
        last = age.years_of(prep.timestamps[np.isin(prep.split.labels, parts)]).max()
        now, table = age.age_inputs(prep, parts, "cut")
        assert (now == last - first).all()
        by_user, by_user_table = age.age_inputs(prep, parts)
        assert (by_user < last - first).any()  # some users' last rating came earlier
        np.testing.assert_array_equal(table, by_user_table)  # h is the same either way
    with pytest.raises(ValueError, match="now must be one of"):
        age.age_inputs(prep, (TRAIN,), "latest")
    model = trial.fitted.model
    choose_age(tiny_exp, model, "cut")
    train_last = age.years_of(prep.timestamps[prep.split.labels == TRAIN]).max()
    assert (model.age.user_year.numpy() == train_last - first).all()
    at_cut = dataclasses.replace(s, variant=dataclasses.replace(s.variant, age_now="cut"))
    tuned_at_cut = at_cut.tune(tiny_exp, trial.setting, 3)
    assert (tuned_at_cut.fitted.model.age.user_year.numpy() == train_last - first).all()
    refit = at_cut.refit(tiny_exp, tuned_at_cut, 3).model
    np.testing.assert_array_equal(refit.age.user_year.numpy(),
                                  age.age_inputs(prep, (TRAIN, VAL), "cut")[0])
