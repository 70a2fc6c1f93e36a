from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from movierec.data import DataError, load_movielens
from movierec.experiment import Experiment
from movierec.features import (
    GENRES,
    NO_TAG,
    bags_from_pairs,
    build_features,
    genome_matrix,
    genre_bags,
    stem_tags,
    tag_bags,
)
from movierec.prepare import prepare
from movierec.split import TEST, TRAIN, VAL, chronological_split, split_ratings, split_sizes


def test_stemming_lowercases_and_stems_whole_tag():
    out = stem_tags(pd.Series(["Running", "running", "Funny Movies", "zombies"]))
    assert out.tolist() == ["run", "run", "funny movi", "zombi"]


def test_tag_bags_count_duplicates_and_reserve_zero():
    movies = pd.DataFrame({"movieId": [10, 20, 30]})
    tags = pd.DataFrame({"movieId": [10, 10, 10, 20], "tag": ["Fun", "fun", "dark", "dark"]})
    bags, vocab = tag_bags(tags, movies)
    assert vocab[0] == NO_TAG and set(vocab[1:]) == {"fun", "dark"}
    idx, w = bags.row(0), bags.row_weights(0)
    assert dict(zip([vocab[i] for i in idx], w.tolist(), strict=True)) == pytest.approx(
        {"fun": 2 / 3, "dark": 1 / 3})
    assert bags.row(2).tolist() == [0] and bags.row_weights(2).tolist() == [1.0]  # untagged


def test_bags_from_pairs_rows_sum_to_one():
    bags = bags_from_pairs(np.array([0, 0, 2, 2, 2]), np.array([3, 3, 1, 2, 1]), 4)
    sums = np.add.reduceat(bags.weights, bags.offsets[:-1])
    assert np.allclose(sums, 1.0) and bags.n_rows == 4


def test_genres_map_to_fixed_vocabulary_and_unknown_genre_raises():
    movies = pd.DataFrame({"genres": ["Comedy|Drama", "(no genres listed)"]})
    bags = genre_bags(movies)
    assert [GENRES[i] for i in bags.row(0)] == ["Comedy", "Drama"]
    assert bags.row(1).tolist() == [0]
    with pytest.raises(DataError, match=r"unknown genre\(s\) \['Cartoon'\].*line 3"):
        genre_bags(pd.DataFrame({"genres": ["Comedy", "Cartoon|Drama"]}))


def test_genome_matrix_alignment_and_first_tag_kept():
    movies = pd.DataFrame({"movieId": [5, 7, 9]})
    gtags = pd.DataFrame({"tagId": [2, 1], "tag": ["b", "a"]})
    scores = pd.DataFrame({"movieId": [9, 9, 5, 5], "tagId": [1, 2, 2, 1],
                           "relevance": [0.1, 0.2, 0.3, 0.4]})
    matrix, mask = genome_matrix(scores, gtags, movies)
    np.testing.assert_allclose(matrix, [[0.4, 0.3], [0, 0], [0.1, 0.2]], rtol=1e-6)
    assert mask.tolist() == [True, False, True]


def test_leak_free_tags_keep_exactly_the_tags_written_by_the_training_cutoff(tiny_dir):
    """Every kept tag was written at or before its tagger's last training rating, and every such
    tag is kept (each movie's bag recomputed here from the split, tag by tag)."""
    ds = load_movielens(tiny_dir)
    free = prepare(ds, leak_free_tags=True)
    train = free.split.labels == TRAIN
    last = (pd.DataFrame({"u": free.user_ids[free.users[train]], "t": free.timestamps[train]})
            .groupby("u")["t"].max())
    tags = ds.tags.assign(stem=stem_tags(ds.tags["tag"]).to_numpy())
    limit = tags["userId"].map(last)  # NaN: a user without training ratings
    kept = tags[tags["timestamp"] <= limit]
    assert free.dropped["tags_after_cutoff"] == len(tags) - len(kept) > 0
    assert len(kept) > 0
    row_of = {m: i for i, m in enumerate(free.movies["movieId"])}
    expected: dict[int, Counter] = {}
    for movie, stem in zip(kept["movieId"], kept["stem"], strict=True):
        expected.setdefault(row_of[movie], Counter())[stem] += 1
    bags, vocab = free.features.tags, free.features.tag_vocab
    for row in range(bags.n_rows):
        idx, w = bags.row(row), bags.row_weights(row)
        got = {vocab[i]: float(x) for i, x in zip(idx, w, strict=True) if i > 0}
        want = expected.get(row, Counter())
        total = sum(want.values())
        assert got.keys() == want.keys(), row
        for stem, n in want.items():
            assert got[stem] == pytest.approx(n / total, rel=1e-6)


def test_features_have_genome_block(tiny_dir):
    f = build_features(load_movielens(tiny_dir))
    assert f.blocks() == ["genres", "tags", "genome"]
    assert f.genome.shape == (300, 64) and f.genome_mask.sum() == 150


@pytest.mark.parametrize(("n", "sizes"), [(1, (0, 0, 1)), (2, (1, 0, 1)), (10, (7, 2, 1)),
                                          (90, (63, 18, 9)), (170, (119, 34, 17))])
def test_split_sizes_integer_arithmetic(n, sizes):
    assert tuple(int(x) for x in split_sizes(n)) == sizes


def test_split_is_chronological_and_breaks_ties_by_movie():
    users = np.ones(10, np.int64)
    ts = np.array([5, 1, 1, 9, 3, 3, 3, 2, 8, 7])
    movies = np.array([10, 30, 20, 40, 90, 50, 60, 70, 80, 15])
    labels = chronological_split(users, ts, movies)
    order = np.lexsort((movies, ts))  # by time, ratings in the same second by movie
    assert labels[order].tolist() == [TRAIN] * 7 + [VAL] * 2 + [TEST]
    # a tie at the train/val cut decides which movie trains: the smaller id
    ts2 = np.array([1, 2, 3, 4, 5, 6, 7, 7, 9, 10])
    movies2 = np.array([1, 2, 3, 4, 5, 6, 99, 11, 12, 13])
    assert chronological_split(users, ts2, movies2)[[6, 7]].tolist() == [VAL, TRAIN]
    flipped = np.r_[np.arange(8)[::-1], 8, 9]  # the same ratings, another file order
    assert chronological_split(users, ts2[flipped], movies2[flipped]).tolist() == (
        chronological_split(users, ts2, movies2)[flipped].tolist())


def reference_split(ratings: pd.DataFrame) -> np.ndarray:
    """An independent per-user loop: sort each user's rows by (timestamp, movieId)."""
    labels = np.empty(len(ratings), np.int8)
    for _, rows in ratings.groupby("userId").indices.items():
        rows = sorted(rows, key=lambda i: (ratings["timestamp"].iat[i],
                                           ratings["movieId"].iat[i]))
        n = len(rows)
        n_train = (7 * n) // 10
        n_val = (2 * (n - n_train)) // 3
        for rank, i in enumerate(rows):
            labels[i] = TRAIN if rank < n_train else VAL if rank < n_train + n_val else TEST
    return labels


@pytest.mark.realdata
def test_real_small_split_matches_reference(small_dir):
    ds = load_movielens(small_dir)
    split = split_ratings(ds.ratings)
    assert split.sizes() == {"train": 70316, "val": 20162, "test": 10358}
    assert np.array_equal(split.labels, reference_split(ds.ratings))


def test_generated_split_matches_reference(tiny_dir):
    ds = load_movielens(tiny_dir)
    assert np.array_equal(split_ratings(ds.ratings).labels, reference_split(ds.ratings))


def test_release_year_from_the_title_end():
    from movierec.features import release_years

    titles = pd.Series(["Heat (1995)", "Babylon 5", "Crossing Jordan (2001–2007)",
                        "1984 (1984) ", "Big (1988)x", "Cosmos (1980– )"])
    got = release_years(titles)
    assert got[[0, 2, 3, 5]].tolist() == [1995, 2001, 1984, 1980]
    assert np.isnan(got[[1, 4]]).all()  # no year at the end: none guessed


def test_recency_counts_each_users_later_ratings_in_the_parts(tiny_dir):
    import dataclasses

    prep = prepare(load_movielens(tiny_dir))
    prep = dataclasses.replace(prep, timestamps=prep.timestamps // 10**7)  # ties in time
    assert len(np.unique(np.c_[prep.users, prep.timestamps], axis=0)) < len(prep.users)
    for parts in ((TRAIN,), (TRAIN, VAL)):
        mask = np.isin(prep.split.labels, parts)
        users, times = prep.users[mask], prep.timestamps[mask]
        rows = np.arange(len(users))
        got = prep.recency(*parts)
        # by definition: the same user's ratings that are later in time, or as late and later
        # in row order
        want = [int(((users == u) & ((times > t) | ((times == t) & (rows > i)))).sum())
                for i, (u, t) in enumerate(zip(users, times, strict=True))]
        assert got.tolist() == want
        assert (np.bincount(users[got == 0], minlength=prep.n_users)
                == (np.bincount(users, minlength=prep.n_users) > 0)).all()  # one latest each


def rewrite_rows(src, dst, order_seed: int | None, coarse: int = 86_400 * 30) -> None:
    """``src``'s dataset copied to ``dst`` with its timestamps rounded down to ``coarse``
    seconds (so that a user rates many movies in the same second) and, given an
    ``order_seed``, every file's rows listed in a shuffled order."""
    dst.mkdir(parents=True)
    rng = np.random.default_rng(order_seed)
    for f in src.iterdir():
        frame = pd.read_csv(f)
        if "timestamp" in frame:
            frame["timestamp"] = frame["timestamp"] // coarse * coarse
        if order_seed is not None:
            frame = frame.iloc[rng.permutation(len(frame))]
        frame.to_csv(dst / f.name, index=False)


def test_no_result_depends_on_the_order_a_file_lists_its_rows(tiny_dir, tmp_path):
    """The same ratings, tags, movies and genome scores listed in another order, with many
    ratings in the same second: the same indexes, split, features and trained model."""
    from movierec.protocol import run

    from .conftest import spec

    rewrite_rows(tiny_dir, tmp_path / "a" / "tiny", None)
    rewrite_rows(tiny_dir, tmp_path / "b" / "tiny", order_seed=1)
    a, b = (prepare(load_movielens(tmp_path / x / "tiny"), leak_free_tags=True) for x in "ab")
    ties = pd.DataFrame({"u": a.users, "t": a.timestamps}).duplicated().sum()
    assert ties > len(a.users) / 2  # most ratings share their second with another of the user
    for name in ("users", "items", "ratings", "timestamps", "user_ids"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.split.labels, b.split.labels)
    assert a.features.tag_vocab == b.features.tag_vocab
    for bags in ("tags", "genres"):
        x, y = getattr(a.features, bags), getattr(b.features, bags)
        assert all(np.array_equal(getattr(x, f), getattr(y, f))
                   for f in ("offsets", "indices", "weights")), bags
    assert np.array_equal(a.features.genome, b.features.genome)
    assert a.movies.equals(b.movies)
    s = spec("hybrid_rank", epochs=2)
    ra, rb = (run(Experiment(p, torch.device("cpu")), s, seed=3) for p in (a, b))
    assert ra.headline() == rb.headline() and ra.sweep[0]["val_ndcg@10"] == rb.sweep[0][
        "val_ndcg@10"]
    assert all(torch.equal(x, y) for x, y in zip(ra.model.state_dict().values(),
                                                 rb.model.state_dict().values(), strict=True))
