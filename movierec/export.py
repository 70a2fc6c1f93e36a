"""Movie and user embeddings to Parquet, for pandas, DuckDB or an approximate-nearest-neighbour
library.

``movies.parquet``: movieId, title, genres, ``embedding`` (the model's raw movie vector) and
``unit`` (the vector the ranking searches: normalised for cosine models, with the age term's
columns when the model has one set); ``users.parquet``:
userId, ``embedding``, ``unit``. Vectors are fixed-size lists of float32. A user's ranking score
for a movie is ``dot(user.unit, movie.unit) + movie.offset`` (``offset`` is 0 for models
without a per-movie prior or bias in their ranking).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from movierec.atomic import write_atomically


def _vectors(x: np.ndarray) -> pa.FixedSizeListArray:
    x = np.ascontiguousarray(x, np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def export_embeddings(rec, folder: str | os.PathLike) -> dict[str, Path]:
    """Write ``rec``'s (a :class:`~movierec.recommend.Recommender`) movie and user embeddings
    to ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    v = rec.vectors
    offset = (np.zeros(rec.n_movies, np.float32) if v.offset is None
              else v.offset.detach().cpu().numpy().astype(np.float32))
    movies = pa.table({
        "movieId": pa.array(rec.movies["movieId"].to_numpy(np.int64)),
        "title": pa.array(rec.movies["title"].astype(str).tolist()),
        "genres": pa.array(rec.movies["genres"].astype(str).tolist()),
        "embedding": _vectors(rec.movie_vectors.detach().cpu().numpy()),
        "unit": _vectors(v.movies.detach().cpu().numpy()),
        "offset": pa.array(offset),
    })
    users = pa.table({
        "userId": pa.array(np.asarray(rec.user_ids, np.int64)),
        "embedding": _vectors(rec.user_vectors.detach().cpu().numpy()),
        "unit": _vectors(v.users.detach().cpu().numpy()),
    })
    paths = {"movies": folder / "movies.parquet", "users": folder / "users.parquet"}
    write_atomically(paths["movies"], lambda tmp: pq.write_table(movies, tmp))
    write_atomically(paths["users"], lambda tmp: pq.write_table(users, tmp))
    return paths


def read_embeddings(path: str | os.PathLike, column: str = "embedding"
                    ) -> tuple[pd.DataFrame, np.ndarray]:
    """An exported file as (its other columns, the ``column`` vectors as an (n, dim) array)."""
    table = pq.read_table(path)
    vec = table.column(column).combine_chunks()
    matrix = vec.values.to_numpy().reshape(len(vec), vec.type.list_size)
    rest = table.drop_columns([c for c in ("embedding", "unit") if c in table.column_names])
    return rest.to_pandas(), matrix
