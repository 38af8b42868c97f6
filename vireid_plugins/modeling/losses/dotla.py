"""DOTLA's collaborative training criterion (Eq. 11, 12, 15, 16, 17 of DOTLA).

Stage 1 (no cross-modality targets set): Eq. 16, ``L = L_v^reid + L_r^reid`` (:class:`ModalityClassifierLoss`).

Stage 2 (after :meth:`DOTLACriterion.set_cross_targets`): the train set is the union of two *branches* over the
same ``N`` images. Dataset index ``i < N`` is image ``i`` in the visible-ReID branch (visible label space: own
label for visible images, DOTLA/NCLR label for infrared images); index ``N + i`` is image ``i`` in the
infrared-ReID branch. Per branch ``b`` with classifier ``phi_b``:

* ``L_b^reid``: cross-entropy of ``phi_b`` on the branch's own-modality images and their cluster labels, plus the
  triplet loss on them (Eq. 1-2);
* the cross term: soft cross-entropy of ``phi_b`` on the other modality's images against their refined labels
  ``y-hat`` (Eq. 11-12; one-hot when NCLR is off);
* CNCR (Eq. 13-15), weight ``alpha``: visible anchors against their in-batch infrared neighbours under
  ``phi_v`` plus infrared anchors against visible neighbours under ``phi_r`` (``MODEL.CRITERION.CNCR``).
"""
from typing import Dict, Optional

import torch
from fastreid.modeling.losses import cross_entropy_loss, triplet_loss
from torch import Tensor

from ...data.datasets.bases import INFRARED, MODALITY_NAMES, VISIBLE
from .build import CRITERION_REGISTRY
from .cluster_memory import soft_cross_entropy
from .criteria import ModalityClassifierLoss
from .neighbour_consistency import neighbour_consistency_loss

__all__ = ["DOTLACriterion"]


@CRITERION_REGISTRY.register()
class DOTLACriterion(ModalityClassifierLoss):
    def __init__(self, cfg):
        super().__init__(cfg)
        cncr = cfg.MODEL.CRITERION.CNCR
        self.cncr_enabled, self.cncr_k, self.cncr_alpha = cncr.ENABLED, cncr.K, cncr.ALPHA
        self.num_items = 0
        self.cross_targets: Optional[Dict[int, Tensor]] = None  # branch -> (N, K_branch) soft targets (CPU)

    def set_cross_targets(self, targets: Optional[Dict[int, Tensor]]):
        """``{VISIBLE: (N, K_v), INFRARED: (N, K_r)}`` per-image target distributions of each branch, rows of
        ``-1``-labelled (unused) images all zero; ``None`` returns to stage 1."""
        self.cross_targets = targets
        self.num_items = 0 if targets is None else targets[VISIBLE].shape[0]

    def forward(self, outputs) -> Dict[str, Tensor]:
        if self.cross_targets is None:
            return super().forward(outputs)
        feats, modality, index = outputs["features"], outputs["modality"], outputs["index"]
        branch = torch.div(index, self.num_items, rounding_mode="floor")
        item = index - branch * self.num_items
        losses = {}
        for b, name in MODALITY_NAMES.items():
            in_branch = branch == b
            own, cross = in_branch & (modality == b), in_branch & (modality != b)
            classifier = self.classifiers[name]
            zero = feats.sum() * 0.0  # a batch may hold no image of a branch (labels are drawn from both)
            y_own = outputs["targets"][own] - (0 if b == VISIBLE else self.classifiers["visible"].weight.shape[0])
            losses[f"loss_cls_{name}"] = (cross_entropy_loss(classifier(feats[own]), y_own, self.ce_eps,
                                                             self.ce_alpha) if own.any() else zero)
            losses[f"loss_triplet_{name}"] = (triplet_loss(feats[own], y_own, self.tri_margin, self.tri_norm,
                                                           self.tri_hard) if own.any() else zero)
            soft = self.cross_targets[b][item[cross].cpu()].to(feats.device)
            losses[f"loss_cross_{name}"] = (soft_cross_entropy(classifier(feats[cross]), soft) if cross.any()
                                            else zero)
        if self.cncr_enabled:
            losses["loss_cncr"] = self.cncr_alpha * self._cncr(feats, modality)
        return losses

    def _cncr(self, feats: Tensor, modality: Tensor) -> Tensor:
        vis, ir = feats[modality == VISIBLE], feats[modality == INFRARED]
        phi_v, phi_r = self.classifiers["visible"], self.classifiers["infrared"]
        return (neighbour_consistency_loss(phi_v(vis), vis, phi_v(ir), ir, self.cncr_k)
                + neighbour_consistency_loss(phi_r(ir), ir, phi_r(vis), vis, self.cncr_k))
