"""Train and test loaders over visible-infrared datasets.

Call contract:

* ``build_vireid_dataset(cfg, name, **overrides)`` -> a registered dataset (``DATASET_REGISTRY``) read
  from ``cfg.DATASETS.ROOT`` with its ``from_config`` keyword arguments; with ``DATASETS.VERIFY_IMAGES`` every
  image is decoded first and all unreadable files are reported at once (:mod:`.verify`).
* ``build_vireid_train_loader(cfg, targets=None, epoch=0, sampler_name=None)`` -> an infinite fast-reid loader
  (``DataLoaderX``) over the train set of ``targets`` (a :class:`~vireid_plugins.data.targets.TrainTargets`;
  default: the identities of ``cfg.DATASETS.NAMES``' train items) with per-modality transforms and the sampler
  named by ``sampler_name`` or ``DATALOADER.SAMPLER_TRAIN`` (pairing ``targets.pairing``), seeded by
  ``cfg.SEED`` and ``epoch``.
* ``build_vireid_test_loader(cfg, items)`` -> a finite loader over ``items`` in order, sharded by rank.
"""
import logging
from typing import List, Optional, Sequence

from fastreid.data.build import build_reid_test_loader, build_reid_train_loader
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.utils import comm

from .common import VIReIDDataset, VIReIDTrainSet
from .datasets.bases import INFRARED, VISIBLE, Item
from .samplers import build_train_sampler
from .targets import TrainTargets
from .transforms import build_vireid_transforms
from .verify import verify_dataset_images

__all__ = ["build_vireid_dataset", "train_items", "with_pseudo_infrared", "build_vireid_train_loader",
           "build_vireid_test_loader"]

logger = logging.getLogger("fastreid.vireid.data")


def build_vireid_dataset(cfg, name: str, **overrides):
    if name not in DATASET_REGISTRY._obj_map:
        raise KeyError(f"DATASETS: unknown dataset {name!r}; registered: {sorted(DATASET_REGISTRY._obj_map)}")
    cls = DATASET_REGISTRY.get(name)
    kwargs = cls.from_config(cfg) if hasattr(cls, "from_config") else {}
    kwargs.update(overrides)
    dataset = cls(root=cfg.DATASETS.ROOT, **kwargs)
    if cfg.DATASETS.VERIFY_IMAGES:
        verify_dataset_images(dataset, name, max(1, cfg.DATALOADER.NUM_WORKERS))
    return dataset


def _as_vireid_items(name: str, train) -> List[Item]:
    """``dataset.train`` as ``(path, pid, camid, modality)`` items with integer pids and camids from 0.

    Our datasets already give such items; a fast-reid visible dataset (e.g. ``Market1501``) gives
    ``(path, pid, camid)`` with string pids such as ``"market1501_12"``: its items become visible ones, and its
    pids and camids are numbered in sorted order.
    """
    if not train:
        raise ValueError(f"DATASETS.NAMES: dataset {name!r} has no training images")
    width = len(train[0])
    if width == 4:
        return [(path, int(pid), int(camid), int(modality)) for path, pid, camid, modality in train]
    if width != 3:
        raise ValueError(f"DATASETS.NAMES: dataset {name!r} gives train items of {width} fields; expected "
                         "(path, pid, camid[, modality])")
    pid_index = {pid: i for i, pid in enumerate(sorted({it[1] for it in train}, key=str))}
    cam_index = {cam: i for i, cam in enumerate(sorted({it[2] for it in train}, key=str))}
    return [(path, pid_index[pid], cam_index[camid], VISIBLE) for path, pid, camid in train]


def with_pseudo_infrared(items: Sequence[Item]) -> List[Item]:
    """Visible items, then each of them again as an infrared item (``DATASETS.PSEUDO_INFRARED``).

    The infrared transform then channel-exchanges them (see :func:`build_vireid_transforms`), so a visible-only
    labelled set trains both stems, as in the CA pre-training that DOTLA uses on Market-1501.
    """
    visible = [it for it in items if it[3] == VISIBLE]
    if not visible:
        raise ValueError("DATASETS.PSEUDO_INFRARED: the training sets have no visible images")
    return visible + [(path, pid, camid, INFRARED) for path, pid, camid, _ in visible]


def train_items(cfg) -> List[Item]:
    """Train items of every dataset in ``DATASETS.NAMES``; pids of later datasets are offset so they never clash.

    With ``DATASETS.PSEUDO_INFRARED`` the infrared images are replaced by the visible ones
    (:func:`with_pseudo_infrared`).
    """
    items, offset = [], 0
    for name in cfg.DATASETS.NAMES:
        dataset = build_vireid_dataset(cfg, name)
        if comm.is_main_process():
            dataset.show_train()
        items.extend((path, pid + offset, camid, modality)
                     for path, pid, camid, modality in _as_vireid_items(name, dataset.train))
        offset = max(it[1] for it in items) + 1
    if cfg.DATASETS.PSEUDO_INFRARED:
        items = with_pseudo_infrared(items)
        logger.info(f"DATASETS.PSEUDO_INFRARED: {len(items) // 2} visible train images, each also used as an "
                    "infrared one (real infrared train images dropped)")
    return items


def build_vireid_train_loader(cfg, targets: Optional[TrainTargets] = None, epoch: int = 0,
                              sampler_name: Optional[str] = None):
    if targets is None:
        targets = TrainTargets.from_identities(train_items(cfg), cfg.DATALOADER.DUAL_PAIRING)
    dataset = VIReIDTrainSet(targets, build_vireid_transforms(cfg, is_train=True))
    sampler = build_train_sampler(cfg, dataset, epoch, sampler_name, pairing=targets.pairing)
    logger.info(f"Train loader: {len(dataset)} samples of {len(targets.items)} images, branches "
                f"{list(targets.branches)}, {dataset.num_classes} labels, sampler {type(sampler).__name__}")
    return build_reid_train_loader(train_set=dataset, sampler=sampler, total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                                   num_workers=cfg.DATALOADER.NUM_WORKERS)


def build_vireid_test_loader(cfg, items: Sequence[Item]):
    dataset = VIReIDDataset(items, build_vireid_transforms(cfg, is_train=False))
    loader, _ = build_reid_test_loader(test_set=dataset, test_batch_size=cfg.TEST.IMS_PER_BATCH, num_query=0,
                                       num_workers=cfg.DATALOADER.NUM_WORKERS)
    return loader
