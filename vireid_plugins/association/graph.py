"""Sparse neighbour graphs: the O(N·k) replacement of dense N x N distance matrices.

A :class:`NeighbourGraph` stores, in CSR form, the distances of the pairs ``(i, j)`` that matter (e.g. the
pairs whose k-reciprocal Jaccard distance is below 1); every pair not stored is at distance
``>= max_distance`` (1.0 for Jaccard distances). Rows hold their own diagonal entry (distance 0).
"""
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["NeighbourGraph"]


@dataclass
class NeighbourGraph:
    """CSR graph of ``num_nodes`` nodes.

    Attributes:
        indptr: ``(N + 1,)`` int64, row ``i`` spans ``indices[indptr[i]:indptr[i + 1]]``.
        indices: ``(nnz,)`` int64 column indices, sorted within each row.
        distances: ``(nnz,)`` float32 distances.
        max_distance: distance of every pair that is not stored.
    """

    indptr: torch.Tensor
    indices: torch.Tensor
    distances: torch.Tensor
    max_distance: float = 1.0

    @property
    def num_nodes(self) -> int:
        return self.indptr.numel() - 1

    @property
    def nnz(self) -> int:
        return self.indices.numel()

    def rows(self) -> torch.Tensor:
        """``(nnz,)`` row index of every stored entry."""
        return torch.repeat_interleave(torch.arange(self.num_nodes), self.indptr.diff())

    @classmethod
    def from_coo(cls, rows, cols, distances, num_nodes: int, max_distance: float = 1.0) -> "NeighbourGraph":
        """Build from unsorted ``(row, col, distance)`` triplets; duplicates must not occur."""
        rows, cols = torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)
        distances = torch.as_tensor(distances, dtype=torch.float32)
        order = torch.argsort(rows * num_nodes + cols)
        rows, cols, distances = rows[order], cols[order], distances[order]
        indptr = torch.zeros(num_nodes + 1, dtype=torch.int64)
        indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=num_nodes), 0)
        return cls(indptr, cols, distances, max_distance)

    @classmethod
    def from_dense(cls, dist: torch.Tensor, max_distance: float = 1.0) -> "NeighbourGraph":
        """Keep the entries ``< max_distance`` and the diagonal of an ``N x N`` distance matrix."""
        dist = torch.as_tensor(dist, dtype=torch.float32)
        keep = dist < max_distance
        keep.fill_diagonal_(True)
        rows, cols = keep.nonzero(as_tuple=True)
        return cls.from_coo(rows, cols, dist[rows, cols], dist.shape[0], max_distance)

    def to_dense(self) -> torch.Tensor:
        """``N x N`` float32 matrix; pairs not stored get ``max_distance``."""
        out = torch.full((self.num_nodes, self.num_nodes), self.max_distance, dtype=torch.float32)
        out[self.rows(), self.indices] = self.distances
        return out

    def to_scipy(self) -> sp.csr_matrix:
        """``scipy.sparse.csr_matrix`` with the same stored entries (explicit zeros kept)."""
        return sp.csr_matrix((self.distances.numpy(), self.indices.numpy(), self.indptr.numpy()),
                             shape=(self.num_nodes, self.num_nodes))

    def within(self, eps: float) -> "NeighbourGraph":
        """Sub-graph of the entries ``<= eps`` (the DBSCAN neighbourhoods)."""
        keep = self.distances <= eps
        rows = self.rows()[keep]
        indptr = torch.zeros_like(self.indptr)
        indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=self.num_nodes), 0)
        return NeighbourGraph(indptr, self.indices[keep], self.distances[keep], self.max_distance)

    def degree(self) -> np.ndarray:
        return self.indptr.diff().numpy()
