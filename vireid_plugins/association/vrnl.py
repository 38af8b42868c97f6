"""VRNL (varied regional neighbour learning): neighbour sets, camera filter and loss, as pure functions.

From Sun, Du, Gao, "A Multimodule Collaborative Framework for Unsupervised Visible-Infrared Person
Re-Identification with Channel Enhancement Modality" (§3.4), as TokenMatcher computes it (Liu et al., AAAI'25,
``train_sysu.py`` and ``ClusterMemory`` with instance indexes), with the camera filter of CALR.

* :func:`token_neighbours`: in each token space ``n``,
  ``N_n(i) = {j : s_n(i, j) > rho * max_j s_n(i, j)}`` (cosine ``s_n``, ``rho = 0.9``); the sets of the ``T``
  spaces are combined by keeping the ``j`` present in at least ``x`` of them (``x = T``: the intersection).
  Used for the pairs vv, rr (database = the query set: a sample is its own neighbour, ``s = 1`` is the maximum)
  and vr, rv. Computed in chunks from the exact top-``k`` of each space (:func:`~.neighbours.cross_knn`), never
  as a dense ``N x M`` matrix: the neighbour set is the part of the top-``k`` above the threshold, so ``k`` caps
  the set size; rows whose ``k``-th neighbour still passes are counted in ``truncated_rows`` and logged.
* :func:`camera_filter`: drops from ``N(i)`` the samples of ``i``'s camera that are not in ``i``'s
  intra-camera cluster (per-camera pseudo-labels; a per-camera outlier keeps only itself from its camera).
* :func:`vrnl_loss`: ``L_ab = (1 / sum_i |N(i)|) sum_i sum_{j in N^ab(i)} -log softmax_k(q_i . I^b_k / tau)[j]``
  over a batch, with the instance memory ``I^b`` of the database modality.

Neighbour sets are stored in CSR form (:class:`NeighbourSets`).
"""
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .neighbours import cross_knn

__all__ = ["NeighbourSets", "camera_filter", "token_neighbours", "vrnl_loss"]

logger = logging.getLogger("fastreid.vireid.vrnl")


@dataclass
class NeighbourSets:
    """Sparse neighbour lists of ``N`` queries into a database of ``num_columns`` samples (CSR).

    Attributes:
        indptr: ``(N + 1,)`` int64; row ``i`` spans ``indices[indptr[i]:indptr[i + 1]]``.
        indices: ``(nnz,)`` int64 database indices, ascending within each row.
        num_columns: ``M``, the database size.
        truncated_rows: rows whose set may have been cut by the top-``k`` cap (summed over token spaces).
    """

    indptr: torch.Tensor
    indices: torch.Tensor
    num_columns: int
    truncated_rows: int = 0

    @property
    def num_rows(self) -> int:
        return self.indptr.numel() - 1

    def counts(self) -> torch.Tensor:
        """``(N,)`` set sizes."""
        return self.indptr.diff()

    def rows(self) -> torch.Tensor:
        """``(nnz,)`` query index of every stored entry."""
        return torch.repeat_interleave(torch.arange(self.num_rows, device=self.indptr.device), self.counts())

    def select(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The entries of ``rows`` (``(B,)`` query indices, repeats allowed) as ``(position in rows, column)``."""
        rows = rows.to(self.indptr.device).long()
        starts, counts = self.indptr[rows], self.indptr[rows + 1] - self.indptr[rows]
        position = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), counts)
        offset = torch.arange(position.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[position]
        return position, self.indices[starts[position] + offset]

    def to_lists(self) -> list[list[int]]:
        """Python lists (for inspection and tests)."""
        bounds = self.indptr.tolist()
        flat = self.indices.tolist()
        return [flat[bounds[i]:bounds[i + 1]] for i in range(self.num_rows)]

    @classmethod
    def from_pairs(cls, rows: torch.Tensor, cols: torch.Tensor, num_rows: int, num_columns: int,
                   truncated_rows: int = 0) -> "NeighbourSets":
        """From unique ``(row, col)`` pairs in any order."""
        rows, cols = rows.long(), cols.long()
        order = torch.argsort(rows * num_columns + cols)
        indptr = torch.zeros(num_rows + 1, dtype=torch.long, device=rows.device)
        indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=num_rows), 0)
        return cls(indptr, cols[order], num_columns, truncated_rows)


def token_neighbours(queries: torch.Tensor, database: torch.Tensor, rho: float = 0.9, min_spaces: int | None = None,
                     k: int = 256, chunk_size: int = 4096) -> NeighbourSets:
    """Neighbour sets combined over the token spaces (module docstring).

    Args:
        queries: ``(N, T, D)`` per-token features (normalised per token here); ``(N, D)`` means ``T = 1``.
        database: ``(M, T, D)``; pass the query features themselves for vv / rr.
        rho: threshold ratio to each row's best similarity.
        min_spaces: ``x``, the number of token spaces a neighbour must appear in (default ``T``).
        k: top-``k`` cap per token space (capped at ``M``).
        chunk_size: query rows per similarity block (memory O(chunk_size * M)).

    Returns:
        :class:`NeighbourSets` with ``N`` rows into ``M`` columns.
    """
    if queries.dim() == 2:
        queries, database = queries[:, None], database[:, None]
    if queries.dim() != 3 or database.dim() != 3 or queries.shape[1:] != database.shape[1:]:
        raise ValueError(f"token_neighbours: expected (N, T, D) queries and (M, T, D) database, got "
                         f"{tuple(queries.shape)} and {tuple(database.shape)}")
    num_q, num_tokens, _ = queries.shape
    num_db = database.shape[0]
    min_spaces = num_tokens if min_spaces is None else int(min_spaces)
    if not 1 <= min_spaces <= num_tokens:
        raise ValueError(f"token_neighbours: min_spaces must be in [1, {num_tokens}], got {min_spaces}")
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"token_neighbours: rho must be in [0, 1], got {rho}")
    k = min(int(k), num_db)
    keys, truncated = [], 0
    for n in range(num_tokens):
        sims, idx = cross_knn(queries[:, n], database[:, n], k, chunk_size=chunk_size)
        keep = sims > rho * sims[:, :1]
        if k < num_db:
            truncated += int(keep[:, -1].sum())
        rows = torch.arange(num_q, device=idx.device)[:, None].expand_as(idx)
        keys.append(rows[keep] * num_db + idx[keep])
    if truncated:
        logger.warning(f"token_neighbours: {truncated} (row, token) neighbour sets reached the top-k cap k={k}; "
                       f"they may be incomplete (raise k)")
    unique, counts = torch.unique(torch.cat(keys), return_counts=True)  # sorted: row-major CSR order
    unique = unique[counts >= min_spaces]
    return NeighbourSets.from_pairs(unique // num_db, unique % num_db, num_q, num_db, truncated)


def camera_filter(neighbours: NeighbourSets, query_cams: torch.Tensor, database_cams: torch.Tensor,
                  query_cam_labels: torch.Tensor, database_cam_labels: torch.Tensor,
                  same_set: bool = False) -> NeighbourSets:
    """Drop same-camera neighbours outside the query's intra-camera cluster (CALR's filter).

    ``j`` stays in ``N(i)`` if its camera differs from ``i``'s, or if both carry the same intra-camera cluster label
    ``>= 0``, or (``same_set``) ``j == i``.

    Args:
        neighbours: sets of ``N`` queries into ``M`` database samples.
        query_cams, database_cams: ``(N,)``, ``(M,)`` camera ids.
        query_cam_labels, database_cam_labels: ``(N,)``, ``(M,)`` cluster labels from a clustering *within each
            camera* (only compared between samples of one camera; ``-1`` = outlier).
        same_set: queries and database are the same samples (vv, rr).

    Returns:
        The filtered :class:`NeighbourSets`.
    """
    n, m = neighbours.num_rows, neighbours.num_columns
    for name, tensor, size in (("query_cams", query_cams, n), ("database_cams", database_cams, m),
                               ("query_cam_labels", query_cam_labels, n),
                               ("database_cam_labels", database_cam_labels, m)):
        if tensor.shape != (size,):
            raise ValueError(f"camera_filter: {name} must have shape ({size},), got {tuple(tensor.shape)}")
    device = neighbours.indices.device
    rows, cols = neighbours.rows(), neighbours.indices
    q_cam, q_label = query_cams.to(device)[rows], query_cam_labels.to(device)[rows]
    same_camera = q_cam == database_cams.to(device)[cols]
    same_cluster = (q_label >= 0) & (q_label == database_cam_labels.to(device)[cols])
    keep = ~same_camera | same_cluster
    if same_set:
        keep |= rows == cols
    return NeighbourSets.from_pairs(rows[keep], cols[keep], n, m, neighbours.truncated_rows)


def vrnl_loss(queries: torch.Tensor, memory: torch.Tensor, neighbours: NeighbourSets, query_indices: torch.Tensor,
              temperature: float = 0.05) -> torch.Tensor:
    """Neighbour learning loss ``L_ab`` of one pair (§3.4).

    Args:
        queries: ``(B, d)`` batch features of modality ``a`` (normalised here).
        memory: ``(M, d)`` instance memory ``I^b`` of modality ``b`` (normalised here), without gradient.
        neighbours: the ``ab`` sets (:func:`token_neighbours`, :func:`camera_filter`) of all ``a`` samples.
        query_indices: ``(B,)`` dataset index of each query (a CA view uses its source image's index).
        temperature: ``tau``.

    Returns:
        Scalar ``(1 / sum_i |N(i)|) sum_i sum_{j in N(i)} -log softmax(q_i . I / tau)[j]``; 0 (still connected to
        ``queries``) when the batch has no neighbour.
    """
    if queries.dim() != 2 or memory.dim() != 2 or queries.shape[1] != memory.shape[1]:
        raise ValueError(f"vrnl_loss: expected (B, d) queries and (M, d) memory, got {tuple(queries.shape)} and "
                         f"{tuple(memory.shape)}")
    if memory.shape[0] != neighbours.num_columns or query_indices.shape != queries.shape[:1]:
        raise ValueError(f"vrnl_loss: memory has {memory.shape[0]} rows for neighbour sets into "
                         f"{neighbours.num_columns} samples; query_indices {tuple(query_indices.shape)} for "
                         f"{queries.shape[0]} queries")
    position, cols = neighbours.select(query_indices)
    q = F.normalize(queries.float(), dim=1)
    if position.numel() == 0:
        return q.sum() * 0.0
    bank = F.normalize(memory.detach().float(), dim=1).to(q.device)
    log_prob = F.log_softmax(q @ bank.T / temperature, dim=1)
    return -log_prob[position.to(q.device), cols.to(q.device)].mean()
