"""Official SYSU-MM01, RegDB and LLCM ranking metrics (CMC, mAP, mINP), vectorised.

This is a re-implementation of ``eval_sysu`` / ``eval_regdb`` from the reference cross-modality
code (mangye16/Cross-Modal-Re-ID-baseline ``eval_metrics.py``, copied verbatim by ADCA, PGM, GUR,
MULT), without its Python loop over queries. Given a ``num_q x num_g`` distance matrix (smaller =
more similar), each query ranks the gallery by ascending distance and:

* AP  = mean over the true matches of ``(number of matches so far) / (rank of the match)``;
* INP = ``(number of matches) / (rank of the last, hardest match)``;
* CMC[k] = fraction of the queries whose first true match is within the top ``k + 1``.

mAP and mINP are the means of AP and INP over the *valid* queries (those with at least one true
match in the kept gallery). All values are fractions in [0, 1], as in the reference code (not x100).

Quirks of the reference code, all reproduced:

1. **Camera 3 never sees camera 2.** A query from camera 3 drops *every* gallery image from
   camera 2, whatever its pid (the reference comment says "same pid", its code does not check it;
   this is the official SYSU-MM01 rule "probe images of camera 3 skip the gallery images of
   camera 2"). Ranks are then counted in the kept list.
2. **SYSU CMC is identity-deduplicated.** Only the first occurrence of each gallery pid in the
   ranked, kept list counts, so CMC[k] asks whether the query's identity is among the first
   ``k + 1`` distinct identities. mAP and mINP use the full (non-deduplicated) kept list.
3. **SYSU CMC divides by the valid queries only**, although the reference sums the rows of all
   queries: a query without a match contributes a row of zeros to the numerator and nothing to
   the denominator. mAP and mINP average over the valid queries.
4. **Pids are compared as numbers.** Inputs (numpy arrays, torch tensors, sequences) are converted
   to numpy arrays; non-numeric ids (e.g. the strings ``"0001"``) are converted to integers.
5. **max_rank.** As in the reference, ``max_rank`` is first clamped to the gallery size (with a
   warning instead of a print), so ``cmc`` has ``min(max_rank, num_g)`` entries. Where the reference
   would then crash on inhomogeneous shapes -- in SYSU, some query keeps fewer distinct gallery
   identities than ``max_rank`` -- a ``ValueError`` naming ``max_rank`` and the gallery size is raised
   instead. (When *all* queries keep the same too-short list the reference silently returns a
   shorter curve; this implementation raises in that case too, so ``cmc`` always has the length
   stated above.)

RegDB uses the standard CMC (no deduplication) and removes nothing (its removal rule can never
fire); AP and INP are computed exactly as for SYSU.

LLCM (``eval_llcm`` of ZYK100/LLCM, a copy of ``eval_sysu``) keeps quirks 2, 3 and 5 but replaces quirk 1:
a query drops the gallery items of its own identity taken by its own camera (LLCM's 9 cameras have the same
numbers in both modalities).

:func:`eval_cross_camera` is the single-modality Market-1501 rule (fast-reid's ``eval_market1501``): a
query drops the gallery items of its own identity *and* camera, so every match is found across cameras;
standard CMC over the kept list. It measures within-modality retrieval (visible->visible,
infrared->infrared) with the same AP / INP / CMC code.

Other choices:

* **Ties.** The reference ranks with ``np.argsort(distmat, axis=1)`` (quicksort, not stable), so
  equal distances are ordered arbitrarily there. Here ties are broken by gallery index, exactly as
  ``np.argsort(..., kind="stable")``. Rows without ties are identical under both sorts.
* **Errors.** No valid query raises ``ValueError`` (the reference uses ``assert``); a NaN distance
  raises ``ValueError`` (its rank would be ill-defined).

How it is vectorised (no loop over queries, and no argsort of the whole matrix):

* removed items get the score +inf; each row is sorted by value (``np.sort``, several times faster
  than ``argsort``). A row with two equal finite scores, or with an infinite distance, has its
  scores replaced by its stable ranks, so kept items have distinct finite scores ordered exactly
  like the stable sort;
* a query's true matches are gathered into a (num_q, M) +inf-padded matrix (M = size of the largest
  gallery identity) and sorted; their 0-based ranks among the kept items are the number of smaller
  scores, found by a binary search run on all of them at once. AP, INP and the standard CMC follow
  from these ranks;
* for the deduplicated CMC, the query's identity is preceded by exactly the identities whose best
  kept score is below its first match; the best score per (query, identity) is one scatter-min
  (``np.minimum.at``).

The cost is O(num_q * num_g * log num_g), dominated by the sort (about 20 ms for the SYSU
all-search size, 3,803 x 301, on one CPU core).
"""
import warnings
from typing import Dict, NamedTuple, Sequence, Tuple

import numpy as np
import torch

__all__ = ["eval_sysu", "eval_llcm", "eval_regdb", "eval_cross_camera", "summarize_trials", "sysu_removed",
           "llcm_removed"]

Result = Tuple[np.ndarray, float, float]

_QUERY_CAM_WITHOUT_GALLERY_CAM = (3, 2)  # quirk 1: camera-3 queries skip camera-2 gallery images
_SUMMARY_RANKS = (1, 5, 10, 20)


class _Hits(NamedTuple):
    """Per-query statistics of the true matches, restricted to the valid queries."""

    valid: np.ndarray  # (num_q,) bool, query has at least one true match
    ap: np.ndarray  # (num_valid,) average precision
    inp: np.ndarray  # (num_valid,) inverse negative penalty
    first_rank: np.ndarray  # (num_valid,) 0-based rank of the first true match among the kept items


def eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 20) -> Result:
    """SYSU-MM01 metrics with the official rules (camera-3/camera-2 removal, deduplicated CMC).

    Args:
        distmat: (num_q, num_g) distances, smaller = more similar (numpy array or torch tensor).
        q_pids, q_camids: (num_q,) query identities and cameras.
        g_pids, g_camids: (num_g,) gallery identities and cameras.
        max_rank: length of the CMC curve (clamped to num_g, see the module docstring).

    Returns:
        ``(cmc, mAP, mINP)``: cmc a float32 array of ``min(max_rank, num_g)`` values, mAP and mINP
        Python floats in [0, 1].
    """
    return _eval_deduplicated(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, sysu_removed)


def eval_llcm(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 20) -> Result:
    """LLCM metrics with the official rules of ``eval_llcm`` (ZYK100/LLCM ``eval_metrics.py``).

    Identical to :func:`eval_sysu` (deduplicated CMC over the valid queries, mAP and mINP on the full kept
    list) except for the removal rule: a query drops the gallery items of its own identity *and* camera
    (:func:`llcm_removed`; LLCM numbers its 9 cameras alike in both modalities, a camera records visible
    images by day and near-infrared ones at night). Arguments and return value as :func:`eval_sysu`.
    """
    return _eval_deduplicated(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, llcm_removed)


def sysu_removed(q_pids, g_pids, q_camids, g_camids) -> np.ndarray:
    """(num_q, num_g) bool, True where SYSU-MM01's protocol drops the gallery item from the query's ranking:
    a camera-3 query drops every camera-2 item, whatever its pid (quirk 1)."""
    q_cam, g_cam = _QUERY_CAM_WITHOUT_GALLERY_CAM
    q_camids, g_camids = _to_numpy(q_camids), _to_numpy(g_camids)
    return (q_camids == q_cam)[:, None] & (g_camids == g_cam)[None, :]


def llcm_removed(q_pids, g_pids, q_camids, g_camids) -> np.ndarray:
    """(num_q, num_g) bool, True where LLCM's protocol drops the gallery item: same identity and same camera."""
    q_pids, g_pids, q_camids, g_camids = (_to_numpy(x) for x in (q_pids, g_pids, q_camids, g_camids))
    return (q_pids[:, None] == g_pids[None, :]) & (q_camids[:, None] == g_camids[None, :])


def _eval_deduplicated(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, removal) -> Result:
    """Shared body of :func:`eval_sysu` and :func:`eval_llcm`; ``removal(q_pids, g_pids, q_camids, g_camids)``
    gives the (num_q, num_g) items each query drops."""
    dist, q_pids, g_pids, max_rank, (q_labels, g_labels, num_labels) = _prepare(distmat, q_pids, g_pids, max_rank)
    num_q, num_g = dist.shape
    q_camids, g_camids = _as_ids(q_camids, "q_camids", num_q), _as_ids(g_camids, "g_camids", num_g)
    scores, ranked = _tie_free_scores(dist, removal(q_pids, g_pids, q_camids, g_camids))
    positives = _positive_scores(scores, q_labels, g_labels, num_labels)
    hits = _match_statistics(ranked, positives)

    best_of_label = _min_score_per_label(scores, g_labels, num_labels)  # +inf: identity not kept
    distinct_kept = np.isfinite(best_of_label).sum(axis=1).min()
    if distinct_kept < max_rank:
        raise ValueError(
            f"max_rank={max_rank} exceeds the number of distinct gallery identities kept for some query "
            f"(minimum {distinct_kept}, gallery size {num_g}); the official code would crash here")
    # Quirk 2: the query's identity comes after every identity whose best kept item beats its first match.
    dedup_rank = (best_of_label[hits.valid] < positives[hits.valid, :1]).sum(axis=1)
    return _cmc(dedup_rank, max_rank), float(hits.ap.mean()), float(hits.inp.mean())


def eval_regdb(distmat, q_pids, g_pids, max_rank: int = 20) -> Result:
    """RegDB metrics with the official rules (standard CMC, nothing removed).

    Args:
        distmat: (num_q, num_g) distances, smaller = more similar (numpy array or torch tensor).
        q_pids: (num_q,) query identities.
        g_pids: (num_g,) gallery identities.
        max_rank: length of the CMC curve (clamped to num_g, see the module docstring).

    Returns:
        ``(cmc, mAP, mINP)``: cmc a float32 array of ``min(max_rank, num_g)`` values, mAP and mINP
        Python floats in [0, 1].
    """
    dist, q_pids, g_pids, max_rank, (q_labels, g_labels, num_labels) = _prepare(distmat, q_pids, g_pids, max_rank)
    scores, ranked = _tie_free_scores(dist)
    hits = _match_statistics(ranked, _positive_scores(scores, q_labels, g_labels, num_labels))
    return _cmc(hits.first_rank, max_rank), float(hits.ap.mean()), float(hits.inp.mean())


def eval_cross_camera(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 20) -> Result:
    """Market-1501 metrics: a query drops the gallery items of its own identity and camera; standard CMC.

    Args:
        distmat: (num_q, num_g) distances, smaller = more similar (numpy array or torch tensor).
        q_pids, q_camids: (num_q,) query identities and cameras.
        g_pids, g_camids: (num_g,) gallery identities and cameras.
        max_rank: length of the CMC curve (clamped to num_g, see the module docstring).

    Returns:
        ``(cmc, mAP, mINP)`` as :func:`eval_regdb`; queries whose identity is seen by no other camera
        of the gallery are not valid (they count nowhere).
    """
    dist, q_pids, g_pids, max_rank, (q_labels, g_labels, num_labels) = _prepare(distmat, q_pids, g_pids, max_rank)
    num_q, num_g = dist.shape
    q_camids, g_camids = _as_ids(q_camids, "q_camids", num_q), _as_ids(g_camids, "g_camids", num_g)
    removed = llcm_removed(q_pids, g_pids, q_camids, g_camids)  # the same rule: own identity and camera
    scores, ranked = _tie_free_scores(dist, removed)
    hits = _match_statistics(ranked, _positive_scores(scores, q_labels, g_labels, num_labels))
    return _cmc(hits.first_rank, max_rank), float(hits.ap.mean()), float(hits.inp.mean())


def summarize_trials(results: Sequence[Result]) -> Dict[str, float]:
    """Mean and population std (ddof=0) over trials of Rank-1/5/10/20, mAP and mINP, all x100.

    Args:
        results: one ``(cmc, mAP, mINP)`` per trial, as returned by :func:`eval_sysu` or
            :func:`eval_regdb`. Rank-k is reported only when the CMC curves have at least k entries.

    Returns:
        ``{"Rank-1": .., "Rank-1_std": .., ..., "mAP": .., "mAP_std": .., "mINP": .., "mINP_std": ..}``.
    """
    if not results:
        raise ValueError("summarize_trials needs at least one (cmc, mAP, mINP) result")
    cmcs = [np.asarray(cmc, dtype=np.float64) for cmc, _, _ in results]
    if len({cmc.shape for cmc in cmcs}) != 1 or cmcs[0].ndim != 1:
        raise ValueError("all trials must have 1-D CMC curves of the same length")
    cmcs = np.stack(cmcs)
    columns = {f"Rank-{k}": cmcs[:, k - 1] for k in _SUMMARY_RANKS if k <= cmcs.shape[1]}
    columns["mAP"] = np.array([m_ap for _, m_ap, _ in results], dtype=np.float64)
    columns["mINP"] = np.array([m_inp for _, _, m_inp in results], dtype=np.float64)
    summary = {}
    for name, values in columns.items():
        summary[name] = float(100.0 * values.mean())
        summary[f"{name}_std"] = float(100.0 * values.std())
    return summary


# ----------------------------------------------------------------------------- inputs


def _prepare(distmat, q_pids, g_pids, max_rank):
    """Validated ``(dist, q_pids, g_pids, max_rank, (q_labels, g_labels, num_labels))`` shared by both metrics."""
    dist = _as_distmat(distmat)
    num_q, num_g = dist.shape
    q_pids, g_pids = _as_ids(q_pids, "q_pids", num_q), _as_ids(g_pids, "g_pids", num_g)
    return dist, q_pids, g_pids, _clamp_max_rank(max_rank, num_g), _relabel(q_pids, g_pids)


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _as_distmat(distmat) -> np.ndarray:
    dist = _to_numpy(distmat)
    if dist.ndim != 2 or 0 in dist.shape:
        raise ValueError(f"distmat must be a non-empty 2-D (num_q, num_g) matrix, got shape {dist.shape}")
    if dist.dtype.kind not in "biuf":
        raise ValueError(f"distmat must be numeric, got dtype {dist.dtype}")
    dist = dist.astype(np.result_type(dist.dtype, np.float32), copy=False)
    if np.isnan(dist).any():
        raise ValueError("distmat contains NaN distances")
    return dist


def _as_ids(ids, name: str, length: int) -> np.ndarray:
    """1-D numeric array of pids or camids (quirk 4: ids are compared as numbers)."""
    arr = _to_numpy(ids)
    if arr.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},) to match distmat, got {arr.shape}")
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.int64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be numeric ids, got dtype {arr.dtype}") from err
    return arr


def _clamp_max_rank(max_rank: int, num_g: int) -> int:
    if int(max_rank) != max_rank or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
    if num_g < max_rank:
        warnings.warn(f"max_rank={max_rank} exceeds the gallery size {num_g}; using max_rank={num_g} "
                      "as the official code does", stacklevel=3)
        return num_g
    return int(max_rank)


def _relabel(q_pids: np.ndarray, g_pids: np.ndarray) -> Tuple[np.ndarray, np.ndarray, int]:
    """Pids -> labels 0..P-1 of the P distinct gallery pids; -1 for query pids absent from the gallery."""
    unique, g_labels = np.unique(g_pids, return_inverse=True)
    pos = np.minimum(np.searchsorted(unique, q_pids), len(unique) - 1)
    q_labels = np.where(unique[pos] == q_pids, pos, -1)
    return q_labels, g_labels.reshape(-1), len(unique)


# ----------------------------------------------------------------------------- ranking


def _tie_free_scores(dist: np.ndarray, removed=False) -> Tuple[np.ndarray, np.ndarray]:
    """Per-row scores ordering the kept items as a stable argsort of ``dist`` does, without ties.

    Args:
        dist: (num_q, num_g) float distances, no NaN.
        removed: bool, broadcastable to (num_q, num_g): items dropped from a query's ranking.

    Returns:
        ``(scores, ranked)``, both (num_q, num_g): ``scores`` are the distances with +inf for the
        removed items, ``ranked`` is ``scores`` sorted along each row. Kept items have distinct
        finite scores, so the rank of a kept item among the kept items is the number of smaller
        scores. Rows with equal or infinite distances get their stable ranks 0..num_g-1 as scores.
    """
    scores = np.where(removed, np.inf, dist)
    ranked = np.sort(scores, axis=1)
    tied = ((ranked[:, 1:] == ranked[:, :-1]) & (ranked[:, 1:] < np.inf)).any(axis=1)
    if np.isinf([dist.min(), dist.max()]).any():  # +-inf distances: +inf must only mark removed items
        tied |= np.isinf(dist).any(axis=1)
    rows = np.flatnonzero(tied)
    if rows.size:
        stable_rank = np.argsort(np.argsort(dist[rows], axis=1, kind="stable"), axis=1)
        scores[rows] = np.where(np.broadcast_to(removed, dist.shape)[rows], np.inf, stable_rank)
        ranked[rows] = np.sort(scores[rows], axis=1)
    return scores, ranked


def _positive_scores(scores: np.ndarray, q_labels: np.ndarray, g_labels: np.ndarray,
                     num_labels: int) -> np.ndarray:
    """(num_q, M) scores of each query's true matches in ascending order, +inf padded.

    M is the size of the largest gallery identity; removed matches have score +inf too.
    """
    num_g = scores.shape[1]
    sizes = np.bincount(g_labels, minlength=num_labels)
    by_label = np.argsort(g_labels, kind="stable")
    slot = np.arange(num_g) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    # members[label] = gallery indices of that identity, padded with -1. The extra last row stays
    # empty: it is members[-1], the row of the queries whose pid is absent from the gallery.
    members = np.full((num_labels + 1, sizes.max()), -1)
    members[g_labels[by_label], slot] = by_label
    index = members[q_labels]
    positives = np.where(index >= 0, np.take_along_axis(scores, index, axis=1), np.inf)
    positives.sort(axis=1)
    return positives


def _match_statistics(ranked: np.ndarray, positives: np.ndarray) -> _Hits:
    """AP, INP and first-match rank of every valid query (shared by SYSU and RegDB).

    Args:
        ranked: (num_q, num_g) tie-free scores sorted along rows, +inf for removed items.
        positives: (num_q, M) scores of the true matches, ascending, +inf padded.
    """
    found = np.isfinite(positives)
    num_rel = found.sum(axis=1)
    valid = num_rel > 0
    if not valid.any():
        raise ValueError("no valid query: no query identity appears in the (kept) gallery")
    rank = _count_smaller(ranked, positives)  # 0-based rank among the kept items (+inf: removed)
    rank, found, num_rel = rank[valid], found[valid], num_rel[valid]
    precision = np.arange(1, positives.shape[1] + 1) / (rank + 1.0)  # i-th match at rank r: i / r
    last_rank = np.take_along_axis(rank, (num_rel - 1)[:, None], axis=1)[:, 0]
    return _Hits(valid=valid, ap=np.where(found, precision, 0.0).sum(axis=1) / num_rel,
                 inp=num_rel / (last_rank + 1.0), first_rank=rank[:, 0])


def _count_smaller(ranked: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Row-wise ``np.searchsorted(ranked[q], values[q])``: a binary search run on all values at once.

    Args:
        ranked: (num_q, num_g) rows sorted ascending.
        values: (num_q, M) values to look up in their row.

    Returns:
        (num_q, M) int array: the number of entries of the row that are smaller than the value.
    """
    num_q, num_g = ranked.shape
    flat, row_start = ranked.reshape(-1), num_g * np.arange(num_q)[:, None]
    low = np.zeros(values.shape, dtype=np.intp)  # ranked[q, :low] < value
    high = np.full(values.shape, num_g, dtype=np.intp)  # ranked[q, high:] >= value
    for _ in range(int(num_g).bit_length()):  # each step halves high - low <= num_g
        mid = (low + high) // 2
        below = flat[row_start + np.minimum(mid, num_g - 1)] < values
        searching = low < high
        low = np.where(searching & below, mid + 1, low)
        high = np.where(searching & ~below, mid, high)
    return low


def _min_score_per_label(scores: np.ndarray, g_labels: np.ndarray, num_labels: int) -> np.ndarray:
    """(num_q, num_labels) smallest score of each gallery identity in each row (+inf if all removed)."""
    num_q, _ = scores.shape
    best = np.full(num_q * num_labels, np.inf, dtype=scores.dtype)
    index = g_labels + num_labels * np.arange(num_q)[:, None]
    np.minimum.at(best, index.reshape(-1), scores.reshape(-1))
    return best.reshape(num_q, num_labels)


def _cmc(first_hit: np.ndarray, max_rank: int) -> np.ndarray:
    """CMC from the 0-based rank of each valid query's first hit, as float32 like the reference."""
    counts = np.bincount(np.minimum(first_hit, max_rank), minlength=max_rank + 1)[:max_rank]
    return np.cumsum(counts).astype(np.float32) / np.float32(first_hit.size)
