"""DOTLA stage 2 (Eq. 3-12 of DOTLA): the hook that assigns cross-modality labels every epoch.

Before every epoch from ``DOTLA.START_EPOCH`` on, :class:`DOTLAHook`

1. extracts flip-averaged raw BN-neck features of every training image (per modality);
2. on the main process, predicts each clustered infrared image with the visible classifier and each clustered
   visible image with the infrared classifier, and solves both transport problems at once
   (:func:`vireid_plugins.association.dual_optimal_transport_labels`, Eq. 3-5);
3. optionally refines the assigned labels from neighbours (NCLR, Eq. 6-10,
   :func:`vireid_plugins.association.refine_labels_by_neighbours`);
4. broadcasts the result and hands the criterion its per-branch target tables and the trainer the
   two-branch training set (image ``i`` in the visible branch, image ``N + i`` in the infrared branch);
5. logs association accuracy per direction (the fraction of instances whose cross-modality label points to
   the cluster holding most of their true identity) and the NCLR noisy ratio.

The own-modality cluster labels come from :class:`~.pseudo_labels.PseudoLabelHook`, which runs before it.
"""
import logging
from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm

from ..association import cross_modality_association_accuracy, dual_optimal_transport_labels
from ..association.nclr import refine_labels_by_neighbours
from ..data.datasets.bases import INFRARED, MODALITY_NAMES, VISIBLE
from .pseudo_labels import broadcast_from_main, extract_modality_features, unwrap

__all__ = ["DOTLAHook", "dotla_targets"]

logger = logging.getLogger("fastreid.vireid.dotla")

_OTHER = {VISIBLE: INFRARED, INFRARED: VISIBLE}


@torch.no_grad()
def _predict(classifier, feats: torch.Tensor) -> torch.Tensor:
    """``(n, K)`` softmax predictions on the CPU, computed on the classifier's device."""
    weight = next(classifier.parameters())
    return F.softmax(classifier(feats.to(weight.device, weight.dtype)).float(), dim=1).cpu()


def dotla_targets(cfg, classifiers, feats: Dict[int, torch.Tensor], labels: Dict[int, torch.Tensor]):
    """Cross-modality labels and soft targets of both branches.

    Args:
        classifiers: ``{modality: module}``, ``(n, D) -> (n, K_m)`` logits in modality m's label space.
        feats: ``{modality: (N_m, D)}`` raw BN-neck features; labels: ``{modality: (N_m,)}`` own cluster labels.

    Returns:
        ``{"cross": {m: (N_m,) labels of modality m's images in the OTHER modality's label space (-1: unused)},
        "soft": {m: (N_m, K_other) targets}, "noisy": {m: (N_m,) bool}}``.
    """
    d = cfg.DOTLA
    clustered = {m: labels[m] >= 0 for m in MODALITY_NAMES}
    num_classes = {m: int(labels[m].max()) + 1 for m in MODALITY_NAMES}
    probs = {m: _predict(classifiers[_OTHER[m]], feats[m][clustered[m]]) for m in MODALITY_NAMES}
    sizes = {m: torch.bincount(labels[m][clustered[m]], minlength=num_classes[m]).float() for m in MODALITY_NAMES}
    result = dual_optimal_transport_labels(
        probs[INFRARED], probs[VISIBLE], lam=d.LAMBDA, marginals=d.MARGINALS,
        cluster_sizes_vis=sizes[VISIBLE], cluster_sizes_ir=sizes[INFRARED], tol=d.TOL, max_iter=d.MAX_ITER)
    assigned = {INFRARED: result.ir_to_vis_labels.cpu(), VISIBLE: result.vis_to_ir_labels.cpu()}
    out = {"cross": {}, "soft": {}, "noisy": {}}
    for m in MODALITY_NAMES:
        o, k = _OTHER[m], num_classes[_OTHER[m]]
        cross = torch.full_like(labels[m], -1)
        cross[clustered[m]] = assigned[m]
        soft = torch.zeros(len(labels[m]), k)
        noisy = torch.zeros(len(labels[m]), dtype=torch.bool)
        if d.NCLR.ENABLED:
            refined = refine_labels_by_neighbours(
                assigned[m], k, feats[m][clustered[m]], feats[o], labels[o], k=d.NCLR.K, tau=d.NCLR.TAU,
                gamma=d.NCLR.GAMMA)
            soft[clustered[m]], noisy[clustered[m]] = refined.soft_labels, refined.noisy
        else:
            soft[clustered[m]] = F.one_hot(assigned[m], k).float()
        out["cross"][m], out["soft"][m], out["noisy"][m] = cross, soft, noisy
    return out


class DOTLAHook(HookBase):
    def __init__(self, cfg, items):
        self.cfg = cfg
        self.items = list(items)
        self.modalities = np.asarray([it[3] for it in self.items])
        self.true_pids = np.asarray([it[1] for it in self.items])
        self.masks = {m: torch.from_numpy(self.modalities == m) for m in MODALITY_NAMES}

    def before_epoch(self):
        if self.trainer.epoch < self.cfg.DOTLA.START_EPOCH:
            return
        own = torch.as_tensor(self.trainer.train_labels)  # per-modality cluster labels of self.items
        labels = {m: own[self.masks[m]] for m in MODALITY_NAMES}
        feats = extract_modality_features(self.cfg, self.trainer.model, self.items, self.modalities, normalize=False)
        criterion = unwrap(self.trainer.model).criterion
        classifiers = {m: criterion.classifiers[name] for m, name in MODALITY_NAMES.items()}
        targets = dotla_targets(self.cfg, classifiers, feats, labels) if comm.is_main_process() else None
        targets = broadcast_from_main(targets)
        self._install(criterion, labels, targets)
        if comm.is_main_process():
            self._report(labels, targets)

    def _install(self, criterion, labels, targets):
        n = len(self.items)
        k_v = int(labels[VISIBLE].max()) + 1
        branch_labels, tables = [], {}
        for b in MODALITY_NAMES:
            column = torch.full((n,), -1, dtype=torch.long)
            column[self.masks[b]] = labels[b]
            column[self.masks[_OTHER[b]]] = targets["cross"][_OTHER[b]]
            offset = 0 if b == VISIBLE else k_v
            branch_labels.append(torch.where(column >= 0, column + offset, column))
            table = torch.zeros(n, targets["soft"][_OTHER[b]].shape[1])
            table[self.masks[_OTHER[b]]] = targets["soft"][_OTHER[b]]
            tables[b] = table
        criterion.set_cross_targets(tables)
        self.trainer.train_items = self.items + self.items
        self.trainer.train_labels = torch.cat(branch_labels).tolist()
        self.trainer.train_pairing = "shared"  # a branch label holds both modalities' images

    def _report(self, labels, targets):
        epoch = self.trainer.epoch
        lines = []
        for m, name in MODALITY_NAMES.items():
            o = _OTHER[m]
            acc = cross_modality_association_accuracy(
                targets["cross"][m].numpy(), self.true_pids[self.modalities == m], labels[o].numpy(),
                self.true_pids[self.modalities == o])
            direction = f"{name}->{MODALITY_NAMES[o]}"
            noisy = float(targets["noisy"][m].float().mean())
            self.trainer.storage.put_scalar(f"dotla/association_accuracy/{direction}", acc, smoothing_hint=False)
            self.trainer.storage.put_scalar(f"dotla/noisy_ratio/{direction}", noisy, smoothing_hint=False)
            lines.append(f"{direction}: association accuracy {acc:.4f}, NCLR noisy ratio {noisy:.4f}")
        logger.info(f"DOTLA labels at epoch {epoch}: " + "; ".join(lines))
