"""Optimizer helpers for parameters whose shape changes during training (re-clustered classifiers)."""
import torch

__all__ = ["forget_stale_optimizer_state"]


def forget_stale_optimizer_state(optimizer: torch.optim.Optimizer) -> int:
    """Drop the state (momentum, Adam moments) of every parameter whose shape no longer matches it.

    Resizable modules replace a parameter's ``.data`` in place, so the parameter stays in its group and the
    scheduler and checkpointer keep valid references; only its stale per-parameter state must go.
    Returns the number of parameters whose state was dropped.
    """
    stale = [p for p, state in optimizer.state.items()
             if any(torch.is_tensor(v) and v.dim() > 0 and v.shape != p.shape for v in state.values())]
    for p in stale:
        del optimizer.state[p]
    return len(stale)
