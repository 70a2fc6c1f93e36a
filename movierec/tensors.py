"""The data types every stage shares, as tensors on one device: rating triples, a dataset's movie
features, and vectors whose inner product ranks movies. Nothing here trains or evaluates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from movierec.csr import Csr
from movierec.features import MovieFeatures, bag_matrix, genome_weights, low_rank_basis


@dataclass
class Ratings:
    """(user, movie, rating) index tensors on one device."""

    users: torch.Tensor
    movies: torch.Tensor
    ratings: torch.Tensor

    @classmethod
    def from_arrays(cls, users, movies, ratings, device) -> Ratings:
        return cls(torch.as_tensor(np.asarray(users, np.int64), device=device),
                   torch.as_tensor(np.asarray(movies, np.int64), device=device),
                   torch.as_tensor(np.asarray(ratings, np.float32), device=device))

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, rows: slice | torch.Tensor) -> Ratings:
        """The rows ``rows`` (a slice, or an index tensor gathered with ``index_select``)."""
        if isinstance(rows, slice):
            return Ratings(self.users[rows], self.movies[rows], self.ratings[rows])
        return Ratings(*(t.index_select(0, rows) for t in (self.users, self.movies,
                                                            self.ratings)))


@dataclass
class RankingVectors:
    """Vectors whose inner product (+ a per-movie offset) is a model's ranking score:
    ``score(user, movie) = users[user] @ movies[movie] + offset[movie]``."""

    users: torch.Tensor
    movies: torch.Tensor
    offset: torch.Tensor | None = None


class FeatureTensors:
    """A dataset's movie features as tensors on one device, with vectorised row gathering.

    ``tag_rank`` / ``genome_rank`` > 0 also hold each movie's tag bag (genome relevance
    weights) projected on a fixed basis of that many columns, at most the feature count
    (:func:`~movierec.features.low_rank_basis`, computed here once, or taken from ``bases``, a
    trained model's), so that the encoder reads ``rank`` numbers per movie instead of its whole
    bag or genome row. With every block projected, ``inputs`` holds them side by side with the
    genre weights (and the no-genome flag), for the encoder as one product
    (:meth:`~movierec.model.ContentEncoder.input_map`)."""

    def __init__(self, features: MovieFeatures, device: torch.device | str = "cpu",
                 tag_rank: int = 0, genome_rank: int = 0,
                 bases: dict[str, np.ndarray] | None = None) -> None:
        def bags(b: Csr) -> tuple[torch.Tensor, ...]:
            return (torch.as_tensor(b.offsets, device=device),
                    torch.as_tensor(b.indices, device=device),
                    torch.as_tensor(b.weights, device=device))

        self.n_movies = features.n_movies
        self.tags = bags(features.tags)
        self.genres = bags(features.genres)
        self.genome = self.genome_mask = None
        if features.genome is not None:
            self.genome = torch.as_tensor(features.genome, device=device)
            self.genome_mask = torch.as_tensor(features.genome_mask, device=device)
        bases = dict(bases or {})
        inputs = {"tag": (tag_rank, lambda: bag_matrix(features.tags, len(features.tag_vocab)))}
        if features.genome is not None:
            inputs["genome"] = (genome_rank, lambda: genome_weights(features.genome,
                                                                    features.genome_mask))
        elif genome_rank or "genome" in bases:
            raise ValueError("genome_rank > 0 needs features with a genome")
        self.bases: dict[str, torch.Tensor] = {}
        self.low: dict[str, torch.Tensor] = {}  # block -> (n_movies, rank) projected features
        self.kept: dict[str, float] = {}  # block -> share of the features' energy kept
        for block, (rank, rows) in inputs.items():
            if not rank and block not in bases:
                continue
            x = rows()
            if block in bases:
                basis = np.asarray(bases[block], np.float32)
            else:  # a rank above the feature count keeps every feature (a rotation)
                basis, self.kept[block] = low_rank_basis(x, min(rank, x.shape[1]))
            self.bases[block] = torch.as_tensor(basis, device=device)
            self.low[block] = torch.as_tensor(np.asarray(x @ basis, np.float32), device=device)
        # every block projected: the encoder's inputs side by side, so that it is one matmul
        self.inputs = self.genre_width = None
        if "tag" in self.low and (self.genome is None or "genome" in self.low):
            self.genre_width = int(features.genres.indices.max(initial=0)) + 1
            genre = bag_matrix(features.genres, self.genre_width).toarray().astype(np.float32)
            cols = [self.low["tag"], torch.as_tensor(genre, device=device)]
            if self.genome is not None:
                has = self.genome_mask.float().unsqueeze(1)
                cols += [self.low["genome"] * has, 1.0 - has]
            self.inputs = torch.cat(cols, 1)

    def rank(self, block: str) -> int:
        """Columns of ``block``'s projected features (0: the block is read whole)."""
        return self.bases[block].shape[1] if block in self.bases else 0

    @staticmethod
    def gather(bags: tuple[torch.Tensor, ...], rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(indices, offsets, weights) of the bags of ``rows``, for ``EmbeddingBag``."""
        offsets, indices, weights = bags
        starts = offsets[rows]
        lengths = offsets[rows + 1] - starts
        new_offsets = torch.cumsum(lengths, 0) - lengths
        total = int(lengths.sum())
        pos = torch.arange(total, device=rows.device) + torch.repeat_interleave(
            starts - new_offsets, lengths, output_size=total)
        return indices[pos], new_offsets, weights[pos]

    def arrays(self) -> dict[str, np.ndarray]:
        """The features as numpy arrays (genome rows only where a movie has scores), for a
        saved model (:mod:`movierec.artifact`)."""
        out = {}
        for name in ("tags", "genres"):
            for part, t in zip(("offsets", "indices", "weights"), getattr(self, name),
                               strict=True):
                out[f"{name}_{part}"] = t.cpu().numpy()
        if self.genome is not None:
            mask = self.genome_mask.cpu().numpy()
            out["genome_rows"] = np.flatnonzero(mask)
            out["genome"] = self.genome.cpu().numpy()[mask]
        return out
