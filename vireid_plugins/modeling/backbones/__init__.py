"""Backbones (registered in fast-reid's ``BACKBONE_REGISTRY``)."""
from .agw import AGWBackbone, NonLocalBlock, build_agw_backbone, load_torchvision_resnet_weights

__all__ = ["AGWBackbone", "NonLocalBlock", "build_agw_backbone", "load_torchvision_resnet_weights"]
