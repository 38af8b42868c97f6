"""The dual cluster-memory criterion of the DCL / ADCA baseline (Yang et al., "Augmented Dual-Contrastive
Aggregation Learning for Unsupervised Visible-Infrared Person Re-Identification", ACM MM'22, Eq. 1-3).

One cluster memory per branch (label space) of the train set, i.e. per modality for per-modality pseudo-labels::

    L = CE(M^v [f_v; f_ca], [y^v; y^v]) + CE(M^r f_r, y^r)

The visible memory is fed by the original and the channel-augmented view (``MODEL.CRITERION.CA_VIEW``) of each
visible image. With ``MODEL.CRITERION.MEMORY.NUM_TOKENS = T`` each memory holds one memory per class token
(``T x K x D``) and is fed the batch's ``tokens``; otherwise it uses the image-level ``features``.
"""
from typing import Dict

import torch
from torch import Tensor, nn

from ...data.datasets.bases import VISIBLE
from ..features import image_features, num_tokens
from .base import VIReIDCriterion
from .build import CRITERION_REGISTRY
from .cluster_memory import ClusterMemory

__all__ = ["DualClusterMemoryLoss", "branch_batches", "feature_dim"]


def feature_dim(cfg) -> int:
    """Dimension of the image-level feature: ``FEAT_DIM`` per token times ``MODEL.BACKBONE.NUM_TOKENS``."""
    return cfg.MODEL.BACKBONE.FEAT_DIM * max(1, cfg.MODEL.BACKBONE.NUM_TOKENS)


def branch_batches(outputs, key: str = "features", with_ca_view: bool = False) -> Dict[int, tuple]:
    """``{branch: (features, targets)}`` of a batch; with ``with_ca_view`` the channel-augmented views
    (``"ca_" + key``, one per visible image in batch order) join their image's branch with its target."""
    feats, targets, branch = outputs[key], outputs["targets"], outputs["branch"]
    if with_ca_view:
        visible = outputs["modality"] == VISIBLE
        feats = torch.cat([feats, outputs["ca_" + key]])
        targets, branch = torch.cat([targets, targets[visible]]), torch.cat([branch, branch[visible]])
    return {int(b): (feats[branch == b], targets[branch == b]) for b in torch.unique(branch).tolist()}


@CRITERION_REGISTRY.register()
class DualClusterMemoryLoss(VIReIDCriterion):
    def __init__(self, cfg):
        mem = cfg.MODEL.CRITERION.MEMORY
        super().__init__({"loss_memory": mem.SCALE})
        self.needs_ca_view = cfg.MODEL.CRITERION.CA_VIEW
        self.num_tokens = mem.NUM_TOKENS
        dim = cfg.MODEL.BACKBONE.FEAT_DIM if self.num_tokens else feature_dim(cfg)
        self.memories = nn.ModuleDict({
            name: ClusterMemory(dim, temperature=mem.TEMPERATURE, momentum=mem.MOMENTUM, update=mem.UPDATE,
                                num_tokens=self.num_tokens)
            for name in ("visible", "infrared")
        })

    def _memory_features(self, features: Tensor) -> Tensor:
        if not self.num_tokens:
            return image_features(features)
        if num_tokens(features) != self.num_tokens:
            raise ValueError(f"MODEL.CRITERION.MEMORY.NUM_TOKENS is {self.num_tokens} but the model gives features "
                             f"of shape {tuple(features.shape[1:])}")
        return features

    @torch.no_grad()
    def reset(self, targets, features: Tensor):
        feats = self._memory_features(features)
        for name, memory in self.memories.items():
            space = targets.spaces[name]
            own = targets.mask(space.modality)
            memory.initialize(ClusterMemory.cluster_centroids(feats[own], space.labels[own]))

    def losses(self, outputs) -> Dict[str, Tensor]:
        key = "tokens" if self.num_tokens else "features"
        branches = self.train_targets.branches
        return {f"loss_memory_{branches[b]}": self.memories[branches[b]](f, y)
                for b, (f, y) in sorted(branch_batches(outputs, key, self.needs_ca_view).items())}
