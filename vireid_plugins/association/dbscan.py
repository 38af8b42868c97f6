"""DBSCAN on a sparse :class:`~vireid_plugins.association.graph.NeighbourGraph`, identical to scikit-learn's.

:func:`dbscan` returns exactly the labels of
``sklearn.cluster.DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(graph.to_dense())``
in ``O(N + nnz)`` time and memory, without a Python loop over points and without the dense ``N x N`` matrix.

Why the vectorised form is exact
--------------------------------
scikit-learn's ``dbscan_inner`` visits the points in index order; at each core point that is still unlabelled it
starts a new cluster (ids ``0, 1, 2, ...`` in that order) and labels, by depth-first search, every still-unlabelled
point it reaches, expanding only core points. Write ``u -> v`` when ``D[u, v] <= eps`` (``v`` is in the
neighbourhood of ``u``, i.e. in row ``u``) and ``s ~> v`` when ``v`` is reachable from the core point ``s``
along such edges whose every point but possibly the last is a core point. Then:

* A core point ``v`` is labelled by the seed ``m(v) = min{s core : s ~> v}`` (``v ~> v`` itself). Indeed ``m(v)``
  is a seed: a seed ``s' < m(v)`` that labelled it would reach ``v`` too. Seeds before ``m(v)`` do not reach ``v``,
  so ``v`` is still unlabelled when ``m(v)`` expands. Cluster ids are therefore the ranks of the distinct ``m(v)``.
* A non-core point ``w`` gets the first cluster to reach it, i.e. the smallest cluster id among the core points
  ``c`` with ``c -> w``; ``-1`` (noise) if there is none.

For a symmetric neighbourhood relation (the usual case: Jaccard distances are symmetric) ``m(v)`` is the smallest
core index in ``v``'s connected component of the core-core graph, so cluster ids are ordered by the smallest core
index of their component, and a border point shared by several clusters takes the smallest such id. Asymmetric
graphs are handled too: ``m`` is constant on strongly connected components and is propagated along the edges of
their condensation (a DAG); the propagation loop runs ``1 + (longest path in that DAG)`` vectorised sweeps, and
none for a symmetric graph.
"""
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components

from vireid_plugins.association.graph import NeighbourGraph

__all__ = ["dbscan", "relabel_outliers"]


def _check_arguments(graph: NeighbourGraph, eps, min_samples) -> None:
    if isinstance(eps, bool) or not isinstance(eps, Real) or not np.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if not eps < graph.max_distance:
        raise ValueError(
            f"eps must be < graph.max_distance={graph.max_distance!r}, got eps={eps!r}: pairs that are not stored "
            "are at distance >= max_distance, so their eps-neighbourhood membership is unknown")
    if isinstance(min_samples, bool) or not isinstance(min_samples, Integral) or min_samples < 1:
        raise ValueError(f"min_samples must be an integer >= 1, got {min_samples!r}")


def _min_reaching_seed(core_idx: np.ndarray, src: np.ndarray, dst: np.ndarray, num_nodes: int) -> np.ndarray:
    """For each core point ``v``, the smallest core index ``s`` with ``s ~> v`` along core-core edges.

    Args:
        core_idx: ``(C,)`` sorted indices of the core points.
        src, dst: ``(E,)`` core-core edges ``src -> dst`` (node indices in ``[0, num_nodes)``).
        num_nodes: ``N``; non-core nodes are isolated and ignored.

    Returns:
        ``(C,)`` int64 seed index of every core point, aligned with ``core_idx``.
    """
    adjacency = sp.csr_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(num_nodes, num_nodes))
    _, component = connected_components(adjacency, directed=True, connection="strong")
    core_component = component[core_idx]
    # Seed of each strongly connected component = its smallest core index (``core_idx`` is sorted, so the first
    # occurrence of a component is its minimum); components of non-core nodes keep a sentinel and are never used.
    seed = np.full(component.max() + 1, num_nodes, dtype=np.int64)
    first_component, first_pos = np.unique(core_component, return_index=True)
    seed[first_component] = core_idx[first_pos]
    # Propagate minima along the condensation DAG (no edges at all when the graph is symmetric).
    across = component[src] != component[dst]
    if across.any():
        edges = np.unique(np.stack([component[src[across]], component[dst[across]]]), axis=1)
        while True:
            updated = seed.copy()
            np.minimum.at(updated, edges[1], seed[edges[0]])
            if np.array_equal(updated, seed):
                break
            seed = updated
    return seed[core_component]


def dbscan(graph: NeighbourGraph, eps: float, min_samples: int = 4) -> torch.Tensor:
    """DBSCAN clustering of a sparse distance graph, label-for-label identical to scikit-learn's.

    Neighbourhood of ``i``: the stored entries of row ``i`` with ``distance <= eps`` (the point itself included
    through its stored diagonal); the comparison follows numpy's promotion rules exactly as scikit-learn's does
    (a Python ``float`` eps is compared in float32, an ``np.float64`` one in float64). Core point: neighbourhood
    size ``>= min_samples``. Clusters are the components of the core-core graph plus the non-core points in a
    core's neighbourhood; numbering and border-point assignment reproduce scikit-learn's visiting order (see the
    module docstring): cluster ids are ordered by the smallest core index of the cluster, and a border point
    adjacent to several clusters joins the one with the smallest id.

    Equivalent to ``DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(graph.to_dense())``
    for any graph (symmetric or not) as long as ``eps < graph.max_distance`` (pairs that are not stored are at
    distance ``>= max_distance``, beyond every eps allowed here).

    Complexity: ``O(N + nnz)`` time and memory (one strongly-connected-components pass, a few segment reductions);
    a symmetric graph needs no iteration at all.

    Args:
        graph: ``N``-node :class:`NeighbourGraph` of distances.
        eps: neighbourhood radius, ``0 < eps < graph.max_distance``.
        min_samples: minimum neighbourhood size (the point included) of a core point, ``>= 1``.

    Returns:
        ``(N,)`` int64 cluster labels ``0 .. K - 1``, ``-1`` for noise.

    Raises:
        ValueError: on an invalid ``eps`` or ``min_samples``.
    """
    _check_arguments(graph, eps, min_samples)
    num_nodes = graph.num_nodes
    indptr = graph.indptr.numpy()
    cols = graph.indices.numpy()
    rows = np.repeat(np.arange(num_nodes, dtype=np.int64), np.diff(indptr))
    within = graph.distances.numpy() <= eps
    rows, cols = rows[within], cols[within]

    is_core = np.bincount(rows, minlength=num_nodes) >= min_samples
    labels = np.full(num_nodes, -1, dtype=np.int64)
    core_idx = np.flatnonzero(is_core)
    if core_idx.size == 0:
        return torch.from_numpy(labels)

    from_core = is_core[rows]
    core_core = from_core & is_core[cols]
    seed = _min_reaching_seed(core_idx, rows[core_core], cols[core_core], num_nodes)
    # Cluster id = rank of the seed among the distinct seeds (seeds are visited in index order).
    labels[core_idx] = np.unique(seed, return_inverse=True)[1]

    # Border points: smallest cluster id among the core points whose neighbourhood holds them.
    to_border = from_core & ~is_core[cols]
    border_labels = np.full(num_nodes, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(border_labels, cols[to_border], labels[rows[to_border]])
    border = np.unique(cols[to_border])
    labels[border] = border_labels[border]
    return torch.from_numpy(labels)


def relabel_outliers(labels, mode: str = "drop") -> torch.Tensor:
    """Handle the ``-1`` outliers of a clustering.

    Args:
        labels: ``(N,)`` integer labels (tensor or array-like), ``-1`` for outliers.
        mode: ``"drop"`` keeps the outliers at ``-1`` (the labels are returned unchanged, as a copy);
            ``"singleton"`` gives every outlier its own new cluster id, ``max(labels) + 1, max(labels) + 2, ...``
            in index order (starting at 0 when every sample is an outlier).

    Returns:
        ``(N,)`` int64 labels.
    """
    labels = torch.as_tensor(labels).to(torch.int64).clone()
    if mode == "drop":
        return labels
    if mode != "singleton":
        raise ValueError(f"mode must be 'drop' or 'singleton', got {mode!r}")
    outliers = labels == -1
    start = int(labels.max()) + 1 if labels.numel() else 0
    labels[outliers] = torch.arange(start, start + int(outliers.sum()), dtype=torch.int64)
    return labels
