"""Soft cross-entropy towards a sharpened target prediction (OCLR of MULT: He et al., IJCV'24, Sec. 3.4)."""
import torch
import torch.nn.functional as F

__all__ = ["sharpened_cross_entropy"]


def sharpened_cross_entropy(pred_logits: torch.Tensor, target_logits: torch.Tensor, temperature: float = 0.2,
                            detach_target: bool = False) -> torch.Tensor:
    """``-(1/B) sum_b sum_k softmax(t_b / T)_k log softmax(p_b)_k``.

    Args:
        pred_logits: ``(B, K)`` logits of the prediction being refined (e.g. the cross-modality memory's).
        target_logits: ``(B, K)`` logits whose sharpened softmax is the target (e.g. an intra-modality memory's).
        temperature: ``T``; memory logits are already divided by the memory temperature, so the target is
            sharpened to ``tau * T``.
        detach_target: stop the gradient through the target (MULT's code lets it flow).
    """
    if pred_logits.shape != target_logits.shape or pred_logits.dim() != 2:
        raise ValueError(f"expected two (B, K) logits of one shape, got {tuple(pred_logits.shape)} and "
                         f"{tuple(target_logits.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    target = F.softmax((target_logits.detach() if detach_target else target_logits).float() / temperature, dim=1)
    return -(target * F.log_softmax(pred_logits.float(), dim=1)).sum(1).mean()
