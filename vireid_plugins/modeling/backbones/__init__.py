"""(registration imports are added as modules land)"""
from .agw import AGWBackbone, NonLocalBlock, build_agw_backbone, load_torchvision_resnet_weights  # noqa: F401
