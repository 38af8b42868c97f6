"""Base class of association hooks (registry and hook order: :mod:`vireid_plugins.engine.build`)."""
import logging
from typing import Dict

import numpy as np
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm

from ..association import cross_modality_association_accuracy
from ..data.datasets.bases import MODALITY_NAMES
from ..data.targets import TrainTargets, other_modality

__all__ = ["AssociationHook", "association_accuracy", "association_chance"]

logger = logging.getLogger("fastreid.vireid.association")


def _cross_labelled_spaces(targets: TrainTargets):
    """``(direction, space, own, other)`` for every label space of a modality that also labels items of the other
    modality (``own`` / ``other``: the item masks of the space's modality and of the other one)."""
    for space in targets.spaces.values():
        if space.modality is None:
            continue
        own, other = targets.mask(space.modality), targets.mask(other_modality(space.modality))
        if bool((space.labels[other] >= 0).any()):
            source, target = MODALITY_NAMES[other_modality(space.modality)], MODALITY_NAMES[space.modality]
            yield f"{source}->{target}", space, own, other


def association_accuracy(targets: TrainTargets) -> Dict[str, float]:
    """``{"<source>-><target>": accuracy}`` for every label space of a modality that also labels items of the other
    modality: the fraction of those items whose label is the space's cluster holding most of their true identity
    (:func:`~vireid_plugins.association.cross_modality_association_accuracy`; diagnostics only)."""
    pids = np.asarray([it[1] for it in targets.items])
    return {direction: cross_modality_association_accuracy(space.labels[other].numpy(), pids[other.numpy()],
                                                           space.labels[own].numpy(), pids[own.numpy()])
            for direction, space, own, other in _cross_labelled_spaces(targets)}


def association_chance(targets: TrainTargets) -> Dict[str, float]:
    """``{"<source>-><target>": 1 / K}`` for the directions of :func:`association_accuracy`: the accuracy of a label
    drawn uniformly from the ``K`` clusters of the target modality's space."""
    out = {}
    for direction, space, own, _ in _cross_labelled_spaces(targets):
        clusters = space.labels[own]
        if bool((clusters >= 0).any()):
            out[direction] = 1.0 / len(clusters[clusters >= 0].unique())
    return out


class AssociationHook(HookBase):
    """Turns the epoch's training targets into a method's (see :mod:`vireid_plugins.engine.build`).

    Subclasses implement :meth:`associate` and may override :meth:`active`. Before every active epoch the hook calls
    ``associate(trainer.targets)`` on every rank, installs the result with ``trainer.set_targets`` and, on the main
    process, logs the cross-modality association accuracy of the new targets (``association/<direction>``).
    """

    def __init__(self, cfg):
        self.cfg = cfg

    def active(self, epoch: int) -> bool:
        return True

    def associate(self, targets: TrainTargets) -> TrainTargets:
        raise NotImplementedError

    def before_epoch(self):
        epoch = self.trainer.epoch
        if not self.active(epoch):
            return
        targets = self.associate(self.trainer.targets)
        self.trainer.set_targets(targets)
        if comm.is_main_process():
            accuracy = association_accuracy(targets)
            self.trainer.label_history.log(epoch, "association", accuracy, self.trainer.storage)
            chance = association_chance(targets)
            logger.info(f"{type(self).__name__} at epoch {epoch}: association accuracy "
                        + ", ".join(f"{k} {v:.4f} (chance {chance.get(k, float('nan')):.4f})"
                                    for k, v in accuracy.items()))
