"""Loss modules and pure loss functions (tensors in, tensors out); criteria are registered on import."""
from .build import CRITERION_REGISTRY, build_criterion
from .cluster_memory import ClusterMemory, soft_cross_entropy
from .criteria import DualClusterMemoryLoss, ModalityClassifierLoss, ResizableLinear, split_by_modality
from .dotla import DOTLACriterion
from .neighbour_consistency import neighbour_consistency_loss

__all__ = [k for k in globals() if not k.startswith("_")]
