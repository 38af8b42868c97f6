"""fast-reid's training samplers under their own names in ``SAMPLER_REGISTRY``, so ``DATALOADER.SAMPLER_TRAIN`` of a
stock fast-reid config (``TrainingSampler``, ``NaiveIdentitySampler``, ...) works in :class:`VIReIDTrainer` too.

Each is fast-reid's sampler, unchanged, over the samples that have a label (``sampling_labels >= 0``; unlabelled
samples are never drawn) with items ``(None, label, camid)``; its indices are mapped back to the train set's. The
identity samplers draw ``IMS_PER_BATCH / (world size x NUM_INSTANCE)`` labels of ``NUM_INSTANCE`` images each,
whatever their modality (``DualModalitySampler`` draws ``NUM_INSTANCE`` per modality).
"""
from fastreid.data import samplers
from fastreid.utils import comm
from torch.utils.data.sampler import Sampler

from .build import SAMPLER_REGISTRY, sampler_seed

__all__ = ["FASTREID_SAMPLER_NAMES"]


class _LabelledSubset(Sampler):
    """``sampler``'s indices (positions in ``keep``) as indices of the full train set."""

    def __init__(self, sampler, keep):
        self.sampler, self.keep = sampler, keep

    def __iter__(self):
        keep = self.keep
        for index in self.sampler:
            yield keep[index]


def _mini_batch(cfg) -> int:
    return cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()


_BUILDERS = {
    "TrainingSampler": lambda cfg, items, seed: samplers.TrainingSampler(len(items), shuffle=True, seed=seed),
    "NaiveIdentitySampler": lambda cfg, items, seed: samplers.NaiveIdentitySampler(
        items, _mini_batch(cfg), cfg.DATALOADER.NUM_INSTANCE, seed=seed),
    "BalancedIdentitySampler": lambda cfg, items, seed: samplers.BalancedIdentitySampler(
        items, _mini_batch(cfg), cfg.DATALOADER.NUM_INSTANCE, seed=seed),
    "SetReWeightSampler": lambda cfg, items, seed: samplers.SetReWeightSampler(
        items, _mini_batch(cfg), cfg.DATALOADER.NUM_INSTANCE, cfg.DATALOADER.SET_WEIGHT, seed=seed),
    "ImbalancedDatasetSampler": lambda cfg, items, seed: samplers.ImbalancedDatasetSampler(items, seed=seed),
}
FASTREID_SAMPLER_NAMES = tuple(_BUILDERS)


def _adapter(name: str):
    build = _BUILDERS[name]

    def from_config(cls, cfg, dataset, epoch=0, **unused):
        labels = dataset.sampling_labels
        keep = [i for i, label in enumerate(labels) if label >= 0]
        if not keep:
            raise ValueError(f"DATALOADER.SAMPLER_TRAIN={name!r}: the train set has no labelled sample")
        items = [(None, int(labels[i]), int(dataset.camids[i])) for i in keep]
        return _LabelledSubset(build(cfg, items, sampler_seed(cfg, epoch)), keep)

    doc = f"fast-reid's ``{name}`` over the labelled samples (see :mod:`{__name__}`)."
    return type(name, (), {"from_config": classmethod(from_config), "__doc__": doc, "__module__": __name__})


for _name in FASTREID_SAMPLER_NAMES:
    SAMPLER_REGISTRY.register(_adapter(_name))
