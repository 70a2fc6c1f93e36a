import math

import numpy as np
import pandas as pd
import pytest
import torch

from movierec.catalogue import CatalogueError
from movierec.csr import Csr
from movierec.data import load_movielens
from movierec.evaluate import BiasBaseline, GlobalMean, hit_matrix, ranking_metrics, rmse_mae
from movierec.experiment import Experiment
from movierec.features import GENRES
from movierec.prepare import prepare
from movierec.protocol import run
from movierec.recommend import Recommender
from movierec.retrieval import topk_search

from .conftest import spec


def csr(rows: list[list[int]]) -> Csr:
    offsets = np.cumsum([0] + [len(r) for r in rows])
    return Csr(offsets, np.array([i for r in rows for i in r], np.int64))


def test_ranking_metrics_hand_computed():
    topk = np.array([[1, 2, 3], [4, 5, 6]])
    relevant = csr([[2, 9], [7]])
    m = ranking_metrics(topk, relevant, ks=(3,), n_items=10)
    assert m["recall@3"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["hit_rate@3"] == pytest.approx(0.5)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3) / idcg) / 2)
    assert m["map@3"] == pytest.approx(((1 / 2) / 2) / 2)
    assert m["coverage@3"] == pytest.approx(6 / 10)


def test_perfect_ranking_scores_one():
    topk = np.array([[3, 1, 0], [2, 5, 4]])
    m = ranking_metrics(topk, csr([[1, 3], [2, 4, 5]]), ks=(2, 3))
    assert m["ndcg@2"] == m["map@2"] == m["hit_rate@2"] == 1.0
    assert m["recall@2"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["ndcg@3"] == pytest.approx(1.0) and m["recall@3"] == pytest.approx(1.0)


def test_ndcg_discounts_late_hits():
    # hits at ranks 2 and 3 of 3, two relevant items: DCG = 1/log2(3) + 1/log2(4)
    m = ranking_metrics(np.array([[0, 3, 1]]), csr([[1, 3]]), ks=(3,))
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3)))
    assert m["map@3"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_metrics_errors():
    with pytest.raises(ValueError, match="at least one relevant"):
        ranking_metrics(np.array([[1, 2]]), csr([[]]), ks=(2,))
    with pytest.raises(ValueError, match="at least 5 columns"):
        ranking_metrics(np.array([[1, 2]]), csr([[1]]), ks=(5,))


def test_hit_matrix():
    assert hit_matrix(np.array([[0, 1], [1, 0]]), csr([[1], [1]])).tolist() == [
        [False, True], [True, False]]


def test_padding_is_never_a_hit_nor_covered():
    # user 1 has one candidate only (-1 pads its list); user 0's relevant set holds the largest
    # item, whose key is what user 1's -1 would alias to without masking
    topk, relevant = np.array([[0, 1], [2, -1]]), csr([[4], [3]])
    assert hit_matrix(topk, relevant).tolist() == [[False, False], [False, False]]
    m = ranking_metrics(topk, relevant, ks=(2,), n_items=5)
    assert m["hit_rate@2"] == 0.0 and m["recall@2"] == 0.0
    assert m["coverage@2"] == pytest.approx(3 / 5)


def test_baselines():
    users, movies = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    r = np.array([5.0, 3.0, 4.0, 2.0])
    assert GlobalMean().fit(users, movies, r).predict(users, movies).tolist() == [3.5] * 4
    b = BiasBaseline(2, 2, reg_user=0, reg_movie=0, iterations=20).fit(users, movies, r)
    assert rmse_mae(b.predict(users, movies), r)["rmse"] < 1e-6
    assert rmse_mae(np.array([1.0, 3.0]), np.array([2.0, 3.0])) == pytest.approx(
        {"rmse": math.sqrt(0.5), "mae": 0.5})


def test_topk_masks_seen_and_matches_bruteforce():
    g = torch.Generator().manual_seed(0)
    users, movies = torch.randn(7, 4, generator=g), torch.randn(30, 4, generator=g)
    exclude = csr([[0, 1, 2], [], [5], list(range(25)), [3], [4], [29]])
    idx, _scores = topk_search(users, movies, 5, exclude=exclude, block=3)
    full = (users @ movies.T).numpy()
    for u in range(7):
        seen = set(exclude.row(u).tolist())
        assert not seen & set(idx[u].tolist())
        expected = [i for i in np.argsort(-full[u], kind="stable") if i not in seen][:5]
        assert idx[u].tolist() == expected
    with pytest.raises(ValueError, match="positive"):
        topk_search(users, movies, 0)
    with pytest.raises(ValueError, match="exceeds the catalogue"):
        topk_search(users, movies, 31)


@pytest.fixture(scope="module")
def trained(tiny_dir):
    prep = prepare(load_movielens(tiny_dir))
    labels = prep.split.labels.copy()
    prep.split.labels[:] = 0
    with pytest.raises(ValueError, match="no movie"):
        prep.cold_start_movie()
    prep.split.labels[:] = labels
    # hold movie 7 out of training: its train and val ratings move to test
    held = (prep.items == 7) & (prep.split.labels < 2)
    prep.split.labels[held] = 2
    exp = Experiment(prep, torch.device("cpu"))
    res = run(exp, spec("hybrid", dim=16, epochs=3, batch_size=512), seed=1)
    rec = Recommender(res.model, exp.feats, prep.movies, prep.user_ids, prep.history(),
                      tag_vocab=prep.features.tag_vocab, genome_tags=prep.features.genome_tags,
                      genres=GENRES)
    return prep, rec


def test_recommend_excludes_history_and_answers_errors(trained):
    prep, rec = trained
    user_id = int(prep.user_ids[5])
    top = rec.recommend(user_id, k=10)
    assert list(top.columns) == ["movieId", "title", "genres", "score"] and len(top) == 10
    seen = set(prep.movies.movieId.iloc[rec.history.row(5)])
    assert not seen & set(top.movieId)
    assert top.score.is_monotonic_decreasing
    # both lists follow the model's own scores; excluding history only removes seen movies
    v = rec.vectors
    scores = (v.users[5] @ v.movies.T + (0 if v.offset is None else v.offset)).numpy()
    order = prep.movies.movieId.to_numpy()[np.argsort(-scores, kind="stable")]
    with_seen = rec.recommend(user_id, k=10, exclude_seen=False)
    assert with_seen.movieId.tolist() == order[:10].tolist()
    assert top.movieId.tolist() == [m for m in order if m not in seen][:10]
    np.testing.assert_allclose(with_seen.score, np.sort(scores)[::-1][:10], rtol=1e-5)
    with pytest.raises(CatalogueError, match="unknown userId 999999"):
        rec.recommend(999999)
    with pytest.raises(ValueError, match="positive"):
        rec.recommend(user_id, k=-1)
    with pytest.raises(ValueError, match="exceeds"):
        rec.recommend(user_id, k=10**6)


def test_recommend_all_matches_single(trained):
    prep, rec = trained
    idx, _ = rec.recommend_all(k=5, block=7)
    for row in (0, 50, prep.n_users - 1):
        single = rec.recommend(int(prep.user_ids[row]), k=5)
        assert prep.movies.movieId.iloc[idx[row]].tolist() == single.movieId.tolist()


def test_similar_movies_excludes_itself_and_unknown_movie(trained):
    prep, rec = trained
    mid = int(prep.movies.movieId.iloc[0])
    sim = rec.similar_movies(mid, k=5)
    assert mid not in set(sim.movieId) and len(sim) == 5
    with pytest.raises(CatalogueError, match="unknown movieId -1"):
        rec.similar_movies(-1)


def test_cold_start_movie_encoded_by_content(trained):
    prep, rec = trained
    mid = prep.cold_start_movie()
    row = rec.movie_row(mid)
    assert row not in set(prep.part(0, 1)[1].tolist())
    # never trained: its id vector stayed zero, so its embedding is its content embedding
    torch.testing.assert_close(rec.content_vector(mid),
                               rec.model.all_movie_vectors(rec.feats)[row])
    assert rec.model.movie.table.weight[row].abs().sum() == 0
    aud = rec.audience(mid, k=5)
    assert list(aud.columns) == ["userId", "score"] and len(aud) == 5


def test_explanations_add_up_to_the_score_they_explain(trained):
    """Every feature's contribution, summed, is the content part of cos(user, movie): the
    movie's content vector less the projection's bias, on the user's unit vector, over the
    movie vector's norm; the top rows are the largest in size."""
    prep, rec = trained
    user_id = int(prep.user_ids[0])
    movie_id = int(rec.recommend(user_id, k=1).movieId[0])
    every = rec.explain(user_id, movie_id, top=10**6, genome_top=10**6)
    row = torch.tensor([rec.movie_row(movie_id)])
    with torch.no_grad():
        u = torch.nn.functional.normalize(rec.user_vectors[rec.user_row(user_id)], dim=0)
        content = rec.model.content(row, rec.feats)[0] - rec.model.content.proj.bias
        norm = rec.model.encode_movies(row, rec.feats)[0].norm()
    assert every.contribution.sum() == pytest.approx(float(content @ u / norm), abs=1e-5)
    assert set(every.kind) <= {"tag", "genre", "genome"} and len(every) >= 3
    top = rec.explain(user_id, movie_id, top=2, genome_top=10**6)
    pd.testing.assert_frame_equal(top, every.head(2))
    assert top.contribution.abs().is_monotonic_decreasing
    assert top.contribution.abs().min() >= every.contribution.abs()[2:].max()


def test_neighbours_are_each_movies_nearest_by_cosine(trained):
    """Each row holds the movie's k nearest other movies by the cosine of their embeddings,
    nearest first: checked against every pair's cosine, computed here from the raw vectors."""
    prep, rec = trained
    ids = prep.movies.movieId.iloc[rec.most_rated(3)].tolist()
    table = rec.neighbours(ids, k=4)
    assert table.index.tolist() == [rec.movies.title[rec.movie_row(m)] for m in ids]
    vecs = rec.movie_vectors.double()
    cos = (vecs @ vecs.T) / (vecs.norm(dim=1)[:, None] * vecs.norm(dim=1)[None, :])
    for movie_id, (_, row) in zip(ids, table.iterrows(), strict=True):
        i = rec.movie_row(movie_id)
        cos[i, i] = -np.inf  # a movie is not its own neighbour
        nearest = torch.argsort(cos[i], descending=True, stable=True)[:4]
        assert row.tolist() == rec.movies.title.iloc[nearest.numpy()].tolist()


def test_recency_weighted_user_bias_follows_the_latest_ratings():
    # one movie, one user: the user's bias is the weighted mean of their residuals
    users, movies = np.zeros(3, np.int64), np.array([0, 1, 2])
    r = np.array([1.0, 2.0, 5.0])
    recency = np.array([2, 1, 0])  # the 5 is the latest
    b = BiasBaseline(1, 3, reg_user=0.0, reg_movie=1e9, half_life=1.0, iterations=1)
    b.fit(users, movies, r, recency)
    w = np.array([0.25, 0.5, 1.0])
    assert b.user_bias[0] == pytest.approx(((r - r.mean()) * w).sum() / w.sum())
    plain = BiasBaseline(1, 3, reg_user=0.0, reg_movie=1e9, iterations=1).fit(users, movies, r)
    assert plain.user_bias[0] == pytest.approx(0.0, abs=1e-12)  # unweighted: the mean itself
    assert b.user_bias[0] > 0.5  # the latest, high rating dominates
    # no half-life: recency is ignored and nothing changes
    same = BiasBaseline(1, 3, reg_user=0.0, reg_movie=1e9, iterations=1)
    assert same.fit(users, movies, r, recency).user_bias.tolist() == plain.user_bias.tolist()
    with pytest.raises(ValueError, match="recency"):
        BiasBaseline(1, 3, half_life=10.0).fit(users, movies, r)
