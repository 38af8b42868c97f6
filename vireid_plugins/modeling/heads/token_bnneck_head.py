"""One BN neck per class token, for multi-token backbones (``TokenViT``).

``forward(tokens)``: ``(B, T, D)`` class tokens -> ``{"features": (B, T*D), "tokens": (B, T, D)}``, in training
and at test time. ``tokens[:, n] = BN_n(tokens[:, n])`` with ``T`` independent BN necks (fast-reid norm
``MODEL.HEADS.NORM``, bias frozen as in fast-reid's ``EmbeddingHead`` and TransReID); ``features`` is their
concatenation, the image-level feature of the paper's "regional spaces" (Sun, Du, Gao, §3.1:
``f = concat_n BN(t_n)``). Batch normalisation treats every channel on its own, so the ``T`` necks are stored as
one norm layer over the ``T*D`` channels of the concatenation (channel ``n*D + d`` is token ``n``'s channel
``d``) and run in one call.
"""
from fastreid.config import configurable
from fastreid.layers import get_norm
from fastreid.layers.weight_init import weights_init_kaiming
from fastreid.modeling.heads import REID_HEADS_REGISTRY
from torch import nn

__all__ = ["TokenBNNeckHead"]


@REID_HEADS_REGISTRY.register()
class TokenBNNeckHead(nn.Module):
    """``T`` BN necks of width ``D`` (one ``T*D``-channel norm layer, ``bottleneck``)."""

    @configurable
    def __init__(self, *, feat_dim: int, num_tokens: int, norm_type: str = "BN"):
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f"TokenBNNeckHead: num_tokens must be >= 1, got {num_tokens}")
        self.feat_dim, self.num_tokens = feat_dim, num_tokens
        self.bottleneck = get_norm(norm_type, num_tokens * feat_dim, bias_freeze=True)
        self.bottleneck.apply(weights_init_kaiming)

    @classmethod
    def from_config(cls, cfg):
        return {"feat_dim": cfg.MODEL.BACKBONE.FEAT_DIM, "num_tokens": cfg.MODEL.BACKBONE.NUM_TOKENS,
                "norm_type": cfg.MODEL.HEADS.NORM}

    def forward(self, tokens, targets=None) -> dict:
        """
        Args:
            tokens: ``(B, T, D)`` class tokens (pre-BN).

        Returns:
            ``{"features": (B, T*D), "tokens": (B, T, D)}`` BN-neck outputs.
        """
        if tokens.dim() != 3 or tokens.shape[1:] != (self.num_tokens, self.feat_dim):
            raise ValueError(f"TokenBNNeckHead: expected (B, {self.num_tokens}, {self.feat_dim}) tokens, got "
                             f"{list(tokens.shape)}")
        features = self.bottleneck(tokens.flatten(1)[..., None, None])[..., 0, 0]  # fast-reid norms are 2-D
        return {"features": features, "tokens": features.view_as(tokens)}
