"""DOTLA stage 2 (Eq. 3-12 of DOTLA): the association hook that gives every image a label in the other modality's
label space before every epoch from ``DOTLA.START_EPOCH`` on.

:class:`DOTLAAssociation`

1. extracts flip-averaged raw BN-neck features of every training image (each through its modality's stem);
2. on the main process (:func:`dotla_cross_targets`): predicts each infrared image with the visible classifier and
   each visible image with the infrared classifier (``criterion.predict``; the whole training set, DBSCAN outliers
   included, as the paper's stage 2, or the clustered images only, ``DOTLA.TRANSPORT_SET``), solves both
   transport problems at once (:func:`vireid_plugins.association.dual_optimal_transport_labels`, Eq. 3-5) and,
   with ``DOTLA.NCLR``, refines the assigned labels from neighbours
   (:func:`vireid_plugins.association.refine_labels_by_neighbours`, Eq. 6-10);
3. broadcasts the result and installs the two-branch train set: branch ``visible`` holds the visible images with
   their clusters and the infrared images with their assigned visible labels (soft targets ``y-hat``), branch
   ``infrared`` the mirror; both branches pair the modalities within a label (``"shared"``);
4. logs the NCLR noisy ratio per direction (the base class logs the association accuracy).
"""
import logging
from typing import Callable, Dict

import torch
import torch.nn.functional as F
from fastreid.utils import comm

from ...association import dual_optimal_transport_labels
from ...association.nclr import refine_labels_by_neighbours
from ...data.datasets.bases import MODALITY_NAMES
from ...data.targets import LabelSpace, TrainTargets, other_modality
from ...engine import ASSOCIATION_HOOK_REGISTRY, AssociationHook, broadcast_from_main, extract_item_features, unwrap

__all__ = ["DOTLAAssociation", "dotla_cross_targets"]

logger = logging.getLogger("fastreid.vireid.dotla")


def _space_of(targets: TrainTargets, modality: int) -> str:
    return next(name for name, space in targets.spaces.items() if space.modality == modality)


@torch.no_grad()
def dotla_cross_targets(cfg, predict: Callable, feats: torch.Tensor, targets: TrainTargets) -> Dict[str, dict]:
    """Cross-modality labels and soft targets of both label spaces (Eq. 3-10).

    Args:
        cfg: the config (``DOTLA.*``).
        predict: ``predict(features (n, D), space) -> (n, K_space)`` logits (the criterion's classifiers).
        feats: ``(N, D)`` raw BN-neck features of ``targets.items``.
        targets: per-modality label spaces (the pseudo-label hook's).

    Returns:
        ``{space: {"source": (n,) item indices of the other modality's images transported into the space (all, or
        the clustered ones), "labels": (n,) their assigned labels in the space, "soft": (n, K) their targets (rows of
        Eq. 10, which need not sum to 1), "noisy": (n,) bool}}``.
    """
    d = cfg.DOTLA
    names = {m: _space_of(targets, m) for m in MODALITY_NAMES}
    out, probs, sizes = {}, {}, {}
    for m, name in names.items():
        space, source_space = targets.spaces[name], targets.spaces[names[other_modality(m)]]
        source = targets.mask(other_modality(m))
        if d.TRANSPORT_SET == "clustered":
            source = source & (source_space.labels >= 0)
        source = torch.nonzero(source, as_tuple=True)[0]
        probs[m] = F.softmax(predict(feats[source], name).float(), dim=1).cpu()
        sizes[m] = space.cluster_sizes(targets.mask(m)).float()
        out[name] = {"source": source}
    vis, ir = sorted(MODALITY_NAMES)
    result = dual_optimal_transport_labels(
        probs[vis], probs[ir], lam=d.LAMBDA, marginals=d.MARGINALS, cluster_sizes_vis=sizes[vis],
        cluster_sizes_ir=sizes[ir], reg_m=d.REG_M if d.MARGINALS == "relaxed" else None, tol=d.TOL,
        max_iter=d.MAX_ITER)
    assigned = {vis: result.ir_to_vis_labels.cpu(), ir: result.vis_to_ir_labels.cpu()}
    for m, name in names.items():
        space, source = targets.spaces[name], out[name]["source"]
        own = targets.mask(m)
        if d.NCLR.ENABLED:
            refined = refine_labels_by_neighbours(assigned[m], space.num_classes, feats[source], feats[own],
                                                  space.labels[own], k=d.NCLR.K, tau=d.NCLR.TAU, gamma=d.NCLR.GAMMA,
                                                  normalize=d.NCLR.NORMALIZE)
            soft, noisy = refined.soft_labels, refined.noisy
        else:
            soft = F.one_hot(assigned[m], space.num_classes).float()
            noisy = torch.zeros(len(source), dtype=torch.bool)
        out[name].update(labels=assigned[m], soft=soft, noisy=noisy)
    return out


def with_cross_targets(targets: TrainTargets, cross: Dict[str, dict], epoch: int) -> TrainTargets:
    """Targets whose label spaces also label the other modality's images (``cross`` of
    :func:`dotla_cross_targets`), both spaces as branches, modalities paired within a label."""
    spaces = {}
    for name, space in targets.spaces.items():
        c = cross[name]
        labels = space.labels.clone()
        labels[c["source"]] = c["labels"]
        soft = F.one_hot(labels.clamp(min=0), space.num_classes).float() * (labels >= 0).unsqueeze(1)
        soft[c["source"]] = c["soft"]
        spaces[name] = LabelSpace(labels, space.num_classes, space.modality, soft, space.token_labels)
    return targets.replace(spaces=spaces, branches=tuple(spaces), pairing="shared", epoch=epoch)


@ASSOCIATION_HOOK_REGISTRY.register()
class DOTLAAssociation(AssociationHook):
    def active(self, epoch: int) -> bool:
        return epoch >= self.cfg.DOTLA.START_EPOCH

    def associate(self, targets: TrainTargets) -> TrainTargets:
        model = self.trainer.model
        feats = extract_item_features(self.cfg, model, targets.items, normalize=False)
        finite = torch.isfinite(feats).all(dim=1)
        if not bool(finite.all()):
            counts = {MODALITY_NAMES[m]: int((~finite & targets.mask(m)).sum()) for m in MODALITY_NAMES}
            raise FloatingPointError(f"DOTLA at epoch {self.trainer.epoch}: NaN or inf features {counts} (training "
                                     "diverged: lower SOLVER.BASE_LR or lengthen SOLVER.WARMUP_ITERS)")
        criterion = unwrap(model).criterion
        device = next(unwrap(model).parameters()).device

        def predict(f, space):
            return criterion.predict(f.to(device), space)

        cross = dotla_cross_targets(self.cfg, predict, feats, targets) if comm.is_main_process() else None
        cross = broadcast_from_main(cross)
        if comm.is_main_process():
            self._report(targets, cross)
        return with_cross_targets(targets, cross, self.trainer.epoch)

    def _report(self, targets: TrainTargets, cross: Dict[str, dict]):
        stats = {}
        for name, c in cross.items():
            source = MODALITY_NAMES[other_modality(targets.spaces[name].modality)]
            stats[f"noisy_ratio/{source}->{name}"] = float(c["noisy"].float().mean()) if len(c["noisy"]) else 0.0
        self.trainer.label_history.log(self.trainer.epoch, "dotla", stats, self.trainer.storage)
        logger.info(f"DOTLA labels at epoch {self.trainer.epoch}: NCLR "
                    + ", ".join(f"{k} {v:.4f}" for k, v in stats.items()))
