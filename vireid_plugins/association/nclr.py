"""Neighbour-consistency guided label refinement, NCLR (Eq. 6-10 of DOTLA).

Shown for the visible-ReID branch: infrared instances ``x^r`` carry labels ``y^{r<-v}`` assigned from the
visible label space (by DOTLA); the infrared branch mirrors it with the roles of the modalities swapped.

1. Inconsistency (Eq. 6): ``s_i = KL(onehot(y_i^{r<-v}) || (1/k) sum_{j in N_k(x_i^r, V)} onehot(y_j^v))``, the
   ``k`` nearest *labelled* visible instances by L2 distance (a DBSCAN outlier has no label ``y_j^v`` to vote
   with). With a one-hot first argument this is ``s_i = -log(fraction of the k neighbours whose visible label is
   y_i^{r<-v})``; ``eps`` keeps it finite.
2. Split (Eq. 7-8): clean if ``s_i <= tau``, noisy otherwise.
3. Refinement (Eq. 9-10): a noisy instance's label becomes
   ``(1 - gamma) onehot(y_i) + gamma * (1/k) sum_{j in N_k(x_i^r, R) ∩ clean} onehot(y_j^{r<-v})``, the sum over
   its ``k`` nearest *same-modality* neighbours that are clean (Eq. 9). ``normalize="k"`` is Eq. 10 as written (a
   row sums to ``1 - gamma + gamma |N-hat| / k``, less than 1 when some neighbours are noisy); ``normalize="clean"``
   (our option) divides by ``|N-hat|`` instead, so rows stay distributions, and leaves the label unchanged when no
   neighbour is clean.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .neighbours import cross_knn

__all__ = ["NCLRResult", "inconsistency_scores", "refine_labels_by_neighbours"]


class NCLRResult(NamedTuple):
    soft_labels: torch.Tensor  # (N, K) refined label distributions
    scores: torch.Tensor  # (N,) inconsistency scores s_i
    noisy: torch.Tensor  # (N,) bool, s_i > tau


def inconsistency_scores(assigned: torch.Tensor, source_feats: torch.Tensor, target_feats: torch.Tensor,
                         target_labels: torch.Tensor, k: int = 10, eps: float = 1e-6,
                         chunk_size: int = 4096) -> torch.Tensor:
    """Eq. 6: ``(N,)`` scores of ``assigned`` (``N`` labels in the target label space) for ``source_feats``
    ``(N, D)`` against the target modality's ``(M, D)`` features and their own ``(M,)`` labels; the neighbours are
    the ``k`` nearest *labelled* target instances (``-1``, an outlier, has no label to vote with)."""
    labelled = torch.nonzero(target_labels >= 0, as_tuple=True)[0]
    if labelled.numel() == 0:
        raise ValueError("NCLR (Eq. 6): the target modality has no labelled instance to vote")
    _, idx = cross_knn(source_feats, target_feats[labelled], k, chunk_size)
    agree = (target_labels[labelled][idx] == assigned[:, None]) & (assigned[:, None] >= 0)
    return -torch.log(agree.float().mean(dim=1) + eps)


def refine_labels_by_neighbours(assigned: torch.Tensor, num_classes: int, source_feats: torch.Tensor,
                                target_feats: torch.Tensor, target_labels: torch.Tensor, k: int = 10,
                                tau: float = 1.0, gamma: float = 0.25, normalize: str = "k", eps: float = 1e-6,
                                chunk_size: int = 4096) -> NCLRResult:
    """Eq. 6-10: refined ``(N, K)`` soft labels of the source instances (see the module docstring).

    Args:
        assigned: ``(N,)`` labels of the source instances in the target label space ``0..K-1``.
        num_classes: K.
        source_feats: ``(N, D)`` features of the source instances (e.g. infrared).
        target_feats, target_labels: ``(M, D)`` features and ``(M,)`` own labels of the target modality.
        normalize: ``"k"`` (Eq. 10 as written) or ``"clean"`` (divide by the number of clean neighbours).
    """
    if normalize not in ("k", "clean"):
        raise ValueError(f'NCLR: normalize must be "k" (Eq. 10) or "clean", got {normalize!r}')
    scores = inconsistency_scores(assigned, source_feats, target_feats, target_labels, k, eps, chunk_size)
    noisy = scores > tau
    onehot = F.one_hot(assigned.clamp(min=0), num_classes).float() * (assigned >= 0)[:, None]
    soft = onehot.clone()
    rows = noisy.nonzero().squeeze(1)
    if rows.numel():
        # k + 1 neighbours: a row is its own nearest one, and (noisy) it is never counted as clean
        _, idx = cross_knn(source_feats[rows], source_feats, k + 1, chunk_size)
        clean = ~noisy[idx]
        votes = (onehot[idx] * clean[..., None]).sum(1)  # (R, K)
        if normalize == "k":
            soft[rows] = (1 - gamma) * onehot[rows] + gamma * votes / k
        else:
            count = clean.sum(1, keepdim=True)
            has_clean = count.squeeze(1) > 0
            refined = (1 - gamma) * onehot[rows] + gamma * votes / count.clamp(min=1)
            soft[rows[has_clean]] = refined[has_clean]
    return NCLRResult(soft, scores, noisy)
