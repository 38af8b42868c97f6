"""Training criteria of the unsupervised baselines (see :mod:`.build` for the call contract).

* :class:`DualClusterMemoryLoss`: the DCL/ADCA baseline (Yang et al., ACM MM'22; methods-spec §2):
  ``CE(M^v [f_v; f_ca], [y^v; y^v]) + CE(M^r f_r, y^r)`` with one cluster memory per modality; the visible
  memory is fed by the original and the channel-augmented views.
* :class:`ModalityClassifierLoss`: DOTLA's baseline (Eq. 16 of DOTLA): per-modality linear classifiers
  ``phi_v`` (K_v classes) and ``phi_r`` (K_r), ``CE(phi_m(f_m), y_m) + triplet(f_m, y_m)`` for each modality;
  the classifiers are resized to the new cluster counts whenever the pseudo-labels change.
"""
from typing import Dict

import torch
import torch.nn.functional as F
from fastreid.modeling.losses import cross_entropy_loss, triplet_loss
from torch import Tensor, nn

from ...data.datasets.bases import INFRARED, MODALITY_NAMES, VISIBLE
from .build import CRITERION_REGISTRY
from .cluster_memory import ClusterMemory

__all__ = ["DualClusterMemoryLoss", "ModalityClassifierLoss", "ResizableLinear", "split_by_modality"]


def split_by_modality(outputs) -> Dict[int, tuple]:
    """``{modality: (features[m], targets[m])}`` of a batch."""
    features, targets, modality = outputs["features"], outputs["targets"], outputs["modality"]
    return {m: (features[modality == m], targets[modality == m]) for m in (VISIBLE, INFRARED)}


@CRITERION_REGISTRY.register()
class DualClusterMemoryLoss(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        mem = cfg.MODEL.CRITERION.MEMORY
        self.needs_ca_view = cfg.MODEL.CRITERION.CA_VIEW
        self.memories = nn.ModuleDict({
            MODALITY_NAMES[m]: ClusterMemory(cfg.MODEL.BACKBONE.FEAT_DIM, temperature=mem.TEMPERATURE,
                                             momentum=mem.MOMENTUM, update=mem.UPDATE)
            for m in (VISIBLE, INFRARED)
        })

    @torch.no_grad()
    def reset(self, labels: Dict[int, Tensor], features: Dict[int, Tensor]):
        for m, name in MODALITY_NAMES.items():
            self.memories[name].initialize(ClusterMemory.cluster_centroids(features[m], labels[m]))

    def forward(self, outputs) -> Dict[str, Tensor]:
        parts = split_by_modality(outputs)
        (f_v, y_v), (f_r, y_r) = parts[VISIBLE], parts[INFRARED]
        if self.needs_ca_view:
            f_v, y_v = torch.cat([f_v, outputs["ca_features"]]), torch.cat([y_v, y_v])
        return {
            "loss_memory_visible": self.memories["visible"](f_v, y_v),
            "loss_memory_infrared": self.memories["infrared"](f_r, y_r),
        }


class ResizableLinear(nn.Module):
    """Bias-free linear classifier ``B x D -> B x K`` whose K changes with the pseudo-labels.

    :meth:`reset` replaces the weight's data in place, so the ``nn.Parameter`` object (and hence the
    optimizer's parameter groups) stays the same; the optimizer state of a resized parameter must be
    dropped (:func:`vireid_plugins.engine.forget_stale_optimizer_state`).
    """

    resizable_state = True  # see vireid_plugins.engine.checkpoint

    def __init__(self, in_features: int, num_classes: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_classes, in_features))

    @torch.no_grad()
    def reset(self, weight: Tensor):
        self.weight.data = weight.detach().to(self.weight.device, self.weight.dtype).clone()
        self.weight.grad = None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


@CRITERION_REGISTRY.register()
class ModalityClassifierLoss(nn.Module):
    """Eq. 16 of DOTLA: per-modality cross-entropy (with label smoothing ``MODEL.LOSSES.CE.EPSILON``) + triplet.

    New classifiers start from the L2-normalised cluster centroids scaled by
    ``MODEL.CRITERION.CLASSIFIER_INIT_SCALE`` (our choice: the paper does not say how they are initialised).
    """

    needs_ca_view = False
    uses_triplet = True  # config validation then requires >= 2 labels per modality in a batch

    def __init__(self, cfg):
        super().__init__()
        dim = cfg.MODEL.BACKBONE.FEAT_DIM
        self.classifiers = nn.ModuleDict({MODALITY_NAMES[m]: ResizableLinear(dim) for m in (VISIBLE, INFRARED)})
        self.init_scale = cfg.MODEL.CRITERION.CLASSIFIER_INIT_SCALE
        self.ce_eps, self.ce_alpha = cfg.MODEL.LOSSES.CE.EPSILON, cfg.MODEL.LOSSES.CE.ALPHA
        tri = cfg.MODEL.LOSSES.TRI
        self.tri_margin, self.tri_norm, self.tri_hard = tri.MARGIN, tri.NORM_FEAT, tri.HARD_MINING

    @torch.no_grad()
    def reset(self, labels: Dict[int, Tensor], features: Dict[int, Tensor]):
        for m, name in MODALITY_NAMES.items():
            centroids = ClusterMemory.cluster_centroids(features[m], labels[m])
            self.classifiers[name].reset(self.init_scale * centroids)

    def forward(self, outputs) -> Dict[str, Tensor]:
        losses = {}
        for m, (f, y) in split_by_modality(outputs).items():
            name = MODALITY_NAMES[m]
            keep = y >= 0
            f, y = f[keep], y[keep]
            losses[f"loss_cls_{name}"] = cross_entropy_loss(self.classifiers[name](f), y, self.ce_eps, self.ce_alpha)
            losses[f"loss_triplet_{name}"] = triplet_loss(f, y, self.tri_margin, self.tri_norm, self.tri_hard)
        return losses
