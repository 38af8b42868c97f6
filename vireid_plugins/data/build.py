"""Train and test loaders over visible-infrared datasets.

Call contract:

* ``build_vireid_dataset(cfg, name, **overrides)`` -> a registered dataset (``DATASET_REGISTRY``) read
  from ``cfg.DATASETS.ROOT`` with its ``from_config`` keyword arguments.
* ``build_vireid_train_loader(cfg, items=None, labels=None, epoch=0, sampler_name=None)`` -> an infinite
  fast-reid loader (``DataLoaderX``) over ``items`` (default: the train items of ``cfg.DATASETS.NAMES``) with
  per-modality transforms, optional per-item ``labels`` (pseudo-labels, ``-1`` = unused) and the sampler
  named by ``sampler_name`` or ``DATALOADER.SAMPLER_TRAIN``, seeded by ``cfg.SEED`` and ``epoch``; ``pairing``
  overrides ``DATALOADER.DUAL_PAIRING`` (how labels pair across modalities, see the dual-modality sampler).
* ``build_vireid_test_loader(cfg, items)`` -> a finite loader over ``items`` in order, sharded by rank.
"""
import logging
from typing import List, Optional, Sequence

from fastreid.data.build import build_reid_test_loader, build_reid_train_loader
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.utils import comm

from .common import VIReIDDataset
from .datasets.bases import Item
from .samplers import build_train_sampler
from .transforms import build_vireid_transforms

__all__ = ["build_vireid_dataset", "train_items", "build_vireid_train_loader", "build_vireid_test_loader"]

logger = logging.getLogger("fastreid.vireid.data")


def build_vireid_dataset(cfg, name: str, **overrides):
    if name not in DATASET_REGISTRY._obj_map:
        raise KeyError(f"DATASETS: unknown dataset {name!r}; registered: {sorted(DATASET_REGISTRY._obj_map)}")
    cls = DATASET_REGISTRY.get(name)
    kwargs = cls.from_config(cfg) if hasattr(cls, "from_config") else {}
    kwargs.update(overrides)
    return cls(root=cfg.DATASETS.ROOT, **kwargs)


def train_items(cfg) -> List[Item]:
    """Train items of every dataset in ``DATASETS.NAMES``; pids of later datasets are offset so they never clash."""
    items, offset = [], 0
    for name in cfg.DATASETS.NAMES:
        dataset = build_vireid_dataset(cfg, name)
        if comm.is_main_process():
            dataset.show_train()
        items.extend((path, pid + offset, camid, modality) for path, pid, camid, modality in dataset.train)
        offset = max(it[1] for it in items) + 1
    return items


def build_vireid_train_loader(cfg, items: Optional[Sequence[Item]] = None, labels: Optional[Sequence[int]] = None,
                              epoch: int = 0, sampler_name: Optional[str] = None, pairing: Optional[str] = None):
    items = train_items(cfg) if items is None else items
    # pids are relabelled to 0..C-1; given labels (per-modality pseudo-labels) are used as they are
    dataset = VIReIDDataset(items, build_vireid_transforms(cfg, is_train=True), labels=labels,
                            relabel=labels is None)
    sampler = build_train_sampler(cfg, dataset, epoch, sampler_name, **({"pairing": pairing} if pairing else {}))
    logger.info(f"Train loader: {len(dataset)} images, {dataset.num_classes} labels, "
                f"sampler {type(sampler).__name__}")
    return build_reid_train_loader(train_set=dataset, sampler=sampler, total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                                   num_workers=cfg.DATALOADER.NUM_WORKERS)


def build_vireid_test_loader(cfg, items: Sequence[Item]):
    dataset = VIReIDDataset(items, build_vireid_transforms(cfg, is_train=False))
    loader, _ = build_reid_test_loader(test_set=dataset, test_batch_size=cfg.TEST.IMS_PER_BATCH, num_query=0,
                                       num_workers=cfg.DATALOADER.NUM_WORKERS)
    return loader
