"""Property-based tests (hypothesis) of the core invariants."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movierec.csr import Csr
from movierec.data import DataError, load_movielens
from movierec.evaluate import ranking_metrics
from movierec.retrieval import topk_search
from movierec.split import TEST, TRAIN, VAL, chronological_split, split_sizes

from .conftest import write_csv

ratings_st = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5)), min_size=1, max_size=80)


@given(ratings_st, st.randoms(use_true_random=False))
def test_split_partitions_each_user_chronologically_whatever_the_row_order(rows, rnd):
    users = np.array([u for u, _ in rows])
    ts = np.array([t for _, t in rows])
    movies = np.array([sum(u == v for v, _ in rows[:i]) for i, (u, _) in enumerate(rows)])
    labels = chronological_split(users, ts, movies)  # a user rates each movie once
    assert set(np.unique(labels)) <= {TRAIN, VAL, TEST}
    for u in np.unique(users):
        idx = np.flatnonzero(users == u)
        lab = labels[idx]
        n_train, n_val, n_test = (int(x) for x in split_sizes(len(idx)))
        assert [(lab == p).sum() for p in (TRAIN, VAL, TEST)] == [n_train, n_val, n_test]
        order = idx[np.lexsort((movies[idx], ts[idx]))]  # by time, ties by movie
        assert labels[order].tolist() == sorted(labels[order].tolist())
    shuffled = list(range(len(rows)))
    rnd.shuffle(shuffled)  # the same ratings listed in another order: the same split
    again = chronological_split(users[shuffled], ts[shuffled], movies[shuffled])
    assert again.tolist() == labels[shuffled].tolist()


@given(st.integers(1, 10_000))
def test_split_sizes_are_the_seeds_shares_in_exact_arithmetic(n):
    """train = the largest count <= 70% of n, val = the largest <= 2/3 of the rest, test the
    rest: checked against the definition (never ``int(n * 0.7)``, one short for n = 90)."""
    a, b, c = (int(x) for x in split_sizes(n))
    assert 10 * a <= 7 * n < 10 * (a + 1)
    assert 3 * b <= 2 * (n - a) < 3 * (b + 1)
    assert c == n - a - b >= 0 and min(a, b) >= 0
    assert split_sizes(n + 1)[0] >= a  # more ratings never mean fewer in train


def brute_force(topk, relevant, k):
    rec, nd, hit, ap = [], [], [], []
    for row, rel in zip(topk, relevant, strict=True):
        rel = set(rel)
        hits = [1.0 if i in rel else 0.0 for i in row[:k]]
        rec.append(sum(hits) / len(rel))
        dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
        nd.append(dcg / idcg)
        hit.append(float(any(hits)))
        precisions = [sum(hits[: j + 1]) / (j + 1) for j in range(k) if hits[j]]
        ap.append(sum(precisions) / min(len(rel), k))
    return {f"recall@{k}": np.mean(rec), f"ndcg@{k}": np.mean(nd), f"hit_rate@{k}": np.mean(hit),
            f"map@{k}": np.mean(ap)}


@st.composite
def rankings(draw):
    n_items = draw(st.integers(5, 30))
    k = draw(st.integers(1, 5))
    n_users = draw(st.integers(1, 6))
    topk = [draw(st.permutations(range(n_items)))[:k] for _ in range(n_users)]
    relevant = [draw(st.lists(st.integers(0, n_items - 1), min_size=1, max_size=8, unique=True))
                for _ in range(n_users)]
    return np.array(topk), relevant, k, n_items


@given(rankings())
def test_ranking_metrics_match_brute_force_and_stay_in_unit_interval(case):
    topk, relevant, k, n_items = case
    rel = Csr(np.cumsum([0] + [len(r) for r in relevant]),
              np.array([i for r in relevant for i in r]))
    got = ranking_metrics(topk, rel, ks=(k,), n_items=n_items)
    want = brute_force(topk, relevant, k)
    for name, value in want.items():
        assert math.isclose(got[name], value, rel_tol=1e-9, abs_tol=1e-12)
    assert all(0.0 <= v <= 1.0 for n, v in got.items() if not n.endswith("_se"))
    # a standard error needs two users; with one it is NaN, never a made-up number
    assert all((v >= 0.0) if len(relevant) > 1 else math.isnan(v)
               for n, v in got.items() if n.endswith("_se"))
    perfect = np.array([(list(r) + [i for i in range(n_items) if i not in r])[:k]
                        for r in relevant])
    best = ranking_metrics(perfect, rel, ks=(k,))
    assert best[f"ndcg@{k}"] == 1.0 and best[f"map@{k}"] == 1.0


@given(st.integers(1, 8), st.integers(2, 25), st.data())
@settings(max_examples=50)
def test_masking_never_lets_a_seen_movie_in(n_users, n_items, data):
    k = data.draw(st.integers(1, n_items))
    seen = [data.draw(st.lists(st.integers(0, n_items - 1), max_size=n_items, unique=True))
            for _ in range(n_users)]
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 1000)))
    users, movies = torch.randn(n_users, 3, generator=g), torch.randn(n_items, 3, generator=g)
    exclude = Csr(np.cumsum([0] + [len(s) for s in seen]),
                  np.array([i for s in seen for i in s], np.int64))
    idx, _ = topk_search(users, movies, k, exclude=exclude, block=data.draw(
        st.integers(1, 4)))
    for u in range(n_users):
        got = [i for i in idx[u].tolist() if i >= 0]
        assert not set(got) & set(seen[u])
        assert len(got) == min(k, n_items - len(seen[u]))


MOVIES = "movieId,title,genres\n1,A,Comedy\n2,B,Drama\n"
TAGS = "userId,movieId,tag,timestamp\n1,1,x,5\n"
HEADERS = ["userId,movieId,rating,timestamp", "\ufeffuserId,movieId,rating,timestamp",
           "timestamp,rating,movieId,userId"]  # a BOM and another column order are fine


@st.composite
def valid_ratings(draw, min_size=1):
    """Distinct (user, movie) pairs with half-star ratings and integer timestamps."""
    pairs = draw(st.lists(st.tuples(st.integers(0, 2**31 - 1), st.sampled_from([1, 2])),
                          min_size=min_size, max_size=8, unique=True))
    return [(u, m, draw(st.integers(1, 10)) / 2, draw(st.integers(-2**40, 2**40)))
            for u, m in pairs]


def write_ratings(folder, header: str, rows: list[tuple], newline: str = "\n") -> None:
    write_csv(folder, "movies.csv", MOVIES)
    write_csv(folder, "tags.csv", TAGS)
    order = header.lstrip("\ufeff").split(",")
    cols = {"userId": 0, "movieId": 1, "rating": 2, "timestamp": 3}
    lines = [",".join(str(r[cols[c]]) for c in order) for r in rows]
    text = newline.join([header, *lines]) + newline
    (folder / "ratings.csv").write_bytes(text.encode("utf-8"))


@given(header=st.sampled_from(HEADERS), rows=valid_ratings(),
       newline=st.sampled_from(["\n", "\r\n"]))
@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_loader_keeps_every_valid_row_exactly(tmp_path, header, rows, newline):
    folder = tmp_path / "valid"
    write_ratings(folder, header, rows, newline)
    got = load_movielens(folder, checksums=False).ratings
    want = [(u, m, r, t) for u, m, r, t in rows]
    assert [tuple(x) for x in got[["userId", "movieId", "rating", "timestamp"]]
            .itertuples(index=False)] == want


BAD_VALUES = {  # column -> values a valid file never holds there
    "userId": ["", "abc", "-1", "1.5", str(2**40), "nan"],
    "movieId": ["", "3", "x", "-2", "1e3"],
    "rating": ["", "3.3", "0", "5.5", "abc", "nan", "inf", "-1"],
    "timestamp": ["", "abc", "1.5", "nan"],
}


@given(rows=valid_ratings(min_size=1), data=st.data())
@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_loader_names_the_one_bad_row(tmp_path, rows, data):
    """One bad cell planted in an otherwise valid file: a DataError naming the file, the column
    and that row's line (header = line 1); never a silent drop."""
    at = data.draw(st.integers(0, len(rows)))
    column = data.draw(st.sampled_from(sorted(BAD_VALUES)))
    bad = data.draw(st.sampled_from(BAD_VALUES[column]))
    u, m, r, t = (2**31 - 1, 1, 3.0, 0)  # a pair no valid_ratings row can repeat (movie 1 ...)
    row = {"userId": u, "movieId": m, "rating": r, "timestamp": t, column: bad}
    rows = [x for x in rows if (x[0], x[1]) != (u, m)]
    at = min(at, len(rows))
    rows.insert(at, (row["userId"], row["movieId"], row["rating"], row["timestamp"]))
    folder = tmp_path / "bad"
    write_ratings(folder, HEADERS[0], rows)
    with pytest.raises(DataError) as err:
        load_movielens(folder, checksums=False)
    assert err.value.file.endswith("ratings.csv")
    assert err.value.column == column
    assert err.value.lines == [at + 2]


@given(st.binary(max_size=64))
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_loader_on_random_bytes(tmp_path, blob):
    folder = tmp_path / "bytes"
    write_csv(folder, "movies.csv", MOVIES)
    write_csv(folder, "tags.csv", TAGS)
    (folder / "ratings.csv").write_bytes(blob)
    with pytest.raises(DataError, match=r"ratings\.csv"):  # no header, so never a dataset
        load_movielens(folder, checksums=False)


def test_header_only_ratings_file_is_an_error(tmp_path):
    write_ratings(tmp_path, HEADERS[0], [])
    with pytest.raises(DataError, match=r"ratings.csv: no rows after the header"):
        load_movielens(tmp_path, checksums=False)
