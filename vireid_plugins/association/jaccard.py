"""k-reciprocal Jaccard distance (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR'17), as Cluster-Contrast / ADCA / PGM compute it before DBSCAN.

Two implementations of the same distance:

* :func:`jaccard_distance_dense`: the plain dense ``N x N`` implementation. It follows the steps of
  Cluster-Contrast's ``compute_jaccard_distance(features, k1, k2, search_option=3)``, with Python loops over
  rows. It is the test oracle and the reference path of ``tools/benchmark_pseudo_labels.py``. Memory O(N^2).
* :func:`jaccard_distance`: a sparse, vectorised implementation with O(N·k) memory (plus O(chunk·N)
  work buffers). It returns a :class:`~vireid_plugins.association.graph.NeighbourGraph` that holds every
  pair at distance < 1, i.e. every pair whose encodings share support, and the diagonal.

Conventions of the reference code, followed by both implementations:

* Features are L2-normalised (done here); the original distance is ``d = 2 - 2·cos``, the squared
  Euclidean distance of unit vectors.
* ``initial_rank`` has ``k1`` columns, the ``k1`` nearest neighbours *including the point itself* (the
  reference runs ``faiss`` ``index.search(x, k1)``). The reference slices it with ``[:, :k1 + 1]``, which
  therefore reads only the ``k1`` columns. The half-size sets use ``round(k1 / 2) + 1`` columns (numpy
  rounding, half to even). Query expansion uses the first ``k2`` columns (self included).
* Eq. (3) is used with a strict ``>``: a candidate's half set is added when
  ``|R(c, k1/2) ∩ R(i, k1)| > 2/3 · |R(c, k1/2)|``. The overlap is measured against the *unexpanded* set.
* Eq. (6) uses ``V[i, j] = softmax_j(-d(i, j))`` over the expanded set, so every row of ``V`` sums to 1.
  With rows summing to 1, ``sum max = 2 - sum min`` and Eq. (8) becomes ``1 - m / (2 - m)`` with
  ``m = sum_k min(V[i, k], V[j, k])``. Negative results are clipped to 0.
* Query expansion, Eq. (9), runs only when ``k2 != 1``: ``V[i] <- mean_{a < k2} V[initial_rank[i, a]]``.

Equation numbers refer to Zhong et al., CVPR'17: (2) k-reciprocal set ``R(p, k)``, (3) its expansion
``R*(p, k)``, (6) Gaussian-kernel encoding ``V``, (7)-(8) weighted Jaccard distance via min / max, (9) local
query expansion.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from vireid_plugins.association.graph import NeighbourGraph

__all__ = ["jaccard_distance", "jaccard_distance_dense", "knn"]


# --------------------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------------------
def _normalize(features: torch.Tensor) -> torch.Tensor:
    if features.dim() != 2:
        raise ValueError(f"features must be N x D, got shape {tuple(features.shape)}")
    return F.normalize(features.detach().float(), dim=1)


def _column_counts(n: int, k1: int, k2: int) -> tuple[int, int, int]:
    """Columns of ``initial_rank`` read by the reference: ``(k1, round(k1/2) + 1, k2)``, each capped."""
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    num_rank = min(k1, n)
    num_half = min(int(np.around(k1 / 2)) + 1, num_rank)
    num_qe = min(k2, num_rank)
    return num_rank, num_half, num_qe


@contextmanager
def _timed(timings: dict | None, name: str, device: torch.device):
    """Add the wall time of the block to ``timings[name]`` (synchronising CUDA), if ``timings`` is a dict."""
    if timings is None:
        yield
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def _contains(sorted_keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Membership of ``queries`` (any shape) in the sorted 1-D tensor ``sorted_keys``."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(queries, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, queries).clamp_(max=sorted_keys.numel() - 1)
    return sorted_keys[pos] == queries


def _ragged_arange(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Concatenation of ``arange(s, s + c)`` over ``zip(starts, counts)``, without a Python loop."""
    total = int(counts.sum())
    offsets = torch.cumsum(counts, 0) - counts
    return torch.repeat_interleave(starts - offsets, counts, output_size=total) + torch.arange(
        total, device=starts.device)


def _topk_merge(values: torch.Tensor, indices: torch.Tensor, new_values: torch.Tensor,
                new_indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.cat([values, new_values], 1)
    i = torch.cat([indices, new_indices], 1)
    v, pos = v.topk(k, dim=1)
    return v, i.gather(1, pos)


# --------------------------------------------------------------------------------------------------------------
# k nearest neighbours
# --------------------------------------------------------------------------------------------------------------
def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _merge_candidates(best_v: torch.Tensor, best_i: torch.Tensor, rows: torch.Tensor, cand_i: torch.Tensor,
                      cand_v: torch.Tensor) -> None:
    """Merge ragged candidates ``(rows, cand_i, cand_v)`` into the running top-k lists, in place."""
    k = best_v.shape[1]
    order = torch.sort(rows, stable=True).indices
    rows, cand_i, cand_v = rows[order], cand_i[order], cand_v[order]
    uniq, counts = torch.unique_consecutive(rows, return_counts=True)
    width = int(counts.max())
    group = torch.repeat_interleave(torch.arange(uniq.numel(), device=rows.device), counts, output_size=rows.numel())
    slot = torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[group]
    pad_v = torch.full((uniq.numel(), width), float("-inf"), device=rows.device)
    pad_i = torch.zeros((uniq.numel(), width), dtype=torch.int64, device=rows.device)
    pad_v[group, slot] = cand_v
    pad_i[group, slot] = cand_i
    best_v[uniq], best_i[uniq] = _topk_merge(best_v[uniq], best_i[uniq], pad_v, pad_i, k)


@torch.no_grad()
def knn(features: torch.Tensor, k: int, chunk_size: int = 2048,
        use_faiss: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours of every row of ``features`` among all rows, by cosine similarity.

    Each point is its own neighbour (normally in column 0), as in the reference's faiss search.

    The torch path computes only the block upper triangle of the similarity matrix ``X Xᵀ`` (half the flops of
    a full search): first the diagonal blocks, which seed every row's top-k list; then, for each row block
    ``I``, ``S = X_I X_{J > I}ᵀ`` updates the rows of ``I`` by a row-wise top-k and the later rows by
    *pruned* column-wise candidates: only the entries ``S[i, j] >= `` (current k-th best similarity of ``j``)
    can enter ``j``'s list, and thresholds only grow, so the pruning is exact.

    Args:
        features: ``(N, D)`` float tensor on CPU or CUDA; rows are L2-normalised here.
        k: neighbours per row (capped at ``N``).
        chunk_size: rows per block; work memory O(chunk_size · N).
        use_faiss: ``True`` runs faiss ``IndexFlatIP`` (CPU tensors only), ``False`` the torch path. ``None``
            picks the torch path: on the 2-core benchmark machine it beat faiss's full search (it does half the
            flops).

    Returns:
        ``(sims, indices)``: ``(N, k)`` float32 cosine similarities in descending order and ``(N, k)`` int64
        neighbour indices, on the features' device. Memory O(N·k). The neighbour *sets* equal those of a
        brute-force search, except when exact ties straddle the k-th place.
    """
    x = _normalize(features)
    n = x.shape[0]
    k = min(int(k), n)
    if use_faiss is None:
        use_faiss = False
    if use_faiss:
        if x.device.type != "cpu":
            raise ValueError("the faiss path takes CPU tensors")
        import faiss

        index = faiss.IndexFlatIP(x.shape[1])
        xn = np.ascontiguousarray(x.numpy())
        index.add(xn)
        sims, idx = index.search(xn, k)
        return torch.from_numpy(sims), torch.from_numpy(idx).long()

    step = max(1, int(chunk_size))
    best_v = torch.full((n, k), float("-inf"), device=x.device)
    best_i = torch.zeros((n, k), dtype=torch.int64, device=x.device)
    # Diagonal blocks: every row's list starts from its own block.
    for s0 in range(0, n, step):
        e0 = min(s0 + step, n)
        v, i = (x[s0:e0] @ x[s0:e0].T).topk(min(k, e0 - s0), dim=1)
        best_v[s0:e0, :v.shape[1]], best_i[s0:e0, :v.shape[1]] = v, i + s0
    # Off-diagonal blocks, upper triangle only.
    for s0 in range(0, n, step):
        e0 = min(s0 + step, n)
        if e0 >= n:
            break
        sim = x[s0:e0] @ x[e0:].T  # (b, n - e0)
        v, i = sim.topk(min(k, n - e0), dim=1)
        best_v[s0:e0], best_i[s0:e0] = _topk_merge(best_v[s0:e0], best_i[s0:e0], v, i + e0, k)
        # Later rows j >= e0: candidates of block I that reach j's current k-th best similarity.
        ci, cj = (sim >= best_v[e0:, k - 1]).nonzero(as_tuple=True)
        if ci.numel():
            _merge_candidates(best_v, best_i, cj + e0, ci + s0, sim[ci, cj])
        del sim
    return best_v, best_i


# --------------------------------------------------------------------------------------------------------------
# Dense oracle
# --------------------------------------------------------------------------------------------------------------
def _k_reciprocal_neigh(initial_rank: np.ndarray, i: int, cols: int) -> np.ndarray:
    """Eq. (2): ``R(i) = {j in N(i) : i in N(j)}`` with ``N(.)`` the first ``cols`` columns of the rank."""
    forward = initial_rank[i, :cols]
    backward = initial_rank[forward, :cols]
    return forward[np.where(backward == i)[0]]


@torch.no_grad()
def jaccard_distance_dense(features: torch.Tensor, k1: int = 30, k2: int = 6,
                           timings: dict | None = None) -> torch.Tensor:
    """Dense k-reciprocal Jaccard distance: the reference implementation, loop over rows.

    Steps (as Cluster-Contrast's ``compute_jaccard_distance``):

    1. ``original_dist = 2 - 2 · X Xᵀ`` (dense ``N x N``), ``initial_rank`` = its ``k1`` nearest per row.
    2. Eq. (2) reciprocal sets with ``k1`` and ``round(k1/2)+1`` columns; Eq. (3) expansion (strict ``> 2/3``).
    3. Eq. (6): ``V[i, R*(i)] = softmax(-original_dist[i, R*(i)])`` (dense ``N x N`` float32).
    4. Eq. (9): if ``k2 != 1``, ``V[i] = mean(V[initial_rank[i, :k2]])``.
    5. Eq. (8): inverted index of ``V``'s columns; ``m = sum_k min(V[i,k], V[j,k])``, ``d = 1 - m / (2 - m)``;
       clip negatives to 0.

    Args:
        features: ``(N, D)`` features (any device; computed on CPU).
        k1, k2: the k-reciprocal and query-expansion neighbourhood sizes.
        timings: optional dict that receives the seconds of each step.

    Returns:
        ``(N, N)`` float32 CPU tensor. Memory O(N^2) (three ``N x N`` float32 matrices at once).
    """
    x = _normalize(features).cpu()
    n = x.shape[0]
    num_rank, num_half, num_qe = _column_counts(n, k1, k2)

    cpu = torch.device("cpu")
    # 1. Dense original distance and initial ranking (ranked by similarity: the same order as the distance,
    #    without the float32 ties that rounding 2 - 2·cos can create).
    with _timed(timings, "knn", cpu):
        sim = x @ x.T
        initial_rank = sim.topk(num_rank, dim=1).indices.numpy()
        original_dist = sim.mul_(-2.0).add_(2.0).numpy()  # in place: 2 - 2·cos
        del sim

    # 2. Eq. (2) reciprocal sets, full and half size.
    t_expand = _timed(timings, "expansion+V", cpu)
    t_expand.__enter__()
    nn_k1 = [_k_reciprocal_neigh(initial_rank, i, num_rank) for i in range(n)]
    nn_k1_half = [_k_reciprocal_neigh(initial_rank, i, num_half) for i in range(n)]

    # 2-3. Eq. (3) expansion and Eq. (6) encoding, one row at a time.
    V = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        k_reciprocal_index = nn_k1[i]
        expansion = k_reciprocal_index
        for candidate in k_reciprocal_index:
            candidate_index = nn_k1_half[candidate]
            if len(np.intersect1d(candidate_index, k_reciprocal_index)) > 2 / 3 * len(candidate_index):
                expansion = np.append(expansion, candidate_index)
        expansion = np.unique(expansion)
        dist = torch.from_numpy(original_dist[i, expansion])
        V[i, expansion] = F.softmax(-dist, dim=0).numpy()
    del original_dist, nn_k1, nn_k1_half
    t_expand.__exit__(None, None, None)

    # 4. Eq. (9) local query expansion.
    if k2 != 1:
        with _timed(timings, "query_expansion", cpu):
            V_qe = np.zeros_like(V)
            for i in range(n):
                V_qe[i, :] = np.mean(V[initial_rank[i, :num_qe], :], axis=0)
            V = V_qe
            del V_qe

    # 5. Eq. (8) through an inverted index (rows holding each column), as the reference does.
    #    Built from one row-major nonzero scan instead of N strided column scans (same lists).
    with _timed(timings, "jaccard", cpu):
        nz_rows, nz_cols = np.nonzero(V)
        order = np.argsort(nz_cols, kind="stable")
        splits = np.cumsum(np.bincount(nz_cols, minlength=n))[:-1]
        inv_index = np.split(nz_rows[order], splits)
        del nz_rows, nz_cols, order

        jaccard = np.zeros((n, n), dtype=np.float32)
        for i in range(n):
            temp_min = np.zeros(n, dtype=np.float32)
            ind_non_zero = np.where(V[i, :] != 0)[0]
            for k in ind_non_zero:
                rows = inv_index[k]
                temp_min[rows] = temp_min[rows] + np.minimum(V[i, k], V[rows, k])
            jaccard[i] = 1 - temp_min / (2 - temp_min)
        del inv_index, V
        jaccard[jaccard < 0] = 0.0
    return torch.from_numpy(jaccard)


# --------------------------------------------------------------------------------------------------------------
# Sparse implementation
# --------------------------------------------------------------------------------------------------------------
def _reciprocal_mask(rank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (2) on all rows at once. ``rank``: ``(N, c)`` neighbour lists.

    Returns ``mask`` (``(N, c)`` bool, ``mask[i, a]`` iff ``i`` is among the neighbours of ``rank[i, a]``) and
    the sorted keys ``i * N + j`` of the reciprocal pairs.
    """
    n = rank.shape[0]
    row = torch.arange(n, device=rank.device).unsqueeze(1)
    forward_keys = torch.sort((row * n + rank).flatten()).values
    mask = _contains(forward_keys, rank * n + row)
    recip_keys = torch.sort((row * n + rank)[mask]).values
    return mask, recip_keys


def _row_chunks(work: torch.Tensor, max_work: int, max_rows: int) -> list[tuple[int, int]]:
    """Split rows ``0..N`` into consecutive chunks of total ``work`` <= ``max_work`` and <= ``max_rows`` rows."""
    n = work.numel()
    cum = torch.cumsum(work.to("cpu", torch.int64), 0)
    chunks, start = [], 0
    while start < n:
        base = int(cum[start - 1]) if start > 0 else 0
        end = int(torch.searchsorted(cum, torch.tensor(base + max_work), right=True))
        end = min(max(end, start + 1), start + max_rows, n)
        chunks.append((start, end))
        start = end
    return chunks


def _expanded_sets(rank: torch.Tensor, num_half: int, chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (2)-(3) for all rows. Returns the sorted keys ``i * N + j`` of ``j in R*(i)`` and the reciprocal mask."""
    n, num_rank = rank.shape
    dev = rank.device
    recip, recip_keys = _reciprocal_mask(rank)
    rank_half = rank[:, :num_half].contiguous()
    recip_half, _ = _reciprocal_mask(rank_half)
    half_len = recip_half.sum(1).double()  # |R(c, k1/2)|

    keys = []
    for r0 in range(0, n, chunk_rows):
        r1 = min(r0 + chunk_rows, n)
        row = torch.arange(r0, r1, device=dev).view(-1, 1, 1)
        cand = rank[r0:r1]  # (b, K) candidates c (valid where recip)
        cand_ok = recip[r0:r1]
        members = rank_half[cand]  # (b, K, Kh) elements of R(c, k1/2) where member_ok
        member_ok = recip_half[cand]
        in_r = _contains(recip_keys, row * n + members)  # element of R(c, k1/2) also in R(i, k1)?
        overlap = (member_ok & in_r).sum(2).double()
        accept = cand_ok & (overlap > 2 / 3 * half_len[cand])
        own = (row[:, :, 0] * n + cand)[cand_ok]
        added = (row * n + members)[accept.unsqueeze(2) & member_ok]
        keys.append(torch.unique(torch.cat([own, added])))
    return torch.cat(keys), recip


def _segment_sum(values: torch.Tensor, segment: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Deterministic per-segment sum (``index_put_`` with ``accumulate`` is serial on CPU, sort-based on CUDA)."""
    out = torch.zeros(num_segments, dtype=values.dtype, device=values.device)
    return out.index_put_((segment,), values, accumulate=True)


def _pair_similarities(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, knn_sims: torch.Tensor,
                       rank: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """Cosine similarity of the pairs ``(rows, cols)``: looked up in the kNN lists, computed for the rest."""
    n, num_rank = rank.shape
    knn_keys = (torch.arange(n, device=x.device).unsqueeze(1) * n + rank).flatten()
    knn_keys, order = torch.sort(knn_keys)
    knn_vals = knn_sims.flatten()[order]
    keys = rows * n + cols
    pos = torch.searchsorted(knn_keys, keys).clamp_(max=knn_keys.numel() - 1)
    found = knn_keys[pos] == keys
    sims = torch.where(found, knn_vals[pos], torch.zeros((), device=x.device))
    missing = (~found).nonzero().flatten()
    for s in range(0, missing.numel(), chunk):
        m = missing[s:s + chunk]
        sims[m] = (x[rows[m]] * x[cols[m]]).sum(1)
    return sims


def _query_expansion(indptr: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, rank_qe: torch.Tensor,
                     chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. (9): CSR of ``V_qe[i] = mean_a V[rank_qe[i, a]]`` (gather the neighbours' rows, merge duplicates)."""
    n, num_qe = rank_qe.shape
    dev = cols.device
    row_len = indptr.diff()
    out_rows, out_cols, out_vals = [], [], []
    for r0 in range(0, n, chunk_rows):
        r1 = min(r0 + chunk_rows, n)
        src = rank_qe[r0:r1].flatten()
        counts = row_len[src]
        pos = _ragged_arange(indptr[src], counts)
        dst_row = torch.repeat_interleave(torch.arange(r0, r1, device=dev).repeat_interleave(num_qe), counts,
                                          output_size=pos.numel())
        keys = dst_row * n + cols[pos]
        uniq, inverse = torch.unique(keys, return_inverse=True)
        summed = _segment_sum(vals[pos], inverse, uniq.numel())
        out_rows.append(uniq // n)
        out_cols.append(uniq % n)
        out_vals.append(summed / num_qe)
    rows = torch.cat(out_rows)
    new_indptr = torch.zeros(n + 1, dtype=torch.int64, device=dev)
    new_indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    return new_indptr, torch.cat(out_cols), torch.cat(out_vals)


def _jaccard_upper(indptr: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, max_work: int,
                   max_buffer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. (7)-(8) for the pairs ``i < j`` that share support.

    For every stored ``V[i, k]`` the inverted list of column ``k`` (CSC, rows sorted) is read from the position
    of ``i`` onwards, so each pair is met once per shared column. ``min(V[i,k], V[j,k])`` is accumulated into a
    dense ``(rows of chunk) x (N - r0)`` buffer, then the buffer's nonzeros are the pairs with common support.
    """
    n = indptr.numel() - 1
    dev = cols.device
    nnz = cols.numel()
    rows = torch.repeat_interleave(torch.arange(n, device=dev), indptr.diff(), output_size=nnz)
    # CSC: stable sort by column keeps the rows sorted inside every column.
    csc_order = torch.sort(cols, stable=True).indices
    csc_rows, csc_vals = rows[csc_order], vals[csc_order]
    colptr = torch.zeros(n + 1, dtype=torch.int64, device=dev)
    colptr[1:] = torch.cumsum(torch.bincount(cols, minlength=n), 0)
    csc_pos = torch.empty_like(csc_order)
    csc_pos[csc_order] = torch.arange(nnz, device=dev)  # CSC position of every CSR entry
    # Entries of the inverted list from the entry itself to the end of its column (j >= i).
    tail = colptr[cols + 1] - csc_pos
    row_work = _segment_sum(tail, rows, n)

    out_i, out_j, out_m = [], [], []
    max_rows = max(1, max_buffer // max(n, 1))
    for r0, r1 in _row_chunks(row_work, max_work, max_rows):
        e0, e1 = int(indptr[r0]), int(indptr[r1])
        counts = tail[e0:e1]
        pos = _ragged_arange(csc_pos[e0:e1] + 1, counts - 1)  # strictly after i: j > i
        reps = counts - 1
        total = pos.numel()
        vi = torch.repeat_interleave(vals[e0:e1], reps, output_size=total)
        li = torch.repeat_interleave(rows[e0:e1] - r0, reps, output_size=total)
        j = csc_rows[pos]
        width = n - r0
        acc = torch.zeros((r1 - r0) * width, dtype=torch.float32, device=dev)
        acc.index_put_((li * width + (j - r0),), torch.minimum(vi, csc_vals[pos]), accumulate=True)
        acc = acc.view(r1 - r0, width)
        li_nz, jj_nz = acc.nonzero(as_tuple=True)
        out_m.append(acc[li_nz, jj_nz])
        out_i.append(li_nz + r0)
        out_j.append(jj_nz + r0)
        del acc, pos, vi, li, j
    return torch.cat(out_i), torch.cat(out_j), torch.cat(out_m)


@torch.no_grad()
def jaccard_distance(features: torch.Tensor, k1: int = 30, k2: int = 6, chunk_size: int = 2048,
                     use_faiss: bool | None = None, max_work: int = 1 << 23,
                     max_buffer: int = 1 << 25, timings: dict | None = None) -> NeighbourGraph:
    """Sparse k-reciprocal Jaccard distance; equals :func:`jaccard_distance_dense` on every pair.

    Steps, all vectorised over rows (Python loops only over chunks):

    1. ``initial_rank``: exact kNN (:func:`knn`, ``k1`` columns). O(N·k1) memory, O(chunk·N) work buffer.
    2. Eq. (2): reciprocity ``i in N(rank[i, a])`` by binary search of the sorted keys ``i·N + j``.
    3. Eq. (3): for every candidate ``c in R(i, k1)`` the overlap ``|R(c, k1/2) ∩ R(i, k1)|`` on a
       ``(rows, k1, k1/2+1)`` tensor per chunk; accepted half sets are merged by ``unique`` on keys.
    4. Eq. (6): ``V`` as CSR values ``softmax(-(2 - 2 cos))`` per row (similarities from the kNN lists
       where available). ``nnz(V) = sum_i |R*(i)|``.
    5. Eq. (9): ``V_qe`` by gathering the ``k2`` neighbours' CSR rows and merging duplicate columns.
    6. Eq. (8): inverted index = CSC of ``V_qe``; ``m(i, j) = sum_k min(V[i,k], V[j,k])`` accumulated for
       ``i < j`` per chunk of rows, ``d = max(0, 1 - m / (2 - m))``, mirrored to ``(j, i)``; diagonal = 0.

    Args:
        features: ``(N, D)`` features on CPU or CUDA (L2-normalised here).
        k1, k2: neighbourhood sizes (ADCA / Cluster-Contrast use 30 and 6).
        chunk_size: kNN block rows (work buffer ``chunk_size x N`` float32).
        use_faiss: passed to :func:`knn`.
        max_work: bound on the (pair, shared column) terms materialised per chunk in step 6.
        max_buffer: bound on the elements of the dense accumulation buffer per chunk in step 6.
        timings: optional dict that receives the seconds of each step.

    Returns:
        :class:`NeighbourGraph` on CPU with every pair at distance < 1 (the pairs whose ``V_qe`` rows share
        support) and the diagonal at 0; pairs not stored are at distance 1. Memory O(N·k1·k2·|R*|) for the
        sparse encodings plus the chunk buffers; no ``N x N`` array is allocated.
    """
    x = _normalize(features)
    n = x.shape[0]
    dev = x.device
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return NeighbourGraph(torch.zeros(1, dtype=torch.int64), empty, torch.zeros(0), 1.0)
    num_rank, num_half, num_qe = _column_counts(n, k1, k2)
    chunk_rows = max(1, (1 << 22) // (num_rank * num_half))

    # 1. initial ranking
    with _timed(timings, "knn", dev):
        knn_sims, rank = knn(x, num_rank, chunk_size=chunk_size, use_faiss=use_faiss)
        rank = rank.to(dev)
        knn_sims = knn_sims.to(dev)

    # 2-3. expanded k-reciprocal sets R*(i), as sorted keys i * n + j
    with _timed(timings, "expansion", dev):
        keys, _ = _expanded_sets(rank, num_half, chunk_rows)
        rows, cols = keys // n, keys % n
        del keys

    # 4. Eq. (6): V[i, j] = softmax over R*(i) of -(2 - 2 cos)
    with _timed(timings, "V", dev):
        sims = _pair_similarities(x, rows, cols, knn_sims, rank)
        logits = 2.0 * sims - 2.0  # = -(2 - 2 cos) <= 0 up to rounding
        row_max = torch.full((n,), float("-inf"), device=dev).scatter_reduce_(0, rows, logits, "amax")
        weights = torch.exp(logits - row_max[rows])
        vals = weights / _segment_sum(weights, rows, n)[rows]
        indptr = torch.zeros(n + 1, dtype=torch.int64, device=dev)
        indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
        del sims, logits, weights, rows

    # 5. Eq. (9): local query expansion
    if k2 != 1:
        with _timed(timings, "query_expansion", dev):
            indptr, cols, vals = _query_expansion(indptr, cols, vals, rank[:, :num_qe].contiguous(), chunk_rows)

    # 6. Eq. (8): Jaccard distance of the pairs that share support
    with _timed(timings, "jaccard", dev):
        ii, jj, m = _jaccard_upper(indptr, cols, vals, max_work, max_buffer)
        dist = (1.0 - m / (2.0 - m)).clamp_(min=0.0)
    with _timed(timings, "graph", dev):
        diag = torch.arange(n, device=dev)
        all_rows = torch.cat([ii, jj, diag]).cpu()
        all_cols = torch.cat([jj, ii, diag]).cpu()
        all_dist = torch.cat([dist, dist, torch.zeros(n, device=dev)]).cpu()
        graph = NeighbourGraph.from_coo(all_rows, all_cols, all_dist, n, max_distance=1.0)
    return graph
