"""VRA (varied regional alignment) cluster matching and UM (uniform merging) partners: pure functions.

From Sun, Du, Gao, "A Multimodule Collaborative Framework for Unsupervised Visible-Infrared Person
Re-Identification with Channel Enhancement Modality" (§3.3 VRA, §3.5 UM), whose matching is TokenMatcher's
(Liu et al., AAAI'25, ``train_sysu.py``) with at most ``mu`` matches per cluster.

* :func:`token_centroids`: per-token cluster means ``(T, K, D)``.
* :func:`cluster_similarity`: ``S_ij = sum_n <c^v_{i,n}, c^r_{j,n}>`` over the ``T`` token ("regional") spaces,
  each centroid L2-normalised per token (a sum of cosines).
* :func:`greedy_match`: the greedy matching (below) -> :class:`VRAMatching`.
* :func:`cross_labels`: ``y~^v = r2i[y^v]``, ``y~^r = i2r[y^r][0]``.
* :func:`shared_centroids`: initial shared memories ``phi^vs``, ``phi^rs``.
* :func:`merge_partners`: UM's partner cluster of every cluster for an epoch.

**Greedy matching** (``K_v >= K_r``; otherwise the roles of the modalities are swapped: the larger side's
clusters are the "rows", the smaller side's the "columns"):

1. Pass 1: repeatedly take the largest remaining ``S`` entry ``(i, j)``. If column ``j`` has fewer than ``mu``
   rows, link ``i -> j`` and retire row ``i``; otherwise discard that entry. Stop when every row is linked (or
   every column is full: rows beyond ``mu * K_cols`` stay unlinked, label ``-1``).
2. Pass 2, for the columns that pass 1 left without a row: restart from the original ``S`` restricted to those
   columns, every row eligible again but usable once in this pass. Take the largest entry ``(i, j)``: link it if
   column ``j`` has fewer than ``mu`` rows (a column linked earlier in this pass may take more rows, as in the
   reference), retire row ``i``. Stop when every column has a row (columns still without one keep ``-1``).

Equal entries are taken in row-major order (``np.argmax`` of the reference). Pass-2 links give a row a second
column: a visible cluster can end up linked to several infrared clusters.

The result is stored symmetrically, whatever the orientation: ``vis_to_ir[k]`` lists the infrared clusters linked
to visible cluster ``k`` and ``ir_to_vis[j]`` the visible clusters linked to infrared cluster ``j``, each in link
order (``-1`` padding). Column 0 is the *primary* match, so with ``K_v >= K_r`` TokenMatcher's ``r2i`` is
``vis_to_ir[:, 0]`` and its ``i2r`` is ``ir_to_vis``; with ``K_v < K_r`` its ``i2r`` is ``ir_to_vis[:, 0]`` and its
``r2i`` is ``vis_to_ir``.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "VRAMatching",
    "cluster_similarity",
    "cross_labels",
    "greedy_match",
    "merge_partners",
    "shared_centroids",
    "token_centroids",
]


# ------------------------------------------------------------------------------------------------- centroids
def _cluster_means(features: torch.Tensor, labels: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """``(K, ...)`` mean of ``features[labels == k]``; labels ``< 0`` ignored; every cluster must have a member."""
    if labels.shape != features.shape[:1]:
        raise ValueError(f"expected one label per feature row, got {tuple(labels.shape)} labels for features "
                         f"{tuple(features.shape)}")
    labels = labels.to(features.device).long()
    if (labels >= num_clusters).any():
        raise ValueError(f"labels must be < num_clusters={num_clusters}, got max {int(labels.max())}")
    keep = labels >= 0
    labels, features = labels[keep], features[keep].float()
    counts = torch.bincount(labels, minlength=num_clusters)
    if (counts == 0).any():
        empty = torch.nonzero(counts == 0, as_tuple=True)[0][:10].tolist()
        raise ValueError(f"every cluster needs a member; empty clusters: {empty}")
    sums = features.new_zeros((num_clusters,) + features.shape[1:]).index_add_(0, labels, features)
    return sums / counts.view((-1,) + (1,) * (features.dim() - 1)).float()


def token_centroids(features: torch.Tensor, labels: torch.Tensor, num_clusters: int | None = None) -> torch.Tensor:
    """Per-token cluster means.

    Args:
        features: ``(N, T, D)`` per-token features (or ``(N, D)``, read as ``T = 1``).
        labels: ``(N,)`` cluster labels, ``-1`` ignored.
        num_clusters: ``K`` (default ``max label + 1``); every cluster needs a member.

    Returns:
        ``(T, K, D)`` float32: ``c_{k,n} = mean{features[i, n] : labels[i] = k}``.
    """
    if features.dim() == 2:
        features = features[:, None]
    if features.dim() != 3:
        raise ValueError(f"token_centroids: features must be (N, T, D), got {tuple(features.shape)}")
    if num_clusters is None:
        num_clusters = int(labels.max()) + 1 if labels.numel() else 0
    return _cluster_means(features, labels, num_clusters).transpose(0, 1).contiguous()


def cluster_similarity(centroids_v: torch.Tensor, centroids_r: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``S_ij = sum_n <c^v_{i,n}, c^r_{j,n}>`` (§3.3).

    Args:
        centroids_v: ``(T, K_v, D)``; centroids_r: ``(T, K_r, D)`` (:func:`token_centroids`).
        normalize: L2-normalise every token centroid first (then ``S`` is a sum of ``T`` cosines).

    Returns:
        ``(K_v, K_r)`` float32.
    """
    if centroids_v.dim() != 3 or centroids_r.dim() != 3 or centroids_v.shape[0::2] != centroids_r.shape[0::2]:
        raise ValueError(f"cluster_similarity: expected (T, K_v, D) and (T, K_r, D) centroids, got "
                         f"{tuple(centroids_v.shape)} and {tuple(centroids_r.shape)}")
    cv, cr = centroids_v.float(), centroids_r.float()
    if normalize:
        cv, cr = F.normalize(cv, dim=-1), F.normalize(cr, dim=-1)
    return torch.bmm(cv, cr.transpose(1, 2)).sum(dim=0)


# -------------------------------------------------------------------------------------------------- matching
@dataclass
class VRAMatching:
    """Result of :func:`greedy_match` (see the module docstring).

    Attributes:
        vis_to_ir: ``(K_v, W_v)`` long, the infrared clusters linked to each visible cluster in link order, -1 padded.
        ir_to_vis: ``(K_r, W_r)`` long, the visible clusters linked to each infrared cluster, -1 padded.
        links: ``(L, 2)`` long ``[visible, infrared]`` pairs in link order; link_pass: ``(L,)`` 1 or 2.
        swapped: ``K_v < K_r`` (the infrared clusters were the rows).
    """

    vis_to_ir: torch.Tensor
    ir_to_vis: torch.Tensor
    links: torch.Tensor
    link_pass: torch.Tensor
    swapped: bool

    @property
    def r2i(self) -> torch.Tensor:
        """``(K_v,)`` primary infrared cluster of each visible cluster (-1 none)."""
        return self.vis_to_ir[:, 0]

    @property
    def i2r(self) -> torch.Tensor:
        """``(K_r,)`` primary visible cluster of each infrared cluster (-1 none)."""
        return self.ir_to_vis[:, 0]


def _greedy_passes(similarity: torch.Tensor, max_matches: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Both passes on ``(R, C)`` scores with ``R >= C``; returns the ``(row, col)`` links and their pass."""
    num_rows, num_cols = similarity.shape
    order = torch.sort(similarity.flatten(), descending=True, stable=True).indices  # row-major on ties
    rows, cols = (order // num_cols).tolist(), (order % num_cols).tolist()
    count = [0] * num_cols
    links, passes = [], []

    # pass 1: every row to a column with room
    row_done, linked, capacity = [False] * num_rows, 0, max_matches * num_cols
    for r, c in zip(rows, cols):
        if linked == num_rows or linked == capacity:
            break
        if row_done[r] or count[c] >= max_matches:
            continue
        links.append((r, c))
        passes.append(1)
        count[c] += 1
        row_done[r] = True
        linked += 1

    # pass 2: the columns left empty, from the original scores, each row at most once
    open_cols = {c for c in range(num_cols) if count[c] == 0}
    covered, row_used = num_cols - len(open_cols), [False] * num_rows
    for r, c in zip(rows, cols):
        if covered == num_cols:
            break
        if c not in open_cols or row_used[r] or count[c] >= max_matches:
            continue
        links.append((r, c))
        passes.append(2)
        covered += count[c] == 0
        count[c] += 1
        row_used[r] = True
    return links, passes


def _padded_lists(pairs: torch.Tensor, size: int) -> torch.Tensor:
    """``(size, W)``: for each index ``a``, the ``b`` of the pairs ``(a, b)`` in pair order, -1 padded."""
    if pairs.numel() == 0:
        return torch.full((size, 1), -1, dtype=torch.long)
    a, b = pairs[:, 0], pairs[:, 1]
    counts = torch.bincount(a, minlength=size)
    order = torch.sort(a, stable=True).indices  # keeps the link order within each a
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(a.numel()) - starts[a[order]]
    out = torch.full((size, max(int(counts.max()), 1)), -1, dtype=torch.long)
    out[a[order], slot] = b[order]
    return out


def greedy_match(similarity: torch.Tensor, max_matches: int = 3) -> VRAMatching:
    """Greedy cross-modality cluster matching of VRA (module docstring), at most ``mu`` rows per column.

    Args:
        similarity: ``(K_v, K_r)`` cluster similarity (larger = more similar; :func:`cluster_similarity`).
        max_matches: ``mu`` (3 in the paper, 2 in TokenMatcher).

    Returns:
        :class:`VRAMatching`.
    """
    if similarity.dim() != 2:
        raise ValueError(f"greedy_match: similarity must be (K_v, K_r), got {tuple(similarity.shape)}")
    if max_matches < 1:
        raise ValueError(f"greedy_match: max_matches must be >= 1, got {max_matches}")
    if not torch.isfinite(similarity).all():
        raise ValueError("greedy_match: similarity holds NaN or infinite values")
    num_v, num_r = similarity.shape
    swapped = num_v < num_r
    scores = similarity.detach().float().cpu()
    links, passes = _greedy_passes(scores.T if swapped else scores, max_matches)
    pairs = torch.tensor(links, dtype=torch.long).view(-1, 2)
    if swapped:
        pairs = pairs.flip(1)  # (row, col) = (infrared, visible) -> (visible, infrared)
    return VRAMatching(
        vis_to_ir=_padded_lists(pairs, num_v),
        ir_to_vis=_padded_lists(pairs.flip(1), num_r),
        links=pairs,
        link_pass=torch.tensor(passes, dtype=torch.long),
        swapped=swapped,
    )


def cross_labels(matching: VRAMatching, labels_v: torch.Tensor, labels_r: torch.Tensor):
    """Cross-modality labels ``y~^v = r2i[y^v]`` (infrared label space) and ``y~^r = i2r[y^r][0]`` (visible).

    Args:
        matching: :func:`greedy_match` result.
        labels_v: ``(N_v,)`` visible cluster labels; labels_r: ``(N_r,)`` infrared ones; ``-1`` = outlier.

    Returns:
        ``(cross_v (N_v,), cross_r (N_r,))`` long; outliers and samples of unlinked clusters get -1.
    """
    def lookup(table: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.long()
        if (labels >= table.shape[0]).any():
            raise ValueError(f"cross_labels: labels up to {int(labels.max())} for {table.shape[0]} clusters")
        primary = table[:, 0].to(labels.device)
        return torch.where(labels >= 0, primary[labels.clamp_min(0)], labels.new_full((), -1))

    return lookup(matching.vis_to_ir, labels_v), lookup(matching.ir_to_vis, labels_r)


def shared_centroids(features_v: torch.Tensor, labels_v: torch.Tensor, features_r: torch.Tensor,
                     labels_r: torch.Tensor, cross_v: torch.Tensor, cross_r: torch.Tensor,
                     num_v: int, num_r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial modality-shared memories of VRA (TokenMatcher's supplement).

    ``phi^vs_k = normalize(mean({f^v_i : y^v_i = k} u {f^r_j : y~^r_j = k}))`` (``K_v`` rows) and
    ``phi^rs_k = normalize(mean({f^r_j : y^r_j = k} u {f^v_i : y~^v_i = k}))`` (``K_r`` rows).

    Args:
        features_v: ``(N_v, d)`` visible image features (e.g. ``(N_v, T*D)``); features_r: ``(N_r, d)``.
        labels_v, labels_r: own-modality cluster labels; cross_v, cross_r: :func:`cross_labels`; ``-1`` ignored.
        num_v, num_r: ``K_v``, ``K_r``.

    Returns:
        ``(phi_vs (K_v, d), phi_rs (K_r, d))`` float32, rows L2-normalised.
    """
    features = torch.cat([features_v, features_r])
    phi_vs = _cluster_means(features, torch.cat([labels_v, cross_r]).long(), num_v)
    phi_rs = _cluster_means(features, torch.cat([cross_v, labels_r]).long(), num_r)
    return F.normalize(phi_vs, dim=1), F.normalize(phi_rs, dim=1)


# ------------------------------------------------------------------------------------------------ UM partners
def _partners(own_to_other: torch.Tensor, other_to_own: torch.Tensor, epoch: int, wrap: bool) -> torch.Tensor:
    num = own_to_other.shape[0]
    primary = own_to_other[:, 0]
    groups = torch.where(primary[:, None] >= 0, other_to_own[primary.clamp_min(0)], torch.full_like(
        other_to_own[:1].expand(num, -1), -1))  # K x W: the group of each cluster, in link order
    size = (groups >= 0).sum(dim=1)
    own = torch.arange(num)
    position = (groups == own[:, None]).long().argmax(dim=1)
    step = 1 if epoch % 2 == 0 else -1
    target = position + step
    if wrap:
        target = torch.remainder(target, size.clamp_min(1))
    valid = (size >= 2) & (target >= 0) & (target < size)
    partner = groups.gather(1, target.clamp(0, groups.shape[1] - 1)[:, None])[:, 0]
    return torch.where(valid, partner, torch.full_like(partner, -1))


def merge_partners(matching: VRAMatching, epoch: int, wrap: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """UM (§3.5): the cluster each cluster's samples are pulled towards in ``epoch``.

    The group of visible cluster ``k`` is ``G = ir_to_vis[vis_to_ir[k, 0]]`` (TokenMatcher's ``i2r[r2i[k]]``: the
    visible clusters sharing ``k``'s primary infrared cluster, in link order); the group of infrared cluster
    ``j`` is the mirror ``vis_to_ir[ir_to_vis[j, 0]]``. With ``k = G[p]``, the partner is ``G[p + 1]`` in even
    epochs and ``G[p - 1]`` in odd epochs; without ``wrap`` there is none past the ends, so for ``|G| = 2`` it is
    exactly TokenMatcher's rule (``G[0] -> G[1]`` in even, ``G[1] -> G[0]`` in odd epochs, the other cluster
    idle); with ``wrap`` the indices are taken modulo ``|G|`` (every member of a group of >= 2 has a partner).
    Groups are read through each cluster's *primary* link, so they need not be symmetric: with ``K_v >= K_r``
    the infrared groups come from pass-2 links only (an infrared cluster whose primary visible cluster has one
    link has no partner), and with ``K_v < K_r`` the visible ones do.

    Args:
        matching: :func:`greedy_match` result.
        epoch: the current epoch (its parity picks the direction).
        wrap: cyclic partners.

    Returns:
        ``(partner_v (K_v,), partner_r (K_r,))`` long, -1 where a cluster has no partner (``|G| < 2`` or an end).
    """
    return (_partners(matching.vis_to_ir, matching.ir_to_vis, epoch, wrap),
            _partners(matching.ir_to_vis, matching.vis_to_ir, epoch, wrap))
