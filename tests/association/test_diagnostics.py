"""Pseudo-label diagnostics on hand-worked cases and against scikit-learn / brute-force pair counting."""
import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from vireid_plugins.association.diagnostics import cross_modality_association_accuracy, pseudo_label_metrics


def test_hand_worked_pairwise_scores():
    pred, truth = [0, 0, 1, 1, -1], [0, 0, 0, 1, 1]
    # Sample 4 is an outlier and leaves; samples 0..3 have pred [0, 0, 1, 1], truth [0, 0, 0, 1].
    # Same predicted cluster: (0,1), (2,3)                 -> 2 predicted-positive pairs
    # Same identity:          (0,1), (0,2), (1,2)          -> 3 truth-positive pairs
    # Both:                   (0,1)                        -> 1
    # precision = 1/2, recall = 1/3, F = 2 * (1/2)(1/3) / (1/2 + 1/3) = 2/5
    m = pseudo_label_metrics(pred, truth)
    assert m["num_clusters"] == 2
    assert m["outlier_ratio"] == pytest.approx(0.2)
    assert m["precision"] == pytest.approx(1 / 2)
    assert m["recall"] == pytest.approx(1 / 3)
    assert m["f_score"] == pytest.approx(2 / 5)
    # nmi / ari: the outlier becomes its own cluster 2.
    assert m["nmi"] == pytest.approx(normalized_mutual_info_score(truth, [0, 0, 1, 1, 2]))
    assert m["ari"] == pytest.approx(adjusted_rand_score(truth, [0, 0, 1, 1, 2]))


def test_second_hand_worked_case():
    pred = torch.tensor([2, 2, 2, 5, 5, -1, -1])
    truth = torch.tensor([7, 7, 8, 8, 8, 7, 9])
    # Non-outliers 0..4: pred [2, 2, 2, 5, 5], truth [7, 7, 8, 8, 8].
    # Predicted-positive: (0,1), (0,2), (1,2), (3,4)       -> 4
    # Truth-positive:     (0,1), (2,3), (2,4), (3,4)       -> 4
    # Both:               (0,1), (3,4)                     -> 2
    m = pseudo_label_metrics(pred, truth)
    assert (m["precision"], m["recall"], m["f_score"]) == (0.5, 0.5, 0.5)
    assert m["num_clusters"] == 2
    assert m["outlier_ratio"] == pytest.approx(2 / 7)


def test_perfect_and_degenerate_cases():
    m = pseudo_label_metrics([3, 3, 1, 1], [0, 0, 1, 1])
    assert (m["precision"], m["recall"], m["f_score"], m["nmi"], m["ari"]) == (1.0, 1.0, 1.0, 1.0, 1.0)
    m = pseudo_label_metrics([-1, -1, -1], [0, 0, 1])
    assert m["num_clusters"] == 0 and m["outlier_ratio"] == 1.0
    assert (m["precision"], m["recall"], m["f_score"]) == (0.0, 0.0, 0.0)


def brute_force_pairwise(pred, truth):
    kept = [i for i in range(len(pred)) if pred[i] != -1]
    pairs = list(itertools.combinations(kept, 2))
    same_pred = sum(pred[i] == pred[j] for i, j in pairs)
    same_truth = sum(truth[i] == truth[j] for i, j in pairs)
    both = sum(pred[i] == pred[j] and truth[i] == truth[j] for i, j in pairs)
    return (both / same_pred if same_pred else 0.0), (both / same_truth if same_truth else 0.0)


@pytest.mark.parametrize("seed", range(10))
def test_random_against_brute_force_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    pred = rng.integers(-1, 6, n)
    truth = rng.integers(0, 5, n)
    m = pseudo_label_metrics(pred, truth)
    precision, recall = brute_force_pairwise(pred, truth)
    assert m["precision"] == pytest.approx(precision) and m["recall"] == pytest.approx(recall)
    singletons = pred.copy()
    singletons[pred == -1] = 100 + np.arange((pred == -1).sum())
    assert m["nmi"] == pytest.approx(normalized_mutual_info_score(truth, singletons))
    assert m["ari"] == pytest.approx(adjusted_rand_score(truth, singletons))
    assert m["num_clusters"] == len(set(pred.tolist()) - {-1})


def test_metric_input_validation():
    with pytest.raises(ValueError, match="same shape"):
        pseudo_label_metrics([0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="1-D"):
        pseudo_label_metrics([[0, 1]], [[0, 1]])
    with pytest.raises(ValueError, match="empty"):
        pseudo_label_metrics([], [])


def test_association_accuracy_hand_worked():
    # Target clusters vs identities (outliers excluded):
    #   identity 10: cluster 0 x2, cluster 1 x1   -> best cluster 0
    #   identity 11: cluster 1 x2                 -> best cluster 1 (its outlier instance is ignored)
    #   identity 12: cluster 2 x1, cluster 3 x1   -> tie, smallest cluster 2
    #   identity 13: outliers only                -> no clustered instance, its source instances are excluded
    target_labels = [0, 0, 1, 1, 1, -1, 2, 3, -1]
    target_truth = [10, 10, 10, 11, 11, 11, 12, 12, 13]
    # Source instances: identity / associated cluster / verdict
    #   10 -> 0 correct | 10 -> 1 wrong | 11 -> 1 correct | 11 -> -1 wrong | 12 -> 3 wrong | 12 -> 2 correct
    #   13 -> 0 excluded | 14 -> 1 excluded (identity absent from the target modality)
    cross_labels = [0, 1, 1, -1, 3, 2, 0, 1]
    source_truth = [10, 10, 11, 11, 12, 12, 13, 14]
    acc = cross_modality_association_accuracy(cross_labels, source_truth, target_labels, target_truth)
    assert acc == pytest.approx(3 / 6)
    acc = cross_modality_association_accuracy(torch.tensor(cross_labels), torch.tensor(source_truth),
                                              torch.tensor(target_labels), torch.tensor(target_truth))
    assert acc == pytest.approx(3 / 6)


def test_association_accuracy_without_counted_instances_is_nan():
    assert np.isnan(cross_modality_association_accuracy([0, 1], [5, 6], [0, -1], [7, 5]))
    assert np.isnan(cross_modality_association_accuracy([0], [5], [-1, -1], [5, 5]))


@pytest.mark.parametrize("seed", range(5))
def test_association_accuracy_random_against_loop(seed):
    rng = np.random.default_rng(seed)
    target_labels, target_truth = rng.integers(-1, 8, 200), rng.integers(0, 12, 200)
    cross_labels, source_truth = rng.integers(-1, 8, 150), rng.integers(0, 14, 150)
    best = {}
    for pid in np.unique(target_truth):
        clusters = target_labels[(target_truth == pid) & (target_labels != -1)]
        if clusters.size:
            best[pid] = int(np.argmax(np.bincount(clusters)))
    verdicts = [cross_labels[i] == best[p] for i, p in enumerate(source_truth) if p in best]
    acc = cross_modality_association_accuracy(cross_labels, source_truth, target_labels, target_truth)
    assert acc == pytest.approx(np.mean(verdicts))
