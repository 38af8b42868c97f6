"""Per-modality pseudo-labels: k-reciprocal Jaccard distance + DBSCAN, as Cluster-Contrast (Dai et al., ACCV'22)
and ADCA (Yang et al., ACM MM'22) compute them."""
import torch

from .dbscan import dbscan, relabel_outliers
from .jaccard import jaccard_distance

__all__ = ["cluster_features"]


def cluster_features(features: torch.Tensor, eps: float, min_samples: int = 4, k1: int = 30, k2: int = 6,
                     outliers: str = "drop", chunk_size: int = 4096, return_graph: bool = False):
    """Cluster L2-normalised ``N x D`` features of one modality.

    Returns ``N`` int64 labels ``0..K-1`` on the CPU; outliers are ``-1`` (``outliers="drop"``) or each
    their own cluster (``"singleton"``). Memory stays O(N·k): the Jaccard distances are a sparse
    :class:`~vireid_plugins.association.graph.NeighbourGraph`, returned too (``(labels, graph)``) with
    ``return_graph`` (e.g. for affinities built on the same distances).
    """
    graph = jaccard_distance(features, k1=k1, k2=k2, chunk_size=chunk_size)
    labels = relabel_outliers(dbscan(graph, eps=eps, min_samples=min_samples), outliers)
    return (labels, graph) if return_graph else labels
