"""Registry of training samplers.

Call contract: registered classes are ``torch`` samplers with a classmethod
``from_config(cfg, dataset, epoch) -> sampler``; ``build_train_sampler(cfg, dataset, epoch, name=None)``
looks up ``name`` or ``cfg.DATALOADER.SAMPLER_TRAIN`` and returns an *infinite* index sampler sharded by
rank like fast-reid's own samplers (each rank iterates its own indices of every global batch).
``dataset`` is a :class:`vireid_plugins.data.common.VIReIDTrainSet`, whose ``sampling_labels`` (one per
branch and label) and ``modalities`` the sampler reads.
"""
from fastreid.data.samplers import TrainingSampler
from fastreid.utils import comm
from fastreid.utils.registry import Registry

__all__ = ["SAMPLER_REGISTRY", "build_train_sampler", "sampler_seed"]

SAMPLER_REGISTRY = Registry("SAMPLER")
SAMPLER_REGISTRY.__doc__ = __doc__


def sampler_seed(cfg, epoch: int = 0) -> int:
    """Seed shared by all ranks: ``cfg.SEED`` (+ epoch, so rebuilt loaders draw new batches)."""
    if cfg.SEED >= 0:
        return int(cfg.SEED) + 1000003 * int(epoch)
    return comm.shared_random_seed()


def build_train_sampler(cfg, dataset, epoch: int = 0, name=None, **overrides):
    """``overrides`` (e.g. ``pairing``) go to the sampler's ``from_config``."""
    name = name or cfg.DATALOADER.SAMPLER_TRAIN
    if name not in SAMPLER_REGISTRY._obj_map:
        raise KeyError(f"DATALOADER.SAMPLER_TRAIN: unknown sampler {name!r}; registered: "
                       f"{sorted(SAMPLER_REGISTRY._obj_map)}")
    return SAMPLER_REGISTRY.get(name).from_config(cfg, dataset, epoch, **overrides)


@SAMPLER_REGISTRY.register()
class RandomSampler(TrainingSampler):
    """Plain shuffling over every item (fast-reid's ``TrainingSampler``)."""

    @classmethod
    def from_config(cls, cfg, dataset, epoch=0, **unused):
        return cls(len(dataset), shuffle=True, seed=sampler_seed(cfg, epoch))
