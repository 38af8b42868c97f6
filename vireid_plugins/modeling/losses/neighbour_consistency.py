"""Cross-modality neighbour-consistency regularisation, CNCR (Eq. 13-15 of DOTLA)."""
import torch
import torch.nn.functional as F

from ...association.neighbours import cross_knn

__all__ = ["neighbour_consistency_loss"]


def neighbour_consistency_loss(anchor_logits: torch.Tensor, anchor_feats: torch.Tensor,
                               neighbour_logits: torch.Tensor, neighbour_feats: torch.Tensor, k: int = 10,
                               eps: float = 1e-8) -> torch.Tensor:
    """Eq. 13 (and Eq. 14 with the roles swapped): ``mean_i KL(p_i || (1/k) sum_{j in kNN(i)} q_j)``.

    Args:
        anchor_logits: ``(A, K)`` classifier logits of the anchors (e.g. visible images under ``phi_v``).
        anchor_feats: ``(A, D)`` their features, used only to find neighbours.
        neighbour_logits: ``(B, K)`` logits of the other modality's in-batch images under the *same* classifier.
        neighbour_feats: ``(B, D)`` their features.
        k: neighbours per anchor, searched within the batch by L2 distance on normalised features (capped at B).

    Gradients flow through both distributions (the paper does not say whether the neighbour term is detached);
    the neighbour search is not differentiated.
    """
    if anchor_logits.shape[0] == 0 or neighbour_logits.shape[0] == 0:
        return anchor_logits.sum() * 0.0
    _, idx = cross_knn(anchor_feats.detach(), neighbour_feats.detach(), k)
    log_p = F.log_softmax(anchor_logits.float(), dim=1)
    q = F.softmax(neighbour_logits.float(), dim=1)[idx].mean(dim=1)
    return (log_p.exp() * (log_p - torch.log(q + eps))).sum(dim=1).mean()
