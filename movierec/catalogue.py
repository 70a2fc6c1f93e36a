"""The movies a model knows: lookups by movieId and by title, popularity, and result frames."""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd


class Catalogue:
    """``movies`` (movieId, title, genres; row i = model index i) and each movie's
    ``popularity`` (how many users' histories hold it)."""

    def __init__(self, movies: pd.DataFrame, popularity: np.ndarray) -> None:
        self.movies = movies.reset_index(drop=True)
        self.popularity = np.asarray(popularity)
        self._index = pd.Index(self.movies["movieId"].to_numpy())

    def __len__(self) -> int:
        return len(self.movies)

    def row(self, movie_id: int) -> int:
        """The model row of ``movie_id``."""
        pos = self._index.get_indexer([movie_id])[0]
        if pos < 0:
            raise KeyError(f"unknown movieId {movie_id}: not in movies.csv")
        return int(pos)

    def frame(self, rows: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        """DataFrame(movieId, title, genres, score) of ``rows`` (padding, -1, left out)."""
        keep = rows >= 0
        out = self.movies.iloc[rows[keep]][["movieId", "title", "genres"]].copy()
        out["score"] = scores[keep]
        return out.reset_index(drop=True)

    def most_rated(self, n: int = 10, genre: str | None = None) -> np.ndarray:
        """Model rows of the ``n`` movies most rated in the history (of ``genre`` if given)."""
        rows = np.arange(len(self))
        if genre is not None:
            rows = np.flatnonzero(self.movies["genres"].astype(str).str.split("|").apply(
                lambda gs: genre in gs).to_numpy())
            if len(rows) == 0:
                raise ValueError(f"no movie of genre {genre!r}")
        return rows[np.argsort(-self.popularity[rows], kind="stable")][:n]

    def find(self, query: str, n: int = 5) -> pd.DataFrame:
        """Movies whose title contains ``query`` (case-insensitive), else the closest titles;
        most-rated first. DataFrame(movieId, title, genres)."""
        titles = self.movies["title"].astype(str)
        hits = np.flatnonzero(titles.str.contains(query, case=False, regex=False).to_numpy())
        if len(hits) == 0:
            lower = titles.str.lower()
            close = difflib.get_close_matches(query.lower(), lower.tolist(), n=n, cutoff=0.5)
            hits = np.flatnonzero(lower.isin(close).to_numpy())
        hits = hits[np.argsort(-self.popularity[hits], kind="stable")][:n]
        return self.movies.iloc[hits][["movieId", "title", "genres"]].reset_index(drop=True)

    def rows(self, keys: list) -> np.ndarray:
        """Model rows of movieIds (ints) or titles (strings, resolved by :meth:`find`: an
        exact title, else the single or most-rated match). Every unknown key is named."""
        rows, unknown = [], []
        for key in keys:
            if isinstance(key, str):
                found = self.find(key, n=50)
                exact = found[found["title"].str.lower() == key.lower()]
                found = exact if len(exact) else found
                if len(found) == 0:
                    unknown.append(key)
                    continue
                rows.append(self.row(int(found["movieId"].iloc[0])))
            else:
                pos = self._index.get_indexer([key])[0]
                if pos < 0:
                    unknown.append(key)
                rows.append(int(pos))
        if unknown:
            raise KeyError(f"unknown movie(s) {unknown}: not in this model's catalogue")
        return np.asarray(rows, np.int64)
