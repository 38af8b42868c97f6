"""MULT's association hook: the modality-unified label transfer before every epoch from ``MULT.START_EPOCH`` on
(He et al., IJCV'24, Sec. 3.2; :func:`vireid_plugins.association.mult.mult_label_transfer`).

:class:`MULTAssociation`, on the main process, takes the epoch's per-modality clusters, the L2-normalised features
and the sparse Jaccard graphs the pseudo-label hook clustered on (``TrainTargets.extras["features"]`` and
``["jaccard"]``; the image-level features of multi-token models), runs the
label transfer in both label spaces and broadcasts the result. The targets it installs give *every* training image
(DBSCAN outliers included, as the authors do) a hard label and a soft target in both label spaces:

* space ``visible`` (``K_v``): ``y^v`` for the visible images, ``y^{r->v}`` for the infrared ones;
* space ``infrared`` (``K_r``): ``y^r`` for the infrared images, ``y^{v->r}`` for the visible ones;

with both spaces as branches and the modalities paired within a label, so a batch holds clusters of one modality
together with the other modality's images cross-labelled into them (the authors' sampler). The base class logs the
association accuracy per direction; this hook adds the fixed point's iterations and final change per label space
(section ``mult`` of the label history).
"""
import logging

import torch
from fastreid.utils import comm

from ...association.mult import CENTROID_SINKHORN, MULTResult, mult_label_transfer
from ...data.datasets.bases import INFRARED, VISIBLE
from ...data.targets import LabelSpace, TrainTargets
from ...engine import ASSOCIATION_HOOK_REGISTRY, AssociationHook, broadcast_from_main
from ...modeling.features import image_features

__all__ = ["MULTAssociation", "with_transferred_labels"]

logger = logging.getLogger("fastreid.vireid.mult")


def with_transferred_labels(targets: TrainTargets, result: MULTResult, epoch: int) -> TrainTargets:
    """Targets whose two label spaces label every item (:class:`~vireid_plugins.association.mult.MULTResult` in item
    order), both spaces as branches, the modalities paired within a label."""
    vis, ir = targets.mask(VISIBLE), targets.mask(INFRARED)
    spaces = {}
    for name, own, transfer in (("visible", vis, result.visible), ("infrared", ir, result.infrared)):
        k = targets.spaces[name].num_classes
        labels = torch.empty(len(targets.items), dtype=torch.long)
        soft = torch.empty(len(targets.items), k)
        labels[own], labels[~own] = transfer.own_labels.cpu(), transfer.cross_labels.cpu()
        soft[own], soft[~own] = transfer.own_targets.cpu().float(), transfer.cross_targets.cpu().float()
        spaces[name] = LabelSpace(labels, k, targets.spaces[name].modality, soft)
    return targets.replace(spaces=spaces, branches=("visible", "infrared"), pairing="shared", epoch=epoch)


@ASSOCIATION_HOOK_REGISTRY.register()
class MULTAssociation(AssociationHook):
    def active(self, epoch: int) -> bool:
        return epoch >= self.cfg.MULT.START_EPOCH

    def associate(self, targets: TrainTargets) -> TrainTargets:
        result = self._transfer(targets) if comm.is_main_process() else None
        result = broadcast_from_main(result)
        if comm.is_main_process():
            stats = {f"{name}/{key}": getattr(getattr(result, name), key)
                     for name in ("visible", "infrared") for key in ("iterations", "change")}
            self.trainer.label_history.log(self.trainer.epoch, "mult", stats, self.trainer.storage)
            logger.info(f"MULT label transfer at epoch {self.trainer.epoch}: "
                        + ", ".join(f"{k} {v:.4g}" for k, v in stats.items()))
        return with_transferred_labels(targets, result, self.trainer.epoch)

    def _transfer(self, targets: TrainTargets) -> MULTResult:
        m = self.cfg.MULT
        graphs, feats = targets.extras.get("jaccard"), targets.extras.get("features")
        if graphs is None or feats is None or set(graphs) != {VISIBLE, INFRARED}:
            raise RuntimeError(f"MULTAssociation at epoch {self.trainer.epoch}: no Jaccard graphs of this epoch's "
                               "clustering; MULT needs the pseudo-labels re-made every epoch (PSEUDO.PERIOD 1)")
        inputs = {}
        for m_id, name in ((VISIBLE, "visible"), (INFRARED, "infrared")):
            items, graph = graphs[m_id]
            if not torch.equal(items, torch.nonzero(targets.mask(m_id), as_tuple=True)[0]):
                raise RuntimeError(f"MULTAssociation: the {name} Jaccard graph does not cover every {name} image "
                                   "(non-finite features dropped, PSEUDO.NON_FINITE drop); MULT labels every image")
            inputs[name] = (image_features(feats[items]), targets.spaces[name].labels[items], graph)
        (f_v, y_v, g_v), (f_r, y_r, g_r) = inputs["visible"], inputs["infrared"]
        relaxed = {"reg_m": m.REG_M} if m.REG_M > 0 else {}
        return mult_label_transfer(f_v, f_r, y_v, y_r, g_v, g_r, temperature=m.TEMPERATURE, lam=m.LAMBDA,
                                   alpha=m.ALPHA, beta=m.BETA, max_iter=m.MAX_ITER, tol=m.TOL,
                                   centroid_sinkhorn={**CENTROID_SINKHORN, **relaxed} if relaxed else None,
                                   instance_sinkhorn=relaxed or None)
