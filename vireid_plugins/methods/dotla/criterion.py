"""DOTLA's collaborative training criteria (Eq. 11-17 of DOTLA).

:class:`ModalityClassifierLoss`, stage 1 (Eq. 16): ``L = L_v^reid + L_r^reid``; per branch (one per modality's label
space) a linear classifier ``phi`` (``K_v`` / ``K_r`` classes, resized whenever the pseudo-labels change),
``L_m^reid = CE(phi_m(f), y) + triplet(f, y)`` on the branch's images.

:class:`DOTLACriterion`, stage 2 (Eq. 17), once the association hook has given every label space cross-modality
soft targets: per branch ``b`` (label space of modality ``m``) with classifier ``phi_b``,

* ``L_b^reid`` on the branch's own-modality images and their cluster labels (Eq. 1-2);
* ``loss_cross_b``: soft cross-entropy of ``phi_b`` on the branch's other-modality images against their refined
  labels ``y-hat`` (Eq. 11-12; one-hot when NCLR is off), weight ``DOTLA.CROSS_SCALE``;
* CNCR (Eq. 13-15), weight ``alpha`` (``DOTLA.CNCR.ALPHA``): visible anchors against their in-batch infrared
  neighbours under ``phi_v`` plus infrared anchors against visible neighbours under ``phi_r``.

Loss weights: ``loss_cls_*`` ``MODEL.LOSSES.CE.SCALE``, ``loss_triplet_*`` ``MODEL.LOSSES.TRI.SCALE``. As in AGW,
the triplet loss uses the features before the BN neck when ``MODEL.HEADS.NECK_FEAT`` is ``before`` (the head's
``pooled`` output), the identity loss the BN-neck features.
"""
from typing import Dict

import torch
from fastreid.modeling.losses import cross_entropy_loss, triplet_loss
from torch import Tensor, nn

from ...data.datasets.bases import INFRARED, MODALITY_NAMES, VISIBLE
from ...modeling.features import image_features
from ...modeling.layers import ResizableLinear
from ...modeling.losses import CRITERION_REGISTRY, ClusterMemory, VIReIDCriterion, feature_dim, soft_cross_entropy
from ...modeling.losses.neighbour_consistency import neighbour_consistency_loss

__all__ = ["ModalityClassifierLoss", "DOTLACriterion"]


@CRITERION_REGISTRY.register()
class ModalityClassifierLoss(VIReIDCriterion):
    """Eq. 16 of DOTLA: per-modality cross-entropy (label smoothing ``MODEL.LOSSES.CE.EPSILON``) + triplet.

    New classifiers start from the L2-normalised cluster centroids scaled by ``DOTLA.CLASSIFIER_INIT_SCALE`` (our
    choice: the paper does not say how they are initialised).
    """

    uses_triplet = True

    def __init__(self, cfg, loss_weights: Dict[str, float] = None):
        losses = cfg.MODEL.LOSSES
        super().__init__({"loss_cls": losses.CE.SCALE, "loss_triplet": losses.TRI.SCALE, **(loss_weights or {})})
        dim = feature_dim(cfg)
        self.classifiers = nn.ModuleDict({name: ResizableLinear(dim) for name in MODALITY_NAMES.values()})
        self.init_scale = cfg.DOTLA.CLASSIFIER_INIT_SCALE
        self.eps = list(cfg.PSEUDO.EPS)
        self.ce_eps, self.ce_alpha = losses.CE.EPSILON, losses.CE.ALPHA
        self.tri_margin, self.tri_norm, self.tri_hard = losses.TRI.MARGIN, losses.TRI.NORM_FEAT, losses.TRI.HARD_MINING
        self.triplet_key = "pooled" if cfg.MODEL.HEADS.NECK_FEAT == "before" else "features"

    @torch.no_grad()
    def reset(self, targets, features: Tensor):
        feats = image_features(features)
        for name, classifier in self.classifiers.items():
            space = targets.spaces[name]
            if space.num_classes < 2:
                raise ValueError(f"{type(self).__name__}: the {name} clustering found {space.num_classes} cluster; the "
                                 f"classifier losses need at least 2: lower PSEUDO.EPS[{space.modality}] (now "
                                 f"{self.eps[space.modality]}) or PSEUDO.MIN_SAMPLES for more, smaller clusters")
            own = targets.mask(space.modality)
            classifier.reset(self.init_scale * ClusterMemory.cluster_centroids(feats[own], space.labels[own]))

    def predict(self, features: Tensor, space: str) -> Tensor:
        return self.classifiers[space](features)

    def reid_losses(self, name: str, outputs, keep: Tensor) -> Dict[str, Tensor]:
        """``L^reid`` of one branch (Eq. 1-2): cross-entropy and triplet on the batch samples ``keep`` (its
        own-modality images)."""
        if not bool(keep.any()):  # a batch may hold no image of a branch
            zero = self.classifiers[name].weight.sum() * 0.0
            return {f"loss_cls_{name}": zero, f"loss_triplet_{name}": zero}
        f, y = outputs["features"][keep], outputs["targets"][keep]
        f_tri = outputs.get(self.triplet_key, outputs["features"])[keep]
        return {f"loss_cls_{name}": cross_entropy_loss(self.classifiers[name](f), y, self.ce_eps, self.ce_alpha),
                f"loss_triplet_{name}": triplet_loss(f_tri, y, self.tri_margin, self.tri_norm, self.tri_hard)}

    def losses(self, outputs) -> Dict[str, Tensor]:
        targets, branch = outputs["targets"], outputs["branch"]
        losses = {}
        for b, name in enumerate(self.train_targets.branches):
            losses.update(self.reid_losses(name, outputs, (branch == b) & (targets >= 0)))
        return losses


@CRITERION_REGISTRY.register()
class DOTLACriterion(ModalityClassifierLoss):
    def __init__(self, cfg):
        d = cfg.DOTLA
        super().__init__(cfg, {"loss_cross": d.CROSS_SCALE, "loss_cncr": d.CNCR.ALPHA})
        self.cncr_enabled, self.cncr_k = d.CNCR.ENABLED, d.CNCR.K

    def stage2(self) -> bool:
        """Whether the association hook has set the cross-modality soft targets of every branch."""
        targets = self.train_targets
        return all(targets.spaces[name].soft is not None for name in targets.branches)

    def losses(self, outputs) -> Dict[str, Tensor]:
        if not self.stage2():
            return super().losses(outputs)
        feats, modality, branch, item = outputs["features"], outputs["modality"], outputs["branch"], outputs["item"]
        losses = {}
        for b, name in enumerate(self.train_targets.branches):
            space = self.train_targets.spaces[name]
            own = (branch == b) & (modality == space.modality)
            cross = (branch == b) & (modality != space.modality)
            losses.update(self.reid_losses(name, outputs, own))
            soft = space.soft[item[cross].cpu()].to(feats.device)
            losses[f"loss_cross_{name}"] = (soft_cross_entropy(self.classifiers[name](feats[cross]), soft)
                                            if cross.any() else feats.sum() * 0.0)
        if self.cncr_enabled:
            losses["loss_cncr"] = self.cncr(feats, modality)
        return losses

    def cncr(self, feats: Tensor, modality: Tensor) -> Tensor:
        """Eq. 15: ``L_R = L_RV + L_RR`` (Eq. 13-14) over the batch."""
        vis, ir = feats[modality == VISIBLE], feats[modality == INFRARED]
        phi_v, phi_r = self.classifiers["visible"], self.classifiers["infrared"]
        return (neighbour_consistency_loss(phi_v(vis), vis, phi_v(ir), ir, self.cncr_k)
                + neighbour_consistency_loss(phi_r(ir), ir, phi_r(vis), vis, self.cncr_k))
