"""BN-neck embedding head without a classifier, for memory-based (cluster-contrast) training.

``forward(features)``: ``B x C x h x w`` backbone map -> ``{"features": B x C, "pooled": B x C}``, the BN-neck
features and the pooled features before the BN neck (AGW's triplet, ``MODEL.HEADS.NECK_FEAT before``), in
training and at test time. Pooling (``MODEL.HEADS.POOL_LAYER``, e.g. GeM) and the BN layer (``MODEL.HEADS.NORM``,
bias frozen as in fast-reid's ``EmbeddingHead``) are fast-reid's own layers.
"""
from fastreid.config import configurable
from fastreid.layers import get_norm, pooling
from fastreid.layers.weight_init import weights_init_kaiming
from fastreid.modeling.heads import REID_HEADS_REGISTRY
from torch import nn

__all__ = ["BNNeckHead"]


@REID_HEADS_REGISTRY.register()
class BNNeckHead(nn.Module):
    @configurable
    def __init__(self, *, feat_dim: int, pool_type: str, norm_type: str):
        super().__init__()
        if not hasattr(pooling, pool_type):
            raise ValueError(f"MODEL.HEADS.POOL_LAYER: unknown pooling {pool_type!r}")
        self.pool_layer = getattr(pooling, pool_type)()
        # nn.Sequential, as in fast-reid's EmbeddingHead (without an embedding layer), so the state-dict keys
        # (``heads.bottleneck.0.*``) match: a supervised fast-reid checkpoint initialises this BN-neck too.
        self.bottleneck = nn.Sequential(get_norm(norm_type, feat_dim, bias_freeze=True))
        self.bottleneck.apply(weights_init_kaiming)

    @classmethod
    def from_config(cls, cfg):
        return {"feat_dim": cfg.MODEL.BACKBONE.FEAT_DIM, "pool_type": cfg.MODEL.HEADS.POOL_LAYER,
                "norm_type": cfg.MODEL.HEADS.NORM}

    def forward(self, features, targets=None):
        pooled = self.pool_layer(features)
        return {"features": self.bottleneck(pooled)[..., 0, 0], "pooled": pooled[..., 0, 0]}
