"""Registry of training samplers.

Call contract: registered classes are ``torch`` samplers with a classmethod
``from_config(cfg, dataset, epoch) -> sampler``; ``build_train_sampler(cfg, dataset, epoch, name=None)``
looks up ``name`` or ``cfg.DATALOADER.SAMPLER_TRAIN`` and returns an *infinite* index sampler sharded by
rank like fast-reid's own samplers (each rank iterates its own indices of every global batch).
``dataset`` is a :class:`vireid_plugins.data.common.VIReIDTrainSet`, whose ``sampling_labels`` (one per
branch and label, ``-1`` never sampled), ``modalities`` and ``camids`` (one per sample) the sampler reads, or
fast-reid's ``CommDataset`` (read through :class:`CommDatasetView`: its relabelled pids, modality ``item[3]`` when
its items have one, else visible).

fast-reid's own samplers are registered under their names too (:mod:`.fastreid_samplers`), and fast-reid's
``build_reid_train_loader(cfg)`` builds every sampler of this registry (``vireid_plugins.compat``).
"""
from fastreid.data.samplers import TrainingSampler
from fastreid.utils import comm
from fastreid.utils.registry import Registry

from ..datasets.bases import VISIBLE

__all__ = ["SAMPLER_REGISTRY", "build_train_sampler", "sampler_seed", "CommDatasetView"]

SAMPLER_REGISTRY = Registry("SAMPLER")
SAMPLER_REGISTRY.__doc__ = __doc__


def sampler_seed(cfg, epoch: int = 0) -> int:
    """Seed shared by all ranks: ``cfg.SEED`` (+ epoch, so rebuilt loaders draw new batches)."""
    if cfg.SEED >= 0:
        return int(cfg.SEED) + 1000003 * int(epoch)
    return comm.shared_random_seed()


class CommDatasetView:
    """What the samplers read of fast-reid's ``CommDataset``: one label and one camera number per item (pids and
    camids numbered in sorted order, as ``CommDataset``'s relabelling does) and its modality."""

    def __init__(self, dataset):
        items = dataset.img_items
        self.sampling_labels = _numbered([it[1] for it in items])
        self.camids = _numbered([it[2] for it in items])
        self.modalities = [int(it[3]) if len(it) == 4 else VISIBLE for it in items]

    def __len__(self):
        return len(self.sampling_labels)


def _numbered(values):
    order = {v: i for i, v in enumerate(sorted(set(values)))}
    return [order[v] for v in values]


def build_train_sampler(cfg, dataset, epoch: int = 0, name=None, **overrides):
    """``overrides`` (e.g. ``pairing``) go to the sampler's ``from_config``."""
    name = name or cfg.DATALOADER.SAMPLER_TRAIN
    if name not in SAMPLER_REGISTRY._obj_map:
        raise KeyError(f"DATALOADER.SAMPLER_TRAIN: unknown sampler {name!r}; registered: "
                       f"{sorted(SAMPLER_REGISTRY._obj_map)}")
    if not hasattr(dataset, "sampling_labels"):
        dataset = CommDatasetView(dataset)
    return SAMPLER_REGISTRY.get(name).from_config(cfg, dataset, epoch, **overrides)


@SAMPLER_REGISTRY.register()
class RandomSampler(TrainingSampler):
    """Plain shuffling over every item (fast-reid's ``TrainingSampler``)."""

    @classmethod
    def from_config(cls, cfg, dataset, epoch=0, **unused):
        return cls(len(dataset), shuffle=True, seed=sampler_seed(cfg, epoch))
