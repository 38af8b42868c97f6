"""Pseudo-label association algorithms: pure functions, tensors in, tensors out.

* :mod:`.graph`: the sparse :class:`NeighbourGraph` that replaces dense N x N distance matrices;
* :mod:`.jaccard`: k-reciprocal Jaccard distance (Zhong et al., CVPR'17), sparse and dense (oracle);
* :mod:`.dbscan`: DBSCAN on a neighbour graph, label-identical to scikit-learn's;
* :mod:`.pseudo_labels`: per-modality clustering;
* :mod:`.sinkhorn`: entropic optimal transport in the log domain, shared by every method (exact or KL-relaxed
  marginals); :mod:`.sinkhorn_blocks`: the same solver on a large dense kernel built by row blocks and held once;
* :mod:`.dotla`: DOTLA's dual label assignment (Eq. 3-5); :mod:`.nclr`: NCLR (Eq. 6-10);
* :mod:`.mult`: MULT's label transfer (homogeneous + heterogeneous affinities, alternating fixed point);
* :mod:`.neighbours`: chunked cross-set k-NN;
* :mod:`.vra`: VRA's cross-modality cluster matching, shared memories and UM partners;
* :mod:`.vrnl`: VRNL's sparse per-token neighbour sets, camera filter and loss;
* :mod:`.diagnostics`: pseudo-label quality and association accuracy against ground truth.
"""
from .dbscan import dbscan, relabel_outliers
from .diagnostics import cross_modality_association_accuracy, pseudo_label_metrics
from .dotla import DOTLAResult, dual_optimal_transport_labels
from .graph import NeighbourGraph
from .jaccard import jaccard_distance, jaccard_distance_dense, knn
from .mult import LabelSpaceTransfer, MULTResult, mult_label_transfer
from .nclr import NCLRResult, inconsistency_scores, refine_labels_by_neighbours
from .neighbours import cross_knn
from .pseudo_labels import cluster_features
from .sinkhorn import (
    SinkhornResult,
    assign_labels_by_sinkhorn,
    check_log_kernel,
    sinkhorn,
    sinkhorn_log,
    sinkhorn_power,
)
from .sinkhorn_blocks import StoredKernel, sinkhorn_blocks
from .vra import (
    VRAMatching,
    cluster_similarity,
    cross_labels,
    greedy_match,
    merge_partners,
    shared_centroids,
    token_centroids,
)
from .vrnl import NeighbourSets, camera_filter, token_neighbours, vrnl_loss

__all__ = [k for k in globals() if not k.startswith("_")]
