"""Training samplers (registered in ``SAMPLER_REGISTRY``)."""
from .build import SAMPLER_REGISTRY, RandomSampler, build_train_sampler, sampler_seed
from .dual_modality import DualModalitySampler

__all__ = [k for k in globals() if not k.startswith("_")]
