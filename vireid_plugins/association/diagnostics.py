"""Quality diagnostics of pseudo labels against ground-truth identities (for logging; never used in training).

All functions take 1-D integer arrays (numpy arrays, torch tensors or sequences) and run in ``O(N log N)``
(a sort to build the contingency table); no ``O(N^2)`` pair enumeration.
"""
import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

__all__ = ["pseudo_label_metrics", "cross_modality_association_accuracy"]


def _as_labels(x, name: str) -> np.ndarray:
    """``(N,)`` int64 numpy copy of a 1-D integer array or tensor."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if x.size and not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {x.dtype}")
    return x.astype(np.int64)


def _pairs(counts: np.ndarray) -> int:
    """Number of unordered pairs ``sum(c * (c - 1) / 2)`` within groups of the given sizes."""
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def _contingency_counts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero cells of the contingency table of two labelings of the same samples.

    Returns:
        ``(a_values, b_values, counts)``, each ``(M,)``: cell ``(a_values[m], b_values[m])`` holds ``counts[m] > 0``
        samples; cells are sorted by ``(a, b)``.
    """
    cells, counts = np.unique(np.stack([a, b]), axis=1, return_counts=True)
    return cells[0], cells[1], counts


def _outliers_as_singletons(labels: np.ndarray) -> np.ndarray:
    """Copy of ``labels`` in which every ``-1`` gets its own new id after ``max(labels)``."""
    labels = labels.copy()
    outliers = labels == -1
    start = labels.max() + 1 if labels.size else 0
    labels[outliers] = np.arange(start, start + outliers.sum())
    return labels


def pseudo_label_metrics(pred, truth) -> dict:
    """Cluster-quality metrics of pseudo labels ``pred`` against identities ``truth``.

    Args:
        pred: ``(N,)`` pseudo labels, ``-1`` for outliers.
        truth: ``(N,)`` ground-truth identity ids (every value, negative ones included, is an ordinary id).

    Returns:
        dict with float values (``num_clusters`` is an int):

        * ``num_clusters``: number of distinct labels in ``pred``, ``-1`` excluded.
        * ``outlier_ratio``: fraction of samples with ``pred == -1``.
        * ``precision``, ``recall``, ``f_score``: pairwise scores over the unordered pairs of NON-outlier
          samples only (outliers are removed first). A pair is predicted-positive if both samples share a
          predicted cluster, truth-positive if they share an identity; ``precision = |pred-pos & truth-pos| /
          |pred-pos|``, ``recall = |pred-pos & truth-pos| / |truth-pos|`` (the denominator counts same-identity
          pairs among the non-outliers, so pairs lost to outliers do not lower the recall — read it together
          with ``outlier_ratio``), ``f_score`` their harmonic mean. A score whose denominator is 0 is 0.0.
          Computed from the contingency table: ``sum C(n_ij, 2)`` over cells, ``sum C(a_i, 2)`` over clusters,
          ``sum C(b_j, 2)`` over identities.
        * ``nmi``, ``ari``: scikit-learn's ``normalized_mutual_info_score`` (arithmetic normalisation) and
          ``adjusted_rand_score`` over ALL samples, each outlier counted as its own singleton cluster.
    """
    pred, truth = _as_labels(pred, "pred"), _as_labels(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}")
    if pred.size == 0:
        raise ValueError("pred and truth must not be empty")

    outliers = pred == -1
    kept_pred, kept_truth = pred[~outliers], truth[~outliers]
    _, _, cell_counts = _contingency_counts(kept_pred, kept_truth)
    same_both = _pairs(cell_counts)
    same_pred = _pairs(np.unique(kept_pred, return_counts=True)[1])
    same_truth = _pairs(np.unique(kept_truth, return_counts=True)[1])
    precision = same_both / same_pred if same_pred else 0.0
    recall = same_both / same_truth if same_truth else 0.0
    f_score = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0

    singleton_pred = _outliers_as_singletons(pred)
    return {
        "num_clusters": int(np.unique(kept_pred).size),
        "outlier_ratio": float(outliers.mean()),
        "precision": float(precision),
        "recall": float(recall),
        "f_score": float(f_score),
        "nmi": float(normalized_mutual_info_score(truth, singleton_pred)),
        "ari": float(adjusted_rand_score(truth, singleton_pred)),
    }


def cross_modality_association_accuracy(cross_labels, source_truth, target_labels, target_truth) -> float:
    """Accuracy of the cross-modality cluster association of source-modality instances.

    The *correct* target cluster of an identity is the target cluster holding the most target instances of that
    identity: the argmax over clusters of the contingency table of ``target_truth`` vs ``target_labels``, target
    outliers (``-1``) excluded, ties broken towards the smallest cluster label. A source instance whose identity
    has at least one clustered target instance counts in the denominator and is correct iff its
    ``cross_labels`` entry equals that cluster (``-1``, no association, is wrong). Source instances whose identity
    has no clustered target instance are excluded.

    Args:
        cross_labels: ``(N_s,)`` target-cluster label associated to each source instance, ``-1`` for none.
        source_truth: ``(N_s,)`` identity ids of the source instances.
        target_labels: ``(N_t,)`` cluster labels of the target instances, ``-1`` for outliers.
        target_truth: ``(N_t,)`` identity ids of the target instances.

    Returns:
        Fraction of correct source instances, ``nan`` when no source instance is counted.
    """
    cross_labels, source_truth = _as_labels(cross_labels, "cross_labels"), _as_labels(source_truth, "source_truth")
    target_labels, target_truth = _as_labels(target_labels, "target_labels"), _as_labels(target_truth, "target_truth")
    if cross_labels.shape != source_truth.shape:
        raise ValueError(f"cross_labels and source_truth must have the same shape, "
                         f"got {cross_labels.shape} and {source_truth.shape}")
    if target_labels.shape != target_truth.shape:
        raise ValueError(f"target_labels and target_truth must have the same shape, "
                         f"got {target_labels.shape} and {target_truth.shape}")

    clustered = target_labels != -1
    ids, clusters, counts = _contingency_counts(target_truth[clustered], target_labels[clustered])
    # Best cluster per identity: sort cells by (id, -count, cluster) and keep the first cell of each id.
    order = np.lexsort((clusters, -counts, ids))
    best_ids, first = np.unique(ids[order], return_index=True)
    best_cluster = clusters[order][first]

    pos = np.searchsorted(best_ids, source_truth)
    pos = np.minimum(pos, max(best_ids.size - 1, 0))
    counted = best_ids[pos] == source_truth if best_ids.size else np.zeros(source_truth.shape, dtype=bool)
    if not counted.any():
        return float("nan")
    return float((cross_labels[counted] == best_cluster[pos[counted]]).mean())
