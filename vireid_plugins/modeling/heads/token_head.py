"""Per-token BN-neck head for multi-token backbones (a ViT with ``T`` class tokens).

``forward(tokens)``: ``B x T x D`` class tokens -> ``{"features": B x (T*D), "tokens": B x T x D}``: one BN neck
(``MODEL.HEADS.NORM``, bias frozen as in fast-reid's ``EmbeddingHead``) per token; ``features`` is their
concatenation, the image-level feature.
"""
import torch
from fastreid.config import configurable
from fastreid.layers import get_norm
from fastreid.layers.weight_init import weights_init_kaiming
from fastreid.modeling.heads import REID_HEADS_REGISTRY
from torch import nn

__all__ = ["TokenBNNeckHead"]


@REID_HEADS_REGISTRY.register()
class TokenBNNeckHead(nn.Module):
    @configurable
    def __init__(self, *, feat_dim: int, num_tokens: int, norm_type: str):
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f"MODEL.BACKBONE.NUM_TOKENS must be >= 1, got {num_tokens}")
        self.num_tokens = num_tokens
        self.bottlenecks = nn.ModuleList([get_norm(norm_type, feat_dim, bias_freeze=True) for _ in range(num_tokens)])
        self.bottlenecks.apply(weights_init_kaiming)

    @classmethod
    def from_config(cls, cfg):
        return {"feat_dim": cfg.MODEL.BACKBONE.FEAT_DIM, "num_tokens": cfg.MODEL.BACKBONE.NUM_TOKENS,
                "norm_type": cfg.MODEL.HEADS.NORM}

    def forward(self, tokens, targets=None):
        if tokens.dim() != 3 or tokens.shape[1] != self.num_tokens:
            raise ValueError(f"TokenBNNeckHead: expected B x {self.num_tokens} x D tokens, got {tuple(tokens.shape)}")
        out = torch.stack([bn(tokens[:, t, :, None, None])[..., 0, 0] for t, bn in enumerate(self.bottlenecks)], dim=1)
        return {"features": out.flatten(1), "tokens": out}
