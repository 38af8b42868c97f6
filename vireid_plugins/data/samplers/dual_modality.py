"""P x K sampling from *each* modality in every batch.

A global batch of ``IMS_PER_BATCH = world_size * 2 * P * K`` images holds, for each rank, P labels with
K visible instances each followed by P labels with K infrared instances each. Labels are the train set's
``sampling_labels`` (one per branch and label, see :class:`~vireid_plugins.data.common.VIReIDTrainSet`; ``-1`` =
never sampled) and change every epoch: the loader is rebuilt with a new sampler.

Two pairings:

* ``"shared"``: both modalities use the same P labels (one label space across modalities, e.g. true
  identities or cross-modality labels). Only labels that have instances in both modalities are drawn.
* ``"independent"``: P visible labels and P infrared labels are drawn separately (per-modality pseudo-labels
  whose label spaces are unrelated, e.g. two DBSCAN runs).
* ``"auto"`` (default): ``"shared"`` when at least P labels exist in both modalities, else ``"independent"``.

Branch balance (``branches`` given, ``DATALOADER.BRANCH_BALANCE``): with a train set of several branches (e.g.
DOTLA's visible-ReID and infrared-ReID branches), each rank's P labels are split equally among the branches (DOTLA:
128 images = 2 branches x 8 labels x (4 visible + 4 infrared)).

Each identity gets K instances without replacement when it has at least K, with replacement otherwise.
Labels are visited in a fresh random order each round; the last incomplete group of a round is dropped.
When a modality has fewer labels than a global batch needs (early, collapsed clusterings), labels repeat.
Sharding follows fast-reid: the global index stream is reordered (``reorder_index``) so that rank ``r``'s
``islice(start=r, step=world_size)`` yields whole identities.
"""
import itertools
import logging
from collections import defaultdict
from typing import Dict, List, Sequence

import numpy as np
from fastreid.data.samplers.triplet_sampler import reorder_index
from fastreid.utils import comm
from torch.utils.data.sampler import Sampler

from ..datasets.bases import INFRARED, MODALITY_NAMES, VISIBLE
from .build import SAMPLER_REGISTRY, sampler_seed

__all__ = ["DualModalitySampler"]

PAIRINGS = ("auto", "shared", "independent")

logger = logging.getLogger("fastreid.vireid.sampler")


def _repeated_permutation(rng, pool, minimum):
    """A random order of ``pool``, repeated (fresh permutations) until it holds ``minimum`` labels."""
    order = rng.permutation(pool)
    while len(order) < minimum:
        order = np.concatenate([order, rng.permutation(pool)])
    return order


@SAMPLER_REGISTRY.register()
class DualModalitySampler(Sampler):
    """Infinite P x K x 2-modality identity sampler (see the module docstring).

    Args:
        labels: per-item label (int), ``-1`` = skip.
        modalities: per-item modality, 0 visible / 1 infrared.
        mini_batch_size: images per rank per batch, ``2 * P * K``.
        num_instances: K.
        pairing: ``"auto"``, ``"shared"`` or ``"independent"``.
        seed: shared by every rank.
        branches: optional per-item branch (int): split each batch's labels equally among the branches.
    """

    def __init__(self, labels: Sequence[int], modalities: Sequence[int], mini_batch_size: int,
                 num_instances: int, pairing: str = "auto", seed: int = 0, branches: Sequence[int] = None):
        if len(labels) != len(modalities):
            raise ValueError(f"DualModalitySampler: {len(labels)} labels but {len(modalities)} modalities")
        if pairing not in PAIRINGS:
            raise ValueError(f"DualModalitySampler: pairing must be one of {PAIRINGS}, got {pairing!r}")
        if num_instances < 1 or mini_batch_size % (2 * num_instances):
            raise ValueError(f"DualModalitySampler: the per-rank batch ({mini_batch_size}) must be a multiple of "
                             f"2 x NUM_INSTANCE (2 x {num_instances})")
        self.num_instances = num_instances
        self.num_labels_per_batch = mini_batch_size // (2 * num_instances)
        self._rank, self._world_size = comm.get_rank(), comm.get_world_size()
        self._seed = int(seed)
        self.index_by_label = self._group(labels, modalities)
        shared = sorted(set(self.index_by_label[VISIBLE]) & set(self.index_by_label[INFRARED]))
        if pairing == "auto":
            pairing = "shared" if len(shared) >= self.num_labels_per_batch else "independent"
        self.pairing = pairing
        self.pools = {m: shared if pairing == "shared" else sorted(self.index_by_label[m])
                      for m in (VISIBLE, INFRARED)}
        self.branch_of = None  # label -> branch, for branch-balanced batches
        if branches is not None:
            self.branch_of = {int(y): int(b) for y, b in zip(labels, branches) if y >= 0}
            num_branches = len(set(self.branch_of.values()))
            if self.num_labels_per_batch % num_branches:
                raise ValueError(f"DualModalitySampler: {self.num_labels_per_batch} labels per batch cannot be split "
                                 f"equally among {num_branches} branches (DATALOADER.BRANCH_BALANCE); make "
                                 "IMS_PER_BATCH / (2 x NUM_INSTANCE x world size) a multiple of the branch count")
        for m, pool in self.pools.items():
            if not len(pool):
                hint = (" and no image at all: a visible-only training set needs DATASETS.PSEUDO_INFRARED True"
                        if m not in set(int(x) for x in modalities) else "")
                raise ValueError(f"DualModalitySampler ({pairing}): no usable label in modality {m} "
                                 f"({MODALITY_NAMES[m]}){hint}")
            if len(pool) < self.num_labels_per_batch * self._world_size:
                logger.warning(f"DualModalitySampler ({pairing}): only {len(pool)} labels in modality {m} for "
                               f"P x world_size = {self.num_labels_per_batch} x {self._world_size}: labels repeat "
                               "within a batch")

    @classmethod
    def from_config(cls, cfg, dataset, epoch=0, pairing=None):
        branches = getattr(dataset, "sample_branches", None) if cfg.DATALOADER.BRANCH_BALANCE else None
        return cls(dataset.sampling_labels, dataset.modalities,
                   mini_batch_size=cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size(),
                   num_instances=cfg.DATALOADER.NUM_INSTANCE,
                   pairing=pairing or cfg.DATALOADER.DUAL_PAIRING,
                   seed=sampler_seed(cfg, epoch), branches=branches)

    @staticmethod
    def _group(labels, modalities) -> Dict[int, Dict[int, List[int]]]:
        groups = {VISIBLE: defaultdict(list), INFRARED: defaultdict(list)}
        for index, (label, modality) in enumerate(zip(labels, modalities)):
            if label >= 0:
                groups[int(modality)][int(label)].append(index)
        return {m: {k: np.asarray(v) for k, v in g.items()} for m, g in groups.items()}

    def __iter__(self):
        yield from itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)

    def _instances(self, rng, modality, label) -> List[int]:
        pool = self.index_by_label[modality][label]
        replace = len(pool) < self.num_instances
        return rng.choice(pool, size=self.num_instances, replace=replace).tolist()

    def _permutation(self, rng, pool, minimum):
        """A random order of ``pool``, repeated (fresh permutations) until it holds ``minimum`` labels; with branch
        balance, every run of P labels holds P / (number of branches) labels of each branch."""
        if self.branch_of is not None:
            return self._balanced_permutation(rng, pool, minimum)
        return _repeated_permutation(rng, pool, minimum)

    def _balanced_permutation(self, rng, pool, minimum):
        by_branch = {}
        for label in pool:
            by_branch.setdefault(self.branch_of[int(label)], []).append(label)
        share = self.num_labels_per_batch // len(by_branch)
        chunks = max(1, -(-minimum // self.num_labels_per_batch))  # batches of P labels needed at least
        chunks = max(chunks, min(len(labels) for labels in by_branch.values()) // share)
        orders = [_repeated_permutation(rng, labels, chunks * share) for _, labels in sorted(by_branch.items())]
        return np.concatenate([o[c * share:(c + 1) * share] for c in range(chunks) for o in orders])

    def _label_orders(self, rng):
        """Random label order per modality for one round, cut to whole global batches."""
        group = self.num_labels_per_batch * self._world_size
        visible_order = self._permutation(rng, self.pools[VISIBLE], group)
        infrared_order = (visible_order if self.pairing == "shared"
                          else self._permutation(rng, self.pools[INFRARED], group))
        rounds = min(len(visible_order), len(infrared_order)) // group
        return visible_order[:rounds * group], infrared_order[:rounds * group], group

    def _infinite_indices(self):
        rng = np.random.default_rng(self._seed)
        p = self.num_labels_per_batch
        while True:
            visible_order, infrared_order, group = self._label_orders(rng)
            for start in range(0, len(visible_order), group):
                batch = []
                for rank in range(self._world_size):
                    lo = start + rank * p
                    for modality, order in ((VISIBLE, visible_order), (INFRARED, infrared_order)):
                        for label in order[lo:lo + p]:
                            batch.extend(self._instances(rng, modality, int(label)))
                yield from reorder_index(batch, self._world_size)
