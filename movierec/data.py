"""MovieLens datasets: registry, verified download, and typed, validated loading.

The data root is ``MOVIEREC_DATA`` (default ``data/``) and holds one folder per dataset, e.g.
``<root>/ml-latest-small/ratings.csv``. A dataset whose files are present is never fetched, so
the root may be read-only. Every loader checks its file and raises :class:`DataError`, naming the
file, column, offending lines and their count, instead of returning silently wrong data.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

DATA_ENV = "MOVIEREC_DATA"
GROUPLENS = "https://files.grouplens.org/datasets/movielens"
CORE_FILES = ("movies.csv", "ratings.csv", "tags.csv")
GENOME_FILES = ("genome-scores.csv", "genome-tags.csv")
# the files of each release layout: today's CSV releases, and the classic ones (ml-10m is
# ml-1m's files and its tags: users' free-text tags, in tags.dat)
LAYOUTS = {"csv": CORE_FILES, "ml-100k": ("u.data", "u.item"),
           "ml-1m": ("movies.dat", "ratings.dat"),
           "ml-10m": ("movies.dat", "ratings.dat", "tags.dat")}
INT32_MAX = np.iinfo(np.int32).max


class DataError(ValueError):
    """Bad input data: names the file, the column, the offending lines and their count."""

    def __init__(
        self,
        file: str | os.PathLike,
        problem: str,
        *,
        column: str | None = None,
        lines: Iterable[int] = (),
        count: int | None = None,
    ) -> None:
        self.file = str(file)
        self.column = column
        self.lines = [int(x) for x in lines][:5]
        self.count = count
        where = f"{self.file}"
        if column is not None:
            where += f", column '{column}'"
        msg = f"{where}: {problem}"
        if count is not None:
            msg += f" ({count} row{'s' if count != 1 else ''}"
            if self.lines:
                msg += f"; first at line{'s' if len(self.lines) > 1 else ''} "
                msg += ", ".join(str(x) for x in self.lines)
            msg += ")"
        super().__init__(msg)


@dataclass(frozen=True)
class DatasetSpec:
    """A MovieLens release: where it lives and how to verify it."""

    name: str
    url: str
    has_genome: bool
    zip_md5: str | None = None  # GroupLens's published .md5 of the zip (frozen releases)
    sha256: dict[str, str] = field(default_factory=dict)  # pinned per-file sums
    note: str = ""
    layout: str = "csv"  # a key of LAYOUTS
    folder: str | None = None  # the archive's top folder, where it is not ``name``

    @property
    def files(self) -> tuple[str, ...]:
        return LAYOUTS[self.layout] + (GENOME_FILES if self.has_genome else ())


DATASETS: dict[str, DatasetSpec] = {
    "ml-latest-small": DatasetSpec(
        "ml-latest-small",
        f"{GROUPLENS}/ml-latest-small.zip",
        has_genome=False,
        sha256={  # the 2018 edition: 100,836 ratings, 3,683 tags, 9,742 movies, 610 users
            "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
            "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
            "tags.csv": "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d",
            "links.csv": "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31",
        },
        note="development set; GroupLens may update it: a new edition fails the pinned sums",
    ),
    "ml-latest": DatasetSpec(
        "ml-latest",
        f"{GROUPLENS}/ml-latest.zip",
        has_genome=True,
        note="updated by GroupLens over time: its sums are recorded at download, not pinned",
    ),
    "ml-25m": DatasetSpec(
        "ml-25m",
        f"{GROUPLENS}/ml-25m.zip",
        has_genome=True,
        zip_md5="6b51fb2759a8657d3bfcbfc42b592ada",
        note="frozen benchmark release (2019)",
    ),
    "ml-20m": DatasetSpec(
        "ml-20m",
        f"{GROUPLENS}/ml-20m.zip",
        has_genome=True,
        zip_md5="cd245b17a1ae2cc31bb14903e1204af3",
        note="frozen release (2016)",
    ),
    "ml-32m": DatasetSpec(
        "ml-32m",
        f"{GROUPLENS}/ml-32m.zip",
        has_genome=False,
        zip_md5="d472be332d4daa821edc399621853b57",
        note="frozen benchmark release (2023): 32,000,204 ratings, 2,000,072 tags; no genome",
    ),
    "ml-10m": DatasetSpec(
        "ml-10m",
        f"{GROUPLENS}/ml-10m.zip",
        has_genome=False,
        zip_md5="ce571fd55effeba0271552578f2648bd",
        note="frozen release (2009): 10,000,054 ratings and 95,580 tags of 10,681 movies by "
             "71,567 users, half stars",
        layout="ml-10m",
        folder="ml-10M100K",
    ),
    "ml-1m": DatasetSpec(
        "ml-1m",
        f"{GROUPLENS}/ml-1m.zip",
        has_genome=False,
        zip_md5="c4d9eecfca2ab87c1945afe126590906",
        note="frozen release (2003): 1,000,209 ratings of 3,706 movies by 6,040 users; no tags",
        layout="ml-1m",
    ),
    "ml-100k": DatasetSpec(
        "ml-100k",
        f"{GROUPLENS}/ml-100k.zip",
        has_genome=False,
        zip_md5="0e33842e24a9c977be4e0107933c0723",
        note="frozen release (1998): 100,000 ratings of 1,682 movies by 943 users; no tags",
        layout="ml-100k",
    ),
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$MOVIEREC_DATA``, else ``data/``."""
    return Path(root if root is not None else os.environ.get(DATA_ENV, "data"))


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_checksums(folder: str | os.PathLike, names: Iterable[str]) -> dict[str, str]:
    """SHA-256 of each named file in ``folder`` that exists."""
    folder = Path(folder)
    return {n: file_digest(folder / n) for n in names if (folder / n).exists()}


def verify_checksums(folder: str | os.PathLike, expected: dict[str, str]) -> None:
    """Raise DataError if a file's SHA-256 differs from ``expected``."""
    for name, want in expected.items():
        path = Path(folder) / name
        if not path.exists():
            raise DataError(path, "missing file expected by the dataset's pinned checksums")
        got = file_digest(path)
        if got != want:
            raise DataError(path, f"SHA-256 mismatch: expected {want}, got {got}")


def dataset_files_present(folder: Path, spec: DatasetSpec) -> bool:
    return all((folder / n).exists() for n in spec.files)


def fetch(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    force: bool = False,
    opener=urllib.request.urlopen,
) -> Path:
    """Return the dataset's folder, downloading it first if its files are absent.

    The zip is streamed to a temporary file beside the target, checked against GroupLens's MD5
    (when published), extracted safely into a temporary folder, checked against the pinned
    SHA-256 sums (when pinned) and only then renamed into place: an interrupted or corrupt
    download never leaves anything that a later run would trust. ``opener`` is the URL opener
    (tests pass a fake one; nothing in the test suite touches the network).
    """
    spec = DATASETS.get(name)
    if spec is None:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    root = data_root(root)
    target = root / name
    if dataset_files_present(target, spec) and not force:
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=root) as tmp:
        tmp = Path(tmp)
        zip_path = tmp / f"{name}.zip"
        download(spec.url, zip_path, opener=opener)
        if spec.zip_md5 is not None:
            got = file_digest(zip_path, "md5")
            if got != spec.zip_md5:
                raise DataError(spec.url, f"MD5 mismatch: expected {spec.zip_md5}, got {got}")
        extracted = tmp / "extracted"
        safe_extract(zip_path, extracted)
        top = spec.folder or name
        inner = extracted / top if (extracted / top).is_dir() else extracted
        missing = [n for n in spec.files if not (inner / n).exists()]
        if missing:
            raise DataError(spec.url, f"archive lacks expected files {missing}")
        verify_checksums(inner, spec.sha256)
        sums = file_checksums(inner, sorted(p.name for p in inner.iterdir() if p.is_file()))
        (inner / "SHA256SUMS").write_text("".join(f"{v}  {k}\n" for k, v in sums.items()))
        if target.exists():
            shutil.rmtree(target)
        os.replace(inner, target)
    return target


def download(url: str, dest: Path, *, opener=urllib.request.urlopen) -> None:
    """Stream ``url`` to ``dest`` atomically (a ``.part`` file renamed when complete)."""
    part = dest.with_name(f"{dest.name}.{os.getpid()}.part")
    try:
        with opener(url) as response, open(part, "wb") as out:
            expected = response.headers.get("Content-Length") if response.headers else None
            shutil.copyfileobj(response, out, length=1 << 20)
        if expected is not None and part.stat().st_size != int(expected):
            raise DataError(url, f"truncated download: {part.stat().st_size} of {expected} bytes")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def safe_extract(zip_path: Path, dest: Path) -> None:
    """Extract a zip, refusing members that escape ``dest`` and symbolic links."""
    dest = Path(dest).resolve()
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(dest):
                raise DataError(zip_path, f"archive member {info.filename!r} escapes the folder")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataError(zip_path, f"archive member {info.filename!r} is a symbolic link")
        zf.extractall(dest)


# --------------------------------------------------------------------------------------------
# Loading and validation


def _lines(mask: np.ndarray, first: int = 2) -> np.ndarray:
    """1-based file line numbers of the rows where ``mask`` holds; the first row is on line
    ``first`` (2 below a header, 1 in a file without one)."""
    return np.flatnonzero(mask) + first


ARROW_TYPES = {"id": pa.int32(), "int": pa.int64(), "float": pa.float32(), "str": pa.string()}


def read_table(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    """Read a CSV and check its columns. ``columns`` maps name -> 'id', 'float', 'int', 'str'.

    Fast path: pyarrow parses the columns straight into their final types. If that fails, or a
    value is missing or out of range, the file is re-read as text and checked column by column,
    so that every error names the offending lines.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    opts = pacsv.ConvertOptions(column_types={c: ARROW_TYPES[k] for c, k in columns.items()},
                                include_columns=list(columns), strings_can_be_null=True)
    try:
        table = pacsv.read_csv(path, convert_options=opts)
    except (pa.ArrowInvalid, pa.ArrowKeyError, OSError, UnicodeDecodeError):
        return _read_table_checked(path, columns)
    if not _arrow_clean(table, columns):
        return _read_table_checked(path, columns)
    return table.to_pandas(self_destruct=True)


def _arrow_clean(table: pa.Table, columns: dict[str, str]) -> bool:
    """Whether pyarrow's typed ``table`` needs no check by line: no missing number, every
    float finite, every id at least 0 (ids above int32's range fail to parse)."""
    for col, kind in columns.items():
        arr = table.column(col)
        if kind != "str" and arr.null_count:
            return False
        if kind == "float" and not pc.all(pc.is_finite(arr)).as_py():
            return False
        if kind == "id" and len(arr) and pc.min(arr).as_py() < 0:
            return False
    return True


def _read_table_checked(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    """The slow path of :func:`read_table`: read as text, check every column, name lines."""
    str_cols = {c: pa.string() for c, kind in columns.items() if kind == "str"}
    try:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types=str_cols, strings_can_be_null=True))
        df = table.to_pandas()
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not a readable UTF-8 CSV file: {exc}") from None
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; found {list(df.columns)}")
    df = df[list(columns)]
    for col, kind in columns.items():
        if kind != "str":
            df[col] = _numeric_column(path, col, df[col], kind)
    return df


def _reject(bad: np.ndarray, path: Path, problem: str, column: str, first: int = 2) -> None:
    """Raise DataError for the rows where ``bad`` holds (file, column, first lines, count)."""
    if bad.any():
        raise DataError(path, problem, column=column, lines=_lines(bad, first),
                        count=int(bad.sum()))


def _numeric_column(path: Path, col: str, s: pd.Series, kind: str,
                    first: int = 2) -> pd.Series:
    if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        raw = s.astype("str")
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna().to_numpy() & s.notna().to_numpy()
        _reject(bad, path, "expected a number", col, first)
        s = num
    values = s.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    _reject(bad, path, "missing or non-finite value", col, first)
    if kind == "float":
        return pd.Series(values.astype(np.float32), index=s.index)
    bad = values != np.floor(values)
    _reject(bad, path, "expected an integer", col, first)
    if kind == "id":
        bad = (values < 0) | (values > INT32_MAX)
        _reject(bad, path, f"id outside 0..{INT32_MAX}", col, first)
        return pd.Series(values.astype(np.int32), index=s.index)
    bad = np.abs(values) > 2**62
    _reject(bad, path, "integer out of range", col, first)
    return pd.Series(values.astype(np.int64), index=s.index)


def _check_known_movies(path: Path, df: pd.DataFrame, movie_ids: np.ndarray,
                        movies_file: str = "movies.csv", first: int = 2) -> None:
    ref = df["movieId"].to_numpy()
    known = np.zeros(int(max(movie_ids.max(initial=0), ref.max(initial=0))) + 1, bool)
    known[movie_ids] = True
    bad = ~known[ref]
    _reject(bad, path, f"movieId absent from {movies_file}", "movieId", first)


def _require_rows(path: Path, df: pd.DataFrame, what: str) -> None:
    """A file that must hold data (movies, ratings) but has only its header is bad input."""
    if len(df) == 0:
        raise DataError(path, f"no rows after the header: expected at least one {what}")


def _check_movies(path: Path, df: pd.DataFrame, first: int = 2) -> pd.DataFrame:
    """Movies hold at least one row, unique ids and genres (the title may be empty)."""
    _require_rows(path, df, "movie")
    dup = df["movieId"].duplicated().to_numpy()
    _reject(dup, path, "duplicate movieId", "movieId", first)
    empty = df["genres"].isna().to_numpy()
    _reject(empty, path, "empty genres (MovieLens writes '(no genres listed)')", "genres", first)
    df["title"] = df["title"].fillna("")
    return df


def _check_ratings(path: Path, df: pd.DataFrame, movie_ids: np.ndarray, *,
                   movies_file: str = "movies.csv", first: int = 2) -> pd.DataFrame:
    """Ratings: at least one, half stars in 0.5..5.0, one per (userId, movieId), of known
    movies."""
    _require_rows(path, df, "rating")
    r2 = df["rating"].to_numpy(np.float64) * 2
    bad = (r2 != np.round(r2)) | (r2 < 1) | (r2 > 10)
    _reject(bad, path, "rating is not a half star in 0.5..5.0", "rating", first)
    key = df["userId"].to_numpy(np.int64) << 32 | df["movieId"].to_numpy(np.int64)
    _reject(pd.Index(key).duplicated(), path, "duplicate (userId, movieId) rating",
            "userId, movieId", first)
    _check_known_movies(path, df, movie_ids, movies_file, first)
    return df


def load_movies(path: Path) -> pd.DataFrame:
    """movies.csv -> DataFrame(movieId int32, title str, genres str); ids unique."""
    return _check_movies(path, read_table(path, {"movieId": "id", "title": "str",
                                                 "genres": "str"}))


RATING_COLUMNS = {"userId": "id", "movieId": "id", "rating": "float", "timestamp": "int"}


def load_ratings(path: Path, movie_ids: np.ndarray) -> pd.DataFrame:
    """ratings.csv -> DataFrame(userId, movieId int32, rating float32, timestamp int64).

    Ratings must be half stars in 0.5..5.0; (userId, movieId) pairs unique; movies known.
    """
    return _check_ratings(path, read_table(path, RATING_COLUMNS), movie_ids)


# ---- the classic releases: headerless, their own separators ----

CLASSIC_GENRES = {"Children's": "Children", "unknown": "(no genres listed)"}  # -> ml-latest's
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")


def classic_text(raw: bytes) -> str:
    """A classic release's file as text: UTF-8 where its bytes are UTF-8 (ASCII included),
    else latin-1 (ml-100k's and ml-1m's accented titles), which decodes any bytes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _split(line: str, sep: str, n: int, free: int | None) -> list[str]:
    """A line's fields; with ``free`` (the index of a free-text field of ``n``), the fields
    before it split from the left and those after it from the right, so the free text may
    hold ``sep`` (one field short or more is still an error: fewer than ``n``)."""
    if free is None:
        return line.split(sep)
    head = line.split(sep, free)
    if len(head) <= free:
        return head
    tail = head.pop().rsplit(sep, n - free - 1)
    return head + tail if len(tail) == n - free else [*head, sep.join(tail)]


def read_fields(path: Path, sep: str, columns: dict[str, str], free: str | None = None
                ) -> pd.DataFrame:
    """A headerless file of ``sep``-separated fields (:func:`classic_text`), every line
    holding one field per name of ``columns`` (kinds as :func:`read_table`); a line with
    another count is an error naming it. ``free``: the one column of free text, which may
    hold ``sep`` itself (tags.dat's tag: the fields around it are counted from both ends).
    A file of numbers only takes a fast path (:func:`_numbers_by_arrow`) whose frame is the
    checked path's."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    raw = path.read_bytes()
    if free is None and "str" not in columns.values():
        fast = _numbers_by_arrow(raw, sep, columns)
        if fast is not None:
            return fast
    return _read_fields_checked(path, raw, sep, columns, free)


# the bytes of a numbers file the fast path reads: digits, signs, points, exponents, spaces, lines
NUMBER_BYTES = b"0123456789+-.eE \t\r\n"


def _numbers_by_arrow(raw: bytes, sep: str, columns: dict[str, str]) -> pd.DataFrame | None:
    """The fast path of :func:`read_fields` for a file of numbers only (u.data,
    ratings.dat): pyarrow parses ``raw`` into typed columns (``::`` made a tab: its delimiter
    is one byte), in a small part of the time and memory of splitting its lines in Python;
    ``None`` whenever a line might not be read as that split reads it (a field count, a missing
    or odd value, a byte outside :data:`NUMBER_BYTES`, a tab inside a ``::`` file, a blank
    line), so that the checked path names the line. Floats are parsed as float64 and then
    rounded, and integers kept within float64's exact range, as the checked path reads them."""
    if sep not in ("\t", "::"):
        return None
    if sep == "::":
        if b"\t" in raw:
            return None
        raw = raw.replace(b"::", b"\t")
    if raw.translate(None, NUMBER_BYTES):  # pyarrow reads some words as numbers (0x10 as 16)
        return None
    types = {c: pa.float64() if k == "float" else ARROW_TYPES[k] for c, k in columns.items()}
    try:
        table = pacsv.read_csv(
            pa.BufferReader(raw),
            read_options=pacsv.ReadOptions(column_names=list(columns)),
            parse_options=pacsv.ParseOptions(delimiter="\t", ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=types))
    except (pa.ArrowInvalid, pa.ArrowKeyError, UnicodeDecodeError):
        return None
    if not _arrow_clean(table, columns):
        return None
    df = table.to_pandas(self_destruct=True)
    for col, kind in columns.items():
        values = df[col].to_numpy()
        if kind == "float":
            df[col] = values.astype(np.float32)
        elif kind == "int" and ((values > 2**53) | (values < -(2**53))).any():
            return None
    return df


def _read_fields_checked(path: Path, raw: bytes, sep: str, columns: dict[str, str],
                         free: str | None) -> pd.DataFrame:
    """:func:`read_fields` by splitting each line in Python, every value checked and every
    bad line named."""
    at = None if free is None else list(columns).index(free)
    fields = [_split(line, sep, len(columns), at) for line in classic_text(raw).splitlines()]
    counts = np.fromiter((len(f) for f in fields), np.int64, len(fields))
    bad = counts != len(columns)
    if bad.any():
        raise DataError(path, f"expected {len(columns)} fields separated by {sep!r} "
                        f"({', '.join(columns)})", lines=_lines(bad, 1), count=int(bad.sum()))
    df = pd.DataFrame(fields, columns=list(columns), dtype=object)
    for col, kind in columns.items():  # text as read_table types it (tags equal tags.csv's)
        df[col] = (df[col].astype(str) if kind == "str"
                   else _numeric_column(path, col, df[col], kind, first=1))
    return df


def load_classic_ratings(path: Path, movie_ids: np.ndarray, sep: str,
                         movies_file: str) -> pd.DataFrame:
    """u.data (tab) or ratings.dat (``::``): user, movie, rating, timestamp; checked as
    ratings.csv is."""
    return _check_ratings(path, read_fields(path, sep, RATING_COLUMNS), movie_ids,
                          movies_file=movies_file, first=1)


def load_100k_movies(path: Path) -> pd.DataFrame:
    """u.item: id | title | release date | video release date | IMDb URL | 19 genre flags,
    the genres mapped to ml-latest's names ("unknown" is "(no genres listed)")."""
    flags = {g: "int" for g in ML100K_GENRES}
    df = read_fields(path, "|", {"movieId": "id", "title": "str", "release": "str",
                                 "video": "str", "url": "str", **flags})
    values = df[list(ML100K_GENRES)].to_numpy()
    for i, g in enumerate(ML100K_GENRES):
        _reject((values[:, i] != 0) & (values[:, i] != 1), path, "genre flag not 0 or 1", g, 1)
    _reject(values.sum(1) == 0, path, "no genre flag set (u.item flags 'unknown' for none)",
            "genres", 1)
    names = np.array([CLASSIC_GENRES.get(g, g) for g in ML100K_GENRES], dtype=object)
    genres = ["|".join(names[row == 1]) for row in values]
    return _check_movies(path, pd.DataFrame({"movieId": df["movieId"], "title": df["title"],
                                             "genres": genres}), first=1)


def load_1m_movies(path: Path) -> pd.DataFrame:
    """movies.dat (ml-1m, ml-10m): id::title::genres, the genres mapped to ml-latest's
    names (ml-10m's are those already)."""
    df = read_fields(path, "::", {"movieId": "id", "title": "str", "genres": "str"})
    df["genres"] = df["genres"].map(
        lambda gs: "|".join(CLASSIC_GENRES.get(g, g) for g in gs.split("|")) if gs else None)
    return _check_movies(path, df, first=1)


def no_tags() -> pd.DataFrame:
    """The tags of a release without any."""
    return pd.DataFrame({"userId": pd.Series(dtype=np.int32), "movieId": pd.Series(dtype=np.int32),
                         "tag": pd.Series(dtype=object), "timestamp": pd.Series(dtype=np.int64)})


TAG_COLUMNS = {"userId": "id", "movieId": "id", "tag": "str", "timestamp": "int"}


def load_tags(path: Path, movie_ids: np.ndarray) -> tuple[pd.DataFrame, int]:
    """tags.csv -> (DataFrame(userId, movieId, tag, timestamp), number of NaN tags dropped).

    NaN (empty) tags are dropped, as the seed did, and counted for the report.
    """
    df = read_table(path, TAG_COLUMNS)
    return _kept_tags(path, df, df["tag"].isna().to_numpy(), movie_ids, "movies.csv")


def load_classic_tags(path: Path, movie_ids: np.ndarray) -> tuple[pd.DataFrame, int]:
    """tags.dat (ml-10m): user::movie::tag::timestamp, the tag free text (it may hold "::");
    empty tags dropped and counted, as tags.csv's are."""
    df = read_fields(path, "::", TAG_COLUMNS, free="tag")
    return _kept_tags(path, df, (df["tag"].str.strip() == "").to_numpy(), movie_ids,
                      "movies.dat", first=1)


def _kept_tags(path: Path, df: pd.DataFrame, empty: np.ndarray, movie_ids: np.ndarray,
               movies_file: str, first: int = 2) -> tuple[pd.DataFrame, int]:
    """The tags but the ``empty`` ones, and how many were dropped; every tag's movie, empty
    or not, must be in ``movies_file`` (checked first: an error names the file's own line)."""
    _check_known_movies(path, df, movie_ids, movies_file, first)
    df = df[~empty].reset_index(drop=True) if empty.any() else df
    return df, int(empty.sum())


def load_genome(folder: Path, movie_ids: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """genome-scores.csv and genome-tags.csv, checked: a complete, unique movie x tag grid,
    relevance in [0, 1], every tagId in genome-tags.csv, every movie in movies.csv."""
    tags_path, scores_path = folder / "genome-tags.csv", folder / "genome-scores.csv"
    gtags = read_table(tags_path, {"tagId": "id", "tag": "str"})
    dup = gtags["tagId"].duplicated().to_numpy()
    _reject(dup, tags_path, "duplicate tagId", "tagId")
    scores = read_table(scores_path, {"movieId": "id", "tagId": "id", "relevance": "float"})
    rel = scores["relevance"].to_numpy()
    bad = (rel < 0) | (rel > 1)
    _reject(bad, scores_path, "relevance outside [0, 1]", "relevance")
    bad = ~scores["tagId"].isin(gtags["tagId"]).to_numpy()
    _reject(bad, scores_path, "tagId not in genome-tags.csv", "tagId")
    _check_known_movies(scores_path, scores, movie_ids)
    key = scores["movieId"].to_numpy(np.int64) * (len(gtags) + 1) + scores["tagId"].to_numpy()
    dup = pd.Index(key).duplicated()
    _reject(dup, scores_path, "duplicate (movieId, tagId) score", "movieId, tagId")
    per_movie = scores.groupby("movieId", sort=False)["tagId"].transform("size").to_numpy()
    bad = per_movie != len(gtags)
    _reject(bad, scores_path,
            f"incomplete movie x tag grid: expected {len(gtags)} tags per movie", "tagId")
    return scores, gtags


@dataclass
class MovieLens:
    """A loaded MovieLens dataset. ``genome_*`` are None when the release has no genome."""

    name: str
    path: Path
    movies: pd.DataFrame
    ratings: pd.DataFrame
    tags: pd.DataFrame
    genome_scores: pd.DataFrame | None
    genome_tags: pd.DataFrame | None
    dropped: dict[str, int]
    checksums: dict[str, str]

    @property
    def has_genome(self) -> bool:
        return self.genome_scores is not None

    @property
    def classic(self) -> bool:
        """A classic release (headerless files of its own layout)."""
        return layout_of(self.path) != "csv"

    @property
    def movies_file(self) -> str:
        return {"ml-100k": "u.item", "ml-1m": "movies.dat", "ml-10m": "movies.dat"}.get(
            layout_of(self.path), "movies.csv")

    def summary(self) -> dict[str, int]:
        out = {
            "movies": len(self.movies),
            "ratings": len(self.ratings),
            "tags": len(self.tags),
            "users": int(self.ratings["userId"].nunique()),
        }
        if self.genome_scores is not None:
            out["genome_movies"] = int(self.genome_scores["movieId"].nunique())
            out["genome_tags"] = len(self.genome_tags)
        return out


def dataset_folder(name_or_path: str | os.PathLike, root: str | os.PathLike | None = None, *,
                   download_missing: bool = True) -> Path:
    """The folder of a registry dataset (fetched into the data root if absent) or a path."""
    name = str(name_or_path)
    if name in DATASETS:
        folder = data_root(root) / name
        if download_missing and not dataset_files_present(folder, DATASETS[name]):
            folder = fetch(name, root)
    else:
        folder = Path(name_or_path)
    if not folder.is_dir():
        raise DataError(folder, "dataset folder not found")
    return folder


def layout_of(folder: Path) -> str:
    """The release layout of ``folder`` (a key of :data:`LAYOUTS`): a classic one when any of
    its files is there (ml-10m when its tags.dat is, beside ml-1m's files), else today's CSV
    files (whose loader names any that is missing)."""
    there = {f for f in ("u.data", "u.item", "movies.dat", "ratings.dat", "tags.dat")
             if (Path(folder) / f).exists()}
    if there & set(LAYOUTS["ml-100k"]):
        return "ml-100k"
    if "tags.dat" in there:
        return "ml-10m"
    return "ml-1m" if there else "csv"


def dataset_files(folder: Path) -> tuple[str, ...]:
    """The data files of the release in ``folder`` (the genome's too, when present)."""
    files = LAYOUTS[layout_of(folder)]
    return files + tuple(f for f in GENOME_FILES if (Path(folder) / f).exists())


def load_movielens(
    name_or_path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    download_missing: bool = True,
    checksums: bool | dict[str, str] = True,
) -> MovieLens:
    """Load a dataset by registry name (fetched into the data root if absent) or by folder, in
    any layout of :data:`LAYOUTS` (today's CSV files, or the classic ml-100k and ml-1m).

    The genome is loaded when both genome files are present. ``checksums``: True computes the
    SHA-256 of the files read, a dict gives them already computed, False skips them.
    """
    folder = dataset_folder(name_or_path, root, download_missing=download_missing)
    layout = layout_of(folder)
    tags, dropped_tags = no_tags(), 0
    genome_scores = genome_tags = None
    if layout == "ml-100k":
        movies = load_100k_movies(folder / "u.item")
        ratings = load_classic_ratings(folder / "u.data", movies["movieId"].to_numpy(), "\t",
                                       "u.item")
    elif layout in ("ml-1m", "ml-10m"):
        movies = load_1m_movies(folder / "movies.dat")
        ids = movies["movieId"].to_numpy()
        ratings = load_classic_ratings(folder / "ratings.dat", ids, "::", "movies.dat")
        if layout == "ml-10m":
            tags, dropped_tags = load_classic_tags(folder / "tags.dat", ids)
    else:
        movies = load_movies(folder / "movies.csv")
        ids = movies["movieId"].to_numpy()
        ratings = load_ratings(folder / "ratings.csv", ids)
        tags, dropped_tags = load_tags(folder / "tags.csv", ids)
        if all((folder / f).exists() for f in GENOME_FILES):
            genome_scores, genome_tags = load_genome(folder, ids)
    names = dataset_files(folder)
    return MovieLens(
        name=folder.name,
        path=folder,
        movies=movies,
        ratings=ratings,
        tags=tags,
        genome_scores=genome_scores,
        genome_tags=genome_tags,
        dropped={"nan_tags": dropped_tags},
        checksums=({n: checksums[n] for n in names} if isinstance(checksums, dict)
                   else file_checksums(folder, names) if checksums else {}),
    )
