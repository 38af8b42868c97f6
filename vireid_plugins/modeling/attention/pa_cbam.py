"""PA-CBAM: Person-ReID Adaptive CBAM (Sun, Du, Gao, "A Multimodule Collaborative Framework for Unsupervised
Visible-Infrared Person Re-Identification with Channel Enhancement Modality", §3.2), built on CBAM (Woo et al.,
ECCV'18).

For a map ``F`` of shape ``(B, C, H, W)``:

* **PI-CA** (part-aware channel attention). ``F`` is cut into ``K`` horizontal stripes; each stripe is
  average- and max-pooled, and the ``K`` descriptors are concatenated stripe after stripe
  (``P = [p_1; ...; p_K]``, ``(B, K*C)``). A shared MLP ``W1 ReLU(W0 P)`` (``W0: K*C -> C/r``,
  ``W1: C/r -> C``, no biases) gives ``a = sigmoid(MLP(P_avg) + MLP(P_max))`` (``(B, C)``) and
  ``F' = a * F``. Stripes come from adaptive pooling, so ``H`` need not be a multiple of ``K``.
* **M-SA** (multi-scale spatial attention). ``S = [mean_c F'; max_c F']`` (``(B, 2, H, W)``) goes through
  one ``k x k`` convolution per kernel (2 -> 1 channel, 'same' padding; kernels 1, 3, 7), the results are
  fused by a 1x1 convolution and ``M = sigmoid(.)`` (``(B, 1, H, W)``); ``F'' = M * F'``.
* Output ``F + F''``: the residual form keeps a pretrained backbone's features as they were, plus a refinement.

The identity-guided regulariser of PI-CA (the paper's ``R`` with weight ``lambda``) is
:func:`identity_guided_regulariser`; the caller applies it to :attr:`PACBAM.last_channel_attention` and the batch's
pseudo-labels, and adds ``lambda * R`` (``MODEL.BACKBONE.PA_CBAM.REG_WEIGHT``) to its loss.
"""
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .build import ATTENTION_REGISTRY

__all__ = ["PACBAM", "identity_guided_regulariser"]


@ATTENTION_REGISTRY.register()
class PACBAM(nn.Module):
    """Part-aware channel attention followed by multi-scale spatial attention, residual output.

    Args:
        channels: ``C``.
        stripes: ``K``, horizontal stripes of the channel attention (the map height must be ``>= K``).
        reduction: ``r``; the MLP's hidden width is ``max(C // r, 1)``.
        kernels: spatial-attention kernel sizes (odd).

    Attributes:
        last_channel_attention: ``(B, C)`` channel attention ``a`` of the last forward (with its graph), or None.
    """

    def __init__(self, channels: int, stripes: int = 6, reduction: int = 16, kernels: Sequence[int] = (1, 3, 7)):
        super().__init__()
        kernels = [int(k) for k in kernels]
        if channels < 1 or stripes < 1 or reduction < 1:
            raise ValueError(f"PACBAM: channels, stripes and reduction must be >= 1, got {channels}, {stripes}, "
                             f"{reduction}")
        if not kernels or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"PACBAM: kernels must be a non-empty list of odd sizes, got {kernels}")
        self.channels, self.stripes = channels, stripes
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Linear(stripes * channels, hidden, bias=False),  # W0
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),  # W1
        )
        self.spatial = nn.ModuleList([nn.Conv2d(2, 1, k, padding=k // 2, bias=False) for k in kernels])
        self.fuse = nn.Conv2d(len(kernels), 1, kernel_size=1)
        self.last_channel_attention: torch.Tensor | None = None

    @classmethod
    def from_config(cls, node, channels: int) -> dict:
        return {"channels": channels, "stripes": node.STRIPES, "reduction": node.REDUCTION, "kernels": node.KERNELS}

    def stripe_descriptors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P_avg, P_max)``, each ``(B, K*C)``: stripe ``k`` occupies columns ``k*C .. (k+1)*C - 1``."""
        b = x.shape[0]
        p_avg = F.adaptive_avg_pool2d(x, (self.stripes, 1))[..., 0]  # B x C x K
        p_max = F.adaptive_max_pool2d(x, (self.stripes, 1))[..., 0]
        return p_avg.transpose(1, 2).reshape(b, -1), p_max.transpose(1, 2).reshape(b, -1)

    def channel_attention(self, x: torch.Tensor) -> torch.Tensor:
        """``a = sigmoid(MLP(P_avg) + MLP(P_max))``, ``(B, C)``."""
        p_avg, p_max = self.stripe_descriptors(x)
        return torch.sigmoid(self.mlp(p_avg) + self.mlp(p_max))

    def spatial_attention(self, x: torch.Tensor) -> torch.Tensor:
        """``M = sigmoid(Conv1x1([Conv_k([mean_c x; max_c x]) for k]))``, ``(B, 1, H, W)``."""
        s = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.fuse(torch.cat([conv(s) for conv in self.spatial], dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``: ``F + M(F') * F'`` with ``F' = a * F``."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"PACBAM: expected a B x {self.channels} x H x W map, got {list(x.shape)}")
        if x.shape[2] < self.stripes:
            raise ValueError(f"PACBAM: the map height {x.shape[2]} is smaller than the {self.stripes} stripes "
                             f"(MODEL.BACKBONE.PA_CBAM.STRIPES)")
        a = self.channel_attention(x)
        self.last_channel_attention = a
        refined = a[:, :, None, None] * x
        return x + self.spatial_attention(refined) * refined


def identity_guided_regulariser(attention: torch.Tensor, labels: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Identity-guided regulariser of PI-CA (§3.2): consistent channel weights within a pseudo-identity, distinct
    ones across identities.

    ``R = mean_{y_i = y_j, i != j} d_ij + mean_{y_i != y_j} [m - d_ij]_+`` with ``d_ij = ||a_i - a_j||^2 / C``.
    Samples labelled ``< 0`` (outliers) are left out; a mean over no pair is 0.

    Args:
        attention: ``(B, C)`` channel attention vectors (:attr:`PACBAM.last_channel_attention`).
        labels: ``(B,)`` pseudo-labels.
        margin: ``m``.

    Returns:
        Scalar ``R`` (differentiable w.r.t. ``attention``); the caller multiplies it by ``lambda``.
    """
    if attention.dim() != 2 or labels.shape != attention.shape[:1]:
        raise ValueError(f"identity_guided_regulariser: expected (B, C) attention and (B,) labels, got "
                         f"{tuple(attention.shape)} and {tuple(labels.shape)}")
    a = attention.to(torch.promote_types(attention.dtype, torch.float32))
    sq = a.pow(2).sum(dim=1)
    d = (sq[:, None] + sq[None, :] - 2.0 * a @ a.T).clamp_min(0.0) / a.shape[1]  # B x B
    labels = labels.to(a.device)
    valid = labels >= 0
    pair = valid[:, None] & valid[None, :]
    same = (labels[:, None] == labels[None, :]) & pair
    same.fill_diagonal_(False)
    diff = (labels[:, None] != labels[None, :]) & pair
    zero = a.new_zeros(())
    pull = d[same].mean() if same.any() else zero
    push = (margin - d[diff]).clamp_min(0.0).mean() if diff.any() else zero
    return pull + push
