"""New movies: cold start measured the way it happens.

A deployed recommender meets a new movie before anyone has rated it. The per-user chronological
split cannot show that: its never-rated movies are the catalogue's last releases in test and
the long tail in val, so val cannot choose for test. This study splits the ratings at two global
times T1 < T2 (:func:`movierec.split.time_split`): every model is tuned on the ratings before T1
and read on the val window [T1, T2), refit on the ratings before T2 and read on the test window
from T2 on. A movie is **new** in a window if its first rating falls in it, so val's new movies
are of the test's kind (recent arrivals) and val can choose. Tags are cut at the same times (a
tag counts only if written before the cut it is used with). The genome, where there is one,
was computed after both cuts: a movie first rated after a world's cut has no genome row in that
world (its row could not have existed then; it is encoded like a movie the genome does not
cover), and the other movies' rows are as released (their later updates cannot be undone).

Two tasks, read for every user with a relevant (rated >= 4) movie in the window:

- **cold**: the window's new movies only are ranked (known by their content alone);
  Recall@10, Recall@20 and NDCG@10 over the users with a relevant new movie;
- **mixed**: every movie is ranked (the user's history excluded) with a bonus ``b`` added to the
  new movies' scores: the new movies in each top 20, Recall@20 of the relevant new movies and
  NDCG@10 of the relevant warm ones, for each ``b`` (the frontier); ``b`` is chosen on val as
  the largest that keeps val's warm NDCG@10 within :data:`WARM_COST` of ``b = 0``.

The competitors (:func:`run`): the main model (its setting from the report: a movie without
ratings is scored by its content, its id vector masked; its age term read at the world's cut for
every user, who is served then, not at their last rating: :func:`served_at_cut`), the same
trained with id dropout (the rate chosen on val's new movies), the same design without content
(ids only: what content buys is the difference), LightFM with its item features (its setting
from the report), and three rules: ``newest`` (release year), genre popularity (each genre's
share of the recent training positives) and content kNN (the cosine of a movie's content to the
user's liked movies). Choices are made on val; test is read once per seed. A dataset whose
windows hold fewer than :data:`MIN_COLD_USERS` users with a relevant new movie has no study:
:func:`run` says why (``{"skipped": reason}``) and the report goes on without it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from movierec.baselines import baseline, fit_newest
from movierec.csr import Csr
from movierec.data import load_movielens
from movierec.evaluate import per_user_ranking
from movierec.experiment import Experiment, Setup
from movierec.features import bag_matrix, genome_weights, tag_bags
from movierec.prepare import RELEVANT_RATING, canonical, prepare
from movierec.protocol import Fixed, Result, Trial
from movierec.retrieval import topk_search
from movierec.split import TEST, TRAIN, VAL, Split, first_rated, time_cuts, time_split
from movierec.stats import paired_bootstrap, seed_difference
from movierec.tensors import RankingVectors
from movierec.variants import VariantSpec, main_spec

DROPOUTS = (0.25, 0.5)  # the id-dropout rates tried on val's new movies
BONUSES = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)  # the mixed task's bonuses of new movies
WARM_COST = 0.002  # the loss of warm NDCG@10 on val the mixed task's bonus may cost
RECENT_TENTHS = 1  # genre popularity counts the last tenth of a world's training positives
COLD_METRICS = ("ndcg@10", "recall@10", "recall@20")
MIN_COLD_USERS = 2  # fewer users with a relevant new movie in a window: no study (the reason)
MAIN = "main (content path)"


@dataclass
class Window:
    """One window's readings: its users (rows with a relevant movie there), their history (the
    movies they rated before the window), the window's new movies and each user's relevant new
    and warm movies."""

    users: np.ndarray
    history: Csr
    new: np.ndarray  # bool per movie
    relevant_new: Csr
    relevant_warm: Csr

    @property
    def cold_users(self) -> np.ndarray:
        """Positions (in ``users``) of the users with a relevant new movie."""
        return np.flatnonzero(self.relevant_new.lengths() > 0)


@dataclass
class Study:
    """The global-time split: its cuts, a world to tune in (trained before T1, val read) and a
    world to test in (trained before T2, test read), and their windows."""

    t1: int
    t2: int
    tune: Experiment
    test: Experiment
    val_window: Window
    test_window: Window

    def counts(self) -> dict:
        def of(w: Window) -> dict:
            return {"users": len(w.cold_users), "new_movies": int(w.new.sum()),
                    "relevant_new_pairs": len(w.relevant_new.indices),
                    "mixed_users": len(w.users)}
        return {"t1": _date(self.t1), "t2": _date(self.t2), "val": of(self.val_window),
                "test": of(self.test_window)}


def _date(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


class ThinWindow(ValueError):
    """A window with too few users with a relevant new movie to study (:data:`MIN_COLD_USERS`)."""


def window(exp: Experiment, part: int, new: np.ndarray) -> Window:
    """The readings of split ``part`` (VAL of the tuning world, TEST of the test world)."""
    users, relevant = exp.prep.relevant(part, RELEVANT_RATING)
    is_new = new[relevant.indices]
    rows = np.repeat(np.arange(len(users)), relevant.lengths())
    return Window(users, exp.prep.history(TRAIN).select(users), new,
                  Csr.from_pairs(rows[is_new], relevant.indices[is_new], len(users)),
                  Csr.from_pairs(rows[~is_new], relevant.indices[~is_new], len(users)))


def build(s: Setup) -> Study:
    """The study of the dataset of ``s`` (read again from its files, in canonical order), on
    its device, with its seed and feature ranks."""
    src, exp = s.source, s.exp
    ds = canonical(load_movielens(src.dataset, src.root))
    base = prepare(ds, leak_free_tags=False, use_genome=src.use_genome)
    t1, t2 = time_cuts(base.timestamps)
    tune_labels, test_labels = time_split(base.users, base.timestamps, t1, t2)
    tag_times = ds.tags["timestamp"].to_numpy()
    vocab = tag_bags(ds.tags[tag_times < t2], ds.movies)[1]  # one vocabulary for both worlds

    first = first_rated(base.items, base.timestamps, base.n_movies)

    def world(labels: np.ndarray, cut: int) -> Experiment:
        tags, _ = tag_bags(ds.tags[tag_times < cut], ds.movies, vocab)
        f = base.features
        feats = replace(f, tags=tags, tag_vocab=vocab,
                        tags_dropped_leak_free=int((tag_times >= cut).sum()),
                        genome_mask=None if f.genome is None else f.genome_mask & (first < cut))
        prep = replace(base, split=Split(labels), features=feats)
        return Experiment(prep, exp.device, seed=exp.seed, tag_rank=exp.tag_rank,
                          genome_rank=exp.genome_rank)

    tune, test = world(tune_labels, t1), world(test_labels, t2)
    study = Study(t1, t2, tune, test, window(tune, VAL, (first >= t1) & (first < t2)),
                  window(test, TEST, first >= t2))
    for name, w, span in (("val", study.val_window, f"{_date(t1)} .. {_date(t2)}"),
                          ("test", study.test_window, f"from {_date(t2)}")):
        if len(w.cold_users) < MIN_COLD_USERS:
            raise ThinWindow(
                f"{src.dataset}: the new-movie study needs at least {MIN_COLD_USERS} users with "
                f"a relevant new movie in each window; its {name} window ({span}) has "
                f"{len(w.cold_users)} ({int(w.new.sum())} new movies): no study on this "
                "dataset")
    return study


# ---- the two tasks ----


def cold_values(vectors: RankingVectors, w: Window, ks: tuple[int, ...] = (10, 20)
                ) -> dict[str, np.ndarray]:
    """Each cold user's Recall and NDCG at ``ks`` when only the window's new movies are
    ranked."""
    candidates = np.flatnonzero(w.new)
    users = w.cold_users
    k = min(max(ks), len(candidates))
    rows = torch.as_tensor(w.users[users], device=vectors.users.device)
    cand = torch.as_tensor(candidates, device=vectors.movies.device)
    offset = None if vectors.offset is None else vectors.offset[cand]
    topk, _ = topk_search(vectors.users[rows], vectors.movies[cand], k, movie_offset=offset)
    relevant = w.relevant_new.select(users)
    position = np.full(len(w.new), -1, np.int64)
    position[candidates] = np.arange(len(candidates))
    relevant = Csr(relevant.offsets, position[relevant.indices])
    if k < max(ks):  # fewer new movies than the cut-off: every one of them is shown
        topk = np.pad(topk, ((0, 0), (0, max(ks) - k)), constant_values=-1)
    return per_user_ranking(topk, relevant, ks)


def mixed_reading(vectors: RankingVectors, w: Window, bonus: float, k: int = 20) -> dict:
    """Every movie ranked with ``bonus`` added to the new movies' scores: the mean count of
    new movies in a top ``k``, Recall@k of the relevant new movies (their users) and NDCG@10 of
    the relevant warm ones (theirs)."""
    rows = torch.as_tensor(w.users, device=vectors.users.device)
    new = torch.as_tensor(w.new, dtype=vectors.movies.dtype, device=vectors.movies.device)
    offset = (torch.zeros(len(w.new), device=new.device) if vectors.offset is None
              else vectors.offset) + bonus * new
    topk, _ = topk_search(vectors.users[rows], vectors.movies, k, exclude=w.history,
                          movie_offset=offset)
    warm = np.flatnonzero(w.relevant_warm.lengths() > 0)
    cold = w.cold_users
    shown_new = (topk >= 0) & w.new[np.maximum(topk, 0)]
    return {"bonus": bonus, "new_in_top": float(shown_new.sum(1).mean()),
            f"new recall@{k}": float(per_user_ranking(
                topk[cold], w.relevant_new.select(cold), (k,))[f"recall@{k}"].mean()),
            "warm ndcg@10": float(per_user_ranking(
                topk[warm], w.relevant_warm.select(warm), (10,))["ndcg@10"].mean())}


# ---- the rules ----


def _movie_scores(prep, score: np.ndarray) -> RankingVectors:
    return RankingVectors(torch.zeros(prep.n_users, 1), torch.zeros(prep.n_movies, 1),
                          torch.as_tensor(score, dtype=torch.float32))


def genre_popularity(exp: Experiment) -> RankingVectors:
    """Each movie scored by the mean, over its genres, of the genre's share of the positives
    in the last tenth (by time) of the world's training ratings: what is in fashion."""
    prep = exp.prep
    rows = prep.split.rows(TRAIN)
    order = rows[np.argsort(prep.timestamps[rows], kind="stable")]
    recent = order[len(order) * (10 - RECENT_TENTHS) // 10:]
    liked = recent[prep.ratings[recent] >= RELEVANT_RATING]
    genres = bag_matrix(prep.features.genres, int(prep.features.genres.indices.max()) + 1)
    share = np.asarray(genres[prep.items[liked]].sum(0)).ravel()
    share = share / max(share.sum(), 1.0)
    return _movie_scores(prep, genres @ share)


def content_matrix(exp: Experiment) -> sp.csr_matrix:
    """Each movie's content as one row of unit length: its tag bag and genre bag, and its
    genome weights where it has them, each block weighted alike; with feature bases (the full
    path's ``TAG_RANK``/``GENOME_RANK``), the encoder's projected inputs instead (a dense row
    of the raw bags would not fit at full scale)."""
    if exp.feats.inputs is not None:
        x = exp.feats.inputs.cpu().numpy().astype(np.float32)
        return sp.csr_matrix(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))
    f = exp.prep.features
    blocks = [bag_matrix(f.tags, len(f.tag_vocab))[:, 1:],
              bag_matrix(f.genres, int(f.genres.indices.max()) + 1)]
    if f.genome is not None:
        blocks.append(sp.csr_matrix(genome_weights(f.genome, f.genome_mask)))
    return _unit_rows(sp.hstack([_unit_rows(b) for b in blocks], format="csr"))


def _unit_rows(x: sp.spmatrix) -> sp.csr_matrix:
    """The sparse rows of ``x`` scaled to unit length (all-zero rows stay zero)."""
    return sp.csr_matrix(x.multiply(1.0 / np.maximum(np.sqrt(x.multiply(x).sum(1)), 1e-12)))


def content_knn(exp: Experiment) -> RankingVectors:
    """A user's profile is the sum of the content rows (:func:`content_matrix`) of the movies
    they rated >= 4 in training; a movie's score, the cosine of its content to it."""
    prep = exp.prep
    x = content_matrix(exp).astype(np.float32)
    users, movies, ratings = prep.part(TRAIN)
    liked = ratings >= RELEVANT_RATING
    likes = sp.csr_matrix((np.ones(liked.sum(), np.float32), (users[liked], movies[liked])),
                          shape=(prep.n_users, prep.n_movies))
    profile = _unit_rows(likes @ x)
    return RankingVectors(torch.as_tensor(profile.toarray()), torch.as_tensor(x.toarray()),
                          None)


# ---- the competitors ----


@dataclass
class Reading:
    """A competitor's per-user cold values on test (seed -> metric -> values over the cold
    users) and its val figure (the first seed's model)."""

    test: dict[int, dict[str, np.ndarray]]
    val_ndcg: float


def _model(spec, setting: dict, study: Study, seeds: tuple[int, ...], first: Trial | None = None
           ) -> tuple[RankingVectors, dict[int, RankingVectors]]:
    """``spec``'s ``setting`` tuned in the tuning world and refit in the test world for each
    seed, as the protocol reads a model (:func:`movierec.protocol.read_seed`: a spec that
    ``retune``s is tuned again with each seed, another refit from the first seed's tuning):
    (the first seed's val vectors, each seed's test vectors). ``first``: the first seed's
    tuning, when it is done already."""
    first = trial = first or spec.tune(study.tune, setting, seeds[0], 1)
    tests = {}
    for seed in seeds:
        if seed != seeds[0] and spec.retune:
            trial = spec.tune(study.tune, setting, seed, 1)
        tests[seed] = spec.refit(study.test, trial, seed, 1).rankings[trial.by]
    return first.fitted.rankings[first.by], tests


def _reading(val: RankingVectors, test: dict[int, RankingVectors], study: Study) -> Reading:
    return Reading({s: cold_values(v, study.test_window) for s, v in test.items()},
                   float(cold_values(val, study.val_window)["ndcg@10"].mean()))


def served_at_cut(spec: VariantSpec) -> VariantSpec:
    """``spec`` with its age term (if any) read at the world's cut for every user
    (:data:`movierec.age.NOWS`): the study serves each user at a global time, which for a user
    whose last rating came years before is not their last rating's year."""
    return dataclasses.replace(spec, variant=dataclasses.replace(spec.variant, age_now="cut"))


def run(s: Setup, params: dict, results: dict[str, Result], study: Study | None = None
        ) -> dict:
    """Every competitor on both tasks (seeded ones with ``SEED`` and ``STABILITY_SEEDS``), the
    main model's paired comparisons, and the choices made on val: ``metrics.json``'s
    ``coldstart``; or, when a window is too thin to study (:class:`ThinWindow`, found before
    any training), ``{"skipped": the reason}``."""
    if study is None:
        try:
            study = build(s)
        except ThinWindow as thin:
            return {"skipped": str(thin)}
    seeds = (params["SEED"], *(x for x in params["STABILITY_SEEDS"] if x != params["SEED"]))
    main = results[params["RECOMMEND_WITH"]]
    spec, setting = served_at_cut(main_spec(params)), main.setting
    readings: dict[str, Reading] = {}
    dropout_val = {}

    def seeded(name: str, spec_, setting_: dict, first: Trial | None = None
               ) -> tuple[RankingVectors, RankingVectors]:
        val, tests = _model(spec_, setting_, study, seeds, first)
        readings[name] = _reading(val, tests, study)
        return val, tests[seeds[0]]

    main_vectors = seeded(MAIN, Fixed(spec, setting), setting)
    trials = {}
    for rate in DROPOUTS:  # the rate is chosen on val's new movies (the first seed's model)
        trials[rate] = trial = spec.tune(study.tune, {**setting, "id_dropout": rate},
                                         seeds[0], 1)
        dropout_val[rate] = float(cold_values(trial.fitted.rankings[trial.by],
                                              study.val_window)["ndcg@10"].mean())
    rate = max(dropout_val, key=dropout_val.get)
    seeded(f"main, id dropout {rate:g}", Fixed(spec, {**setting, "id_dropout": rate}),
           {**setting, "id_dropout": rate}, trials[rate])
    ids_only = dataclasses.replace(spec, variant=dataclasses.replace(
        spec.variant, name="ids_only", encoder="id"))
    seeded("main, ids only (no content)", Fixed(ids_only, setting), setting)
    if "lightfm" in results:
        lightfm = results["lightfm"]
        seeded("lightfm (item features)", Fixed(baseline("lightfm"), lightfm.setting),
               lightfm.setting)
    for name, rule in (("newest", lambda e: fit_newest(e.prep, None, None, None)
                        .rankings["rule"]),
                       ("genre popularity", genre_popularity), ("content kNN", content_knn)):
        readings[name] = _reading(rule(study.tune), {seeds[0]: rule(study.test)}, study)
    mixed = frontier(main_vectors, study)
    return summary(study, readings, dropout_val, rate, mixed, seeds[0])


def frontier(vectors: tuple[RankingVectors, RankingVectors], study: Study) -> dict:
    """The main model's mixed task at every bonus of :data:`BONUSES`, on val and on test; the
    bonus chosen on val (the largest whose warm NDCG@10 stays within WARM_COST of no bonus)."""
    val = [mixed_reading(vectors[0], study.val_window, b) for b in BONUSES]
    test = [mixed_reading(vectors[1], study.test_window, b) for b in BONUSES]
    floor = val[0]["warm ndcg@10"] - WARM_COST
    chosen = max(r["bonus"] for r in val if r["warm ndcg@10"] >= floor)
    return {"val": val, "test": test, "chosen": chosen, "warm_cost": WARM_COST}


def summary(study: Study, readings: dict[str, Reading], dropout_val: dict, rate: float,
            mixed: dict, first: int) -> dict:
    """The study's figures: counts, each competitor's test means (over seeds) with standard
    errors over users, per-seed figures, the main model's paired comparisons, the choices."""
    table, seeds, per_user = {}, {}, {}
    for name, r in readings.items():
        per_user[name] = {m: np.mean([v[m] for v in r.test.values()], axis=0)
                          for m in COLD_METRICS}
        table[name] = {**{m: float(per_user[name][m].mean()) for m in COLD_METRICS},
                       **{f"{m}_se": float(per_user[name][m].std(ddof=1)
                                           / np.sqrt(len(per_user[name][m])))
                          for m in COLD_METRICS}, "val_ndcg@10": r.val_ndcg}
        seeds[name] = {str(s): {m: float(v[m].mean()) for m in COLD_METRICS}
                       for s, v in r.test.items()}
    uncertainty = {}
    for metric in ("ndcg@10", "recall@20"):
        key = f"new {metric}"  # "NDCG@10 of new movies" in the verdicts' words
        uncertainty[key] = {}
        for name in readings:
            if name == MAIN:
                continue
            boot = paired_bootstrap(per_user[MAIN][metric], per_user[name][metric], 2000,
                                    first, what=f"{MAIN} vs {name}, new-movie {metric}")
            spread = seed_difference(
                {int(s): v[metric] for s, v in seeds[MAIN].items()},
                {int(s): v[metric] for s, v in seeds[name].items()}, lower_better=False)
            uncertainty[key][name] = {**boot, **spread}
    return {**study.counts(), "cold": table, "seeds": seeds, "uncertainty": uncertainty,
            "choices": {"id_dropout": rate, "bonus": mixed["chosen"],
                        "id_dropouts_tried": [{"id_dropout": k, "val_ndcg@10": v}
                                              for k, v in dropout_val.items()]},
            "mixed": mixed}


def table(cold: dict) -> pd.DataFrame:
    """The cold task's test figures, one row per competitor, best first by NDCG@10."""
    frame = pd.DataFrame(cold["cold"]).T
    return frame.sort_values("ndcg@10", ascending=False)
