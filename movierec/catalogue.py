"""The movies a model knows: lookups by movieId and by title that never guess, popularity, and
result frames."""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd


class CatalogueError(LookupError):
    """A movie (id or title) or user that is not in the model's data, or a title that names
    several movies; the message names the key and, for a title, the closest candidates."""


def _normal(title: str) -> str:
    return " ".join(str(title).lower().split())


class Catalogue:
    """``movies`` (movieId, title, genres; row i = model index i) and each movie's
    ``popularity`` (how many users' histories hold it)."""

    def __init__(self, movies: pd.DataFrame, popularity: np.ndarray) -> None:
        self.movies = movies.reset_index(drop=True)
        self.popularity = np.asarray(popularity)
        self._index = pd.Index(self.movies["movieId"].to_numpy())
        self._titles = self.movies["title"].astype(str).map(_normal).to_numpy().astype(str)

    def __len__(self) -> int:
        return len(self.movies)

    def row(self, movie_id: int) -> int:
        """The model row of ``movie_id``."""
        pos = self._index.get_indexer([movie_id])[0]
        if pos < 0:
            raise CatalogueError(f"unknown movieId {movie_id}: not in this model's movies")
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

    def _by_popularity(self, rows: np.ndarray) -> np.ndarray:
        return rows[np.argsort(-self.popularity[rows], kind="stable")]

    def find(self, query: str, n: int = 5) -> pd.DataFrame:
        """A search: movies whose title contains ``query`` (case-insensitive), else the
        closest titles; most-rated first. DataFrame(movieId, title, genres)."""
        hits = np.flatnonzero(np.char.find(self._titles, _normal(query)) >= 0)
        if len(hits) == 0:
            close = set(difflib.get_close_matches(_normal(query), self._titles.tolist(), n=n,
                                                  cutoff=0.5))
            hits = np.flatnonzero([t in close for t in self._titles])
        hits = self._by_popularity(hits)[:n]
        return self.movies.iloc[hits][["movieId", "title", "genres"]].reset_index(drop=True)

    def title_row(self, title: str) -> int:
        """The one movie a title names: its exact title (case and spacing aside), else the
        only title containing it. No match, or several, is a :class:`CatalogueError` listing
        the closest candidates: a title never resolves to a guess."""
        query = _normal(title)
        exact = np.flatnonzero(self._titles == query)
        hits = exact if len(exact) else np.flatnonzero(
            np.char.find(self._titles, query) >= 0)
        if len(hits) == 1:
            return int(hits[0])
        if len(hits) == 0:
            found = self.find(title)
            problem = "matches no title"
        else:
            rows = self._by_popularity(hits)
            found = self.movies.iloc[rows[:8]]
            problem = (f"names {len(hits)} movies" if len(exact) else
                       f"is part of {len(hits)} titles")
        listed = "; ".join(f"{t} (movieId {m})" for m, t in zip(found["movieId"], found["title"],
                                                                strict=True))
        raise CatalogueError(f"title {title!r} {problem}: give the exact title or the movieId"
                             + (f"; closest: {listed}" if listed else ""))

    def rows(self, keys: list) -> np.ndarray:
        """Model rows of movieIds (ints) or titles (strings, :meth:`title_row`). Every key
        that does not name exactly one movie is reported, in one :class:`CatalogueError`."""
        rows, problems = [], []
        for key in keys:
            try:
                rows.append(self.title_row(key) if isinstance(key, str) else self.row(key))
            except CatalogueError as exc:
                problems.append(str(exc))
        if problems:
            raise CatalogueError("; and ".join(problems))
        return np.asarray(rows, np.int64)
