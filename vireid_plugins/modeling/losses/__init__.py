"""Loss modules and pure loss functions (tensors in, tensors out); criteria are registered on import."""
from .base import VIReIDCriterion
from .build import CRITERION_REGISTRY, build_criterion
from .cluster_memory import ClusterMemory, soft_cross_entropy
from .distillation import sharpened_cross_entropy
from .dual_memory import DualClusterMemoryLoss, branch_batches, feature_dim
from .neighbour_consistency import neighbour_consistency_loss

__all__ = [k for k in globals() if not k.startswith("_")]
