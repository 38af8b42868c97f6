"""Backbones (registered in fast-reid's ``BACKBONE_REGISTRY``)."""
from .agw import AGWBackbone, NonLocalBlock, build_agw_backbone, load_torchvision_resnet_weights
from .token_vit import PatchEmbedding, TokenViT, build_token_vit_backbone, load_vit_pretrained

__all__ = [
    "AGWBackbone",
    "NonLocalBlock",
    "PatchEmbedding",
    "TokenViT",
    "build_agw_backbone",
    "build_token_vit_backbone",
    "load_torchvision_resnet_weights",
    "load_vit_pretrained",
]
