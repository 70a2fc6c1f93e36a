"""A MovieLens-format dataset generator with a planted low-rank structure.

Hidden user and movie factors drive everything: which movies a user rates (exposure is
popularity times affinity), the ratings (biases + affinity + noise, in half stars), the tags users
apply (tags carry factors too) and the genome relevance scores. A model that learns the factors
does measurably better than the baselines, so tests can check that it learned. Popularity, user
activity and tag frequency are heavy-tailed as in the real data. Deterministic by seed.

    python -m movierec.synth --scale full --out data/synthetic-full
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from movierec.evaluate import RATING_SCALE
from movierec.features import GENRES

WORDS = (
    "funny", "dark", "comedy", "running", "atmospheric", "twist", "ending", "classic", "violent",
    "romantic", "thought-provoking", "visually", "stunning", "based", "book", "true", "story",
    "quirky", "slow", "sci-fi", "space", "time", "travel", "zombies", "surreal", "cult", "film",
    "great", "soundtrack", "acting", "animated", "family", "heist", "music", "politics", "war",
    "dystopia", "crime", "boring", "predictable", "inspiring", "friendship", "revenge", "magic",
)


@dataclass(frozen=True)
class Scale:
    users: int
    movies: int
    ratings: int
    tags: int
    genome_movies: int
    genome_tags: int = 1128
    tag_vocab: int = 20_000
    rank: int = 8


SCALES = {
    # today's ml-latest: 33,832,162 ratings, 2,328,315 tags, 86,537 movies, 330,975 users
    "full": Scale(330_975, 86_537, 33_832_162, 2_328_315, 16_000),
    "medium": Scale(33_000, 20_000, 3_400_000, 230_000, 4_000),
    "small": Scale(610, 9_742, 100_836, 3_683, 2_000, tag_vocab=1_500),
    # the shape of ml-100k (denser users, fewer movies; write it with --layout ml-100k: no tags)
    "100k": Scale(943, 1_682, 100_000, 2_000, 300, genome_tags=64, tag_vocab=500),
    # the shape of ml-1m: 6,040 users, 3,883 movies, 1,000,209 ratings (--layout ml-1m: no tags)
    "1m": Scale(6_040, 3_883, 1_000_209, 20_000, 600, genome_tags=64, tag_vocab=2_000),
    "tiny": Scale(120, 300, 6_000, 600, 150, genome_tags=64, tag_vocab=200, rank=4),
}


FIRST, LAST = 946_684_800, 1_672_531_200  # users start rating in 2000-01-01 .. 2023-01-01
YEAR = 365 * 86_400
MAX_SPAN = 5 * YEAR  # the longest span over which one user rates


def _heavy_tail(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Log-normal weights over n items, summing to 1 (the most popular of ml-latest's 86k
    movies has about 0.4% of the ratings: sigma=1.8 gives about that)."""
    w = rng.lognormal(0.0, sigma, n)
    return w / w.sum()


def _draw(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    """``size`` draws from ``p``, in ascending order (multinomial counts, repeated)."""
    return np.repeat(np.arange(len(p)), rng.multinomial(size, p))


def _unique(x: np.ndarray) -> np.ndarray:
    """Sorted unique values (sort + compare: much faster than np.unique at 10^7 rows)."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]]


def _sample(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    return np.minimum(np.searchsorted(np.cumsum(p), rng.random(size)), len(p) - 1)


def _affinity(u: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray,
              chunk: int = 4_000_000) -> np.ndarray:
    """Row-wise dot products u[a] . v[b], in chunks to bound memory."""
    out = np.empty(len(a), np.float32)
    for s in range(0, len(a), chunk):
        out[s:s + chunk] = np.einsum("ij,ij->i", u[a[s:s + chunk]], v[b[s:s + chunk]])
    return out


def _write(path: Path, columns: dict[str, np.ndarray | list]) -> None:
    pacsv.write_csv(pa.table(columns), path,
                    pacsv.WriteOptions(quoting_style="needed", include_header=True))


def generate(out: str | os.PathLike, scale: str | Scale = "tiny", seed: int = 0) -> Path:
    """Write movies, ratings, tags, genome-scores and genome-tags CSVs into ``out``.

    The folder is written to a temporary sibling and renamed into place when complete.
    """
    sc = SCALES[scale] if isinstance(scale, str) else scale
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    r = sc.rank
    user_f = rng.normal(0, 1, (sc.users, r)).astype(np.float32) / np.sqrt(r)
    movie_f = rng.normal(0, 1, (sc.movies, r)).astype(np.float32) / np.sqrt(r) * 1.5
    movie_ids = np.sort(rng.choice(np.arange(1, sc.movies * 3 + 1), sc.movies, replace=False))
    user_ids = np.arange(1, sc.users + 1)
    popularity = _heavy_tail(rng, sc.movies, 1.8)
    activity = rng.lognormal(0, 1.2, sc.users)
    activity /= activity.sum()

    # time: each user rates within an activity span of up to five years; a movie of a year
    # after the data's start arrives that year (new movies arrive over time), and only users
    # still active then can rate it
    start = rng.integers(FIRST, LAST, sc.users)
    end = start + rng.integers(3_600, MAX_SPAN, sc.users)
    years = rng.integers(1920, 2024, sc.movies)
    arrival = np.where(years >= 2000, FIRST + (years - 2000) * YEAR
                       + rng.integers(0, YEAR, sc.movies), FIRST)
    # a movie's popularity is among the users who can see it: its draws are weighted up by the
    # inverse of the share of the users' activity still there when it arrives
    by_end = np.argsort(end, kind="stable")
    gone = np.r_[0.0, np.cumsum(activity[by_end])][np.searchsorted(end[by_end], arrival, "right")]
    popularity = popularity / np.maximum(1.0 - gone, 0.01)
    popularity /= popularity.sum()

    # ratings: (user, movie) candidates by activity x popularity, kept with probability
    # increasing in affinity when the movie has arrived before the user leaves, de-duplicated,
    # trimmed to the target count
    keys = np.empty(0, np.int64)
    while len(keys) < sc.ratings:
        n = int((sc.ratings - len(keys)) * 1.8) + 1000
        cu, cm = _draw(rng, activity, n), rng.permutation(_draw(rng, popularity, n))
        keep = ((rng.random(n) < 1 / (1 + np.exp(-3 * _affinity(user_f, movie_f, cu, cm))))
                & (arrival[cm] < end[cu]))
        keys = _unique(np.concatenate([keys, cu[keep].astype(np.int64) * sc.movies + cm[keep]]))
    keys = rng.permutation(keys)[:sc.ratings]
    u, m = keys // sc.movies, keys % sc.movies
    user_bias = rng.normal(0, 0.35, sc.users)
    movie_bias = rng.normal(0, 0.3, sc.movies)
    raw = (3.5 + user_bias[u] + movie_bias[m] + 1.6 * _affinity(user_f, movie_f, u, m)
           + rng.normal(0, 0.6, len(u)))
    rating = np.clip(np.round(raw * 2) / 2, *RATING_SCALE)
    # each rating at a uniform time of its user's span from the movie's arrival (a few weeks
    # after it at the earliest, the span's end at the latest) on
    first = np.minimum(np.maximum(start[u], arrival[m] + rng.integers(0, 6 * 7 * 86_400, len(u))),
                       end[u])
    ts = first + (rng.random(len(u)) * (end[u] - first)).astype(np.int64)

    # genres: 1-3 per movie, favouring those whose hidden direction matches the movie
    genre_f = rng.normal(0, 1, (len(GENRES) - 1, r)).astype(np.float32)
    g_score = movie_f @ genre_f.T + rng.gumbel(0, 0.5, (sc.movies, len(GENRES) - 1))
    n_genres = rng.integers(1, 4, sc.movies)
    ranked = np.argsort(-g_score, axis=1)
    names = np.array(GENRES[1:], dtype=object)
    genres = ["|".join(names[ranked[i, :n_genres[i]]]) for i in range(sc.movies)]
    for i in rng.choice(sc.movies, max(1, sc.movies // 200), replace=False):
        genres[i] = GENRES[0]
    titles = [f"Synthetic Movie {mid} ({y})" for mid, y in zip(movie_ids, years, strict=True)]

    # tags: applications on rated pairs; the tag is the best-aligned of a few frequent ones
    tag_f = rng.normal(0, 1, (sc.tag_vocab, r)).astype(np.float32)
    tag_freq = _heavy_tail(rng, sc.tag_vocab, 2.0)
    rows = rng.integers(0, len(u), sc.tags)
    cands = _sample(rng, tag_freq, sc.tags * 6).reshape(sc.tags, 6)
    align = np.einsum("ij,ikj->ik", movie_f[m[rows]], tag_f[cands])
    tag_idx = cands[np.arange(sc.tags), np.argmax(align + rng.gumbel(0, 0.3, align.shape), 1)]
    vocab = np.array([_tag_text(i) for i in range(sc.tag_vocab)], dtype=object)
    tag_text = vocab[tag_idx]
    upper = rng.random(sc.tags) < 0.2
    tag_text[upper] = np.char.title(tag_text[upper].astype(str))
    tag_ts = ts[rows] + rng.integers(0, 86_400 * 30, sc.tags)

    # genome: relevance of each genome tag for the most popular movies
    g_movies = np.sort(np.argsort(-popularity)[:sc.genome_movies])
    gtag_f = rng.normal(0, 1, (sc.genome_tags, r)).astype(np.float32)
    gtag_bias = rng.normal(-2.0, 1.0, sc.genome_tags).astype(np.float32)

    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        tmp = Path(tmp)
        _write(tmp / "movies.csv", {"movieId": movie_ids, "title": titles, "genres": genres})
        order = np.lexsort((ts, u))
        _write(tmp / "ratings.csv", {"userId": user_ids[u[order]],
                                     "movieId": movie_ids[m[order]],
                                     "rating": rating[order], "timestamp": ts[order]})
        order = np.lexsort((tag_ts, u[rows]))
        _write(tmp / "tags.csv", {"userId": user_ids[u[rows][order]],
                                  "movieId": movie_ids[m[rows][order]],
                                  "tag": tag_text[order].astype(str), "timestamp": tag_ts[order]})
        _write(tmp / "genome-tags.csv", {
            "tagId": np.arange(1, sc.genome_tags + 1),
            "tag": [f"genome {_tag_text(i)}" for i in range(sc.genome_tags)]})
        _write_genome(tmp / "genome-scores.csv", rng, movie_ids[g_movies], movie_f[g_movies],
                      gtag_f, gtag_bias)
        if out.exists():
            shutil.rmtree(out)
        tmp.chmod(0o755)
        os.replace(tmp, out)
        tmp.mkdir()  # let TemporaryDirectory clean up an empty folder
    return out


def to_layout(src: str | os.PathLike, out: str | os.PathLike, layout: str) -> Path:
    """Rewrite the movies and ratings of the CSV dataset ``src`` in a classic release's own
    files (``layout`` "ml-100k": u.item with genre flags, tab-separated u.data; "ml-1m":
    ``::``-separated movies.dat and ratings.dat, latin-1; "ml-10m": those with ml-latest's
    genre names and the tags in tags.dat, UTF-8; no header, no genome)."""
    from movierec.data import CLASSIC_GENRES, ML100K_GENRES, load_movies

    src, out = Path(src), Path(out)
    movies = load_movies(src / "movies.csv")
    ratings = pacsv.read_csv(src / "ratings.csv").to_pandas()
    back = {v: k for k, v in CLASSIC_GENRES.items()}  # ml-latest's names -> the classic ones
    out.mkdir(parents=True, exist_ok=True)
    columns = [ratings[c].astype(str) for c in ("userId", "movieId", "rating", "timestamp")]
    if layout == "ml-100k":
        lines = []
        for mid, title, genres in movies[["movieId", "title", "genres"]].itertuples(index=False):
            names = {back.get(g, g) for g in genres.split("|")} & set(ML100K_GENRES)
            flags = "|".join("1" if g in (names or {"unknown"}) else "0" for g in ML100K_GENRES)
            lines.append(f"{mid}|{title}|01-Jan-1995||http://example.org/{mid}|{flags}")
        (out / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
        rows = columns[0] + "\t" + columns[1] + "\t" + columns[2] + "\t" + columns[3]
        (out / "u.data").write_text("\n".join(rows) + "\n", encoding="latin-1")
    elif layout in ("ml-1m", "ml-10m"):
        names = back if layout == "ml-1m" else {}
        encoding = "latin-1" if layout == "ml-1m" else "utf-8"
        lines = [f"{mid}::{title}::" + "|".join(names.get(g, g) for g in genres.split("|"))
                 for mid, title, genres in movies[["movieId", "title", "genres"]].itertuples(
                     index=False)]
        (out / "movies.dat").write_bytes(("\n".join(lines) + "\n").encode(encoding))
        rows = columns[0] + "::" + columns[1] + "::" + columns[2] + "::" + columns[3]
        (out / "ratings.dat").write_text("\n".join(rows) + "\n", encoding=encoding)
        if layout == "ml-10m":
            tags = pacsv.read_csv(src / "tags.csv").to_pandas()
            rows = ["::".join(map(str, t)) for t in tags[["userId", "movieId", "tag",
                                                            "timestamp"]].itertuples(index=False)]
            (out / "tags.dat").write_text("\n".join(rows) + "\n", encoding=encoding)
    else:
        raise ValueError(f"layout must be 'ml-100k', 'ml-1m' or 'ml-10m', got {layout!r}")
    return out


def _tag_text(i: int) -> str:
    a, b = WORDS[i % len(WORDS)], WORDS[(i // len(WORDS)) % len(WORDS)]
    k = i // (len(WORDS) ** 2)
    return f"{a} {b}" + (f" {k}" if k else "")


def _write_genome(path: Path, rng: np.random.Generator, ids: np.ndarray, factors: np.ndarray,
                  tag_f: np.ndarray, tag_bias: np.ndarray, block: int = 2000) -> None:
    """genome-scores.csv, written in blocks of movies (18M rows at full scale)."""
    n_tags = len(tag_f)
    with pacsv.CSVWriter(path, pa.schema([("movieId", pa.int64()), ("tagId", pa.int64()),
                                          ("relevance", pa.float64())])) as writer:
        for s in range(0, len(ids), block):
            logit = 3 * factors[s:s + block] @ tag_f.T + tag_bias
            logit += rng.normal(0, 0.5, logit.shape)
            rel = np.round(1 / (1 + np.exp(-logit)), 5)
            writer.write_table(pa.table({
                "movieId": np.repeat(ids[s:s + block], n_tags),
                "tagId": np.tile(np.arange(1, n_tags + 1), len(rel)),
                "relevance": rel.ravel().astype(np.float64)}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write a MovieLens-format dataset with genome.")
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ratings", type=int, help="override the scale's number of ratings")
    ap.add_argument("--layout", choices=("csv", "ml-100k", "ml-1m", "ml-10m"), default="csv",
                    help="the files of today's releases, or of a classic one (tags: ml-10m's)")
    args = ap.parse_args(argv)
    scale = SCALES[args.scale]
    if args.ratings:
        scale = replace(scale, ratings=args.ratings)
    if args.layout == "csv":
        path = generate(args.out, scale, args.seed)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = to_layout(generate(Path(tmp) / "csv", scale, args.seed), args.out,
                             args.layout)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
