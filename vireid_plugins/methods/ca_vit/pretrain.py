"""Supervised (source) pre-training of the multi-token ViT with fast-reid's losses.

:class:`TokenClassifierHead` is :class:`~vireid_plugins.modeling.heads.TokenBNNeckHead` plus a linear identity
classifier on the concatenated BN-neck feature, for :class:`~vireid_plugins.modeling.meta_arch.VIReIDBaseline`
(cross-entropy + triplet, ``MODEL.LOSSES``) on a labelled set, e.g. the visible-only source set of the synthetic
demo (``configs/Synthetic/source_pretrain_vit.yml``), the ViT counterpart of the ResNet demos' source pre-training.
Its state-dict keys are the BN-neck head's (``bottleneck.*``) plus ``classifier.weight``, so the checkpoint
initialises a CA-ViT model (``TokenBNNeckHead``) strictly; the classifier is an extra key, left out.
"""
from fastreid.config import configurable
from fastreid.modeling.heads import REID_HEADS_REGISTRY
from torch import nn

from ...modeling.heads import TokenBNNeckHead

__all__ = ["TokenClassifierHead"]

NECK_FEATS = ("before", "after")


@REID_HEADS_REGISTRY.register()
class TokenClassifierHead(TokenBNNeckHead):
    """``T`` BN necks and a classifier (``T*D -> MODEL.HEADS.NUM_CLASSES``, no bias, fast-reid's ``Linear`` layer).

    ``forward(tokens)``: ``(B, T, D)`` class tokens -> in training fast-reid's head outputs ``{"cls_outputs",
    "pred_class_logits": (B, C) logits, "features": (B, T*D)}`` (the triplet feature: before the BN necks with
    ``MODEL.HEADS.NECK_FEAT "before"``, after them with ``"after"``); at test time the ``(B, T*D)`` BN-neck features.
    """

    @configurable
    def __init__(self, *, feat_dim: int, num_tokens: int, num_classes: int, norm_type: str = "BN",
                 neck_feat: str = "before"):
        super().__init__(feat_dim=feat_dim, num_tokens=num_tokens, norm_type=norm_type)
        if num_classes < 1:
            raise ValueError(f"TokenClassifierHead: MODEL.HEADS.NUM_CLASSES must be >= 1, got {num_classes}")
        if neck_feat not in NECK_FEATS:
            raise ValueError(f"TokenClassifierHead: MODEL.HEADS.NECK_FEAT must be one of {NECK_FEATS}, got "
                             f"{neck_feat!r}")
        self.neck_feat = neck_feat
        self.classifier = nn.Linear(num_tokens * feat_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.01)

    @classmethod
    def from_config(cls, cfg):
        return {**TokenBNNeckHead.from_config(cfg), "num_classes": cfg.MODEL.HEADS.NUM_CLASSES,
                "neck_feat": cfg.MODEL.HEADS.NECK_FEAT}

    def forward(self, tokens, targets=None):
        features = super().forward(tokens)["features"]
        if not self.training:
            return features
        logits = self.classifier(features)
        return {"cls_outputs": logits, "pred_class_logits": logits,
                "features": tokens.flatten(1) if self.neck_feat == "before" else features}
