"""Pseudo-label association algorithms: pure functions, tensors in, tensors out.

* :mod:`.graph`: the sparse :class:`NeighbourGraph` that replaces dense N x N distance matrices;
* :mod:`.jaccard`: k-reciprocal Jaccard distance (Zhong et al., CVPR'17), sparse and dense (oracle);
* :mod:`.dbscan`: DBSCAN on a neighbour graph, label-identical to scikit-learn's;
* :mod:`.pseudo_labels`: per-modality clustering;
* :mod:`.diagnostics`: pseudo-label quality against ground truth.
"""
from .dbscan import dbscan, relabel_outliers
from .diagnostics import cross_modality_association_accuracy, pseudo_label_metrics
from .graph import NeighbourGraph
from .jaccard import jaccard_distance, jaccard_distance_dense, knn
from .pseudo_labels import cluster_features

__all__ = [k for k in globals() if not k.startswith("_")]
