"""MULT's training criterion: the DCL baseline, then AMIRL with OCLR (He et al., "Exploring Homogeneous and
Heterogeneous Consistent Label Associations for Unsupervised Visible-Infrared Person ReID", IJCV'24, Sec. 3.3-3.4).

Before ``MULT.START_EPOCH`` (no soft targets from the association hook yet) it is the DCL baseline,
:class:`~vireid_plugins.modeling.losses.DualClusterMemoryLoss`: ``CE(M^v [f_v; f_a], y^v) + CE(M^r f_r, y^r)``.

Afterwards every sample carries, from MULT's label transfer, a hard label and a soft target ``y-tilde`` in both
label spaces (visible: ``y^v`` of visible images, ``y^{r->v}`` of infrared ones; infrared: ``y^r``, ``y^{v->r}``).
AMIRL keeps six memories, rebuilt at every clustering at the DBSCAN centroids (``c^v`` for the visible space's
``M^v, M^va, M^rcm``; ``c^r`` for ``M^r, M^ra, M^vcm``), and trains in one label space per epoch, alternating with
the parity (``MULT.ALTERNATE``). In even epochs (the visible space), with ``f_v, f_a`` the two views of the visible
images and ``f_r`` the infrared ones, ``CE`` the soft-target cross-entropy of the memory logits:

* ``loss_ms`` (intra-modality memories): ``CE(M^v f_v, y^v) + CE(M^v f_a, y^v) + CE(M^r f_r, y^r)
  + CE(M^rcm f_r, y^{r->v})``;
* ``loss_ma`` (the cross-modality memory, ``MULT.CROSS_MEMORY``): ``CE(M^va f_v, y^v) + CE(M^va f_a, y^v)
  + CE(M^va f_r, y^{r->v})``;
* ``loss_oclr`` (``MULT.OCLR``): the cross-memory predictions distilled towards the sharpened intra-memory ones of the
  other view and of the other modality's memory in the same space (:func:`sharpened_cross_entropy`):
  ``S(M^va f_v, M^v f_a) + S(M^va f_a, M^v f_v) + S(M^va f_r, M^rcm f_r) + S(M^va f_v, M^rcm f_a)
  + S(M^va f_a, M^rcm f_v) + S(M^va f_r, M^v f_r)``.

Odd epochs mirror them in the infrared space (``M^ra``, ``M^vcm``, ``y^{v->r}``; the visible side keeps both views).
Every memory called with a target is updated with its hard label (``MODEL.CRITERION.MEMORY.MOMENTUM``); the
logits that only serve as OCLR targets update nothing. Weights: ``loss_ms`` ``MULT.MS_SCALE``, ``loss_ma``
``MULT.CROSS_MEMORY.SCALE``, ``loss_oclr`` ``MULT.OCLR.SCALE``, the DCL stage ``MODEL.CRITERION.MEMORY.SCALE``.
"""
from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from ...data.datasets.bases import VISIBLE
from ...modeling.features import image_features
from ...modeling.losses import (
    CRITERION_REGISTRY,
    ClusterMemory,
    DualClusterMemoryLoss,
    VIReIDCriterion,
    feature_dim,
    sharpened_cross_entropy,
    soft_cross_entropy,
)

__all__ = ["MULTCriterion", "AMIRL_TERMS"]

# The terms of one epoch: (memory, view, target) for loss_ms / loss_ma, ((memory, view), (memory, view)) for OCLR's
# (prediction, target). Views: "v" visible, "a" its channel-augmented copy, "r" infrared. Targets: "own" a view's
# label in its own modality's space, "cross" in the other modality's.
AMIRL_TERMS = {
    "visible": {  # even epochs
        "ms": [("v", "v", "own"), ("v", "a", "own"), ("r", "r", "own"), ("rcm", "r", "cross")],
        "ma": [("va", "v", "own"), ("va", "a", "own"), ("va", "r", "cross")],
        "oclr": [(("va", "v"), ("v", "a")), (("va", "a"), ("v", "v")), (("va", "r"), ("rcm", "r")),
                 (("va", "v"), ("rcm", "a")), (("va", "a"), ("rcm", "v")), (("va", "r"), ("v", "r"))],
    },
    "infrared": {  # odd epochs
        "ms": [("v", "v", "own"), ("v", "a", "own"), ("vcm", "v", "cross"), ("vcm", "a", "cross"), ("r", "r", "own")],
        "ma": [("ra", "v", "cross"), ("ra", "a", "cross"), ("ra", "r", "own")],
        "oclr": [(("ra", "v"), ("vcm", "a")), (("ra", "a"), ("vcm", "v")), (("ra", "r"), ("r", "r")),
                 (("ra", "v"), ("r", "a")), (("ra", "a"), ("r", "v")), (("ra", "r"), ("vcm", "r"))],
    },
}
_SPACE_OF_MEMORY = {"v": "visible", "va": "visible", "rcm": "visible", "r": "infrared", "ra": "infrared",
                    "vcm": "infrared"}
_MODALITY_OF_VIEW = {"v": "visible", "a": "visible", "r": "infrared"}


@CRITERION_REGISTRY.register()
class MULTCriterion(VIReIDCriterion):
    needs_ca_view = True

    def __init__(self, cfg):
        m = cfg.MULT
        super().__init__({"loss_memory": cfg.MODEL.CRITERION.MEMORY.SCALE, "loss_ms": m.MS_SCALE,
                          "loss_ma": m.CROSS_MEMORY.SCALE, "loss_oclr": m.OCLR.SCALE})
        self.dcl = DualClusterMemoryLoss(cfg)  # the DCL stage; its memories are AMIRL's M^v and M^r
        mem = cfg.MODEL.CRITERION.MEMORY
        self.cross_memories = nn.ModuleDict({
            name: ClusterMemory(feature_dim(cfg), temperature=mem.TEMPERATURE, momentum=mem.MOMENTUM,
                                update=mem.UPDATE)
            for name in ("va", "ra", "vcm", "rcm")})
        self.alternate, self.cross_memory, self.oclr = m.ALTERNATE, m.CROSS_MEMORY.ENABLED, m.OCLR.ENABLED
        self.oclr_temperature, self.oclr_detach = m.OCLR.TEMPERATURE, m.OCLR.DETACH

    def memory(self, name: str) -> ClusterMemory:
        if name in ("v", "r"):
            return self.dcl.memories["visible" if name == "v" else "infrared"]
        return self.cross_memories[name]

    @torch.no_grad()
    def reset(self, targets, features: Tensor):
        self.dcl.reset(targets, features)
        feats = image_features(features)
        for name, memory in self.cross_memories.items():
            space = targets.spaces[_SPACE_OF_MEMORY[name]]
            own = targets.mask(space.modality)
            memory.initialize(ClusterMemory.cluster_centroids(feats[own], space.labels[own]))

    def set_targets(self, targets, features=None):
        super().set_targets(targets, features)
        self.dcl.train_targets = targets

    def transfer_stage(self) -> bool:
        """Whether MULT's label transfer has given every item a soft target in both label spaces."""
        spaces = self.train_targets.spaces
        return all(spaces[name].soft is not None for name in ("visible", "infrared"))

    def losses(self, outputs) -> Dict[str, Tensor]:
        if not self.transfer_stage():
            return self.dcl.losses(outputs)
        space = ("visible", "infrared")[self.train_targets.epoch % 2] if self.alternate else "visible"
        views, labels = self._views(outputs)
        logits: Dict[Tuple[str, str], Tensor] = {}
        terms = AMIRL_TERMS[space]
        losses = {"loss_ms": self._memory_losses(terms["ms"], views, labels, logits)}
        if self.cross_memory:
            losses["loss_ma"] = self._memory_losses(terms["ma"], views, labels, logits)
        if self.oclr:
            losses["loss_oclr"] = sum(
                sharpened_cross_entropy(self._logits(pred, views, logits), self._logits(target, views, logits),
                                        self.oclr_temperature, self.oclr_detach)
                for pred, target in terms["oclr"])
        return losses

    def _views(self, outputs):
        """``{view: features}`` and ``{(view, space): (hard labels, soft targets)}`` of the batch."""
        visible = outputs["modality"] == VISIBLE
        item = outputs["item"].cpu()
        views = {"v": outputs["features"][visible], "a": outputs["ca_features"], "r": outputs["features"][~visible]}
        device = outputs["features"].device
        labels = {}
        for name in ("visible", "infrared"):
            space = self.train_targets.spaces[name]
            hard, soft = space.labels[item].to(device), space.soft[item].to(device)
            for view, modality in _MODALITY_OF_VIEW.items():
                rows = visible if modality == "visible" else ~visible
                labels[view, name] = hard[rows], soft[rows]
        return views, labels

    def _memory_losses(self, terms, views, labels, logits) -> Tensor:
        total = 0.0
        for memory, view, _ in terms:
            hard, soft = labels[view, _SPACE_OF_MEMORY[memory]]  # own or cross: the memory's space
            logits[memory, view] = self.memory(memory).logits(views[view], hard)  # schedules the update
            total = total + soft_cross_entropy(logits[memory, view], soft)
        return total

    def _logits(self, key, views, logits) -> Tensor:
        """The logits of (memory, view): those of a loss term, or plain ones (no update) for an OCLR target."""
        if key not in logits:
            logits[key] = self.memory(key[0]).logits(views[key[1]])
        return logits[key]
