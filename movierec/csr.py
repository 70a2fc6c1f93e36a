"""Compressed rows, the one ragged-list structure of the package: each user's rated movies,
each movie's tag and genre bags (with weights)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Csr:
    """Row ``i`` holds ``indices[offsets[i]:offsets[i+1]]`` and, when given, the matching
    ``weights``."""

    offsets: np.ndarray  # int64, (n_rows + 1,)
    indices: np.ndarray  # int64
    weights: np.ndarray | None = None  # float32

    @classmethod
    def from_pairs(cls, rows: np.ndarray, cols: np.ndarray, n_rows: int) -> Csr:
        """The ``cols`` of each row, sorted, from (row, col) pairs."""
        order = np.lexsort((cols, rows))
        offsets = np.zeros(n_rows + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=offsets[1:])
        return cls(offsets, np.asarray(cols, np.int64)[order])

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.indices[self.offsets[i]:self.offsets[i + 1]]

    def row_weights(self, i: int) -> np.ndarray:
        return self.weights[self.offsets[i]:self.offsets[i + 1]]

    def select(self, rows: np.ndarray) -> Csr:
        """The sub-CSR of ``rows`` (vectorised gather)."""
        starts, lengths = self.offsets[rows], self.lengths()[rows]
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        pos = np.arange(offsets[-1]) + np.repeat(starts - offsets[:-1], lengths)
        return Csr(offsets, self.indices[pos],
                   None if self.weights is None else self.weights[pos])
