"""Training samplers (registered in ``SAMPLER_REGISTRY``): ours and fast-reid's."""
from .build import SAMPLER_REGISTRY, CommDatasetView, RandomSampler, build_train_sampler, sampler_seed
from .dual_modality import DualModalitySampler
from .fastreid_samplers import FASTREID_SAMPLER_NAMES

__all__ = [k for k in globals() if not k.startswith("_")]
