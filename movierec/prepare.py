"""A loaded dataset turned into model-ready arrays: contiguous indexes, split and features."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from movierec.csr import Csr
from movierec.data import (
    GENOME_FILES,
    MovieLens,
    dataset_files,
    dataset_folder,
    file_checksums,
    load_movielens,
)
from movierec.features import MovieFeatures, build_features, movie_index, release_years
from movierec.split import TEST, TRAIN, VAL, Split, split_ratings, train_cutoffs

RELEVANT_RATING = 4.0


@dataclass
class Prepared:
    """Ratings as index arrays (users 0..n_users-1 by ascending userId, movies by position in
    movies.csv), their split, and the movie features."""

    name: str
    movies: pd.DataFrame
    user_ids: np.ndarray
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    split: Split
    features: MovieFeatures
    summary: dict
    checksums: dict[str, str]
    dropped: dict[str, int]
    file_sizes: dict[str, int] = field(default_factory=dict)  # bytes of each input file

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_movies(self) -> int:
        return len(self.movies)

    @functools.cached_property
    def release_years(self) -> np.ndarray:
        """Each movie's release year from its title (:func:`movierec.features.release_years`;
        NaN where it names none), parsed once and read-only."""
        years = release_years(self.movies["title"])
        years.flags.writeable = False
        return years

    def part(self, *parts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, movies, ratings) of the given split parts."""
        mask = np.isin(self.split.labels, parts)
        return self.users[mask], self.items[mask], self.ratings[mask]

    def recency(self, *parts: int) -> np.ndarray:
        """For each rating of the split ``parts`` (in :meth:`part`'s order), how many later
        ratings its user has there: 0 for each user's latest (ties in time: ordered by movie,
        as the split orders them). Reads only the parts' own timestamps."""
        mask = np.isin(self.split.labels, parts)
        users, times = self.users[mask], self.timestamps[mask]
        order = np.lexsort((self.items[mask], times, users))  # user, time, movie
        n = np.bincount(users, minlength=self.n_users)
        ends = np.cumsum(n)  # one past each user's last rating in ``order``
        out = np.empty(len(users), np.int64)
        out[order] = ends[users[order]] - 1 - np.arange(len(users))
        return out

    def history(self, *parts: int) -> Csr:
        """Each user's rated movies in ``parts`` (default train + val), for masking."""
        u, m, _ = self.part(*(parts or (TRAIN, VAL)))
        return Csr.from_pairs(u, m, self.n_users)

    def relevant(self, part: int = TEST, threshold: float = RELEVANT_RATING
                 ) -> tuple[np.ndarray, Csr]:
        """(user rows with >= 1 relevant movie, their relevant movies in ``part``)."""
        u, m, r = self.part(part)
        keep = r >= threshold
        full = Csr.from_pairs(u[keep], m[keep], self.n_users)
        rows = np.flatnonzero(full.lengths() > 0)
        return rows, full.select(rows)

    def recent_ratings(self, user_row: int, n: int = 5) -> pd.DataFrame:
        """The user's ``n`` most recent train + val ratings (movieId, title, genres, rating)."""
        mask = (self.users == user_row) & np.isin(self.split.labels, (TRAIN, VAL))
        rows = np.flatnonzero(mask)
        rows = rows[np.argsort(self.timestamps[rows], kind="stable")][-n:]
        frame = self.movies.iloc[self.items[rows]][["movieId", "title", "genres"]].copy()
        frame["rating"] = self.ratings[rows]
        frame["timestamp"] = self.timestamps[rows]
        return frame.sort_values("timestamp", ascending=False).reset_index(drop=True)

    def cold_start_movie(self) -> int:
        """A tagged movie rated only in the test period: no model (refit on train + val
        included) has seen a rating of it, so it stands for a cold-start movie. Returns its
        movieId (the one with most test ratings)."""
        seen = np.bincount(self.part(TRAIN, VAL)[1], minlength=self.n_movies)
        later = np.bincount(self.part(TEST)[1], minlength=self.n_movies)
        tags = self.features.tags
        tagged = (np.diff(tags.offsets) > 0) & (tags.indices[tags.offsets[:-1]] > 0)
        score = np.where((seen == 0) & tagged, later, -1)
        if score.max() <= 0:
            score = np.where(seen == 0, later, -1)
        if score.max() <= 0:
            raise ValueError("no movie is rated in the test period only")
        return int(self.movies["movieId"].iloc[int(np.argmax(score))])

    def sample_users(self, rows: np.ndarray, n: int, seed: int) -> np.ndarray:
        """``n`` distinct userIds drawn from the user ``rows`` with ``seed`` (examples)."""
        return self.user_ids[np.random.default_rng(seed).choice(rows, size=n, replace=False)]

    def describe(self) -> str:
        """Feature blocks, vocabulary and genome coverage, dropped rows and split sizes."""
        f = self.features
        tagged = int((f.tags.indices[f.tags.offsets[:-1]] > 0).sum())
        lines = [f"feature blocks: {f.blocks()}",
                 f"tag vocabulary: {len(f.tag_vocab) - 1} stemmed tags; "
                 f"movies with tags: {tagged} of {f.n_movies}"]
        if f.genome is not None:
            lines.append(f"genome: {f.genome_mask.sum()} of {f.n_movies} movies have scores "
                         f"over {f.genome.shape[1]} tags")
        lines += [f"dropped: {self.dropped}", f"split sizes: {self.split.sizes()}"]
        return "\n".join(lines)

    def raters(self, movie_id: int) -> np.ndarray:
        """The userIds who rated ``movie_id`` (in any part of the split)."""
        row = int(np.flatnonzero(self.movies["movieId"].to_numpy() == movie_id)[0])
        return self.user_ids[np.unique(self.users[self.items == row])]



def canonical(ds: MovieLens) -> MovieLens:
    """``ds`` with its rows in one order, whatever order its files list them in: ratings by
    user then movie (a user rates a movie once), movies by id, tags by user, movie, time and
    text. Every result is computed from this order, so none depends on the files' row order
    (MovieLens's own files list ratings by user and movie, movies by id). Movies keep their
    file rows as the index, so that an error can still name a line."""
    def by(frame: pd.DataFrame | None, keys: list[str], keep_index: bool = False):
        if frame is None or frame.empty:
            return frame
        ordered = frame.reset_index(drop=True).sort_values(keys, kind="stable")
        order = ordered.index.to_numpy()
        if (order == np.arange(len(order))).all():
            return frame
        return frame.iloc[order] if keep_index else ordered.reset_index(drop=True)

    return replace(ds, ratings=by(ds.ratings, ["userId", "movieId"]),
                   movies=by(ds.movies, ["movieId"], keep_index=True),
                   tags=by(ds.tags, ["userId", "movieId", "timestamp", "tag"]))


def prepare(ds: MovieLens, *, leak_free_tags: bool = False, use_genome: bool = True) -> Prepared:
    """Index, split and featurise a dataset (its rows in :func:`canonical` order).

    ``leak_free_tags`` keeps only tags written no later than the tagging user's last training
    rating (by default every tag is used, as in the seed: see README, "Leakage").
    """
    ds = canonical(ds)
    r = ds.ratings
    user_ids, users = np.unique(r["userId"].to_numpy(), return_inverse=True)
    split = split_ratings(r)
    cutoff = train_cutoffs(r, split) if leak_free_tags else None
    features = build_features(ds, use_genome=use_genome, tag_cutoff=cutoff)
    dropped = dict(ds.dropped)
    used = {n: s for n, s in ds.checksums.items()  # the files this preparation read
            if use_genome or n not in GENOME_FILES}
    if leak_free_tags:
        dropped["tags_after_cutoff"] = features.tags_dropped_leak_free
    return Prepared(
        name=ds.name,
        movies=ds.movies.reset_index(drop=True),
        user_ids=user_ids.astype(np.int64),
        users=users.astype(np.int64),
        items=movie_index(ds.movies, r["movieId"].to_numpy()),
        ratings=r["rating"].to_numpy(np.float32),
        timestamps=r["timestamp"].to_numpy(np.int64),
        split=split,
        features=features,
        summary=ds.summary(),
        checksums=used,
        file_sizes={n: (ds.path / n).stat().st_size for n in used},
        dropped=dropped,
    )


# --------------------------------------------------------------------------------------------
# On-disk cache of prepared arrays, keyed by the input files' checksums and the options

CACHE_ENV = "MOVIEREC_CACHE"
CACHE_VERSION = 3  # 3: rows in canonical order, the tag vocabulary sorted
_ARRAYS = ("user_ids", "users", "items", "ratings", "timestamps")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$MOVIEREC_CACHE``, else ``~/.cache/movierec``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "movierec"))


def cache_key(checksums: dict[str, str], **options) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "files": checksums, **options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def save_prepared(prep: Prepared, folder: Path) -> None:
    """Write ``prep`` as .npy/.parquet/.json files into a temporary folder, then rename it; a
    manifest records every file's size so that a truncated file is detected on load."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        arrays = {name: getattr(prep, name) for name in _ARRAYS}
        arrays["split"] = prep.split.labels
        f = prep.features
        for part in ("genres", "tags"):
            bags = getattr(f, part)
            for field in ("offsets", "indices", "weights"):
                arrays[f"{part}_{field}"] = getattr(bags, field)
        arrays["movie_ids"] = f.movie_ids
        if f.genome is not None:
            arrays["genome"], arrays["genome_mask"] = f.genome, f.genome_mask
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        prep.movies.to_parquet(tmp / "movies.parquet", index=False)
        meta = {"name": prep.name, "summary": prep.summary, "checksums": prep.checksums,
                "file_sizes": prep.file_sizes, "dropped": prep.dropped,
                "tag_vocab": f.tag_vocab, "genome_tags": f.genome_tags,
                "tags_dropped_leak_free": f.tags_dropped_leak_free}
        (tmp / "meta.json").write_text(json.dumps(meta))
        sizes = {p.name: p.stat().st_size for p in tmp.iterdir()}
        (tmp / "manifest.json").write_text(json.dumps(sizes))
        tmp.chmod(0o755)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def load_prepared(folder: Path) -> Prepared:
    """Load a cache folder written by :func:`save_prepared`; raise ValueError if it is
    incomplete or corrupt."""
    try:
        sizes = json.loads((folder / "manifest.json").read_text())
        for name, size in sizes.items():
            if (folder / name).stat().st_size != size:
                raise ValueError(f"{folder / name}: size differs from the manifest")
        meta = json.loads((folder / "meta.json").read_text())
        arr = {p.stem: np.load(p, allow_pickle=False) for p in folder.glob("*.npy")}
        movies = pd.read_parquet(folder / "movies.parquet")
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"corrupt prepared-data cache {folder}: {exc}") from exc

    def bags(part: str) -> Csr:
        return Csr(arr[f"{part}_offsets"], arr[f"{part}_indices"], arr[f"{part}_weights"])

    features = MovieFeatures(
        movie_ids=arr["movie_ids"], genres=bags("genres"), tags=bags("tags"),
        tag_vocab=meta["tag_vocab"], genome=arr.get("genome"),
        genome_mask=arr.get("genome_mask"), genome_tags=meta["genome_tags"],
        tags_dropped_leak_free=meta["tags_dropped_leak_free"])
    return Prepared(name=meta["name"], movies=movies, user_ids=arr["user_ids"],
                    users=arr["users"], items=arr["items"], ratings=arr["ratings"],
                    timestamps=arr["timestamps"], split=Split(arr["split"]), features=features,
                    summary=meta["summary"], checksums=meta["checksums"], dropped=meta["dropped"],
                    file_sizes=meta["file_sizes"])


def cache_path(folder: Path, cache_dir: str | os.PathLike | None = None, **options
               ) -> tuple[Path, dict[str, str]]:
    """The cache folder of a dataset folder and options, and the input files' SHA-256 sums."""
    sums = file_checksums(folder, sorted(dataset_files(folder)))
    return cache_root(cache_dir) / f"{folder.name}-{cache_key(sums, **options)}", sums


def prepare_cached(name_or_path: str | os.PathLike, root: str | os.PathLike | None = None, *,
                   cache_dir: str | os.PathLike | None = None, leak_free_tags: bool = False,
                   use_genome: bool = True) -> tuple[Prepared, str]:
    """Load and prepare a dataset, reusing arrays cached under :func:`cache_root` when the input
    files' SHA-256 sums and the options match. Returns (prepared, "hit" | "miss" | "rebuilt").

    A cache that fails to load (truncated, edited) is rebuilt.
    """
    folder = dataset_folder(name_or_path, root)
    cache, sums = cache_path(folder, cache_dir, leak_free_tags=leak_free_tags,
                             use_genome=use_genome)
    status = "miss"
    if cache.exists():
        try:
            return load_prepared(cache), "hit"
        except ValueError:
            status = "rebuilt"
    prep = prepare(load_movielens(folder, checksums=sums), leak_free_tags=leak_free_tags,
                   use_genome=use_genome)
    save_prepared(prep, cache)
    return prep, status


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from and how it is prepared: the notebook's data parameters in
    one place, so that a variant of the data (the leaky-tags ablation) changes one of them."""

    dataset: str  # registry name or folder
    root: str | os.PathLike | None = None  # data root (None: $MOVIEREC_DATA, else data/)
    cache_dir: str | os.PathLike | None = None  # None: $MOVIEREC_CACHE, else ~/.cache/movierec
    use_genome: bool = True
    leak_free_tags: bool = True

    def prepare(self, **changes) -> tuple[Prepared, str]:
        """:func:`prepare_cached` with these options (``changes`` overriding some)."""
        s = replace(self, **changes)
        return prepare_cached(s.dataset, s.root, cache_dir=s.cache_dir,
                              leak_free_tags=s.leak_free_tags, use_genome=s.use_genome)
