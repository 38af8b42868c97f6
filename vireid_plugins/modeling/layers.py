"""Small layers shared by criteria and methods."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ResizableLinear"]


class ResizableLinear(nn.Module):
    """Bias-free linear classifier ``B x D -> B x K`` whose K changes with the pseudo-labels.

    :meth:`reset` replaces the weight's data in place, so the ``nn.Parameter`` object (and hence the
    optimizer's parameter groups) stays the same; the optimizer state of a resized parameter must be
    dropped (:func:`vireid_plugins.engine.forget_stale_optimizer_state`).
    """

    resizable_state = True  # see vireid_plugins.engine.checkpoint

    def __init__(self, in_features: int, num_classes: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_classes, in_features))

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    @torch.no_grad()
    def reset(self, weight: Tensor):
        self.weight.data = weight.detach().to(self.weight.device, self.weight.dtype).clone()
        self.weight.grad = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the number of classes follows the clustering: take the saved K before copying
        saved = state_dict.get(prefix + "weight")
        if isinstance(saved, Tensor) and saved.dim() == 2 and saved.shape != self.weight.shape:
            self.reset(torch.zeros_like(saved))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)
